package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
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

// Pushed pages never outlive the content they were read from: random
// reads through a read-only descriptor race with writes through other
// descriptors (short-lived, and one kept open) and truncates by path,
// often right after a read into the block it pushed, and every read
// returns what the model holds.
func TestMountReadPushCoherence(t *testing.T) {
	t.Run("prompt", func(t *testing.T) { testPushCoherence(t, 2000) })
	// Pushes that land late hit every window the page gate closes.
	t.Run("late", func(t *testing.T) {
		t.Setenv("SEALFS_TEST_PUSH_DELAY", "3ms")
		testPushCoherence(t, 1000)
	})
}

func testPushCoherence(t *testing.T, steps int) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	path := m.path("c.bin")
	c := &coherence{t: t, path: path, data: writeRandom(t, path, 3<<20)}
	m.remountCold()
	c.seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("SEALFS_PUSH_SEED"); v != "" {
		c.seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (set SEALFS_PUSH_SEED to repeat)", c.seed)
	r := rand.New(rand.NewPCG(c.seed, 2))
	defer c.closeAll()
	if testing.Short() {
		steps /= 5
	}
	// inBlock is an offset in the block of the last read, page aligned.
	inBlock := func() int { return min(c.lastRead&^(64<<10-1)+r.IntN(16)*4096, len(c.data)) }
	for c.step = 0; c.step < steps; c.step++ {
		switch op := r.IntN(100); {
		case op < 45:
			c.read(r.IntN(len(c.data)+1)&^4095, 4096<<r.IntN(2))
		case op < 55:
			c.write(r.IntN(len(c.data)+1), 1+r.IntN(8192), r, false)
		case op < 65: // through the descriptor kept open
			off := r.IntN(len(c.data) + 1)
			if r.IntN(2) == 0 {
				off = inBlock()
			}
			c.write(off, 1+r.IntN(8192), r, true)
		case op < 70:
			if c.rw != nil {
				c.rw.Close()
				c.rw = nil
				c.note("close rw")
			}
		case op < 76:
			size := r.IntN(len(c.data) + 64<<10)
			if r.IntN(2) == 0 {
				size = c.lastRead + r.IntN(64<<10)
			}
			c.truncate(size)
		case op < 82: // read, cut the block it pushed, grow back, read the cut part
			off := r.IntN(len(c.data)+1) &^ 4095
			c.read(off, 4096)
			size := len(c.data)
			c.truncate(off + 4096 + r.IntN(8192))
			c.truncate(size)
			c.read(off&^(64<<10-1)+r.IntN(16)*4096, 4096)
			time.Sleep(10 * time.Millisecond) // a late push would have landed
			for p := off &^ (64<<10 - 1); p < off&^(64<<10-1)+64<<10; p += 16 << 10 {
				c.read(p, 16<<10)
			}
		case op < 88: // read, write the block it pushed through the kept descriptor, read it
			off := r.IntN(len(c.data)+1) &^ 4095
			c.read(off, 4096)
			w := inBlock()
			c.write(w, 1+r.IntN(4096), r, true)
			c.read(w&^4095, 8192)
			time.Sleep(10 * time.Millisecond)
			c.read(w&^4095, 8192)
		case op < 97:
			if c.ro != nil {
				c.ro.Close()
				c.ro = nil
				c.note("reopen ro")
			}
		default: // let pushes land
			time.Sleep(5 * time.Millisecond)
		}
	}
	c.closeAll()
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, c.data) {
		t.Fatalf("seed %d: final content differs (%d bytes, want %d): %v", c.seed, len(got), len(c.data), err)
	}
}

// coherence is TestMountReadPushCoherence's file and model.
type coherence struct {
	t        *testing.T
	path     string
	seed     uint64
	step     int
	data     []byte
	ro, rw   *os.File
	lastRead int
	recent   []string
}

func (c *coherence) note(format string, a ...any) {
	c.recent = append(c.recent, fmt.Sprintf("%d:", c.step)+fmt.Sprintf(format, a...))
	if len(c.recent) > 12 {
		c.recent = c.recent[1:]
	}
}

func (c *coherence) fatalf(format string, a ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d step %d: %s; recent: %v", c.seed, c.step, fmt.Sprintf(format, a...), c.recent)
}

func (c *coherence) closeAll() {
	for _, f := range []**os.File{&c.ro, &c.rw} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
}

// read reads n bytes at off through the read-only descriptor.
func (c *coherence) read(off, n int) {
	c.t.Helper()
	if c.ro == nil {
		var err error
		if c.ro, err = os.Open(c.path); err != nil {
			c.t.Fatal(err)
		}
	}
	off = min(off, len(c.data))
	buf := make([]byte, n)
	k, err := c.ro.ReadAt(buf, int64(off))
	if err != nil && !errors.Is(err, io.EOF) {
		c.fatalf("read at %d: %v", off, err)
	}
	want := c.data[off:min(off+n, len(c.data))]
	if !bytes.Equal(buf[:k], want) {
		diff := func(p []byte) string {
			i := 0
			for i < len(p) && i < len(want) && p[i] == want[i] {
				i++
			}
			return fmt.Sprintf("%d bytes, first difference at %d", len(p), off+i)
		}
		fresh := make([]byte, n)
		g, _ := os.Open(c.path)
		k2, _ := g.ReadAt(fresh, int64(off))
		g.Close()
		c.fatalf("read %d at %d of %d: got %s (through a new descriptor: %s)", n, off, len(c.data), diff(buf[:k]), diff(fresh[:k2]))
	}
	c.lastRead = off
	c.note("read %d@%d", n, off)
}

// write writes n random bytes at off, through the descriptor kept open
// (kept) or one of its own.
func (c *coherence) write(off, n int, r *rand.Rand, kept bool) {
	c.t.Helper()
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	w := c.rw
	if !kept || w == nil {
		var err error
		if w, err = os.OpenFile(c.path, os.O_RDWR, 0); err != nil {
			c.t.Fatal(err)
		}
		if kept {
			c.rw = w
		}
	}
	if _, err := w.WriteAt(buf, int64(off)); err != nil {
		c.fatalf("write: %v", err)
	}
	if !kept {
		if err := w.Close(); err != nil {
			c.fatalf("close: %v", err)
		}
	}
	if end := off + n; end > len(c.data) {
		c.data = append(c.data, make([]byte, end-len(c.data))...)
	}
	copy(c.data[off:], buf)
	c.note("write %d@%d kept=%v", n, off, kept)
}

// truncate truncates by path and checks the size the kernel reports.
func (c *coherence) truncate(size int) {
	c.t.Helper()
	if err := os.Truncate(c.path, int64(size)); err != nil {
		c.fatalf("truncate: %v", err)
	}
	if size < len(c.data) {
		c.data = c.data[:size]
	} else {
		c.data = append(c.data, make([]byte, size-len(c.data))...)
	}
	c.note("truncate %d", size)
	if fi, err := os.Stat(c.path); err != nil || fi.Size() != int64(size) {
		c.fatalf("size after truncate %d: %v %v", size, fi.Size(), err)
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
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(fusefs.ReadaheadKB) {
		t.Errorf("%s = %s, want %d", path, got, fusefs.ReadaheadKB)
	}
}
