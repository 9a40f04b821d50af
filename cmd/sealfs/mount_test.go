package main

// Mount tests: the built binary mounts a real `sealfs serve` account in a
// subprocess (an in-process mount can deadlock the Go runtime on its own
// FUSE requests), and the test uses it through ordinary system calls and
// tools. Each mount is unmounted in t.Cleanup, and a mount left behind
// fails the test.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// requireFUSE skips a test on machines that cannot mount FUSE.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: FUSE mounts are not possible here")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 is not installed (run scripts/deps.sh)")
	}
}

// syncBuffer is a log buffer the mount process writes while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testMount is one `sealfs mount` process.
type testMount struct {
	t       *testing.T
	d       *device
	dir     string
	cache   string
	runtime string
	extra   []string
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	code    int
}

// mountAccount mounts d's account at a new directory with an empty cache.
func mountAccount(t *testing.T, d *device, extra ...string) *testMount {
	t.Helper()
	requireFUSE(t)
	base := t.TempDir()
	m := &testMount{t: t, d: d, dir: filepath.Join(base, "mnt"), cache: filepath.Join(base, "cache"),
		runtime: filepath.Join(base, "run"), extra: extra}
	os.Mkdir(m.dir, 0o755)
	m.start()
	t.Cleanup(func() {
		m.unmount()
		if isMounted(m.dir) {
			exec.Command("fusermount3", "-u", "-z", m.dir).Run()
			t.Errorf("mount %s was left behind", m.dir)
		}
	})
	return m
}

