package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Names and symlinks.

func TestNames(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	parent, file := fixedID("parent"), fixedID("file")
	rng := rand.New(rand.NewPCG(3, 4))
	lengths := []int{}
	for n := 1; n <= 255; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 256, 1000, MaxNameLen-1, MaxNameLen)
	for _, n := range lengths {
		name := make([]byte, n)
		for i := range name {
			name[i] = byte(1 + rng.IntN(255)) // any byte but NUL, not necessarily UTF-8
		}
		sealed, err := SealName(k.Names, parent, file, string(name))
		if err != nil {
			t.Fatalf("SealName(%d bytes): %v", n, err)
		}
		if want := (n+15)/16*16 + BoxOverhead; len(sealed) != want {
			t.Fatalf("sealed %d-byte name is %d bytes, want %d", n, len(sealed), want)
		}
		got, err := OpenName(k.Names, parent, file, sealed)
		if err != nil || got != string(name) {
			t.Fatalf("OpenName(%d bytes): %q, %v", n, got, err)
		}
	}
	for _, name := range []string{"", "a\x00b", "\x00", "abc\x00", strings.Repeat("a", MaxNameLen+1)} {
		_, err := SealName(k.Names, parent, file, name)
		wantErr(t, fmt.Sprintf("SealName(%d bytes)", len(name)), err, ErrCorrupt)
	}
	_, err := SealName(k.Names[:16], parent, file, "x")
	wantErr(t, "SealName with a short key", err, ErrCorrupt)
	_, err = OpenName(k.Names[:16], parent, file, make([]byte, 45))
	wantErr(t, "OpenName with a short key", err, ErrCorrupt)
	// Names sealed at the root (zero parent) and for the root (zero file).
	for _, pf := range [][2]ID{{{}, file}, {parent, {}}, {{}, {}}} {
		s, err := SealName(k.Names, pf[0], pf[1], "x")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := OpenName(k.Names, pf[0], pf[1], s); err != nil || got != "x" {
			t.Fatalf("zero IDs: %q %v", got, err)
		}
	}
}

func TestNameIndex(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	p1, p2 := fixedID("p1"), fixedID("p2")
	a := NameIndex(k.NameIndex, p1, "report.txt")
	if a != NameIndex(slices.Clone(k.NameIndex), p1, "report.txt") {
		t.Fatal("NameIndex is not deterministic")
	}
	h := hmac.New(sha256.New, k.NameIndex)
	h.Write(p1[:])
	h.Write([]byte("report.txt"))
	if !bytes.Equal(a[:], h.Sum(nil)) {
		t.Fatal("NameIndex is not HMAC(key, parent || name)")
	}
	others := map[string][NameIndexSize]byte{
		"parent":    NameIndex(k.NameIndex, p2, "report.txt"),
		"name":      NameIndex(k.NameIndex, p1, "report.txT"),
		"longer":    NameIndex(k.NameIndex, p1, "report.txt\x01"),
		"key":       NameIndex(k.Names, p1, "report.txt"),
		"other key": NameIndex(mustKeys(t, fixedKey("other")).NameIndex, p1, "report.txt"),
		"root":      NameIndex(k.NameIndex, ID{}, "report.txt"),
	}
	seen := map[[NameIndexSize]byte]string{a: "base"}
	for what, v := range others {
		if prev, ok := seen[v]; ok {
			t.Fatalf("NameIndex with different %s equals the one for %s", what, prev)
		}
		seen[v] = what
	}
}

func TestSymlink(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file := fixedID("link")
	for _, n := range []int{1, 15, 16, 17, 255, 4095, MaxSymlinkLen} {
		target := strings.Repeat("d/", n/2) + strings.Repeat("x", n%2)
		sealed, err := SealSymlink(k.Names, file, target)
		if err != nil {
			t.Fatalf("SealSymlink(%d bytes): %v", n, err)
		}
		if want := (n+15)/16*16 + BoxOverhead; len(sealed) != want {
			t.Fatalf("sealed %d-byte target is %d bytes, want %d", n, len(sealed), want)
		}
		got, err := OpenSymlink(k.Names, file, sealed)
		if err != nil || got != target {
			t.Fatalf("OpenSymlink(%d bytes): %v", n, err)
		}
	}
	for _, target := range []string{"", "a\x00", strings.Repeat("a", MaxSymlinkLen+1)} {
		_, err := SealSymlink(k.Names, file, target)
		wantErr(t, fmt.Sprintf("SealSymlink(%d bytes)", len(target)), err, ErrCorrupt)
	}
	_, err := SealSymlink(k.Names[:5], file, "x")
	wantErr(t, "SealSymlink with a short key", err, ErrCorrupt)
	_, err = OpenSymlink(nil, file, make([]byte, 45))
	wantErr(t, "OpenSymlink with no key", err, ErrCorrupt)
}
