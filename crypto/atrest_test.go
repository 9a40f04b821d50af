package crypto

import (
	"bytes"
	"fmt"
	"testing"
)

// ---------------------------------------------------------------------------
// At rest.

func TestAtRest(t *testing.T) {
	kek := fixedKey("kek")
	owner, blob := []byte("alice"), []byte("chunks/0123")
	dk := NewDataKey()
	if len(dk) != KeySize || bytes.Equal(dk, NewDataKey()) {
		t.Fatal("NewDataKey")
	}
	wrapped, err := WrapDataKey(kek, "k1", owner, blob, dk)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != WrappedDataKeySize || WrappedDataKeySize != 61 || bytes.Contains(wrapped, dk) {
		t.Fatalf("wrapped data key is %d bytes", len(wrapped))
	}
	got, err := UnwrapDataKey(kek, "k1", owner, blob, wrapped)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("UnwrapDataKey: %v", err)
	}
	// KEK rotation: rewrap under k2, blob untouched.
	kek2 := fixedKey("kek2")
	rewrapped, err := WrapDataKey(kek2, "k2", owner, blob, got)
	if err != nil {
		t.Fatal(err)
	}
	if got2, err := UnwrapDataKey(kek2, "k2", owner, blob, rewrapped); err != nil || !bytes.Equal(got2, dk) {
		t.Fatalf("unwrap after rotation: %v", err)
	}

	for _, plain := range [][]byte{nil, {}, []byte("x"), filePattern(0, 1<<20+3)} {
		sealed, err := SealAtRest(nil, dk, owner, blob, plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(plain)+AtRestOverhead || sealed[0] != FormatVersion {
			t.Fatalf("at-rest blob of %d bytes is %d", len(plain), len(sealed))
		}
		o, err := OpenAtRest(nil, dk, owner, blob, sealed)
		if err != nil || !bytes.Equal(o, plain) {
			t.Fatalf("OpenAtRest(%d bytes): %v", len(plain), err)
		}
		// dst prefixes are kept on both sides.
		s2, err := SealAtRest([]byte("hdr"), dk, owner, blob, plain)
		if err != nil || string(s2[:3]) != "hdr" {
			t.Fatalf("SealAtRest with a dst: %v", err)
		}
		o2, err := OpenAtRest([]byte("pre"), dk, owner, blob, s2[3:])
		if err != nil || string(o2[:3]) != "pre" || !bytes.Equal(o2[3:], plain) {
			t.Fatalf("OpenAtRest with a dst: %v", err)
		}
	}
	// Identifier limits.
	long := bytes.Repeat([]byte("i"), 1025)
	longest := bytes.Repeat([]byte("i"), 1024)
	if _, err := SealAtRest(nil, dk, longest, longest, []byte("x")); err != nil {
		t.Fatalf("1024-byte IDs: %v", err)
	}
	if _, err := WrapDataKey(kek, string(longest), longest, longest, dk); err != nil {
		t.Fatalf("1024-byte IDs: %v", err)
	}
	for _, ids := range [][3][]byte{{owner, nil, []byte("k")}, {nil, blob, []byte("k")}, {long, blob, []byte("k")}, {owner, long, []byte("k")}, {owner, blob, nil}, {owner, blob, long}} {
		o, b, kid := ids[0], ids[1], string(ids[2])
		if len(o) == 0 || len(b) == 0 || len(o) > 1024 || len(b) > 1024 {
			_, err := SealAtRest(nil, dk, o, b, []byte("x"))
			wantErr(t, "SealAtRest with a bad ID", err, ErrCorrupt)
			_, err = OpenAtRest(nil, dk, o, b, make([]byte, 40))
			wantErr(t, "OpenAtRest with a bad ID", err, ErrCorrupt)
		}
		_, err := WrapDataKey(kek, kid, o, b, dk)
		wantErr(t, "WrapDataKey with a bad ID", err, ErrCorrupt)
		_, err = UnwrapDataKey(kek, kid, o, b, wrapped)
		wantErr(t, "UnwrapDataKey with a bad ID", err, ErrCorrupt)
	}
	for _, n := range []int{0, 16, 33} {
		_, err := WrapDataKey(kek, "k1", owner, blob, make([]byte, n))
		wantErr(t, fmt.Sprintf("WrapDataKey of a %d-byte data key", n), err, ErrCorrupt)
		_, err = WrapDataKey(make([]byte, n), "k1", owner, blob, dk)
		wantErr(t, fmt.Sprintf("WrapDataKey under a %d-byte KEK", n), err, ErrCorrupt)
		_, err = SealAtRest(nil, make([]byte, n), owner, blob, []byte("x"))
		wantErr(t, fmt.Sprintf("SealAtRest under a %d-byte key", n), err, ErrCorrupt)
	}
	for _, n := range []int{0, 60, 62} {
		_, err := UnwrapDataKey(kek, "k1", owner, blob, make([]byte, n))
		wantErr(t, fmt.Sprintf("UnwrapDataKey of %d bytes", n), err, ErrCorrupt)
	}
	for _, n := range []int{0, 1, BoxOverhead - 1} {
		_, err := OpenAtRest(nil, dk, owner, blob, make([]byte, n))
		wantErr(t, fmt.Sprintf("OpenAtRest of %d bytes", n), err, ErrCorrupt)
	}
}

func TestRandomBytes(t *testing.T) {
	for _, n := range []int{0, 1, 16, 32, 1000} {
		if b := RandomBytes(n); len(b) != n {
			t.Fatalf("RandomBytes(%d) is %d bytes", n, len(b))
		}
	}
	if bytes.Equal(RandomBytes(32), RandomBytes(32)) {
		t.Fatal("RandomBytes repeats")
	}
}
