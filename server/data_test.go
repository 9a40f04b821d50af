package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

// haveSet asks which of ids the server holds for c.
func haveSet(t *testing.T, c *client, ids ...crypto.ID) map[crypto.ID]bool {
	t.Helper()
	var hr wire.HaveResponse
	c.have(ids...).want(t, 200, &hr)
	set := map[crypto.ID]bool{}
	for _, id := range hr.Have {
		set[crypto.ID(id)] = true
	}
	return set
}

// storeState is what a refused upload must leave unchanged.
type storeState struct {
	files  int // blob files
	chunks int // chunk records, blob or inline
	used   int64
}

func (e *testEnv) state(user string) storeState {
	return storeState{files: len(e.blobFiles()), chunks: len(e.chunks()), used: e.acct(user).UsedBytes}
}

func (e *testEnv) wantUnchanged(t *testing.T, user string, before storeState, c *client, ids ...crypto.ID) {
	t.Helper()
	if after := e.state(user); after != before {
		t.Fatalf("store changed by a refused upload: %+v, was %+v", after, before)
	}
	if h := haveSet(t, c, ids...); len(h) != 0 {
		t.Fatalf("the server holds refused chunks %v", h)
	}
	var acct wire.Account
	c.do("GET", "/v1/account", nil).want(t, 200, &acct)
	if acct.UsedBytes != before.used {
		t.Fatalf("GET /v1/account says %d bytes used, want %d", acct.UsedBytes, before.used)
	}
}

func TestTamperedChunks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	other := e.register("bob")
	c.mustUpload(t, rootID, "existing", randomContent(5000))
	before := e.state("alice")

	file := crypto.NewID()
	chunks, _ := c.a.seal(t, file, 1, randomContent(testLayout.ChunkSize()+100))
	ch := chunks[0]
	put := func(path crypto.ChunkRef, body, mac []byte) *resp {
		return c.putChunk(sealedChunk{ref: path, body: body, mac: mac})
	}
	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x01
		return b
	}
	macFor := func(ref crypto.ChunkRef) []byte { return c.a.mac.Sum(ref, ch.body) }
	otherRef := ch.ref
	otherRef.Index = 1
	otherFile := ch.ref
	otherFile.File = crypto.NewID()
	otherID := ch.ref
	otherID.ID = crypto.NewID()

	cases := []struct {
		name      string
		path      crypto.ChunkRef
		body, mac []byte
	}{
		{"body bit flipped (first byte)", ch.ref, flip(ch.body, 0), ch.mac},
		{"body bit flipped (last byte)", ch.ref, flip(ch.body, len(ch.body)-1), ch.mac},
		{"body truncated", ch.ref, ch.body[:len(ch.body)-1], ch.mac},
		{"body extended", chunks[1].ref, append(append([]byte(nil), chunks[1].body...), 0), chunks[1].mac},
		{"MAC bit flipped", ch.ref, ch.body, flip(ch.mac, 7)},
		{"MAC for another index", ch.ref, ch.body, macFor(otherRef)},
		{"MAC for another file", ch.ref, ch.body, macFor(otherFile)},
		{"MAC for another chunk ID", ch.ref, ch.body, macFor(otherID)},
		{"path index moved", otherRef, ch.body, ch.mac},
		{"path file moved", otherFile, ch.body, ch.mac},
		{"path chunk ID moved", otherID, ch.body, ch.mac},
		{"MAC under another account's key", ch.ref, ch.body, other.a.mac.Sum(ch.ref, ch.body)},
		{"the second chunk's MAC", ch.ref, ch.body, chunks[1].mac},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			put(tc.path, tc.body, tc.mac).wantErr(t, 400, wire.CodeMACMismatch)
		})
	}
	// Malformed MAC headers are bad requests.
	for _, h := range []string{"", "zz", hex.EncodeToString(ch.mac[:31]), hex.EncodeToString(append(ch.mac, 0))} {
		c.raw("PUT", fmt.Sprintf("/v1/files/%s/chunks/0/%s", file, ch.ref.ID), ch.body, wire.HeaderMAC, h).wantErr(t, 400, wire.CodeBadRequest)
	}
	// The same through POST /v1/small.
	x, sealed := c.a.name(t, rootID, file, "small")
	_, commit := c.a.seal(t, file, 1, nil)
	hdr := &wire.SmallHeader{Parent: wire.HexID(rootID), File: wire.HexID(file),
		Create: &wire.CreateRequest{Index: x, SealedName: sealed, Inode: wire.NewInode{ID: wire.HexID(file), Type: wire.TypeFile, Attr: commit.Attr}},
		Chunk:  &wire.SmallChunk{Index: 0, ID: wire.HexID(ch.ref.ID), MAC: ch.mac}, Commit: *commit}
	c.small(hdr, flip(ch.body, 100)).wantErr(t, 400, wire.CodeMACMismatch)
	hdr.Chunk.MAC = macFor(otherRef)
	c.small(hdr, ch.body).wantErr(t, 400, wire.CodeMACMismatch)
	c.lookup(rootID, x).wantErr(t, 404, wire.CodeNotFound)

	e.wantUnchanged(t, "alice", before, c, ch.ref.ID, otherID.ID)

	// The genuine chunk is stored, inline.
	put(ch.ref, ch.body, ch.mac).want(t, 201, nil)
	if after := e.state("alice"); after.files != before.files || after.chunks != before.chunks+1 ||
		after.used != before.used+int64(len(ch.body)) {
		t.Fatalf("after a good PUT: %+v, was %+v", after, before)
	}
	if !haveSet(t, c, ch.ref.ID)[ch.ref.ID] {
		t.Fatal("HaveChunks misses a stored chunk")
	}
}

func TestChunkRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	file := crypto.NewID()
	content := randomContent(2*testLayout.ChunkSize() + 10)
	chunks, commit := c.a.seal(t, file, 1, content)

	for _, ch := range chunks {
		c.putChunk(ch).want(t, 201, nil)
	}
	// A retry of an identical PUT is a success that stores nothing new.
	before := e.state("alice")
	c.putChunk(chunks[0]).want(t, 200, nil)
	if e.state("alice") != before {
		t.Fatal("a retried PUT stored something")
	}
	// The same chunk ID for another position or size: 409 exists.
	moved := chunks[0]
	moved.ref.Index = 5
	moved.mac = c.a.mac.Sum(moved.ref, moved.body)
	c.putChunk(moved).wantErr(t, 409, wire.CodeExists)
	shorter := chunks[0]
	shorter.body = shorter.body[:100]
	shorter.mac = c.a.mac.Sum(shorter.ref, shorter.body)
	c.putChunk(shorter).wantErr(t, 409, wire.CodeExists)
	// Empty chunks and the zero chunk ID are refused.
	empty := sealedChunk{ref: crypto.ChunkRef{File: file, Index: 9, ID: crypto.NewID()}}
	empty.mac = c.a.mac.Sum(empty.ref, nil)
	c.putChunk(empty).wantErr(t, 400, wire.CodeBadRequest)
	zero := chunks[0]
	zero.ref.ID = crypto.ID{}
	zero.mac = c.a.mac.Sum(zero.ref, zero.body)
	c.putChunk(zero).wantErr(t, 400, wire.CodeBadRequest)
	c.raw("PUT", "/v1/files/"+file.String()+"/chunks/-1/"+crypto.NewID().String(), []byte("x"), wire.HeaderMAC, hex.EncodeToString(chunks[0].mac)).wantErr(t, 400, wire.CodeBadRequest)
	c.raw("PUT", "/v1/files/nothex/chunks/0/"+crypto.NewID().String(), []byte("x"), wire.HeaderMAC, hex.EncodeToString(chunks[0].mac)).wantErr(t, 400, wire.CodeBadRequest)
	if e.state("alice") != before {
		t.Fatal("refused PUTs stored something")
	}

	// GET returns exactly the body, with a MAC over its recorded identity.
	for _, ch := range chunks {
		body, err := c.getChunk(ch.ref)
		must(t, err)
		if !bytes.Equal(body, ch.body) {
			t.Fatal("GET chunk returned other bytes")
		}
		wrongRef := ch.ref
		wrongRef.Index++
		if _, err := c.getChunk(wrongRef); err == nil {
			t.Fatal("a chunk's MAC verifies for another position")
		}
	}
	c.do("GET", "/v1/chunks/"+crypto.NewID().String(), nil).wantErr(t, 404, wire.CodeNotFound)
	c.do("GET", "/v1/chunks/12", nil).wantErr(t, 400, wire.CodeBadRequest)

	// have: the held subset, in request order.
	missing := crypto.NewID()
	var hr wire.HaveResponse
	c.have(chunks[1].ref.ID, missing, chunks[0].ref.ID).want(t, 200, &hr)
	if len(hr.Have) != 2 || crypto.ID(hr.Have[0]) != chunks[1].ref.ID || crypto.ID(hr.Have[1]) != chunks[0].ref.ID {
		t.Fatalf("have: %v", hr.Have)
	}
	c.have().want(t, 200, &hr)
	if hr.Have == nil || len(hr.Have) != 0 {
		t.Fatalf("have of nothing: %s", c.have().body)
	}

	// Commit, then read back through the manifest.
	var in wire.Inode
	c.create(rootID, c.a.createReq(t, rootID, "f", file, wire.TypeFile, "")).want(t, 201, &in)
	if in.Version != 1 || in.Stored != 0 {
		t.Fatalf("new file %+v", in)
	}
	if _, _, err := c.read(file); err == nil {
		t.Fatal("an uncommitted file reads")
	}
	c.commit(file, commit).want(t, 200, &in)
	if in.Version != 2 || in.Stored != int64(len(chunks[0].body)+len(chunks[1].body)+len(chunks[2].body)) {
		t.Fatalf("committed file %+v", in)
	}
	c.mustRead(t, file, content)
}

func TestCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	v1 := randomContent(3 * testLayout.ChunkSize())
	f := c.mustUpload(t, rootID, "f", v1)
	in1 := inodeOf(t, c, f)

	// A new version with one chunk not uploaded.
	v2 := randomContent(2*testLayout.ChunkSize() + 7)
	chunks, commit := c.a.seal(t, f, 2, v2)
	c.putChunk(chunks[0]).want(t, 201, nil)
	c.putChunk(chunks[2]).want(t, 201, nil)
	commit.IfVersion = in1.Version
	we := c.commit(f, commit).wantErr(t, 409, wire.CodeMissingChunks)
	if len(we.Missing) != 1 || crypto.ID(we.Missing[0]) != chunks[1].ref.ID {
		t.Fatalf("missing %v, want [%s]", we.Missing, chunks[1].ref.ID)
	}
	// The previous version is intact and unchanged.
	if in := c.mustRead(t, f, v1); in.Version != in1.Version {
		t.Fatalf("a refused commit changed the version from %d to %d", in1.Version, in.Version)
	}

	// Upload the missing chunk: the commit goes through.
	c.putChunk(chunks[1]).want(t, 201, nil)
	var in2 wire.Inode
	c.commit(f, commit).want(t, 200, &in2)
	if in2.Version <= in1.Version {
		t.Fatal("commit did not bump the version")
	}
	c.mustRead(t, f, v2)
	// The same if_version again is stale now: 412 with the current version.
	if we := c.commit(f, commit).wantErr(t, 412, wire.CodeVersionMismatch); we.Version != in2.Version {
		t.Errorf("412 version_mismatch carries version %d, want the current %d (docs/protocol.md: the body has `version`)", we.Version, in2.Version)
	}
	c.mustRead(t, f, v2)

	// Commits to what is not a file, or does not exist, or without a
	// manifest.
	commit.IfVersion = 0
	c.commit(rootID, commit).wantErr(t, 409, wire.CodeIsDir)
	c.commit(crypto.NewID(), commit).wantErr(t, 404, wire.CodeNotFound)
	bad := *commit
	bad.Manifest = nil
	c.commit(f, &bad).wantErr(t, 400, wire.CodeBadRequest)
	c.mustRead(t, f, v2)

	// Truncate to empty: no chunks.
	_, empty := c.a.seal(t, f, 3, nil)
	c.commit(f, empty).want(t, 200, nil)
	c.mustRead(t, f, nil)
}

func TestCreateWithCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	// A missing chunk: 409, and the name does not appear.
	f := crypto.NewID()
	content := randomContent(testLayout.ChunkSize() + 1)
	chunks, commit := c.a.seal(t, f, 1, content)
	c.putChunk(chunks[0]).want(t, 201, nil)
	req := c.a.createReq(t, rootID, "new", f, wire.TypeFile, "")
	req.Inode.Attr = commit.Attr
	req.Commit = commit
	we := c.create(rootID, req).wantErr(t, 409, wire.CodeMissingChunks)
	if len(we.Missing) != 1 || crypto.ID(we.Missing[0]) != chunks[1].ref.ID {
		t.Fatalf("missing %v", we.Missing)
	}
	c.lookup(rootID, req.Index).wantErr(t, 404, wire.CodeNotFound)
	c.getInode(f).wantErr(t, 404, wire.CodeNotFound)
	// With every chunk, one request creates a whole file.
	c.putChunk(chunks[1]).want(t, 201, nil)
	var in wire.Inode
	c.create(rootID, req).want(t, 201, &in)
	if in.Manifest != nil || in.Stored == 0 {
		t.Fatalf("create-with-commit returned %+v", in)
	}
	c.mustRead(t, f, content)
	// Content on a directory is refused.
	d := c.a.createReq(t, rootID, "dir", crypto.NewID(), wire.TypeDir, "")
	d.Commit = commit
	c.create(rootID, d).wantErr(t, 400, wire.CodeBadRequest)
}

