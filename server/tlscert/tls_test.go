package tlscert_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/tlscert"
)

const secret = "served over TLS"

// serve runs an HTTPS server on 127.0.0.1:0 with ServerConfig and returns
// its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, secret) }),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // failed handshakes are the point of some tests
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func selfSignedServer(t *testing.T) (addr string, r *tlscert.Reloader, dir string) {
	t.Helper()
	dir = t.TempDir()
	certFile, keyFile, _ := ensure(t, dir, "sealfs.test")
	r, err := tlscert.NewReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, tlscert.ServerConfig(r.GetCertificate)), r, dir
}

func pinned(fp string, minV, maxV uint16) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify:    true, // the pin below replaces CA verification
		VerifyPeerCertificate: tlscert.VerifyFingerprint(fp),
		MinVersion:            minV,
		MaxVersion:            maxV,
		NextProtos:            []string{"h2", "http/1.1"},
	}
}

func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

var allowedTLS12 = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

func TestPinnedClients(t *testing.T) {
	addr, r, _ := selfSignedServer(t)
	fp := r.Fingerprint()

	st, err := handshake(addr, pinned(fp, tls.VersionTLS13, tls.VersionTLS13))
	if err != nil {
		t.Fatalf("TLS 1.3 client: %v", err)
	}
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("TLS 1.3 client got version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
	}

	st, err = handshake(addr, pinned(fp, tls.VersionTLS12, tls.VersionTLS12))
	if err != nil {
		t.Fatalf("TLS 1.2 client: %v", err)
	}
	if st.Version != tls.VersionTLS12 || !slices.Contains(allowedTLS12, st.CipherSuite) {
		t.Errorf("TLS 1.2 client got version %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
	}

	// A full HTTP/2 request over pinned TLS 1.2.
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: pinned(fp, tls.VersionTLS12, tls.VersionTLS12), ForceAttemptHTTP2: true},
		Timeout:   5 * time.Second,
	}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET over pinned TLS 1.2: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != secret || resp.ProtoMajor != 2 {
		t.Errorf("GET over %s: body %q", resp.Proto, body)
	}

	other := "SHA256:" + strings.Repeat("A", 43)
	if _, err := handshake(addr, pinned(other, tls.VersionTLS12, tls.VersionTLS13)); err == nil {
		t.Error("a client pinning another fingerprint completed the handshake")
	}
	// Without the pin, the self-signed certificate is not trusted.
	if _, err := handshake(addr, &tls.Config{ServerName: "localhost"}); err == nil {
		t.Error("an unpinned client trusted the self-signed certificate")
	}
}

func TestOldProtocolsAndWeakSuitesRefused(t *testing.T) {
	addr, r, _ := selfSignedServer(t)
	fp := r.Fingerprint()
	_, err := handshake(addr, pinned(fp, tls.VersionTLS10, tls.VersionTLS11))
	if err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 client: %v, want a protocol version alert", err)
	}
	cbc := pinned(fp, tls.VersionTLS12, tls.VersionTLS12)
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
	_, err = handshake(addr, cbc)
	if err == nil || !strings.Contains(err.Error(), "handshake failure") {
		t.Errorf("TLS 1.2 client offering only CBC suites: %v, want a handshake failure", err)
	}
}

func TestPlainHTTPGetsNothingUsable(t *testing.T) {
	addr, _, _ := selfSignedServer(t)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return // no HTTP response at all
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 400 || strings.Contains(string(body), secret) {
		t.Fatalf("plain HTTP to the TLS port got %s: %q", resp.Status, body)
	}
}

func TestReload(t *testing.T) {
	addr, r, dir := selfSignedServer(t)
	fp1 := r.Fingerprint()
	certFile := filepath.Join(dir, tlscert.CertFileName)
	keyFile := filepath.Join(dir, tlscert.KeyFileName)

	// A renewal replaces both files.
	newCert, newKey, _ := ensure(t, t.TempDir(), "renewed.test")
	for src, dst := range map[string]string{newCert: certFile, newKey: keyFile} {
		data, _ := os.ReadFile(src)
		os.WriteFile(dst, data, 0o600)
	}
	fp2, _ := tlscert.FingerprintFile(certFile)
	if fp2 == fp1 {
		t.Fatal("test setup: the renewed pair has the old fingerprint")
	}
	if _, err := handshake(addr, pinned(fp1, tls.VersionTLS12, 0)); err != nil {
		t.Fatalf("before Reload the old pair must still serve: %v", err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.Fingerprint() != fp2 {
		t.Fatal("Reload did not pick up the new pair")
	}
	if _, err := handshake(addr, pinned(fp2, tls.VersionTLS12, 0)); err != nil {
		t.Fatalf("after Reload: %v", err)
	}

	// A botched renewal keeps the working pair in service.
	os.WriteFile(keyFile, []byte("garbage"), 0o600)
	if err := r.Reload(); err == nil {
		t.Fatal("Reload accepted a garbage key")
	}
	expiredCert, expiredKey, err := tlscert.GenerateForTest([]string{"localhost"}, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, expiredCert, 0o644)
	os.WriteFile(keyFile, expiredKey, 0o600)
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Reload of an expired certificate = %v", err)
	}
	if _, err := handshake(addr, pinned(fp2, tls.VersionTLS12, 0)); err != nil {
		t.Fatalf("after failed reloads the last good pair must serve: %v", err)
	}
	if _, err := tlscert.NewReloader(certFile, filepath.Join(dir, "missing")); err == nil {
		t.Error("NewReloader with a missing key succeeded")
	}
}

func TestACMEConfig(t *testing.T) {
	for _, bad := range []string{"", "localhost", "192.0.2.1", "*.example.org", "exa mple.org"} {
		if _, _, err := tlscert.ACMEConfig(bad, t.TempDir()); err == nil {
			t.Errorf("ACMEConfig(%q) accepted", bad)
		}
	}
	cfg, handler, err := tlscert.ACMEConfig("sealfs.example.org", filepath.Join(t.TempDir(), "acme"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || !slices.Contains(cfg.NextProtos, "acme-tls/1") || !slices.Contains(cfg.NextProtos, "h2") {
		t.Errorf("ACME config: min version %x, ALPN %v", cfg.MinVersion, cfg.NextProtos)
	}
	// Another name is refused by the host policy, before any CA contact.
	hello := &tls.ClientHelloInfo{ServerName: "attacker.example.net", SupportedProtos: []string{"h2"}}
	if _, err := cfg.GetCertificate(hello); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("GetCertificate for a foreign name = %v, want a host policy error", err)
	}

	req, _ := http.NewRequest("GET", "http://sealfs.example.org/some/path", nil)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	if loc := rec.Header().Get("Location"); rec.Code/100 != 3 || !strings.HasPrefix(loc, "https://sealfs.example.org/some/path") {
		t.Errorf("plain HTTP request got %d to %q, want a redirect to HTTPS", rec.Code, loc)
	}
}
