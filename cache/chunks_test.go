package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

func TestChunksLRU(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenChunks(dir, 3000)
	if err != nil {
		t.Fatal(err)
	}
	ids := []crypto.ID{crypto.NewID(), crypto.NewID(), crypto.NewID(), crypto.NewID()}
	for i, id := range ids[:3] {
		if err := c.Put(id, bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	c.Has(ids[0]) // ids[1] is now least recently used
	if err := c.Put(ids[3], bytes.Repeat([]byte{3}, 1000)); err != nil {
		t.Fatal(err)
	}
	if c.Has(ids[1]) {
		t.Error("least recently used chunk survived eviction")
	}
	if _, err := os.Stat(c.path(ids[1])); !os.IsNotExist(err) {
		t.Errorf("evicted chunk's file still exists: %v", err)
	}
	for _, id := range []crypto.ID{ids[0], ids[2], ids[3]} {
		if !c.Has(id) {
			t.Errorf("chunk %s evicted, want kept", id)
		}
	}
	if c.Size() != 3000 {
		t.Errorf("size %d, want 3000", c.Size())
	}
	p := make([]byte, 10)
	if err := c.ReadAt(ids[2], p, 990); err != nil || !bytes.Equal(p, bytes.Repeat([]byte{2}, 10)) {
		t.Errorf("ReadAt = %v, %x", err, p)
	}
	if err := c.ReadAt(ids[1], p, 0); !errors.Is(err, ErrMiss) {
		t.Errorf("ReadAt of evicted chunk: %v, want ErrMiss", err)
	}

	// Reopening keeps what is cached and drops leftovers of torn writes.
	os.WriteFile(filepath.Join(dir, "ab", ".tmp-123"), []byte("x"), 0o600)
	c2, err := OpenChunks(dir, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Size() != 2000 {
		t.Errorf("reopened with a smaller cap: size %d, want 2000", c2.Size())
	}
	if _, err := os.Stat(filepath.Join(dir, "ab", ".tmp-123")); !os.IsNotExist(err) {
		t.Error("temporary file survived reopening")
	}
	got, err := c2.Get(ids[3])
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{3}, 1000)) {
		t.Errorf("newest chunk lost on reopen: %v", err)
	}

	// A file too short for a read was torn by a crash: it is dropped, so
	// that the caller fetches the chunk again.
	if err := c2.ReadAt(ids[3], p, 995); !errors.Is(err, ErrMiss) {
		t.Errorf("short ReadAt: %v, want ErrMiss", err)
	}
	if _, err := c2.Get(ids[3]); !errors.Is(err, ErrMiss) {
		t.Errorf("Get after a short ReadAt: %v, want ErrMiss (dropped)", err)
	}
}

func TestChunksConcurrent(t *testing.T) {
	c, err := OpenChunks(t.TempDir(), 50_000)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				id := crypto.NewID()
				data := crypto.RandomBytes(1000 + i)
				if err := c.Put(id, data); err != nil {
					t.Error(err)
					return
				}
				if got, err := c.Get(id); err == nil && !bytes.Equal(got, data) {
					t.Error("read back different bytes")
				}
			}
		}()
	}
	wg.Wait()
	if c.Size() > 50_000 {
		t.Errorf("cache grew to %d over its cap", c.Size())
	}
}

