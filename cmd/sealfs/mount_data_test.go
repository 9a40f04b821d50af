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
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// fsxModel checks a file on the mount against the same operations applied
// to a byte slice.
type fsxModel struct {
	t    *testing.T
	seed uint64
	step int
	data []byte
	f    *os.File
	path string
}

func (x *fsxModel) fatalf(format string, a ...any) {
	x.t.Helper()
	x.t.Fatalf("fsx seed %d step %d: %s", x.seed, x.step, fmt.Sprintf(format, a...))
}

func (x *fsxModel) open() {
	f, err := os.OpenFile(x.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		x.fatalf("open: %v", err)
	}
	x.f = f
}

func (x *fsxModel) close() {
	if err := x.f.Close(); err != nil {
		x.fatalf("close: %v", err)
	}
}

// check compares the whole file with the model.
func (x *fsxModel) check() {
	x.t.Helper()
	got, err := os.ReadFile(x.path)
	if err != nil {
		x.fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, x.data) {
		i := 0
		for i < len(got) && i < len(x.data) && got[i] == x.data[i] {
			i++
		}
		x.fatalf("content differs at byte %d (size %d, want %d)", i, len(got), len(x.data))
	}
}

func TestMountFsx(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SEALFS_FSX_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("fsx seed %d (set SEALFS_FSX_SEED to repeat)", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	x := &fsxModel{t: t, seed: seed, path: m.path("fsx.bin")}
	x.open()
	const maxSize = 3<<20 + 12345
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for x.step = 0; x.step < steps; x.step++ {
		switch op := r.IntN(100); {
		case op < 45: // write
			off := r.IntN(maxSize)
			n := 1 + r.IntN(min(1<<r.IntN(18), maxSize-off))
			buf := make([]byte, n)
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			if _, err := x.f.WriteAt(buf, int64(off)); err != nil {
				x.fatalf("write %d at %d: %v", n, off, err)
			}
			if end := off + n; end > len(x.data) {
				x.data = append(x.data, make([]byte, end-len(x.data))...)
			}
			copy(x.data[off:], buf)
		case op < 55: // truncate
			size := r.IntN(maxSize)
			if err := x.f.Truncate(int64(size)); err != nil {
				x.fatalf("truncate %d: %v", size, err)
			}
			if size < len(x.data) {
				x.data = x.data[:size]
			} else {
				x.data = append(x.data, make([]byte, size-len(x.data))...)
			}
		case op < 85: // read
			if len(x.data) == 0 {
				continue
			}
			off := r.IntN(len(x.data))
			buf := make([]byte, 1+r.IntN(1<<r.IntN(18)))
			k, err := x.f.ReadAt(buf, int64(off))
			if err != nil && !errors.Is(err, io.EOF) {
				x.fatalf("read at %d: %v", off, err)
			}
			want := x.data[off:min(off+len(buf), len(x.data))]
			if !bytes.Equal(buf[:k], want) {
				x.fatalf("read %d at %d differs", len(buf), off)
			}
		case op < 88: // a write through a shared mapping
			if len(x.data) == 0 {
				continue
			}
			mem, err := syscall.Mmap(int(x.f.Fd()), 0, len(x.data), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
			if err != nil {
				x.fatalf("mmap: %v", err)
			}
			off := r.IntN(len(x.data))
			n := min(1+r.IntN(8192), len(x.data)-off)
			for i := 0; i < n; i++ {
				b := byte(r.Uint32())
				mem[off+i], x.data[off+i] = b, b
			}
			if r.IntN(2) == 0 {
				if err := msync(mem); err != nil {
					x.fatalf("msync: %v", err)
				}
			}
			if err := syscall.Munmap(mem); err != nil {
				x.fatalf("munmap: %v", err)
			}
		case op < 92: // close and open again
			x.close()
			x.check()
			x.open()
		case op < 95:
			if err := x.f.Sync(); err != nil {
				x.fatalf("fsync: %v", err)
			}
		default:
			x.check()
		}
	}
	x.close()
	x.check()
	m.remountCold()
	x.check()
}

// msync writes a shared mapping back before it returns.
func msync(b []byte) error {
	_, _, e := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafePointer(b)), uintptr(len(b)), syscall.MS_SYNC)
	if e != 0 {
		return e
	}
	return nil
}

