package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/meta"
)

// bigLayout has chunks of 128 KiB, over server.InlineChunkMax.
var bigLayout = crypto.Layout{BlockSize: 4 << 10, ChunkBlocks: 32, PadUnit: 4 << 10}

// smallFile is the POST /v1/small request creating name in parent with
// content, which must fit one chunk.
func (c *client) smallFile(t *testing.T, parent crypto.ID, name string, content []byte) (crypto.ID, *wire.SmallHeader, sealedChunk) {
	t.Helper()
	f := crypto.NewID()
	chunks, commit := c.a.seal(t, f, 1, content)
	if len(chunks) != 1 {
		t.Fatalf("%d bytes are %d chunks, not a small file", len(content), len(chunks))
	}
	x, sealed := c.a.name(t, parent, f, name)
	hdr := &wire.SmallHeader{Parent: wire.HexID(parent), File: wire.HexID(f),
		Create: &wire.CreateRequest{Index: x, SealedName: sealed, Inode: wire.NewInode{ID: wire.HexID(f), Type: wire.TypeFile, Attr: commit.Attr}},
		Chunk:  &wire.SmallChunk{Index: 0, ID: wire.HexID(chunks[0].ref.ID), MAC: chunks[0].mac}, Commit: *commit}
	return f, hdr, chunks[0]
}

// chunkRec is the record of one of user's chunks.
func (e *testEnv) chunkRec(user string, id crypto.ID) meta.ChunkRecord {
	e.t.Helper()
	rec, err := e.meta.GetChunk(context.Background(), e.acct(user).ID, id)
	must(e.t, err)
	return rec
}

// wantInline checks that a chunk is stored inline, sealed at rest under
// its owner and chunk ID, and opens to body.
func (e *testEnv) wantInline(t *testing.T, user string, ch sealedChunk) {
	t.Helper()
	rec := e.chunkRec(user, ch.ref.ID)
	if rec.BlobKey != "" || len(rec.Inline) != len(ch.body)+crypto.AtRestOverhead {
		t.Fatalf("chunk of %d bytes: blob key %q, inline value of %d bytes", len(ch.body), rec.BlobKey, len(rec.Inline))
	}
	if bytes.Contains(rec.Inline, ch.body[:64]) {
		t.Fatal("the inline value holds the chunk as uploaded: it is not sealed at rest")
	}
	w := atrest.Wrapped{KEKID: rec.KEKID, WrappedKey: rec.WrappedKey}
	plain, err := e.store.OpenValue([]byte(user), ch.ref.ID[:], rec.Inline, w)
	if err != nil || !bytes.Equal(plain, ch.body) {
		t.Fatalf("the inline value does not open under its owner and chunk ID: %v", err)
	}
	other := crypto.NewID()
	if _, err := e.store.OpenValue([]byte(user), other[:], rec.Inline, w); !errors.Is(err, crypto.ErrAuthentication) {
		t.Fatalf("the inline value opens under another chunk ID: %v", err)
	}
}

