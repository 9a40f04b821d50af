package main

// End-to-end tests of what goes wrong: interruptions, tampering, changed
// certificates, revoked sessions, passwords. Harness in e2e_test.go.

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/remote/vault"
)

func TestE2EDevicesAndPasswords(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a := initAccount(t, s, "alice", "first password")
	work := t.TempDir()
	writeRandom(t, filepath.Join(work, "x"), 5000)
	a.ok("put", filepath.Join(work, "x"), "/x")

	// Non-interactive first contact needs the fingerprint.
	b := newDevice(t, s, "first password")
	b.fails(1, "--fingerprint", "login", s.url(), "--user", "alice")
	fp := s.admin("fingerprint")

	// Wrong password and unknown user give the same answer.
	b.setPassword("wrong")
	r1 := b.fails(1, "wrong password for alice@"+s.url(), "login", s.url(), "--user", "alice", "--fingerprint", fp)
	r2 := b.fails(1, "wrong password for mallory@"+s.url(), "login", s.url(), "--user", "mallory", "--fingerprint", fp)
	if strings.ReplaceAll(r1.stderr, "alice", "mallory") != r2.stderr {
		t.Fatalf("unknown user is distinguishable:\n%s\n%s", r1.stderr, r2.stderr)
	}

	// A second device with nothing but the password.
	b.setPassword("first password")
	b.ok("login", s.url(), "--user", "alice", "--fingerprint", fp)
	if out := b.ok("ls", "/"); out != "x\n" {
		t.Fatalf("second device sees %q", out)
	}

	// passwd: the old password stops working, the other device keeps its
	// session and uses the new password.
	newPW := filepath.Join(work, "newpw")
	os.WriteFile(newPW, []byte("second password\n"), 0o600)
	a.ok("passwd", "--new-password-file", newPW)
	a.fails(1, "wrong password for alice@", "ls", "/")
	b.fails(1, "wrong password for alice@", "ls", "/")
	a.setPassword("second password")
	b.setPassword("second password")
	a.ok("ls", "/")
	b.ok("get", "/x", filepath.Join(work, "x.b"))
	sameFile(t, filepath.Join(work, "x"), filepath.Join(work, "x.b"))
	c := newDevice(t, s, "first password")
	c.fails(1, "wrong password", "login", s.url(), "--user", "alice", "--fingerprint", fp)

	// logout ends this device's session only.
	b.ok("logout")
	b.fails(1, "logged out", "ls", "/")
	a.ok("ls", "/")

	// A full quota is its own message.
	q := newDevice(t, s, "pw")
	q.ok("init", s.url(), "--user", "quota", "--invite", s.admin("invite", "quota", "--quota", "1M"),
		"--fingerprint", fp, "--kdf-time", "1", "--kdf-memory-kib", "8192")
	writeRandom(t, filepath.Join(work, "3m"), 3<<20)
	q.fails(1, "quota", "put", filepath.Join(work, "3m"), "/3m")
	q.fails(2, "below the minimum", "init", s.url(), "--user", "weak", "--invite", "x", "--fingerprint", fp, "--kdf-time", "1", "--kdf-memory-kib", "1024")
}

