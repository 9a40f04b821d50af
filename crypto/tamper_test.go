package crypto

import (
	"bytes"
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// flipEveryBit flips each bit of sealed in turn and asserts that open fails
// with ErrUnsupportedVersion when the flipped byte is versionAt (use -1 for
// structures without a version byte) and with ErrAuthentication otherwise.
// It also checks that the untouched bytes still open, so a failure is not
// the setup's.
func flipEveryBit(t *testing.T, what string, sealed []byte, versionAt int, open func([]byte) error) {
	t.Helper()
	if err := open(slices.Clone(sealed)); err != nil {
		t.Fatalf("%s: untouched bytes do not open: %v", what, err)
	}
	buf := slices.Clone(sealed)
	for i := range buf {
		for bit := range 8 {
			buf[i] ^= 1 << bit
			err := open(buf)
			buf[i] ^= 1 << bit
			want := ErrAuthentication
			if i == versionAt {
				want = ErrUnsupportedVersion
			}
			if !errors.Is(err, want) {
				t.Fatalf("%s: bit %d of byte %d flipped: got %v, want %v", what, bit, i, err, want)
			}
			if want == ErrAuthentication && errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: bit %d of byte %d flipped: %v is also ErrCorrupt", what, bit, i, err)
			}
		}
	}
	if !bytes.Equal(buf, sealed) {
		t.Fatalf("%s: open modified its input", what)
	}
}

// ---------------------------------------------------------------------------
// Every bit of every sealed structure.

func TestTamperChunkEveryBit(t *testing.T) {
	// Two blocks per chunk keep the 2 * 66,000 openings fast; what is checked
	// per block does not depend on the chunk's length.
	l := Layout{BlockSize: 4096, ChunkBlocks: 2, PadUnit: 16}
	file := fixedID("file")
	c := mustFileCipher(t, fixedKey("content"), file, l)
	id := NewID()
	for _, tc := range []struct {
		n    int
		last bool
	}{
		{int(l.BlockSize) + 100, true}, // a full block and a padded one
		{l.ChunkSize(), false},         // a whole non-last chunk
	} {
		plain := filePattern(0, tc.n)
		sealed, tag := mustSealChunk(t, c, 2, id, plain, tc.last)
		flipEveryBit(t, fmt.Sprintf("OpenChunk(%d, last=%v)", tc.n, tc.last), sealed, -1, func(b []byte) error {
			got, err := c.OpenChunk(nil, 2, id, b, tc.n, tc.last, tag)
			if err == nil && !bytes.Equal(got, plain) {
				return errors.New("opened to other bytes")
			}
			return err
		})
	}
	// Block 1 of the padded chunk on its own: OpenBlock has no chunk tag to
	// lean on, the GCM tag and AD alone must catch every bit.
	plain := filePattern(0, int(l.BlockSize)+100)
	sealed, _ := mustSealChunk(t, c, 2, id, plain, true)
	off, n, _ := l.BlockSpan(len(plain), true, 1)
	flipEveryBit(t, "OpenBlock(1)", sealed[off:off+n], -1, func(b []byte) error {
		_, err := c.OpenBlock(nil, 2, id, b, 1, len(plain), true)
		return err
	})
}

func TestTamperBoxesEveryBit(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file, parent := fixedID("file"), fixedID("parent")

	m := manifestForTest(file, DefaultLayout, 3*uint64(DefaultLayout.ChunkSize())+1, 1)
	sm, err := SealManifest(k.Manifest, m)
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "manifest", sm, 0, func(b []byte) error { _, err := OpenManifest(k.Manifest, file, b); return err })

	sn, err := SealName(k.Names, parent, file, "holiday photos")
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "name", sn, 0, func(b []byte) error { _, err := OpenName(k.Names, parent, file, b); return err })

	ss, err := SealSymlink(k.Names, file, "../target")
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "symlink", ss, 0, func(b []byte) error { _, err := OpenSymlink(k.Names, file, b); return err })

	wrapKey := fixedKey("wrap")
	wm, err := WrapMasterKey(wrapKey, fixedKey("master"))
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "wrapped master key", wm, 0, func(b []byte) error { _, err := UnwrapMasterKey(wrapKey, b); return err })

	sa, err := SealAttr(k.Attr, file, &Attr{Mode: 0o644, Size: 9, Mtime: 5})
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "attr", sa, 0, func(b []byte) error { _, err := OpenAttr(k.Attr, file, b); return err })

	sx, err := SealXattrs(k.Attr, file, map[string][]byte{"user.a": []byte("1"), "user.b": nil})
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "xattrs", sx, 0, func(b []byte) error { _, err := OpenXattrs(k.Attr, file, b); return err })

	p, err := NewAccountKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "sealed account private key", p.SealedPrivate, 0, func(b []byte) error {
		_, err := OpenAccountKeyPair(k, AccountKeyPair{Public: p.Public, SealedPrivate: b})
		return err
	})
	flipEveryBit(t, "account public key", p.Public, -1, func(b []byte) error {
		_, err := OpenAccountKeyPair(k, AccountKeyPair{Public: b, SealedPrivate: p.SealedPrivate})
		return err
	})

	dk := fixedKey("data key")
	owner, blob := []byte("alice"), []byte("blob-1")
	sr, err := SealAtRest(nil, dk, owner, blob, []byte("a chunk at rest"))
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "at-rest blob", sr, 0, func(b []byte) error { _, err := OpenAtRest(nil, dk, owner, blob, b); return err })

	kek := fixedKey("kek")
	wd, err := WrapDataKey(kek, "k1", owner, blob, dk)
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "wrapped data key", wd, 0, func(b []byte) error { _, err := UnwrapDataKey(kek, "k1", owner, blob, b); return err })
}

// ---------------------------------------------------------------------------
// Chunks moved, swapped, reordered, cut, replayed.

