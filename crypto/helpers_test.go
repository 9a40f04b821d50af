package crypto

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// ---------------------------------------------------------------------------
// Helpers shared by the package's tests, tamper checks, fuzz targets and
// benchmarks.

// fixedKey is a deterministic 32-byte key, so seed corpora sealed once keep
// opening.
func fixedKey(label string) []byte {
	k := sha256.Sum256([]byte("sealfs test key " + label))
	return k[:]
}

// fixedID is a deterministic non-zero ID.
func fixedID(label string) ID {
	var id ID
	h := sha256.Sum256([]byte("sealfs test id " + label))
	copy(id[:], h[:])
	return id
}

// Layouts used by the tests besides DefaultLayout.
var (
	smallLayout    = Layout{BlockSize: 4096, ChunkBlocks: 4, PadUnit: 16}
	smallLayoutPad = Layout{BlockSize: 4096, ChunkBlocks: 4, PadUnit: 4096}
)

// filePattern returns n plaintext bytes of a file starting at offset off.
// It never contains a zero byte, so padding is distinguishable from content.
func filePattern(off uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off+uint64(i))%251) + 1
	}
	return b
}

// testKDFParams are the cheapest parameters Check accepts.
func testKDFParams(salt []byte) KDFParams {
	p := MinKDFParams
	p.Salt = salt
	return p
}

// sealedBlockTags walks a sealed chunk the way OpenChunk does and returns the
// chunk tag its blocks would have: SHA-256 over the GCM tags in order. Tests
// use it to check the definition of ChunkTag and to get past the tag check
// on purpose, so that the per-block AD check is exercised on its own.
func sealedBlockTags(l Layout, sealed []byte) ChunkTag {
	var tag ChunkTag
	sbs := int(l.BlockSize) + BlockOverhead
	h := sha256.New()
	for off := 0; off < len(sealed); off += sbs {
		end := min(off+sbs, len(sealed))
		if end-off < TagSize {
			return tag
		}
		h.Write(sealed[end-TagSize : end])
	}
	h.Sum(tag[:0])
	return tag
}

func mustFileCipher(t testing.TB, key []byte, file ID, l Layout) *FileCipher {
	t.Helper()
	c, err := NewFileCipher(key, file, l)
	if err != nil {
		t.Fatalf("NewFileCipher(%+v): %v", l, err)
	}
	return c
}

func mustSealChunk(t testing.TB, c *FileCipher, index uint64, id ID, plain []byte, last bool) ([]byte, ChunkTag) {
	t.Helper()
	sealed, tag, err := c.SealChunk(nil, index, id, plain, last, nil)
	if err != nil {
		t.Fatalf("SealChunk(index %d, %d bytes, last=%v): %v", index, len(plain), last, err)
	}
	return sealed, tag
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func mustKeys(t testing.TB, master []byte) *Keys {
	t.Helper()
	k, err := DeriveKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func manifestForTest(file ID, l Layout, size uint64, holes ...int) *Manifest {
	m := &Manifest{File: file, Generation: 42, Size: size, Layout: l}
	for i := range l.ChunkCount(size) {
		e := ChunkEntry{ID: fixedID(fmt.Sprintf("chunk %d", i))}
		copy(e.Tag[:], fixedKey(fmt.Sprintf("tag %d", i)))
		if slices.Contains(holes, int(i)) {
			e = ChunkEntry{}
		}
		m.Chunks = append(m.Chunks, e)
	}
	return m
}

func manifestsEqual(a, b *Manifest) bool {
	return a.File == b.File && a.Generation == b.Generation && a.Size == b.Size && a.Layout == b.Layout &&
		len(a.Chunks) == len(b.Chunks) && (len(a.Chunks) == 0 || slices.Equal(a.Chunks, b.Chunks))
}

func xattrsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
