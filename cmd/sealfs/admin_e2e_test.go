package main

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/tlscert"
)

// TestE2EAdminWhileServing runs the admin commands as separate processes
// against the data directory of a running server: users, scrub, rotate-key
// (with and without --reencrypt) and disable/enable, and checks the server
// keeps serving every file throughout.
func TestE2EAdminWhileServing(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw-alice")
	src := filepath.Join(t.TempDir(), "a.bin")
	writeRandom(t, src, 3<<20+17)
	d.ok("put", src, "/a.bin")
	get := func(what string) {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "a.bin")
		d.ok("get", "/a.bin", dst)
		sameFile(t, src, dst)
	}

	if out := s.admin("users"); !strings.Contains(out, "alice") || !strings.Contains(out, "active") {
		t.Fatalf("users does not list alice as active:\n%s", out)
	}
	s.admin("scrub")

	keys := func() []byte {
		b, err := os.ReadFile(filepath.Join(s.data, "keyring.json"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := keys()
	s.admin("rotate-key", "--settle", "1s")
	after := keys()
	if string(before) == string(after) || strings.Count(string(after), `"id"`) != 1 {
		t.Fatalf("rotate-key did not leave exactly one new key:\n%s", after)
	}
	get("after rotate-key")
	s.admin("rotate-key", "--settle", "1s", "--reencrypt")
	get("after rotate-key --reencrypt")
	s.admin("scrub")

	// A damaged blob makes scrub exit non-zero and name it.
	var blobs []string
	filepath.Walk(filepath.Join(s.data, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(fi.Name(), ".") {
			blobs = append(blobs, p)
		}
		return nil
	})
	if len(blobs) == 0 {
		t.Fatal("no blob files")
	}
	b, _ := os.ReadFile(blobs[0])
	b[len(b)/2] ^= 1
	os.WriteFile(blobs[0], b, 0o600)
	out, err := exec.Command(s.bin, "server", "scrub", "--data", s.data).Output()
	if err == nil || !strings.Contains(string(out), "damaged") {
		t.Fatalf("scrub of a damaged blob: err %v, output %q", err, out)
	}
}

// TestE2ECertificateReload serves a given certificate, replaces its files,
// and checks that SIGHUP makes the server present the new one while it keeps
// running.
func TestE2ECertificateReload(t *testing.T) {
	t.Parallel()
	bin := sealfsBin(t)
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	certFile, keyFile, _, err := tlscert.EnsureSelfSigned(certs, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--data", filepath.Join(dir, "data"), "--listen", addr, "--tls-cert", certFile, "--tls-key", keyFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	fingerprint := func() string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if fp, err := servedFingerprint(addr); err == nil {
				return fp
			}
		}
		t.Fatal("server does not answer TLS")
		return ""
	}
	first := fingerprint()
	want, _ := tlscert.FingerprintFile(certFile)
	if first != want {
		t.Fatalf("serves %s, want the given certificate %s", first, want)
	}
	out, err := exec.Command(bin, "server", "fingerprint", "--data", filepath.Join(dir, "data")).Output()
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Fatalf("server fingerprint = %q, %v; want %s", out, err, want)
	}

	// Replace the pair (a renewal) and signal.
	os.RemoveAll(certs)
	if _, _, _, err := tlscert.EnsureSelfSigned(certs, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	renewed, _ := tlscert.FingerprintFile(certFile)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); fingerprint() != renewed; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the server still presents %s, want %s", fingerprint(), renewed)
		}
	}
}

// servedFingerprint connects and returns the fingerprint of the certificate
// the server presents, without trusting it.
func servedFingerprint(addr string) (string, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only reads the certificate
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return tlscert.Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw), nil
}
