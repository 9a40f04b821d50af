package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// serverSQL returns a function that runs a statement on the server's
// metadata database behind its back, as a compromised server would, and
// returns what it printed.
func serverSQL(t *testing.T, s *testServer) func(q string) string {
	db := filepath.Join(s.data, "meta.db")
	return func(q string) string {
		t.Helper()
		out, err := exec.Command("sqlite3", db, q).CombinedOutput()
		if err != nil {
			t.Fatalf("sqlite3 %q: %v\n%s", q, err, out)
		}
		return strings.TrimSpace(string(out))
	}
}

// mountWithFile mounts a new account on a new server, writes a file f
// holding content through the mount, and returns the mount and serverSQL.
func mountWithFile(t *testing.T, content string) (*testMount, func(q string) string) {
	requireFUSE(t)
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"))
	if err := os.WriteFile(m.path("f"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return m, serverSQL(t, s)
}

// TestMountRollback has the server answer with an older, complete and
// consistent version of a file than the mount has seen: the open fails
// with EIO and the log says why, rather than the old data coming back.
func TestMountRollback(t *testing.T) {
	m, sql := mountWithFile(t, "version one")
	if got, _ := os.ReadFile(m.path("f")); string(got) != "version one" {
		t.Fatalf("read back %q", got)
	}
	old := sql(`SELECT 'manifest_data = X''' || hex(manifest_data) || ''', manifest_kek = ''' || manifest_kek ||
		''', manifest_wrapped = X''' || hex(manifest_wrapped) || ''', attr = X''' || hex(attr) || '''' FROM inodes WHERE type = 1`)
	if err := os.WriteFile(m.path("f"), []byte("version two, newer"), 0o644); err != nil {
		t.Fatal(err)
	}
	sql(`UPDATE inodes SET ` + old + ` WHERE type = 1`)
	// An open within a second of the mount's own close uses what it
	// committed, without asking the server.
	time.Sleep(1500 * time.Millisecond)
	got, err := os.ReadFile(m.path("f"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a file the server rolled back: %q, %v; want EIO", got, err)
	}
	// The mount's stderr reaches m.log through a pipe, maybe after the
	// read returned.
	eventually(t, "the rollback logged", func() bool { return strings.Contains(m.log.String(), "rolled the file back") })
	// The kernel forgets inodes nobody uses (here: told to drop them). The
	// mount still remembers what it saw of the file, or a server could roll
	// it back by waiting, or by naming it in the change feed.
	dropKernelCaches(t)
	got, err = os.ReadFile(m.path("f"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading the rolled-back file after the kernel forgot it: %q, %v; want EIO", got, err)
	}
}

// dropKernelCaches makes the kernel forget the inodes nothing uses, so the
// mount's next lookup of them starts from new nodes.
func dropKernelCaches(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
}

// TestMountAttrRollback has the server answer with an earlier sealing of a
// file's attributes, undoing a chmod, under a version number that claims
// to be newer. Each sealing is genuine, so only its ctime, which every
// change raises, gives it away: the open fails with EIO, and so does a
// lookup once the kernel forgot the inode, rather than the old mode coming
// back.
func TestMountAttrRollback(t *testing.T) {
	m, sql := mountWithFile(t, "content")
	stored := func() string { return sql(`SELECT hex(attr) FROM inodes WHERE type = 1`) }
	chmod := func(mode os.FileMode) string {
		t.Helper()
		before := stored()
		if err := os.Chmod(m.path("f"), mode); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the chmod stored", func() bool { return stored() != before })
		return stored()
	}
	old := chmod(0o600)
	chmod(0o640)
	sql(`UPDATE inodes SET attr = X'` + old + `', version = version + 1 WHERE type = 1`)

	// An open past the attribute timeout asks the server.
	time.Sleep(1500 * time.Millisecond)
	if got, err := os.ReadFile(m.path("f")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("reading a file whose attributes the server rolled back: %q, %v; want EIO", got, err)
	}
	eventually(t, "the rollback logged", func() bool { return strings.Contains(m.log.String(), "rolled the attributes back") })
	dropKernelCaches(t)
	if st, err := os.Stat(m.path("f")); !errors.Is(err, syscall.EIO) {
		mode := os.FileMode(0)
		if st != nil {
			mode = st.Mode()
		}
		t.Fatalf("stat of the rolled-back file after the kernel forgot it: mode %v, %v; want EIO", mode, err)
	}
}

// TestMountXattrRollback has the server answer with an earlier extended
// attribute set of a file, then with none, each under a version number that
// claims to be newer. Each set is genuine, so only its stamp, which every
// change raises, gives it away: a lookup once the kernel forgot the inode
// fails with EIO rather than the old value coming back, or the attribute
// vanishing.
func TestMountXattrRollback(t *testing.T) {
	m, sql := mountWithFile(t, "content")
	set := func(v string) {
		t.Helper()
		if err := unix.Setxattr(m.path("f"), "user.v", []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	get := func() (string, error) {
		buf := make([]byte, 64)
		n, err := unix.Getxattr(m.path("f"), "user.v", buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	set("one")
	old := sql(`SELECT hex(xattrs) FROM inodes WHERE type = 1`)
	set("two")
	for _, rollback := range []string{"X'" + old + "'", "NULL"} {
		sql(`UPDATE inodes SET xattrs = ` + rollback + `, version = version + 1 WHERE type = 1`)
		dropKernelCaches(t)
		if v, err := get(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("getxattr after the server set the xattrs to %.20s: %q, %v; want EIO", rollback, v, err)
		}
	}
	eventually(t, "the rollback logged", func() bool { return strings.Contains(m.log.String(), "returned_xattr_stamp") })
}

// TestMountNoRollbackFromLateListing holds a file open on one mount while
// the other commits new content to it, then lists the directory there and
// chmods the file before the listing is read. The listing's entry is older
// than the chmod, and its ctime lower: it is only late, and must not be
// logged as a rollback (it was, because the chmod's answer did not raise
// the version the mount had seen of the open file).
func TestMountNoRollbackFromLateListing(t *testing.T) {
	_, a, b := twoMounts(t)
	if err := os.Mkdir(a.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSeen(t, a, b, "d/f", "one")
	time.Sleep(1200 * time.Millisecond) // past the attribute timeout
	fd, err := os.Open(a.path("d", "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := fd.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.path("d", "f"), []byte("two two"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	if _, err := os.Stat(a.path("d", "f")); err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open(a.path("d")) // the listing is taken here
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := os.Chmod(a.path("d", "f"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the chmod reaches the server
	if names, err := dir.Readdirnames(-1); err != nil || len(names) != 1 {
		t.Fatalf("listing: %v, %v", names, err)
	}
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(a.log.String(), "rollback") {
		t.Fatalf("a late listing was logged as a rollback:\n%s", a.log.String())
	}
}

// TestMountXattrRetryAfterClose has a setxattr on one mount meet the other
// mount's newer content, while the only descriptor of the file there is
// open, and retry after that descriptor closed. The mount then took the
// newer version without its attributes, and its next chmod sealed the old
// size and generation under it: the file failed authentication on every
// client, and the mounts blamed the server for a rollback.
func TestMountXattrRetryAfterClose(t *testing.T) {
	t.Setenv("SEALFS_TEST_XATTR_RETRY_DELAY", "400ms")
	_, a, b := twoMounts(t)
	writeSeen(t, a, b, "g", "one")
	fd, err := os.Open(a.path("g"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	const newer = "two two two"
	if err := os.WriteFile(b.path("g"), []byte(newer), 0o644); err != nil {
		t.Fatal(err)
	}
	set := make(chan error, 1)
	go func() { set <- unix.Setxattr(a.path("g"), "user.x", []byte("1"), 0) }()
	time.Sleep(150 * time.Millisecond) // the first attempt failed; the retry waits
	fd.Close()
	if err := <-set; err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	if err := os.Chmod(a.path("g"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the chmod reaches the server
	dropKernelCaches(t)
	for _, m := range []*testMount{a, b} {
		if got, err := os.ReadFile(m.path("g")); err != nil || string(got) != newer {
			t.Fatalf("%s reads %q, %v; want %q", m.path("g"), got, err, newer)
		}
	}
}
