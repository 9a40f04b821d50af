package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestMountCreateOnClose checks the life of a file the mount creates: it
// reaches the server only with its first commit, with the content and the
// attributes set before close, while the mount's own processes see it all
// along; unlinked, renamed or outrun by another client before that, it
// behaves as POSIX and docs/semantics.md say.
func TestMountCreateOnClose(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	cli := loginDevice(t, s, "alice", "pw")

	// Open, write, chmod and set times on the descriptor, as tar does, in
	// a process of its own: a fork of this one would close a copy of the
	// descriptor, which is a flush.
	w := startWriter(t, m.path("a.txt"), "hello\n")
	if r := cli.run("stat", "/a.txt"); r.code == 0 {
		t.Fatalf("the file is on the server before its first close: %s", r.stdout)
	}
	names := sh(t, m.dir, "ls")
	if !strings.Contains(names, "a.txt") {
		t.Fatalf("ls on the mount does not show a file being written: %q", names)
	}
	w.close(t)
	if got := cli.ok("cat", "/a.txt"); got != "hello\n" {
		t.Fatalf("content after close: %q", got)
	}
	if out := cli.ok("ls", "-l", "/a.txt"); !strings.Contains(out, "-rw-r-----") || !strings.Contains(out, "2001") {
		t.Fatalf("mode or time set before close were not stored with the file: %s", out)
	}

	// Unlinked before its first close: nothing reaches the server.
	g, err := os.Create(m.path("gone.txt"))
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("scratch"))
	if err := os.Remove(m.path("gone.txt")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte(" more")); err != nil {
		t.Fatalf("writing to an unlinked open file: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if r := cli.run("stat", "/gone.txt"); r.code == 0 {
		t.Fatalf("an unlinked new file reached the server: %s", r.stdout)
	}

	// Renamed while open (rsync's temp file pattern, but before close).
	h, err := os.Create(m.path(".tmp-x"))
	if err != nil {
		t.Fatal(err)
	}
	h.Write([]byte("renamed content"))
	if err := os.Rename(m.path(".tmp-x"), m.path("final.txt")); err != nil {
		t.Fatal(err)
	}
	h.Write([]byte("!"))
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if got := cli.ok("cat", "/final.txt"); got != "renamed content!" {
		t.Fatalf("renamed file: %q", got)
	}
	if r := cli.run("stat", "/.tmp-x"); r.code == 0 {
		t.Fatal("the old name of a renamed new file is on the server")
	}

	// rmdir of a directory holding a file not yet on the server.
	if err := os.Mkdir(m.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := os.Create(m.path("d", "open.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a directory with a file being written: %v, want ENOTEMPTY", err)
	}
	k.Close()

	// Another client takes the name first: both files are kept.
	w = startWriter(t, m.path("race.txt"), "mount's data")
	src := writeTemp(t, "cli's data")
	cli.ok("put", src, "/race.txt")
	w.close(t)
	if got := cli.ok("cat", "/race.txt"); got != "cli's data" {
		t.Fatalf("the other client's file was replaced: %q", got)
	}
	var copyName string
	for _, line := range strings.Split(cli.ok("ls", "/"), "\n") {
		if strings.HasPrefix(line, "race.txt.conflict-") {
			copyName = line
		}
	}
	if copyName == "" {
		t.Fatalf("no conflict copy on the server:\n%s", cli.ok("ls", "/"))
	}
	if got := cli.ok("cat", "/"+copyName); got != "mount's data" {
		t.Fatalf("conflict copy holds %q", got)
	}
	eventually(t, "the mount shows the other client's file under the name", func() bool {
		got, _ := os.ReadFile(m.path("race.txt"))
		return string(got) == "cli's data"
	})
	if !strings.Contains(m.log.String(), "conflict") {
		t.Errorf("the conflict was not logged:\n%s", m.log)
	}
}

// writer is a process that created a file on the mount, wrote to it,
// changed its mode to 0640 and its times to 2001, and keeps it open until
// told to close it.
type writer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

const writerScript = `
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, sys.argv[2].encode())
os.fchmod(fd, 0o640)
os.utime(fd, ns=(981173106000000789, 981173106000000789))
print("ready", flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("closed", flush=True)
except OSError as e:
    print("close failed:", e, flush=True)
`

func startWriter(t *testing.T, path, content string) *writer {
	t.Helper()
	cmd := exec.Command("python3", "-c", writerScript, path, content)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writer{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	if line, _ := w.out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("writer: %q", line)
	}
	return w
}

// close makes the writer close the file; the close must succeed.
func (w *writer) close(t *testing.T) {
	t.Helper()
	io.WriteString(w.stdin, "close\n")
	if line, _ := w.out.ReadString('\n'); line != "closed\n" {
		t.Fatalf("writer: %q", line)
	}
}

// writeTemp writes content to a new temporary file and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "src")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	f.Close()
	return f.Name()
}

