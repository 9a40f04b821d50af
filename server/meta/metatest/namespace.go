package metatest

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/sealfs/sealfs/server/meta"
)

func testCreateLookup(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	rootV := getInode(t, s, acct, root).Version

	req := createReq(root, "f", meta.TypeFile)
	f, err := s.Create(ctx, acct, req)
	noErr(t, "Create", err)
	if f.ID != req.Inode.ID || f.Type != meta.TypeFile || f.Version != 1 || f.Nlink != 1 ||
		f.Manifest != nil || f.Size != 0 || f.ChangedAt.IsZero() {
		t.Fatalf("created inode = %+v", f)
	}
	wantBytes(t, "attr", f.Attr, req.Inode.Attr)
	e, in := lookup(t, s, acct, root, "f")
	wantEq(t, "entry parent", e.Parent, root)
	wantEq(t, "entry child", e.Child, f.ID)
	wantBytes(t, "entry index", e.NameIndex, idx("f"))
	wantBytes(t, "sealed name", e.SealedName, req.SealedName)
	wantEq(t, "looked-up ID", in.ID, f.ID)
	wantEq(t, "looked-up version", in.Version, int64(1))
	wantBytes(t, "looked-up attr", in.Attr, req.Inode.Attr)
	wantEq(t, "root version after create", getInode(t, s, acct, root).Version, rootV+1)
	wantEq(t, "parent version in the answer", f.ParentVersion, rootV+1)

	d := create(t, s, acct, root, "d", meta.TypeDir)
	wantEq(t, "dir type", getInode(t, s, acct, d.ID).Type, meta.TypeDir)
	l := create(t, s, acct, d.ID, "l", meta.TypeSymlink)
	wantBytes(t, "symlink target", getInode(t, s, acct, l.ID).Symlink, []byte("target:l"))
	_, in = lookup(t, s, acct, d.ID, "l")
	wantBytes(t, "looked-up symlink target", in.Symlink, []byte("target:l"))
	rootV = getInode(t, s, acct, root).Version

	bad := func(what string, target error, mutate func(r *meta.CreateRequest)) {
		t.Helper()
		r := createReq(root, "bad", meta.TypeFile)
		mutate(&r)
		_, err := s.Create(ctx, acct, r)
		wantErr(t, what, err, target)
	}
	bad("missing parent", meta.ErrNotFound, func(r *meta.CreateRequest) { r.Parent = newID() })
	bad("file parent", meta.ErrNotDir, func(r *meta.CreateRequest) { r.Parent = f.ID })
	bad("taken name", meta.ErrExists, func(r *meta.CreateRequest) { r.NameIndex = idx("f") })
	bad("taken ID", meta.ErrExists, func(r *meta.CreateRequest) { r.Inode.ID = d.ID })
	bad("zero ID", meta.ErrInvalid, func(r *meta.CreateRequest) { r.Inode.ID = meta.ID{} })
	bad("short index", meta.ErrInvalid, func(r *meta.CreateRequest) { r.NameIndex = r.NameIndex[:31] })
	bad("empty sealed name", meta.ErrInvalid, func(r *meta.CreateRequest) { r.SealedName = nil })
	bad("huge sealed name", meta.ErrTooLarge, func(r *meta.CreateRequest) { r.SealedName = make([]byte, meta.MaxSealedSize+1) })
	bad("huge attr", meta.ErrTooLarge, func(r *meta.CreateRequest) { r.Inode.Attr = make([]byte, meta.MaxSealedSize+1) })
	bad("bad type", meta.ErrInvalid, func(r *meta.CreateRequest) { r.Inode.Type = 9 })
	bad("symlink without target", meta.ErrInvalid, func(r *meta.CreateRequest) { r.Inode.Type = meta.TypeSymlink })
	bad("file with target", meta.ErrInvalid, func(r *meta.CreateRequest) { r.Inode.Symlink = []byte("t") })
	bad("content for a dir", meta.ErrInvalid, func(r *meta.CreateRequest) {
		r.Inode.Type = meta.TypeDir
		r.Content = &meta.FileContent{Manifest: manifest("kek1", "x")}
	})
	// Failed creates leave no trace.
	wantEq(t, "root version after failures", getInode(t, s, acct, root).Version, rootV)
	_, _, err = s.Lookup(ctx, acct, root, idx("bad"))
	wantErr(t, "failed name", err, meta.ErrNotFound)

	_, _, err = s.Lookup(ctx, acct, root, idx("missing"))
	wantErr(t, "missing name", err, meta.ErrNotFound)
	_, _, err = s.Lookup(ctx, acct, f.ID, idx("x"))
	wantErr(t, "lookup in a file", err, meta.ErrNotDir)
	_, _, err = s.Lookup(ctx, acct, newID(), idx("x"))
	wantErr(t, "lookup in a missing dir", err, meta.ErrNotFound)
	_, _, err = s.Lookup(ctx, acct, root, []byte("short"))
	wantErr(t, "lookup with a bad index", err, meta.ErrInvalid)
	_, err = s.GetInode(ctx, acct, newID())
	wantErr(t, "missing inode", err, meta.ErrNotFound)
}

