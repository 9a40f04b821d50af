package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"hash"
)

// MACSize is the size of a transfer HMAC.
const MACSize = sha256.Size

// maxAccountName bounds the account name bound into MACs and at-rest AD.
const maxAccountName = 1024

// TransferMAC computes and checks the HMAC-SHA256 that travels with every
// sealed chunk, in both directions, over the chunk's identity and bytes:
//
//	HMAC(transfer key, version 'T' len(account) account fileID index chunkID sealed)
//
// Its key reaches the server once, at registration, so a proxy that
// terminates TLS can read chunks but cannot forge or redirect one. It is safe
// for concurrent use.
type TransferMAC struct {
	// keyed has absorbed the key and the per-account prefix; each chunk
	// starts from a clone of it, which skips the HMAC key schedule.
	keyed hash.Cloner
}

// NewTransferMAC returns the MAC of account's chunks under key.
func NewTransferMAC(key []byte, account string) (*TransferMAC, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: transfer key is %d bytes", ErrCorrupt, len(key))
	}
	if len(account) == 0 || len(account) > maxAccountName {
		return nil, fmt.Errorf("%w: account name of %d bytes", ErrCorrupt, len(account))
	}
	h := hmac.New(sha256.New, key)
	h.Write(newAD(domainTransfer, 2+len(account)).lenBytes([]byte(account)))
	keyed, ok := h.(hash.Cloner)
	if !ok {
		return nil, fmt.Errorf("sealfs/crypto: HMAC state cannot be cloned")
	}
	return &TransferMAC{keyed: keyed}, nil
}

// New returns an HMAC that has absorbed ref's identity; write the sealed
// chunk to it (for example through FileCipher.SealChunk or while reading a
// request body) and call Sum.
func (t *TransferMAC) New(ref ChunkRef) hash.Hash {
	h, err := t.keyed.Clone()
	if err != nil {
		panic("sealfs/crypto: cloning HMAC state: " + err.Error())
	}
	var buf [2*IDSize + 8]byte
	h.Write(adBuilder(buf[:0]).bytes(ref.File[:]).u64(ref.Index).bytes(ref.ID[:]))
	return h
}

// Sum returns the MAC of sealed as chunk ref.
func (t *TransferMAC) Sum(ref ChunkRef, sealed []byte) []byte {
	h := t.New(ref)
	h.Write(sealed)
	return h.Sum(nil)
}

// Verify checks mac in constant time and returns ErrAuthentication when it
// does not match.
func (t *TransferMAC) Verify(ref ChunkRef, sealed, mac []byte) error {
	return CheckMAC(t.Sum(ref, sealed), mac)
}

// CheckMAC compares a computed MAC with a received one in constant time.
func CheckMAC(computed, received []byte) error {
	if !hmacEqual(computed, received) {
		return fmt.Errorf("%w: transfer HMAC mismatch", ErrAuthentication)
	}
	return nil
}

// hmacEqual compares in constant time; unequal lengths are simply unequal.
func hmacEqual(a, b []byte) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1
}
