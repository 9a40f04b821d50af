package metatest

import (
	"errors"
	"slices"
	"testing"

	"github.com/sealfs/sealfs/server/meta"
)

func testPutChunk(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	file := newID()
	want := chunkRec(file, 3, 100)
	want.MAC = []byte("0123456789abcdef0123456789abcdef")
	c, created, err := s.PutChunk(ctx, acct, want)
	noErr(t, "PutChunk", err)
	if !created || c.CreatedAt.IsZero() {
		t.Fatalf("PutChunk: created %v, %+v", created, c)
	}
	got, err := s.GetChunk(ctx, acct, want.ID)
	noErr(t, "GetChunk", err)
	if got.ID != want.ID || got.File != file || got.Index != 3 || got.Size != 100 || got.BlobKey != want.BlobKey ||
		got.KEKID != want.KEKID || string(got.WrappedKey) != string(want.WrappedKey) || !got.CreatedAt.Equal(c.CreatedAt) ||
		string(got.MAC) != string(want.MAC) {
		t.Fatalf("GetChunk = %+v, want %+v", got, want)
	}

	// A retry (the response to the first upload was lost) is a success
	// that returns the record stored first, and charges nothing.
	retry := want
	retry.BlobKey, retry.WrappedKey = "blob/retry", []byte("dk2")
	c, created, err = s.PutChunk(ctx, acct, retry)
	noErr(t, "PutChunk retry", err)
	if created || c.BlobKey != want.BlobKey {
		t.Fatalf("retry: created %v, blob key %q, want the first %q", created, c.BlobKey, want.BlobKey)
	}
	wantEq(t, "used bytes", usedBytes(t, s, acct), int64(100))
	conflict := want
	conflict.Index = 4
	_, _, err = s.PutChunk(ctx, acct, conflict)
	wantErr(t, "same ID, other position", err, meta.ErrExists)
	conflict = want
	conflict.Size = 101
	_, _, err = s.PutChunk(ctx, acct, conflict)
	wantErr(t, "same ID, other size", err, meta.ErrExists)

	missing := newID()
	have, err := s.HaveChunks(ctx, acct, []meta.ID{want.ID, missing, want.ID})
	noErr(t, "HaveChunks", err)
	if !slices.Equal(have, []bool{true, false, true}) {
		t.Fatalf("HaveChunks = %v", have)
	}
	_, err = s.GetChunk(ctx, acct, missing)
	wantErr(t, "GetChunk missing", err, meta.ErrNotFound)

	bad := func(what string, target error, mutate func(c *meta.ChunkRecord)) {
		t.Helper()
		c := chunkRec(file, 0, 1)
		mutate(&c)
		_, _, err := s.PutChunk(ctx, acct, c)
		wantErr(t, what, err, target)
	}
	bad("no blob key", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.BlobKey = "" })
	bad("no KEK", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.KEKID = "" })
	bad("no wrapped key", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.WrappedKey = nil })
	bad("negative size", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.Size = -1 })
	bad("huge index", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.Index = 1 << 63 })
	_, _, err = s.PutChunk(ctx, acct+1000, chunkRec(file, 0, 1))
	wantErr(t, "unknown account", err, meta.ErrNotFound)
	wantEq(t, "used bytes after failures", usedBytes(t, s, acct), int64(100))
}

func testQuota(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	noErr(t, "SetQuota", s.SetQuota(ctx, "alice", 100))
	file := newID()
	putChunk(t, s, acct, file, 0, 60)
	over := chunkRec(file, 1, 50)
	_, _, err := s.PutChunk(ctx, acct, over)
	wantErr(t, "over quota", err, meta.ErrQuota)
	_, err = s.GetChunk(ctx, acct, over.ID)
	wantErr(t, "chunk refused for quota", err, meta.ErrNotFound)
	wantEq(t, "used after refusal", usedBytes(t, s, acct), int64(60))
	putChunk(t, s, acct, file, 2, 40) // exactly at the quota
	wantEq(t, "used at quota", usedBytes(t, s, acct), int64(100))
	_, _, err = s.PutChunk(ctx, acct, chunkRec(file, 3, 1))
	wantErr(t, "one byte over", err, meta.ErrQuota)
	putChunk(t, s, acct, file, 4, 0) // empty chunks always fit
	noErr(t, "lift quota", s.SetQuota(ctx, "alice", 0))
	putChunk(t, s, acct, file, 5, 1000)
	wantEq(t, "used without quota", usedBytes(t, s, acct), int64(1100))
	noErr(t, "quota below usage", s.SetQuota(ctx, "alice", 500))
	_, _, err = s.PutChunk(ctx, acct, chunkRec(file, 6, 1))
	wantErr(t, "quota below usage", err, meta.ErrQuota)
}