func testReadDirPaging(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	d := create(t, s, acct, root, "d", meta.TypeDir)
	const n = 1000
	ids := map[string]meta.ID{} // by name index
	reqs := make([]meta.CreateRequest, n)
	for i := range reqs {
		reqs[i] = createReq(d.ID, fmt.Sprintf("file%d", i), meta.TypeFile)
		ids[string(reqs[i].NameIndex)] = reqs[i].Inode.ID
	}
	parallel(t, n, func(i int) error {
		_, err := s.Create(ctx, acct, reqs[i])
		return err
	})

	seen := map[string]bool{}
	var after []byte
	pages := 0
	for {
		page, more, err := s.ReadDir(ctx, acct, d.ID, after, 100)
		noErr(t, "ReadDir", err)
		pages++
		if len(page) > 100 || (more && len(page) != 100) {
			t.Fatalf("page %d has %d entries, more %v", pages, len(page), more)
		}
		for _, de := range page {
			if after != nil && bytes.Compare(de.NameIndex, after) <= 0 {
				t.Fatalf("page %d: index %x not after %x", pages, de.NameIndex, after)
			}
			key := string(de.NameIndex)
			if seen[key] {
				t.Fatalf("duplicate entry %x", de.NameIndex)
			}
			seen[key] = true
			if want, ok := ids[key]; !ok || de.Child != want || de.Inode.ID != want || de.Parent != d.ID {
				t.Fatalf("entry %x: child %x, inode %x, want %x", de.NameIndex, de.Child, de.Inode.ID, want)
			}
			if de.Inode.Type != meta.TypeFile || de.Inode.Version != 1 || len(de.SealedName) == 0 {
				t.Fatalf("entry %x: %+v", de.NameIndex, de)
			}
			after = de.NameIndex
		}
		if !more {
			break
		}
	}
	wantEq(t, "pages", pages, n/100)
	wantEq(t, "entries", len(seen), n)
	wantEq(t, "dir version", getInode(t, s, acct, d.ID).Version, int64(1+n))

	all, more, err := s.ReadDir(ctx, acct, d.ID, nil, 0)
	noErr(t, "ReadDir default limit", err)
	if len(all) != n || more {
		t.Fatalf("default page: %d entries, more %v", len(all), more)
	}
	rest, more, err := s.ReadDir(ctx, acct, d.ID, after, 100)
	noErr(t, "ReadDir past the end", err)
	if len(rest) != 0 || more {
		t.Fatalf("past the end: %d entries, more %v", len(rest), more)
	}
	e := create(t, s, acct, root, "empty", meta.TypeDir)
	empty, more, err := s.ReadDir(ctx, acct, e.ID, nil, 10)
	noErr(t, "ReadDir empty", err)
	if len(empty) != 0 || more {
		t.Fatalf("empty dir: %d entries, more %v", len(empty), more)
	}
	f := create(t, s, acct, root, "f", meta.TypeFile)
	_, _, err = s.ReadDir(ctx, acct, f.ID, nil, 10)
	wantErr(t, "ReadDir of a file", err, meta.ErrNotDir)
	_, _, err = s.ReadDir(ctx, acct, newID(), nil, 10)
	wantErr(t, "ReadDir of a missing dir", err, meta.ErrNotFound)
}

