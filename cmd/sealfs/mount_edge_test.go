package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountRenameAfterRemoteReplace renames, on a mount, a name that another
// client has just pointed at another file. The mount's sealed new name is
// bound to the file it knew; had the server stored it on the entry, which
// leads to the other file by now, the name would fail authentication for
// good and the directory could no longer be listed, here or anywhere. The
// server refuses such a rename, the mount answers ESTALE, and the kernel
// looks the name up again and renames what it names now.
func TestMountRenameAfterRemoteReplace(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))
	cli := loginDevice(t, s, "alice", "pw")
	src := filepath.Join(t.TempDir(), "new.txt")
	if err := os.WriteFile(src, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("w"), 0o755); err != nil {
		t.Fatal(err)
	}
	for try := range 3 {
		if err := os.WriteFile(m.path("w", "s0"), []byte("old\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(m.path("w", "s0")); err != nil {
			t.Fatal(err)
		}
		cli.ok("put", src, "/w/tmp")
		cli.ok("mv", "/w/tmp", "/w/s0")
		if err := os.Rename(m.path("w", "s0"), m.path("w", "s1")); err != nil {
			t.Fatalf("try %d: rename on the mount after another client replaced the source: %v", try, err)
		}
		if got, err := os.ReadFile(m.path("w", "s1")); err != nil || string(got) != "new\n" {
			t.Fatalf("try %d: the renamed file holds %q (%v), want the other client's", try, got, err)
		}
		if out := cli.ok("ls", "/w"); strings.TrimSpace(out) != "s1" {
			t.Fatalf("try %d: the other client lists %q, want only s1", try, out)
		}
		names := sh(t, m.dir, "ls", "w")
		if strings.TrimSpace(names) != "s1" {
			t.Fatalf("try %d: the mount lists %q, want only s1", try, names)
		}
		if err := os.Remove(m.path("w", "s1")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMountUnlinkedOpenFile writes to files whose last name is gone while
// they are open, as tmpfile(3) and Python's TemporaryFile make them: what
// was written stays readable through the open descriptors until the last
// close, whatever fsync or the close of a duplicate (a forked child
// exiting) asked, and never reaches the server.
func TestMountUnlinkedOpenFile(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))
	cli := loginDevice(t, s, "alice", "pw")
	check := func(what string, f *os.File, off int64, want []byte) {
		t.Helper()
		// Reads must come from the mount, not from pages the kernel kept.
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		if _, err := f.ReadAt(got, off); err != nil {
			t.Fatalf("%s: read back: %v", what, err)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Fatalf("%s: the data read back differs from what was written from offset %d", what, off+int64(i))
		}
	}
	cases := []struct {
		name   string
		before []byte // content stored before the open; nil: created by the open
		off    int64
		size   int
		flush  func(f *os.File) error
	}{
		{"new-fsync", nil, 1609815, 1 << 20, (*os.File).Sync},
		{"new-dup-close", nil, 0, 3 << 20, func(f *os.File) error {
			fd, err := syscall.Dup(int(f.Fd()))
			if err != nil {
				return err
			}
			return syscall.Close(fd)
		}},
		{"stored-fsync", []byte("stored before\n"), 100, 3 << 20, (*os.File).Sync},
	}
	for _, c := range cases {
		p := m.path(c.name)
		if c.before != nil {
			if err := os.WriteFile(p, c.before, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		data := pattern(c.size)
		if _, err := f.WriteAt(data, c.off); err != nil {
			t.Fatal(err)
		}
		if err := c.flush(f); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		check(c.name, f, c.off, data)
		if c.before != nil {
			head := make([]byte, c.off) // what was stored, then a hole
			copy(head, c.before)
			check(c.name+" (the part stored before)", f, 0, head)
		}
		// Later writes after the flush are kept as well.
		if _, err := f.WriteAt([]byte("tail"), c.off+int64(c.size)); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		check(c.name+" after a second write", f, c.off+int64(c.size)-4, append(data[len(data)-4:], "tail"...))
		// fchmod and futimens work as on a local disk.
		if err := f.Chmod(0o600); err != nil {
			t.Fatalf("%s: fchmod of an unlinked file: %v", c.name, err)
		}
		mt := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		if err := unix.Futimes(int(f.Fd()), []unix.Timeval{unix.NsecToTimeval(mt.UnixNano()), unix.NsecToTimeval(mt.UnixNano())}); err != nil {
			t.Fatalf("%s: futimes of an unlinked file: %v", c.name, err)
		}
		if fi, err := f.Stat(); err != nil || fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mt) {
			t.Fatalf("%s: fstat after fchmod and futimes: %v %v", c.name, fi.Mode(), err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("%s: close: %v", c.name, err)
		}
		if r := cli.run("stat", "/"+c.name); r.code == 0 {
			t.Fatalf("%s: an unlinked file is on the server: %s", c.name, r.stdout)
		}
	}
	// Unchanged since it was opened, then unlinked: its attributes are
	// this mount's alone now, as on a local disk.
	if err := os.WriteFile(m.path("plain"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(m.path("plain"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("plain")); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatalf("fchmod of an unchanged unlinked file: %v", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fstat after fchmod: %v %v", fi.Mode(), err)
	}
	f.Close()
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(m.log.String(), "level=ERROR") {
		t.Fatalf("the mount logged errors:\n%s", m.log)
	}
}

// pattern is n bytes without zeros, so a hole or a lost write shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7%251 + 1)
	}
	return b
}

// TestMountXattrsWhileListing sets extended attributes one by one on an
// open file while another goroutine lists its directory. A listing fetched
// before a setxattr brought the set from before it back into the mount,
// and the next setxattr stored that set plus its own attribute: 13-17 of
// 100 acknowledged attributes were lost on the server.
func TestMountXattrsWhileListing(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("d", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(m.path("d", "f"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				os.ReadDir(m.path("d"))
			}
		}
	})
	const n = 100
	for i := range n {
		if err := unix.Fsetxattr(int(f.Fd()), fmt.Sprintf("user.k%d", i), []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	f.Close()
	m.unmount()
	m = mountAccount(t, m.d) // a fresh cache
	buf := make([]byte, 64<<10)
	sz, err := unix.Listxattr(m.path("d", "f"), buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(buf[:sz]), "user.k"); got != n {
		t.Fatalf("%d of %d acknowledged attributes are stored", got, n)
	}
}

// TestMountOpenAfterRemoteReplace opens, on a mount, a name that another
// client has just replaced by renaming a new file over it, as editors and
// git (refs, packed-refs) save. The open must find the old file or the new
// one (changes elsewhere show within seconds, not at once), never fail: it
// failed with ENOENT for up to a second after each replace (the kernel still held the old inode for the name, which no
// longer exists on the server), and git on the mount reported "your
// current branch does not have any commits yet" while another client ran
// git gc. ESTALE makes the kernel look the name up again.
func TestMountOpenAfterRemoteReplace(t *testing.T) {
	_, a, b := twoMounts(t)
	writeSeen(t, a, b, "f", "version 0\n")
	for try := 1; try <= 4; try++ {
		// B knows the name's current inode, and keeps no state of the
		// file after a second...
		if _, err := os.ReadFile(b.path("f")); err != nil {
			t.Fatalf("try %d: reading before the replace: %v", try, err)
		}
		time.Sleep(1100 * time.Millisecond)
		// ...when A replaces it; B learns of that within a second or so.
		if err := os.WriteFile(a.path("tmp"), []byte(fmt.Sprintf("version %d\n", try)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(a.path("tmp"), a.path("f")); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(b.path("f"))
		if err != nil {
			t.Fatalf("try %d: opening a name another client just replaced: %v, want the old or the new file", try, err)
		}
		var k int
		if _, err := fmt.Sscanf(string(got), "version %d\n", &k); err != nil || k > try {
			t.Fatalf("try %d: read %q, want one of the versions so far", try, got)
		}
	}
}
