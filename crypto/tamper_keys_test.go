package crypto

import (
	"crypto/ecdh"
	"fmt"
	"slices"
	"strings"
	"testing"
)

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
