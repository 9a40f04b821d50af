package metatest

import (
	"bytes"
	"cmp"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/meta"
)

func testGC(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	c1 := putChunk(t, s, acct, f.ID, 0, 10)
	c2 := putChunk(t, s, acct, f.ID, 1, 20)
	commit(t, s, acct, f.ID, manifest("kek1", "v1"), c1)

	g, err := s.GarbageChunks(ctx, time.Now().Add(time.Minute), 100)
	noErr(t, "GarbageChunks", err)
	if len(g) != 1 || g[0].ID != c2.ID || g[0].Account != acct || g[0].AccountName != "alice" ||
		g[0].BlobKey != c2.BlobKey || g[0].Size != 20 {
		t.Fatalf("GarbageChunks = %+v, want only %x", g, c2.ID)
	}
	g, err = s.GarbageChunks(ctx, time.Now().Add(-time.Hour), 100)
	noErr(t, "GarbageChunks", err)
	if len(g) != 0 {
		t.Fatalf("GarbageChunks before the chunks existed = %+v", g)
	}

	deleted, err := s.DeleteChunk(ctx, acct, c1.ID)
	noErr(t, "DeleteChunk referenced", err)
	wantEq(t, "deleted a referenced chunk", deleted, false)
	getChunk := func(id meta.ID) error { _, err := s.GetChunk(ctx, acct, id); return err }
	noErr(t, "referenced chunk", getChunk(c1.ID))
	deleted, err = s.DeleteChunk(ctx, acct, c2.ID)
	noErr(t, "DeleteChunk", err)
	wantEq(t, "deleted garbage", deleted, true)
	wantErr(t, "deleted chunk", getChunk(c2.ID), meta.ErrNotFound)
	wantEq(t, "used after GC", usedBytes(t, s, acct), int64(10))
	deleted, err = s.DeleteChunk(ctx, acct, c2.ID)
	noErr(t, "DeleteChunk again", err)
	wantEq(t, "deleted twice", deleted, false)

	// A chunk referenced again after GC listed it must survive.
	c3 := putChunk(t, s, acct, f.ID, 1, 30)
	if _, ok := garbage(t, s)[c3.ID]; !ok {
		t.Fatal("uncommitted chunk is not garbage")
	}
	commit(t, s, acct, f.ID, manifest("kek1", "v2"), c1, c3)
	deleted, err = s.DeleteChunk(ctx, acct, c3.ID)
	noErr(t, "DeleteChunk re-referenced", err)
	wantEq(t, "deleted a re-referenced chunk", deleted, false)
	noErr(t, "re-referenced chunk", getChunk(c3.ID))

	// A chunk shared by two files lives until both are gone.
	h := create(t, s, acct, root, "h", meta.TypeFile)
	commit(t, s, acct, h.ID, manifest("kek1", "h"), c3)
	noErr(t, "Unlink f", s.Unlink(ctx, acct, root, idx("f"), meta.UnlinkFile))
	g2 := garbage(t, s)
	if _, ok := g2[c1.ID]; !ok || len(g2) != 1 {
		t.Fatalf("garbage after unlinking f: %d chunks, c1 included: %v", len(g2), ok)
	}
	noErr(t, "Unlink h", s.Unlink(ctx, acct, root, idx("h"), meta.UnlinkFile))
	g2 = garbage(t, s)
	if len(g2) != 2 {
		t.Fatalf("garbage after unlinking both: %d chunks", len(g2))
	}
	for id := range g2 {
		deleted, err := s.DeleteChunk(ctx, acct, id)
		noErr(t, "DeleteChunk", err)
		wantEq(t, "deleted", deleted, true)
	}
	wantEq(t, "used after collecting everything", usedBytes(t, s, acct), int64(0))
}

// rotationFixture stores values under kek1 in two accounts.
type rotationFixture struct {
	accts  []int64
	files  []meta.ID // with a kek1 manifest
	chunks map[meta.ID]int64
	inline map[meta.ID][]byte // the chunks stored inline, with their values
}

