package crypto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Attributes.

func TestAttrRoundTrip(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file := fixedID("file")
	cases := []Attr{
		{},
		{Mode: 0o100644, UID: 1000, GID: 1000, Size: 12345, Generation: 3, Atime: 1, Mtime: 2, Ctime: 3},
		{Mode: math.MaxUint32, UID: math.MaxUint32, GID: math.MaxUint32, Rdev: math.MaxUint32, Size: math.MaxUint64, Generation: math.MaxUint64, Atime: math.MinInt64, Mtime: math.MaxInt64, Ctime: -1},
	}
	for _, a := range cases {
		b, err := a.MarshalBinary()
		if err != nil || len(b) != 56 {
			t.Fatalf("MarshalBinary: %d bytes, %v", len(b), err)
		}
		var u Attr
		if err := u.UnmarshalBinary(b); err != nil || u != a {
			t.Fatalf("UnmarshalBinary: %+v, %v", u, err)
		}
		sealed, err := SealAttr(k.Attr, file, &a)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != SealedAttrSize || SealedAttrSize != 85 {
			t.Fatalf("sealed attr is %d bytes", len(sealed))
		}
		o, err := OpenAttr(k.Attr, file, sealed)
		if err != nil || *o != a {
			t.Fatalf("OpenAttr: %+v, %v", o, err)
		}
	}
	// Field order of the fixed layout (docs/format.md).
	a := Attr{Mode: 1, UID: 2, GID: 3, Rdev: 4, Size: 5, Generation: 6, Atime: 7, Mtime: 8, Ctime: -9}
	b, _ := a.MarshalBinary()
	for i, want := range []uint64{1, 2, 3, 4} {
		if got := binary.BigEndian.Uint32(b[4*i:]); uint64(got) != want {
			t.Fatalf("field %d = %d", i, got)
		}
	}
	for i, want := range []uint64{5, 6, 7, 8, uint64(math.MaxUint64 - 8)} {
		if got := binary.BigEndian.Uint64(b[16+8*i:]); got != want {
			t.Fatalf("field %d = %d", 4+i, got)
		}
	}
	for _, n := range []int{0, 55, 57, 85} {
		var u Attr
		wantErr(t, fmt.Sprintf("UnmarshalBinary of %d bytes", n), u.UnmarshalBinary(make([]byte, n)), ErrCorrupt)
	}
	_, err := SealAttr(k.Attr[:1], file, &a)
	wantErr(t, "SealAttr with a short key", err, ErrCorrupt)
	_, err = OpenAttr(k.Attr[:1], file, make([]byte, SealedAttrSize))
	wantErr(t, "OpenAttr with a short key", err, ErrCorrupt)
}

func TestXattrRoundTrip(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file := fixedID("file")
	big := map[string][]byte{}
	for i := range MaxXattrCount {
		big[fmt.Sprintf("user.%04d", i)] = []byte{byte(i)}
	}
	cases := []map[string][]byte{
		{},
		{"user.a": {}},
		{"user.a": []byte("1"), "user.b": []byte("22"), "security.selinux": []byte("system_u:object_r\x00")},
		{strings.Repeat("n", MaxXattrNameLen): bytes.Repeat([]byte{0xff}, MaxXattrValueLen)},
		{"\x00bin\xff": {0}},
		big,
	}
	for i, x := range cases {
		b, err := EncodeXattrs(x)
		if err != nil {
			t.Fatalf("case %d: EncodeXattrs: %v", i, err)
		}
		size := 2
		for n, v := range x {
			size += 1 + len(n) + 4 + len(v)
		}
		if len(b) != size || int(binary.BigEndian.Uint16(b)) != len(x) {
			t.Fatalf("case %d: encoded %d bytes, want %d", i, len(b), size)
		}
		// Canonical: encoding again (different map iteration order) is identical.
		b2, _ := EncodeXattrs(x)
		if !bytes.Equal(b, b2) {
			t.Fatalf("case %d: encoding is not canonical", i)
		}
		d, err := DecodeXattrs(b)
		if err != nil || !xattrsEqual(d, x) {
			t.Fatalf("case %d: DecodeXattrs: %v", i, err)
		}
		stamp := int64(i) - 2 // negative stamps too: they are times
		sealed, err := SealXattrs(k.Attr, file, x, stamp)
		if err != nil || len(sealed) != 9+len(b)+BoxOverhead {
			t.Fatalf("case %d: SealXattrs: %d bytes, %v", i, len(sealed), err)
		}
		o, st, err := OpenXattrs(k.Attr, file, sealed)
		if err != nil || !xattrsEqual(o, x) || st != stamp {
			t.Fatalf("case %d: OpenXattrs: stamp %d, %v", i, st, err)
		}
		// A set sealed before stamps existed opens with stamp 0.
		o, st, err = OpenXattrs(k.Attr, file, sealBox(nil, mustGCM(k.Attr), b, xattrAD(file)))
		if err != nil || !xattrsEqual(o, x) || st != 0 {
			t.Fatalf("case %d: OpenXattrs of an unstamped set: stamp %d, %v", i, st, err)
		}
	}
	// Decoded values do not alias the input.
	b, _ := EncodeXattrs(map[string][]byte{"user.a": []byte("value")})
	d, _ := DecodeXattrs(b)
	clear(b)
	if string(d["user.a"]) != "value" {
		t.Fatal("decoded value aliases the encoding")
	}
	// What does not fit.
	tooMany := maps1025()
	for i, x := range []map[string][]byte{
		{"": []byte("v")},
		{strings.Repeat("n", MaxXattrNameLen+1): nil},
		{"user.a": make([]byte, MaxXattrValueLen+1)},
		tooMany,
	} {
		_, err := EncodeXattrs(x)
		wantErr(t, fmt.Sprintf("EncodeXattrs bad case %d", i), err, ErrCorrupt)
		_, err = SealXattrs(k.Attr, file, x, 1)
		wantErr(t, fmt.Sprintf("SealXattrs bad case %d", i), err, ErrCorrupt)
	}
}

func maps1025() map[string][]byte {
	m := map[string][]byte{}
	for i := range MaxXattrCount + 1 {
		m[fmt.Sprint(i)] = nil
	}
	return m
}
