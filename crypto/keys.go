package crypto

import (
	"crypto/ecdh"
	"encoding/hex"
	"fmt"
)

// IDSize is the size of file (inode) IDs and chunk IDs.
const IDSize = 16

// ID is a random 128-bit identifier of an inode or a chunk. The zero ID names
// the root directory where an inode is meant, and a hole (a chunk that reads
// as zeros and is not stored) where a chunk is meant.
type ID [IDSize]byte

// NewID returns a fresh random ID; the chance that it is zero is 2^-128.
func NewID() ID {
	var id ID
	copy(id[:], RandomBytes(IDSize))
	return id
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// String is the lower-case hex form used in URLs and logs.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the 32-character hex form.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return ID{}, fmt.Errorf("%w: ID %q is not %d hex digits", ErrCorrupt, s, 2*IDSize)
	}
	// Only lower case, so that one ID has one spelling in URLs and logs.
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ID{}, fmt.Errorf("%w: ID %q is not lower-case hex", ErrCorrupt, s)
		}
	}
	hex.Decode(id[:], []byte(s))
	return id, nil
}

// MasterKeySize is the size of the account master key.
const MasterKeySize = KeySize

// WrappedMasterKeySize is the size of a wrapped master key:
// version (1) + nonce (12) + key (32) + tag (16).
const WrappedMasterKeySize = BoxOverhead + MasterKeySize

// NewMasterKey returns a fresh random master key.
func NewMasterKey() []byte { return RandomBytes(MasterKeySize) }

// WrapMasterKey seals the master key under the password-derived wrapping
// key. Changing the password re-runs this with a new wrapping key and
// changes nothing else.
func WrapMasterKey(wrapKey, master []byte) ([]byte, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("%w: master key is %d bytes", ErrCorrupt, len(master))
	}
	aead, err := newGCM(wrapKey)
	if err != nil {
		return nil, err
	}
	return sealBox(make([]byte, 0, WrappedMasterKeySize), aead, master, newAD(domainMasterWrap, 0)), nil
}

// UnwrapMasterKey opens a wrapped master key. A wrong password shows as
// ErrAuthentication.
func UnwrapMasterKey(wrapKey, wrapped []byte) ([]byte, error) {
	if len(wrapped) != WrappedMasterKeySize {
		return nil, fmt.Errorf("%w: wrapped master key is %d bytes, want %d", ErrCorrupt, len(wrapped), WrappedMasterKeySize)
	}
	aead, err := newGCM(wrapKey)
	if err != nil {
		return nil, err
	}
	return openBox(nil, aead, wrapped, newAD(domainMasterWrap, 0))
}

// Keys are the purpose keys derived from the master key. Each is used for
// exactly one job; none of them is ever sent anywhere, except Transfer,
// which the server receives once at registration.
type Keys struct {
	Content   []byte // root of the per-file content keys
	Names     []byte // seals directory entry names and symlink targets
	NameIndex []byte // keys the blind index of names
	Manifest  []byte // seals file manifests
	Transfer  []byte // HMAC over chunks in transit
	Attr      []byte // seals inode attributes and extended attributes
	Account   []byte // seals the account's X25519 private key
}

// DeriveKeys derives every purpose key from the master key.
func DeriveKeys(master []byte) (*Keys, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("%w: master key is %d bytes", ErrCorrupt, len(master))
	}
	return &Keys{
		Content:   deriveKey(master, labelContent, nil),
		Names:     deriveKey(master, labelNames, nil),
		NameIndex: deriveKey(master, labelNameIndex, nil),
		Manifest:  deriveKey(master, labelManifest, nil),
		Transfer:  deriveKey(master, labelTransfer, nil),
		Attr:      deriveKey(master, labelAttr, nil),
		Account:   deriveKey(master, labelAccountKey, nil),
	}, nil
}

// FileKey derives the content key of one file from the content key and the
// file's ID, so every file has a key of its own without storing one.
func FileKey(contentKey []byte, file ID) []byte {
	return deriveKey(contentKey, labelFileKey, file[:])
}

// AccountKeyPair is the account's X25519 key pair. Its public key is stored
// in clear on the server; its private key only sealed under Keys.Account, so
// that a later version can share a folder by wrapping the folder's keys to a
// recipient's public key.
type AccountKeyPair struct {
	Public        []byte // 32 bytes
	SealedPrivate []byte // BoxOverhead + 32 bytes
}

// SealedPrivateKeySize is the size of AccountKeyPair.SealedPrivate.
const SealedPrivateKeySize = BoxOverhead + 32

// NewAccountKeyPair makes a fresh X25519 key pair and seals its private key.
func NewAccountKeyPair(k *Keys) (AccountKeyPair, error) {
	priv, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		return AccountKeyPair{}, err
	}
	aead, err := newGCM(k.Account)
	if err != nil {
		return AccountKeyPair{}, err
	}
	pub := priv.PublicKey().Bytes()
	ad := newAD(domainAccountKey, 32).bytes(pub)
	sealed := sealBox(make([]byte, 0, SealedPrivateKeySize), aead, priv.Bytes(), ad)
	return AccountKeyPair{Public: pub, SealedPrivate: sealed}, nil
}

// OpenAccountKeyPair returns the private key of p after checking that it
// belongs to p.Public.
func OpenAccountKeyPair(k *Keys, p AccountKeyPair) (*ecdh.PrivateKey, error) {
	if len(p.Public) != 32 || len(p.SealedPrivate) != SealedPrivateKeySize {
		return nil, fmt.Errorf("%w: account key pair has wrong sizes", ErrCorrupt)
	}
	aead, err := newGCM(k.Account)
	if err != nil {
		return nil, err
	}
	ad := newAD(domainAccountKey, 32).bytes(p.Public)
	raw, err := openBox(nil, aead, p.SealedPrivate, ad)
	if err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if string(priv.PublicKey().Bytes()) != string(p.Public) {
		return nil, fmt.Errorf("%w: private key does not match public key", ErrAuthentication)
	}
	return priv, nil
}
