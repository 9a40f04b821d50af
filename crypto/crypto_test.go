package crypto

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Errors.

func TestErrorHierarchy(t *testing.T) {
	for _, e := range []error{ErrTruncated, ErrExtended} {
		if !errors.Is(e, ErrCorrupt) {
			t.Errorf("errors.Is(%v, ErrCorrupt) = false", e)
		}
		if errors.Is(e, ErrAuthentication) || errors.Is(e, ErrUnsupportedVersion) {
			t.Errorf("%v matches an unrelated sentinel", e)
		}
		wrapped := fmt.Errorf("ctx: %w", e)
		if !errors.Is(wrapped, e) || !errors.Is(wrapped, ErrCorrupt) {
			t.Errorf("wrapped %v lost its identity", e)
		}
	}
	if errors.Is(ErrCorrupt, ErrTruncated) || errors.Is(ErrTruncated, ErrExtended) || errors.Is(ErrExtended, ErrTruncated) {
		t.Error("sentinels are not distinct")
	}
	all := []error{ErrAuthentication, ErrCorrupt, ErrUnsupportedVersion, ErrTruncated, ErrExtended, ErrWeakParameters}
	for i, a := range all {
		if a.Error() == "" {
			t.Errorf("error %d has no message", i)
		}
		for j, b := range all {
			if i != j && a.Error() == b.Error() {
				t.Errorf("errors %d and %d share the message %q", i, j, a)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Inputs that must be refused, not panic.

// noPanic runs f and fails the test, instead of crashing it, if f panics.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panics: %v", what, r)
		}
	}()
	f()
}

// TestLayoutHelpersInvalidLayout: a Layout arrives from the server (account
// settings) before anyone calls Check on it; its helpers must not crash the
// client on a zero or malformed value. Expected to fail until content.go
// guards ChunkCount, SealedChunkLen and paddedTail against zero sizes.
func TestLayoutHelpersInvalidLayout(t *testing.T) {
	for _, l := range []Layout{{}, {BlockSize: 4096}, {BlockSize: 4096, ChunkBlocks: 1}, {ChunkBlocks: 16, PadUnit: 4096}} {
		if l.Check() == nil {
			t.Fatalf("setup: %+v passes Check", l)
		}
		noPanic(t, fmt.Sprintf("%+v.ChunkCount(1)", l), func() { l.ChunkCount(1) })
		noPanic(t, fmt.Sprintf("%+v.ChunkPlainLen(1, 0)", l), func() { l.ChunkPlainLen(1, 0) })
		noPanic(t, fmt.Sprintf("%+v.SealedChunkLen(1, true)", l), func() { l.SealedChunkLen(1, true) })
		noPanic(t, fmt.Sprintf("%+v.BlockSpan(1, true, 0)", l), func() { l.BlockSpan(1, true, 0) })
		noPanic(t, fmt.Sprintf("%+v.MaxSealedChunkSize()", l), func() { l.MaxSealedChunkSize() })
		m := &Manifest{Size: 1, Layout: l}
		noPanic(t, fmt.Sprintf("Manifest with %+v: Check", l), func() { wantErr(t, "Check", m.Check(), ErrCorrupt) })
		noPanic(t, fmt.Sprintf("Manifest with %+v: ChunkPlainLen", l), func() { m.ChunkPlainLen(0) })
	}
}

// TestAccountKeyPairBadKey: every other function refuses a key of the wrong
// size with ErrCorrupt; the account key pair functions panic in mustGCM
// instead. Expected to fail until keys.go uses newGCM there.
func TestAccountKeyPairBadKey(t *testing.T) {
	good, err := NewAccountKeyPair(mustKeys(t, fixedKey("master")))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 16, 31} {
		k := &Keys{Account: make([]byte, n)}
		noPanic(t, fmt.Sprintf("NewAccountKeyPair with a %d-byte account key", n), func() {
			_, err := NewAccountKeyPair(k)
			wantErr(t, "NewAccountKeyPair", err, ErrCorrupt)
		})
		noPanic(t, fmt.Sprintf("OpenAccountKeyPair with a %d-byte account key", n), func() {
			_, err := OpenAccountKeyPair(k, good)
			wantErr(t, "OpenAccountKeyPair", err, ErrCorrupt)
		})
	}
}

// TestParseIDErrorReturnsZero: a failed ParseID must not hand back the bytes
// it decoded before the first bad digit (a caller that logs or uses the ID
// despite the error would act on a half-parsed value). Expected to fail
// until keys.go returns ID{} on error (the fuzzer found this; the input is in
// testdata/fuzz/FuzzParseID/regress-partial-id-on-error).
func TestParseIDErrorReturnsZero(t *testing.T) {
	for _, s := range []string{"000000000000000000010X0000000000", "ff" + strings.Repeat("z", 30), "0123456789abcdef0123456789abcdeg"} {
		id, err := ParseID(s)
		wantErr(t, fmt.Sprintf("ParseID(%q)", s), err, ErrCorrupt)
		if !id.IsZero() {
			t.Errorf("ParseID(%q) failed but returned %v", s, id)
		}
	}
}
