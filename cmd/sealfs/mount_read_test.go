package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/fusefs"
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
func (s *testServer) chunkBytesOut() float64 { return s.chunkBytes("out") }

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

// residentPages reports which pages of [off, off+n) the kernel's page
// cache holds for f.
func residentPages(t *testing.T, f *os.File, off, n int64) []bool {
	t.Helper()
	mem, err := syscall.Mmap(int(f.Fd()), off, int(n), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer syscall.Munmap(mem)
	vec := make([]byte, (n+4095)/4096)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, uintptr(unsafePointer(mem)), uintptr(n), uintptr(unsafePointer(vec))); e != 0 {
		t.Fatalf("mincore: %v", e)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

// A 4 KiB read hands the rest of the 64 KiB block it opened to the
// kernel's page cache, and only that block.
func TestMountReadPushesBlock(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	want := writeRandom(t, m.path("f.bin"), 2<<20)
	m.remountCold()
	f, err := os.Open(m.path("f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	preadAt(t, f, want, 5<<16+4096, 4096)
	var got []bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = residentPages(t, f, 4<<16, 3<<16); got[16+15] {
			break
		}
	}
	for i, r := range got {
		if in := i >= 16 && i < 32; r != in {
			t.Fatalf("page %d of blocks 4-6 resident=%v, want %v (block 5 only): %v", i, r, in, got)
		}
	}
	// The pushed pages hold the file's bytes.
	for _, off := range []int64{5 << 16, 5<<16 + 8192, 6<<16 - 4096} {
		preadAt(t, f, want, off, 4096)
	}
}

// An open of an unchanged file keeps what the kernel cached of it; an open
// after another client replaced it (same size, other bytes) drops it, and
// so does one after this mount changed it.
func TestMountReadKeepCache(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	a := mountAccount(t, initAccount(t, s, "alice", "pw"))
	want := writeRandom(t, a.path("k.bin"), 1<<20)
	a.remountCold()
	if got, err := os.ReadFile(a.path("k.bin")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("first read: %v", err)
	}
	resident := func() int {
		f, err := os.Open(a.path("k.bin"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n := 0
		for _, r := range residentPages(t, f, 0, 1<<20) {
			if r {
				n++
			}
		}
		return n
	}
	// The open the first read made recorded the version; this one keeps
	// the pages.
	if n := resident(); n != 256 {
		t.Fatalf("%d of 256 pages cached after reopening an unchanged file", n)
	}

	// Another client writes other bytes of the same size and sets the
	// old mtime back, so that the kernel's own check (size and mtime)
	// sees no change.
	fi, err := os.Stat(a.path("k.bin"))
	if err != nil {
		t.Fatal(err)
	}
	b := mountAccount(t, loginDevice(t, s, "alice", "pw"))
	other := make([]byte, len(want))
	copy(other, want)
	for i := 0; i < len(other); i += 4096 {
		other[i] ^= 0xff
	}
	if err := os.WriteFile(b.path("k.bin"), other, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(b.path("k.bin"), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // A's attribute cache expires
	if fi2, err := os.Stat(a.path("k.bin")); err != nil || !fi2.ModTime().Equal(fi.ModTime()) || fi2.Size() != fi.Size() {
		t.Fatalf("A sees %v %v, want the old size and mtime", fi2, err)
	}
	eventually(t, "A reads B's bytes", func() bool {
		got, _ := os.ReadFile(a.path("k.bin"))
		return bytes.Equal(got, other)
	})

	// This mount's own change.
	f, err := os.OpenFile(a.path("k.bin"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("local"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	copy(other[4096:], "local")
	if got, err := os.ReadFile(a.path("k.bin")); err != nil || !bytes.Equal(got, other) {
		t.Fatalf("read after a local write: %v", err)
	}
	if got, err := os.ReadFile(b.path("k.bin")); err == nil && !bytes.Equal(got, other) {
		eventually(t, "B reads A's write", func() bool {
			got, _ := os.ReadFile(b.path("k.bin"))
			return bytes.Equal(got, other)
		})
	}
}

// The mount raises the kernel's readahead window for itself (as root, which
// CI is), so that sequential reads come in requests of a whole chunk.
func TestMountRaisesReadahead(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	var st syscall.Stat_t
	if err := syscall.Stat(m.dir, &st); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := unix.Access(path, unix.W_OK); err != nil {
		// A container's read-only /sys: the mount cannot raise it either.
		t.Skipf("%s is not writable here: %v", path, err)
	}
	// The mount point appears when the kernel mounts it; the mount raises
	// the knob just after, so it may still be at the kernel's default.
	want := strconv.Itoa(fusefs.ReadaheadKB)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSpace(string(b))
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %s, want %s", path, got, want)
		}
	}
}

// TestMountCorruptCache damages the chunk cache on the client's disk, as a
// crash (its files are not synced) or a failing disk does: one chunk file
// with a flipped byte, one cut short. Reads must return the file's bytes,
// fetching those chunks from the server again; before, the first read of
// each failed with EIO although the server held good copies.
func TestMountCorruptCache(t *testing.T) {
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	want := writeRandom(t, m.path("a.bin"), 4<<20)
	m.remountCold()
	if got, err := os.ReadFile(m.path("a.bin")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cold read: %v", err)
	}
	m.unmount()
	var files []string
	filepath.WalkDir(m.cache, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".tmp-") {
			if st, _ := e.Info(); st != nil && st.Size() >= sealedChunk {
				files = append(files, p)
			}
		}
		return nil
	})
	if len(files) < 2 {
		t.Fatalf("%d chunks in the cache after reading 4 MiB, want 4", len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x10
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(files[1], sealedChunk/2); err != nil {
		t.Fatal(err)
	}
	m.start()
	before := s.requests("GET /v1/chunks/{chunk}")
	if got, err := os.ReadFile(m.path("a.bin")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read over a damaged cache: %v (equal: %v), want the file's bytes", err, bytes.Equal(got, want))
	}
	if n := s.requests("GET /v1/chunks/{chunk}") - before; n < 2 {
		t.Errorf("%v chunk fetches, want at least the 2 damaged ones", n)
	}
	if !strings.Contains(m.log.String(), "failed verification") {
		t.Errorf("the damaged cached chunk was not logged:\n%s", m.log)
	}
}