func testCommit(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	c0 := putChunk(t, s, acct, f.ID, 0, 10)
	c1 := putChunk(t, s, acct, f.ID, 1, 20)
	m1 := manifest("kek1", "v1")
	in, err := s.Commit(ctx, acct, meta.CommitRequest{File: f.ID, IfVersion: 1, Manifest: m1, Attr: []byte("a2"),
		Chunks: positions(c0, c1)})
	noErr(t, "Commit", err)
	if in.Version != 2 || in.Size != 30 || in.Nlink != 1 || in.Type != meta.TypeFile {
		t.Fatalf("committed inode = %+v", in)
	}
	wantSealed(t, "manifest", in.Manifest, m1)
	wantBytes(t, "attr", in.Attr, []byte("a2"))
	stored := getInode(t, s, acct, f.ID)
	wantEq(t, "stored version", stored.Version, int64(2))
	wantEq(t, "stored size", stored.Size, int64(30))
	wantSealed(t, "stored manifest", stored.Manifest, m1)

	unchanged := func(what string) {
		t.Helper()
		in := getInode(t, s, acct, f.ID)
		if in.Version != 2 || in.Size != 30 {
			t.Fatalf("%s: inode changed to %+v", what, in)
		}
		wantSealed(t, what+": manifest", in.Manifest, m1)
		wantBytes(t, what+": attr", in.Attr, []byte("a2"))
		g := garbage(t, s)
		if _, ok := g[c0.ID]; ok {
			t.Fatalf("%s: chunk of the committed version is garbage", what)
		}
		if _, ok := g[c1.ID]; ok {
			t.Fatalf("%s: chunk of the committed version is garbage", what)
		}
	}
	_, err = s.Commit(ctx, acct, meta.CommitRequest{File: f.ID, IfVersion: 1, Manifest: manifest("kek1", "late"), Chunks: positions(c0)})
	wantErr(t, "stale commit", err, meta.ErrVersionMismatch)
	unchanged("after a 412")

	gone1, gone2 := newID(), newID()
	_, err = s.Commit(ctx, acct, meta.CommitRequest{File: f.ID, Manifest: manifest("kek1", "bad"), Chunks: []meta.ChunkPos{
		{Index: 0, ID: gone1}, {Index: 1, ID: c0.ID}, {Index: 2, ID: gone2}, {Index: 3, ID: gone1}}})
	wantErr(t, "missing chunks", err, meta.ErrMissingChunks)
	var mce *meta.MissingChunksError
	if !errors.As(err, &mce) {
		t.Fatalf("missing chunks error is %T, want *MissingChunksError", err)
	}
	if len(mce.IDs) != 2 || !slices.Contains(mce.IDs, gone1) || !slices.Contains(mce.IDs, gone2) {
		t.Fatalf("MissingChunksError.IDs = %x, want %x and %x once each", mce.IDs, gone1, gone2)
	}
	unchanged("after missing chunks")

	// nil Attr keeps the attributes; dropping c1 makes it garbage.
	m2 := manifest("kek1", "v2")
	in = commit(t, s, acct, f.ID, m2, c0)
	if in.Version != 3 || in.Size != 10 {
		t.Fatalf("second commit = %+v", in)
	}
	wantBytes(t, "kept attr", in.Attr, []byte("a2"))
	g := garbage(t, s)
	if _, ok := g[c1.ID]; !ok {
		t.Fatal("dropped chunk is not garbage")
	}
	if _, ok := g[c0.ID]; ok {
		t.Fatal("kept chunk is garbage")
	}

	// One chunk at two positions counts twice, like the bytes of the file.
	in, err = s.Commit(ctx, acct, meta.CommitRequest{File: f.ID, Manifest: m2,
		Chunks: []meta.ChunkPos{{Index: 0, ID: c0.ID}, {Index: 1, ID: c0.ID}}})
	noErr(t, "Commit with a repeated chunk", err)
	wantEq(t, "size with a repeated chunk", in.Size, int64(20))
	in = commit(t, s, acct, f.ID, manifest("kek1", "empty"))
	wantEq(t, "size of an empty version", in.Size, int64(0))
	if _, ok := garbage(t, s)[c0.ID]; !ok {
		t.Fatal("chunk of an emptied file is not garbage")
	}

	d := create(t, s, acct, root, "d", meta.TypeDir)
	l := create(t, s, acct, root, "l", meta.TypeSymlink)
	commitTo := func(id meta.ID, m meta.Sealed, chunks []meta.ChunkPos) error {
		_, err := s.Commit(ctx, acct, meta.CommitRequest{File: id, Manifest: m, Chunks: chunks})
		return err
	}
	wantErr(t, "commit to a dir", commitTo(d.ID, m2, nil), meta.ErrIsDir)
	wantErr(t, "commit to a symlink", commitTo(l.ID, m2, nil), meta.ErrInvalid)
	wantErr(t, "commit to nothing", commitTo(newID(), m2, nil), meta.ErrNotFound)
	wantErr(t, "repeated index", commitTo(f.ID, m2, []meta.ChunkPos{{Index: 0, ID: c0.ID}, {Index: 0, ID: c1.ID}}), meta.ErrInvalid)
	wantErr(t, "manifest without KEK", commitTo(f.ID, meta.Sealed{Data: []byte("m")}, nil), meta.ErrInvalid)
	wantErr(t, "empty manifest", commitTo(f.ID, meta.Sealed{KEKID: "k", WrappedKey: []byte("w")}, nil), meta.ErrInvalid)
}

