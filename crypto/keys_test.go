package crypto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Password, master key, purpose keys.

func TestKDFParamsCheck(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, SaltSize)
	if err := DefaultKDFParams(salt).Check(); err != nil {
		t.Fatalf("DefaultKDFParams.Check() = %v", err)
	}
	if err := testKDFParams(salt).Check(); err != nil {
		t.Fatalf("MinKDFParams with a salt: Check() = %v", err)
	}
	d := DefaultKDFParams(salt)
	if d.MemoryKiB < 64*1024 || d.Time < MinKDFParams.Time || d.Threads < 1 || d.Algorithm != KDFAlgorithmArgon2id || !bytes.Equal(d.Salt, salt) {
		t.Errorf("DefaultKDFParams = %+v", d)
	}
	mod := func(f func(*KDFParams)) KDFParams {
		p := testKDFParams(slices.Clone(salt))
		f(&p)
		return p
	}
	cases := []struct {
		name string
		p    KDFParams
		want error
	}{
		{"algorithm 0", mod(func(p *KDFParams) { p.Algorithm = 0 }), ErrUnsupportedVersion},
		{"algorithm 2", mod(func(p *KDFParams) { p.Algorithm = 2 }), ErrUnsupportedVersion},
		{"algorithm 255", mod(func(p *KDFParams) { p.Algorithm = 255 }), ErrUnsupportedVersion},
		{"no salt", mod(func(p *KDFParams) { p.Salt = nil }), ErrCorrupt},
		{"short salt", mod(func(p *KDFParams) { p.Salt = p.Salt[:15] }), ErrCorrupt},
		{"long salt", mod(func(p *KDFParams) { p.Salt = append(p.Salt, 0) }), ErrCorrupt},
		{"zero threads", mod(func(p *KDFParams) { p.Threads = 0 }), ErrCorrupt},
		{"memory over 4 GiB", mod(func(p *KDFParams) { p.MemoryKiB = 4<<20 + 1 }), ErrCorrupt},
		{"memory max", mod(func(p *KDFParams) { p.MemoryKiB = math.MaxUint32 }), ErrCorrupt},
		{"time 1001", mod(func(p *KDFParams) { p.Time = 1001 }), ErrCorrupt},
		{"time max", mod(func(p *KDFParams) { p.Time = math.MaxUint32 }), ErrCorrupt},
		{"time 0", mod(func(p *KDFParams) { p.Time = 0 }), ErrWeakParameters},
		{"memory 8191 KiB", mod(func(p *KDFParams) { p.MemoryKiB = 8191 }), ErrWeakParameters},
		{"memory 0", mod(func(p *KDFParams) { p.MemoryKiB = 0 }), ErrWeakParameters},
		{"memory 64 KiB", mod(func(p *KDFParams) { p.MemoryKiB = 64 }), ErrWeakParameters},
	}
	for _, tc := range cases {
		err := tc.p.Check()
		wantErr(t, tc.name, err, tc.want)
		for _, other := range []error{ErrUnsupportedVersion, ErrCorrupt, ErrWeakParameters} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%s: error %v also matches %v", tc.name, err, other)
			}
		}
		// A client never spends the password on rejected parameters.
		_, err = DeriveLoginKeys([]byte("pw"), tc.p)
		wantErr(t, tc.name+" (DeriveLoginKeys)", err, tc.want)
	}
	okCases := []KDFParams{
		mod(func(p *KDFParams) { p.Time = maxKDFTime }),
		mod(func(p *KDFParams) { p.MemoryKiB = maxKDFMemoryKiB }),
		mod(func(p *KDFParams) { p.Threads = 255 }),
	}
	for _, p := range okCases {
		if err := p.Check(); err != nil {
			t.Errorf("%+v.Check() = %v, want nil", p, err)
		}
	}
}

func TestKDFParamsJSON(t *testing.T) {
	salt := bytes.Repeat([]byte{0xab}, SaltSize)
	p := DefaultKDFParams(salt)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"alg", "time", "mem", "thr", "salt"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	var q KDFParams
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q.Algorithm != p.Algorithm || q.Time != p.Time || q.MemoryKiB != p.MemoryKiB || q.Threads != p.Threads || !bytes.Equal(q.Salt, p.Salt) {
		t.Fatalf("JSON round trip: %+v != %+v", q, p)
	}
}

