package crypto

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

// ---------------------------------------------------------------------------
// Manifests.

func TestManifestRoundTrip(t *testing.T) {
	key := fixedKey("manifest")
	file := fixedID("file")
	cs := uint64(DefaultLayout.ChunkSize())
	cases := []*Manifest{
		manifestForTest(file, DefaultLayout, 0),
		manifestForTest(file, DefaultLayout, 1),
		manifestForTest(file, DefaultLayout, cs),
		manifestForTest(file, DefaultLayout, cs+1),
		manifestForTest(file, DefaultLayout, 3*cs+5, 1, 2),
		manifestForTest(file, DefaultLayout, 2*cs, 0, 1), // all holes
		manifestForTest(file, smallLayout, 100*uint64(smallLayout.ChunkSize())-1, 50),
		manifestForTest(ID{}, smallLayoutPad, 12345),
	}
	cases[0].Generation = 0
	cases[1].Generation = math.MaxUint64
	for _, m := range cases {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(size %d): %v", m.Size, err)
		}
		if want := 48 + 48*len(m.Chunks); len(b) != want {
			t.Fatalf("manifest of %d chunks encodes to %d bytes, want %d", len(m.Chunks), len(b), want)
		}
		var u Manifest
		if err := u.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if !manifestsEqual(m, &u) {
			t.Fatalf("unmarshal round trip: %+v != %+v", u, m)
		}
		b2, _ := u.MarshalBinary()
		if !bytes.Equal(b, b2) {
			t.Fatal("re-marshal differs")
		}
		sealed, err := SealManifest(key, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(b)+BoxOverhead || sealed[0] != FormatVersion {
			t.Fatalf("sealed manifest is %d bytes, want %d", len(sealed), len(b)+BoxOverhead)
		}
		o, err := OpenManifest(key, m.File, sealed)
		if err != nil {
			t.Fatalf("OpenManifest: %v", err)
		}
		if !manifestsEqual(m, o) {
			t.Fatalf("seal round trip: %+v != %+v", o, m)
		}
		// Per-chunk helpers.
		var total uint64
		for i := range o.Chunks {
			n := o.ChunkPlainLen(i)
			if n <= 0 || n > o.Layout.ChunkSize() || (i < len(o.Chunks)-1 && n != o.Layout.ChunkSize()) {
				t.Fatalf("ChunkPlainLen(%d) = %d", i, n)
			}
			if o.IsLast(i) != (i == len(o.Chunks)-1) {
				t.Fatalf("IsLast(%d)", i)
			}
			if o.Chunks[i].IsHole() != (o.Chunks[i].ID == ID{}) {
				t.Fatalf("IsHole(%d)", i)
			}
			total += uint64(n)
		}
		if total != m.Size {
			t.Fatalf("chunks hold %d bytes, size is %d", total, m.Size)
		}
		if o.ChunkPlainLen(len(o.Chunks)) != 0 {
			t.Fatal("ChunkPlainLen beyond the end is not 0")
		}
	}
	// A 0-byte file has 0 chunks and encodes to its header alone.
	m0 := &Manifest{File: file, Layout: DefaultLayout}
	sealed, err := SealManifest(key, m0)
	if err != nil || len(sealed) != 77 {
		t.Fatalf("empty manifest: %d bytes, %v", len(sealed), err)
	}
	if o, err := OpenManifest(key, file, sealed); err != nil || len(o.Chunks) != 0 || o.Size != 0 {
		t.Fatalf("empty manifest: %+v, %v", o, err)
	}
	if _, err := SealManifest(key[:31], m0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("SealManifest with a 31-byte key: %v", err)
	}
	if _, err := OpenManifest(key[:31], file, sealed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenManifest with a 31-byte key: %v", err)
	}
}

// TestManifestWithChunks ties a manifest to real sealed chunks: a reader that
// walks the opened manifest gets the file back, holes as zeros.
func TestManifestWithChunks(t *testing.T) {
	master := fixedKey("master")
	k := mustKeys(t, master)
	l := smallLayout
	file := NewID()
	c := mustFileCipher(t, k.Content, file, l)
	size := uint64(3*l.ChunkSize() + 777)
	content := filePattern(0, int(size))
	hole := 1
	clear(content[hole*l.ChunkSize() : (hole+1)*l.ChunkSize()])
	m := &Manifest{File: file, Generation: 1, Size: size, Layout: l}
	store := map[ID][]byte{}
	for i := range l.ChunkCount(size) {
		lo := int(i) * l.ChunkSize()
		n := l.ChunkPlainLen(size, i)
		if int(i) == hole {
			m.Chunks = append(m.Chunks, ChunkEntry{})
			continue
		}
		id := NewID()
		sealed, tag := mustSealChunk(t, c, i, id, content[lo:lo+n], i == l.ChunkCount(size)-1)
		store[id] = sealed
		m.Chunks = append(m.Chunks, ChunkEntry{ID: id, Tag: tag})
	}
	sm, err := SealManifest(k.Manifest, m)
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenManifest(k.Manifest, file, sm)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i, e := range o.Chunks {
		n := o.ChunkPlainLen(i)
		if e.IsHole() {
			got = append(got, make([]byte, n)...)
			continue
		}
		got, err = c.OpenChunk(got, uint64(i), e.ID, store[e.ID], n, o.IsLast(i), e.Tag)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if !bytes.Equal(got, content) {
		t.Fatal("file read through its manifest differs")
	}
}
