package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// TestMountServerDiskFull fills the disk under the server. A close whose
// data the server could not store must fail with ENOSPC, at once rather
// than after the mount's timeout of retries, for a large file and for a
// small one; what was stored before stays intact, and once there is space
// again the mount stores files without a remount.
func TestMountServerDiskFull(t *testing.T) {
	requireFUSE(t)
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=48m"); err != nil {
		t.Fatalf("a small tmpfs for the server's disk (needs root, as CI has): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(disk, unix.MNT_DETACH) })
	s := &testServer{t: t, bin: sealfsBin(t), data: filepath.Join(disk, "data"), addr: freeAddr(t), metrics: freeAddr(t)}
	s.start()
	t.Cleanup(s.stop)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))

	kept := pattern(3<<20 + 5)
	if err := os.WriteFile(m.path("kept.bin"), kept, 0o644); err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(zeros); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()

	// A large file needs new blobs: ENOSPC. A small one goes into the
	// database, which may still have free pages: stored, or ENOSPC.
	want := map[string][]byte{"kept.bin": kept}
	for _, c := range []struct {
		name   string
		size   int
		mayFit bool
	}{{"big.bin", 5 << 20, false}, {"small.txt", 3000, true}} {
		start := time.Now()
		f, err := os.Create(m.path(c.name))
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.Write(pattern(c.size))
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		switch {
		case werr == nil && c.mayFit:
			want[c.name] = pattern(c.size)
		case !errors.Is(werr, syscall.ENOSPC):
			t.Fatalf("%s on a full server: %v, want ENOSPC", c.name, werr)
		default:
			os.Remove(m.path(c.name))
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("%s: the full disk was reported after %v, not at once", c.name, d)
		}
	}

	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("after.bin"), pattern(2<<20), 0o644); err != nil {
		t.Fatalf("writing once the disk has space again: %v", err)
	}
	m.unmount()
	m = mountAccount(t, m.d)
	want["after.bin"] = pattern(2 << 20)
	for name, want := range want {
		if got, err := os.ReadFile(m.path(name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after a cold remount: %d bytes, %v", name, len(got), err)
		}
	}
}