func testCommitLarge(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "big", meta.TypeFile)
	const n = 3000
	chunks := putChunks(t, s, acct, f.ID, n, 7)
	in := commit(t, s, acct, f.ID, manifest("kek1", "v1"), chunks...)
	wantEq(t, "size", in.Size, int64(7*n))
	if g := garbage(t, s); len(g) != 0 {
		t.Fatalf("%d chunks are garbage after committing all of them", len(g))
	}

	// Rewrite one chunk: exactly the old one becomes garbage.
	replacement := putChunk(t, s, acct, f.ID, 1500, 9)
	v2 := slices.Clone(chunks)
	v2[1500] = replacement
	in = commit(t, s, acct, f.ID, manifest("kek1", "v2"), v2...)
	wantEq(t, "size after rewrite", in.Size, int64(7*n+2))
	g := garbage(t, s)
	if _, ok := g[chunks[1500].ID]; len(g) != 1 || !ok {
		t.Fatalf("garbage after rewriting one chunk: %d chunks", len(g))
	}

	// Truncate to 100 chunks: the other 2900 and the replacement go.
	in = commit(t, s, acct, f.ID, manifest("kek1", "v3"), v2[:100]...)
	wantEq(t, "size after truncation", in.Size, int64(700))
	g = garbage(t, s)
	wantEq(t, "garbage after truncation", len(g), n-100+1)
	for _, c := range v2[:100] {
		if _, ok := g[c.ID]; ok {
			t.Fatalf("kept chunk %x is garbage", c.ID)
		}
	}
	if _, ok := g[replacement.ID]; !ok {
		t.Fatal("truncated replacement is not garbage")
	}
}

