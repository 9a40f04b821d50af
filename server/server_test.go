package server_test

// The test harness: a real server (SQLite metadata, local blobs, a keyring
// file, the at-rest envelope) behind a real TLS listener, and a small client
// that speaks docs/protocol.md with real crypto. Everything a client sends is
// sealed as the real client seals it; everything it reads back is checked as
// the real client checks it (transfer HMAC, then AEAD against the manifest).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/netbatch"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/keyring"
	"github.com/sealfs/sealfs/server/meta"
	"github.com/sealfs/sealfs/server/tlscert"
)

// testLayout keeps chunks small (16 KiB of plaintext in four 4 KiB blocks),
// so multi-chunk files cost little.
var testLayout = crypto.Layout{BlockSize: 4 << 10, ChunkBlocks: 4, PadUnit: 4 << 10}

// rootID is every account's root directory.
var rootID crypto.ID

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("SEALFS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testEnv is one server over its own data directory.
type testEnv struct {
	t       testing.TB
	dir     string
	meta    *meta.SQLite
	blobs   *blob.Local
	keyring *keyring.Keyring
	store   *atrest.Store
	srv     *server.Server
	hs      *http.Server
	addr    string // host:port of the TLS listener
	fp      string // the certificate's fingerprint, which clients pin
	certPEM []byte
}

func newEnv(t testing.TB, cfg server.Config) *testEnv {
	t.Helper()
	return newEnvAt(t, t.TempDir(), cfg)
}

// restart stops e's server and closes its stores, then starts a new server
// over the same data directory, with a new listener.
func (e *testEnv) restart(cfg server.Config) *testEnv {
	e.t.Helper()
	e.hs.Close()
	must(e.t, e.meta.Close())
	must(e.t, e.blobs.Close())
	return newEnvAt(e.t, e.dir, cfg)
}

func newEnvAt(t testing.TB, dir string, cfg server.Config) *testEnv {
	t.Helper()
	m, err := meta.OpenSQLite(filepath.Join(dir, "meta.db"))
	must(t, err)
	t.Cleanup(func() { m.Close() })
	b, err := blob.OpenLocal(filepath.Join(dir, "blobs"))
	must(t, err)
	t.Cleanup(func() { b.Close() })
	kr, err := keyring.Open(filepath.Join(dir, "keyring.json"), true)
	must(t, err)
	st := atrest.New(b, kr)
	if cfg.Secret == nil {
		cfg.Secret = crypto.RandomBytes(32)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	srv := server.New(m, st, cfg)

	certFile, keyFile, _, err := tlscert.EnsureSelfSigned(filepath.Join(dir, "tls"), nil)
	must(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(t, err)
	fp, err := tlscert.FingerprintFile(certFile)
	must(t, err)
	certPEM, err := os.ReadFile(certFile)
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	hs := &http.Server{
		Handler:           srv,
		TLSConfig:         tlscert.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }),
		ReadHeaderTimeout: 10 * time.Second,
		// As cmd/sealfs/serve.go configures it.
		HTTP2:       &http.HTTP2Config{MaxReceiveBufferPerConnection: 32 << 20, MaxReceiveBufferPerStream: 4 << 20},
		ErrorLog:    log.New(io.Discard, "", 0),
		ConnContext: netbatch.ConnContext,
	}
	go hs.ServeTLS(netbatch.Listener(ln), "", "")
	t.Cleanup(func() { hs.Close() })
	return &testEnv{t: t, dir: dir, meta: m, blobs: b, keyring: kr, store: st, srv: srv, hs: hs,
		addr: ln.Addr().String(), fp: fp, certPEM: certPEM}
}

// transport returns an HTTPS transport that pins the server's certificate,
// dials from the local address local (any when empty) and prefers HTTP/2.
// conf, when not nil, adjusts its TLS configuration.
func newTransport(t testing.TB, fp, local string, conf func(*tls.Config)) *http.Transport {
	tc := &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: tlscert.VerifyFingerprint(fp)}
	if conf != nil {
		conf(tc)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	tr := &http.Transport{TLSClientConfig: tc, DialContext: d.DialContext, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: 16, TLSHandshakeTimeout: 10 * time.Second,
		// As remote's transport: windows that keep 1 MiB chunks streaming.
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 20, MaxReceiveBufferPerStream: 8 << 20}}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// account is a user's key material, as the real client holds it.
type account struct {
	user    string
	pass    []byte
	kdf     crypto.KDFParams
	authKey []byte
	master  []byte
	keys    *crypto.Keys
	layout  crypto.Layout
	mac     *crypto.TransferMAC
}

// newAccount makes fresh keys for user, as 'sealfs register' does, with the
// cheapest KDF parameters a client accepts, and the register request.
func newAccount(t testing.TB, user, invite string, layout crypto.Layout) (*account, *wire.RegisterRequest) {
	t.Helper()
	a := &account{user: user, pass: []byte("pw-" + hex.EncodeToString(crypto.RandomBytes(8))), layout: layout}
	a.kdf = crypto.MinKDFParams
	a.kdf.Salt = crypto.RandomBytes(crypto.SaltSize)
	lk, err := crypto.DeriveLoginKeys(a.pass, a.kdf)
	must(t, err)
	a.authKey = lk.AuthKey
	a.master = crypto.NewMasterKey()
	wrapped, err := crypto.WrapMasterKey(lk.WrapKey, a.master)
	must(t, err)
	a.keys, err = crypto.DeriveKeys(a.master)
	must(t, err)
	kp, err := crypto.NewAccountKeyPair(a.keys)
	must(t, err)
	a.mac, err = crypto.NewTransferMAC(a.keys.Transfer, user)
	must(t, err)
	return a, &wire.RegisterRequest{User: user, Invite: invite, AuthKey: a.authKey, KDF: a.kdf,
		WrappedMaster: wrapped, AccountPublic: kp.Public, AccountPrivateSealed: kp.SealedPrivate,
		TransferKey: a.keys.Transfer, Layout: layout}
}

// client is one connection pool to a server, optionally logged in.
type client struct {
	base  string
	hc    *http.Client
	token string
	a     *account
	// origin, when set, is sent as the Sealfs-Client header.
	origin string
}

func newClient(t testing.TB, base, fp, local string) *client {
	return &client{base: base, hc: &http.Client{Transport: newTransport(t, fp, local, nil), Timeout: 60 * time.Second}}
}

// anon returns a client of e without an account, dialing from local.
func (e *testEnv) anon(local string) *client {
	return newClient(e.t, "https://"+e.addr, e.fp, local)
}

func (e *testEnv) invite(user string, quota int64) string {
	e.t.Helper()
	code, err := server.NewInvite(context.Background(), e.meta, user, time.Hour, quota)
	must(e.t, err)
	return code
}

// register creates user with the test layout and logs in.
func (e *testEnv) register(user string) *client {
	e.t.Helper()
	return e.registerWith(user, 0, testLayout)
}

func (e *testEnv) registerWith(user string, quota int64, layout crypto.Layout) *client {
	e.t.Helper()
	c := e.anon("")
	c.registerAndLogin(e.t, e.invite(user, quota), user, layout)
	return c
}

func (c *client) registerAndLogin(t testing.TB, invite, user string, layout crypto.Layout) {
	t.Helper()
	a, req := newAccount(t, user, invite, layout)
	c.json("POST", "/v1/register", req).want(t, 201, nil)
	c.a = a
	c.login(t)
}

// login opens a session with the account's auth key.
func (c *client) login(t testing.TB) *wire.LoginResponse {
	t.Helper()
	var lr wire.LoginResponse
	c.json("POST", "/v1/login", &wire.LoginRequest{User: c.a.user, AuthKey: c.a.authKey}).want(t, 200, &lr)
	if lr.Token == "" {
		t.Fatal("login returned no token")
	}
	c.token = lr.Token
	return &lr
}

// session returns another client of the same account with its own session
// and connections.
func (c *client) session(t testing.TB, fp string) *client {
	t.Helper()
	d := newClient(t, c.base, fp, "")
	d.a = c.a
	d.login(t)
	return d
}

// resp is a response read whole, or the transport error.
type resp struct {
	status int
	header http.Header
	body   []byte
	proto  int
	tls    *tls.ConnectionState
	err    error
}

func (r *resp) String() string {
	if r.err != nil {
		return "transport error: " + r.err.Error()
	}
	b := r.body
	if len(b) > 300 {
		b = b[:300]
	}
	return fmt.Sprintf("%d %q", r.status, b)
}

// want checks the status and decodes the JSON body into out, if not nil.
func (r *resp) want(t testing.TB, status int, out any) {
	t.Helper()
	if r.err != nil || r.status != status {
		t.Fatalf("got %v, want status %d", r, status)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			t.Fatalf("decoding %q: %v", r.body, err)
		}
	}
}

