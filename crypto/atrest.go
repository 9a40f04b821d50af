package crypto

import "fmt"

// At-rest envelope encryption, used by the server only. Every stored blob is
// sealed under a random data key of its own; the data key is wrapped by a
// key-encryption key (KEK) that has an ID. Rotating the KEK rewraps data
// keys, which live in the server's metadata, and never has to touch blobs.
//
//	blob        = version || nonce || AES-256-GCM(dataKey, plaintext, AD_R)
//	AD_R        = version 'R' len(owner) owner len(blobID) blobID
//	wrapped key = version || nonce || AES-256-GCM(KEK, dataKey, AD_D)
//	AD_D        = version 'D' len(kekID) kekID len(owner) owner len(blobID) blobID

// WrappedDataKeySize is the size of a wrapped data key.
const WrappedDataKeySize = BoxOverhead + KeySize

// AtRestOverhead is what the at-rest layer adds to a blob.
const AtRestOverhead = BoxOverhead

// maxAtRestID bounds owner, blob and KEK IDs, which are length-prefixed.
const maxAtRestID = 1024

func checkAtRestIDs(ids ...[]byte) error {
	for _, id := range ids {
		if len(id) == 0 || len(id) > maxAtRestID {
			return fmt.Errorf("%w: at-rest identifier of %d bytes", ErrCorrupt, len(id))
		}
	}
	return nil
}

// NewDataKey returns a fresh random data key for one blob.
func NewDataKey() []byte { return RandomBytes(KeySize) }

func dataKeyAD(kekID string, owner, blobID []byte) []byte {
	return newAD(domainDataKey, 6+len(kekID)+len(owner)+len(blobID)).
		lenBytes([]byte(kekID)).lenBytes(owner).lenBytes(blobID)
}

// WrapDataKey wraps dataKey under the KEK kek named kekID, bound to the blob
// it protects.
func WrapDataKey(kek []byte, kekID string, owner, blobID, dataKey []byte) ([]byte, error) {
	if err := checkAtRestIDs([]byte(kekID), owner, blobID); err != nil {
		return nil, err
	}
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("%w: data key is %d bytes", ErrCorrupt, len(dataKey))
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	return sealBox(make([]byte, 0, WrappedDataKeySize), aead, dataKey, dataKeyAD(kekID, owner, blobID)), nil
}

// UnwrapDataKey reverses WrapDataKey.
func UnwrapDataKey(kek []byte, kekID string, owner, blobID, wrapped []byte) ([]byte, error) {
	if err := checkAtRestIDs([]byte(kekID), owner, blobID); err != nil {
		return nil, err
	}
	if len(wrapped) != WrappedDataKeySize {
		return nil, fmt.Errorf("%w: wrapped data key is %d bytes", ErrCorrupt, len(wrapped))
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	return openBox(nil, aead, wrapped, dataKeyAD(kekID, owner, blobID))
}

func atRestAD(owner, blobID []byte) []byte {
	return newAD(domainAtRest, 4+len(owner)+len(blobID)).lenBytes(owner).lenBytes(blobID)
}

// SealAtRest appends the at-rest sealing of plain under dataKey to dst.
func SealAtRest(dst, dataKey, owner, blobID, plain []byte) ([]byte, error) {
	if err := checkAtRestIDs(owner, blobID); err != nil {
		return nil, err
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	return sealBox(dst, aead, plain, atRestAD(owner, blobID)), nil
}

// OpenAtRest appends the plaintext of an at-rest blob to dst. A blob from
// another owner or ID, or with any changed bit, fails with
// ErrAuthentication.
func OpenAtRest(dst, dataKey, owner, blobID, sealed []byte) ([]byte, error) {
	if err := checkAtRestIDs(owner, blobID); err != nil {
		return nil, err
	}
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	return openBox(dst, aead, sealed, atRestAD(owner, blobID))
}
