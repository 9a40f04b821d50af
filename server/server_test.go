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
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// ---- Sealing, as the real client seals.

// sealedChunk is a chunk ready to upload: its identity, bytes and MAC.
type sealedChunk struct {
	ref  crypto.ChunkRef
	body []byte
	mac  []byte
}

// seal cuts content into the sealed chunks of file id and builds the commit
// that makes them its generation gen.
func (a *account) seal(t testing.TB, id crypto.ID, gen uint64, content []byte) ([]sealedChunk, *wire.CommitRequest) {
	t.Helper()
	chunks, commit, err := a.trySeal(id, gen, content)
	must(t, err)
	return chunks, commit
}

func (a *account) trySeal(id crypto.ID, gen uint64, content []byte) ([]sealedChunk, *wire.CommitRequest, error) {
	fc, err := crypto.NewFileCipher(a.keys.Content, id, a.layout)
	if err != nil {
		return nil, nil, err
	}
	m := &crypto.Manifest{File: id, Generation: gen, Size: uint64(len(content)), Layout: a.layout}
	commit := &wire.CommitRequest{Chunks: []wire.ChunkPos{}}
	var chunks []sealedChunk
	n := a.layout.ChunkCount(uint64(len(content)))
	cs := uint64(a.layout.ChunkSize())
	for i := uint64(0); i < n; i++ {
		plain := content[i*cs : min((i+1)*cs, uint64(len(content)))]
		ref := crypto.ChunkRef{File: id, Index: i, ID: crypto.NewID()}
		h := a.mac.New(ref)
		body, tag, err := fc.SealChunk(nil, i, ref.ID, plain, i == n-1, h)
		if err != nil {
			return nil, nil, err
		}
		m.Chunks = append(m.Chunks, crypto.ChunkEntry{ID: ref.ID, Tag: tag})
		chunks = append(chunks, sealedChunk{ref: ref, body: body, mac: h.Sum(nil)})
		commit.Chunks = append(commit.Chunks, wire.ChunkPos{Index: i, ID: wire.HexID(ref.ID)})
	}
	if commit.Manifest, err = crypto.SealManifest(a.keys.Manifest, m); err != nil {
		return nil, nil, err
	}
	commit.Attr, err = crypto.SealAttr(a.keys.Attr, id, &crypto.Attr{Mode: 0o100644, Size: uint64(len(content)), Generation: gen, Mtime: time.Now().UnixNano()})
	return chunks, commit, err
}

// name returns the blind index and sealed name of name in parent, naming child.
func (a *account) name(t testing.TB, parent, child crypto.ID, name string) (wire.Index, []byte) {
	t.Helper()
	sealed, err := crypto.SealName(a.keys.Names, parent, child, name)
	must(t, err)
	return crypto.NameIndex(a.keys.NameIndex, parent, name), sealed
}

func (a *account) index(parent crypto.ID, name string) wire.Index {
	return crypto.NameIndex(a.keys.NameIndex, parent, name)
}

// createReq is the request creating name in parent as a new inode id of
// type typ (a symlink points at target).
func (a *account) createReq(t testing.TB, parent crypto.ID, name string, id crypto.ID, typ int, target string) *wire.CreateRequest {
	t.Helper()
	x, sealed := a.name(t, parent, id, name)
	mode := map[int]uint32{wire.TypeFile: 0o100644, wire.TypeDir: 0o040755, wire.TypeSymlink: 0o120777}[typ]
	attr, err := crypto.SealAttr(a.keys.Attr, id, &crypto.Attr{Mode: mode, Size: uint64(len(target)), Generation: 1})
	must(t, err)
	req := &wire.CreateRequest{Index: x, SealedName: sealed, Inode: wire.NewInode{ID: wire.HexID(id), Type: typ, Attr: attr}}
	if typ == wire.TypeSymlink {
		req.Inode.Symlink, err = crypto.SealSymlink(a.keys.Names, id, target)
		must(t, err)
	}
	return req
}