// TestMountXattrs checks extended attributes: stored sealed on the server,
// so they survive a cold remount and show on another mount, with the
// errors getxattr(2) and setxattr(2) promise, and kept by cp -a.
func TestMountXattrs(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	other := mountAccount(t, loginDevice(t, s, "alice", "pw"))

	p := m.path("f")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("v", 60000)
	for k, v := range map[string]string{"user.color": "blue", "user.big": big, "user.empty": ""} {
		if err := syscall.Setxattr(p, k, []byte(v), 0); err != nil {
			t.Fatalf("setxattr %s: %v", k, err)
		}
	}
	if err := syscall.Setxattr(p, "user.color", []byte("red"), 1 /* XATTR_CREATE */); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("XATTR_CREATE of an existing attribute: %v, want EEXIST", err)
	}
	if err := syscall.Setxattr(p, "user.none", []byte("x"), 2 /* XATTR_REPLACE */); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("XATTR_REPLACE of a missing attribute: %v, want ENODATA", err)
	}
	if _, err := syscall.Getxattr(p, "user.none", make([]byte, 10)); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("getxattr of a missing attribute: %v, want ENODATA", err)
	}
	if _, err := syscall.Getxattr(p, "user.big", make([]byte, 10)); !errors.Is(err, syscall.ERANGE) {
		t.Fatalf("getxattr into a small buffer: %v, want ERANGE", err)
	}
	if err := syscall.Removexattr(p, "user.empty"); err != nil {
		t.Fatal(err)
	}
	sh(t, m.dir, "cp", "-a", "f", "g")

	m.remountCold()
	check := func(where string, path string) {
		t.Helper()
		buf := make([]byte, 1<<16)
		n, err := syscall.Listxattr(path, buf)
		if err != nil {
			t.Fatalf("%s: listxattr: %v", where, err)
		}
		if got := string(buf[:n]); got != "user.big\x00user.color\x00" {
			t.Fatalf("%s: listxattr = %q", where, got)
		}
		n, err = syscall.Getxattr(path, "user.big", buf)
		if err != nil || string(buf[:n]) != big {
			t.Fatalf("%s: user.big = %d bytes, %v", where, n, err)
		}
		n, err = syscall.Getxattr(path, "user.color", buf)
		if err != nil || string(buf[:n]) != "blue" {
			t.Fatalf("%s: user.color = %q, %v", where, buf[:n], err)
		}
	}
	check("after a cold remount", m.path("f"))
	check("copy made by cp -a", m.path("g"))
	eventually(t, "the other mount sees the attributes", func() bool {
		n, err := syscall.Getxattr(other.path("f"), "user.color", make([]byte, 16))
		return err == nil && n == 4
	})
}

// TestMountSeesOtherClientsInKnownDirs checks that what the mount knows of
// a directory's names (it created or listed it, so it answers lookups of
// other names with ENOENT by itself) is dropped when another client adds
// a name there: the change feed says so.
func TestMountSeesOtherClientsInKnownDirs(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	cli := loginDevice(t, s, "alice", "pw")

	if err := os.Mkdir(m.path("new"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(m.path("listed"), 0o755)
	os.WriteFile(m.path("listed", "a"), []byte("a"), 0o644)
	if _, err := os.ReadDir(m.path("listed")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"new", "listed"} {
		if _, err := os.Stat(m.path(dir, "x")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s/x before it exists: %v", dir, err)
		}
		cli.ok("put", writeTemp(t, "from the CLI"), "/"+dir+"/x")
		eventually(t, "the mount finds "+dir+"/x", func() bool {
			got, err := os.ReadFile(m.path(dir, "x"))
			return err == nil && string(got) == "from the CLI"
		})
	}
	// And a removal elsewhere shows too.
	cli.ok("rm", "/listed/a")
	eventually(t, "the mount sees listed/a removed", func() bool {
		_, err := os.Stat(m.path("listed", "a"))
		return errors.Is(err, os.ErrNotExist)
	})
}

// A file opened again right after its close (rsync reopens the file it
// wrote to fchmod it; git and editors reread what they wrote) is opened
// from what the mount committed, without fetching its manifest again, and
// a change by another client still shows.
func TestMountReopenAfterClose(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	cli := loginDevice(t, s, "alice", "pw")

	if err := os.WriteFile(m.path("a.txt"), []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := s.requests("GET /v1/inodes/{id}")
	for i := range 5 {
		f, err := os.Open(m.path("a.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Chmod(0o600 | os.FileMode(i%2)<<2); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || string(got) != "one" {
			t.Fatalf("reopen %d: %q, %v", i, got, err)
		}
	}
	if after := s.requests("GET /v1/inodes/{id}"); after != before {
		t.Fatalf("reopening a file the mount just wrote fetched it %v times", after-before)
	}

	cli.ok("put", writeTemp(t, "two from the CLI"), "/a.txt")
	eventually(t, "the mount reads the CLI's version", func() bool {
		got, err := os.ReadFile(m.path("a.txt"))
		return err == nil && string(got) == "two from the CLI"
	})
}