func TestSmall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	dir := c.mkdir(t, rootID, "dir")

	smallHdr := func(f crypto.ID, gen uint64, content []byte, create string) (*wire.SmallHeader, []byte) {
		chunks, commit := c.a.seal(t, f, gen, content)
		hdr := &wire.SmallHeader{File: wire.HexID(f), Commit: *commit}
		if create != "" {
			hdr.Parent = wire.HexID(dir)
			x, sealed := c.a.name(t, dir, f, create)
			hdr.Create = &wire.CreateRequest{Index: x, SealedName: sealed,
				Inode: wire.NewInode{ID: wire.HexID(f), Type: wire.TypeFile, Attr: commit.Attr}}
		}
		if len(chunks) == 0 {
			return hdr, nil
		}
		if len(chunks) > 1 {
			t.Fatal("not a small file")
		}
		hdr.Chunk = &wire.SmallChunk{Index: 0, ID: wire.HexID(chunks[0].ref.ID), MAC: chunks[0].mac}
		return hdr, chunks[0].body
	}

	// A new file in one request.
	f := crypto.NewID()
	v1 := randomContent(3000)
	hdr, body := smallHdr(f, 1, v1, "small")
	var in wire.Inode
	c.small(hdr, body).want(t, 201, &in)
	if crypto.ID(in.ID) != f || in.Type != wire.TypeFile || in.Stored != int64(len(body)) {
		t.Fatalf("small returned %+v", in)
	}
	if crypto.ID(lookupOf(t, c, dir, "small").Inode.ID) != f {
		t.Fatal("the small file's name does not name it")
	}
	c.mustRead(t, f, v1)
	// The same name again: 409 exists, and the file keeps its content.
	c.small(smallHdr(f, 1, randomContent(10), "small")).wantErr(t, 409, wire.CodeExists)
	c.mustRead(t, f, v1)

	// An existing file: a new version, with and without If-Match.
	v2 := randomContent(testLayout.ChunkSize())
	hdr, body = smallHdr(f, 2, v2, "")
	hdr.Commit.IfVersion = in.Version
	var in2 wire.Inode
	c.small(hdr, body).want(t, 201, &in2)
	if in2.Version <= in.Version {
		t.Fatal("small commit did not bump the version")
	}
	c.mustRead(t, f, v2)
	hdr, body = smallHdr(f, 3, randomContent(5), "")
	hdr.Commit.IfVersion = in.Version
	c.small(hdr, body).wantErr(t, 412, wire.CodeVersionMismatch)
	c.mustRead(t, f, v2)

	// An empty file carries no chunk.
	g := crypto.NewID()
	hdr, body = smallHdr(g, 1, nil, "empty")
	if hdr.Chunk != nil || body != nil {
		t.Fatal("an empty file has a chunk")
	}
	c.small(hdr, nil).want(t, 201, nil)
	c.mustRead(t, g, nil)

	// Framing errors.
	h := crypto.NewID()
	hdr, body = smallHdr(h, 1, randomContent(100), "framed")
	good := smallBody(hdr, body)
	post := func(b []byte) *resp { return c.raw("POST", "/v1/small", b, "Content-Type", wire.ContentTypeSmall) }
	post(good[:3]).wantErr(t, 400, wire.CodeBadRequest)
	post(nil).wantErr(t, 400, wire.CodeBadRequest)
	long := append([]byte{0x7f, 0xff, 0xff, 0xff}, good[4:]...)
	post(long).wantErr(t, 400, wire.CodeBadRequest)
	post(append([]byte{0, 0, 0, 2}, good[4:]...)).wantErr(t, 400, wire.CodeBadRequest)
	noChunk := *hdr
	noChunk.Chunk = nil
	post(smallBody(&noChunk, body)).wantErr(t, 400, wire.CodeBadRequest)
	// A create for another inode than file (with a MAC that verifies).
	otherFile := *hdr
	otherFile.File = wire.HexID(crypto.NewID())
	otherChunk := *hdr.Chunk
	otherChunk.MAC = c.a.mac.Sum(crypto.ChunkRef{File: crypto.ID(otherFile.File), ID: crypto.ID(otherChunk.ID)}, body)
	otherFile.Chunk = &otherChunk
	post(smallBody(&otherFile, body)).wantErr(t, 400, wire.CodeBadRequest)
	if haveSet(t, c, crypto.ID(otherChunk.ID))[crypto.ID(otherChunk.ID)] {
		t.Errorf("a small upload refused as a bad request stored its chunk (server/data.go small: check the header before storeChunk)")
	}
	otherFile.Chunk = hdr.Chunk
	post(smallBody(&otherFile, body)).wantErr(t, 400, wire.CodeMACMismatch)
	var raw map[string]any
	must(t, json.Unmarshal(good[4:4+len(good)-4-len(body)], &raw))
	raw["surprise"] = true
	j, _ := json.Marshal(raw)
	post(append(append([]byte{0, 0, 0, byte(len(j))}, j...), body...)).wantErr(t, 400, wire.CodeBadRequest)
	c.lookup(dir, c.a.index(dir, "framed")).wantErr(t, 404, wire.CodeNotFound)
	hdr, body = smallHdr(h, 1, randomContent(100), "framed")
	post(smallBody(hdr, body)).want(t, 201, nil)
	c.lookup(dir, c.a.index(dir, "framed")).want(t, 200, nil)
}

func TestLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	before := e.state("alice")
	max := testLayout.MaxSealedChunkSize()

	// A chunk body one byte over the layout's maximum, with a valid MAC.
	big := sealedChunk{ref: crypto.ChunkRef{File: crypto.NewID(), ID: crypto.NewID()}, body: randomContent(max + 1)}
	big.mac = c.a.mac.Sum(big.ref, big.body)
	c.putChunk(big).wantErr(t, 413, wire.CodeTooLarge)
	// Much larger, and without a Content-Length.
	huge := sealedChunk{ref: big.ref, body: randomContent(4 * max)}
	huge.mac = c.a.mac.Sum(huge.ref, huge.body)
	c.putChunk(huge).wantErr(t, 413, wire.CodeTooLarge)
	c.do("PUT", fmt.Sprintf("/v1/files/%s/chunks/0/%s", big.ref.File, big.ref.ID), io.MultiReader(bytes.NewReader(huge.body)),
		wire.HeaderMAC, hex.EncodeToString(huge.mac)).wantErr(t, 413, wire.CodeTooLarge)
	e.wantUnchanged(t, "alice", before, c, big.ref.ID)
	// Exactly the maximum is fine.
	full := sealedChunk{ref: crypto.ChunkRef{File: crypto.NewID(), ID: crypto.NewID()}, body: randomContent(max)}
	full.mac = c.a.mac.Sum(full.ref, full.body)
	c.putChunk(full).want(t, 201, nil)

	// JSON bodies over 1 MiB, with and without a Content-Length.
	bigJSON := []byte(`{"ids":["` + strings.Repeat("0", wire.MaxJSONBody) + `"]}`)
	c.raw("POST", "/v1/chunks/have", bigJSON, "Content-Type", wire.ContentTypeJSON).wantErr(t, 413, wire.CodeTooLarge)
	c.do("POST", "/v1/chunks/have", io.MultiReader(bytes.NewReader(bigJSON)), "Content-Type", wire.ContentTypeJSON).wantErr(t, 413, wire.CodeTooLarge)
	c.raw("POST", "/v1/login", bigJSON, "Content-Type", wire.ContentTypeJSON).wantErr(t, 413, wire.CodeTooLarge)
	c.raw("PATCH", "/v1/inodes/"+rootID.String(), bigJSON, "Content-Type", wire.ContentTypeJSON).wantErr(t, 413, wire.CodeTooLarge)
	// A small upload over its limit.
	c.raw("POST", "/v1/small", make([]byte, 4+wire.MaxJSONBody+max+1), "Content-Type", wire.ContentTypeSmall).wantErr(t, 413, wire.CodeTooLarge)

	// Malformed JSON: a 400 with a message that says what is wrong.
	for body, hint := range map[string]string{
		`{"ids": [`:                             "",
		`{"ids": [], "extra": 1}`:               "extra",
		`{"ids": []} {"ids": []}`:               "trailing",
		`{"ids": ["not-hex"]}`:                  "",
		`{"ids": {}}`:                           "",
		`["ids"]`:                               "",
		``:                                      "",
		`{"ids": ["` + rootID.String() + `"]}x`: "",
	} {
		e := c.raw("POST", "/v1/chunks/have", []byte(body), "Content-Type", wire.ContentTypeJSON).wantErr(t, 400, wire.CodeBadRequest)
		if !strings.Contains(e.Message, hint) {
			t.Errorf("body %q: message %q does not mention %q", body, e.Message, hint)
		}
	}
	c.raw("POST", "/v1/chunks/have", []byte(`{"ids":[]}`), "Content-Type", "text/plain").wantErr(t, 400, wire.CodeBadRequest)
	c.raw("POST", "/v1/login", []byte(`{"user":"alice","auth_key":"AAAA","totp":1}`), "Content-Type", wire.ContentTypeJSON).wantErr(t, 400, wire.CodeBadRequest)
	// Too many IDs in one have.
	ids := make([]crypto.ID, wire.MaxHaveChunks+1)
	c.have(ids...).wantErr(t, 400, wire.CodeBadRequest)

	// Unknown endpoints answer in JSON too.
	c.do("GET", "/v1/nothing", nil).wantErr(t, 404, wire.CodeNotFound)
	c.do("DELETE", "/v1/account", nil).wantErr(t, 404, wire.CodeNotFound)
	c.do("GET", "/", nil).wantErr(t, 404, wire.CodeNotFound)
}

func TestQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	max := int64(testLayout.MaxSealedChunkSize())
	quota := 2*max + max/2
	c := e.registerWith("alice", quota, testLayout)
	var acct wire.Account
	c.do("GET", "/v1/account", nil).want(t, 200, &acct)
	if acct.QuotaBytes != quota || acct.UsedBytes != 0 {
		t.Fatalf("account %+v", acct)
	}
	f := crypto.NewID()
	chunks, commit := c.a.seal(t, f, 1, randomContent(3*testLayout.ChunkSize()))
	c.putChunk(chunks[0]).want(t, 201, nil)
	c.putChunk(chunks[1]).want(t, 201, nil)
	before := e.state("alice")
	if before.used != 2*max {
		t.Fatalf("used %d, want %d", before.used, 2*max)
	}
	c.putChunk(chunks[2]).wantErr(t, 413, wire.CodeQuotaExceeded)
	e.wantUnchanged(t, "alice", before, c, chunks[2].ref.ID)
	// The commit cannot go through without it.
	req := c.a.createReq(t, rootID, "f", f, wire.TypeFile, "")
	req.Commit = commit
	c.create(rootID, req).wantErr(t, 409, wire.CodeMissingChunks)

	// A small upload over the quota stores nothing and creates nothing.
	g := crypto.NewID()
	sc, scommit := c.a.seal(t, g, 1, randomContent(testLayout.ChunkSize()))
	x, sealed := c.a.name(t, rootID, g, "small")
	hdr := &wire.SmallHeader{Parent: wire.HexID(rootID), File: wire.HexID(g),
		Create: &wire.CreateRequest{Index: x, SealedName: sealed, Inode: wire.NewInode{ID: wire.HexID(g), Type: wire.TypeFile, Attr: scommit.Attr}},
		Chunk:  &wire.SmallChunk{ID: wire.HexID(sc[0].ref.ID), MAC: sc[0].mac}, Commit: *scommit}
	c.small(hdr, sc[0].body).wantErr(t, 413, wire.CodeQuotaExceeded)
	c.lookup(rootID, x).wantErr(t, 404, wire.CodeNotFound)
	e.wantUnchanged(t, "alice", before, c, sc[0].ref.ID)

	// Lowering the quota below the usage only stops further uploads;
	// raising it lets them through.
	must(t, e.meta.SetQuota(context.Background(), "alice", 3*max))
	c.putChunk(chunks[2]).want(t, 201, nil)
	c.create(rootID, req).want(t, 201, nil)
}

// TestTooManyUploads holds one upload open (its body not yet sent) and
// checks that a second one over the per-account limit is refused with 429
// and Retry-After, while another account is not affected.
func TestTooManyUploads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{UploadsPerAccount: 1})
	c := e.register("alice")
	bob := e.register("bob")
	chunks, _ := c.a.seal(t, crypto.NewID(), 1, randomContent(2*testLayout.ChunkSize()))

	// hold starts an upload of chunk 0 whose body stays incomplete.
	hold := func() (*io.PipeWriter, chan *resp) {
		pr, pw := io.Pipe()
		done := make(chan *resp, 1)
		go func() {
			done <- c.do("PUT", fmt.Sprintf("/v1/files/%s/chunks/0/%s", chunks[0].ref.File, chunks[0].ref.ID), pr,
				wire.HeaderMAC, hex.EncodeToString(chunks[0].mac))
		}()
		pw.Write(chunks[0].body[:100])
		return pw, done
	}
	pw, done := hold()
	var r *resp
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no upload was refused while another held the only slot")
		}
		chunks[1].ref.ID = crypto.NewID()
		chunks[1].mac = c.a.mac.Sum(chunks[1].ref, chunks[1].body)
		if r = c.putChunk(chunks[1]); r.status == 429 {
			break
		}
		// The probe got the slot: the held upload has not reached the
		// handler yet, or it came while the probe held the slot and was
		// refused itself; then hold again.
		r.want(t, 201, nil)
		select {
		case hr := <-done:
			hr.wantErr(t, 429, wire.CodeTooManyUploads)
			pw, done = hold()
		default:
		}
	}
	r.wantErr(t, 429, wire.CodeTooManyUploads)
	if ra, err := strconv.Atoi(r.header.Get(wire.HeaderRetryAfter)); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", r.header.Get(wire.HeaderRetryAfter))
	}
	// Another account uploads meanwhile.
	bc, _ := bob.a.seal(t, crypto.NewID(), 1, []byte("bob"))
	bob.putChunk(bc[0]).want(t, 201, nil)
	// Finish the held upload; the slot frees.
	pw.Write(chunks[0].body[100:])
	pw.Close()
	(<-done).want(t, 201, nil)
	chunks[1].ref.ID = crypto.NewID()
	chunks[1].mac = c.a.mac.Sum(chunks[1].ref, chunks[1].body)
	c.putChunk(chunks[1]).want(t, 201, nil)
}

