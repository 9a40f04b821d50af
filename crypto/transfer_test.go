package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Transfer MAC.

func TestTransferMAC(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	tm, err := NewTransferMAC(k.Transfer, "alice")
	if err != nil {
		t.Fatal(err)
	}
	l := smallLayout
	file := fixedID("file")
	c := mustFileCipher(t, k.Content, file, l)
	ref := ChunkRef{File: file, Index: 3, ID: NewID()}
	plain := filePattern(0, 2*int(l.BlockSize)+100)

	// MAC fed while sealing equals Sum over the output, also when dst has a
	// prefix that is not part of the chunk.
	for _, prefix := range [][]byte{nil, []byte("not part of the chunk")} {
		h := tm.New(ref)
		out, _, err := c.SealChunk(slices.Clone(prefix), ref.Index, ref.ID, plain, true, h)
		if err != nil {
			t.Fatal(err)
		}
		sealed := out[len(prefix):]
		mac := h.Sum(nil)
		if len(mac) != MACSize {
			t.Fatalf("MAC is %d bytes", len(mac))
		}
		if sum := tm.Sum(ref, sealed); !bytes.Equal(mac, sum) {
			t.Fatalf("MAC fed during SealChunk (prefix %d) != Sum over the output", len(prefix))
		}
		if err := tm.Verify(ref, sealed, mac); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}

	// New + Write in pieces == Sum.
	data := filePattern(5, 10000)
	want := tm.Sum(ref, data)
	h := tm.New(ref)
	for i := 0; i < len(data); i += 333 {
		h.Write(data[i:min(i+333, len(data))])
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		t.Fatal("New+Write != Sum")
	}
	// The documented construction.
	ad := []byte{FormatVersion, 'T', 0, 5}
	ad = append(ad, "alice"...)
	ad = append(ad, ref.File[:]...)
	ad = binary.BigEndian.AppendUint64(ad, ref.Index)
	ad = append(ad, ref.ID[:]...)
	mh := hmac.New(sha256.New, k.Transfer)
	mh.Write(ad)
	mh.Write(data)
	if !bytes.Equal(mh.Sum(nil), want) {
		t.Fatal("transfer MAC does not follow docs/format.md")
	}
	// Empty body and the empty-account / bad-key constructors.
	if err := tm.Verify(ref, nil, tm.Sum(ref, []byte{})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     []byte
		account string
	}{
		{k.Transfer, ""},
		{k.Transfer, strings.Repeat("a", 1025)},
		{k.Transfer[:31], "alice"},
		{nil, "alice"},
	} {
		_, err := NewTransferMAC(tc.key, tc.account)
		wantErr(t, fmt.Sprintf("NewTransferMAC(%d-byte key, %d-byte account)", len(tc.key), len(tc.account)), err, ErrCorrupt)
	}
	long, err := NewTransferMAC(k.Transfer, strings.Repeat("a", 1024))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(long.Sum(ref, data), want) {
		t.Fatal("account not bound")
	}
	if err := CheckMAC(want, slices.Clone(want)); err != nil {
		t.Fatal(err)
	}
}
