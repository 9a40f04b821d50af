package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

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
