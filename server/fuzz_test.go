package server_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

// Fixed IDs the fuzz routes use in their paths.
var (
	fuzzFile  = crypto.ID{0xf1, 0x1e}
	fuzzChunk = crypto.ID{0xc4, 0x07}
)

// fuzzRoutes are the endpoints with a request body, and the wire type each
// decodes it into (the small upload's JSON header for /v1/small).
var fuzzRoutes = []struct {
	method, path, ctype string
	newReq              func() any
}{
	{"POST", "/v1/register", wire.ContentTypeJSON, func() any { return new(wire.RegisterRequest) }},
	{"POST", "/v1/prelogin", wire.ContentTypeJSON, func() any { return new(wire.PreloginRequest) }},
	{"POST", "/v1/login", wire.ContentTypeJSON, func() any { return new(wire.LoginRequest) }},
	{"POST", "/v1/passwd", wire.ContentTypeJSON, func() any { return new(wire.PasswdRequest) }},
	{"PATCH", "/v1/inodes/" + fuzzFile.String(), wire.ContentTypeJSON, func() any { return new(wire.SetAttrRequest) }},
	{"POST", "/v1/dirs/" + rootID.String() + "/entries", wire.ContentTypeJSON, func() any { return new(wire.CreateRequest) }},
	{"POST", "/v1/dirs/" + rootID.String() + "/links", wire.ContentTypeJSON, func() any { return new(wire.LinkRequest) }},
	{"POST", "/v1/rename", wire.ContentTypeJSON, func() any { return new(wire.RenameRequest) }},
	{"POST", "/v1/files/" + fuzzFile.String() + "/commit", wire.ContentTypeJSON, func() any { return new(wire.CommitRequest) }},
	{"POST", "/v1/chunks/have", wire.ContentTypeJSON, func() any { return new(wire.HaveRequest) }},
	{"POST", "/v1/small", wire.ContentTypeSmall, func() any { return new(wire.SmallHeader) }},
	{"PUT", "/v1/files/" + fuzzFile.String() + "/chunks/0/" + fuzzChunk.String(), wire.ContentTypeChunk, nil},
	{"PUT", "/v1/inodes/" + fuzzFile.String() + "/xattrs", wire.ContentTypeJSON, func() any { return new(wire.SetXattrsRequest) }},
}

// Route numbers, for seeds.
const (
	routeRegister = iota
	routePrelogin
	routeLogin
	routePasswd
	routePatch
	routeCreate
	routeLink
	routeRename
	routeCommit
	routeHave
	routeSmall
	routePut
	routeXattrs
)

// smallHeaderPart returns the JSON header of a small upload body, if its
// framing holds one.
func smallHeaderPart(b []byte) ([]byte, bool) {
	if len(b) < 4 {
		return nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, false
	}
	return b[4 : 4+n], true
}

// checkDecodeRoundTrip decodes body strictly into a fresh request value and,
// if that succeeds, checks that encoding and decoding again gives the same
// value: what the server accepts it can also describe.
func checkDecodeRoundTrip(t *testing.T, newReq func() any, body []byte) {
	v := newReq()
	if wire.Decode(body, v) != nil {
		return
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("a decoded %T does not encode: %v", v, err)
	}
	v2 := newReq()
	if err := wire.Decode(j, v2); err != nil {
		t.Fatalf("a re-encoded %T does not decode: %v\n%s", v, err, j)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("%T changes in an encode/decode round trip:\n%+v\n%+v", v, v, v2)
	}
}

// FuzzDecodeRequests feeds arbitrary bodies to every endpoint that decodes
// one, through the real handler with an authenticated session (no TLS: the
// handler is called directly, so a panic reaches the fuzzer instead of
// net/http's recovery). The server must not panic, must not answer 500 to
// any input, and must answer every error with a well-formed wire.Error
// whose code matches the status.
func FuzzDecodeRequests(f *testing.F) {
	e := newEnv(f, server.Config{})
	c := e.register("fuzz")
	for _, s := range validSeeds(f, c) {
		f.Add(s.route, s.body)
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		if rt.newReq != nil {
			b := body
			ok := true
			if rt.ctype == wire.ContentTypeSmall {
				b, ok = smallHeaderPart(body)
			}
			if ok {
				checkDecodeRoundTrip(t, rt.newReq, b)
			}
		}
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", rt.ctype)
		req.Header.Set("Authorization", "Bearer "+c.token)
		if rt.method == "PUT" {
			mac := make([]byte, crypto.MACSize)
			copy(mac, body)
			req.Header.Set(wire.HeaderMAC, hex.EncodeToString(mac))
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s answered %d to a request body: %s", rt.method, rt.path, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var we wire.Error
			if err := wire.Decode(rec.Body.Bytes(), &we); err != nil {
				t.Fatalf("%s %s: error body %q: %v", rt.method, rt.path, rec.Body, err)
			}
			if wire.Status[we.Code] != rec.Code || we.Message == "" {
				t.Fatalf("%s %s: %d with %+v", rt.method, rt.path, rec.Code, we)
			}
		}
	})
}

