package server_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	get := func(conf func(*tls.Config), h2 bool) *resp {
		tr := newTransport(t, e.fp, "", conf)
		tr.ForceAttemptHTTP2 = h2
		c := &client{base: "https://" + e.addr, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
		return c.do("GET", "/healthz", nil)
	}

	t.Run("TLS 1.3 and HTTP/2", func(t *testing.T) {
		r := get(nil, true)
		r.want(t, 200, nil)
		if r.tls.Version != tls.VersionTLS13 || r.proto != 2 || r.tls.NegotiatedProtocol != "h2" {
			t.Fatalf("negotiated TLS %x, HTTP/%d, ALPN %q; want TLS 1.3 and h2", r.tls.Version, r.proto, r.tls.NegotiatedProtocol)
		}
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		r := get(func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }, true)
		r.want(t, 200, nil)
		if r.tls.Version != tls.VersionTLS12 || r.proto != 2 {
			t.Fatalf("negotiated TLS %x, HTTP/%d", r.tls.Version, r.proto)
		}
		switch r.tls.CipherSuite {
		case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256:
		default:
			t.Fatalf("TLS 1.2 suite %s is not ECDHE with an AEAD", tls.CipherSuiteName(r.tls.CipherSuite))
		}
	})
	t.Run("HTTP/1.1 works", func(t *testing.T) {
		r := get(func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }, false)
		r.want(t, 200, nil)
		if r.proto != 1 {
			t.Fatalf("HTTP/%d, want 1.1", r.proto)
		}
	})
	t.Run("TLS 1.2 without forward secrecy is refused", func(t *testing.T) {
		r := get(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
		}, true)
		if r.err == nil {
			t.Fatalf("a CBC/RSA-kex-only client got %v", r)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		conf := &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}
		conn, err := tls.Dial("tcp", e.addr, conf)
		if err == nil {
			v := conn.ConnectionState().Version
			conn.Close()
			t.Fatalf("a TLS 1.1 client connected with version %x", v)
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("TLS 1.1 refused with %v, want a protocol version alert", err)
		}
		if r := get(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }, true); r.err == nil {
			t.Fatalf("an HTTP client limited to TLS 1.1 got %v", r)
		}
	})
	t.Run("plain HTTP gets nothing usable", func(t *testing.T) {
		// A JSON API request in clear text to the TLS port.
		hc := &http.Client{Timeout: 5 * time.Second}
		res, err := hc.Post("http://"+e.addr+"/v1/prelogin", wire.ContentTypeJSON, strings.NewReader(`{"user":"alice"}`))
		if err == nil {
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			var pr wire.PreloginResponse
			if res.StatusCode == 200 || json.Unmarshal(b, &pr) == nil {
				t.Fatalf("plain HTTP got %d %q", res.StatusCode, b)
			}
		}
		// Raw bytes: whatever comes back is not an API answer.
		conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		must(t, err)
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if strings.Contains(line, " 200 ") {
			t.Fatalf("plain HTTP answered %q", line)
		}
	})
	t.Run("pinning", func(t *testing.T) {
		// The wrong pin fails; trusting the certificate itself works.
		tr := newTransport(t, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "", nil)
		if _, err := (&http.Client{Transport: tr}).Get("https://" + e.addr + "/healthz"); err == nil {
			t.Fatal("a client pinning another fingerprint connected")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(e.certPEM) {
			t.Fatal("bad certificate PEM")
		}
		tr2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
		defer tr2.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr2}).Get("https://" + e.addr + "/healthz")
		must(t, err)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		// Unverified clients without a pin are refused by the default
		// verification.
		tr3 := &http.Transport{}
		defer tr3.CloseIdleConnections()
		if _, err := (&http.Client{Transport: tr3}).Get("https://" + e.addr + "/healthz"); err == nil {
			t.Fatal("the system roots trust a self-signed certificate")
		}
	})
}