func TestGarbageCollection(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	// Blobs even for small chunks, to watch their files go (inline_test.go
	// collects inline chunks).
	e := newEnv(t, server.Config{GCGrace: grace, NoInline: true})
	ctx := context.Background()
	c := e.register("alice")
	v1 := randomContent(2 * testLayout.ChunkSize())
	f := c.mustUpload(t, rootID, "f", v1)
	oldChunks := e.blobFiles()

	pending, _ := c.a.seal(t, crypto.NewID(), 1, []byte("never committed"))
	c.putChunk(pending[0]).want(t, 201, nil)
	pendingPath := e.blobPath("alice", pending[0].ref.ID)
	usedWithPending := e.acct("alice").UsedBytes

	// Young garbage is spared.
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 0 {
		t.Fatalf("collected %d (%v) inside the grace period", n, err)
	}
	time.Sleep(grace + 100*time.Millisecond)
	n, err := e.srv.CollectGarbage(ctx)
	must(t, err)
	if n != 1 {
		t.Fatalf("collected %d chunks, want the 1 pending one", n)
	}
	if _, err := os.Stat(pendingPath); !os.IsNotExist(err) {
		t.Fatalf("the collected chunk's blob is still there: %v", err)
	}
	if haveSet(t, c, pending[0].ref.ID)[pending[0].ref.ID] {
		t.Fatal("HaveChunks still lists a collected chunk")
	}
	if u := e.acct("alice").UsedBytes; u != usedWithPending-int64(len(pending[0].body)) {
		t.Fatalf("usage %d after GC, want %d", u, usedWithPending-int64(len(pending[0].body)))
	}
	c.mustRead(t, f, v1)

	// A new version makes the old chunks garbage; the new ones stay.
	v2 := randomContent(testLayout.ChunkSize() + 5)
	chunks, commit := c.a.seal(t, f, 2, v2)
	for _, ch := range chunks {
		c.putChunk(ch).want(t, 201, nil)
	}
	c.commit(f, commit).want(t, 200, nil)
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 2 {
		t.Fatalf("collected %d (%v), want the 2 chunks of the old version", n, err)
	}
	for p := range oldChunks {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("old version's blob %s survives GC", p)
		}
	}
	c.mustRead(t, f, v2)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 0 {
		t.Fatalf("a second GC collected %d (%v)", n, err)
	}
	c.mustRead(t, f, v2)

	// Unlinking the file makes everything garbage.
	c.unlink(rootID, c.a.index(rootID, "f"), "nondir").want(t, 204, nil)
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || n != 2 {
		t.Fatalf("collected %d (%v) after unlink, want 2", n, err)
	}
	if files := e.blobFiles(); len(files) != 0 {
		t.Fatalf("%d blob files left after everything was collected", len(files))
	}
	if u := e.acct("alice").UsedBytes; u != 0 {
		t.Fatalf("usage %d with nothing stored", u)
	}
}