func newRotationFixture(t *testing.T, s meta.Store) rotationFixture {
	var fx rotationFixture
	fx.chunks = map[meta.ID]int64{}
	fx.inline = map[meta.ID][]byte{}
	for _, name := range []string{"alice", "bob"} {
		acct := newAccount(t, s, name).ID
		fx.accts = append(fx.accts, acct)
		for i := range 3 {
			f := create(t, s, acct, root, "f"+string(rune('0'+i)), meta.TypeFile)
			var c meta.ChunkRecord
			if i == 2 {
				c = putInline(t, s, acct, f.ID, 0, 5)
				fx.inline[c.ID] = c.Inline
			} else {
				c = putChunk(t, s, acct, f.ID, 0, 5)
			}
			fx.chunks[c.ID] = acct
			commit(t, s, acct, f.ID, manifest("kek1", name), c)
			fx.files = append(fx.files, f.ID)
		}
		create(t, s, acct, root, "empty", meta.TypeFile) // no manifest: nothing to rotate
	}
	return fx
}

// listStale pages through StaleSealed two at a time, checking the order.
func listStale(t *testing.T, s meta.Store, kind meta.SealedKind, current string) []meta.SealedRef {
	t.Helper()
	var all []meta.SealedRef
	var after meta.RowKey
	for {
		page, err := s.StaleSealed(t.Context(), kind, current, after, 2)
		noErr(t, "StaleSealed", err)
		for _, ref := range page {
			if ref.Kind != kind || ref.Value.KEKID == current {
				t.Fatalf("StaleSealed(%s) returned %+v", kind, ref)
			}
			if len(all) > 0 && cmp.Or(cmp.Compare(ref.Key.Account, after.Account), bytes.Compare(ref.Key.ID[:], after.ID[:])) <= 0 {
				t.Fatalf("StaleSealed(%s): key %v not after %v", kind, ref.Key, after)
			}
			after = ref.Key
			all = append(all, ref)
		}
		if len(page) < 2 {
			return all
		}
	}
}

func rewrapped(ref meta.SealedRef) meta.Sealed {
	v := meta.Sealed{KEKID: "kek2", WrappedKey: append([]byte("re:"), ref.Value.WrappedKey...)}
	if ref.Kind != meta.SealedChunkKey {
		v.Data = append([]byte("re:"), ref.Value.Data...)
	}
	return v
}

