package main

// End-to-end tests: the real binary, a real `sealfs serve` on a free
// loopback port, and the client commands exactly as scripts run them.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	hasServe  bool
)

// sealfsBin builds the binary once per test run, and skips the test when
// the build has no server yet. Under the race detector the binary is built
// with it too: a data race in the mount or the CLI makes it exit with 66,
// which fails the test, and one in the server fails the test at its stop.
// The suite then takes about 7 minutes instead of 3 on 2 cores; the
// mount's concurrency (uploads, readahead, fills, listings ahead) is
// exercised nowhere else.
func sealfsBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sealfs-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sealfs")
		if buildErr = goBuild(builtBin, raceBuild); buildErr == nil {
			out, _ := exec.Command(builtBin, "help").CombinedOutput()
			hasServe = strings.Contains(string(out), "serve ")
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if !hasServe {
		t.Skip("this build has no 'sealfs serve' yet")
	}
	return builtBin
}

// goBuild builds this package's binary at out, with the race detector if
// race is set.
func goBuild(out string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	if b, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

var (
	plainOnce sync.Once
	plain     string
	plainErr  error
)

// plainBin is the binary built without the race detector, for what it
// would distort (the mount's memory); it is sealfsBin's when the tests run
// without it.
func plainBin(t *testing.T) string {
	t.Helper()
	bin := sealfsBin(t)
	if !raceBuild {
		return bin
	}
	plainOnce.Do(func() {
		plain = filepath.Join(filepath.Dir(bin), "sealfs-norace")
		plainErr = goBuild(plain, false)
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plain
}

func TestMain(m *testing.M) {
	if raceBuild {
		// A race-built program sleeps a second before it exits
		// (atexit_sleep_ms), for reports other goroutines are still
		// writing. The suite starts several hundred of them, and a report
		// is written when the race happens, so 50 ms is plenty.
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=50"))
	}
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// testServer is one `sealfs serve` process over a data directory.
type testServer struct {
	t       *testing.T
	bin     string
	data    string
	addr    string
	metrics string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	args    []string // more flags for sealfs serve
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(t *testing.T) *testServer { return startServerWith(t) }

// startServerWith starts sealfs serve with more flags.
func startServerWith(t *testing.T, args ...string) *testServer {
	s := &testServer{t: t, bin: sealfsBin(t), data: filepath.Join(t.TempDir(), "data"), addr: freeAddr(t), metrics: freeAddr(t), args: args}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) url() string { return "https://" + s.addr }

func (s *testServer) start() {
	s.t.Helper()
	s.log = new(bytes.Buffer)
	s.cmd = exec.Command(s.bin, append([]string{"serve", "--data", s.data, "--listen", s.addr, "--metrics-listen", s.metrics}, s.args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return
		}
	}
	s.t.Fatalf("server did not start:\n%s", s.log)
}

func (s *testServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
	if strings.Contains(s.log.String(), "WARNING: DATA RACE") {
		s.t.Errorf("the server had a data race:\n%s", s.log)
	}
}

// admin runs a `sealfs server` subcommand and returns its output.
func (s *testServer) admin(args ...string) string {
	s.t.Helper()
	full := append([]string{"server", args[0], "--data", s.data}, args[1:]...)
	out, err := exec.Command(s.bin, full...).Output()
	if err != nil {
		s.t.Fatalf("sealfs %s: %v", strings.Join(full, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// requests reads how many requests of route (such as "GET /v1/inodes/{id}")
// the server has answered, from its metrics endpoint.
func (s *testServer) requests(route string) float64 {
	return s.metric(`sealfs_request_duration_seconds_count{route="` + route + `"}`)
}

// metric reads the value of the metrics line that starts with prefix; 0
// when there is none.
func (s *testServer) metric(prefix string) float64 {
	s.t.Helper()
	out, err := exec.Command("curl", "-s", "http://"+s.metrics+"/metrics").Output()
	if err != nil {
		s.t.Skipf("curl for metrics: %v", err)
	}
	var v float64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, prefix) {
			fmt.Sscanf(line[strings.LastIndexByte(line, ' ')+1:], "%g", &v)
		}
	}
	return v
}

// chunkBytesIn reads the server's counter of sealed chunk bytes received.
func (s *testServer) chunkBytesIn() float64 { return s.chunkBytes("in") }

// chunkBytes reads the server's counter of sealed chunk bytes in direction
// dir ("in" or "out") from its metrics endpoint.
func (s *testServer) chunkBytes(dir string) float64 {
	return s.metric(`sealfs_chunk_bytes_total{direction="` + dir + `"}`)
}

// device is one client configuration directory with its password.
type device struct {
	t   *testing.T
	bin string
	dir string
	pw  string
}

func newDevice(t *testing.T, s *testServer, password string) *device {
	d := &device{t: t, bin: s.bin, dir: t.TempDir()}
	d.setPassword(password)
	return d
}

func (d *device) setPassword(pw string) {
	d.pw = filepath.Join(d.dir, "password")
	if err := os.WriteFile(d.pw, []byte(pw+"\n"), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// result of one command.
type result struct {
	code           int
	stdout, stderr string
}

// command prepares a client command in its own session, so it has no
// terminal to ask on, as in a script or CI.
func (d *device) command(args ...string) *exec.Cmd {
	cmd := exec.Command(d.bin, args...)
	cmd.Env = append(os.Environ(), "SEALFS_CONFIG_DIR="+filepath.Join(d.dir, "config"), "SEALFS_PASSWORD_FILE="+d.pw)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

func (d *device) run(args ...string) result {
	d.t.Helper()
	cmd := d.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatal(err)
	}
	return r
}

// ok runs a command that must succeed and returns its stdout.
func (d *device) ok(args ...string) string {
	d.t.Helper()
	r := d.run(args...)
	if r.code != 0 {
		d.t.Fatalf("sealfs %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must exit with code and mention want.
func (d *device) fails(code int, want string, args ...string) result {
	d.t.Helper()
	r := d.run(args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		d.t.Fatalf("sealfs %s: exit %d (want %d), stderr %q (want %q)", strings.Join(args, " "), r.code, code, r.stderr, want)
	}
	return r
}

// initAccount makes an account for user on s with fast KDF settings.
func initAccount(t *testing.T, s *testServer, user, password string) *device {
	d := newDevice(t, s, password)
	inv := s.admin("invite", user)
	d.ok("init", s.url(), "--user", user, "--invite", inv, "--fingerprint", s.admin("fingerprint"), "--kdf-time", "1", "--kdf-memory-kib", "8192")
	return d
}

func writeRandom(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	return b
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	ha, hb := fileSum(t, a), fileSum(t, b)
	if ha != hb {
		t.Fatalf("%s and %s differ", a, b)
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestE2ERoundTrip(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "correct horse")
	work := t.TempDir()
	const mib = 1 << 20
	for _, size := range []int{0, 1, mib - 1, mib, mib + 1, 100 * mib} {
		name := fmt.Sprintf("f%d", size)
		src := filepath.Join(work, name)
		writeRandom(t, src, size)
		d.ok("put", src, "/"+name)
		out := filepath.Join(work, name+".out")
		d.ok("get", "/"+name, out)
		sameFile(t, src, out)
		if st, _ := os.Stat(out); st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v after round trip", name, st.Mode())
		}
	}
	// A new version replaces the content.
	src := filepath.Join(work, "f1")
	writeRandom(t, src, 3*mib+5)
	d.ok("put", src, "/f1")
	d.ok("get", "/f1", filepath.Join(work, "f1.v2"))
	sameFile(t, src, filepath.Join(work, "f1.v2"))
	if got := d.ok("cat", "/f1"); sha256.Sum256([]byte(got)) != fileSum(t, src) {
		t.Fatal("cat differs")
	}

	// A tree with -r, into an existing directory, and back.
	tree := filepath.Join(work, "tree")
	for i := 0; i < 20; i++ {
		writeRandom(t, filepath.Join(tree, fmt.Sprintf("d%d", i%3), "sub", fmt.Sprintf("file%d", i)), i*1000)
	}
	writeRandom(t, filepath.Join(tree, "big"), 2*mib+7)
	os.Symlink("d0/sub/file0", filepath.Join(tree, "link"))
	d.ok("mkdir", "-p", "/backup/2024")
	d.ok("put", "-r", tree, "/backup/2024")
	got := filepath.Join(work, "got")
	d.ok("get", "-r", "/backup/2024/tree", got)
	for i := 0; i < 20; i++ {
		rel := filepath.Join(fmt.Sprintf("d%d", i%3), "sub", fmt.Sprintf("file%d", i))
		sameFile(t, filepath.Join(tree, rel), filepath.Join(got, rel))
	}
	sameFile(t, filepath.Join(tree, "big"), filepath.Join(got, "big"))
	if target, err := os.Readlink(filepath.Join(got, "link")); err != nil || target != "d0/sub/file0" {
		t.Fatalf("symlink: %q %v", target, err)
	}

	// Listings.
	if out := d.ok("ls", "/backup/2024/tree"); out != "big\nd0\nd1\nd2\nlink\n" {
		t.Fatalf("ls: %q", out)
	}
	long := d.ok("ls", "-l", "/backup/2024/tree")
	if !strings.Contains(long, "drwxr-xr-x") || !strings.Contains(long, "2097159 ") || !strings.Contains(long, "link -> d0/sub/file0") {
		t.Fatalf("ls -l:\n%s", long)
	}
	if rec := d.ok("ls", "-R", "/backup"); !strings.Contains(rec, "/backup/2024/tree/d1/sub:\nfile1\n") {
		t.Fatalf("ls -R:\n%s", rec)
	}
	var entries []lsEntry
	if err := json.Unmarshal([]byte(d.ok("ls", "-R", "--json", "/backup")), &entries); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Path == "/backup/2024/tree/big" && e.Type == "file" && e.Size == 2*mib+7 {
			found = true
		}
	}
	if !found || len(entries) != 2+5+3+20 {
		t.Fatalf("ls --json: %d entries, big found %v", len(entries), found)
	}

	// mv, rm -r, mkdir -p.
	d.ok("mv", "/backup/2024/tree/big", "/moved")
	d.ok("mv", "/moved", "/backup")
	d.ok("stat", "/backup/moved")
	d.fails(1, "no such file or directory", "stat", "/moved")
	d.fails(1, "is a directory", "rm", "/backup")
	d.ok("rm", "-r", "/backup")
	d.fails(1, "/backup: no such file or directory", "ls", "/backup")
	d.ok("mkdir", "-p", "/a/b/c")
	d.ok("mkdir", "-p", "/a/b/c")
	d.fails(1, "file exists", "mkdir", "/a/b")
	d.fails(2, `".." components are not allowed`, "ls", "/a/../etc")
	d.fails(1, "/nope: no such file or directory", "get", "/nope", filepath.Join(work, "nope"))
	if _, err := os.Stat(filepath.Join(work, "nope")); !os.IsNotExist(err) {
		t.Fatal("a failed get created its destination")
	}
}