// TestMountOutageBoundsClose stops the server (SIGSTOP: connections hang,
// nothing answers) in the middle of a large write. Writes fail once the
// write buffer is full, and the close that follows must fail within about
// three times --timeout, as semantics.md says, although tens of chunks are
// still waiting for upload: they give up together, not one wave of
// parallel uploads per timeout. Once the server answers again, the mount
// works without a remount.
func TestMountOutageBoundsClose(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	const timeout = 3 * time.Second
	m := mountAccount(t, initAccount(t, s, "alice", "pw"), "--timeout", timeout.String())
	f, err := os.Create(m.path("big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := pattern(1 << 20)
	for range 8 {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	resume := func() {
		if stopped {
			s.cmd.Process.Signal(syscall.SIGCONT)
			stopped = false
		}
	}
	t.Cleanup(resume)
	var werr error
	for i := 0; i < 400 && werr == nil; i++ {
		_, werr = f.Write(chunk)
	}
	if werr == nil {
		t.Fatal("400 MiB written with the server stopped: the write buffer is not bounded")
	}
	start := time.Now()
	cerr := f.Close()
	took := time.Since(start)
	if cerr == nil {
		t.Fatal("close succeeded with the server stopped")
	}
	t.Logf("write: %v; close: %v after %v", werr, cerr, took)
	if took > 4*timeout {
		t.Fatalf("close took %v to fail with --timeout %v", took, timeout)
	}
	resume()
	if err := os.WriteFile(m.path("after"), []byte("back"), 0o644); err != nil {
		t.Fatalf("writing after the server came back: %v", err)
	}
	if got, err := os.ReadFile(m.path("after")); err != nil || string(got) != "back" {
		t.Fatalf("reading after the server came back: %q %v", got, err)
	}
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

// TestMountForceUnmount ends a mount whose process no longer answers (here
// stopped with SIGSTOP; a process killed while one of its threads waits in
// the kernel on a lock that a request to the same process holds hangs the
// same way, for good). A process blocked on the mount must get an error,
// and the mount point must go, with sealfs umount --force; the mount
// process, once it runs again, exits cleanly, and nothing stored is lost.
func TestMountForceUnmount(t *testing.T) {
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	if err := os.WriteFile(m.path("kept"), []byte("stored before"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := m.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := sync.OnceFunc(func() { syscall.Kill(pid, syscall.SIGCONT) })
	defer cont()
	blocked := make(chan error, 1)
	go func() {
		_, err := os.Stat(m.path("not-looked-up-before")) // a LOOKUP nobody answers
		blocked <- err
	}()
	select {
	case err := <-blocked:
		t.Fatalf("stat on a stopped mount returned at once: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	cmd := d.command("umount", "--force", "--wait", "2s", m.dir)
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+m.runtime)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "still running") {
		t.Errorf("umount --force of a stopped mount process: %v, %q; want a failure saying it still runs", err, out)
	}
	select {
	case err := <-blocked:
		if err == nil {
			t.Error("stat through the aborted mount succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a process blocked on the mount stayed blocked after umount --force")
	}
	if isMounted(m.dir) {
		t.Error("the mount point is still mounted after umount --force")
	}
	cont()
	select {
	case <-m.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the mount process did not exit after its connection was aborted")
	}
	if m.code != 0 {
		t.Errorf("the mount process exited with %d after a forced unmount, nothing pending:\n%s", m.code, m.log)
	}
	m.cmd = nil
	m.start()
	if b, err := os.ReadFile(m.path("kept")); err != nil || string(b) != "stored before" {
		t.Fatalf("after a forced unmount: %q, %v", b, err)
	}

	// Detached first (fusermount3 -u -z, which leaves whatever is blocked
	// on it blocked): umount -f no longer reaches it, the connection
	// recorded in the status file does.
	pid = m.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont = sync.OnceFunc(func() { syscall.Kill(pid, syscall.SIGCONT) })
	defer cont()
	go func() {
		_, err := os.Stat(m.path("also-not-looked-up"))
		blocked <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if out, err := exec.Command("fusermount3", "-u", "-z", m.dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u -z: %v %s", err, out)
	}
	cmd = d.command("umount", "--force", "--wait", "2s", m.dir)
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+m.runtime)
	out, _ = cmd.CombinedOutput()
	if strings.Contains(string(out), "needs root") {
		t.Skipf("the FUSE control file system cannot be mounted here: %s", out)
	}
	select {
	case err := <-blocked:
		if err == nil {
			t.Error("stat through the aborted mount succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("a process blocked on a detached mount stayed blocked after umount --force (%s)", out)
	}
	cont()
	select {
	case <-m.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the mount process did not exit after its connection was aborted")
	}
	m.cmd = nil
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

// TestMountLogoutStays logs the device out while its mount runs. The
// logout revokes the session the mount shares, so the mount logs in again
// with the password it holds and goes on working; that must not log the
// device's other commands back in by writing its new token over the
// logout.
func TestMountLogoutStays(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	if err := os.WriteFile(m.path("before"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.ok("logout")
	if err := os.WriteFile(m.path("after"), []byte("2"), 0o644); err != nil {
		t.Fatalf("the mount after a logout on its device: %v", err)
	}
	d.fails(1, "logged out on this device", "ls", "/")
	m.unmount()
	d.fails(1, "logged out on this device", "ls", "/")
}

// TestMountUnlinkAfterQuotaFailure removes a file whose commit failed on a
// full quota. The unlink drops its data, as POSIX drops an unlinked file's
// data: nothing is left to retry, and the unmount ends cleanly instead of
// reporting the file as not stored.
func TestMountUnlinkAfterQuotaFailure(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := newDevice(t, s, "pw")
	d.ok("init", s.url(), "--user", "bob", "--invite", s.admin("invite", "bob", "--quota", "20M"),
		"--fingerprint", s.admin("fingerprint"), "--kdf-time", "1", "--kdf-memory-kib", "8192")
	m := mountAccount(t, d)
	src := filepath.Join(t.TempDir(), "src")
	kept := writeRandom(t, src, 8<<20)
	if err := exec.Command("cp", src, m.path("kept")).Run(); err != nil {
		t.Fatal(err)
	}
	// As the hunt found it: dd's chunks fail on the quota while it writes.
	writeRandom(t, src, 16<<20)
	out, err := exec.Command("dd", "if="+src, "of="+m.path("big"), "bs=1M", "conv=fsync").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "quota exceeded") {
		t.Errorf("dd over the quota: %v, %s; want a failure on the quota", err, out)
	}
	if err := os.Remove(m.path("big")); err != nil {
		t.Fatal(err)
	}
	m.unmount() // fails the test when the mount exits non-zero
	if strings.Contains(m.log.String(), "could not store") {
		t.Errorf("the unlinked file was still to be stored at unmount:\n%s", m.log)
	}
	m.start()
	if got, err := os.ReadFile(m.path("kept")); err != nil || !bytes.Equal(got, kept) {
		t.Errorf("the file stored before: %v, %d bytes", err, len(got))
	}
	if _, err := os.Stat(m.path("big")); !os.IsNotExist(err) {
		t.Errorf("the removed file: %v, want ENOENT", err)
	}
}