// resumeChunks counts the chunks recorded in the device's upload states.
func resumeChunks(d *device) int {
	files, _ := filepath.Glob(filepath.Join(d.dir, "config", "resume", "*.json"))
	n := 0
	for _, f := range files {
		var st struct {
			Chunks []json.RawMessage `json:"chunks"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &st) == nil {
			n += len(st.Chunks)
		}
	}
	return n
}

// killWhen starts cmd and kill -9s it once cond holds.
func killWhen(t *testing.T, d *device, cond func() bool, args ...string) {
	t.Helper()
	cmd := d.command(args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("condition not reached before the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

var resumeLine = regexp.MustCompile(`resuming (\S+): ([\d.]+) MiB of ([\d.]+) MiB already (on the server|downloaded)`)

func TestE2EResume(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	work := t.TempDir()
	const size = 64 << 20
	src := filepath.Join(work, "big")
	writeRandom(t, src, size)

	// put, killed with SIGKILL once 16 chunks are recorded.
	killWhen(t, d, func() bool { return resumeChunks(d) >= 16 }, "put", "--limit-upload", "16384", src, "/big")
	d.fails(1, "no such file", "stat", "/big")
	before := s.chunkBytesIn()
	r := d.run("put", src, "/big")
	if r.code != 0 {
		t.Fatalf("resumed put: %s", r.stderr)
	}
	m := resumeLine.FindStringSubmatch(r.stderr)
	if m == nil || m[1] != "/big" {
		t.Fatalf("no resume line in %q", r.stderr)
	}
	var done float64
	fmt.Sscanf(m[2], "%g", &done)
	resent := s.chunkBytesIn() - before
	if done < 16 || resent > float64(size)-done*(1<<20)+float64(4<<20) {
		t.Fatalf("resumed with %g MiB on the server but re-sent %.0f bytes of %d", done, resent, size)
	}
	if resumeChunks(d) != 0 {
		t.Fatal("resume state left after a successful put")
	}

	// get, killed once its partial file has a verified prefix.
	dst := filepath.Join(work, "big.out")
	side := dst + vault.PartialSuffix + ".json"
	killWhen(t, d, func() bool {
		var meta struct{ Done int64 }
		b, err := os.ReadFile(side)
		return err == nil && json.Unmarshal(b, &meta) == nil && meta.Done >= 8<<20
	}, "get", "--limit-download", "16384", "/big", dst)
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("an interrupted get left a file under the final name")
	}
	if _, err := os.Stat(dst + vault.PartialSuffix); err != nil {
		t.Fatalf("no partial file: %v", err)
	}
	// As if killed while saving the sidecar: its temporary file. Each kill
	// there used to leave one more file (under a random name) for good.
	if err := os.WriteFile(side+".tmp", []byte(`{"format":1,"do`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = d.run("get", "/big", dst)
	if r.code != 0 || !resumeLine.MatchString(r.stderr) {
		t.Fatalf("resumed get: exit %d, %q", r.code, r.stderr)
	}
	sameFile(t, src, dst)
	entries, _ := os.ReadDir(work)
	for _, e := range entries {
		if e.Name() != "big" && e.Name() != "big.out" {
			t.Errorf("%s left beside the download", e.Name())
		}
	}
}

func TestE2ETamperedBlob(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	work := t.TempDir()
	blobs := func() map[string]bool {
		m := map[string]bool{}
		filepath.WalkDir(filepath.Join(s.data, "blobs"), func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				m[p] = true
			}
			return nil
		})
		return m
	}
	old := blobs()
	src := filepath.Join(work, "a.bin")
	writeRandom(t, src, 3<<20)
	d.ok("put", src, "/a.bin")
	writeRandom(t, filepath.Join(work, "ok.bin"), 1000)
	d.ok("put", filepath.Join(work, "ok.bin"), "/ok.bin")
	tampered := 0
	for p := range blobs() {
		if old[p] {
			continue
		}
		b, _ := os.ReadFile(p)
		if len(b) > 100<<10 { // the chunks of a.bin, not the small file
			b[len(b)/2] ^= 0x40
			os.WriteFile(p, b, 0o600)
			tampered++
		}
	}
	if tampered == 0 {
		t.Fatal("found no blob to tamper with")
	}
	dst := filepath.Join(work, "a.out")
	d.fails(1, "/a.bin: ", "get", "/a.bin", dst)
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatal("a file that failed verification exists under its final name")
	}
	d.ok("get", "/ok.bin", filepath.Join(work, "ok.out"))
}

func TestE2ETrustAndSessions(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	// A password long enough that it cannot turn up by chance inside the
	// base64 of a session token or fingerprint (a two-letter one did).
	const password = "quartz-otter-lantern-7319"
	d := initAccount(t, s, "alice", password)
	d.ok("mkdir", "/x")

	// The operator disables and enables the account, which revokes its
	// sessions: the client logs in again with the password by itself.
	cfgPath := filepath.Join(d.dir, "config", configFileName)
	before, _ := os.ReadFile(cfgPath)
	s.admin("disable", "alice")
	d.fails(1, "disabled", "ls", "/")
	s.admin("enable", "alice")
	if out := d.ok("ls", "/"); out != "x\n" {
		t.Fatalf("after re-login: %q", out)
	}
	after, _ := os.ReadFile(cfgPath)
	if string(before) == string(after) {
		t.Fatal("the renewed session token was not saved")
	}
	if st, _ := os.Stat(cfgPath); st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v", st.Mode())
	}
	if strings.Contains(string(after), password) {
		t.Fatal("the config holds the password")
	}

	// Server down.
	s.stop()
	d.fails(1, "cannot reach "+s.url()+": connection refused; is 'sealfs serve' running?", "ls", "/")

	// A regenerated certificate: every command refuses.
	os.RemoveAll(filepath.Join(s.data, "tls"))
	s.start()
	r := d.fails(1, "REMOTE SERVER IDENTIFICATION HAS CHANGED", "ls", "/")
	if !strings.Contains(r.stderr, s.admin("fingerprint")) {
		t.Fatalf("the warning does not show the new fingerprint: %s", r.stderr)
	}
	d.fails(1, "IDENTIFICATION HAS CHANGED", "put", cfgPath, "/c")
}
