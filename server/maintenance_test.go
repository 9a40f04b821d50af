package server_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/keyring"
)

// keyIDs adapts *keyring.Keyring to server.Keyring, as the admin command
// does.
type keyIDs struct{ *keyring.Keyring }

func (k keyIDs) KeyIDs() []string {
	var ids []string
	for _, ki := range k.Keys() {
		ids = append(ids, ki.ID)
	}
	return ids
}

// files is a concurrent record of what was written and acknowledged.
type files struct {
	mu   sync.Mutex
	data map[crypto.ID][]byte
}

func (f *files) add(id crypto.ID, b []byte) {
	f.mu.Lock()
	f.data[id] = b
	f.mu.Unlock()
}

func (f *files) any(n int) (crypto.ID, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, b := range f.data {
		if n--; n < 0 {
			return id, b
		}
	}
	for id, b := range f.data {
		return id, b
	}
	return crypto.ID{}, nil
}

// forStorage runs test with small chunks kept inline, as the server does,
// and with every chunk in a blob.
func forStorage(t *testing.T, test func(t *testing.T, cfg server.Config)) {
	for _, mode := range []struct {
		name string
		cfg  server.Config
	}{{"inline", server.Config{}}, {"blobs", server.Config{NoInline: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			test(t, mode.cfg)
		})
	}
}

// TestRotateKeyWhileServing rotates the KEK twice (rewrap, then
// re-encrypt) while uploads and downloads run. Every request must succeed,
// and afterwards only the newest key is left and everything still opens.
func TestRotateKeyWhileServing(t *testing.T) {
	t.Parallel()
	forStorage(t, testRotateKeyWhileServing)
}

func testRotateKeyWhileServing(t *testing.T, cfg server.Config) {
	e := newEnv(t, cfg)
	ctx := context.Background()
	c := e.register("alice")
	bob := e.register("bob")
	written := &files{data: map[crypto.ID][]byte{}}
	for i := range 6 {
		b := randomContent(i * 7000)
		written.add(c.mustUpload(t, rootID, fmt.Sprintf("before-%d", i), b), b)
	}
	bobFile := randomContent(30000)
	bobID := bob.mustUpload(t, rootID, "bob", bobFile)
	firstKey := e.keyring.Keys()[0].ID

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		errMu    sync.Mutex
		errs     []error
		ups, dls atomic.Int64
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	for w := range 2 {
		wc := c.session(t, e.fp)
		wg.Add(2)
		go func() { // uploader
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				b := randomContent((i*5311 + w*977) % (3 * testLayout.ChunkSize()))
				id, _, err := wc.upload(rootID, fmt.Sprintf("during-%d-%d", w, i), b)
				if err != nil {
					fail(err)
					return
				}
				written.add(id, b)
				ups.Add(1)
			}
		}()
		go func() { // downloader
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id, want := written.any(i)
				got, _, err := wc.read(id)
				if err != nil {
					fail(fmt.Errorf("reading %s: %w", id, err))
					return
				}
				if !bytes.Equal(got, want) {
					fail(fmt.Errorf("file %s reads other content", id))
					return
				}
				dls.Add(1)
			}
		}()
	}

	newID, err := server.RotateKey(ctx, e.meta, e.store, keyIDs{e.keyring}, time.Second, false, nil)
	if err == nil {
		time.Sleep(200 * time.Millisecond)
	}
	secondID, err2 := "", error(nil)
	if err == nil {
		secondID, err2 = server.RotateKey(ctx, e.meta, e.store, keyIDs{e.keyring}, 500*time.Millisecond, true, nil)
		time.Sleep(200 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	must(t, err)
	must(t, err2)
	for _, err := range errs {
		t.Error(err)
	}
	if ups.Load() == 0 || dls.Load() == 0 {
		t.Fatalf("%d uploads and %d downloads ran during the rotations", ups.Load(), dls.Load())
	}
	t.Logf("%d uploads and %d downloads during two rotations", ups.Load(), dls.Load())

	if newID == firstKey || secondID == newID {
		t.Fatal("rotation did not make a new key")
	}
	keys := e.keyring.Keys()
	if len(keys) != 1 || keys[0].ID != secondID || !keys[0].Current {
		t.Fatalf("keyring holds %+v after rotation, want only %s", keys, secondID)
	}
	for _, old := range []string{firstKey, newID} {
		if n, err := e.meta.KEKReferences(ctx, old); err != nil || n != 0 {
			t.Fatalf("%d references to the retired key %s (%v)", n, old, err)
		}
	}
	damage, err := server.Scrub(ctx, e.meta, e.store, nil)
	must(t, err)
	if len(damage) != 0 {
		t.Fatalf("scrub after rotation: %v", damage)
	}
	for id, want := range written.data {
		c.mustRead(t, id, want)
	}
	bob.mustRead(t, bobID, bobFile)
	// New sessions and uploads work with the new key.
	d := c.session(t, e.fp)
	d.mustRead(t, d.mustUpload(t, rootID, "after", []byte("after")), []byte("after"))
}

// TestReencryptWhileReading re-encrypts a few chunks again and again
// (rotate-key --reencrypt, for up to 2 s) while readers fetch those chunks
// as fast as they can. A read that looked up a chunk's record just before
// its blob or inline value was replaced must still get the chunk, not an
// error.
func TestReencryptWhileReading(t *testing.T) {
	t.Parallel()
	forStorage(t, testReencryptWhileReading)
}

func testReencryptWhileReading(t *testing.T, cfg server.Config) {
	e := newEnv(t, cfg)
	ctx := context.Background()
	c := e.register("alice")
	var refs []crypto.ChunkRef
	file := crypto.NewID()
	for i := range 4 {
		ch := sealedChunk{ref: crypto.ChunkRef{File: file, Index: uint64(i), ID: crypto.NewID()}, body: randomContent(200)}
		ch.mac = c.a.mac.Sum(ch.ref, ch.body)
		c.putChunk(ch).want(t, 201, nil)
		refs = append(refs, ch.ref)
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		reads    atomic.Int64
		failures atomic.Int64
		first    atomic.Value
	)
	for w := range 4 {
		rc := c.session(t, e.fp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i++ {
				if _, err := rc.getChunk(refs[i%len(refs)]); err != nil {
					failures.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
				reads.Add(1)
			}
		}()
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && failures.Load() == 0; {
		if _, err := server.RotateKey(ctx, e.meta, e.store, keyIDs{e.keyring}, 0, true, nil); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d chunk reads failed during re-encryption, first: %v "+
			"(server/maintenance.go reencryptChunk deletes the old blob while GETs that read the old record may still open it)", n, reads.Load(), first.Load())
	}
	for _, ref := range refs {
		if _, err := c.getChunk(ref); err != nil {
			t.Fatal(err)
		}
	}
}