func testHardLinks(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	d := create(t, s, acct, root, "d", meta.TypeDir)
	link := func(parent meta.ID, name string, target meta.ID) (meta.Inode, error) {
		return s.Link(ctx, acct, meta.LinkRequest{Parent: parent, NameIndex: idx(name), SealedName: sealed(parent, name), Target: target})
	}
	dV := getInode(t, s, acct, d.ID).Version
	in, err := link(d.ID, "l1", f.ID)
	noErr(t, "Link", err)
	if in.Nlink != 2 || in.Version != 2 || in.ID != f.ID {
		t.Fatalf("after one link: %+v", in)
	}
	wantEq(t, "dir version after link", getInode(t, s, acct, d.ID).Version, dV+1)
	in, err = link(root, "l2", f.ID)
	noErr(t, "Link", err)
	wantEq(t, "nlink", in.Nlink, int64(3))
	e, in := lookup(t, s, acct, d.ID, "l1")
	wantEq(t, "link child", e.Child, f.ID)
	wantEq(t, "nlink by lookup", in.Nlink, int64(3))

	_, err = link(root, "dl", d.ID)
	wantErr(t, "link to a dir", err, meta.ErrNotPermitted)
	_, err = link(root, "l2", f.ID)
	wantErr(t, "link onto a taken name", err, meta.ErrExists)
	_, err = link(root, "x", newID())
	wantErr(t, "link to a missing inode", err, meta.ErrNotFound)
	_, err = link(f.ID, "x", f.ID)
	wantErr(t, "link into a file", err, meta.ErrNotDir)
	wantEq(t, "nlink after failures", getInode(t, s, acct, f.ID).Nlink, int64(3))

	noErr(t, "Unlink f", s.Unlink(ctx, acct, root, idx("f"), meta.UnlinkFile))
	wantEq(t, "nlink", getInode(t, s, acct, f.ID).Nlink, int64(2))
	noErr(t, "Unlink l1", s.Unlink(ctx, acct, d.ID, idx("l1"), meta.UnlinkFile))
	in = getInode(t, s, acct, f.ID)
	wantEq(t, "nlink", in.Nlink, int64(1))
	noErr(t, "Unlink l2", s.Unlink(ctx, acct, root, idx("l2"), meta.UnlinkFile))
	_, err = s.GetInode(ctx, acct, f.ID)
	wantErr(t, "inode after its last unlink", err, meta.ErrNotFound)
}

func testUnlinkRmdir(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	d := create(t, s, acct, root, "d", meta.TypeDir)
	x := create(t, s, acct, d.ID, "x", meta.TypeFile)
	l := create(t, s, acct, root, "l", meta.TypeSymlink)
	unlink := func(parent meta.ID, name string, mode meta.UnlinkMode) error {
		return s.Unlink(ctx, acct, parent, idx(name), mode)
	}
	rootV := getInode(t, s, acct, root).Version
	wantErr(t, "rmdir non-empty", unlink(root, "d", meta.UnlinkDir), meta.ErrNotEmpty)
	wantErr(t, "unlink a dir", unlink(root, "d", meta.UnlinkFile), meta.ErrIsDir)
	wantErr(t, "rmdir a file", unlink(d.ID, "x", meta.UnlinkDir), meta.ErrNotDir)
	wantErr(t, "unlink a missing name", unlink(root, "nope", meta.UnlinkFile), meta.ErrNotFound)
	wantErr(t, "unlink in a missing dir", s.Unlink(ctx, acct, newID(), idx("x"), meta.UnlinkFile), meta.ErrNotFound)
	wantErr(t, "unlink in a file", unlink(x.ID, "x", meta.UnlinkFile), meta.ErrNotDir)
	wantErr(t, "bad mode", unlink(root, "d", 7), meta.ErrInvalid)
	wantEq(t, "root version after failures", getInode(t, s, acct, root).Version, rootV)

	dV := getInode(t, s, acct, d.ID).Version
	noErr(t, "unlink x", unlink(d.ID, "x", meta.UnlinkFile))
	wantEq(t, "dir version after unlink", getInode(t, s, acct, d.ID).Version, dV+1)
	_, err := s.GetInode(ctx, acct, x.ID)
	wantErr(t, "unlinked file", err, meta.ErrNotFound)
	noErr(t, "rmdir d", unlink(root, "d", meta.UnlinkDir))
	_, err = s.GetInode(ctx, acct, d.ID)
	wantErr(t, "removed dir", err, meta.ErrNotFound)
	noErr(t, "unlink symlink", unlink(root, "l", meta.UnlinkFile))
	_, err = s.GetInode(ctx, acct, l.ID)
	wantErr(t, "unlinked symlink", err, meta.ErrNotFound)
	wantEq(t, "root version", getInode(t, s, acct, root).Version, rootV+2)
	page, _, err := s.ReadDir(ctx, acct, root, nil, 10)
	noErr(t, "ReadDir", err)
	wantEq(t, "root entries", len(page), 0)
	getInode(t, s, acct, root) // the root survives everything
}

