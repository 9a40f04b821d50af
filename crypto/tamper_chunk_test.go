package crypto

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

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
