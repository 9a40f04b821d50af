package server_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

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