type chunkFixture struct {
	l      Layout
	file   ID
	c      *FileCipher
	plains [][]byte
	sealed [][]byte
	m      *Manifest
}

// newChunkFixture seals a file of three chunks, the last one short.
func newChunkFixture(t *testing.T, file ID) *chunkFixture {
	t.Helper()
	l := smallLayout
	f := &chunkFixture{l: l, file: file, c: mustFileCipher(t, fixedKey("content"), file, l)}
	size := uint64(2*l.ChunkSize() + int(l.BlockSize) + 300)
	f.m = &Manifest{File: file, Generation: 1, Size: size, Layout: l}
	for i := range l.ChunkCount(size) {
		n := l.ChunkPlainLen(size, i)
		plain := filePattern(i*uint64(l.ChunkSize()), n)
		id := NewID()
		sealed, tag := mustSealChunk(t, f.c, i, id, plain, i == 2)
		f.plains = append(f.plains, plain)
		f.sealed = append(f.sealed, sealed)
		f.m.Chunks = append(f.m.Chunks, ChunkEntry{ID: id, Tag: tag})
	}
	return f
}

// open opens sealed as chunk i of the manifest.
func (f *chunkFixture) open(i int, sealed []byte) ([]byte, error) {
	e := f.m.Chunks[i]
	return f.c.OpenChunk(nil, uint64(i), e.ID, sealed, f.m.ChunkPlainLen(i), f.m.IsLast(i), e.Tag)
}

// openForged opens sealed as chunk i but with the tag recomputed from sealed
// itself, so only the per-block AD and GCM tags stand in the way.
func (f *chunkFixture) openForged(i int, id ID, sealed []byte) ([]byte, error) {
	return f.c.OpenChunk(nil, uint64(i), id, sealed, f.m.ChunkPlainLen(i), f.m.IsLast(i), sealedBlockTags(f.l, sealed))
}

func TestTamperChunkSwapWithinFile(t *testing.T) {
	f := newChunkFixture(t, fixedID("file"))
	for i := range f.sealed {
		if got, err := f.open(i, f.sealed[i]); err != nil || !bytes.Equal(got, f.plains[i]) {
			t.Fatalf("chunk %d does not open: %v", i, err)
		}
	}
	// 0 <-> 1 under the manifest: the chunk tags differ.
	_, err := f.open(0, f.sealed[1])
	wantErr(t, "chunk 1 at position 0", err, ErrAuthentication)
	_, err = f.open(1, f.sealed[0])
	wantErr(t, "chunk 0 at position 1", err, ErrAuthentication)
	// Even with its own ID and a matching tag, the index in the AD catches it.
	_, err = f.openForged(0, f.m.Chunks[1].ID, f.sealed[1])
	wantErr(t, "chunk 1 at position 0 (forged tag)", err, ErrAuthentication)
	_, err = f.openForged(1, f.m.Chunks[0].ID, f.sealed[0])
	wantErr(t, "chunk 0 at position 1 (forged tag)", err, ErrAuthentication)
	// Sanity: the forged path opens an untouched chunk, so the failures above
	// come from the AD.
	if got, err := f.openForged(1, f.m.Chunks[1].ID, f.sealed[1]); err != nil || !bytes.Equal(got, f.plains[1]) {
		t.Fatalf("forged-tag path does not open an untouched chunk: %v", err)
	}
	// A whole sealed chunk presented with its own entry at the wrong index.
	e := f.m.Chunks[1]
	_, err = f.c.OpenChunk(nil, 0, e.ID, f.sealed[1], f.l.ChunkSize(), false, e.Tag)
	wantErr(t, "chunk 1 with its own entry at index 0", err, ErrAuthentication)
}

func TestTamperChunkOtherFile(t *testing.T) {
	a := newChunkFixture(t, fixedID("file a"))
	b := newChunkFixture(t, fixedID("file b"))
	for i := range a.sealed {
		_, err := b.open(i, a.sealed[i])
		wantErr(t, fmt.Sprintf("chunk %d of A in B", i), err, ErrAuthentication)
		// With A's own entry (ID and tag), B's file key and file ID refuse it.
		e := a.m.Chunks[i]
		_, err = b.c.OpenChunk(nil, uint64(i), e.ID, a.sealed[i], a.m.ChunkPlainLen(i), a.m.IsLast(i), e.Tag)
		wantErr(t, fmt.Sprintf("chunk %d of A with its entry in B", i), err, ErrAuthentication)
		off, n, _ := a.l.BlockSpan(a.m.ChunkPlainLen(i), a.m.IsLast(i), 0)
		_, err = b.c.OpenBlock(nil, uint64(i), e.ID, a.sealed[i][off:off+n], 0, a.m.ChunkPlainLen(i), a.m.IsLast(i))
		wantErr(t, fmt.Sprintf("block 0 of chunk %d of A in B", i), err, ErrAuthentication)
	}
}

func TestTamperChunkOtherID(t *testing.T) {
	f := newChunkFixture(t, fixedID("file"))
	other := NewID()
	for i := range f.sealed {
		_, err := f.openForged(i, other, f.sealed[i])
		wantErr(t, fmt.Sprintf("chunk %d under another ID", i), err, ErrAuthentication)
		e := f.m.Chunks[i]
		_, err = f.c.OpenChunk(nil, uint64(i), other, f.sealed[i], f.m.ChunkPlainLen(i), f.m.IsLast(i), e.Tag)
		wantErr(t, fmt.Sprintf("chunk %d under another ID with its tag", i), err, ErrAuthentication)
		off, n, _ := f.l.BlockSpan(f.m.ChunkPlainLen(i), f.m.IsLast(i), 0)
		_, err = f.c.OpenBlock(nil, uint64(i), other, f.sealed[i][off:off+n], 0, f.m.ChunkPlainLen(i), f.m.IsLast(i))
		wantErr(t, fmt.Sprintf("block 0 of chunk %d under another ID", i), err, ErrAuthentication)
		_, err = f.c.OpenBlock(nil, uint64(i)+1, e.ID, f.sealed[i][off:off+n], 0, f.m.ChunkPlainLen(i), f.m.IsLast(i))
		wantErr(t, fmt.Sprintf("block 0 of chunk %d at another index", i), err, ErrAuthentication)
	}
}