func TestChunksOpenFilesBounded(t *testing.T) {
	c, err := OpenChunks(t.TempDir(), 100_000)
	if err != nil {
		t.Fatal(err)
	}
	c.SetMaxOpen(3)
	var ids []crypto.ID
	for i := 0; i < 10; i++ {
		id := crypto.NewID()
		ids = append(ids, id)
		if err := c.Put(id, bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	p := make([]byte, 100)
	for round := 0; round < 3; round++ {
		for i, id := range ids {
			if err := c.ReadAt(id, p, 500); err != nil || !bytes.Equal(p, bytes.Repeat([]byte{byte(i)}, 100)) {
				t.Fatalf("ReadAt chunk %d: %v", i, err)
			}
			if n := c.OpenFiles(); n > 3 {
				t.Fatalf("%d files open, want at most 3", n)
			}
		}
	}
	if n := c.OpenFiles(); n != 3 {
		t.Errorf("%d files open after reading, want 3 kept", n)
	}
	// Dropping chunks closes their files.
	for _, id := range ids {
		c.Remove(id)
	}
	if n := c.OpenFiles(); n != 0 {
		t.Errorf("%d files open after removing every chunk", n)
	}
	if err := c.ReadAt(ids[0], p, 0); !errors.Is(err, ErrMiss) {
		t.Errorf("ReadAt of a removed chunk: %v", err)
	}
}

// A chunk evicted while a reader uses its file keeps reading its bytes,
// and its file is closed once the reader is done.
func TestChunksEvictWhileOpen(t *testing.T) {
	c, err := OpenChunks(t.TempDir(), 2000)
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := crypto.NewID(), crypto.NewID(), crypto.NewID()
	c.Put(a, bytes.Repeat([]byte{1}, 1000))
	f, ent, err := c.acquire(a)
	if err != nil {
		t.Fatal(err)
	}
	c.Put(b, bytes.Repeat([]byte{2}, 1000))
	c.Put(d, bytes.Repeat([]byte{3}, 1000)) // evicts a
	if c.Contains(a) {
		t.Fatal("a survived eviction")
	}
	p := make([]byte, 10)
	if _, err := f.ReadAt(p, 0); err != nil || p[0] != 1 {
		t.Fatalf("reading an evicted chunk's open file: %v", err)
	}
	c.release(ent)
	if ent.f != nil {
		t.Error("the evicted chunk's file stayed open after its last reader")
	}
	if n := c.OpenFiles(); n != 0 {
		t.Errorf("%d files open", n)
	}
}

func TestChunksPutIfRoom(t *testing.T) {
	c, err := OpenChunks(t.TempDir(), 3500)
	if err != nil {
		t.Fatal(err)
	}
	old := crypto.NewID()
	c.Put(old, bytes.Repeat([]byte{9}, 1000))
	stored := 0
	for i := 0; i < 5; i++ {
		ok, err := c.PutIfRoom(crypto.NewID(), bytes.Repeat([]byte{byte(i)}, 1000))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			stored++
		}
	}
	if stored != 2 {
		t.Errorf("stored %d chunks, want the 2 that fit", stored)
	}
	if !c.Contains(old) {
		t.Error("PutIfRoom evicted a chunk")
	}
	if c.Size() != 3000 || c.Room() != 500 {
		t.Errorf("size %d room %d, want 3000 and 500", c.Size(), c.Room())
	}
	if ok, _ := c.PutIfRoom(old, bytes.Repeat([]byte{9}, 1000)); !ok {
		t.Error("PutIfRoom of a chunk already cached did not report it stored")
	}
}

// Readers, writers and removals race; every read that succeeds returns the
// chunk's bytes, and no file stays open beyond the bound.
func TestChunksConcurrentReads(t *testing.T) {
	c, err := OpenChunks(t.TempDir(), 20_000)
	if err != nil {
		t.Fatal(err)
	}
	c.SetMaxOpen(4)
	ids := make([]crypto.ID, 40)
	for i := range ids {
		ids[i] = crypto.NewID()
	}
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 64)
			for k := 0; k < 400; k++ {
				i := (k*7 + g*13) % len(ids)
				switch k % 5 {
				case 0:
					c.Put(ids[i], bytes.Repeat([]byte{byte(i)}, 1000))
				case 1:
					if k%15 == 1 {
						c.Remove(ids[i])
					}
				default:
					err := c.ReadAt(ids[i], p, 900)
					if err == nil && !bytes.Equal(p, bytes.Repeat([]byte{byte(i)}, 64)) {
						t.Error("read back different bytes")
						return
					}
					if err != nil && !errors.Is(err, ErrMiss) {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := c.OpenFiles(); n > 4 {
		t.Errorf("%d files open, want at most 4", n)
	}
	if c.Size() > 20_000 {
		t.Errorf("size %d over the cap", c.Size())
	}
}