func TestScrubDetectsDamage(t *testing.T) {
	t.Parallel()
	// Blobs even for small chunks, to damage their files (inline_test.go
	// damages inline values).
	e := newEnv(t, server.Config{NoInline: true})
	ctx := context.Background()
	c := e.register("alice")
	good := randomContent(testLayout.ChunkSize() + 1)
	g := c.mustUpload(t, rootID, "good", good)
	bad := c.mustUpload(t, rootID, "bad", randomContent(10))
	gone := c.mustUpload(t, rootID, "gone", randomContent(10))
	if d, err := server.Scrub(ctx, e.meta, e.store, nil); err != nil || len(d) != 0 {
		t.Fatalf("scrub of a healthy store: %v, %v", d, err)
	}

	badChunk := e.firstChunk(t, c, bad)
	goneChunk := e.firstChunk(t, c, gone)
	p := e.blobPath("alice", badChunk)
	b, err := os.ReadFile(p)
	must(t, err)
	b[len(b)/2] ^= 0x10
	must(t, os.WriteFile(p, b, 0o600))
	must(t, os.Remove(e.blobPath("alice", goneChunk)))

	var progress int64
	damage, err := server.Scrub(ctx, e.meta, e.store, func(n int64) { progress = n })
	must(t, err)
	want := map[string]string{badChunk.String(): "damaged", goneChunk.String(): "missing"}
	if len(damage) != 2 {
		t.Fatalf("scrub found %v, want 2 problems", damage)
	}
	for _, d := range damage {
		if d.Account != "alice" || d.What != "chunk" || want[d.ID] != d.Problem {
			t.Fatalf("scrub reports %v; want %v", d, want)
		}
	}
	// 4 chunks, 3 manifests, 1 transfer key.
	if progress != 8 {
		t.Fatalf("scrub progress ended at %d, want 8", progress)
	}
	// The server answers 500 damaged (not retried by clients) and never
	// sends the damaged bytes. A missing blob is a 500 too; it answers
	// internal today, which clients retry.
	c.do("GET", "/v1/chunks/"+badChunk.String(), nil).wantErr(t, 500, wire.CodeDamaged)
	if r := c.do("GET", "/v1/chunks/"+goneChunk.String(), nil); r.status != 500 {
		t.Fatalf("GET of a chunk whose blob is gone: %v", r)
	} else if e, _ := r.apiErr(); e.Code != wire.CodeDamaged && e.Code != wire.CodeInternal {
		t.Fatalf("GET of a chunk whose blob is gone: %v", r)
	}
	if _, _, err := c.read(bad); err == nil {
		t.Fatal("a damaged file reads")
	}
	c.mustRead(t, g, good)
}

// firstChunk is the ID of chunk 0 of file id, from its manifest.
func (e *testEnv) firstChunk(t *testing.T, c *client, id crypto.ID) crypto.ID {
	t.Helper()
	var in wire.Inode
	c.do("GET", "/v1/inodes/"+id.String()+"?manifest=1", nil).want(t, 200, &in)
	m, err := crypto.OpenManifest(c.a.keys.Manifest, id, in.Manifest)
	must(t, err)
	return m.Chunks[0].ID
}

// TestGCGraceAfterUnlink: docs/protocol.md says that when a file's last
// link goes its chunks "are collected after a grace period (an open file on
// a mount can still read them until then)". So an old file's chunks must
// survive a GC run right after the unlink, or after a commit replaced them,
// however old the chunks themselves are.
func TestGCGraceAfterUnlink(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	e := newEnv(t, server.Config{GCGrace: grace})
	ctx := context.Background()
	c := e.register("alice")
	content := randomContent(testLayout.ChunkSize() + 1)
	f := c.mustUpload(t, rootID, "f", content)
	g := c.mustUpload(t, rootID, "g", content)
	time.Sleep(grace + 100*time.Millisecond) // the chunks are now older than the grace period
	fChunk, gChunk := e.firstChunk(t, c, f), e.firstChunk(t, c, g)

	c.unlink(rootID, c.a.index(rootID, "f"), "nondir").want(t, 204, nil)
	_, commit := c.a.seal(t, g, 2, nil)
	c.commit(g, commit).want(t, 200, nil)
	n, err := e.srv.CollectGarbage(ctx)
	must(t, err)
	for _, id := range []crypto.ID{fChunk, gChunk} {
		if _, err := c.getChunk(crypto.ChunkRef{File: map[crypto.ID]crypto.ID{fChunk: f, gChunk: g}[id], ID: id}); err != nil {
			t.Errorf("chunk %s was collected at once when its file was unlinked or rewritten (GC collected %d): "+
				"the grace period runs from a chunk's creation, not from when it lost its last reference (server/meta GarbageChunks)", id, n)
		}
	}
	time.Sleep(grace + 100*time.Millisecond)
	if n, err := e.srv.CollectGarbage(ctx); err != nil || len(e.blobFiles()) != 0 {
		t.Fatalf("after the grace period: collected %d (%v), %d blobs left", n, err, len(e.blobFiles()))
	}
}