// smallBody frames a POST /v1/small body.
func smallBody(hdr *wire.SmallHeader, chunk []byte) []byte {
	j, err := json.Marshal(hdr)
	if err != nil {
		panic(err)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(j)))
	return append(append(b, j...), chunk...)
}

// ---- Protocol calls. These return the response and never fail the test,
// so that worker goroutines can use them.

func (c *client) putChunk(ch sealedChunk) *resp {
	return c.raw("PUT", fmt.Sprintf("/v1/files/%s/chunks/%d/%s", ch.ref.File, ch.ref.Index, ch.ref.ID), ch.body,
		"Content-Type", wire.ContentTypeChunk, wire.HeaderMAC, hex.EncodeToString(ch.mac))
}

func (c *client) create(parent crypto.ID, req *wire.CreateRequest) *resp {
	return c.json("POST", "/v1/dirs/"+parent.String()+"/entries", req)
}

func (c *client) commit(file crypto.ID, req *wire.CommitRequest) *resp {
	return c.json("POST", "/v1/files/"+file.String()+"/commit", req)
}

func (c *client) small(hdr *wire.SmallHeader, chunk []byte) *resp {
	return c.raw("POST", "/v1/small", smallBody(hdr, chunk), "Content-Type", wire.ContentTypeSmall)
}

func (c *client) getInode(id crypto.ID) *resp {
	return c.do("GET", "/v1/inodes/"+id.String(), nil)
}

func (c *client) lookup(parent crypto.ID, x wire.Index) *resp {
	return c.do("GET", "/v1/dirs/"+parent.String()+"/entries/"+x.String(), nil)
}

func (c *client) readDir(dir crypto.ID, after string, limit int) *resp {
	q := ""
	if after != "" {
		q = "after=" + after
	}
	if limit > 0 {
		if q != "" {
			q += "&"
		}
		q += fmt.Sprintf("limit=%d", limit)
	}
	if q != "" {
		q = "?" + q
	}
	return c.do("GET", "/v1/dirs/"+dir.String()+"/entries"+q, nil)
}

func (c *client) unlink(parent crypto.ID, x wire.Index, typ string) *resp {
	return c.do("DELETE", "/v1/dirs/"+parent.String()+"/entries/"+x.String()+"?type="+typ, nil)
}

func (c *client) have(ids ...crypto.ID) *resp {
	req := wire.HaveRequest{IDs: []wire.HexID{}}
	for _, id := range ids {
		req.IDs = append(req.IDs, wire.HexID(id))
	}
	return c.json("POST", "/v1/chunks/have", &req)
}

// ---- Composite operations.

// upload writes a new file name in parent the way the client does for a
// large file: chunks first, then create and commit in one request.
func (c *client) upload(parent crypto.ID, name string, content []byte) (crypto.ID, *wire.Inode, error) {
	id := crypto.NewID()
	chunks, commit, err := c.a.trySeal(id, 1, content)
	if err != nil {
		return id, nil, err
	}
	for _, ch := range chunks {
		if r := c.putChunk(ch); r.err != nil || r.status != 201 {
			return id, nil, fmt.Errorf("PUT chunk: %v", r)
		}
	}
	sealed, err := crypto.SealName(c.a.keys.Names, parent, id, name)
	if err != nil {
		return id, nil, err
	}
	req := &wire.CreateRequest{Index: c.a.index(parent, name), SealedName: sealed,
		Inode: wire.NewInode{ID: wire.HexID(id), Type: wire.TypeFile, Attr: commit.Attr}, Commit: commit}
	r := c.create(parent, req)
	if r.err != nil || r.status != 201 {
		return id, nil, fmt.Errorf("create: %v", r)
	}
	var in wire.Inode
	return id, &in, json.Unmarshal(r.body, &in)
}

func (c *client) mustUpload(t testing.TB, parent crypto.ID, name string, content []byte) crypto.ID {
	t.Helper()
	id, _, err := c.upload(parent, name, content)
	must(t, err)
	return id
}

