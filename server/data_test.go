package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

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
