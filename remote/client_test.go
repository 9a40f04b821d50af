package remote

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

var fastRetry = RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: 10 * time.Millisecond}

func tlsServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func pinned(t *testing.T, ts *httptest.Server) *Client {
	c, err := New(Options{URL: ts.URL, Trust: Trust{Fingerprint: Fingerprint(ts.Certificate())}, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func writeErr(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", wire.ContentTypeJSON)
	w.WriteHeader(wire.Status[code])
	json.NewEncoder(w).Encode(wire.Error{Code: code, Message: "test " + code})
}

func TestPinning(t *testing.T) {
	var proto atomic.Value
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto)
		io.WriteString(w, "ok")
	})
	ctx := context.Background()
	if err := pinned(t, ts).Health(ctx); err != nil {
		t.Fatalf("right pin refused: %v", err)
	}
	if p, _ := proto.Load().(string); p != "HTTP/2.0" {
		t.Errorf("protocol %q, want HTTP/2.0", p)
	}
}

func TestWrongPinRejected(t *testing.T) {
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	sum := [32]byte{1, 2, 3}
	wrong := FingerprintPrefix + base64.RawStdEncoding.EncodeToString(sum[:])
	c, err := New(Options{URL: ts.URL, Trust: Trust{Fingerprint: wrong}, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Health(context.Background())
	var fm *FingerprintMismatchError
	if !errors.As(err, &fm) {
		t.Fatalf("wrong pin accepted or misreported: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("a pin mismatch was retried")
	}
	if _, err := ParseFingerprint("abc"); err == nil {
		t.Fatal("fingerprint without prefix accepted")
	}
	if _, err := ParseFingerprint("SHA256:abc"); err == nil {
		t.Fatal("short fingerprint accepted")
	}
}

func TestSystemRootsAndCAFile(t *testing.T) {
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	ctx := context.Background()
	c, err := New(Options{URL: ts.URL, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Health(ctx)
	var ut *UntrustedCertError
	if !errors.As(err, &ut) || ut.Fingerprint != Fingerprint(ts.Certificate()) {
		t.Fatalf("self-signed certificate with system roots: %v", err)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = New(Options{URL: ts.URL, Trust: Trust{CAFile: ca}, Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("CA file: %v", err)
	}
	if _, err := New(Options{URL: "http://example.com"}); err == nil {
		t.Fatal("http:// accepted")
	}
}

func TestRetryPolicy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		code  string
		tries int32
	}{
		{wire.CodeInternal, 4}, {wire.CodeUnavailable, 4}, {wire.CodeTooManyUploads, maxBusyRetries + 4}, {wire.CodeInsufficientStorage, 1},
		{wire.CodeBadRequest, 1}, {wire.CodeNotFound, 1}, {wire.CodeExists, 1}, {wire.CodeVersionMismatch, 1}, {wire.CodeQuotaExceeded, 1},
	} {
		var n atomic.Int32
		ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			writeErr(w, tc.code)
		})
		_, err := pinned(t, ts).Account(ctx)
		if Code(err) != tc.code || n.Load() != tc.tries {
			t.Errorf("%s: %d tries (want %d), err %v", tc.code, n.Load(), tc.tries, err)
		}
	}

	// 429 with Retry-After is honoured, then the request succeeds.
	var n atomic.Int32
	var first time.Time
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			writeErr(w, wire.CodeThrottled)
			return
		}
		if time.Since(first) < 900*time.Millisecond {
			t.Errorf("retried after %v despite Retry-After: 1", time.Since(first))
		}
		json.NewEncoder(w).Encode(wire.Account{User: "a"})
	})
	c, _ := New(Options{URL: ts.URL, Trust: Trust{Fingerprint: Fingerprint(ts.Certificate())}, Retry: RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Second}})
	if a, err := c.Account(ctx); err != nil || a.User != "a" {
		t.Fatalf("after 429: %v", err)
	}
}

func TestRetriedBodyResent(t *testing.T) {
	var n atomic.Int32
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != "sealed" || r.Header.Get(wire.HeaderMAC) != "0102" {
			t.Errorf("attempt %d: body %q", n.Load(), b)
		}
		if n.Add(1) < 3 {
			writeErr(w, wire.CodeInternal)
			return
		}
		w.WriteHeader(201)
	})
	err := pinned(t, ts).PutChunk(context.Background(), crypto.ChunkRef{Index: 3}, []byte("sealed"), []byte{1, 2})
	if err != nil || n.Load() != 3 {
		t.Fatalf("%d attempts: %v", n.Load(), err)
	}
}