func TestTamperBlockReorder(t *testing.T) {
	f := newChunkFixture(t, fixedID("file"))
	sbs := int(f.l.BlockSize) + BlockOverhead
	s := f.sealed[0] // four full blocks
	swapped := slices.Concat(s[sbs:2*sbs], s[:sbs], s[2*sbs:])
	_, err := f.open(0, swapped)
	wantErr(t, "blocks 0 and 1 swapped", err, ErrAuthentication)
	_, err = f.openForged(0, f.m.Chunks[0].ID, swapped)
	wantErr(t, "blocks 0 and 1 swapped (forged tag)", err, ErrAuthentication)
	dup := slices.Concat(s[:sbs], s[:sbs], s[2*sbs:])
	_, err = f.openForged(0, f.m.Chunks[0].ID, dup)
	wantErr(t, "block 0 twice (forged tag)", err, ErrAuthentication)
	// OpenBlock: block 0 presented as block 1.
	_, err = f.c.OpenBlock(nil, 0, f.m.Chunks[0].ID, s[:sbs], 1, f.l.ChunkSize(), false)
	wantErr(t, "block 0 as block 1", err, ErrAuthentication)
	// Block 0 of chunk 0 presented as block 0 of chunk 1.
	_, err = f.c.OpenBlock(nil, 1, f.m.Chunks[1].ID, s[:sbs], 0, f.l.ChunkSize(), false)
	wantErr(t, "block 0 of chunk 0 in chunk 1", err, ErrAuthentication)
}

func TestTamperLastFlag(t *testing.T) {
	// The final-block flag in the AD stops cutting a file at a block or chunk
	// boundary even past the chunk tag.
	l := smallLayout
	c := mustFileCipher(t, fixedKey("content"), fixedID("file"), l)
	id := NewID()
	bs := int(l.BlockSize)
	sbs := bs + BlockOverhead
	plain := filePattern(0, 3*bs)
	last, _ := mustSealChunk(t, c, 0, id, plain, true) // final block is full
	// Drop the final block, claim the chunk ends after two blocks.
	cut := last[:2*sbs]
	_, err := c.OpenChunk(nil, 0, id, cut, 2*bs, true, sealedBlockTags(l, cut))
	wantErr(t, "last chunk cut at a block boundary", err, ErrAuthentication)
	// A full non-last chunk claimed to be the file's last.
	full := filePattern(0, l.ChunkSize())
	nonLast, tag := mustSealChunk(t, c, 0, id, full, false)
	_, err = c.OpenChunk(nil, 0, id, nonLast, l.ChunkSize(), true, tag)
	wantErr(t, "non-last chunk as last", err, ErrAuthentication)
	// A full last chunk claimed not to be last (the file extended after it).
	fullLast, tag := mustSealChunk(t, c, 0, id, full, true)
	_, err = c.OpenChunk(nil, 0, id, fullLast, l.ChunkSize(), false, tag)
	wantErr(t, "last chunk as non-last", err, ErrAuthentication)
	// And single final blocks.
	off, n, _ := l.BlockSpan(l.ChunkSize(), true, 3)
	_, err = c.OpenBlock(nil, 0, id, fullLast[off:off+n], 3, l.ChunkSize(), false)
	wantErr(t, "final block as non-final", err, ErrAuthentication)
	_, err = c.OpenBlock(nil, 0, id, nonLast[off:off+n], 3, l.ChunkSize(), true)
	wantErr(t, "non-final block as final", err, ErrAuthentication)
}

func TestTamperChunkLength(t *testing.T) {
	f := newChunkFixture(t, fixedID("file"))
	sbs := int(f.l.BlockSize) + BlockOverhead
	for i, s := range f.sealed {
		cases := []struct {
			name   string
			sealed []byte
			want   error
		}{
			{"empty", nil, ErrTruncated},
			{"one byte short", s[:len(s)-1], ErrTruncated},
			{"one block short", s[:len(s)-sbs], ErrTruncated},
			{"first block only", s[:min(sbs, len(s)-1)], ErrTruncated},
			{"one byte more", append(slices.Clone(s), 0), ErrExtended},
			{"one block more", append(slices.Clone(s), s[:sbs]...), ErrExtended},
			{"doubled", slices.Concat(s, s), ErrExtended},
		}
		for _, tc := range cases {
			_, err := f.open(i, tc.sealed)
			wantErr(t, fmt.Sprintf("chunk %d %s", i, tc.name), err, tc.want)
			wantErr(t, fmt.Sprintf("chunk %d %s", i, tc.name), err, ErrCorrupt)
		}
		// A block alone, cut or extended.
		pl, last := f.m.ChunkPlainLen(i), f.m.IsLast(i)
		off, n, _ := f.l.BlockSpan(pl, last, 0)
		blk := s[off : off+n]
		e := f.m.Chunks[i]
		_, err := f.c.OpenBlock(nil, uint64(i), e.ID, blk[:n-1], 0, pl, last)
		wantErr(t, "block one byte short", err, ErrTruncated)
		_, err = f.c.OpenBlock(nil, uint64(i), e.ID, append(slices.Clone(blk), 1), 0, pl, last)
		wantErr(t, "block one byte long", err, ErrExtended)
		_, err = f.c.OpenBlock(nil, uint64(i), e.ID, nil, 0, pl, last)
		wantErr(t, "empty block", err, ErrTruncated)
	}
	// The manifest's size decides the length: a short last chunk opened as a
	// longer one is truncated, and a longer one as a shorter one extended.
	_, err := f.c.OpenChunk(nil, 2, f.m.Chunks[2].ID, f.sealed[2], f.l.ChunkSize(), true, f.m.Chunks[2].Tag)
	wantErr(t, "last chunk opened with a larger size", err, ErrTruncated)
	_, err = f.c.OpenChunk(nil, 1, f.m.Chunks[1].ID, f.sealed[1], int(f.l.BlockSize), true, f.m.Chunks[1].Tag)
	wantErr(t, "full chunk opened with a smaller size", err, ErrExtended)
}

