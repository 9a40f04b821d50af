package vault

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/keyring"
	"github.com/sealfs/sealfs/server/meta"
)

// testServer is the real sealfs server (SQLite, local blobs, at-rest
// encryption) on a real TLS listener, behind a thin handler that counts
// chunk traffic and can flip a byte of every chunk it sends: what a network
// attacker who breaks TLS, or a damaged proxy, would do. The vault must catch
// that with its own checks.
type testServer struct {
	ts    *httptest.Server
	store *meta.SQLite

	putBytes atomic.Int64 // sealed bytes sent by chunk PUTs and small uploads
	getCount atomic.Int64 // chunk GETs
	corrupt  atomic.Bool  // flip a byte of every chunk served
	// redirect, when set, answers a request for the first path with
	// what the server has under the second: a server lying about which
	// inode it describes.
	redirect atomic.Pointer[[2]string]
	dir      string // the server's files: meta.db, blobs, keyring
}

func newTestServer(t *testing.T) *testServer {
	dir := t.TempDir()
	m, err := meta.OpenSQLite(filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	b, err := blob.OpenLocal(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	kr, err := keyring.Open(filepath.Join(dir, "keyring.json"), true)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	srv := server.New(m, atrest.New(b, kr), server.Config{Secret: secret})
	f := &testServer{store: m, dir: dir}
	f.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rd := f.redirect.Load(); rd != nil && r.URL.Path == rd[0] {
			r.URL.Path = rd[1]
		}
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/chunks/"),
			r.Method == http.MethodPost && r.URL.Path == "/v1/small":
			f.putBytes.Add(r.ContentLength)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/chunks/"):
			f.getCount.Add(1)
			if f.corrupt.Load() {
				w = &flipWriter{ResponseWriter: w}
			}
		}
		srv.ServeHTTP(w, r)
	}))
	f.ts.EnableHTTP2 = true
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	return f
}

// flipWriter flips the first byte of a 200 response body.
type flipWriter struct {
	http.ResponseWriter
	status  int
	flipped bool
}

func (w *flipWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *flipWriter) Write(p []byte) (int, error) {
	if !w.flipped && (w.status == 0 || w.status == http.StatusOK) && len(p) > 0 {
		q := append([]byte(nil), p...)
		q[0] ^= 1
		w.flipped = true
		return w.ResponseWriter.Write(q)
	}
	return w.ResponseWriter.Write(p)
}

// client returns an API client that pins the server's certificate.
func (f *testServer) client(t *testing.T) *remote.Client {
	c, err := remote.New(remote.Options{URL: f.ts.URL, Trust: remote.Trust{Fingerprint: remote.Fingerprint(f.ts.Certificate())},
		Retry: remote.RetryPolicy{Attempts: 2, Base: 1, Max: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// invite returns a one-time invite code for user.
func (f *testServer) invite(t *testing.T, user string) string {
	code, err := server.NewInvite(context.Background(), f.store, user, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// revokeSessions logs every device of user out, as an expiry would.
func (f *testServer) revokeSessions(t *testing.T, user string) {
	a, err := f.store.GetAccount(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.DeleteSessions(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
}
