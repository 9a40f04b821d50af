package metatest

import (
	"testing"

	"github.com/sealfs/sealfs/server/meta"
)

// testIsolation checks that an account cannot see or touch another's
// objects, even knowing their IDs, and cannot learn that they exist: every
// attempt is ErrNotFound (or a plain miss), never ErrExists or ErrNotDir.
func testIsolation(t *testing.T, s meta.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "alice").ID
	b := newAccount(t, s, "bob").ID
	d := create(t, s, a, root, "d", meta.TypeDir)
	f := create(t, s, a, d.ID, "f", meta.TypeFile)
	c := putChunk(t, s, a, f.ID, 0, 10)
	m := manifest("kek1", "alice")
	f = commit(t, s, a, f.ID, m, c)

	_, err := s.GetInode(ctx, b, f.ID)
	wantErr(t, "GetInode", err, meta.ErrNotFound)
	_, err = s.GetInode(ctx, b, d.ID)
	wantErr(t, "GetInode dir", err, meta.ErrNotFound)
	_, _, err = s.Lookup(ctx, b, d.ID, idx("f"))
	wantErr(t, "Lookup in a foreign dir", err, meta.ErrNotFound)
	_, _, err = s.Lookup(ctx, b, f.ID, idx("f"))
	wantErr(t, "Lookup in a foreign file", err, meta.ErrNotFound)
	_, _, err = s.ReadDir(ctx, b, d.ID, nil, 10)
	wantErr(t, "ReadDir", err, meta.ErrNotFound)
	_, err = s.Create(ctx, b, createReq(d.ID, "x", meta.TypeFile))
	wantErr(t, "Create in a foreign dir", err, meta.ErrNotFound)
	_, err = s.Link(ctx, b, meta.LinkRequest{Parent: root, NameIndex: idx("x"), SealedName: sealed(root, "x"), Target: f.ID})
	wantErr(t, "Link to a foreign file", err, meta.ErrNotFound)
	_, err = s.Link(ctx, b, meta.LinkRequest{Parent: d.ID, NameIndex: idx("x"), SealedName: sealed(d.ID, "x"), Target: f.ID})
	wantErr(t, "Link in a foreign dir", err, meta.ErrNotFound)
	wantErr(t, "Unlink", s.Unlink(ctx, b, d.ID, idx("f"), meta.UnlinkFile), meta.ErrNotFound)
	wantErr(t, "Unlink a foreign dir", s.Unlink(ctx, b, root, idx("d"), meta.UnlinkDir), meta.ErrNotFound)
	_, err = s.SetAttr(ctx, b, f.ID, 0, []byte("mine"))
	wantErr(t, "SetAttr", err, meta.ErrNotFound)
	_, err = s.Commit(ctx, b, meta.CommitRequest{File: f.ID, Manifest: manifest("kek1", "bob")})
	wantErr(t, "Commit to a foreign file", err, meta.ErrNotFound)
	_, err = s.GetChunk(ctx, b, c.ID)
	wantErr(t, "GetChunk", err, meta.ErrNotFound)
	have, err := s.HaveChunks(ctx, b, []meta.ID{c.ID})
	noErr(t, "HaveChunks", err)
	wantEq(t, "HaveChunks of a foreign chunk", have[0], false)
	deleted, err := s.DeleteChunk(ctx, b, c.ID)
	noErr(t, "DeleteChunk", err)
	wantEq(t, "deleted a foreign chunk", deleted, false)

	r := renamer{t, s, b}
	wantErr(t, "Rename out of a foreign dir", r.rename(meta.RenameReplace, d.ID, "f", root, "stolen"), meta.ErrNotFound)
	create(t, s, b, root, "mine", meta.TypeFile)
	wantErr(t, "Rename into a foreign dir", r.rename(meta.RenameReplace, root, "mine", d.ID, "planted"), meta.ErrNotFound)
	wantErr(t, "Rename of a foreign root entry", r.rename(meta.RenameReplace, root, "d", root, "d2"), meta.ErrNotFound)

	// Bob's own file cannot use Alice's chunk.
	g := create(t, s, b, root, "g", meta.TypeFile)
	_, err = s.Commit(ctx, b, meta.CommitRequest{File: g.ID, Manifest: manifest("kek1", "bob"), Chunks: positions(c)})
	wantErr(t, "Commit with a foreign chunk", err, meta.ErrMissingChunks)

	// IDs are per account: Bob can use the same ones without learning
	// anything, and without disturbing Alice.
	same := chunkRec(g.ID, 0, 3)
	same.ID = c.ID
	_, created, err := s.PutChunk(ctx, b, same)
	noErr(t, "PutChunk with a foreign chunk's ID", err)
	wantEq(t, "created", created, true)
	req := createReq(root, "twin", meta.TypeFile)
	req.Inode.ID = f.ID
	_, err = s.Create(ctx, b, req)
	noErr(t, "Create with a foreign inode's ID", err)

	// Alice's view is untouched.
	in := getInode(t, s, a, f.ID)
	if in.Version != f.Version || in.Size != 10 {
		t.Fatalf("Alice's file changed: %+v", in)
	}
	wantSealed(t, "Alice's manifest", in.Manifest, m)
	e, _ := lookup(t, s, a, d.ID, "f")
	wantEq(t, "Alice's entry", e.Child, f.ID)
	ac, err := s.GetChunk(ctx, a, c.ID)
	noErr(t, "Alice's chunk", err)
	wantEq(t, "Alice's chunk size", ac.Size, int64(10))
	wantEq(t, "Alice's usage", usedBytes(t, s, a), int64(10))
	wantEq(t, "Bob's usage", usedBytes(t, s, b), int64(3))
	page, _, err := s.ReadDir(ctx, a, root, nil, 10)
	noErr(t, "ReadDir", err)
	wantEq(t, "Alice's root entries", len(page), 1)
	page, _, err = s.ReadDir(ctx, b, root, nil, 10)
	noErr(t, "ReadDir", err)
	wantEq(t, "Bob's root entries", len(page), 3)
}