type fuzzSeed struct {
	name  string
	route uint8
	body  []byte
}

func jsonSeed(name string, route int, v any) fuzzSeed {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return fuzzSeed{name, uint8(route), b}
}

// validSeeds are well-formed requests of account c, with valid MACs, so the
// fuzzer starts from inputs that reach deep into the handlers.
func validSeeds(t testing.TB, c *client) []fuzzSeed {
	a := c.a
	chunks, commit := a.seal(t, fuzzFile, 1, []byte("small file content"))
	createReq := a.createReq(t, rootID, "created", crypto.ID{0xcc}, wire.TypeFile, "")
	x, sealed := a.name(t, rootID, fuzzFile, "fuzzed")
	hdr := &wire.SmallHeader{Parent: wire.HexID(rootID), File: wire.HexID(fuzzFile),
		Create: &wire.CreateRequest{Index: x, SealedName: sealed, Inode: wire.NewInode{ID: wire.HexID(fuzzFile), Type: wire.TypeFile, Attr: commit.Attr}},
		Chunk:  &wire.SmallChunk{ID: wire.HexID(chunks[0].ref.ID), MAC: chunks[0].mac}, Commit: *commit}
	lx, lsealed := a.name(t, rootID, fuzzFile, "link")
	return []fuzzSeed{
		jsonSeed("prelogin", routePrelogin, &wire.PreloginRequest{User: "fuzz"}),
		jsonSeed("login-wrong", routeLogin, &wire.LoginRequest{User: "fuzz", AuthKey: make([]byte, 32)}),
		jsonSeed("create", routeCreate, createReq),
		{"small-create", routeSmall, smallBody(hdr, chunks[0].body)},
		jsonSeed("commit", routeCommit, commit),
		jsonSeed("patch", routePatch, &wire.SetAttrRequest{Attr: commit.Attr}),
		jsonSeed("link", routeLink, &wire.LinkRequest{Index: lx, SealedName: lsealed, Target: wire.HexID(fuzzFile)}),
		jsonSeed("rename", routeRename, &wire.RenameRequest{SrcParent: wire.HexID(rootID), SrcIndex: lx, DstParent: wire.HexID(rootID),
			DstIndex: x, SrcSealedName: sealed, Mode: wire.RenameNoReplace}),
		jsonSeed("have", routeHave, &wire.HaveRequest{IDs: []wire.HexID{wire.HexID(chunks[0].ref.ID), {}}}),
		{"put", routePut, chunks[0].body},
	}
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzDecodeRequests when
// SEALFS_WRITE_FUZZ_CORPUS is set. The files hold well-formed requests (with
// fixed keys, so MACs do not verify against a test server) and malformed
// ones.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SEALFS_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set SEALFS_WRITE_FUZZ_CORPUS=1 to regenerate the seed corpus")
	}
	a := &account{user: "fuzz", layout: testLayout}
	var err error
	a.keys, err = crypto.DeriveKeys(bytes.Repeat([]byte{7}, crypto.MasterKeySize))
	must(t, err)
	a.mac, err = crypto.NewTransferMAC(a.keys.Transfer, a.user)
	must(t, err)
	kdf := crypto.MinKDFParams
	kdf.Salt = make([]byte, crypto.SaltSize)
	seeds := validSeeds(t, &client{a: a})
	seeds = append(seeds,
		jsonSeed("register", routeRegister, &wire.RegisterRequest{User: "newuser", Invite: "sfi_x", AuthKey: make([]byte, 32), KDF: kdf,
			WrappedMaster: make([]byte, crypto.WrappedMasterKeySize), AccountPublic: make([]byte, 32),
			AccountPrivateSealed: make([]byte, crypto.SealedPrivateKeySize), TransferKey: make([]byte, 32), Layout: testLayout}),
		jsonSeed("passwd", routePasswd, &wire.PasswdRequest{AuthKey: make([]byte, 32), NewAuthKey: make([]byte, 32), NewKDF: kdf,
			NewWrappedMaster: make([]byte, crypto.WrappedMasterKeySize)}),
		fuzzSeed{"bad-json", routeCreate, []byte(`{"index":`)},
		fuzzSeed{"unknown-field", routeHave, []byte(`{"ids":[],"more":true}`)},
		fuzzSeed{"trailing", routeLogin, []byte(`{"user":"a","auth_key":""}{}`)},
		fuzzSeed{"bad-hex-id", routeHave, []byte(`{"ids":["xyz"]}`)},
		fuzzSeed{"upper-hex-index", routeLink, []byte(`{"index":"` + strings.Repeat("AB", 32) + `","name":"AA==","target":"` + strings.Repeat("0", 32) + `"}`)},
		fuzzSeed{"bad-base64", routePatch, []byte(`{"attr":"!!!"}`)},
		fuzzSeed{"null-commit", routeCreate, []byte(`{"index":"` + strings.Repeat("0", 64) + `","name":null,"inode":{"id":"` + strings.Repeat("0", 32) + `","type":1,"attr":null},"commit":null}`)},
		fuzzSeed{"negative-index", routeCommit, []byte(`{"if_version":-1,"manifest":"","attr":"","chunks":[{"index":-1,"id":"` + strings.Repeat("1", 32) + `"}]}`)},
		fuzzSeed{"huge-numbers", routeCommit, []byte(`{"if_version":99999999999999999999999,"chunks":[{"index":18446744073709551616}]}`)},
		fuzzSeed{"bad-mode", routeRename, []byte(`{"mode":"sideways"}`)},
		fuzzSeed{"small-short", routeSmall, []byte{0, 0}},
		fuzzSeed{"small-overlong", routeSmall, []byte{0xff, 0xff, 0xff, 0xff, '{', '}'}},
		fuzzSeed{"small-empty-header", routeSmall, []byte{0, 0, 0, 2, '{', '}'}},
		fuzzSeed{"small-no-chunk-header", routeSmall, append([]byte{0, 0, 0, 2, '{', '}'}, "bytes"...)},
		fuzzSeed{"put-empty", routePut, nil},
		fuzzSeed{"deep-nesting", routeHave, []byte(strings.Repeat("[", 10000))},
		fuzzSeed{"not-json", routePrelogin, []byte("user=alice")},
	)
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeRequests")
	must(t, os.MkdirAll(dir, 0o755))
	for _, s := range seeds {
		content := fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", s.route, s.body)
		must(t, os.WriteFile(filepath.Join(dir, s.name), []byte(content), 0o644))
	}
}

