package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// compatScript runs, in the directory given as $1, calls where the mount
// answered differently from a local disk, and prints what each saw. Lines
// with "nobody" run as uid/gid 65534 (the mount needs --allow-other).
const compatScript = `
cd "$1" && chmod 755 . || exit 1
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "$1" 2>&1 | sed 's/^.*: //'; }
mkdir pub && chmod 777 pub

# chmod 000 is kept, not shown as 0644/0755, and locks others out
echo secret > pub/locked && chmod 000 pub/locked
mkdir pub/lockeddir && echo x > pub/lockeddir/f && chmod 777 pub/lockeddir/f && chmod 000 pub/lockeddir
echo "modes: $(stat -c %a pub/locked pub/lockeddir | tr '\n' ' ')"
echo "nobody cat locked: $(nobody 'cat pub/locked')"
echo "nobody ls lockeddir: $(nobody 'ls pub/lockeddir')"

# a set-group-ID directory gives its group to what is made in it
mkdir pub/shared && chgrp 4242 pub/shared && chmod 2777 pub/shared
touch pub/shared/by-root && mkdir pub/shared/dir-by-root
nobody 'touch pub/shared/by-nobody; mkdir pub/shared/dir-by-nobody'
stat -c '%n group %g mode %a' pub/shared/*

# a write by another user clears set-user-ID, and stat shows it at once
echo '#!/bin/sh' > pub/setuid && chmod 4777 pub/setuid && stat -c %a pub/setuid >/dev/null
nobody 'echo more >> pub/setuid'
echo "after nobody's write: $(stat -c %a pub/setuid)"

python3 - <<'EOF'
import os, stat, time
def tryit(what, f):
    try: print(what, f())
    except OSError as e: print(what, "error", os.strerror(e.errno))
tryit("mknod S_IFREG:", lambda: (os.mknod("node", stat.S_IFREG | 0o640), oct(os.stat("node").st_mode))[1])
d = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
tryit("fsync dir:", lambda: os.fsync(d))
tryit("fdatasync dir:", lambda: os.fdatasync(d))
os.close(d)
with open("sparse", "wb") as f:
    f.write(b"x" * 5000)
fd = os.open("sparse", os.O_RDONLY)
for off in (0, 4999, 5000, 6000):
    tryit("SEEK_DATA %d:" % off, lambda: os.lseek(fd, off, os.SEEK_DATA))
    tryit("SEEK_HOLE %d:" % off, lambda: os.lseek(fd, off, os.SEEK_HOLE))
os.close(fd)
tryit("setxattr foo.x:", lambda: os.setxattr("sparse", "foo.x", b"v"))
tryit("remove ACL that is not there:", lambda: os.removexattr("sparse", "system.posix_acl_access"))
os.mkdir("gone")
os.chdir("gone")
os.rmdir("../gone")
tryit("list the removed working directory:", lambda: os.listdir("."))
os.chdir("..")
open("ct", "w").write("x")
c0 = os.stat("ct").st_ctime_ns
time.sleep(0.02); os.link("ct", "ct2"); c1 = os.stat("ct").st_ctime_ns
time.sleep(0.02); os.rename("ct2", "ct3"); c2 = os.stat("ct3").st_ctime_ns
time.sleep(0.02); os.unlink("ct3"); c3 = os.stat("ct").st_ctime_ns
print("ctime moves on link, rename, unlink:", c1 > c0, c2 > c1, c3 > c2)
EOF
`

// TestMountLikeLocalDisk runs calls that an adversarial hunt found the
// mount answering unlike a local disk (chmod 000 shown as 0644 and letting
// other users read, set-group-ID directories ignored, a stale set-user-ID
// bit after another user's write, mknod of a regular file, fsync of a
// directory and SEEK_HOLE at the end all failing, listing a removed working
// directory, ctime standing still on link, rename and unlink) on both, and
// compares.
func TestMountLikeLocalDisk(t *testing.T) {
	requireFUSE(t)
	for _, tool := range []string{"setpriv", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (scripts/deps.sh installs it)", tool)
		}
	}
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"), "--allow-other")
	run := func(dir string) string {
		out, err := exec.Command("sh", "-c", compatScript, "sh", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("in %s: %v\n%s", dir, err, out)
		}
		return string(out)
	}
	local := t.TempDir()
	os.Chmod(local, 0o755) // nobody must reach pub/ as on the mount
	want := run(local)
	got := run(m.dir)
	if got != want {
		t.Fatalf("on the mount:\n%s\non a local disk:\n%s", got, want)
	}
	// What the mount showed is what it stored.
	m.remountCold()
	for name, mode := range map[string]os.FileMode{"pub/locked": 0, "pub/lockeddir": os.ModeDir, "node": 0o640,
		"pub/shared/dir-by-nobody": os.ModeDir | os.ModeSetgid | 0o755, "pub/setuid": 0o777} {
		st, err := os.Stat(m.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s after a cold remount: %v, want %v", name, st.Mode(), mode)
		}
	}
}

// TestMountLimits checks what the mount does beyond what its format holds,
// where a local disk's own limits differ: a size past the largest file a
// manifest describes is EFBIG (a truncate to 2^62 bytes made the mount
// allocate petabytes and die; to 1 TiB it failed only at close, with the
// data kept in memory for ever), and times past int64 nanoseconds are
// clamped (2300-01-01 came back as 1715-06-13).
func TestMountLimits(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))
	p := m.path("f")
	if err := os.WriteFile(p, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{3 << 40, 1 << 62} {
		if err := os.Truncate(p, size); err == nil || !strings.Contains(err.Error(), "file too large") {
			t.Errorf("truncate to %d: %v, want EFBIG", size, err)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 2<<40); err == nil || !strings.Contains(err.Error(), "file too large") {
		t.Errorf("write at 2 TiB: %v, want EFBIG", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after the refused write: %v", err)
	}
	// A truncate within the limit works (sparse: only holes are added).
	if err := os.Truncate(p, 1<<30); err != nil {
		t.Fatalf("truncate to 1 GiB: %v", err)
	}
	if err := os.Truncate(p, 4); err != nil {
		t.Fatal(err)
	}
	future := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	past := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)
	// Not os.Chtimes: it converts through UnixNano and wraps the time itself.
	if err := unix.UtimesNano(p, []unix.Timespec{{Sec: past.Unix()}, {Sec: future.Unix()}}); err != nil {
		t.Fatal(err)
	}
	m.remountCold()
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "kept" {
		t.Fatalf("after the refused sizes: %q, %v", b, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if y := st.ModTime().UTC().Year(); y != 2262 {
		t.Errorf("mtime set to %v reads %v, want it clamped to 2262", future, st.ModTime().UTC())
	}
}
