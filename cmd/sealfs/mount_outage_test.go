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

// serverOnSmallDisk starts a server whose data directory is on a tmpfs of
// size, so that tests can fill its disk; it returns the tmpfs too.
func serverOnSmallDisk(t *testing.T, size string, args ...string) (string, *testServer) {
	t.Helper()
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("a small tmpfs for the server's disk (needs root, as CI has): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(disk, unix.MNT_DETACH) })
	s := &testServer{t: t, bin: sealfsBin(t), data: filepath.Join(disk, "data"), addr: freeAddr(t), metrics: freeAddr(t), args: args}
	s.start()
	t.Cleanup(s.stop)
	return disk, s
}

// TestMountServerDiskFull fills the disk under the server. A close whose
// data the server could not store must fail with ENOSPC, at once rather
// than after the mount's timeout of retries, for a large file and for a
// small one; what was stored before stays intact, and once there is space
// again the mount stores files without a remount.
func TestMountServerDiskFull(t *testing.T) {
	requireFUSE(t)
	disk, s := serverOnSmallDisk(t, "48m")
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

// TestMountDiskFilledByUploads fills the server's disk through the mount.
// Uploads stop at the reserve the server keeps (--min-free, by default 5 %
// of a small disk), so what frees space still works: without it every
// unlink failed with ENOSPC (the delete's transaction had no room either)
// and a restart of the server failed, so nothing could ever be freed.
func TestMountDiskFilledByUploads(t *testing.T) {
	requireFUSE(t)
	_, s := serverOnSmallDisk(t, "32m", "--gc-grace", "1s", "--gc-interval", "1s")
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))
	kept := pattern(1<<20 + 7)
	if err := os.WriteFile(m.path("kept.bin"), kept, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(m.path("fill"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Small files, which the server keeps in its database, from writers
	// in parallel: they filled the disk to the last byte, where the
	// deletes' transactions found no room.
	var wg sync.WaitGroup
	var fails sync.Map
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				err := os.WriteFile(m.path("fill", fmt.Sprintf("%d-%d", w, i)), pattern(48<<10), 0o644)
				if err != nil {
					fails.Store(w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	full := 0
	fails.Range(func(_, err any) bool {
		if !errors.Is(err.(error), syscall.ENOSPC) {
			t.Fatalf("filling: %v", err)
		}
		full++
		return true
	})
	if full == 0 {
		t.Fatal("187 MiB went onto a 32 MiB disk")
	}
	if err := os.RemoveAll(m.path("fill")); err != nil {
		t.Fatalf("removing files from a full server: %v", err)
	}
	s.stop()
	s.start() // used to fail: no room to rewrite its files at start-up
	// The removed chunks go after the grace period; then there is room.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := os.WriteFile(m.path("after.bin"), pattern(4<<20), 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EIO) || time.Now().After(deadline) {
			t.Fatalf("writing after removing files: %v", err)
		}
		os.Remove(m.path("after.bin"))
		time.Sleep(500 * time.Millisecond)
	}
	m.remountCold()
	for name, want := range map[string][]byte{"kept.bin": kept, "after.bin": pattern(4 << 20)} {
		if got, err := os.ReadFile(m.path(name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after a cold remount: %d bytes, %v", name, len(got), err)
		}
	}
}

// TestMountOutageSerializedOps stops the server and makes four directories
// in one directory at once. The kernel runs such creations one after
// another (each holds the directory's lock), so each used to wait the full
// --timeout in turn: the fourth failed after 4 × --timeout. Once one has
// given up, the others wait only briefly. When the server answers again,
// the mount works.
func TestMountOutageSerializedOps(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	const timeout = 5 * time.Second
	m := mountAccount(t, initAccount(t, s, "alice", "pw"), "--timeout", timeout.String())
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Signal(syscall.SIGCONT) })
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	for i := range 4 {
		wg.Go(func() {
			err := os.Mkdir(m.path("d", fmt.Sprint("new", i)), 0o755)
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("mkdir during the outage: %v, want EIO", err)
			}
			mu.Lock()
			last = max(last, time.Since(start))
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("the last of four mkdirs failed after %v", last.Round(time.Millisecond))
	// --timeout, then about 2 s each; before, 4 × --timeout (20 s).
	if limit := timeout + 3*2*time.Second + 3*time.Second; last > limit {
		t.Errorf("the last of four mkdirs failed after %v, want at most %v", last.Round(time.Millisecond), limit)
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	if err := os.Mkdir(m.path("d", "after"), 0o755); err != nil {
		t.Fatalf("mkdir once the server answers again: %v", err)
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
