package server_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

func TestGarbageCollection(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	// Blobs even for small chunks, to watch their files go (inline_test.go
	// collects inline chunks).
	e := newEnv(t, server.Config{GCGrace: grace, NoInline: true})
	ctx := context.Background()
	c := e.register("alice")
	v1 := randomContent(2 * testLayout.ChunkSize())
	f := c.mustUpload(t, rootID, "f", v1)
	oldChunks := e.blobFiles()

	pending, _ := c.a.seal(t, crypto.NewID(), 1, []byte("never committed"))
	c.putChunk(pending[0]).want(t, 201, nil)
	pendingPath := e.blobPath("alice", pending[0].ref.ID)
	usedWithPending := e.acct("alice").UsedBytes

	// Young garbage is spared.
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) inside the grace period", n, err)
	}
	time.Sleep(grace + 100*time.Millisecond)
	n, err := e.srv.CollectGarbage(ctx)
	must(t, err)
	if n != 1 {
		t.Fatalf("collected %d chunks, want the 1 pending one", n)
	}
	if _, err := os.Stat(pendingPath); !os.IsNotExist(err) {
		t.Fatalf("the collected chunk's blob is still there: %v", err)
	}
	if haveSet(t, c, pending[0].ref.ID)[pending[0].ref.ID] {
		t.Fatal("HaveChunks still lists a collected chunk")
	}
	if u := e.acct("alice").UsedBytes; u != usedWithPending-int64(len(pending[0].body)) {
		t.Fatalf("usage %d after GC, want %d", u, usedWithPending-int64(len(pending[0].body)))
	}
	c.mustRead(t, f, v1)

	// A new version makes the old chunks garbage; the new ones stay.
	v2 := randomContent(testLayout.ChunkSize() + 5)
	chunks, commit := c.a.seal(t, f, 2, v2)
	for _, ch := range chunks {
		c.putChunk(ch).want(t, 201, nil)
	}
	c.commit(f, commit).want(t, 200, nil)
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 2 {
		t.Fatalf("collected %d (%v), want the 2 chunks of the old version", n, err)
	}
	for p := range oldChunks {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("old version's blob %s survives GC", p)
		}
	}
	c.mustRead(t, f, v2)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 0 {
		t.Fatalf("a second GC collected %d (%v)", n, err)
	}
	c.mustRead(t, f, v2)

	// Unlinking the file makes everything garbage.
	c.unlink(rootID, c.a.index(rootID, "f"), "nondir").want(t, 204, nil)
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 2 {
		t.Fatalf("collected %d (%v) after unlink, want 2", n, err)
	}
	if files := e.blobFiles(); len(files) != 0 {
		t.Fatalf("%d blob files left after everything was collected", len(files))
	}
	if u := e.acct("alice").UsedBytes; u != 0 {
		t.Fatalf("usage %d with nothing stored", u)
	}
}

func TestScrubDetectsDamage(t *testing.T) {
	t.Parallel()
	// Blobs even for small chunks, to damage their files (inline_test.go
	// damages inline values).
	e := newEnv(t, server.Config{NoInline: true})
	ctx := context.Background()
	c := e.register("alice")
	good := randomContent(testLayout.ChunkSize() + 1)
	g := c.mustUpload(t, rootID, "good", good)
	bad := c.mustUpload(t, rootID, "bad", randomContent(10))
	gone := c.mustUpload(t, rootID, "gone", randomContent(10))
	if d, err := server.Scrub(ctx, e.meta, e.store, nil); err != nil || len(d) != 0 {
		t.Fatalf("scrub of a healthy store: %v, %v", d, err)
	}

	badChunk := e.firstChunk(t, c, bad)
	goneChunk := e.firstChunk(t, c, gone)
	p := e.blobPath("alice", badChunk)
	b, err := os.ReadFile(p)
	must(t, err)
	b[len(b)/2] ^= 0x10
	must(t, os.WriteFile(p, b, 0o600))
	must(t, os.Remove(e.blobPath("alice", goneChunk)))

	var progress int64
	damage, err := server.Scrub(ctx, e.meta, e.store, func(n int64) { progress = n })
	must(t, err)
	want := map[string]string{badChunk.String(): "damaged", goneChunk.String(): "missing"}
	if len(damage) != 2 {
		t.Fatalf("scrub found %v, want 2 problems", damage)
	}
	for _, d := range damage {
		if d.Account != "alice" || d.What != "chunk" || want[d.ID] != d.Problem {
			t.Fatalf("scrub reports %v; want %v", d, want)
		}
	}
	// 4 chunks, 3 manifests, 1 transfer key.
	if progress != 8 {
		t.Fatalf("scrub progress ended at %d, want 8", progress)
	}
	// The server answers 500 damaged (not retried by clients) and never
	// sends the damaged bytes. A missing blob is a 500 too; it answers
	// internal today, which clients retry.
	c.do("GET", "/v1/chunks/"+badChunk.String(), nil).wantErr(t, 500, wire.CodeDamaged)
	if r := c.do("GET", "/v1/chunks/"+goneChunk.String(), nil); r.status != 500 {
		t.Fatalf("GET of a chunk whose blob is gone: %v", r)
	} else if e, _ := r.apiErr(); e.Code != wire.CodeDamaged && e.Code != wire.CodeInternal {
		t.Fatalf("GET of a chunk whose blob is gone: %v", r)
	}
	if _, _, err := c.read(bad); err == nil {
		t.Fatal("a damaged file reads")
	}
	c.mustRead(t, g, good)
}

// TestGCGraceAfterUnlink: docs/protocol.md says that when a file's last
// link goes its chunks "are collected after a grace period (an open file on
// a mount can still read them until then)". So an old file's chunks must
// survive a GC run right after the unlink, or after a commit replaced them,
// however old the chunks themselves are.
func TestGCGraceAfterUnlink(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	e := newEnv(t, server.Config{GCGrace: grace})
	ctx := context.Background()
	c := e.register("alice")
	content := randomContent(testLayout.ChunkSize() + 1)
	f := c.mustUpload(t, rootID, "f", content)
	g := c.mustUpload(t, rootID, "g", content)
	time.Sleep(grace + 100*time.Millisecond) // the chunks are now older than the grace period
	fChunk, gChunk := e.firstChunk(t, c, f), e.firstChunk(t, c, g)

	c.unlink(rootID, c.a.index(rootID, "f"), "nondir").want(t, 204, nil)
	_, commit := c.a.seal(t, g, 2, nil)
	c.commit(g, commit).want(t, 200, nil)
	n, err := e.srv.CollectGarbage(ctx)
	must(t, err)
	for _, id := range []crypto.ID{fChunk, gChunk} {
		if _, err := c.getChunk(crypto.ChunkRef{File: map[crypto.ID]crypto.ID{fChunk: f, gChunk: g}[id], ID: id}); err != nil {
			t.Errorf("chunk %s was collected at once when its file was unlinked or rewritten (GC collected %d): "+
				"the grace period runs from a chunk's creation, not from when it lost its last reference (server/meta GarbageChunks)", id, n)
		}
	}
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || len(e.blobFiles()) != 0 {
		t.Fatalf("after the grace period: collected %d (%v), %d blobs left", n, err, len(e.blobFiles()))
	}
}