func TestDeriveLoginKeys(t *testing.T) {
	salt := bytes.Repeat([]byte{1}, SaltSize)
	salt2 := bytes.Repeat([]byte{2}, SaltSize)
	k1, err := DeriveLoginKeys([]byte("correct horse"), testKDFParams(salt))
	if err != nil {
		t.Fatal(err)
	}
	k1b, err := DeriveLoginKeys([]byte("correct horse"), testKDFParams(slices.Clone(salt)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.AuthKey, k1b.AuthKey) || !bytes.Equal(k1.WrapKey, k1b.WrapKey) {
		t.Fatal("DeriveLoginKeys is not deterministic")
	}
	if len(k1.AuthKey) != KeySize || len(k1.WrapKey) != KeySize {
		t.Fatalf("key sizes %d, %d", len(k1.AuthKey), len(k1.WrapKey))
	}
	if bytes.Equal(k1.AuthKey, k1.WrapKey) {
		t.Fatal("auth key equals wrapping key")
	}
	others := map[string]KDFParams{"salt": testKDFParams(salt2)}
	p2 := testKDFParams(salt)
	p2.Time = 2
	others["time"] = p2
	p3 := testKDFParams(salt)
	p3.MemoryKiB = 9 * 1024
	others["memory"] = p3
	p4 := testKDFParams(salt)
	p4.Threads = 2
	others["threads"] = p4
	seen := [][]byte{k1.AuthKey, k1.WrapKey}
	check := func(what string, k LoginKeys) {
		for _, s := range seen {
			if bytes.Equal(s, k.AuthKey) || bytes.Equal(s, k.WrapKey) {
				t.Fatalf("different %s gave a key seen before", what)
			}
		}
		seen = append(seen, k.AuthKey, k.WrapKey)
	}
	for what, p := range others {
		k, err := DeriveLoginKeys([]byte("correct horse"), p)
		if err != nil {
			t.Fatal(err)
		}
		check(what, k)
	}
	for _, pw := range []string{"correct horsf", "", "correct horse "} {
		k, err := DeriveLoginKeys([]byte(pw), testKDFParams(salt))
		if err != nil {
			t.Fatal(err)
		}
		check("password "+pw, k)
	}
}

func TestMasterKeyWrap(t *testing.T) {
	login, err := DeriveLoginKeys([]byte("first password"), testKDFParams(bytes.Repeat([]byte{1}, SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	master := NewMasterKey()
	if len(master) != MasterKeySize || bytes.Equal(master, make([]byte, MasterKeySize)) {
		t.Fatalf("NewMasterKey = %x", master)
	}
	wrapped, err := WrapMasterKey(login.WrapKey, master)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != WrappedMasterKeySize || WrappedMasterKeySize != 61 || wrapped[0] != FormatVersion {
		t.Fatalf("wrapped master key is %d bytes starting %#x", len(wrapped), wrapped[0])
	}
	if bytes.Contains(wrapped, master) {
		t.Fatal("wrapped master key contains the master key")
	}
	got, err := UnwrapMasterKey(login.WrapKey, wrapped)
	if err != nil || !bytes.Equal(got, master) {
		t.Fatalf("UnwrapMasterKey: %v", err)
	}

	// Wrong password.
	wrong, err := DeriveLoginKeys([]byte("second password"), testKDFParams(bytes.Repeat([]byte{1}, SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = UnwrapMasterKey(wrong.WrapKey, wrapped)
	wantErr(t, "UnwrapMasterKey with a wrong password", err, ErrAuthentication)
	// The auth key, which the server knows, does not unwrap it either.
	_, err = UnwrapMasterKey(login.AuthKey, wrapped)
	wantErr(t, "UnwrapMasterKey with the auth key", err, ErrAuthentication)

	// Password change: new salt, new password, same master.
	newLogin, err := DeriveLoginKeys([]byte("second password"), testKDFParams(bytes.Repeat([]byte{9}, SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	rewrapped, err := WrapMasterKey(newLogin.WrapKey, got)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rewrapped, wrapped) {
		t.Fatal("rewrapped master key equals the old wrapping")
	}
	got2, err := UnwrapMasterKey(newLogin.WrapKey, rewrapped)
	if err != nil || !bytes.Equal(got2, master) {
		t.Fatalf("unwrap after password change: %v", err)
	}
	_, err = UnwrapMasterKey(login.WrapKey, rewrapped)
	wantErr(t, "old password after change", err, ErrAuthentication)
	k1, k2 := mustKeys(t, master), mustKeys(t, got2)
	if !bytes.Equal(k1.Content, k2.Content) || !bytes.Equal(k1.Names, k2.Names) {
		t.Fatal("purpose keys changed with the password")
	}
	// Same master wrapped twice gives different bytes (fresh nonce).
	again, _ := WrapMasterKey(login.WrapKey, master)
	if bytes.Equal(again, wrapped) {
		t.Fatal("two wrappings are identical")
	}

	// Malformed inputs.
	for _, n := range []int{0, 16, 31, 33} {
		_, err := WrapMasterKey(login.WrapKey, make([]byte, n))
		wantErr(t, fmt.Sprintf("WrapMasterKey of a %d-byte master", n), err, ErrCorrupt)
		_, err = WrapMasterKey(make([]byte, n), master)
		wantErr(t, fmt.Sprintf("WrapMasterKey under a %d-byte key", n), err, ErrCorrupt)
		_, err = UnwrapMasterKey(make([]byte, n), wrapped)
		wantErr(t, fmt.Sprintf("UnwrapMasterKey under a %d-byte key", n), err, ErrCorrupt)
	}
	for _, n := range []int{0, 1, BoxOverhead, WrappedMasterKeySize - 1, WrappedMasterKeySize + 1} {
		_, err := UnwrapMasterKey(login.WrapKey, make([]byte, n))
		wantErr(t, fmt.Sprintf("UnwrapMasterKey of %d bytes", n), err, ErrCorrupt)
	}
}

func TestDeriveKeys(t *testing.T) {
	master := fixedKey("master")
	k := mustKeys(t, master)
	all := [][]byte{k.Content, k.Names, k.NameIndex, k.Manifest, k.Transfer, k.Attr, k.Account}
	for i, a := range all {
		if len(a) != KeySize {
			t.Fatalf("key %d is %d bytes", i, len(a))
		}
		if bytes.Equal(a, master) {
			t.Fatalf("key %d equals the master key", i)
		}
		for j, b := range all[:i] {
			if bytes.Equal(a, b) {
				t.Fatalf("keys %d and %d are equal", i, j)
			}
		}
	}
	k2 := mustKeys(t, slices.Clone(master))
	if !bytes.Equal(k.Content, k2.Content) || !bytes.Equal(k.Account, k2.Account) || !bytes.Equal(k.Transfer, k2.Transfer) {
		t.Fatal("DeriveKeys is not deterministic")
	}
	k3 := mustKeys(t, fixedKey("other master"))
	for i, a := range [][]byte{k3.Content, k3.Names, k3.NameIndex, k3.Manifest, k3.Transfer, k3.Attr, k3.Account} {
		if bytes.Equal(a, all[i]) {
			t.Fatalf("key %d is the same under another master", i)
		}
	}
	for _, n := range []int{0, 31, 33} {
		_, err := DeriveKeys(make([]byte, n))
		wantErr(t, fmt.Sprintf("DeriveKeys of a %d-byte master", n), err, ErrCorrupt)
	}

	// File keys.
	fa, fb := fixedID("a"), fixedID("b")
	ka, kb := FileKey(k.Content, fa), FileKey(k.Content, fb)
	if len(ka) != KeySize || bytes.Equal(ka, kb) || bytes.Equal(ka, k.Content) {
		t.Fatal("file keys are not distinct")
	}
	if !bytes.Equal(ka, FileKey(slices.Clone(k.Content), fa)) {
		t.Fatal("FileKey is not deterministic")
	}
	if bytes.Equal(FileKey(k.Content, ID{}), FileKey(k.Content, ID{1})) {
		t.Fatal("FileKey ignores the file ID")
	}
	if bytes.Equal(ka, FileKey(k3.Content, fa)) {
		t.Fatal("FileKey ignores the content key")
	}
	// The file key is what FileCipher seals under: another file's cipher
	// with the same content key cannot open the chunk even with its tag.
	ca := mustFileCipher(t, k.Content, fa, smallLayout)
	cb := mustFileCipher(t, k.Content, fb, smallLayout)
	id := NewID()
	sealed, tag := mustSealChunk(t, ca, 0, id, []byte("x"), true)
	_, err := cb.OpenChunk(nil, 0, id, sealed, 1, true, tag)
	wantErr(t, "chunk of file a opened as file b", err, ErrAuthentication)
}

func TestAccountKeyPair(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	p, err := NewAccountKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Public) != 32 || len(p.SealedPrivate) != SealedPrivateKeySize || SealedPrivateKeySize != 61 {
		t.Fatalf("sizes: public %d, sealed %d", len(p.Public), len(p.SealedPrivate))
	}
	priv, err := OpenAccountKeyPair(k, p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), p.Public) {
		t.Fatal("opened private key does not match the public key")
	}
	if bytes.Contains(p.SealedPrivate, priv.Bytes()) {
		t.Fatal("sealed private key contains the private key")
	}
	// The key works: an ECDH with another key pair agrees.
	q, err := NewAccountKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(q.Public, p.Public) {
		t.Fatal("two key pairs share a public key")
	}
	privQ, err := OpenAccountKeyPair(k, q)
	if err != nil {
		t.Fatal(err)
	}
	s1, err1 := priv.ECDH(privQ.PublicKey())
	s2, err2 := privQ.ECDH(priv.PublicKey())
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Fatal("ECDH between opened keys disagrees")
	}

	// Mismatched public key.
	_, err = OpenAccountKeyPair(k, AccountKeyPair{Public: q.Public, SealedPrivate: p.SealedPrivate})
	wantErr(t, "sealed private key with another public key", err, ErrAuthentication)
	// Wrong key.
	_, err = OpenAccountKeyPair(mustKeys(t, fixedKey("other")), p)
	wantErr(t, "account key pair under another master", err, ErrAuthentication)
	// Wrong sizes.
	for _, bad := range []AccountKeyPair{
		{},
		{Public: p.Public[:31], SealedPrivate: p.SealedPrivate},
		{Public: append(slices.Clone(p.Public), 0), SealedPrivate: p.SealedPrivate},
		{Public: p.Public, SealedPrivate: p.SealedPrivate[:60]},
		{Public: p.Public, SealedPrivate: append(slices.Clone(p.SealedPrivate), 0)},
	} {
		_, err := OpenAccountKeyPair(k, bad)
		wantErr(t, fmt.Sprintf("account key pair of sizes %d/%d", len(bad.Public), len(bad.SealedPrivate)), err, ErrCorrupt)
	}
}

// ---------------------------------------------------------------------------
// IDs.

func TestID(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b || a.IsZero() || b.IsZero() {
		t.Fatalf("NewID: %v %v", a, b)
	}
	if !(ID{}).IsZero() || (ID{15: 1}).IsZero() {
		t.Fatal("IsZero")
	}
	s := a.String()
	if len(s) != 32 || s != strings.ToLower(s) {
		t.Fatalf("String() = %q", s)
	}
	got, err := ParseID(s)
	if err != nil || got != a {
		t.Fatalf("ParseID(String()) = %v, %v", got, err)
	}
	if (ID{}).String() != strings.Repeat("0", 32) {
		t.Fatal("zero ID string")
	}
	id, err := ParseID("000102030405060708090a0b0c0d0eff")
	if err != nil || id != (ID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff}) {
		t.Fatalf("ParseID: %v %v", id, err)
	}
	for _, bad := range []string{"", "0", strings.Repeat("0", 31), strings.Repeat("0", 33), strings.Repeat("g", 32), strings.Repeat("0", 30) + " 0", strings.Repeat("0", 31) + "\x00", "0x" + strings.Repeat("0", 30), strings.Repeat("é", 16)} {
		_, err := ParseID(bad)
		wantErr(t, fmt.Sprintf("ParseID(%q)", bad), err, ErrCorrupt)
	}
}
