package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sealedChunk is the sealed size of a full 1 MiB chunk: 16 blocks, each
// with a 12-byte nonce and a 16-byte tag.
const sealedChunk = 1<<20 + 16*28

// cachedChunks counts the chunk files of a mount's cache and their bytes.
func cachedChunks(t *testing.T, dir string) (n int, size int64) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		if info, err := e.Info(); err == nil {
			n++
			size += info.Size()
		}
		return nil
	})
	return n, size
}

// waitCached waits until the cache holds want chunks and stays there.
func waitCached(t *testing.T, dir string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := cachedChunks(t, dir)
		if n == want {
			time.Sleep(300 * time.Millisecond)
			if n, _ = cachedChunks(t, dir); n == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache holds %d chunks, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chunkBytesOut reads the server's counter of sealed chunk bytes sent.
func (s *testServer) chunkBytesOut() float64 {
	s.t.Helper()
	out, err := exec.Command("curl", "-s", "http://"+s.metrics+"/metrics").Output()
	if err != nil {
		s.t.Skipf("curl for metrics: %v", err)
	}
	var v float64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "sealfs_chunk_bytes_total{") && strings.Contains(line, `"out"`) {
			fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v)
		}
	}
	return v
}

// preadAt reads len(p) bytes at off and checks them against want.
func preadAt(t *testing.T, f *os.File, want []byte, off int64, n int) {
	t.Helper()
	p := make([]byte, n)
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatalf("pread at %d: %v", off, err)
	}
	if !bytes.Equal(p, want[off:off+int64(n)]) {
		t.Fatalf("pread at %d: wrong bytes", off)
	}
}

// A file read at random is fetched in the background, but only as far as
// the cache has room: the fill never evicts. A sequential read of a file
// larger than the whole cache leaves the cache alone.
func TestMountReadFillAndScan(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	// 9 MiB holds 8 sealed chunks of the 12 of the file.
	m := mountAccount(t, d, "--cache-size", "9M")
	want := writeRandom(t, m.path("f.bin"), 12<<20)
	m.remountCold()

	// Sequential: the file does not fit, so nothing is cached.
	got, err := os.ReadFile(m.path("f.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sequential read: %d bytes, %v", len(got), err)
	}
	if n, _ := cachedChunks(t, m.cache); n != 0 {
		t.Errorf("a sequential read of a file larger than the cache cached %d chunks", n)
	}

	m.remountCold()
	f, err := os.Open(m.path("f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { f.Close() }()
	// Scattered 4 KiB reads make the file's reads random and start the
	// fill; it stops when the cache is full.
	offs := []int64{7<<20 + 4096, 2<<20 + 8192, 10<<20 + 40960, 5 << 20, 11<<20 + 123<<10}
	for _, off := range offs {
		preadAt(t, f, want, off, 4096)
	}
	fits := (9 << 20) / sealedChunk
	waitCached(t, m.cache, fits)
	if _, size := cachedChunks(t, m.cache); size > 9<<20 {
		t.Errorf("the cache grew to %d bytes, over its cap", size)
	}
	// The fill evicted none of the chunks read: after a remount that
	// keeps the cache, reading them again downloads nothing.
	f.Close()
	m.unmount()
	m.start()
	if f, err = os.Open(m.path("f.bin")); err != nil {
		t.Fatal(err)
	}
	out := s.chunkBytesOut()
	for _, off := range offs {
		preadAt(t, f, want, off, 4096)
	}
	if d := s.chunkBytesOut() - out; d != 0 {
		t.Errorf("reading the chunks read before the fill downloaded %.0f bytes: the fill evicted them", d)
	}
	// Every byte still reads right, cached, hot or downloaded again.
	for off := int64(0); off < 12<<20; off += 300 << 10 {
		preadAt(t, f, want, off, 4096)
	}
	got, err = os.ReadFile(m.path("f.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("full read after the fill: %d bytes, %v", len(got), err)
	}
}

// Tampered chunks read at random fail with EIO, and none of them enters
// the cache, whether fetched by a read or by the background fill.
func TestMountReadTamperedRandom(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	blobs := filepath.Join(s.data, "blobs")
	before := map[string]bool{}
	filepath.WalkDir(blobs, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			before[p] = true
		}
		return nil
	})
	writeRandom(t, m.path("bad.bin"), 6<<20)
	m.unmount()
	tampered := 0
	filepath.WalkDir(blobs, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() || before[p] {
			return nil
		}
		if b, _ := os.ReadFile(p); len(b) > 100<<10 {
			b[len(b)/3] ^= 0x01
			os.WriteFile(p, b, 0o600)
			before[p] = true
			tampered++
		}
		return nil
	})
	if tampered != 6 {
		t.Fatalf("tampered with %d chunk blobs, want 6", tampered)
	}
	os.RemoveAll(m.cache)
	m.start()
	good := writeRandom(t, m.path("good.bin"), 3<<20)

	f, err := os.Open(m.path("bad.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 4096)
	for _, off := range []int64{3<<20 + 4096, 1 << 20, 5<<20 + 8192, 12288, 4<<20 + 65536} {
		if _, err := f.ReadAt(p, off); !errors.Is(err, syscall.EIO) {
			t.Fatalf("pread of a tampered chunk at %d: %v, want EIO", off, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let a fill run its course
	// Only good.bin's chunks (cached by its upload) may be in the cache.
	if n, _ := cachedChunks(t, m.cache); n > 3 {
		t.Errorf("%d chunks cached: tampered chunks entered the cache", n)
	}
	g, err := os.Open(m.path("good.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for _, off := range []int64{2<<20 + 4096, 8192, 1<<20 + 65536, 3<<20 - 4096} {
		preadAt(t, g, good, off, 4096)
	}
	if !strings.Contains(m.log.String(), "bad.bin") {
		t.Errorf("the EIO was not logged with its path:\n%s", m.log)
	}
}
