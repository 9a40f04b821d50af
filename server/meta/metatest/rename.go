package metatest

import (
	"testing"

	"github.com/sealfs/sealfs/server/meta"
)

// renamer issues renames for one account with the conventional sealed names,
// so tests can check that the new names were stored.
type renamer struct {
	t    *testing.T
	s    meta.Store
	acct int64
}

func (r renamer) rename(flag meta.RenameFlag, srcParent meta.ID, src string, dstParent meta.ID, dst string) error {
	req := meta.RenameRequest{
		SrcParent: srcParent, SrcIndex: idx(src), DstParent: dstParent, DstIndex: idx(dst),
		NewSrcSealedName: sealed(dstParent, dst+"#new"), Flag: flag,
	}
	if flag == meta.RenameExchange {
		req.NewDstSealedName = sealed(srcParent, src+"#new")
	}
	return r.s.Rename(r.t.Context(), r.acct, req)
}

func (r renamer) missing(parent meta.ID, name string) {
	r.t.Helper()
	_, _, err := r.s.Lookup(r.t.Context(), r.acct, parent, idx(name))
	wantErr(r.t, "lookup of "+name, err, meta.ErrNotFound)
}

// names checks that name in parent now names child under its new sealed name.
func (r renamer) names(parent meta.ID, name string, child meta.ID) {
	r.t.Helper()
	e, _ := lookup(r.t, r.s, r.acct, parent, name)
	wantEq(r.t, "child of "+name, e.Child, child)
	wantBytes(r.t, "sealed name of "+name, e.SealedName, sealed(parent, name+"#new"))
}

func (r renamer) version(id meta.ID) int64 { return getInode(r.t, r.s, r.acct, id).Version }

func testRenameMove(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	a := create(t, s, acct, root, "a", meta.TypeDir)
	f := create(t, s, acct, root, "f", meta.TypeFile)
	c := putChunk(t, s, acct, f.ID, 0, 10)
	f = commit(t, s, acct, f.ID, manifest("kek1", "f"), c)
	rootV, aV := r.version(root), r.version(a.ID)

	noErr(t, "move across dirs", r.rename(meta.RenameReplace, root, "f", a.ID, "g"))
	r.missing(root, "f")
	r.names(a.ID, "g", f.ID)
	wantEq(t, "source dir version", r.version(root), rootV+1)
	wantEq(t, "destination dir version", r.version(a.ID), aV+1)
	in := getInode(t, s, acct, f.ID)
	wantEq(t, "moved inode version", in.Version, f.Version)
	wantSealed(t, "moved manifest", in.Manifest, manifest("kek1", "f"))
	if _, ok := garbage(t, s)[c.ID]; ok {
		t.Fatal("a moved file's chunk became garbage")
	}

	noErr(t, "rename within a dir", r.rename(meta.RenameReplace, a.ID, "g", a.ID, "h"))
	r.missing(a.ID, "g")
	r.names(a.ID, "h", f.ID)
	wantEq(t, "dir version", r.version(a.ID), aV+2)

	noErr(t, "move a dir", r.rename(meta.RenameReplace, root, "a", root, "b"))
	r.names(root, "b", a.ID)
	_, in = lookup(t, s, acct, a.ID, "h")
	wantEq(t, "child of moved dir", in.ID, f.ID)
}

func testRenameReplace(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	f1 := create(t, s, acct, root, "f1", meta.TypeFile)
	f2 := create(t, s, acct, root, "f2", meta.TypeFile)
	c := putChunk(t, s, acct, f2.ID, 0, 10)
	commit(t, s, acct, f2.ID, manifest("kek1", "f2"), c)

	// Replacing the only name of a file deletes it; its chunks are garbage.
	noErr(t, "replace a file", r.rename(meta.RenameReplace, root, "f1", root, "f2"))
	r.missing(root, "f1")
	r.names(root, "f2", f1.ID)
	_, err := s.GetInode(ctx, acct, f2.ID)
	wantErr(t, "replaced file", err, meta.ErrNotFound)
	if _, ok := garbage(t, s)[c.ID]; !ok {
		t.Fatal("chunk of a replaced file is not garbage")
	}

	// Replacing one of two names only drops a link.
	f3 := create(t, s, acct, root, "f3", meta.TypeFile)
	_, err = s.Link(ctx, acct, meta.LinkRequest{Parent: root, NameIndex: idx("f3b"), SealedName: sealed(root, "f3b"), Target: f3.ID})
	noErr(t, "Link", err)
	noErr(t, "replace a linked file", r.rename(meta.RenameReplace, root, "f2", root, "f3"))
	in := getInode(t, s, acct, f3.ID)
	wantEq(t, "nlink of the replaced file", in.Nlink, int64(1))
	e, _ := lookup(t, s, acct, root, "f3b")
	wantEq(t, "surviving link", e.Child, f3.ID)

	d1 := create(t, s, acct, root, "d1", meta.TypeDir)
	d2 := create(t, s, acct, root, "d2", meta.TypeDir)
	create(t, s, acct, d2.ID, "x", meta.TypeFile)
	d3 := create(t, s, acct, root, "d3", meta.TypeDir)
	rootV := r.version(root)
	wantErr(t, "file over dir", r.rename(meta.RenameReplace, root, "f3", root, "d1"), meta.ErrIsDir)
	wantErr(t, "dir over file", r.rename(meta.RenameReplace, root, "d1", root, "f3"), meta.ErrNotDir)
	wantErr(t, "dir over non-empty dir", r.rename(meta.RenameReplace, root, "d1", root, "d2"), meta.ErrNotEmpty)
	wantEq(t, "root version after failures", r.version(root), rootV)
	noErr(t, "dir over empty dir", r.rename(meta.RenameReplace, root, "d1", root, "d3"))
	r.names(root, "d3", d1.ID)
	_, err = s.GetInode(ctx, acct, d3.ID)
	wantErr(t, "replaced dir", err, meta.ErrNotFound)
}