func (c *client) mkdir(t testing.TB, parent crypto.ID, name string) crypto.ID {
	t.Helper()
	id := crypto.NewID()
	var in wire.Inode
	c.create(parent, c.a.createReq(t, parent, name, id, wire.TypeDir, "")).want(t, 201, &in)
	if in.Type != wire.TypeDir || crypto.ID(in.ID) != id || in.Version != 1 {
		t.Fatalf("mkdir returned %+v", in)
	}
	return id
}

// getChunk downloads a chunk and checks its transfer HMAC against the
// identity the client expects.
func (c *client) getChunk(ref crypto.ChunkRef) ([]byte, error) {
	r := c.do("GET", "/v1/chunks/"+ref.ID.String(), nil)
	if r.err != nil || r.status != 200 {
		return nil, fmt.Errorf("GET chunk %s: %v", ref.ID, r)
	}
	mac, err := hex.DecodeString(r.header.Get(wire.HeaderMAC))
	if err != nil {
		return nil, fmt.Errorf("GET chunk: bad %s header: %v", wire.HeaderMAC, err)
	}
	if err := c.a.mac.Verify(ref, r.body, mac); err != nil {
		return nil, fmt.Errorf("GET chunk %s: %w", ref.ID, err)
	}
	return r.body, nil
}

// read downloads file id as the real client does: the inode with its
// manifest, then every chunk, each checked by HMAC and then AEAD against the
// manifest, and the attributes against the manifest.
func (c *client) read(id crypto.ID) ([]byte, *wire.Inode, error) {
	r := c.do("GET", "/v1/inodes/"+id.String()+"?manifest=1", nil)
	if r.err != nil || r.status != 200 {
		return nil, nil, fmt.Errorf("GET inode: %v", r)
	}
	var in wire.Inode
	if err := json.Unmarshal(r.body, &in); err != nil {
		return nil, nil, err
	}
	if in.Manifest == nil {
		return nil, &in, errors.New("the file has no committed version")
	}
	m, err := crypto.OpenManifest(c.a.keys.Manifest, id, in.Manifest)
	if err != nil {
		return nil, &in, fmt.Errorf("manifest: %w", err)
	}
	attr, err := crypto.OpenAttr(c.a.keys.Attr, id, in.Attr)
	if err != nil {
		return nil, &in, fmt.Errorf("attr: %w", err)
	}
	if attr.Size != m.Size || attr.Generation != m.Generation {
		return nil, &in, fmt.Errorf("attr (size %d, generation %d) does not match the manifest (%d, %d)", attr.Size, attr.Generation, m.Size, m.Generation)
	}
	fc, err := crypto.NewFileCipher(c.a.keys.Content, id, m.Layout)
	if err != nil {
		return nil, &in, err
	}
	out := make([]byte, 0, m.Size)
	var stored int64
	for i, e := range m.Chunks {
		if e.IsHole() {
			out = append(out, make([]byte, m.ChunkPlainLen(i))...)
			continue
		}
		body, err := c.getChunk(crypto.ChunkRef{File: id, Index: uint64(i), ID: e.ID})
		if err != nil {
			return nil, &in, err
		}
		stored += int64(len(body))
		if out, err = fc.OpenChunk(out, uint64(i), e.ID, body, m.ChunkPlainLen(i), m.IsLast(i), e.Tag); err != nil {
			return nil, &in, fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	if in.Stored != stored {
		return nil, &in, fmt.Errorf("inode says %d sealed bytes stored, its chunks have %d", in.Stored, stored)
	}
	return out, &in, nil
}

// mustRead reads file id and checks its content.
func (c *client) mustRead(t testing.TB, id crypto.ID, want []byte) *wire.Inode {
	t.Helper()
	got, in, err := c.read(id)
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("file %s: read %d bytes, want %d (contents differ)", id, len(got), len(want))
	}
	return in
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
