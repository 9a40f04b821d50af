package metatest

import (
	"bytes"
	"testing"

	"github.com/sealfs/sealfs/server/meta"
)

// inlineRec is a chunk record whose bytes are kept in the store itself.
func inlineRec(file meta.ID, index uint64, size int64) meta.ChunkRecord {
	id := newID()
	return meta.ChunkRecord{ID: id, File: file, Index: index, Size: size,
		Inline: append([]byte("sealed:"), bytes.Repeat([]byte{byte(index)}, int(size))...), KEKID: "kek1", WrappedKey: []byte("dk")}
}

func putInline(t *testing.T, s meta.Store, acct int64, file meta.ID, index uint64, size int64) meta.ChunkRecord {
	t.Helper()
	c, created, err := s.PutChunk(t.Context(), acct, inlineRec(file, index, size))
	if err != nil || !created {
		t.Fatalf("PutChunk inline: created %v, %v", created, err)
	}
	return c
}

// wantChunk checks a record read back against the one stored.
func wantChunk(t *testing.T, what string, got, want meta.ChunkRecord) {
	t.Helper()
	if got.ID != want.ID || got.File != want.File || got.Index != want.Index || got.Size != want.Size ||
		got.BlobKey != want.BlobKey || !bytes.Equal(got.Inline, want.Inline) || got.KEKID != want.KEKID ||
		!bytes.Equal(got.WrappedKey, want.WrappedKey) {
		t.Fatalf("%s = %+v, want %+v", what, got, want)
	}
}

// testInlineChunks checks chunks whose value the store keeps: recorded,
// read back, validated, counted and collected like blob chunks.
func testInlineChunks(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	file := newID()
	want := inlineRec(file, 2, 100)
	c, created, err := s.PutChunk(ctx, acct, want)
	noErr(t, "PutChunk inline", err)
	if !created || c.CreatedAt.IsZero() {
		t.Fatalf("PutChunk inline: created %v, %+v", created, c)
	}
	got, err := s.GetChunk(ctx, acct, want.ID)
	noErr(t, "GetChunk inline", err)
	wantChunk(t, "GetChunk inline", got, want)
	if got.BlobKey != "" {
		t.Fatalf("an inline chunk reads back with blob key %q", got.BlobKey)
	}
	wantEq(t, "used bytes", usedBytes(t, s, acct), int64(100))

	// A retry returns the value stored first and charges nothing.
	retry := want
	retry.Inline, retry.WrappedKey = []byte("sealed again"), []byte("dk2")
	c, created, err = s.PutChunk(ctx, acct, retry)
	noErr(t, "PutChunk inline retry", err)
	if created {
		t.Fatal("an inline retry created a chunk")
	}
	wantChunk(t, "inline retry", c, want)
	wantEq(t, "used bytes after retry", usedBytes(t, s, acct), int64(100))
	have, err := s.HaveChunks(ctx, acct, []meta.ID{want.ID})
	noErr(t, "HaveChunks", err)
	wantEq(t, "HaveChunks of an inline chunk", have[0], true)

	bad := func(what string, target error, mutate func(c *meta.ChunkRecord)) {
		t.Helper()
		c := inlineRec(file, 0, 1)
		mutate(&c)
		_, _, err := s.PutChunk(ctx, acct, c)
		wantErr(t, what, err, target)
		_, err = s.GetChunk(ctx, acct, c.ID)
		wantErr(t, what+": stored anyway", err, meta.ErrNotFound)
	}
	bad("blob key and inline value", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.BlobKey = "blob/both" })
	bad("neither blob key nor inline value", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.Inline = nil })
	bad("empty inline value", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.Inline = []byte{} })
	bad("inline value too large", meta.ErrTooLarge, func(c *meta.ChunkRecord) { c.Inline = make([]byte, meta.MaxInlineSize+1) })
	bad("inline chunk without wrapped key", meta.ErrInvalid, func(c *meta.ChunkRecord) { c.WrappedKey = nil })
	max := inlineRec(file, 7, 9)
	max.Inline = bytes.Repeat([]byte{0xa5}, meta.MaxInlineSize)
	_, _, err = s.PutChunk(ctx, acct, max)
	noErr(t, "PutChunk of the largest inline value", err)
	got, err = s.GetChunk(ctx, acct, max.ID)
	noErr(t, "GetChunk of the largest inline value", err)
	wantChunk(t, "largest inline value", got, max)

	// Blob and inline chunks side by side in one file version; listing
	// returns both kinds whole.
	blobChunk := putChunk(t, s, acct, file, 1, 30)
	f := create(t, s, acct, root, "f", meta.TypeFile)
	in, err := s.Commit(ctx, acct, meta.CommitRequest{File: f.ID, Manifest: manifest("kek1", "v1"),
		Chunks: []meta.ChunkPos{{Index: 0, ID: blobChunk.ID}, {Index: 1, ID: want.ID}}})
	noErr(t, "Commit of blob and inline chunks", err)
	wantEq(t, "size of a mixed version", in.Size, int64(130))
	listed := map[meta.ID]meta.StoredChunk{}
	var after meta.RowKey
	for {
		page, err := s.ListChunks(ctx, after, 2)
		noErr(t, "ListChunks", err)
		for _, c := range page {
			listed[c.ID] = c
			after = c.Key()
		}
		if len(page) < 2 {
			break
		}
	}
	wantEq(t, "chunks listed", len(listed), 3)
	wantChunk(t, "listed inline chunk", listed[want.ID].ChunkRecord, want)
	wantChunk(t, "listed blob chunk", listed[blobChunk.ID].ChunkRecord, blobChunk)

	// Garbage: the unreferenced inline chunk is listed with its value and
	// deleted with its record, crediting its size back.
	g := garbage(t, s)
	if _, ok := g[want.ID]; ok || len(g) != 1 {
		t.Fatalf("garbage = %v, want only the unreferenced chunk %x", g, max.ID)
	}
	wantChunk(t, "garbage inline chunk", g[max.ID].ChunkRecord, max)
	deleted, err := s.DeleteChunk(ctx, acct, max.ID)
	noErr(t, "DeleteChunk inline", err)
	wantEq(t, "deleted inline garbage", deleted, true)
	wantEq(t, "used bytes after GC", usedBytes(t, s, acct), int64(130))
	noErr(t, "Unlink", s.Unlink(ctx, acct, root, idx("f"), meta.UnlinkFile))
	for id := range garbage(t, s) {
		deleted, err := s.DeleteChunk(ctx, acct, id)
		noErr(t, "DeleteChunk", err)
		wantEq(t, "deleted", deleted, true)
	}
	_, err = s.GetChunk(ctx, acct, want.ID)
	wantErr(t, "collected inline chunk", err, meta.ErrNotFound)
	wantEq(t, "used bytes with nothing stored", usedBytes(t, s, acct), int64(0))
}

