package server_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

// TestIsolation has account B try everything on account A's objects, whose
// IDs and name indexes it is assumed to know. Every attempt must look like
// the object does not exist (404, never 403) and change nothing of A's.
func TestIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	a := e.register("alice")
	b := e.register("bob")

	dir := a.mkdir(t, rootID, "private")
	content := randomContent(testLayout.ChunkSize() + 500)
	file := a.mustUpload(t, dir, "secret", content)
	sub := a.mkdir(t, dir, "sub")
	fileX := a.a.index(dir, "secret")
	dirX := a.a.index(rootID, "private")
	chunks := []crypto.ID{e.firstChunk(t, a, file)}
	var rd wire.ReadDirResponse
	a.readDir(dir, "", 0).want(t, 200, &rd)
	fileBefore, dirBefore, rootBefore := inodeOf(t, a, file), inodeOf(t, a, dir), inodeOf(t, a, rootID)
	usedBefore := e.acct("alice").UsedBytes
	seqBefore := a.changes("").wantChanges(t).Seq

	notFound := func(what string, r *resp) {
		t.Helper()
		if r.status == 403 {
			t.Fatalf("%s: 403 tells B that A's object exists", what)
		}
		r.wantErr(t, 404, wire.CodeNotFound)
	}

	notFound("GET inode", b.getInode(file))
	notFound("GET dir inode", b.getInode(dir))
	notFound("GET inode with manifest", b.do("GET", "/v1/inodes/"+file.String()+"?manifest=1", nil))
	notFound("lookup", b.lookup(dir, fileX))
	notFound("readdir", b.readDir(dir, "", 0))
	notFound("create in A's dir", b.create(dir, b.a.createReq(t, dir, "planted", crypto.NewID(), wire.TypeFile, "")))
	notFound("mkdir in A's dir", b.create(dir, b.a.createReq(t, dir, "planted-dir", crypto.NewID(), wire.TypeDir, "")))
	notFound("unlink A's file", b.unlink(dir, fileX, "nondir"))
	notFound("rmdir A's dir", b.unlink(dir, a.a.index(dir, "sub"), "dir"))
	notFound("unlink A's dir from B's root", b.unlink(rootID, dirX, "dir"))
	x, sealed := b.a.name(t, rootID, file, "stolen")
	notFound("link to A's file", b.json("POST", "/v1/dirs/"+rootID.String()+"/links", &wire.LinkRequest{Index: x, SealedName: sealed, Target: wire.HexID(file)}))
	notFound("link into A's dir", b.json("POST", "/v1/dirs/"+dir.String()+"/links", &wire.LinkRequest{Index: x, SealedName: sealed, Target: wire.HexID(file)}))
	notFound("rename A's entry out", rename(b, &wire.RenameRequest{SrcParent: wire.HexID(dir), SrcIndex: fileX,
		DstParent: wire.HexID(rootID), DstIndex: x, SrcSealedName: sealed, Mode: wire.RenameReplace}))
	mine := b.mustUpload(t, rootID, "mine", []byte("bob's"))
	notFound("rename into A's dir", rename(b, &wire.RenameRequest{SrcParent: wire.HexID(rootID), SrcIndex: b.a.index(rootID, "mine"),
		DstParent: wire.HexID(dir), DstIndex: fileX, SrcSealedName: sealed, Mode: wire.RenameReplace}))
	notFound("exchange with A's entry", rename(b, &wire.RenameRequest{SrcParent: wire.HexID(rootID), SrcIndex: b.a.index(rootID, "mine"),
		DstParent: wire.HexID(dir), DstIndex: fileX, SrcSealedName: sealed, DstSealedName: sealed, Mode: wire.RenameExchange}))
	attr, err := crypto.SealAttr(b.a.keys.Attr, file, &crypto.Attr{Mode: 0o100777})
	must(t, err)
	notFound("PATCH A's inode", b.json("PATCH", "/v1/inodes/"+file.String(), &wire.SetAttrRequest{Attr: attr}))
	notFound("PUT A's xattrs", b.json("PUT", "/v1/inodes/"+file.String()+"/xattrs", &wire.SetXattrsRequest{Xattrs: []byte("x")}))
	notFound("PATCH A's inode with If-Match", b.json("PATCH", "/v1/inodes/"+file.String(), &wire.SetAttrRequest{Attr: attr}, "If-Match", fmt.Sprint(fileBefore.Version)))
	notFound("GET A's chunk", b.do("GET", "/v1/chunks/"+chunks[0].String(), nil))

	// Commit to A's file, with chunks B really holds (uploaded for that
	// file ID, as B may) and with none.
	bc, commit := b.a.seal(t, file, 9, []byte("overwrite"))
	b.putChunk(bc[0]).want(t, 201, nil)
	notFound("commit to A's file", b.commit(file, commit))
	_, empty := b.a.seal(t, file, 9, nil)
	notFound("empty commit to A's file", b.commit(file, empty))
	notFound("small commit to A's file", b.small(&wire.SmallHeader{File: wire.HexID(file), Commit: *empty}, nil))
	planted := crypto.NewID()
	notFound("small create in A's dir", b.small(&wire.SmallHeader{Parent: wire.HexID(dir), File: wire.HexID(planted),
		Create: b.a.createReq(t, dir, "x", planted, wire.TypeFile, ""), Commit: *empty}, nil))

	// HaveChunks does not list A's chunks.
	if h := haveSet(t, b, chunks...); len(h) != 0 {
		t.Fatalf("B's HaveChunks lists A's chunks %v", h)
	}
	// A's chunk IDs and inode IDs are free in B's namespace: using them
	// creates B's own objects and touches nothing of A's.
	same := sealedChunk{ref: crypto.ChunkRef{File: mine, ID: chunks[0]}, body: []byte("bob's chunk")}
	same.mac = b.a.mac.Sum(same.ref, same.body)
	b.putChunk(same).want(t, 201, nil)
	body, err := b.getChunk(same.ref)
	if err != nil || !bytes.Equal(body, same.body) {
		t.Fatalf("B reads its chunk with A's chunk ID: %v", err)
	}
	b.create(rootID, b.a.createReq(t, rootID, "same-id", file, wire.TypeDir, "")).want(t, 201, nil)
	if in := inodeOf(t, b, file); in.Type != wire.TypeDir {
		t.Fatal("B's inode with A's ID is not B's")
	}
	// A's tokens are A's; a token with a guessed prefix is nothing.
	forged := *b
	forged.token = a.token[:len(a.token)-2] + "AA"
	forged.getInode(file).wantErr(t, 401, wire.CodeUnauthorized)

	// A's data is unchanged.
	if in := a.mustRead(t, file, content); in.Version != fileBefore.Version || !bytes.Equal(in.Attr, fileBefore.Attr) {
		t.Fatal("A's file changed")
	}
	if in := inodeOf(t, a, dir); in.Version != dirBefore.Version {
		t.Fatal("A's directory changed")
	}
	if in := inodeOf(t, a, rootID); in.Version != rootBefore.Version {
		t.Fatal("A's root changed")
	}
	var after wire.ReadDirResponse
	a.readDir(dir, "", 0).want(t, 200, &after)
	if len(after.Entries) != len(rd.Entries) || len(after.Entries) != 2 {
		t.Fatalf("A's directory lists %d entries, had %d", len(after.Entries), len(rd.Entries))
	}
	if crypto.ID(lookupOf(t, a, dir, "sub").Inode.ID) != sub {
		t.Fatal("A's subdirectory moved")
	}
	body, err = a.getChunk(crypto.ChunkRef{File: file, Index: 0, ID: chunks[0]})
	if err != nil || bytes.Equal(body, same.body) {
		t.Fatalf("A's chunk changed: %v", err)
	}
	if u := e.acct("alice").UsedBytes; u != usedBefore {
		t.Fatalf("A's usage changed from %d to %d", usedBefore, u)
	}
	// B's attempts recorded nothing in A's change feed, and B's feed holds
	// exactly B's own two creates, the second with the ID of A's file:
	// nothing of A's, whatever cursor B asks from.
	if seq := a.changes("").wantChanges(t).Seq; seq != seqBefore {
		t.Fatalf("A's change seq went from %d to %d", seqBefore, seq)
	}
	bf := b.changes("?since=0").wantChanges(t)
	if bf.Seq != 2 || len(bf.Changes) != 2 || bf.More || bf.Reset ||
		crypto.ID(bf.Changes[0].Inode) != mine || crypto.ID(bf.Changes[1].Inode) != file {
		t.Fatalf("B's change feed: %+v", bf)
	}
	for _, since := range []int64{1, seqBefore, seqBefore + 1} {
		bf := b.changes(fmt.Sprintf("?since=%d", since)).wantChanges(t)
		if bf.Seq != 2 || len(bf.Changes) != max(0, 2-int(since)) || bf.Reset != (since > 2) {
			t.Fatalf("B's change feed since %d: %+v", since, bf)
		}
	}
	af := a.changes("?since=0").wantChanges(t)
	for _, c := range af.Changes {
		if crypto.ID(c.Inode) == mine {
			t.Fatal("A's change feed shows B's file")
		}
	}
	// And A sees nothing of B's.
	a.getInode(mine).wantErr(t, 404, wire.CodeNotFound)
	if h := haveSet(t, a, bc[0].ref.ID); len(h) != 0 {
		t.Fatal("A's HaveChunks lists B's chunk")
	}
	a.do("GET", "/v1/chunks/"+bc[0].ref.ID.String(), nil).wantErr(t, 404, wire.CodeNotFound)
}
