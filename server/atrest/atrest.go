// Package atrest applies the server's at-rest envelope as a wrapper around
// a blob.Store, in the way restic layers features over its backend: callers
// hand it plaintext (which, for sealfs, is already client-encrypted) and it
// stores ciphertext under the server's own keys.
//
// Every blob is sealed under a fresh random data key, with the owner and the
// blob's ID as associated data, so a blob moved to another owner or ID does
// not open. The data key is wrapped under the keyring's current KEK and
// returned to the caller as a Wrapped, which belongs in the metadata next to
// the blob's reference. Rotating KEKs rewraps those small values (Rewrap)
// without reading or writing a single blob; Reencrypt exists for the rare
// case where a data key itself must be replaced.
//
// The same envelope seals small values kept in the database (SealValue,
// OpenValue). The envelope binds only owner and ID, so callers must keep
// the IDs of values and of blobs of one owner apart (for example by
// prefixing value IDs with their kind); otherwise a database writer could
// swap one for the other. The exception is content that may live in either
// place, such as a small chunk kept inline in the database: sealed under
// its blob ID as a value, it is byte for byte what its blob would hold.
package atrest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/server/blob"
)

// Keys provides KEKs. *keyring.Keyring implements it.
type Keys interface {
	// Current returns the KEK new data keys are wrapped under.
	Current() (id string, key []byte, err error)
	// Key returns the KEK with the given ID.
	Key(id string) ([]byte, error)
}

// Wrapped is a data key wrapped under a KEK: what the metadata stores for
// each blob or value so the server can open it again.
type Wrapped struct {
	KEKID      string // which KEK wraps the key; rotation looks for old IDs
	WrappedKey []byte // crypto.WrappedDataKeySize bytes
}

// Store seals blobs into a blob.Store under keys from a keyring. It is safe
// for concurrent use.
type Store struct {
	blobs blob.Store
	keys  Keys
}

// New returns a Store writing to blobs with KEKs from keys.
func New(blobs blob.Store, keys Keys) *Store {
	return &Store{blobs: blobs, keys: keys}
}

// sealedHeader is the part of a sealed blob before its GCM ciphertext
// (format version and nonce, per crypto/atrest.go). Opening in place into
// the buffer at that offset is the one overlap cipher.AEAD allows, which
// saves a copy of every blob read.
const sealedHeader = crypto.AtRestOverhead - crypto.TagSize

// poolMax bounds the buffers kept for reuse: chunks are at most a few MiB,
// and keeping larger buffers would pin memory after one odd large value.
const poolMax = 8<<20 + crypto.AtRestOverhead

// sealPool recycles ciphertext buffers between Puts, so a steady stream of
// 1 MiB chunks does not allocate 1 MiB per chunk. It only ever holds
// ciphertext, which blob.Store.Put does not retain after returning.
var sealPool sync.Pool

func getBuf(n int) []byte {
	if p, ok := sealPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]byte, 0, n)
}

func putBuf(b []byte) {
	if cap(b) <= poolMax {
		sealPool.Put(&b)
	}
}

// wrapNew makes a fresh data key and wraps it under the current KEK.
func (s *Store) wrapNew(owner, id []byte) (dataKey []byte, w Wrapped, err error) {
	kekID, kek, err := s.keys.Current()
	if err != nil {
		return nil, Wrapped{}, fmt.Errorf("atrest: %w", err)
	}
	dataKey = crypto.NewDataKey()
	wk, err := crypto.WrapDataKey(kek, kekID, owner, id, dataKey)
	if err != nil {
		return nil, Wrapped{}, fmt.Errorf("atrest: wrap data key: %w", err)
	}
	return dataKey, Wrapped{KEKID: kekID, WrappedKey: wk}, nil
}

// unwrap recovers the data key of w. A wrapped key moved to another owner or
// ID fails with crypto.ErrAuthentication.
func (s *Store) unwrap(owner, id []byte, w Wrapped) ([]byte, error) {
	kek, err := s.keys.Key(w.KEKID)
	if err != nil {
		return nil, fmt.Errorf("atrest: %w", err)
	}
	dataKey, err := crypto.UnwrapDataKey(kek, w.KEKID, owner, id, w.WrappedKey)
	if err != nil {
		return nil, fmt.Errorf("atrest: unwrap data key: %w", err)
	}
	return dataKey, nil
}

// Put seals plaintext under a fresh data key and stores it under key. The
// returned Wrapped must be recorded with the blob's reference; without it
// the blob cannot be opened. The plaintext is read once and the ciphertext
// written once, with no intermediate copy.
func (s *Store) Put(ctx context.Context, owner, blobID []byte, key string, plaintext []byte) (Wrapped, error) {
	dataKey, w, err := s.wrapNew(owner, blobID)
	if err != nil {
		return Wrapped{}, err
	}
	defer clear(dataKey)
	buf := getBuf(len(plaintext) + crypto.AtRestOverhead)
	sealed, err := crypto.SealAtRest(buf, dataKey, owner, blobID, plaintext)
	if err != nil {
		putBuf(buf)
		return Wrapped{}, fmt.Errorf("atrest: seal %s: %w", key, err)
	}
	err = s.blobs.Put(ctx, key, sealed)
	putBuf(sealed)
	if err != nil {
		return Wrapped{}, fmt.Errorf("atrest: %w", err)
	}
	return w, nil
}

