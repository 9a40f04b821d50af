package cache

import (
	"bytes"
	"errors"
	"io"
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
	if err := c.ReadAt(ids[2], p, 995); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short ReadAt error %v", err)
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