// TestInlineChunks follows small chunks through both upload paths, reads,
// a restart and GC: they live in the database only, with no blob file,
// while a chunk over server.InlineChunkMax still goes to a blob.
func TestInlineChunks(t *testing.T) {
	t.Parallel()
	const grace = 500 * time.Millisecond
	cfg := server.Config{GCGrace: grace}
	e := newEnv(t, cfg)
	ctx := context.Background()
	c := e.register("alice")

	// A small file in one POST /v1/small: one metadata commit, no blob.
	content := randomContent(10 << 10)
	f, hdr, ch := c.smallFile(t, rootID, "small", content)
	commits := e.meta.Stats().Commits
	c.small(hdr, ch.body).want(t, 201, nil)
	if n := e.meta.Stats().Commits - commits; n != 1 {
		t.Errorf("a small file took %d metadata commits, want 1", n)
	}
	if n := len(e.blobFiles()); n != 0 || e.blobs.Stats().Puts != 0 {
		t.Fatalf("%d blob files (%d puts) after a small file", n, e.blobs.Stats().Puts)
	}
	e.wantInline(t, "alice", ch)
	c.mustRead(t, f, content)
	if u := e.acct("alice").UsedBytes; u != int64(len(ch.body)) {
		t.Fatalf("usage %d after one inline chunk of %d bytes", u, len(ch.body))
	}

	// A small file refused (its name is taken) records nothing.
	before := e.state("alice")
	_, hdr2, ch2 := c.smallFile(t, rootID, "small", randomContent(100))
	c.small(hdr2, ch2.body).wantErr(t, 409, wire.CodeExists)
	e.wantUnchanged(t, "alice", before, c, ch2.ref.ID)

	// Chunks PUT one by one, then committed, are inline too; an identical
	// retry stores nothing.
	multi := randomContent(2*testLayout.ChunkSize() + 5)
	g := crypto.NewID()
	chunks, commit := c.a.seal(t, g, 1, multi)
	for _, ch := range chunks {
		c.putChunk(ch).want(t, 201, nil)
		e.wantInline(t, "alice", ch)
	}
	before = e.state("alice")
	c.putChunk(chunks[0]).want(t, 200, nil)
	if e.state("alice") != before {
		t.Fatal("a retried PUT of an inline chunk stored something")
	}
	req := c.a.createReq(t, rootID, "multi", g, wire.TypeFile, "")
	req.Inode.Attr, req.Commit = commit.Attr, commit
	c.create(rootID, req).want(t, 201, nil)
	c.mustRead(t, g, multi)
	if n := len(e.blobFiles()); n != 0 {
		t.Fatalf("%d blob files for inline chunks", n)
	}

	// At the limit inline, one byte over in a blob (the server checks only
	// the MAC of what it stores).
	bob := e.registerWith("bob", 0, bigLayout)
	at := sealedChunk{ref: crypto.ChunkRef{File: crypto.NewID(), ID: crypto.NewID()}, body: randomContent(server.InlineChunkMax)}
	over := sealedChunk{ref: crypto.ChunkRef{File: crypto.NewID(), ID: crypto.NewID()}, body: randomContent(server.InlineChunkMax + 1)}
	for _, ch := range []*sealedChunk{&at, &over} {
		ch.mac = bob.a.mac.Sum(ch.ref, ch.body)
		bob.putChunk(*ch).want(t, 201, nil)
	}
	e.wantInline(t, "bob", at)
	if rec := e.chunkRec("bob", over.ref.ID); rec.BlobKey == "" || rec.Inline != nil {
		t.Fatalf("a chunk of %d bytes is not in a blob: %+v", len(over.body), rec)
	}
	if n := len(e.blobFiles()); n != 1 {
		t.Fatalf("%d blob files, want the one over the limit", n)
	}
	for _, ch := range []sealedChunk{at, over} {
		if body, err := bob.getChunk(ch.ref); err != nil || !bytes.Equal(body, ch.body) {
			t.Fatalf("GET chunk of %d bytes: %v", len(ch.body), err)
		}
	}
	// A whole file of 100 KiB, one chunk, is a blob.
	bigContent := randomContent(100 << 10)
	big := bob.mustUpload(t, rootID, "big", bigContent)
	if rec := e.chunkRec("bob", e.firstChunk(t, bob, big)); rec.BlobKey == "" {
		t.Fatal("a chunk of 100 KiB is stored inline")
	}
	if n := len(e.blobFiles()); n != 2 {
		t.Fatalf("%d blob files, want 2", n)
	}

	// Everything survives a restart.
	e = e.restart(cfg)
	c2 := e.anon("")
	c2.a, c2.token = c.a, c.token
	c2.mustRead(t, f, content)
	c2.mustRead(t, g, multi)
	bob2 := e.anon("")
	bob2.a, bob2.token = bob.a, bob.token
	bob2.mustRead(t, big, bigContent)
	if body, err := bob2.getChunk(at.ref); err != nil || !bytes.Equal(body, at.body) {
		t.Fatalf("GET of an inline chunk after a restart: %v", err)
	}
	if d, err := server.Scrub(ctx, e.meta, e.store, nil); err != nil || len(d) != 0 {
		t.Fatalf("scrub after a restart: %v, %v", d, err)
	}

	// GC: the unlinked small file's chunk and bob's two uncommitted ones
	// go, and with them their usage; only the blob of bob's file is left.
	c2.unlink(rootID, c.a.index(rootID, "small"), "nondir").want(t, 204, nil)
	usedAlice, usedBob := e.acct("alice").UsedBytes, e.acct("bob").UsedBytes
	time.Sleep(grace + 100*time.Millisecond)
	n, err := e.srv.CollectGarbage(ctx)
	must(t, err)
	if n != 3 {
		t.Fatalf("collected %d chunks, want 3", n)
	}
	for user, id := range map[string]crypto.ID{"alice": ch.ref.ID, "bob": at.ref.ID} {
		if _, err := e.meta.GetChunk(ctx, e.acct(user).ID, id); !errors.Is(err, meta.ErrNotFound) {
			t.Fatalf("a collected inline chunk of %s: %v", user, err)
		}
	}
	if u := e.acct("alice").UsedBytes; u != usedAlice-int64(len(ch.body)) {
		t.Fatalf("alice's usage %d after GC, want %d", u, usedAlice-int64(len(ch.body)))
	}
	if u := e.acct("bob").UsedBytes; u != usedBob-int64(len(at.body)+len(over.body)) {
		t.Fatalf("bob's usage %d after GC, want %d", u, usedBob-int64(len(at.body)+len(over.body)))
	}
	if n := len(e.blobFiles()); n != 1 {
		t.Fatalf("%d blob files after GC, want the one of bob's file", n)
	}
	c2.mustRead(t, g, multi)
	bob2.mustRead(t, big, bigContent)
}