// testInlineInCommit checks inline chunks recorded by the create or commit
// that references them: a small file in one transaction.
func testInlineInCommit(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	file := newID()
	c := inlineRec(file, 0, 42)
	req := createReq(root, "small", meta.TypeFile)
	req.Inode.ID = file
	req.Content = &meta.FileContent{Manifest: manifest("kek1", "v1"), Chunks: positions(c), NewChunks: []meta.ChunkRecord{c}}
	in, err := s.Create(ctx, acct, req)
	noErr(t, "Create with a new inline chunk", err)
	wantEq(t, "size", in.Size, int64(42))
	got, err := s.GetChunk(ctx, acct, c.ID)
	noErr(t, "GetChunk of an inline chunk recorded by Create", err)
	wantChunk(t, "inline chunk recorded by Create", got, c)
	wantEq(t, "used bytes", usedBytes(t, s, acct), int64(42))

	// The same chunk again (a concurrent identical upload won): nothing
	// is orphaned, so the commit goes through with the stored value.
	again := c
	again.Inline, again.WrappedKey = []byte("sealed again"), []byte("dk2")
	in, err = s.Commit(ctx, acct, meta.CommitRequest{File: file, IfVersion: in.Version, Manifest: manifest("kek1", "v2"),
		Chunks: positions(again), NewChunks: []meta.ChunkRecord{again}})
	noErr(t, "Commit with an inline chunk already stored", err)
	got, err = s.GetChunk(ctx, acct, c.ID)
	noErr(t, "GetChunk", err)
	wantChunk(t, "inline chunk after a second record", got, c)
	wantEq(t, "used bytes after a second record", usedBytes(t, s, acct), int64(42))

	// A blob for a chunk stored inline is refused, so its caller deletes
	// the blob.
	dup := c
	dup.Inline, dup.BlobKey = nil, "0123456789abcdef0123456789abcdef"
	_, err = s.Commit(ctx, acct, meta.CommitRequest{File: file, Manifest: manifest("kek1", "v3"),
		Chunks: positions(dup), NewChunks: []meta.ChunkRecord{dup}})
	wantErr(t, "blob for a chunk stored inline", err, meta.ErrExists)

	// A failing commit records none of its inline chunks.
	c3 := inlineRec(file, 0, 60)
	_, err = s.Commit(ctx, acct, meta.CommitRequest{File: file, IfVersion: in.Version - 1, Manifest: manifest("kek1", "v4"),
		Chunks: positions(c3), NewChunks: []meta.ChunkRecord{c3}})
	wantErr(t, "stale commit with a new inline chunk", err, meta.ErrVersionMismatch)
	_, err = s.GetChunk(ctx, acct, c3.ID)
	wantErr(t, "inline chunk of a failed commit", err, meta.ErrNotFound)
	wantEq(t, "used bytes after a failed commit", usedBytes(t, s, acct), int64(42))
}