func testRenameNoReplace(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	f := create(t, s, acct, root, "f", meta.TypeFile)
	g := create(t, s, acct, root, "g", meta.TypeFile)
	wantErr(t, "existing destination", r.rename(meta.RenameNoReplace, root, "f", root, "g"), meta.ErrExists)
	e, _ := lookup(t, s, acct, root, "g")
	wantEq(t, "destination kept", e.Child, g.ID)
	noErr(t, "free destination", r.rename(meta.RenameNoReplace, root, "f", root, "h"))
	r.missing(root, "f")
	r.names(root, "h", f.ID)
}

func testRenameExchange(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	a := create(t, s, acct, root, "a", meta.TypeDir)
	b := create(t, s, acct, root, "b", meta.TypeDir)
	x := create(t, s, acct, a.ID, "x", meta.TypeFile)
	y := create(t, s, acct, b.ID, "y", meta.TypeDir)
	create(t, s, acct, y.ID, "inside", meta.TypeFile)
	aV, bV := r.version(a.ID), r.version(b.ID)

	noErr(t, "exchange file and dir", r.rename(meta.RenameExchange, a.ID, "x", b.ID, "y"))
	r.names(a.ID, "x", y.ID)
	r.names(b.ID, "y", x.ID)
	wantEq(t, "source dir version", r.version(a.ID), aV+1)
	wantEq(t, "destination dir version", r.version(b.ID), bV+1)
	_, in := lookup(t, s, acct, y.ID, "inside")
	wantEq(t, "exchanged dir keeps its entries", in.Type, meta.TypeFile)

	wantErr(t, "exchange with nothing", r.rename(meta.RenameExchange, a.ID, "x", b.ID, "none"), meta.ErrNotFound)
	err := s.Rename(t.Context(), acct, meta.RenameRequest{SrcParent: a.ID, SrcIndex: idx("x"), DstParent: b.ID,
		DstIndex: idx("y"), NewSrcSealedName: []byte("n"), Flag: meta.RenameExchange})
	wantErr(t, "exchange without second sealed name", err, meta.ErrInvalid)
	err = s.Rename(t.Context(), acct, meta.RenameRequest{SrcParent: a.ID, SrcIndex: idx("x"), DstParent: b.ID,
		DstIndex: idx("z"), NewSrcSealedName: []byte("n"), NewDstSealedName: []byte("m"), Flag: meta.RenameReplace})
	wantErr(t, "second sealed name outside an exchange", err, meta.ErrInvalid)
}

func testRenameCycles(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	a := create(t, s, acct, root, "a", meta.TypeDir)
	b := create(t, s, acct, a.ID, "b", meta.TypeDir)
	c := create(t, s, acct, b.ID, "c", meta.TypeDir)
	create(t, s, acct, root, "other", meta.TypeDir)

	wantErr(t, "into a grandchild", r.rename(meta.RenameReplace, root, "a", c.ID, "z"), meta.ErrInvalid)
	wantErr(t, "into itself", r.rename(meta.RenameReplace, root, "a", a.ID, "z"), meta.ErrInvalid)
	wantErr(t, "into a child, no replace", r.rename(meta.RenameNoReplace, root, "a", b.ID, "z"), meta.ErrInvalid)
	// Exchanging c with its ancestor a would put a under c.
	wantErr(t, "exchange with an ancestor", r.rename(meta.RenameExchange, b.ID, "c", root, "a"), meta.ErrInvalid)
	wantErr(t, "exchange with a descendant", r.rename(meta.RenameExchange, root, "a", b.ID, "c"), meta.ErrInvalid)
	// Replacing an ancestor: a is not empty.
	wantErr(t, "over an ancestor", r.rename(meta.RenameReplace, b.ID, "c", root, "a"), meta.ErrNotEmpty)
	_, in := lookup(t, s, acct, b.ID, "c")
	wantEq(t, "tree intact", in.ID, c.ID)

	noErr(t, "up the tree", r.rename(meta.RenameReplace, b.ID, "c", root, "c"))
	noErr(t, "into a sibling", r.rename(meta.RenameReplace, root, "a", root, "a2"))
	noErr(t, "into a former descendant", r.rename(meta.RenameReplace, root, "a2", c.ID, "a"))
	r.names(c.ID, "a", a.ID)
	wantErr(t, "back around", r.rename(meta.RenameReplace, root, "c", b.ID, "c"), meta.ErrInvalid)
}