// Get reads the blob stored under key and opens it. Any change to the
// stored bytes, or an owner, blob ID or Wrapped that does not belong to
// them, fails with an error wrapping crypto.ErrAuthentication; a missing
// blob with one wrapping blob.ErrNotFound. The plaintext is the caller's.
func (s *Store) Get(ctx context.Context, owner, blobID []byte, key string, w Wrapped) ([]byte, error) {
	plain, release, err := s.Lend(ctx, owner, blobID, key, w)
	if err != nil || release == nil {
		return plain, err
	}
	defer release()
	return bytes.Clone(plain), nil
}

// Lend is Get for a caller that is done with the plaintext soon: when the
// blob store lends its buffer (blob.Lender), the blob is opened in place
// and release gives the buffer back; the caller must not use plain after
// calling it. A nil release means plain is the caller's to keep.
func (s *Store) Lend(ctx context.Context, owner, blobID []byte, key string, w Wrapped) (plain []byte, release func(), err error) {
	dataKey, err := s.unwrap(owner, blobID, w)
	if err != nil {
		return nil, nil, err
	}
	defer clear(dataKey)
	var sealed []byte
	if l, ok := s.blobs.(blob.Lender); ok {
		sealed, release, err = l.Lend(ctx, key)
	} else {
		sealed, err = s.blobs.Get(ctx, key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("atrest: %w", err)
	}
	var dst []byte
	if len(sealed) >= crypto.AtRestOverhead {
		dst = sealed[sealedHeader:sealedHeader]
	}
	plain, err = crypto.OpenAtRest(dst, dataKey, owner, blobID, sealed)
	if err != nil {
		if release != nil {
			release()
		}
		return nil, nil, fmt.Errorf("atrest: open %s: %w", key, err)
	}
	return plain, release, nil
}

// Delete removes the blob stored under key; see blob.Store.Delete.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.blobs.Delete(ctx, key); err != nil {
		return fmt.Errorf("atrest: %w", err)
	}
	return nil
}

// Rewrap rewraps a data key under the current KEK without touching the
// blob, for KEK rotation. If w already uses the current KEK it is returned
// unchanged, so callers can skip the metadata update by comparing KEKIDs.
func (s *Store) Rewrap(w Wrapped, owner, blobID []byte) (Wrapped, error) {
	kekID, kek, err := s.keys.Current()
	if err != nil {
		return Wrapped{}, fmt.Errorf("atrest: %w", err)
	}
	if w.KEKID == kekID {
		// Still verify it, so a rotation pass also finds corrupt references.
		dataKey, err := s.unwrap(owner, blobID, w)
		clear(dataKey)
		return w, err
	}
	dataKey, err := s.unwrap(owner, blobID, w)
	if err != nil {
		return Wrapped{}, err
	}
	defer clear(dataKey)
	wk, err := crypto.WrapDataKey(kek, kekID, owner, blobID, dataKey)
	if err != nil {
		return Wrapped{}, fmt.Errorf("atrest: wrap data key: %w", err)
	}
	return Wrapped{KEKID: kekID, WrappedKey: wk}, nil
}

// Reencrypt re-seals the blob at oldKey under a fresh data key and stores
// it at newKey, leaving oldKey untouched. Writing beside the old blob rather
// over it is what makes it crash-safe: the metadata points at the old blob
// and its Wrapped until the caller commits newKey with the returned Wrapped,
// and only then deletes oldKey. Overwriting in place would leave a window in
// which the stored blob and the recorded data key disagree.
func (s *Store) Reencrypt(ctx context.Context, owner, blobID []byte, oldKey, newKey string, w Wrapped) (Wrapped, error) {
	if oldKey == newKey {
		return Wrapped{}, errors.New("atrest: reencrypt needs a new storage key, not the old one")
	}
	plain, err := s.Get(ctx, owner, blobID, oldKey, w)
	if err != nil {
		return Wrapped{}, err
	}
	nw, err := s.Put(ctx, owner, blobID, newKey, plain)
	clear(plain)
	return nw, err
}

// SealValue seals a small value kept in the database, such as a manifest
// or a transfer key, under a fresh data key. Store data and the Wrapped
// together; id must not collide with a blob ID of the same owner (see the
// package doc).
func (s *Store) SealValue(owner, id, plaintext []byte) ([]byte, Wrapped, error) {
	dataKey, w, err := s.wrapNew(owner, id)
	if err != nil {
		return nil, Wrapped{}, err
	}
	defer clear(dataKey)
	data, err := crypto.SealAtRest(make([]byte, 0, len(plaintext)+crypto.AtRestOverhead), dataKey, owner, id, plaintext)
	if err != nil {
		return nil, Wrapped{}, fmt.Errorf("atrest: seal value: %w", err)
	}
	return data, w, nil
}

// OpenValue opens what SealValue sealed. Tampering, or another owner or
// id, fails with an error wrapping crypto.ErrAuthentication.
func (s *Store) OpenValue(owner, id, data []byte, w Wrapped) ([]byte, error) {
	dataKey, err := s.unwrap(owner, id, w)
	if err != nil {
		return nil, err
	}
	defer clear(dataKey)
	plain, err := crypto.OpenAtRest(nil, dataKey, owner, id, data)
	if err != nil {
		return nil, fmt.Errorf("atrest: open value: %w", err)
	}
	return plain, nil
}