// TestFuzzCorpusPresent keeps the seed corpus from going missing.
func TestFuzzCorpusPresent(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzDecodeRequests"))
	if err != nil || len(ents) < 20 {
		t.Fatalf("seed corpus: %d files, %v", len(ents), err)
	}
}

// TestFuzzSeedsReachHandlers checks that the in-code seeds are what they
// claim: run in order through the handler, the well-formed ones succeed, so
// the fuzzer starts from inputs that pass decoding and MAC checks.
func TestFuzzSeedsReachHandlers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("fuzz")
	want := map[string]int{"prelogin": 200, "login-wrong": 401, "create": 201, "small-create": 201, "commit": 200,
		"patch": 200, "link": 201, "rename": 409, "have": 200, "put": 201}
	for _, s := range validSeeds(t, c) {
		rt := fuzzRoutes[s.route]
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(s.body))
		req.Header.Set("Content-Type", rt.ctype)
		req.Header.Set("Authorization", "Bearer "+c.token)
		if rt.method == "PUT" {
			req.Header.Set(wire.HeaderMAC, hex.EncodeToString(c.a.mac.Sum(crypto.ChunkRef{File: fuzzFile, ID: fuzzChunk}, s.body)))
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != want[s.name] {
			t.Errorf("seed %s: %d %s, want %d", s.name, rec.Code, rec.Body, want[s.name])
		}
	}
}