func testCreateWithContent(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	rootV := getInode(t, s, acct, root).Version
	file := newID()
	c := putChunk(t, s, acct, file, 0, 42)
	m := manifest("kek1", "small")
	req := createReq(root, "small", meta.TypeFile)
	req.Inode.ID = file
	req.Content = &meta.FileContent{Manifest: m, Chunks: positions(c)}
	in, err := s.Create(ctx, acct, req)
	noErr(t, "Create with content", err)
	if in.Version != 1 || in.Size != 42 {
		t.Fatalf("created inode = %+v", in)
	}
	wantSealed(t, "manifest", in.Manifest, m)
	_, in = lookup(t, s, acct, root, "small")
	wantSealed(t, "looked-up manifest", in.Manifest, m)
	wantEq(t, "looked-up size", in.Size, int64(42))
	if _, ok := garbage(t, s)[c.ID]; ok {
		t.Fatal("chunk of a created file is garbage")
	}
	wantEq(t, "root version", getInode(t, s, acct, root).Version, rootV+1)

	req = createReq(root, "broken", meta.TypeFile)
	req.Content = &meta.FileContent{Manifest: m, Chunks: []meta.ChunkPos{{Index: 0, ID: c.ID}, {Index: 1, ID: newID()}}}
	_, err = s.Create(ctx, acct, req)
	wantErr(t, "create with a missing chunk", err, meta.ErrMissingChunks)
	_, _, err = s.Lookup(ctx, acct, root, idx("broken"))
	wantErr(t, "name of a failed create", err, meta.ErrNotFound)
	_, err = s.GetInode(ctx, acct, req.Inode.ID)
	wantErr(t, "inode of a failed create", err, meta.ErrNotFound)
	wantEq(t, "root version after a failed create", getInode(t, s, acct, root).Version, rootV+1)
}

// testNewChunksInCommit checks chunks recorded in the same transaction as
// the create or commit that references them: the one-request small file.
func testNewChunksInCommit(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	file := newID()
	c := chunkRec(file, 0, 42)
	req := createReq(root, "small", meta.TypeFile)
	req.Inode.ID = file
	req.Content = &meta.FileContent{Manifest: manifest("kek1", "v1"), Chunks: positions(c), NewChunks: []meta.ChunkRecord{c}}
	in, err := s.Create(ctx, acct, req)
	noErr(t, "Create with a new chunk", err)
	wantEq(t, "size", in.Size, int64(42))
	got, err := s.GetChunk(ctx, acct, c.ID)
	noErr(t, "GetChunk of a chunk recorded by Create", err)
	wantEq(t, "blob key", got.BlobKey, c.BlobKey)
	wantEq(t, "used bytes", usedBytes(t, s, acct), int64(42))

	c2 := chunkRec(file, 0, 50)
	in, err = s.Commit(ctx, acct, meta.CommitRequest{File: file, IfVersion: in.Version, Manifest: manifest("kek1", "v2"),
		Chunks: positions(c2), NewChunks: []meta.ChunkRecord{c2}})
	noErr(t, "Commit with a new chunk", err)
	wantEq(t, "size after commit", in.Size, int64(50))

	// A failing commit records none of its new chunks.
	c3 := chunkRec(file, 0, 60)
	_, err = s.Commit(ctx, acct, meta.CommitRequest{File: file, IfVersion: in.Version - 1, Manifest: manifest("kek1", "v3"),
		Chunks: positions(c3), NewChunks: []meta.ChunkRecord{c3}})
	wantErr(t, "stale commit with a new chunk", err, meta.ErrVersionMismatch)
	_, err = s.GetChunk(ctx, acct, c3.ID)
	wantErr(t, "chunk of a failed commit", err, meta.ErrNotFound)

	// The same chunk ID with another blob key is refused, so the caller
	// knows its blob is not referenced.
	dup := c2
	dup.BlobKey = "0123456789abcdef0123456789abcdef"
	_, err = s.Commit(ctx, acct, meta.CommitRequest{File: file, Manifest: manifest("kek1", "v4"),
		Chunks: positions(dup), NewChunks: []meta.ChunkRecord{dup}})
	wantErr(t, "new chunk already stored under another blob", err, meta.ErrExists)
}