func TestRelogin(t *testing.T) {
	var logins, refused atomic.Int32
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/login":
			var req wire.LoginRequest
			json.NewDecoder(r.Body).Decode(&req)
			if string(req.AuthKey) != "key" {
				refused.Add(1)
				writeErr(w, wire.CodeBadCredentials)
				return
			}
			logins.Add(1)
			json.NewEncoder(w).Encode(wire.LoginResponse{Token: "fresh", ExpiresAt: 42})
		default:
			if r.Header.Get("Authorization") != "Bearer fresh" {
				writeErr(w, wire.CodeUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(wire.Account{User: "alice"})
		}
	})
	c := pinned(t, ts)
	c.SetToken("stale")
	if _, err := c.Account(context.Background()); !IsUnauthorized(err) {
		t.Fatalf("without credentials: %v", err)
	}
	var saved string
	c.OnTokenChange(func(tok string, exp int64) { saved = tok })
	c.SetCredentials("alice", []byte("key"))
	if _, err := c.Account(context.Background()); err != nil {
		t.Fatal(err)
	}
	if saved != "fresh" || c.Token() != "fresh" || logins.Load() != 1 {
		t.Fatalf("token %q saved %q logins %d", c.Token(), saved, logins.Load())
	}
	c.SetToken("stale")
	c.SetCredentials("alice", []byte("bad"))
	if _, err := c.Account(context.Background()); !IsBadCredentials(err) {
		t.Fatalf("re-login with a wrong key: %v", err)
	}
	// A key the server refused (the password changed elsewhere) is not
	// tried again: failed logins throttle every device of the account.
	for range 3 {
		if _, err := c.Account(context.Background()); !IsBadCredentials(err) || !strings.Contains(err.Error(), "changed on another device") {
			t.Fatalf("after the refusal: %v", err)
		}
	}
	if n := refused.Load(); n != 1 {
		t.Fatalf("%d logins with the refused key, want 1", n)
	}
	c.SetCredentials("alice", []byte("key"))
	if _, err := c.Account(context.Background()); err != nil {
		t.Fatalf("with the new key: %v", err)
	}
}

func TestServerDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, _ := New(Options{URL: "https://" + addr, Trust: Trust{Fingerprint: FingerprintPrefix + strings.Repeat("A", 43)}, Retry: fastRetry})
	err = c.Health(context.Background())
	var ne *NetError
	if !errors.As(err, &ne) || !ne.Refused() || !strings.Contains(err.Error(), "cannot reach https://"+addr+": connection refused") {
		t.Fatalf("server down: %v", err)
	}

	// When the caller's deadline ends the retries (a mount's --timeout),
	// the error is the deadline's and still says what was failing.
	c, _ = New(Options{URL: "https://" + addr, Trust: Trust{Fingerprint: FingerprintPrefix + strings.Repeat("A", 43)},
		Retry: RetryPolicy{Attempts: 1000, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = c.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("server down, deadline: %v", err)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		t.Fatalf("server down, deadline: the retried failure's errno %v leaks into %v", errno, err)
	}
}

func TestGetChunkVerifiesMAC(t *testing.T) {
	tm, _ := crypto.NewTransferMAC(make([]byte, 32), "alice")
	ref := crypto.ChunkRef{File: crypto.NewID(), Index: 2, ID: crypto.NewID()}
	body := []byte("sealed chunk bytes")
	var tamper atomic.Bool
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(wire.HeaderMAC, hex.EncodeToString(tm.Sum(ref, body)))
		b := append([]byte{}, body...)
		if tamper.Load() {
			b[0] ^= 1
		}
		w.Write(b)
	})
	c := pinned(t, ts)
	got, err := c.GetChunk(context.Background(), ref, tm, nil)
	if err != nil || string(got) != string(body) {
		t.Fatalf("GetChunk: %q %v", got, err)
	}
	tamper.Store(true)
	if _, err := c.GetChunk(context.Background(), ref, tm, nil); !errors.Is(err, ErrChunkMAC) {
		t.Fatalf("tampered chunk: %v", err)
	}
}

// TestIdempotencyKeySent checks that every attempt of one change carries the
// same Idempotency-Key, that another change gets another, and that a read
// carries none: the server replays the first attempt's answer by it when an
// answer was lost (here: the first attempt's stream is reset after the
// server saw it).
func TestIdempotencyKeySent(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var keys []string
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Method+" "+r.Header.Get(wire.HeaderIdempotencyKey))
		n := len(keys)
		mu.Unlock()
		if r.Method == http.MethodPost && n == 1 {
			panic(http.ErrAbortHandler) // the answer is lost
		}
		w.Header().Set("Content-Type", wire.ContentTypeJSON)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{}`)
	})
	c := pinned(t, ts)
	if err := c.Rename(ctx, &wire.RenameRequest{Mode: wire.RenameReplace}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, &wire.RenameRequest{Mode: wire.RenameReplace}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Account(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(keys) != 4 {
		t.Fatalf("requests %q, want 4", keys)
	}
	first, retry, second, get := keys[0], keys[1], keys[2], keys[3]
	if len(first) != len("POST ")+32 || retry != first {
		t.Errorf("the retry of a change carries %q, the first attempt %q: want one key", retry, first)
	}
	if second == first {
		t.Errorf("two changes share the key %q", first)
	}
	if get != "GET " {
		t.Errorf("a read carries a key: %q", get)
	}
}