// wantErr checks the status, that the body is exactly a wire.Error with code
// and a message, and that code and status agree with the protocol's table.
func (r *resp) wantErr(t testing.TB, status int, code string) wire.Error {
	t.Helper()
	e, err := r.apiErr()
	if err != nil {
		t.Fatalf("got %v: %v", r, err)
	}
	if r.status != status || e.Code != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.status, e.Code, e.Message, status, code)
	}
	if wire.Status[code] != status {
		t.Fatalf("code %q answered with %d, but the protocol says %d", code, status, wire.Status[code])
	}
	if e.Message == "" {
		t.Fatalf("%d %q without a message", status, code)
	}
	return e
}

func (r *resp) apiErr() (wire.Error, error) {
	var e wire.Error
	if r.err != nil {
		return e, r.err
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, wire.ContentTypeJSON) {
		return e, fmt.Errorf("error response with Content-Type %q", ct)
	}
	if err := wire.Decode(r.body, &e); err != nil {
		return e, fmt.Errorf("error body is not a wire.Error: %v", err)
	}
	return e, nil
}

// do sends a request; hdr holds header name and value pairs. A body of
// unknown length (chunked, no Content-Length) is sent as an io.Reader that
// is not a *bytes.Reader.
func (c *client) do(method, path string, body io.Reader, hdr ...string) *resp {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return &resp{err: err}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.origin != "" {
		req.Header.Set(wire.HeaderClient, c.origin)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return &resp{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return &resp{status: res.StatusCode, header: res.Header, body: b, proto: res.ProtoMajor, tls: res.TLS, err: err}
}

// raw sends bytes as a body.
func (c *client) raw(method, path string, body []byte, hdr ...string) *resp {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	return c.do(method, path, r, hdr...)
}

// json sends v as a JSON body (none when v is nil).
func (c *client) json(method, path string, v any, hdr ...string) *resp {
	if v == nil {
		return c.do(method, path, nil, hdr...)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return &resp{err: err}
	}
	return c.raw(method, path, b, append([]string{"Content-Type", wire.ContentTypeJSON}, hdr...)...)
}

// ---- Looking at the server's stores directly.

// blobFiles lists the blob files on disk (not the lock, nor temp files).
func (e *testEnv) blobFiles() map[string]bool {
	e.t.Helper()
	files := map[string]bool{}
	err := filepath.WalkDir(e.blobs.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && d.Name() != "lock" {
			files[p] = true
		}
		return nil
	})
	must(e.t, err)
	return files
}

// chunks lists every chunk record of every account.
func (e *testEnv) chunks() []meta.StoredChunk {
	e.t.Helper()
	var all []meta.StoredChunk
	var after meta.RowKey
	for {
		page, err := e.meta.ListChunks(context.Background(), after, 100)
		must(e.t, err)
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		after = page[len(page)-1].Key()
	}
}

func (e *testEnv) acct(user string) meta.Account {
	e.t.Helper()
	a, err := e.meta.GetAccount(context.Background(), user)
	must(e.t, err)
	return a
}

// blobPath is where the blob store keeps a chunk of user.
func (e *testEnv) blobPath(user string, chunk crypto.ID) string {
	e.t.Helper()
	rec, err := e.meta.GetChunk(context.Background(), e.acct(user).ID, chunk)
	must(e.t, err)
	return filepath.Join(e.blobs.Dir(), rec.BlobKey[:2], rec.BlobKey)
}

// clock is a settable clock for the login throttle.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func randomContent(n int) []byte { return crypto.RandomBytes(n) }

// TestHarness checks the harness itself against the protocol: a sealed
// chunk's MAC as computed while sealing equals TransferMAC.Sum, the health
// check answers, and a file written with it reads back.
func TestHarness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	r := e.anon("").do("GET", "/healthz", nil)
	r.want(t, 200, nil)
	if string(r.body) != "ok\n" {
		t.Fatalf("healthz body %q", r.body)
	}
	c := e.register("alice")
	content := randomContent(2*testLayout.ChunkSize() + 1000)
	chunks, _ := c.a.seal(t, crypto.NewID(), 1, content)
	for _, ch := range chunks {
		if !bytes.Equal(ch.mac, c.a.mac.Sum(ch.ref, ch.body)) {
			t.Fatal("the MAC computed while sealing differs from TransferMAC.Sum")
		}
	}
	id := c.mustUpload(t, rootID, "hello", content)
	c.mustRead(t, id, content)
	if u := e.acct("alice").UsedBytes; u != int64(2*testLayout.MaxSealedChunkSize()+testLayout.SealedChunkLen(1000, true)) {
		t.Fatalf("usage %d after one 3-chunk file", u)
	}
}
