package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// Sizes of the AES-256-GCM framing used everywhere.
const (
	NonceSize = 12
	TagSize   = 16
	// BoxOverhead is what a sealed box adds to its plaintext:
	// version (1) + nonce (12) + tag (16).
	BoxOverhead = 1 + NonceSize + TagSize
)

// Domain bytes bind each associated-data layout to its purpose, so that a
// ciphertext of one kind never verifies as another even under a shared key.
const (
	domainChunkBlock = 'C'
	domainManifest   = 'M'
	domainName       = 'N'
	domainSymlink    = 'L'
	domainAttr       = 'A'
	domainXattr      = 'X'
	domainMasterWrap = 'K'
	domainAccountKey = 'P'
	domainTransfer   = 'T'
	domainAtRest     = 'R'
	domainDataKey    = 'D'
)

// newGCM returns AES-256-GCM with the standard 12-byte nonce and 16-byte tag.
func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrCorrupt, len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// mustGCM is newGCM for keys this package derived itself, whose length is
// known to be right.
func mustGCM(key []byte) cipher.AEAD {
	a, err := newGCM(key)
	if err != nil {
		panic(err)
	}
	return a
}

// randomNonce fills a fresh 96-bit nonce from the system CSPRNG. Random
// nonces are safe here because no key seals anywhere near 2^32 messages: a
// file key seals one message per 64 KiB block of that file's writes.
func randomNonce(dst []byte) {
	if _, err := rand.Read(dst[:NonceSize]); err != nil {
		panic("sealfs/crypto: system random source failed: " + err.Error())
	}
}

// RandomBytes returns n bytes from the system CSPRNG, for IDs, salts and keys.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("sealfs/crypto: system random source failed: " + err.Error())
	}
	return b
}

// sealBox appends version || nonce || AES-256-GCM(plaintext, ad) to dst.
func sealBox(dst []byte, aead cipher.AEAD, plaintext, ad []byte) []byte {
	var hdr [1 + NonceSize]byte
	hdr[0] = FormatVersion
	randomNonce(hdr[1:])
	dst = append(dst, hdr[:]...)
	return aead.Seal(dst, hdr[1:], plaintext, ad)
}

// openBox reverses sealBox, appending the plaintext to dst.
func openBox(dst []byte, aead cipher.AEAD, box, ad []byte) ([]byte, error) {
	if len(box) < BoxOverhead {
		return nil, fmt.Errorf("%w: sealed box of %d bytes is shorter than its %d-byte framing", ErrCorrupt, len(box), BoxOverhead)
	}
	if box[0] != FormatVersion {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, box[0])
	}
	out, err := aead.Open(dst, box[1:1+NonceSize], box[1+NonceSize:], ad)
	if err != nil {
		return nil, ErrAuthentication
	}
	return out, nil
}

// adBuilder builds associated data: version, domain, then fixed-size fields.
type adBuilder []byte

func newAD(domain byte, capacity int) adBuilder {
	b := make(adBuilder, 0, 2+capacity)
	return append(b, FormatVersion, domain)
}

func (b adBuilder) bytes(p []byte) adBuilder { return append(b, p...) }

// lenBytes appends a 2-byte big-endian length and then p, for variable-size
// fields (account names, blob IDs); callers keep them below 64 KiB.
func (b adBuilder) lenBytes(p []byte) adBuilder {
	return append(append(b, byte(len(p)>>8), byte(len(p))), p...)
}

func (b adBuilder) u64(v uint64) adBuilder {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func (b adBuilder) u32(v uint32) adBuilder {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}