func testReplaceInlineChunk(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	c := putInline(t, s, acct, newID(), 0, 10)
	old := meta.Sealed{Data: c.Inline, KEKID: c.KEKID, WrappedKey: c.WrappedKey}
	next := meta.Sealed{Data: []byte("re-sealed"), KEKID: "k-new", WrappedKey: []byte("wrapped-new")}
	noErr(t, "ReplaceInlineChunk", s.ReplaceInlineChunk(ctx, acct, c.ID, old, next))
	got, err := s.GetChunk(ctx, acct, c.ID)
	noErr(t, "GetChunk", err)
	want := c
	want.Inline, want.KEKID, want.WrappedKey = next.Data, next.KEKID, next.WrappedKey
	wantChunk(t, "after ReplaceInlineChunk", got, want)
	wantEq(t, "used bytes after ReplaceInlineChunk", usedBytes(t, s, acct), int64(10))

	// Any part stale, and the replacement is refused.
	wantErr(t, "stale ReplaceInlineChunk", s.ReplaceInlineChunk(ctx, acct, c.ID, old, next), meta.ErrVersionMismatch)
	for what, o := range map[string]meta.Sealed{
		"value":       {Data: []byte("other"), KEKID: next.KEKID, WrappedKey: next.WrappedKey},
		"KEK":         {Data: next.Data, KEKID: "k-other", WrappedKey: next.WrappedKey},
		"wrapped key": {Data: next.Data, KEKID: next.KEKID, WrappedKey: []byte("other")},
	} {
		wantErr(t, "ReplaceInlineChunk with a stale "+what, s.ReplaceInlineChunk(ctx, acct, c.ID, o, old), meta.ErrVersionMismatch)
	}
	got, err = s.GetChunk(ctx, acct, c.ID)
	noErr(t, "GetChunk", err)
	wantChunk(t, "after refused replacements", got, want)

	// Not for a blob chunk, an unknown one or another account's.
	b := putChunk(t, s, acct, newID(), 0, 10)
	wantErr(t, "ReplaceInlineChunk of a blob chunk", s.ReplaceInlineChunk(ctx, acct, b.ID,
		meta.Sealed{Data: []byte("x"), KEKID: b.KEKID, WrappedKey: b.WrappedKey}, next), meta.ErrVersionMismatch)
	got, err = s.GetChunk(ctx, acct, b.ID)
	noErr(t, "GetChunk", err)
	wantChunk(t, "blob chunk after a refused ReplaceInlineChunk", got, b)
	wantErr(t, "ReplaceInlineChunk of an unknown chunk", s.ReplaceInlineChunk(ctx, acct, newID(), next, old), meta.ErrNotFound)
	other := newAccount(t, s, "bob").ID
	wantErr(t, "ReplaceInlineChunk from another account", s.ReplaceInlineChunk(ctx, other, c.ID, next, old), meta.ErrNotFound)
	// The new value must be a whole sealed value of a bounded size.
	wantErr(t, "ReplaceInlineChunk without a value", s.ReplaceInlineChunk(ctx, acct, c.ID, next,
		meta.Sealed{KEKID: "k", WrappedKey: []byte("w")}), meta.ErrInvalid)
	wantErr(t, "ReplaceInlineChunk without a wrapped key", s.ReplaceInlineChunk(ctx, acct, c.ID, next,
		meta.Sealed{Data: []byte("d"), KEKID: "k"}), meta.ErrInvalid)
	wantErr(t, "ReplaceInlineChunk too large", s.ReplaceInlineChunk(ctx, acct, c.ID, next,
		meta.Sealed{Data: make([]byte, meta.MaxInlineSize+1), KEKID: "k", WrappedKey: []byte("w")}), meta.ErrTooLarge)
	// A blob chunk is not replaced by ReplaceChunkBlob from an inline one.
	wantErr(t, "ReplaceChunkBlob of an inline chunk", s.ReplaceChunkBlob(ctx, acct, c.ID, "", meta.Sealed{KEKID: next.KEKID, WrappedKey: next.WrappedKey},
		"feedfacefeedface", meta.Sealed{KEKID: "k", WrappedKey: []byte("w")}), meta.ErrVersionMismatch)
}
