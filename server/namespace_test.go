package server_test

import (
	"bytes"
	"fmt"
	"sort"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

func inodeOf(t *testing.T, c *client, id crypto.ID) wire.Inode {
	t.Helper()
	var in wire.Inode
	c.getInode(id).want(t, 200, &in)
	return in
}

func lookupOf(t *testing.T, c *client, parent crypto.ID, name string) wire.Entry {
	t.Helper()
	var ent wire.Entry
	c.lookup(parent, c.a.index(parent, name)).want(t, 200, &ent)
	got, err := crypto.OpenName(c.a.keys.Names, parent, crypto.ID(ent.Inode.ID), ent.SealedName)
	if err != nil || got != name {
		t.Fatalf("entry %q: sealed name opens as %q, %v", name, got, err)
	}
	return ent
}

func TestCreateLookupReadDir(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	root0 := inodeOf(t, c, rootID)
	if root0.Type != wire.TypeDir || root0.Version < 1 {
		t.Fatalf("root %+v", root0)
	}

	dir := c.mkdir(t, rootID, "dir")
	if v := inodeOf(t, c, rootID).Version; v <= root0.Version {
		t.Fatalf("root version %d after mkdir, was %d", v, root0.Version)
	}
	names := map[string]crypto.ID{}
	for i := range 7 {
		name := fmt.Sprintf("file-%d", i)
		names[name] = c.mustUpload(t, dir, name, []byte(name))
	}
	// The same name again, or the same inode ID again: 409 exists.
	c.create(dir, c.a.createReq(t, dir, "file-3", crypto.NewID(), wire.TypeFile, "")).wantErr(t, 409, wire.CodeExists)
	c.create(dir, c.a.createReq(t, dir, "other", names["file-3"], wire.TypeFile, "")).wantErr(t, 409, wire.CodeExists)
	// The root's ID is reserved.
	c.create(dir, c.a.createReq(t, dir, "root-again", rootID, wire.TypeDir, "")).wantErr(t, 409, wire.CodeInvalid)
	// Into a parent that does not exist, or is a file.
	c.create(crypto.NewID(), c.a.createReq(t, rootID, "x", crypto.NewID(), wire.TypeFile, "")).wantErr(t, 404, wire.CodeNotFound)
	c.create(names["file-1"], c.a.createReq(t, names["file-1"], "x", crypto.NewID(), wire.TypeFile, "")).wantErr(t, 409, wire.CodeNotDir)
	bad := c.a.createReq(t, dir, "bad-type", crypto.NewID(), wire.TypeFile, "")
	bad.Inode.Type = 4
	c.create(dir, bad).wantErr(t, 400, wire.CodeBadRequest)

	// Lookups.
	for name, id := range names {
		ent := lookupOf(t, c, dir, name)
		if crypto.ID(ent.Inode.ID) != id || ent.Inode.Type != wire.TypeFile || ent.Inode.Nlink != 1 {
			t.Fatalf("lookup %q: %+v", name, ent.Inode)
		}
	}
	c.lookup(dir, c.a.index(dir, "missing")).wantErr(t, 404, wire.CodeNotFound)
	c.lookup(names["file-0"], c.a.index(dir, "x")).wantErr(t, 409, wire.CodeNotDir)
	c.do("GET", "/v1/dirs/"+dir.String()+"/entries/abc", nil).wantErr(t, 400, wire.CodeBadRequest)

	// Paging, three entries at a time, in index order.
	var all []wire.Entry
	after := ""
	for page := 0; ; page++ {
		var rd wire.ReadDirResponse
		c.readDir(dir, after, 3).want(t, 200, &rd)
		if crypto.ID(rd.Dir.ID) != dir || rd.Dir.Type != wire.TypeDir {
			t.Fatalf("page %d describes %+v", page, rd.Dir)
		}
		if len(rd.Entries) > 3 || (rd.More && len(rd.Entries) != 3) {
			t.Fatalf("page %d: %d entries, more=%v", page, len(rd.Entries), rd.More)
		}
		all = append(all, rd.Entries...)
		if !rd.More {
			break
		}
		after = rd.Entries[len(rd.Entries)-1].Index.String()
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(all) != len(names) {
		t.Fatalf("%d entries listed, want %d", len(all), len(names))
	}
	if !sort.SliceIsSorted(all, func(i, j int) bool { return bytes.Compare(all[i].Index[:], all[j].Index[:]) < 0 }) {
		t.Fatal("entries are not in index order")
	}
	for _, ent := range all {
		name, err := crypto.OpenName(c.a.keys.Names, dir, crypto.ID(ent.Inode.ID), ent.SealedName)
		if err != nil || names[name] != crypto.ID(ent.Inode.ID) {
			t.Fatalf("listed entry %x: %q, %v", ent.Index, name, err)
		}
	}
	// Default limit lists all; bad limits and cursors are 400.
	var rd wire.ReadDirResponse
	c.readDir(dir, "", 0).want(t, 200, &rd)
	if len(rd.Entries) != len(names) || rd.More {
		t.Fatalf("unpaged listing: %d entries, more=%v", len(rd.Entries), rd.More)
	}
	c.readDir(dir, "", wire.MaxReadDirLimit+1).wantErr(t, 400, wire.CodeBadRequest)
	c.do("GET", "/v1/dirs/"+dir.String()+"/entries?limit=0", nil).wantErr(t, 400, wire.CodeBadRequest)
	c.do("GET", "/v1/dirs/"+dir.String()+"/entries?after=xyz", nil).wantErr(t, 400, wire.CodeBadRequest)
	c.readDir(names["file-0"], "", 0).wantErr(t, 409, wire.CodeNotDir)
	c.readDir(crypto.NewID(), "", 0).wantErr(t, 404, wire.CodeNotFound)
}

func TestSymlinkAndLinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	d1 := c.mkdir(t, rootID, "d1")
	d2 := c.mkdir(t, rootID, "d2")

	// A symlink keeps its sealed target.
	sl := crypto.NewID()
	var in wire.Inode
	c.create(d1, c.a.createReq(t, d1, "link", sl, wire.TypeSymlink, "../d2/target")).want(t, 201, &in)
	in = inodeOf(t, c, sl)
	if target, err := crypto.OpenSymlink(c.a.keys.Names, sl, in.Symlink); err != nil || target != "../d2/target" || in.Type != wire.TypeSymlink {
		t.Fatalf("symlink reads %q, %v (%+v)", target, err, in)
	}
	noTarget := c.a.createReq(t, d1, "bad-link", crypto.NewID(), wire.TypeSymlink, "x")
	noTarget.Inode.Symlink = nil
	c.create(d1, noTarget).wantErr(t, 409, wire.CodeInvalid)

	// Hard links count.
	content := randomContent(20000)
	f := c.mustUpload(t, d1, "f", content)
	x, sealed := c.a.name(t, d2, f, "g")
	c.json("POST", "/v1/dirs/"+d2.String()+"/links", &wire.LinkRequest{Index: x, SealedName: sealed, Target: wire.HexID(f)}).want(t, 201, &in)
	if in.Nlink != 2 || crypto.ID(in.ID) != f {
		t.Fatalf("link returned %+v", in)
	}
	if ent := lookupOf(t, c, d2, "g"); crypto.ID(ent.Inode.ID) != f || ent.Inode.Nlink != 2 {
		t.Fatalf("lookup of the new link: %+v", ent.Inode)
	}
	// The same name again: exists. A directory: not permitted.
	c.json("POST", "/v1/dirs/"+d2.String()+"/links", &wire.LinkRequest{Index: x, SealedName: sealed, Target: wire.HexID(f)}).wantErr(t, 409, wire.CodeExists)
	y, sealedY := c.a.name(t, d2, d1, "d1-again")
	c.json("POST", "/v1/dirs/"+d2.String()+"/links", &wire.LinkRequest{Index: y, SealedName: sealedY, Target: wire.HexID(d1)}).wantErr(t, 409, wire.CodeNotPermitted)
	z, sealedZ := c.a.name(t, d2, f, "nothing")
	c.json("POST", "/v1/dirs/"+d2.String()+"/links", &wire.LinkRequest{Index: z, SealedName: sealedZ, Target: wire.HexID(crypto.NewID())}).wantErr(t, 404, wire.CodeNotFound)

	// Unlink one name: the other still reads the content.
	c.unlink(d1, c.a.index(d1, "f"), "nondir").want(t, 204, nil)
	c.lookup(d1, c.a.index(d1, "f")).wantErr(t, 404, wire.CodeNotFound)
	if got := c.mustRead(t, f, content); got.Nlink != 1 {
		t.Fatalf("nlink %d after unlinking one of two names", got.Nlink)
	}
	c.unlink(d1, c.a.index(d1, "f"), "nondir").wantErr(t, 404, wire.CodeNotFound)
	// Type checks: rmdir of a file, unlink of a directory.
	c.unlink(d2, c.a.index(d2, "g"), "dir").wantErr(t, 409, wire.CodeNotDir)
	c.unlink(rootID, c.a.index(rootID, "d2"), "nondir").wantErr(t, 409, wire.CodeIsDir)
	c.unlink(rootID, c.a.index(rootID, "d2"), "folder").wantErr(t, 400, wire.CodeBadRequest)
	// rmdir of a non-empty directory.
	c.unlink(rootID, c.a.index(rootID, "d2"), "dir").wantErr(t, 409, wire.CodeNotEmpty)
	// The last name: the inode is gone.
	c.unlink(d2, c.a.index(d2, "g"), "nondir").want(t, 204, nil)
	c.getInode(f).wantErr(t, 404, wire.CodeNotFound)
	c.unlink(rootID, c.a.index(rootID, "d2"), "dir").want(t, 204, nil)
	c.getInode(d2).wantErr(t, 404, wire.CodeNotFound)
	c.unlink(d1, c.a.index(d1, "link"), "").want(t, 204, nil)
	c.getInode(sl).wantErr(t, 404, wire.CodeNotFound)
}

func rename(c *client, req *wire.RenameRequest) *resp { return c.json("POST", "/v1/rename", req) }

// renameReq moves srcName in srcParent to dstName in dstParent; with
// exchange, other is the inode at the destination.
func renameReq(t *testing.T, a *account, srcParent crypto.ID, srcName string, moved crypto.ID, dstParent crypto.ID, dstName string, mode string, other crypto.ID) *wire.RenameRequest {
	req := &wire.RenameRequest{SrcParent: wire.HexID(srcParent), SrcIndex: a.index(srcParent, srcName),
		DstParent: wire.HexID(dstParent), Mode: mode}
	req.DstIndex, req.SrcSealedName = a.name(t, dstParent, moved, dstName)
	if mode == wire.RenameExchange {
		_, req.DstSealedName = a.name(t, srcParent, other, srcName)
	}
	return req
}

func TestRename(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	d1 := c.mkdir(t, rootID, "d1")
	d2 := c.mkdir(t, rootID, "d2")
	ca, cb, cc := []byte("content a"), []byte("content b"), []byte("content c")
	a := c.mustUpload(t, d1, "a", ca)
	b := c.mustUpload(t, d2, "b", cb)
	cf := c.mustUpload(t, d2, "c", cc)

	// noreplace onto an existing name.
	rename(c, renameReq(t, c.a, d1, "a", a, d2, "b", wire.RenameNoReplace, crypto.ID{})).wantErr(t, 409, wire.CodeExists)

	// exchange a and b across directories.
	v1 := inodeOf(t, c, d1).Version
	rename(c, renameReq(t, c.a, d1, "a", a, d2, "b", wire.RenameExchange, b)).want(t, 200, nil)
	if ent := lookupOf(t, c, d2, "b"); crypto.ID(ent.Inode.ID) != a {
		t.Fatal("after exchange d2/b does not name a")
	}
	if ent := lookupOf(t, c, d1, "a"); crypto.ID(ent.Inode.ID) != b {
		t.Fatal("after exchange d1/a does not name b")
	}
	c.mustRead(t, a, ca)
	if inodeOf(t, c, d1).Version <= v1 {
		t.Fatal("exchange did not bump the directory's version")
	}
	// exchange with a missing destination.
	rename(c, renameReq(t, c.a, d1, "a", b, d2, "none", wire.RenameExchange, a)).wantErr(t, 404, wire.CodeNotFound)

	// replace: d2/c becomes d1/a's inode (b); c's inode goes.
	rename(c, renameReq(t, c.a, d1, "a", b, d2, "c", wire.RenameReplace, crypto.ID{})).want(t, 200, nil)
	if ent := lookupOf(t, c, d2, "c"); crypto.ID(ent.Inode.ID) != b {
		t.Fatal("replace did not move the entry")
	}
	c.lookup(d1, c.a.index(d1, "a")).wantErr(t, 404, wire.CodeNotFound)
	c.getInode(cf).wantErr(t, 404, wire.CodeNotFound)
	c.mustRead(t, b, cb)
	// A plain move to a free name.
	rename(c, renameReq(t, c.a, d2, "c", b, d1, "moved", wire.RenameNoReplace, crypto.ID{})).want(t, 200, nil)
	lookupOf(t, c, d1, "moved")

	// Missing source.
	rename(c, renameReq(t, c.a, d1, "gone", b, d2, "x", wire.RenameReplace, crypto.ID{})).wantErr(t, 404, wire.CodeNotFound)
	// Type mismatch on replace: a file onto a directory and back.
	sub := c.mkdir(t, d2, "sub")
	rename(c, renameReq(t, c.a, d1, "moved", b, d2, "sub", wire.RenameReplace, crypto.ID{})).wantErr(t, 409, wire.CodeIsDir)
	rename(c, renameReq(t, c.a, d2, "sub", sub, d1, "moved", wire.RenameReplace, crypto.ID{})).wantErr(t, 409, wire.CodeNotDir)
	// A directory onto a non-empty one.
	c.mkdir(t, sub, "inner")
	empty := c.mkdir(t, d1, "empty")
	rename(c, renameReq(t, c.a, d1, "empty", empty, d2, "sub", wire.RenameReplace, crypto.ID{})).wantErr(t, 409, wire.CodeNotEmpty)
	// A directory into its own subtree.
	inner := crypto.ID(lookupOf(t, c, sub, "inner").Inode.ID)
	rename(c, renameReq(t, c.a, rootID, "d2", d2, inner, "loop", wire.RenameReplace, crypto.ID{})).wantErr(t, 409, wire.CodeInvalid)
	rename(c, renameReq(t, c.a, rootID, "d2", d2, d2, "self", wire.RenameReplace, crypto.ID{})).wantErr(t, 409, wire.CodeInvalid)
	// A bad mode.
	rename(c, renameReq(t, c.a, d1, "moved", b, d2, "x", "swap", crypto.ID{})).wantErr(t, 400, wire.CodeBadRequest)
	// Nothing moved by the refused renames.
	lookupOf(t, c, d1, "moved")
	lookupOf(t, c, rootID, "d2")
	lookupOf(t, c, d2, "sub")
}

func TestSetAttr(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	f := c.mustUpload(t, rootID, "f", []byte("x"))
	in := inodeOf(t, c, f)
	attr, err := crypto.SealAttr(c.a.keys.Attr, f, &crypto.Attr{Mode: 0o100600, Size: 1, Generation: 1})
	must(t, err)
	path := "/v1/inodes/" + f.String()

	var out wire.Inode
	c.json("PATCH", path, &wire.SetAttrRequest{Attr: attr}, "If-Match", fmt.Sprintf(`"%d"`, in.Version)).want(t, 200, &out)
	if out.Version != in.Version+1 || !bytes.Equal(out.Attr, attr) {
		t.Fatalf("PATCH returned version %d (was %d)", out.Version, in.Version)
	}
	// The stale version again: 412 with the current version.
	r := c.json("PATCH", path, &wire.SetAttrRequest{Attr: attr}, "If-Match", fmt.Sprintf(`"%d"`, in.Version))
	we := r.wantErr(t, 412, wire.CodeVersionMismatch)
	if got := inodeOf(t, c, f); got.Version != out.Version {
		t.Fatalf("a refused PATCH changed the version to %d", got.Version)
	}
	if we.Version != out.Version {
		t.Errorf("412 version_mismatch carries version %d, want the current %d (docs/protocol.md: the body has `version`)", we.Version, out.Version)
	}
	// Unconditional PATCH works; a malformed If-Match is 400.
	c.json("PATCH", path, &wire.SetAttrRequest{Attr: attr}).want(t, 200, &out)
	c.json("PATCH", path, &wire.SetAttrRequest{Attr: attr}, "If-Match", "abc").wantErr(t, 400, wire.CodeBadRequest)
	c.json("PATCH", "/v1/inodes/"+crypto.NewID().String(), &wire.SetAttrRequest{Attr: attr}).wantErr(t, 404, wire.CodeNotFound)
	c.json("PATCH", "/v1/inodes/xyz", &wire.SetAttrRequest{Attr: attr}).wantErr(t, 400, wire.CodeBadRequest)
	// The attributes read back.
	got, err := crypto.OpenAttr(c.a.keys.Attr, f, inodeOf(t, c, f).Attr)
	if err != nil || got.Mode != 0o100600 {
		t.Fatalf("attr after PATCH: %+v, %v", got, err)
	}
}

// TestSealedSizeLimits: remote/wire lists MaxSealedName, MaxSealedSymlink
// and MaxSealedAttr among the "limits the server enforces", so a value over
// them must be refused (400 bad_request or 413 too_large), and the
// store's own 8 KiB bound must hold in any case.
func TestSealedSizeLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	refused := func(what string, r *resp) {
		t.Helper()
		if r.status == 413 {
			r.wantErr(t, 413, wire.CodeTooLarge)
			return
		}
		if r.status != 400 {
			t.Errorf("%s: %v, want 400 bad_request or 413 too_large", what, r)
			return
		}
		r.wantErr(t, 400, wire.CodeBadRequest)
	}
	// Far over every limit: the store's bound.
	huge := c.a.createReq(t, rootID, "huge", crypto.NewID(), wire.TypeFile, "")
	huge.SealedName = randomContent(9 << 10)
	refused("a 9 KiB sealed name", c.create(rootID, huge))
	hugeAttr := c.a.createReq(t, rootID, "huge-attr", crypto.NewID(), wire.TypeFile, "")
	hugeAttr.Inode.Attr = randomContent(9 << 10)
	refused("a 9 KiB sealed attr", c.create(rootID, hugeAttr))

	// Just over the wire limits.
	name := c.a.createReq(t, rootID, "name", crypto.NewID(), wire.TypeFile, "")
	name.SealedName = randomContent(wire.MaxSealedName + 1)
	refused("a sealed name over wire.MaxSealedName", c.create(rootID, name))
	link := c.a.createReq(t, rootID, "link", crypto.NewID(), wire.TypeSymlink, "x")
	link.Inode.Symlink = randomContent(wire.MaxSealedSymlink + 1)
	refused("a sealed symlink over wire.MaxSealedSymlink", c.create(rootID, link))
	attr := c.a.createReq(t, rootID, "attr", crypto.NewID(), wire.TypeFile, "")
	attr.Inode.Attr = randomContent(wire.MaxSealedAttr + 1)
	refused("a sealed attr over wire.MaxSealedAttr", c.create(rootID, attr))
	refused("PATCH with an attr over wire.MaxSealedAttr", c.json("PATCH", "/v1/inodes/"+rootID.String(), &wire.SetAttrRequest{Attr: randomContent(wire.MaxSealedAttr + 1)}))

	// At the limits, fine.
	ok := c.a.createReq(t, rootID, "ok", crypto.NewID(), wire.TypeFile, "")
	ok.SealedName = randomContent(wire.MaxSealedName)
	c.create(rootID, ok).want(t, 201, nil)
}
