package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// lossyProxy forwards TCP connections to a server and, while cutting is on,
// drops a server-to-client read with probability p and closes both sides:
// the server applied the request and its answer is lost, as when a
// connection resets.
type lossyProxy struct {
	l       net.Listener
	target  string
	cutting atomic.Bool
	cuts    atomic.Int64
	mu      sync.Mutex
	rng     *rand.Rand
	p       float64
}

func startLossyProxy(t *testing.T, target string, p float64, seed uint64) *lossyProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x := &lossyProxy{l: l, target: target, rng: rand.New(rand.NewPCG(seed, seed)), p: p}
	t.Cleanup(func() { l.Close() })
	go x.serve()
	return x
}

func (x *lossyProxy) serve() {
	for {
		c, err := x.l.Accept()
		if err != nil {
			return
		}
		go func() {
			s, err := net.Dial("tcp", x.target)
			if err != nil {
				c.Close()
				return
			}
			go func() { io.Copy(s, c); s.Close() }()
			buf := make([]byte, 64<<10)
			defer c.Close()
			defer s.Close()
			for {
				n, err := s.Read(buf)
				if n > 0 && x.cut() {
					return
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (x *lossyProxy) cut() bool {
	if !x.cutting.Load() {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.rng.Float64() < x.p {
		x.cuts.Add(1)
		return true
	}
	return false
}

// TestMountLostAnswers runs renames, exchanges and small-file creates on a
// mount whose connection to the server loses answers now and then, after
// the server applied the request. The client sends such a change again;
// applied twice, an exchange swapped back under names sealed for the other
// inode (the directory could then never be listed again), a rename failed
// after it was done, and a create found its own file and made a conflict
// copy. With every change carrying an Idempotency-Key, a repeat gets the
// first attempt's answer: the directory stays readable, holds what the
// operations that succeeded say, and no conflict copy appears.
func TestMountLostAnswers(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	x := startLossyProxy(t, s.addr, 0.15, 7)
	d := newDevice(t, s, "pw")
	d.ok("init", "https://"+x.l.Addr().String(), "--user", "alice", "--invite", s.admin("invite", "alice"),
		"--fingerprint", s.admin("fingerprint"), "--kdf-time", "1", "--kdf-memory-kib", "8192")
	m := mountAccount(t, d)
	if err := os.Mkdir(m.path("t"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) error { return os.WriteFile(m.path("t", name), []byte(content), 0o644) }
	if err := write("x", "X"); err != nil {
		t.Fatal(err)
	}
	if err := write("y", "Y"); err != nil {
		t.Fatal(err)
	}

	x.cutting.Store(true)
	failed := 0
	xHolds, known := "X", true // what x holds after the exchanges that succeeded
	for i := range 40 {
		// Exchange x and y: their contents swap once per success.
		if err := unix.Renameat2(unix.AT_FDCWD, m.path("t", "x"), unix.AT_FDCWD, m.path("t", "y"), unix.RENAME_EXCHANGE); err != nil {
			t.Logf("exchange %d: %v", i, err)
			failed++
			known = false // a failed exchange may or may not have been applied
		} else if xHolds == "X" {
			xHolds = "Y"
		} else {
			xHolds = "X"
		}
		// A small file, then a rename over it.
		if err := write("a", "A"); err != nil {
			t.Logf("create a %d: %v", i, err)
			failed++
			continue
		}
		if err := write("b", "B"); err != nil {
			t.Logf("create b %d: %v", i, err)
			failed++
			continue
		}
		if err := os.Rename(m.path("t", "b"), m.path("t", "a")); errors.Is(err, syscall.ENOENT) {
			t.Errorf("rename %d: %v (it was applied, and its answer lost)", i, err)
		} else if err != nil {
			t.Logf("rename %d: %v", i, err)
			failed++
		}
	}
	x.cutting.Store(false)
	t.Logf("%d answers lost, %d of 160 operations failed", x.cuts.Load(), failed)
	if x.cuts.Load() == 0 {
		t.Fatal("the proxy lost no answer: the test tested nothing")
	}

	// What the mount shows, and what a fresh client reads from the server.
	entries, err := os.ReadDir(m.path("t"))
	if err != nil {
		t.Fatalf("listing on the mount: %v", err)
	}
	cli := loginDevice(t, s, "alice", "pw")
	listing := cli.ok("ls", "/t")
	for _, e := range entries {
		if strings.Contains(e.Name(), "conflict") {
			t.Errorf("a conflict copy appeared: %s", e.Name())
		}
	}
	if strings.Contains(listing, "conflict") {
		t.Errorf("the server holds a conflict copy:\n%s", listing)
	}
	xy := cli.ok("cat", "/t/x") + cli.ok("cat", "/t/y")
	if xy != "XY" && xy != "YX" {
		t.Errorf("x and y hold %q after the exchanges", xy)
	}
	if known && xy[:1] != xHolds {
		t.Errorf("x holds %q after the exchanges that succeeded, want %q: one was applied twice", xy[:1], xHolds)
	}
	if got := cli.ok("cat", "/t/a"); got != "B" && got != "A" {
		t.Errorf("a holds %q", got)
	}
	for _, name := range []string{"x", "y"} {
		got, err := os.ReadFile(m.path("t", name))
		want := cli.ok("cat", "/t/"+name)
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("the mount reads %q from %s (%v), the server holds %q", got, name, err, want)
		}
	}
}