func TestTamperChunkReplay(t *testing.T) {
	// Version 1 of chunk 0 is sealed, then overwritten by version 2. The
	// server replays version 1 where the manifest names version 2.
	l := smallLayout
	file := fixedID("file")
	c := mustFileCipher(t, fixedKey("content"), file, l)
	oldPlain := filePattern(0, 1000)
	newPlain := bytes.Repeat([]byte{'n'}, 1000)
	oldID, newID := NewID(), NewID()
	oldSealed, oldTag := mustSealChunk(t, c, 0, oldID, oldPlain, true)
	newSealed, newTag := mustSealChunk(t, c, 0, newID, newPlain, true)
	if len(oldSealed) != len(newSealed) {
		t.Fatal("setup: sealings differ in length")
	}
	if got, err := c.OpenChunk(nil, 0, newID, newSealed, 1000, true, newTag); err != nil || !bytes.Equal(got, newPlain) {
		t.Fatalf("current sealing does not open: %v", err)
	}
	// The honest path: old bytes, the manifest's (new) ID and tag.
	_, err := c.OpenChunk(nil, 0, newID, oldSealed, 1000, true, newTag)
	wantErr(t, "old sealing under the current manifest", err, ErrAuthentication)
	// The old chunk ID still in the AD: even with a tag that matches the old
	// bytes, the current ID does not verify.
	_, err = c.OpenChunk(nil, 0, newID, oldSealed, 1000, true, oldTag)
	wantErr(t, "old sealing, old tag, current ID", err, ErrAuthentication)
	_, err = c.OpenBlock(nil, 0, newID, oldSealed, 0, 1000, true)
	wantErr(t, "old block under the current ID", err, ErrAuthentication)

	// A client bug reuses the chunk ID for both sealings. Then the AD cannot
	// tell them apart, and only the manifest's chunk tag does.
	reusedOld, reusedOldTag := mustSealChunk(t, c, 0, newID, oldPlain, true)
	if got, err := c.OpenChunk(nil, 0, newID, reusedOld, 1000, true, reusedOldTag); err != nil || !bytes.Equal(got, oldPlain) {
		t.Fatalf("setup: same-ID old sealing with its own tag: %v", err)
	}
	_, err = c.OpenChunk(nil, 0, newID, reusedOld, 1000, true, newTag)
	wantErr(t, "same-ID old sealing under the current tag", err, ErrAuthentication)
	if reusedOldTag == newTag {
		t.Fatal("two sealings with the same ID have the same tag")
	}
}

// ---------------------------------------------------------------------------
// Manifests.

// sealManifestPlain seals raw manifest bytes as SealManifest would, so tests
// can present the opener with plaintexts SealManifest refuses to make.
func sealManifestPlain(key []byte, file ID, plain []byte) []byte {
	return sealBox(nil, mustGCM(key), plain, manifestAD(file))
}