func testRotation(t *testing.T, s meta.Store) {
	ctx := t.Context()
	fx := newRotationFixture(t, s)
	wantRefs := func(kek string, want int64) {
		t.Helper()
		n, err := s.KEKReferences(ctx, kek)
		noErr(t, "KEKReferences", err)
		wantEq(t, "references to "+kek, n, want)
	}
	total := int64(len(fx.accts) + len(fx.files) + len(fx.chunks))
	wantRefs("kek1", total)
	wantRefs("kek2", 0)

	counts := map[meta.SealedKind]int{
		meta.SealedTransferKey: len(fx.accts), meta.SealedManifest: len(fx.files), meta.SealedChunkKey: len(fx.chunks),
	}
	versions := map[meta.ID]int64{}
	for i, f := range fx.files {
		versions[f] = getInode(t, s, fx.accts[i/3], f).Version
	}
	for kind, want := range counts {
		refs := listStale(t, s, kind, "kek2")
		wantEq(t, "stale "+kind.String()+"s", len(refs), want)
		for _, ref := range refs {
			noErr(t, "Rewrap", s.Rewrap(ctx, ref, rewrapped(ref)))
		}
		wantEq(t, "stale "+kind.String()+"s after rewrap", len(listStale(t, s, kind, "kek2")), 0)
		// The old values are gone: a second rewrap of one lost the race.
		wantErr(t, "Rewrap of a replaced value", s.Rewrap(ctx, refs[0], rewrapped(refs[0])), meta.ErrVersionMismatch)
	}
	wantRefs("kek1", 0)
	wantRefs("kek2", total)

	a, err := s.GetAccount(ctx, "alice")
	noErr(t, "GetAccount", err)
	wantSealed(t, "rewrapped transfer key", &a.TransferKey, meta.Sealed{
		Data: []byte("re:transfer:alice"), KEKID: "kek2", WrappedKey: []byte("re:wrapped:alice")})
	for i, f := range fx.files {
		in := getInode(t, s, fx.accts[i/3], f)
		wantEq(t, "KEK of a rewrapped manifest", in.Manifest.KEKID, "kek2")
		wantEq(t, "version after rewrap", in.Version, versions[f])
	}
	for id, acct := range fx.chunks {
		c, err := s.GetChunk(ctx, acct, id)
		noErr(t, "GetChunk", err)
		wantEq(t, "KEK of a rewrapped chunk", c.KEKID, "kek2")
		wantBytes(t, "rewrapped data key", c.WrappedKey, []byte("re:dk"))
		// A rewrap keeps the data key, so an inline value stays as it is.
		wantBytes(t, "inline value after a rewrap", c.Inline, fx.inline[id])
	}

	chunkRef := meta.SealedRef{Kind: meta.SealedChunkKey, Key: meta.RowKey{Account: fx.accts[0], ID: newID()},
		Value: meta.Sealed{KEKID: "kek2", WrappedKey: []byte("x")}}
	wantErr(t, "Rewrap a missing chunk", s.Rewrap(ctx, chunkRef, meta.Sealed{KEKID: "kek3", WrappedKey: []byte("y")}), meta.ErrNotFound)
	wantErr(t, "chunk key with data", s.Rewrap(ctx, chunkRef, meta.Sealed{Data: []byte("d"), KEKID: "kek3", WrappedKey: []byte("y")}), meta.ErrInvalid)
	chunkRef.Kind = 0
	wantErr(t, "unknown kind", s.Rewrap(ctx, chunkRef, meta.Sealed{KEKID: "kek3", WrappedKey: []byte("y")}), meta.ErrInvalid)
	_, err = s.StaleSealed(ctx, 0, "kek2", meta.RowKey{}, 10)
	wantErr(t, "StaleSealed unknown kind", err, meta.ErrInvalid)
}

// testRewrapRaces checks that a rotation never overwrites a value that
// changed after it was listed, and notices a value that went away.
func testRewrapRaces(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	commit(t, s, acct, f.ID, manifest("kek1", "v1"))
	g := create(t, s, acct, root, "g", meta.TypeFile)
	commit(t, s, acct, g.ID, manifest("kek1", "g"))
	refs := listStale(t, s, meta.SealedManifest, "kek2")
	wantEq(t, "stale manifests", len(refs), 2)
	var fRef, gRef meta.SealedRef
	for _, ref := range refs {
		switch ref.Key.ID {
		case f.ID:
			fRef = ref
		case g.ID:
			gRef = ref
		}
	}
	wantEq(t, "account of a stale manifest", fRef.Key.Account, acct)
	wantBytes(t, "listed manifest", fRef.Value.Data, manifest("kek1", "v1").Data)

	// A commit between listing and rewrapping wins.
	v2 := manifest("kek1", "v2")
	commit(t, s, acct, f.ID, v2)
	wantErr(t, "Rewrap after a commit", s.Rewrap(ctx, fRef, rewrapped(fRef)), meta.ErrVersionMismatch)
	wantSealed(t, "manifest after a lost rewrap", getInode(t, s, acct, f.ID).Manifest, v2)

	noErr(t, "Unlink g", s.Unlink(ctx, acct, root, idx("g"), meta.UnlinkFile))
	wantErr(t, "Rewrap of a deleted file", s.Rewrap(ctx, gRef, rewrapped(gRef)), meta.ErrNotFound)
	wantErr(t, "manifest without data", s.Rewrap(ctx, fRef, meta.Sealed{KEKID: "kek2", WrappedKey: []byte("w")}), meta.ErrInvalid)
}