func TestMountConcurrentWriters(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	work := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 6; i++ {
		src := filepath.Join(work, fmt.Sprintf("w%d", i))
		writeRandom(t, src, (i+1)*1500*1000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, _ := os.ReadFile(src)
			if err := os.WriteFile(m.path(filepath.Base(src)), b, 0o600); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	m.remountCold()
	for i := 0; i < 6; i++ {
		name := fmt.Sprintf("w%d", i)
		sameFile(t, filepath.Join(work, name), m.path(name))
	}
}

func TestMountServerDown(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d, "--timeout", "5s")
	want := bytes.Repeat([]byte("durable "), 300000)
	f, err := os.Create(m.path("f"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	s.stop()
	start := time.Now()
	if err := f.Sync(); err == nil {
		t.Fatal("fsync succeeded with the server down")
	}
	err = f.Close()
	if err == nil {
		t.Fatal("close succeeded with the server down")
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("fsync and close took %v to fail", el)
	}
	t.Logf("close: %v after %v", err, time.Since(start))
	// The data stays in memory and is committed once the server is back.
	s.start()
	m.unmount()
	m.start()
	got, err := os.ReadFile(m.path("f"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after the server came back: %d bytes, %v", len(got), err)
	}
}

func TestMountTamperedChunk(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	before := map[string]bool{}
	blobs := filepath.Join(s.data, "blobs")
	filepath.WalkDir(blobs, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			before[p] = true
		}
		return nil
	})
	writeRandom(t, m.path("a.bin"), 3<<20)
	os.WriteFile(m.path("ok.txt"), []byte("fine"), 0o644)
	m.unmount()
	tampered := 0
	filepath.WalkDir(blobs, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() || before[p] {
			return nil
		}
		if b, _ := os.ReadFile(p); len(b) > 100<<10 {
			b[len(b)/2] ^= 0x20
			os.WriteFile(p, b, 0o600)
			tampered++
		}
		return nil
	})
	if tampered == 0 {
		t.Fatal("no chunk blob found to tamper with")
	}
	os.RemoveAll(m.cache)
	m.start()
	_, err := os.ReadFile(m.path("a.bin"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a tampered file: %v, want EIO", err)
	}
	if got, err := os.ReadFile(m.path("ok.txt")); err != nil || string(got) != "fine" {
		t.Fatalf("untouched file: %q %v", got, err)
	}
	if !strings.Contains(m.log.String(), "a.bin") {
		t.Errorf("the EIO was not logged with its path:\n%s", m.log)
	}
}

func TestMountMemoryBound(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	// The race detector's shadow memory would count in the RSS measured.
	d.bin = plainBin(t)
	m := mountAccount(t, d)
	const size = 300 << 20
	f, err := os.Create(m.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{7})
	buf := make([]byte, 1<<20)
	start := time.Now()
	for done := 0; done < size; done += len(buf) {
		r.Read(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d", &hwm)
		}
	}
	t.Logf("wrote %d MiB in %v (%.0f MiB/s), mount peak RSS %d MiB", size>>20, el, float64(size>>20)/el.Seconds(), hwm>>10)
	if hwm == 0 || hwm > 256<<10 {
		t.Fatalf("mount peak RSS %d KiB, want under 256 MiB", hwm)
	}
	if fi, err := os.Stat(m.path("big")); err != nil || fi.Size() != size {
		t.Fatalf("size after close: %v %v", fi, err)
	}
}

// unsafePointer is the address of b's first byte, for msync.
func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