// sqlDB opens e's metadata database directly, as someone with access to
// the server's disk could.
func (e *testEnv) sqlDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(e.dir, "meta.db"))
	must(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestInlineDamage damages inline values in the database: a flipped byte,
// and another chunk's value and key moved into a row. Scrub reports both
// as damaged, GET answers 500 damaged, and the other chunks still read.
func TestInlineDamage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	c := e.register("alice")
	goodContent := randomContent(1000)
	good := c.mustUpload(t, rootID, "good", goodContent)
	bad := c.mustUpload(t, rootID, "bad", randomContent(1000))
	moved := c.mustUpload(t, rootID, "moved", randomContent(1000))
	if d, err := server.Scrub(ctx, e.meta, e.store, nil); err != nil || len(d) != 0 {
		t.Fatalf("scrub of a healthy store: %v, %v", d, err)
	}
	goodChunk, badChunk, movedChunk := e.firstChunk(t, c, good), e.firstChunk(t, c, bad), e.firstChunk(t, c, moved)

	db := e.sqlDB(t)
	var v []byte
	must(t, db.QueryRow(`SELECT inline_data FROM chunks WHERE id = ?`, badChunk[:]).Scan(&v))
	v[len(v)/2] ^= 0x10
	if _, err := db.Exec(`UPDATE chunks SET inline_data = ? WHERE id = ?`, v, badChunk[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE chunks SET (inline_data, kek_id, wrapped_key) =
		(SELECT inline_data, kek_id, wrapped_key FROM chunks WHERE id = ?) WHERE id = ?`, goodChunk[:], movedChunk[:]); err != nil {
		t.Fatal(err)
	}

	damage, err := server.Scrub(ctx, e.meta, e.store, nil)
	must(t, err)
	want := map[string]bool{badChunk.String(): true, movedChunk.String(): true}
	if len(damage) != 2 {
		t.Fatalf("scrub found %v, want 2 damaged chunks", damage)
	}
	for _, d := range damage {
		if d.Account != "alice" || d.What != "chunk" || !want[d.ID] || d.Problem != "damaged" {
			t.Fatalf("scrub reports %v; want %v damaged", d, want)
		}
	}
	for _, id := range []crypto.ID{badChunk, movedChunk} {
		c.do("GET", "/v1/chunks/"+id.String(), nil).wantErr(t, 500, wire.CodeDamaged)
	}
	if _, _, err := c.read(bad); err == nil {
		t.Fatal("a damaged file reads")
	}
	c.mustRead(t, good, goodContent)
}

// TestRotateKeyInline rotates the KEK with and without --reencrypt over
// inline and blob chunks: a rewrap keeps each inline value and changes its
// wrapped key, a re-encryption re-seals the value too, every retired KEK
// is removed, and everything still reads.
func TestRotateKeyInline(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	c := e.register("alice")
	bob := e.registerWith("bob", 0, bigLayout)
	small := randomContent(5000)
	f := c.mustUpload(t, rootID, "small", small)
	multi := randomContent(3*testLayout.ChunkSize() - 7)
	g := c.mustUpload(t, rootID, "multi", multi)
	bigContent := randomContent(300 << 10)
	big := bob.mustUpload(t, rootID, "big", bigContent)
	id := e.firstChunk(t, c, f)
	rec0 := e.chunkRec("alice", id)
	// bob's file is two full chunks in blobs and a last one of 44 KiB
	// inline; alice's are all inline.
	if rec0.BlobKey != "" || len(e.blobFiles()) != 2 {
		t.Fatalf("%d blob files, small chunk's blob key %q: want 2 for bob's file and none for alice", len(e.blobFiles()), rec0.BlobKey)
	}
	first := e.keyring.Keys()[0].ID

	retired := func(old, current string) {
		t.Helper()
		if keys := e.keyring.Keys(); len(keys) != 1 || keys[0].ID != current {
			t.Fatalf("keyring holds %+v after rotation, want only %s", keys, current)
		}
		if n, err := e.meta.KEKReferences(ctx, old); err != nil || n != 0 {
			t.Fatalf("%d references to the retired key %s (%v)", n, old, err)
		}
		if d, err := server.Scrub(ctx, e.meta, e.store, nil); err != nil || len(d) != 0 {
			t.Fatalf("scrub after rotation: %v, %v", d, err)
		}
		c.mustRead(t, f, small)
		c.mustRead(t, g, multi)
		bob.mustRead(t, big, bigContent)
	}

	second, err := server.RotateKey(ctx, e.meta, e.store, keyIDs{e.keyring}, 0, false, nil)
	must(t, err)
	rec1 := e.chunkRec("alice", id)
	if rec1.KEKID != second || bytes.Equal(rec1.WrappedKey, rec0.WrappedKey) || !bytes.Equal(rec1.Inline, rec0.Inline) {
		t.Fatalf("after a rewrap: KEK %s (want %s), wrapped key changed %v, inline value kept %v",
			rec1.KEKID, second, !bytes.Equal(rec1.WrappedKey, rec0.WrappedKey), bytes.Equal(rec1.Inline, rec0.Inline))
	}
	retired(first, second)

	third, err := server.RotateKey(ctx, e.meta, e.store, keyIDs{e.keyring}, 0, true, nil)
	must(t, err)
	rec2 := e.chunkRec("alice", id)
	if rec2.KEKID != third || rec2.BlobKey != "" || bytes.Equal(rec2.Inline, rec1.Inline) ||
		len(rec2.Inline) != len(rec1.Inline) || rec2.Size != rec1.Size {
		t.Fatalf("after a re-encryption: %+v, was %+v", rec2, rec1)
	}
	retired(second, third)
	if n := len(e.blobFiles()); n != 2 {
		t.Fatalf("%d blob files after re-encryption, want 2", n)
	}
}