func testSetAttr(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	in, err := s.SetAttr(ctx, acct, f.ID, 1, []byte("a2"))
	noErr(t, "SetAttr", err)
	wantEq(t, "version", in.Version, int64(2))
	wantBytes(t, "attr", in.Attr, []byte("a2"))
	_, err = s.SetAttr(ctx, acct, f.ID, 1, []byte("a3"))
	wantErr(t, "stale SetAttr", err, meta.ErrVersionMismatch)
	in = getInode(t, s, acct, f.ID)
	wantEq(t, "version after 412", in.Version, int64(2))
	wantBytes(t, "attr after 412", in.Attr, []byte("a2"))
	in, err = s.SetAttr(ctx, acct, f.ID, 0, []byte("a4"))
	noErr(t, "unconditional SetAttr", err)
	wantEq(t, "version", in.Version, int64(3))
	wantBytes(t, "stored attr", getInode(t, s, acct, f.ID).Attr, []byte("a4"))
	in, err = s.SetAttr(ctx, acct, root, 0, []byte("rootattr2"))
	noErr(t, "SetAttr on the root", err)
	wantEq(t, "root type kept", in.Type, meta.TypeDir)
	_, err = s.SetAttr(ctx, acct, newID(), 0, nil)
	wantErr(t, "SetAttr missing", err, meta.ErrNotFound)
	_, err = s.SetAttr(ctx, acct, f.ID, 0, make([]byte, meta.MaxSealedSize+1))
	wantErr(t, "SetAttr huge", err, meta.ErrTooLarge)
}

func testSetXattrs(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	wantEq(t, "xattrs of a new inode", len(f.Xattrs), 0)
	in, err := s.SetXattrs(ctx, acct, f.ID, 1, []byte("x1"))
	noErr(t, "SetXattrs", err)
	wantEq(t, "version", in.Version, int64(2))
	wantBytes(t, "xattrs", in.Xattrs, []byte("x1"))
	_, err = s.SetXattrs(ctx, acct, f.ID, 1, []byte("x2"))
	wantErr(t, "stale SetXattrs", err, meta.ErrVersionMismatch)
	got := getInode(t, s, acct, f.ID)
	wantBytes(t, "stored xattrs", got.Xattrs, []byte("x1"))
	wantBytes(t, "attr untouched", got.Attr, f.Attr)
	in, err = s.SetXattrs(ctx, acct, f.ID, 0, nil)
	noErr(t, "removing all", err)
	wantEq(t, "xattrs removed", len(getInode(t, s, acct, f.ID).Xattrs), 0)
	wantEq(t, "version", in.Version, int64(3))
	_, err = s.SetXattrs(ctx, acct, newID(), 0, []byte("x"))
	wantErr(t, "SetXattrs missing", err, meta.ErrNotFound)
	_, err = s.SetXattrs(ctx, acct, f.ID, 0, make([]byte, meta.MaxXattrsSize+1))
	wantErr(t, "SetXattrs huge", err, meta.ErrTooLarge)
	bob := newAccount(t, s, "bob").ID
	_, err = s.SetXattrs(ctx, bob, f.ID, 0, []byte("x"))
	wantErr(t, "SetXattrs of another account's inode", err, meta.ErrNotFound)
}

func testCancelled(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	_, err := s.Create(ctxCancelled(t), acct, createReq(root, "f", meta.TypeFile))
	wantErr(t, "cancelled Create", err, context.Canceled)
	_, _, err = s.Lookup(t.Context(), acct, root, idx("f"))
	wantErr(t, "name of cancelled Create", err, meta.ErrNotFound)
}

func testClosed(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	noErr(t, "Close", s.Close())
	_, err := s.Create(t.Context(), acct, createReq(root, "f", meta.TypeFile))
	wantErr(t, "Create after Close", err, meta.ErrClosed)
	_, err = s.GetInode(t.Context(), acct, root)
	wantErr(t, "GetInode after Close", err, meta.ErrClosed)
}