func TestTamperManifest(t *testing.T) {
	key := fixedKey("manifest")
	a, b := fixedID("file a"), fixedID("file b")
	cs := uint64(DefaultLayout.ChunkSize())
	m := manifestForTest(a, DefaultLayout, 3*cs+10)
	sealed, err := SealManifest(key, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenManifest(key, b, sealed)
	wantErr(t, "manifest of A opened as B", err, ErrAuthentication)
	_, err = OpenManifest(fixedKey("other"), a, sealed)
	wantErr(t, "manifest under another key", err, ErrAuthentication)
	// A plaintext naming B sealed with A's AD (a buggy or malicious writer
	// with the key) is still refused when opened as A.
	mb := manifestForTest(b, DefaultLayout, 10)
	pb, _ := mb.MarshalBinary()
	_, err = OpenManifest(key, a, sealManifestPlain(key, a, pb))
	wantErr(t, "manifest naming B sealed for A", err, ErrAuthentication)

	// Sealed bytes cut or extended by an entry.
	for _, s := range [][]byte{sealed[:len(sealed)-48], sealed[:len(sealed)-1], append(slices.Clone(sealed), make([]byte, 48)...), sealed[:BoxOverhead]} {
		_, err := OpenManifest(key, a, s)
		wantErr(t, fmt.Sprintf("sealed manifest of %d bytes", len(s)), err, ErrAuthentication)
	}
	for _, n := range []int{0, 1, BoxOverhead - 1} {
		_, err := OpenManifest(key, a, sealed[:n])
		wantErr(t, fmt.Sprintf("sealed manifest of %d bytes", n), err, ErrCorrupt)
	}

	// Inconsistent plaintexts, authentic under the key: refused as corrupt.
	good, _ := m.MarshalBinary()
	setCount := func(p []byte, n uint32) []byte { binary.BigEndian.PutUint32(p[44:], n); return p }
	setSize := func(p []byte, n uint64) []byte { binary.BigEndian.PutUint64(p[24:], n); return p }
	holeWithTag := slices.Clone(good)
	clear(holeWithTag[48 : 48+16]) // chunk 0: zero ID, tag left
	cases := map[string][]byte{
		"chunk list truncated":           setCount(slices.Clone(good[:len(good)-48]), 3),
		"chunk list extended":            setCount(append(slices.Clone(good), good[48:96]...), 5),
		"size needs fewer chunks":        setSize(slices.Clone(good), 3*cs),
		"size needs more chunks":         setSize(slices.Clone(good), 4*cs+1),
		"size zero with chunks":          setSize(slices.Clone(good), 0),
		"count disagrees with body":      setCount(slices.Clone(good), 3),
		"count disagrees with body (+1)": setCount(slices.Clone(good), 5),
		"count above the limit":          setCount(slices.Clone(good), MaxManifestChunks+1),
		"count max":                      setCount(slices.Clone(good), 0xffffffff),
		"trailing byte":                  append(slices.Clone(good), 0),
		"missing byte":                   good[:len(good)-1],
		"header only, size nonzero":      good[:48],
		"short header":                   good[:47],
		"empty":                          {},
		"hole with a tag":                holeWithTag,
		"block size 0":                   func() []byte { p := slices.Clone(good); binary.BigEndian.PutUint32(p[32:], 0); return p }(),
		"chunk blocks 0":                 func() []byte { p := slices.Clone(good); binary.BigEndian.PutUint32(p[36:], 0); return p }(),
		"pad unit 3":                     func() []byte { p := slices.Clone(good); binary.BigEndian.PutUint32(p[40:], 3); return p }(),
	}
	for name, p := range cases {
		var u Manifest
		wantErr(t, name+" (UnmarshalBinary)", u.UnmarshalBinary(p), ErrCorrupt)
		if !manifestsEqual(&u, &Manifest{}) {
			t.Fatalf("%s: failed UnmarshalBinary changed its receiver", name)
		}
		_, err := OpenManifest(key, a, sealManifestPlain(key, a, p))
		wantErr(t, name+" (OpenManifest)", err, ErrCorrupt)
		if errors.Is(err, ErrAuthentication) {
			t.Fatalf("%s: %v is also ErrAuthentication", name, err)
		}
	}

	// MarshalBinary and SealManifest refuse inconsistent manifests.
	bad := []*Manifest{
		{File: a, Size: 1, Layout: DefaultLayout},
		{File: a, Size: 0, Layout: DefaultLayout, Chunks: []ChunkEntry{{ID: fixedID("c")}}},
		{File: a, Size: 10, Layout: Layout{}, Chunks: []ChunkEntry{{ID: fixedID("c")}}},
		{File: a, Size: 10, Layout: DefaultLayout, Chunks: []ChunkEntry{{Tag: ChunkTag{1}}}},
		func() *Manifest { m := manifestForTest(a, DefaultLayout, 2*cs); m.Chunks = m.Chunks[:1]; return m }(),
		func() *Manifest {
			m := manifestForTest(a, DefaultLayout, 2*cs)
			m.Chunks = append(m.Chunks, m.Chunks[0])
			return m
		}(),
	}
	for i, m := range bad {
		_, err := m.MarshalBinary()
		wantErr(t, fmt.Sprintf("MarshalBinary of bad manifest %d", i), err, ErrCorrupt)
		_, err = SealManifest(key, m)
		wantErr(t, fmt.Sprintf("SealManifest of bad manifest %d", i), err, ErrCorrupt)
	}
}

func TestTamperManifestLimit(t *testing.T) {
	// The largest file is MaxManifestChunks chunks; one byte more is refused
	// without allocating its entries.
	l := DefaultLayout
	m := &Manifest{Layout: l, Size: uint64(MaxManifestChunks)*uint64(l.ChunkSize()) + 1}
	m.Chunks = make([]ChunkEntry, MaxManifestChunks+1)
	wantErr(t, "manifest over the chunk limit", m.Check(), ErrCorrupt)
	hdr := make([]byte, 48)
	binary.BigEndian.PutUint64(hdr[24:], m.Size)
	binary.BigEndian.PutUint32(hdr[32:], l.BlockSize)
	binary.BigEndian.PutUint32(hdr[36:], l.ChunkBlocks)
	binary.BigEndian.PutUint32(hdr[40:], l.PadUnit)
	binary.BigEndian.PutUint32(hdr[44:], MaxManifestChunks+1)
	var u Manifest
	wantErr(t, "header over the chunk limit", u.UnmarshalBinary(hdr), ErrCorrupt)
}

// ---------------------------------------------------------------------------
// Names, symlinks, attributes: bound to where they belong.

func TestTamperNames(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	p1, p2, f1, f2 := fixedID("p1"), fixedID("p2"), fixedID("f1"), fixedID("f2")
	sealed, err := SealName(k.Names, p1, f1, "secret.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenName(k.Names, p2, f1, sealed)
	wantErr(t, "name moved to another directory", err, ErrAuthentication)
	_, err = OpenName(k.Names, p1, f2, sealed)
	wantErr(t, "name pointed at another file", err, ErrAuthentication)
	_, err = OpenName(k.Names, f1, p1, sealed)
	wantErr(t, "parent and file swapped", err, ErrAuthentication)
	_, err = OpenName(k.Manifest, p1, f1, sealed)
	wantErr(t, "name under another key", err, ErrAuthentication)
	// Names and symlink targets share the names key: the domain separates them.
	sl, err := SealSymlink(k.Names, f1, "secret.txt")
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenSymlink(k.Names, f2, sl)
	wantErr(t, "symlink target of A opened for B", err, ErrAuthentication)
	_, err = OpenName(k.Names, ID{}, f1, sl)
	wantErr(t, "symlink target opened as a name", err, ErrAuthentication)
	_, err = OpenSymlink(k.Names, f1, sealed)
	wantErr(t, "name opened as a symlink target", err, ErrAuthentication)
	_, err = OpenSymlink(k.Attr, f1, sl)
	wantErr(t, "symlink under another key", err, ErrAuthentication)

	// Authentic plaintexts that are not a padded name.
	box := func(p []byte) []byte { return sealBox(nil, mustGCM(k.Names), p, nameAD(p1, f1)) }
	for name, p := range map[string][]byte{
		"empty":            {},
		"not padded":       []byte("abc"),
		"all padding":      make([]byte, 16),
		"too much padding": append([]byte("abc"), make([]byte, 29)...),
		"NUL inside":       append([]byte("ab\x00c"), make([]byte, 12)...),
		"too long":         bytes.Repeat([]byte("a"), MaxNameLen+16),
	} {
		_, err := OpenName(k.Names, p1, f1, box(p))
		wantErr(t, "name plaintext "+name, err, ErrCorrupt)
	}
	lbox := sealBox(nil, mustGCM(k.Names), bytes.Repeat([]byte("a"), MaxSymlinkLen+16), symlinkAD(f1))
	_, err = OpenSymlink(k.Names, f1, lbox)
	wantErr(t, "symlink plaintext too long", err, ErrCorrupt)
}

func TestTamperAttrs(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	a, b := fixedID("a"), fixedID("b")
	sa, err := SealAttr(k.Attr, a, &Attr{Mode: 0o600, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenAttr(k.Attr, b, sa)
	wantErr(t, "attr of A opened for B", err, ErrAuthentication)
	_, err = OpenXattrs(k.Attr, a, sa)
	wantErr(t, "attr opened as xattrs", err, ErrAuthentication)
	sx, err := SealXattrs(k.Attr, a, map[string][]byte{"user.x": []byte("1")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenXattrs(k.Attr, b, sx)
	wantErr(t, "xattrs of A opened for B", err, ErrAuthentication)
	_, err = OpenAttr(k.Attr, a, sx)
	wantErr(t, "xattrs opened as attr", err, ErrAuthentication)
	// Authentic attr plaintext of the wrong size.
	_, err = OpenAttr(k.Attr, a, sealBox(nil, mustGCM(k.Attr), make([]byte, 55), attrAD(a)))
	wantErr(t, "attr plaintext of 55 bytes", err, ErrCorrupt)
	_, err = OpenXattrs(k.Attr, a, sealBox(nil, mustGCM(k.Attr), []byte{0, 1}, xattrAD(a)))
	wantErr(t, "xattr plaintext that does not decode", err, ErrCorrupt)
}

func TestTamperXattrEncoding(t *testing.T) {
	enc := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	entry := func(name string, value []byte) []byte {
		return enc([]byte{byte(len(name))}, []byte(name), u32(uint32(len(value))), value)
	}
	ok := enc(u16(2), entry("a", []byte("1")), entry("b", nil))
	if _, err := DecodeXattrs(ok); err != nil {
		t.Fatalf("setup: %v", err)
	}
	cases := map[string][]byte{
		"nil":               nil,
		"one byte":          {0},
		"count too high":    enc(u16(3), entry("a", []byte("1")), entry("b", nil)),
		"count too low":     enc(u16(1), entry("a", []byte("1")), entry("b", nil)),
		"over max count":    enc(u16(MaxXattrCount+1), entry("a", nil)),
		"descending":        enc(u16(2), entry("b", nil), entry("a", nil)),
		"duplicate":         enc(u16(2), entry("a", nil), entry("a", nil)),
		"empty name":        enc(u16(1), entry("", nil)),
		"value too long":    enc(u16(1), []byte{1, 'a'}, u32(MaxXattrValueLen+1), make([]byte, MaxXattrValueLen+1)),
		"value cut":         enc(u16(1), []byte{1, 'a'}, u32(5), []byte("abcd")),
		"value len huge":    enc(u16(1), []byte{1, 'a'}, u32(0xffffffff)),
		"name cut":          enc(u16(1), []byte{5, 'a', 'b'}),
		"value length cut":  enc(u16(1), []byte{1, 'a', 0, 0}),
		"trailing byte":     append(slices.Clone(ok), 0),
		"trailing on empty": enc(u16(0), []byte{0}),
	}
	for name, b := range cases {
		_, err := DecodeXattrs(b)
		wantErr(t, "DecodeXattrs "+name, err, ErrCorrupt)
	}
}

// ---------------------------------------------------------------------------
// Wrong keys and unknown versions, everywhere.

func TestTamperWrongKey(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	w := mustKeys(t, fixedKey("wrong master"))
	file, parent := fixedID("file"), fixedID("parent")
	owner, blob := []byte("alice"), []byte("b")

	c := mustFileCipher(t, k.Content, file, smallLayout)
	cw := mustFileCipher(t, w.Content, file, smallLayout)
	id := NewID()
	chunk, tag := mustSealChunk(t, c, 0, id, []byte("data"), true)
	sm, _ := SealManifest(k.Manifest, manifestForTest(file, DefaultLayout, 5))
	sn, _ := SealName(k.Names, parent, file, "n")
	sl, _ := SealSymlink(k.Names, file, "t")
	sa, _ := SealAttr(k.Attr, file, &Attr{})
	sx, _ := SealXattrs(k.Attr, file, map[string][]byte{"a": nil})
	wm, _ := WrapMasterKey(fixedKey("wrap"), fixedKey("master"))
	kp, _ := NewAccountKeyPair(k)
	dk := fixedKey("dk")
	sr, _ := SealAtRest(nil, dk, owner, blob, []byte("x"))
	wd, _ := WrapDataKey(fixedKey("kek"), "k1", owner, blob, dk)

	opens := map[string]func() error{
		"chunk":       func() error { _, err := cw.OpenChunk(nil, 0, id, chunk, 4, true, tag); return err },
		"block":       func() error { _, err := cw.OpenBlock(nil, 0, id, chunk, 0, 4, true); return err },
		"manifest":    func() error { _, err := OpenManifest(w.Manifest, file, sm); return err },
		"name":        func() error { _, err := OpenName(w.Names, parent, file, sn); return err },
		"symlink":     func() error { _, err := OpenSymlink(w.Names, file, sl); return err },
		"attr":        func() error { _, err := OpenAttr(w.Attr, file, sa); return err },
		"xattrs":      func() error { _, err := OpenXattrs(w.Attr, file, sx); return err },
		"master key":  func() error { _, err := UnwrapMasterKey(fixedKey("wrong wrap"), wm); return err },
		"account key": func() error { _, err := OpenAccountKeyPair(w, kp); return err },
		"at rest":     func() error { _, err := OpenAtRest(nil, fixedKey("wrong dk"), owner, blob, sr); return err },
		"data key":    func() error { _, err := UnwrapDataKey(fixedKey("wrong kek"), "k1", owner, blob, wd); return err },
	}
	for name, open := range opens {
		err := open()
		wantErr(t, name+" under a wrong key", err, ErrAuthentication)
		if errors.Is(err, ErrCorrupt) {
			t.Errorf("%s under a wrong key: %v is also ErrCorrupt", name, err)
		}
	}
	// Purpose keys are not interchangeable either.
	_, err := OpenManifest(k.Attr, file, sm)
	wantErr(t, "manifest under the attr key", err, ErrAuthentication)
	_, err = OpenAttr(k.Manifest, file, sa)
	wantErr(t, "attr under the manifest key", err, ErrAuthentication)
}

func TestTamperVersionByte(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file, parent := fixedID("file"), fixedID("parent")
	owner, blob := []byte("alice"), []byte("b")
	dk := fixedKey("dk")
	sm, _ := SealManifest(k.Manifest, manifestForTest(file, DefaultLayout, 5))
	sn, _ := SealName(k.Names, parent, file, "n")
	sl, _ := SealSymlink(k.Names, file, "t")
	sa, _ := SealAttr(k.Attr, file, &Attr{})
	sx, _ := SealXattrs(k.Attr, file, map[string][]byte{"a": nil})
	wm, _ := WrapMasterKey(fixedKey("wrap"), fixedKey("master"))
	kp, _ := NewAccountKeyPair(k)
	sr, _ := SealAtRest(nil, dk, owner, blob, []byte("x"))
	wd, _ := WrapDataKey(fixedKey("kek"), "k1", owner, blob, dk)
	boxes := map[string]struct {
		sealed []byte
		open   func([]byte) error
	}{
		"manifest":   {sm, func(b []byte) error { _, err := OpenManifest(k.Manifest, file, b); return err }},
		"name":       {sn, func(b []byte) error { _, err := OpenName(k.Names, parent, file, b); return err }},
		"symlink":    {sl, func(b []byte) error { _, err := OpenSymlink(k.Names, file, b); return err }},
		"attr":       {sa, func(b []byte) error { _, err := OpenAttr(k.Attr, file, b); return err }},
		"xattrs":     {sx, func(b []byte) error { _, err := OpenXattrs(k.Attr, file, b); return err }},
		"master key": {wm, func(b []byte) error { _, err := UnwrapMasterKey(fixedKey("wrap"), b); return err }},
		"account key": {kp.SealedPrivate, func(b []byte) error {
			_, err := OpenAccountKeyPair(k, AccountKeyPair{Public: kp.Public, SealedPrivate: b})
			return err
		}},
		"at rest":  {sr, func(b []byte) error { _, err := OpenAtRest(nil, dk, owner, blob, b); return err }},
		"data key": {wd, func(b []byte) error { _, err := UnwrapDataKey(fixedKey("kek"), "k1", owner, blob, b); return err }},
	}
	for name, bx := range boxes {
		if bx.sealed[0] != FormatVersion {
			t.Fatalf("%s starts with %#x", name, bx.sealed[0])
		}
		if err := bx.open(bx.sealed); err != nil {
			t.Fatalf("%s: untouched box does not open: %v", name, err)
		}
		for _, v := range []byte{0, 2, 0x81, 0xff} {
			b := slices.Clone(bx.sealed)
			b[0] = v
			wantErr(t, fmt.Sprintf("%s with version %d", name, v), bx.open(b), ErrUnsupportedVersion)
		}
	}
	// KDF algorithm is the version of the password KDF.
	p := testKDFParams(make([]byte, SaltSize))
	p.Algorithm = 2
	wantErr(t, "KDF algorithm 2", p.Check(), ErrUnsupportedVersion)
}

// ---------------------------------------------------------------------------
// Transfer MAC.

func TestTamperTransferMAC(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	tm, _ := NewTransferMAC(k.Transfer, "alice")
	l := smallLayout
	file := fixedID("file")
	c := mustFileCipher(t, k.Content, file, l)
	ref := ChunkRef{File: file, Index: 1, ID: NewID()}
	h := tm.New(ref)
	sealed, _, err := c.SealChunk(nil, ref.Index, ref.ID, filePattern(0, 3000), true, h)
	if err != nil {
		t.Fatal(err)
	}
	mac := h.Sum(nil)
	flipEveryBit(t, "transfer MAC", mac, -1, func(m []byte) error { return tm.Verify(ref, sealed, m) })
	flipEveryBit(t, "data under the transfer MAC", sealed, -1, func(s []byte) error { return tm.Verify(ref, s, mac) })

	other := func(f func(*ChunkRef)) ChunkRef { r := ref; f(&r); return r }
	refs := map[string]ChunkRef{
		"other index":    other(func(r *ChunkRef) { r.Index++ }),
		"index high bit": other(func(r *ChunkRef) { r.Index |= 1 << 63 }),
		"other file":     other(func(r *ChunkRef) { r.File = fixedID("other file") }),
		"other chunk ID": other(func(r *ChunkRef) { r.ID = NewID() }),
		"zero chunk ID":  other(func(r *ChunkRef) { r.ID = ID{} }),
	}
	for name, r := range refs {
		err := tm.Verify(r, sealed, mac)
		wantErr(t, name, err, ErrAuthentication)
	}
	for _, acct := range []string{"bob", "alice2", "alic", "Alice"} {
		tb, err := NewTransferMAC(k.Transfer, acct)
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, "account "+acct, tb.Verify(ref, sealed, mac), ErrAuthentication)
	}
	tk, _ := NewTransferMAC(mustKeys(t, fixedKey("other master")).Transfer, "alice")
	wantErr(t, "other transfer key", tk.Verify(ref, sealed, mac), ErrAuthentication)
	for name, m := range map[string][]byte{
		"nil MAC":       nil,
		"truncated MAC": mac[:31],
		"extended MAC":  append(slices.Clone(mac), 0),
		"zero MAC":      make([]byte, MACSize),
	} {
		wantErr(t, name, tm.Verify(ref, sealed, m), ErrAuthentication)
		wantErr(t, name+" (CheckMAC)", CheckMAC(mac, m), ErrAuthentication)
	}
	wantErr(t, "truncated data", tm.Verify(ref, sealed[:len(sealed)-1], mac), ErrAuthentication)
	wantErr(t, "extended data", tm.Verify(ref, append(slices.Clone(sealed), 0), mac), ErrAuthentication)
	wantErr(t, "CheckMAC of an empty computed MAC", CheckMAC(nil, mac), ErrAuthentication)
}

// ---------------------------------------------------------------------------
// At rest.

func TestTamperAtRest(t *testing.T) {
	dk := fixedKey("dk")
	owner, blob := []byte("alice"), []byte("chunk-1")
	sealed, err := SealAtRest(nil, dk, owner, blob, []byte("a payload of exactly 32 bytes..."))
	if err != nil {
		t.Fatal(err)
	}
	for name, ob := range map[string][2][]byte{
		"other owner":           {[]byte("bob"), blob},
		"other blob":            {owner, []byte("chunk-2")},
		"owner/blob boundary":   {[]byte("alicec"), []byte("hunk-1")},
		"owner and blob swap":   {blob, owner},
		"owner case":            {[]byte("Alice"), blob},
		"blob with a NUL added": {owner, []byte("chunk-1\x00")},
	} {
		_, err := OpenAtRest(nil, dk, ob[0], ob[1], sealed)
		wantErr(t, "at rest: "+name, err, ErrAuthentication)
	}
	// A chunk blob is not a manifest or a wrapped key: domains differ under a
	// shared key.
	if len(sealed) != WrappedDataKeySize {
		t.Fatalf("setup: blob is %d bytes", len(sealed))
	}
	_, err = UnwrapDataKey(dk, "k1", owner, blob, sealed)
	wantErr(t, "at-rest blob as a data key", err, ErrAuthentication)

	kek := fixedKey("kek")
	wrapped, err := WrapDataKey(kek, "k1", owner, blob, dk)
	if err != nil {
		t.Fatal(err)
	}
	_, err = UnwrapDataKey(kek, "k2", owner, blob, wrapped)
	wantErr(t, "data key wrapped under k1 unwrapped as k2", err, ErrAuthentication)
	_, err = UnwrapDataKey(kek, "k1", []byte("bob"), blob, wrapped)
	wantErr(t, "data key of another owner", err, ErrAuthentication)
	_, err = UnwrapDataKey(kek, "k1", owner, []byte("chunk-2"), wrapped)
	wantErr(t, "data key of another blob", err, ErrAuthentication)
	_, err = UnwrapDataKey(kek, "k1a", []byte("lice"), blob, wrapped)
	wantErr(t, "data key with shifted KEK/owner boundary", err, ErrAuthentication)
	// A wrapped data key is not an at-rest blob of the same bytes.
	_, err = OpenAtRest(nil, kek, owner, blob, wrapped)
	wantErr(t, "wrapped data key as a blob", err, ErrAuthentication)
}

// TestTamperKDFDowngrade: a server that offers weak parameters gets no
// derivation out of the client, quickly.
func TestTamperKDFDowngrade(t *testing.T) {
	salt := make([]byte, SaltSize)
	weak := []KDFParams{
		{Algorithm: KDFAlgorithmArgon2id, Time: 1, MemoryKiB: 64, Threads: 1, Salt: salt},
		{Algorithm: KDFAlgorithmArgon2id, Time: 0, MemoryKiB: 1 << 20, Threads: 1, Salt: salt},
	}
	for _, p := range weak {
		_, err := DeriveLoginKeys([]byte("pw"), p)
		wantErr(t, fmt.Sprintf("%+v", p), err, ErrWeakParameters)
	}
	_, err := DeriveLoginKeys([]byte("pw"), KDFParams{Algorithm: KDFAlgorithmArgon2id, Time: 1, MemoryKiB: 8192, Threads: 1, Salt: salt[:8]})
	wantErr(t, "short salt", err, ErrCorrupt)
	if strings.Contains(fmt.Sprint(err), "pw") {
		t.Fatal("error mentions the password")
	}
}

// TestTamperAccountKeyMismatch: a private key sealed (authentically) with
// the AD of another public key is refused by the public-key check that
// follows the AD check.
func TestTamperAccountKeyMismatch(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	a, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewAccountKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	ad := newAD(domainAccountKey, 32).bytes(other.Public)
	sealed := sealBox(nil, mustGCM(k.Account), a.Bytes(), ad)
	_, err = OpenAccountKeyPair(k, AccountKeyPair{Public: other.Public, SealedPrivate: sealed})
	wantErr(t, "private key of A sealed under the public key of B", err, ErrAuthentication)
	// The same construction with the matching public key opens.
	own := sealBox(nil, mustGCM(k.Account), a.Bytes(), newAD(domainAccountKey, 32).bytes(a.PublicKey().Bytes()))
	if _, err := OpenAccountKeyPair(k, AccountKeyPair{Public: a.PublicKey().Bytes(), SealedPrivate: own}); err != nil {
		t.Fatalf("setup: matching pair does not open: %v", err)
	}
}
