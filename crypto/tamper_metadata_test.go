package crypto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

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
	_, _, err = OpenXattrs(k.Attr, a, sa)
	wantErr(t, "attr opened as xattrs", err, ErrAuthentication)
	sx, err := SealXattrs(k.Attr, a, map[string][]byte{"user.x": []byte("1")}, 7)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = OpenXattrs(k.Attr, b, sx)
	wantErr(t, "xattrs of A opened for B", err, ErrAuthentication)
	_, err = OpenAttr(k.Attr, a, sx)
	wantErr(t, "xattrs opened as attr", err, ErrAuthentication)
	// Authentic attr plaintext of the wrong size.
	_, err = OpenAttr(k.Attr, a, sealBox(nil, mustGCM(k.Attr), make([]byte, 55), attrAD(a)))
	wantErr(t, "attr plaintext of 55 bytes", err, ErrCorrupt)
	_, _, err = OpenXattrs(k.Attr, a, sealBox(nil, mustGCM(k.Attr), []byte{0, 1}, xattrAD(a)))
	wantErr(t, "xattr plaintext that does not decode", err, ErrCorrupt)
	// A stamped set cut short in its stamp, or whose set does not decode.
	for name, plain := range map[string][]byte{
		"short stamp":        {xattrStamped, 0, 0, 0},
		"stamp, no set":      {xattrStamped, 0, 0, 0, 0, 0, 0, 0, 1},
		"stamp, bad set":     {xattrStamped, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1},
		"stamp, then a byte": {xattrStamped, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 9},
	} {
		_, _, err = OpenXattrs(k.Attr, a, sealBox(nil, mustGCM(k.Attr), plain, xattrAD(a)))
		wantErr(t, "xattr plaintext: "+name, err, ErrCorrupt)
	}
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