// start runs the mount exactly as the benchmark harness does and waits
// until the directory is a mount point.
func (m *testMount) start() {
	m.t.Helper()
	args := append([]string{"mount", m.dir, "--password-file", m.d.pw, "--cache-dir", m.cache}, m.extra...)
	m.cmd = m.d.command(args...)
	m.cmd.Env = append(m.cmd.Env, "XDG_RUNTIME_DIR="+m.runtime)
	m.log = new(syncBuffer)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func() {
		err := m.cmd.Wait()
		m.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			m.code = ee.ExitCode()
		}
		close(m.exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !isMounted(m.dir) {
		select {
		case <-m.exited:
			m.t.Fatalf("sealfs mount exited with %d:\n%s", m.code, m.log)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("not mounted after 20s:\n%s", m.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unmount ends the mount with fusermount3 -u, as the harness does, and
// requires a clean exit.
func (m *testMount) unmount() {
	m.t.Helper()
	if m.cmd == nil {
		return
	}
	for i := 0; isMounted(m.dir) && i < 100; i++ {
		if exec.Command("fusermount3", "-u", m.dir).Run() == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-m.exited:
	case <-time.After(90 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		m.t.Errorf("the mount process did not exit after unmount:\n%s", m.log)
	}
	if m.code != 0 {
		m.t.Errorf("sealfs mount exited with %d:\n%s", m.code, m.log)
	}
	m.cmd = nil
}

// remountCold unmounts, empties the chunk cache and mounts again, so what
// follows reads only what the server holds.
func (m *testMount) remountCold() {
	m.t.Helper()
	m.unmount()
	if err := os.RemoveAll(m.cache); err != nil {
		m.t.Fatal(err)
	}
	m.start()
}

// path joins names below the mount point.
func (m *testMount) path(elem ...string) string {
	return filepath.Join(append([]string{m.dir}, elem...)...)
}

// isMounted reports whether dir is a mount point, from mountinfo.
func isMounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// sh runs a command that must succeed, in dir, and returns its output.
func sh(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// posixSkips are the posixtest cases the mount does not pass, with why;
// docs/semantics.md lists the same.
var posixSkips = map[string]string{
	"FcntlFlockLocksFile": "locks are the kernel's, local to the mount: POSIX record locks of one process never conflict with each other, and this case takes both from one process",
}

func TestMountPOSIX(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkips[name]; ok {
				t.Skip(why)
			}
			dir := m.path(name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, dir)
		})
	}
	out, err := d.command("status").Output()
	if err != nil || !strings.Contains(string(out), "no sealfs mounts") && !strings.Contains(string(out), m.dir) {
		// status reads XDG_RUNTIME_DIR of this process, not the mount's.
		t.Logf("status: %s %v", out, err)
	}
}

// makeTree builds a local tree with files of chunk-boundary sizes, empty
// and nested directories, symlinks and hard links.
func makeTree(t *testing.T, root string) {
	t.Helper()
	const mib = 1 << 20
	for i, size := range []int{0, 1, 4095, 4096, 65537, mib, mib + 1, 3*mib + 17} {
		writeRandom(t, filepath.Join(root, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%d.bin", size)), size)
	}
	os.WriteFile(filepath.Join(root, "text.txt"), []byte("alpha\nbeta\ngamma\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "empty", "deeper"), 0o700)
	os.Symlink("d0/f0.bin", filepath.Join(root, "link"))
	os.Symlink("/nonexistent/target", filepath.Join(root, "dangling"))
	if err := os.Link(filepath.Join(root, "text.txt"), filepath.Join(root, "d1", "hard.txt")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(root, "d2"), 0o750)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
	os.Chtimes(filepath.Join(root, "text.txt"), mt, mt)
}

func TestMountTools(t *testing.T) {
	requireFUSE(t)
	for _, tool := range []string{"rsync", "git", "tar", "diff", "sed", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	work := t.TempDir()
	src := filepath.Join(work, "src")
	makeTree(t, src)

	sh(t, work, "cp", "-a", src, m.path("cp"))
	sh(t, work, "rsync", "-a", src+"/", m.path("rs")+"/")
	stats := sh(t, work, "rsync", "-a", "--stats", src+"/", m.path("rs")+"/")
	if !strings.Contains(stats, "Number of regular files transferred: 0") {
		t.Errorf("second rsync transferred files:\n%s", stats)
	}
	sh(t, work, "tar", "-C", src, "-cf", filepath.Join(work, "src.tar"), ".")
	os.Mkdir(m.path("tarx"), 0o755)
	sh(t, work, "tar", "-C", m.path("tarx"), "-xf", filepath.Join(work, "src.tar"))
	sh(t, work, "tar", "-C", m.path("tarx"), "-cf", m.path("out.tar"), ".")

	// git onto the mount, and off it.
	repo := m.path("repo")
	sh(t, work, "git", "init", "-q", repo)
	sh(t, work, "cp", "-a", filepath.Join(src, "d0"), filepath.Join(src, "text.txt"), repo)
	sh(t, repo, "git", "add", "-A")
	sh(t, repo, "git", "commit", "-q", "-m", "first")
	os.WriteFile(filepath.Join(repo, "text.txt"), []byte("changed\n"), 0o644)
	sh(t, repo, "git", "commit", "-q", "-am", "second")
	sh(t, work, "git", "clone", "-q", repo, filepath.Join(work, "clone"))
	sh(t, work, "git", "clone", "-q", filepath.Join(work, "clone"), m.path("clone2"))

	// sed -i replaces a file through a temporary file and a rename.
	local := filepath.Join(work, "sed.txt")
	os.WriteFile(local, []byte("alpha\nbeta\n"), 0o644)
	sh(t, work, "cp", local, m.path("sed.txt"))
	sh(t, work, "sed", "-i", "s/beta/BETA/", local, m.path("sed.txt"))

	m.remountCold()
	for _, dir := range []string{"cp", "rs", "tarx"} {
		sh(t, work, "diff", "-r", "--no-dereference", src, m.path(dir))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.path("cp", "text.txt"), &st); err != nil || st.Nlink != 2 {
		t.Errorf("cp -a hard link: nlink %d, %v", st.Nlink, err)
	}
	if err := syscall.Stat(m.path("rs", "text.txt"), &st); err != nil || st.Mtim.Nsec != 123456789 {
		t.Errorf("rsync mtime: %v, %v", st.Mtim, err)
	}
	untar := filepath.Join(work, "untar")
	os.Mkdir(untar, 0o755)
	sh(t, work, "tar", "-C", untar, "-xf", m.path("out.tar"))
	sh(t, work, "diff", "-r", "--no-dereference", src, untar)
	sh(t, work, "diff", local, m.path("sed.txt"))
	sh(t, repo, "git", "fsck", "--strict")
	sh(t, m.path("clone2"), "git", "fsck", "--strict")
	if log := sh(t, m.path("clone2"), "git", "log", "--oneline"); strings.Count(log, "\n") != 2 {
		t.Errorf("clone on the mount has history %q", log)
	}
	sh(t, work, "diff", "-r", "--exclude=.git", filepath.Join(work, "clone"), m.path("clone2"))
}

func TestMountCommands(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	base := t.TempDir()
	dir, runtime := filepath.Join(base, "mnt"), filepath.Join(base, "run")
	os.Mkdir(dir, 0o755)
	withRuntime := func(args ...string) result {
		cmd := d.command(args...)
		cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+runtime)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		return r
	}
	t.Cleanup(func() {
		if isMounted(dir) {
			exec.Command("fusermount3", "-u", "-z", dir).Run()
			t.Errorf("mount %s was left behind", dir)
		}
	})

	// --daemon returns once the mount is ready, or fails with the reason,
	// and names the process that serves the mount.
	daemon := withRuntime("mount", dir, "--daemon", "--cache-dir", filepath.Join(base, "cache"))
	if daemon.code != 0 || !isMounted(dir) {
		t.Fatalf("mount --daemon: exit %d, mounted %v\n%s", daemon.code, isMounted(dir), daemon.stderr)
	}
	var pid int
	if _, err := fmt.Sscanf(daemon.stderr, "sealfs: mounted in the background (pid %d,", &pid); err != nil || pid <= 0 || !alive(pid) {
		t.Fatalf("mount --daemon named pid %d (%v), not a live process:\n%s", pid, err, daemon.stderr)
	}
	if r := withRuntime("mount", filepath.Join(base, "nope"), "--daemon"); r.code != 2 {
		t.Fatalf("mount on a missing directory: exit %d", r.code)
	}
	os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644)
	// The file's commit shows in status once the mount rewrites its file.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var st []mountStatus
		r := withRuntime("status", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st) != 1 {
			t.Fatalf("status --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		if st[0].Commits >= 1 && st[0].PID == pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status --json still shows %+v", st[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := withRuntime("status")
	if r.code != 0 || !strings.Contains(r.stdout, dir) || !strings.Contains(r.stdout, "alice@") || !strings.Contains(r.stdout, fmt.Sprint(pid)) {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := withRuntime("umount", dir); r.code != 0 {
		t.Fatalf("umount: exit %d\n%s", r.code, r.stderr)
	}
	if isMounted(dir) {
		t.Fatal("still mounted after umount")
	}
	if r := withRuntime("status"); !strings.Contains(r.stdout, "no sealfs mounts") {
		t.Fatalf("status after umount:\n%s", r.stdout)
	}

	// SIGTERM ends a foreground mount cleanly, after its uploads.
	m := mountAccount(t, d)
	f, err := os.Create(m.path("g"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("x"), 3<<20))
	f.Close()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the mount did not end on SIGTERM")
	}
	if m.code != 0 || isMounted(m.dir) {
		t.Fatalf("after SIGTERM: exit %d, mounted %v\n%s", m.code, isMounted(m.dir), m.log)
	}
	m.start()
	if b, err := os.ReadFile(m.path("g")); err != nil || len(b) != 3<<20 {
		t.Fatalf("after remount: %d bytes, %v", len(b), err)
	}
	if b, err := os.ReadFile(m.path("f")); err != nil || string(b) != "data" {
		t.Fatalf("daemon's file: %q, %v", b, err)
	}
}