func testRenameSelf(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	f := create(t, s, acct, root, "f", meta.TypeFile)
	_, err := s.Link(ctx, acct, meta.LinkRequest{Parent: root, NameIndex: idx("l"), SealedName: sealed(root, "l"), Target: f.ID})
	noErr(t, "Link", err)
	rootV, fV := r.version(root), r.version(f.ID)

	noErr(t, "onto itself", r.rename(meta.RenameReplace, root, "f", root, "f"))
	noErr(t, "exchange with itself", r.rename(meta.RenameExchange, root, "f", root, "f"))
	noErr(t, "onto another link", r.rename(meta.RenameReplace, root, "f", root, "l"))
	wantErr(t, "onto itself, no replace", r.rename(meta.RenameNoReplace, root, "f", root, "f"), meta.ErrExists)
	wantEq(t, "root version", r.version(root), rootV)
	wantEq(t, "file version", r.version(f.ID), fV)
	e, in := lookup(t, s, acct, root, "f")
	wantBytes(t, "sealed name kept", e.SealedName, sealed(root, "f"))
	wantEq(t, "nlink", in.Nlink, int64(2))
	e, _ = lookup(t, s, acct, root, "l")
	wantEq(t, "other link kept", e.Child, f.ID)
}

func testRenameErrors(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	f := create(t, s, acct, root, "f", meta.TypeFile)
	d := create(t, s, acct, root, "d", meta.TypeDir)
	wantErr(t, "missing source", r.rename(meta.RenameReplace, root, "none", d.ID, "x"), meta.ErrNotFound)
	wantErr(t, "missing source dir", r.rename(meta.RenameReplace, newID(), "f", d.ID, "x"), meta.ErrNotFound)
	wantErr(t, "missing destination dir", r.rename(meta.RenameReplace, root, "f", newID(), "x"), meta.ErrNotFound)
	wantErr(t, "file as destination dir", r.rename(meta.RenameReplace, root, "d", f.ID, "x"), meta.ErrNotDir)
	wantErr(t, "file as source dir", r.rename(meta.RenameReplace, f.ID, "x", d.ID, "x"), meta.ErrNotDir)
	wantErr(t, "bad flag", r.rename(9, root, "f", d.ID, "x"), meta.ErrInvalid)
	err := s.Rename(ctx, acct, meta.RenameRequest{SrcParent: root, SrcIndex: idx("f"), DstParent: d.ID, DstIndex: idx("x")})
	wantErr(t, "no sealed name", err, meta.ErrInvalid)
	e, _ := lookup(t, s, acct, root, "d")
	wantBytes(t, "sealed name after failures", e.SealedName, sealed(root, "d"))
}

// testRenameStaleChild checks the guard against moving an entry that names
// another inode than the client sealed the new name for: another client
// replaced it meanwhile. Nothing may change, or the moved entry would carry
// a name that fails authentication for good.
func testRenameStaleChild(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	r := renamer{t, s, acct}
	x := create(t, s, acct, root, "s0", meta.TypeFile)
	y := create(t, s, acct, root, "tmp", meta.TypeFile)
	noErr(t, "another client replaces s0", r.rename(meta.RenameReplace, root, "tmp", root, "s0"))
	rootV := r.version(root)

	req := meta.RenameRequest{SrcParent: root, SrcIndex: idx("s0"), DstParent: root, DstIndex: idx("s1"),
		NewSrcSealedName: sealed(root, "s1#new"), Flag: meta.RenameReplace, SrcChild: x.ID}
	wantErr(t, "rename of a replaced source", s.Rename(ctx, acct, req), meta.ErrVersionMismatch)
	r.missing(root, "s1")
	r.names(root, "s0", y.ID)
	wantEq(t, "root version after the refusal", r.version(root), rootV)

	req.SrcChild = y.ID
	noErr(t, "rename naming the current source", s.Rename(ctx, acct, req))
	r.names(root, "s1", y.ID)

	a := create(t, s, acct, root, "a", meta.TypeFile)
	b := create(t, s, acct, root, "b", meta.TypeFile)
	ex := meta.RenameRequest{SrcParent: root, SrcIndex: idx("a"), DstParent: root, DstIndex: idx("b"),
		NewSrcSealedName: sealed(root, "b#new"), NewDstSealedName: sealed(root, "a#new"), Flag: meta.RenameExchange,
		SrcChild: a.ID, DstChild: x.ID}
	wantErr(t, "exchange with a replaced destination", s.Rename(ctx, acct, ex), meta.ErrVersionMismatch)
	e, _ := lookup(t, s, acct, root, "a")
	wantEq(t, "a after the refused exchange", e.Child, a.ID)
	ex.DstChild = b.ID
	noErr(t, "exchange naming both current inodes", s.Rename(ctx, acct, ex))
	r.names(root, "a", b.ID)
	r.names(root, "b", a.ID)
}