func testListChunks(t *testing.T, s meta.Store) {
	want := map[meta.ID]meta.StoredChunk{}
	for i, name := range []string{"alice", "bob"} {
		acct := newAccount(t, s, name).ID
		for j := range 3 + i {
			c := putChunk(t, s, acct, newID(), uint64(j), int64(j))
			want[c.ID] = meta.StoredChunk{Account: acct, AccountName: name, ChunkRecord: c}
		}
	}
	var after meta.RowKey
	seen := 0
	for {
		page, err := s.ListChunks(t.Context(), after, 2)
		noErr(t, "ListChunks", err)
		for _, c := range page {
			w, ok := want[c.ID]
			if !ok || c.Account != w.Account || c.AccountName != w.AccountName || c.BlobKey != w.BlobKey ||
				c.Size != w.Size || c.KEKID != w.KEKID || !bytes.Equal(c.WrappedKey, w.WrappedKey) || c.File != w.File {
				t.Fatalf("ListChunks returned %+v, want %+v", c, w)
			}
			if seen > 0 && cmp.Or(cmp.Compare(c.Account, after.Account), bytes.Compare(c.ID[:], after.ID[:])) <= 0 {
				t.Fatalf("ListChunks: key %v not after %v", c.Key(), after)
			}
			delete(want, c.ID)
			after = c.Key()
			seen++
		}
		if len(page) < 2 {
			break
		}
	}
	if len(want) != 0 || seen != 7 {
		t.Fatalf("ListChunks saw %d chunks, missed %d", seen, len(want))
	}
}

func testReplaceChunkBlob(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	c := putChunk(t, s, acct, newID(), 0, 10)
	old := meta.Sealed{KEKID: c.KEKID, WrappedKey: c.WrappedKey}
	next := meta.Sealed{KEKID: "k-new", WrappedKey: []byte("wrapped-new")}
	err := s.ReplaceChunkBlob(ctx, acct, c.ID, c.BlobKey, old, "feedfacefeedface", next)
	noErr(t, "ReplaceChunkBlob", err)
	got, err := s.GetChunk(ctx, acct, c.ID)
	noErr(t, "GetChunk", err)
	if got.BlobKey != "feedfacefeedface" || got.KEKID != "k-new" || string(got.WrappedKey) != "wrapped-new" {
		t.Fatalf("after ReplaceChunkBlob: %+v", got)
	}
	// A second replacement based on the stale values is refused.
	err = s.ReplaceChunkBlob(ctx, acct, c.ID, c.BlobKey, old, "0000000000000000", next)
	wantErr(t, "stale ReplaceChunkBlob", err, meta.ErrVersionMismatch)
	err = s.ReplaceChunkBlob(ctx, acct, newID(), c.BlobKey, old, "0000000000000000", next)
	wantErr(t, "ReplaceChunkBlob of an unknown chunk", err, meta.ErrNotFound)
	other := newAccount(t, s, "bob").ID
	err = s.ReplaceChunkBlob(ctx, other, c.ID, "feedfacefeedface", next, "0000000000000000", old)
	wantErr(t, "ReplaceChunkBlob from another account", err, meta.ErrNotFound)
}

// testGCGraceFromUnref checks that the grace period runs from when a chunk
// lost its last reference, not from when it was stored.
func testGCGraceFromUnref(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	file := newID()
	c := putChunk(t, s, acct, file, 0, 10)
	req := createReq(root, "f", meta.TypeFile)
	req.Inode.ID = file
	req.Content = &meta.FileContent{Manifest: manifest("kek1", "v1"), Chunks: positions(c)}
	_, err := s.Create(ctx, acct, req)
	noErr(t, "Create", err)
	time.Sleep(10 * time.Millisecond)
	beforeUnlink := time.Now()
	time.Sleep(10 * time.Millisecond)
	noErr(t, "Unlink", s.Unlink(ctx, acct, root, idx("f"), meta.UnlinkFile))
	if _, ok := garbage(t, s)[c.ID]; !ok {
		t.Fatal("chunk of an unlinked file is not garbage at all")
	}
	old, err := s.GarbageChunks(ctx, beforeUnlink, 100)
	noErr(t, "GarbageChunks", err)
	for _, g := range old {
		if g.ID == c.ID {
			t.Fatal("a chunk unreferenced after the cutoff is listed as garbage: its grace period started when it was stored")
		}
	}
}
