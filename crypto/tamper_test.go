package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
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

	sx, err := SealXattrs(k.Attr, file, map[string][]byte{"user.a": []byte("1"), "user.b": nil}, 3)
	if err != nil {
		t.Fatal(err)
	}
	flipEveryBit(t, "xattrs", sx, 0, func(b []byte) error { _, _, err := OpenXattrs(k.Attr, file, b); return err })

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
	sx, _ := SealXattrs(k.Attr, file, map[string][]byte{"a": nil}, 1)
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
		"xattrs":      func() error { _, _, err := OpenXattrs(w.Attr, file, sx); return err },
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
	sx, _ := SealXattrs(k.Attr, file, map[string][]byte{"a": nil}, 1)
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
		"xattrs":     {sx, func(b []byte) error { _, _, err := OpenXattrs(k.Attr, file, b); return err }},
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
