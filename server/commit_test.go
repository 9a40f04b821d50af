package server_test

import (
	"encoding/json"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/meta"
)

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
		t.Errorf("a small upload refused as a bad request stored its chunk (server/commit.go small: check the header before storeChunk)")
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

// TestManifestLimitFitsFormat checks that the server stores the manifest of
// the largest file the format describes, sealed by the client and again at
// rest: with 32 MiB it refused files of over 682 GiB that the mount had
// accepted, and the mount could only keep their data in memory.
func TestManifestLimitFitsFormat(t *testing.T) {
	if need := crypto.MaxSealedManifestSize + crypto.AtRestOverhead; meta.MaxManifestSize < need {
		t.Fatalf("meta.MaxManifestSize %d < %d, the manifest of a file of %d chunks sealed at rest",
			meta.MaxManifestSize, need, crypto.MaxManifestChunks)
	}
}
