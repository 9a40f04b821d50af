package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/meta"
)

// Progress receives the running count of items a maintenance job handled.
// It is called from the job's goroutine.
type Progress func(done int64)

// Damage is one problem scrub found.
type Damage struct {
	Account string
	What    string // "chunk", "manifest", "transfer key"
	ID      string // hex chunk or inode ID
	Problem string // "missing", "damaged", "wrong size", "key unavailable"
}

func (d Damage) String() string {
	if d.ID == "" {
		return fmt.Sprintf("%s: %s %s", d.Account, d.What, d.Problem)
	}
	return fmt.Sprintf("%s: %s %s %s", d.Account, d.What, d.ID, d.Problem)
}

// accountNames resolves account IDs for maintenance jobs, which see rows of
// every account.
type accountNames struct {
	st    meta.Store
	names map[int64]string
}

func (a *accountNames) name(ctx context.Context, id int64) (string, error) {
	if n, ok := a.names[id]; ok {
		return n, nil
	}
	acct, err := a.st.GetAccountByID(ctx, id)
	if err != nil {
		return "", err
	}
	if a.names == nil {
		a.names = map[int64]string{}
	}
	a.names[id] = acct.Name
	return acct.Name, nil
}

// sealedOwnerID is the at-rest (owner, blob ID) of a stored Sealed value.
func sealedOwnerID(ctx context.Context, names *accountNames, ref meta.SealedRef) (owner, id []byte, err error) {
	n, err := names.name(ctx, ref.Key.Account)
	if err != nil {
		return nil, nil, err
	}
	switch ref.Kind {
	case meta.SealedManifest:
		return []byte(n), manifestID(ref.Key.ID), nil
	case meta.SealedTransferKey:
		return []byte(n), transferKeyID, nil
	case meta.SealedChunkKey:
		return []byte(n), append([]byte(nil), ref.Key.ID[:]...), nil
	}
	return nil, nil, fmt.Errorf("unknown sealed kind %v", ref.Kind)
}

func classify(err error) string {
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return "missing"
	case errors.Is(err, crypto.ErrAuthentication), errors.Is(err, crypto.ErrCorrupt):
		return "damaged"
	default:
		return "unreadable: " + err.Error()
	}
}

// Scrub checks every stored chunk, blob or inline value, against its
// at-rest tag and its recorded size, and every manifest and transfer key
// against theirs, without any client key. It returns what is damaged or
// missing.
func Scrub(ctx context.Context, st meta.Store, store *atrest.Store, progress Progress) ([]Damage, error) {
	var damage []Damage
	var done int64
	var after meta.RowKey
	for {
		batch, err := st.ListChunks(ctx, after, 500)
		if err != nil {
			return damage, err
		}
		if len(batch) == 0 {
			break
		}
		for _, c := range batch {
			after = c.Key()
			body, release, _, err := openChunk(ctx, st, store, c.Account, c.AccountName, c.ChunkRecord)
			size := int64(len(body))
			release()
			if errors.Is(err, blob.ErrNotFound) {
				if _, gerr := st.GetChunk(ctx, c.Account, c.ID); errors.Is(gerr, meta.ErrNotFound) {
					continue // collected since it was listed
				}
			}
			switch {
			case err != nil:
				damage = append(damage, Damage{c.AccountName, "chunk", crypto.ID(c.ID).String(), classify(err)})
			case size != c.Size:
				damage = append(damage, Damage{c.AccountName, "chunk", crypto.ID(c.ID).String(), "wrong size"})
			}
			done++
			if progress != nil {
				progress(done)
			}
		}
	}
	names := &accountNames{st: st}
	for _, kind := range []meta.SealedKind{meta.SealedManifest, meta.SealedTransferKey} {
		var after meta.RowKey
		for {
			// No KEK has the empty ID, so this lists every value.
			batch, err := st.StaleSealed(ctx, kind, "", after, 500)
			if err != nil {
				return damage, err
			}
			if len(batch) == 0 {
				break
			}
			for _, ref := range batch {
				after = ref.Key
				owner, id, err := sealedOwnerID(ctx, names, ref)
				if err == nil {
					_, err = store.OpenValue(owner, id, ref.Value.Data, atrest.Wrapped{KEKID: ref.Value.KEKID, WrappedKey: ref.Value.WrappedKey})
				}
				if err != nil {
					idStr := ""
					if kind == meta.SealedManifest {
						idStr = crypto.ID(ref.Key.ID).String()
					}
					damage = append(damage, Damage{string(owner), kind.String(), idStr, classify(err)})
				}
				done++
				if progress != nil {
					progress(done)
				}
			}
		}
	}
	return damage, nil
}

// Keyring is what key rotation needs of the keyring.
type Keyring interface {
	atrest.Keys
	Rotate() (string, error)
	Remove(id string) error
	KeyIDs() []string
}

// RotateKey makes a new KEK current, waits settle (keyring.SettleTime in
// production) so every server process wraps under it, rewraps every data key
// still wrapped by an older KEK, and deletes each older KEK once nothing
// references it. Without reencrypt, chunks (blobs and inline values alike)
// are never rewritten: a rewrap changes only the wrapped key in the
// metadata. With reencrypt every chunk, manifest and transfer key is
// re-sealed under a fresh data key instead. A crash leaves every key that
// is still referenced; running it again finishes.
func RotateKey(ctx context.Context, st meta.Store, store *atrest.Store, kr Keyring, settle time.Duration, reencrypt bool, progress Progress) (newID string, err error) {
	newID, err = kr.Rotate()
	if err != nil {
		return "", err
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return newID, ctx.Err()
	}
	names := &accountNames{st: st}
	var done int64
	for {
		for _, kind := range []meta.SealedKind{meta.SealedChunkKey, meta.SealedManifest, meta.SealedTransferKey} {
			if err := rewrapKind(ctx, st, store, names, kind, newID, reencrypt, &done, progress); err != nil {
				return newID, err
			}
		}
		left := int64(0)
		for _, id := range kr.KeyIDs() {
			if id == newID {
				continue
			}
			n, err := st.KEKReferences(ctx, id)
			if err != nil {
				return newID, err
			}
			if n == 0 {
				if err := kr.Remove(id); err != nil {
					return newID, err
				}
			}
			left += n
		}
		if left == 0 {
			return newID, nil
		}
	}
}

func rewrapKind(ctx context.Context, st meta.Store, store *atrest.Store, names *accountNames, kind meta.SealedKind, current string, reencrypt bool, done *int64, progress Progress) error {
	var after meta.RowKey
	for {
		batch, err := st.StaleSealed(ctx, kind, current, after, 500)
		if err != nil || len(batch) == 0 {
			return err
		}
		for _, ref := range batch {
			after = ref.Key
			owner, id, err := sealedOwnerID(ctx, names, ref)
			if err != nil {
				return err
			}
			old := atrest.Wrapped{KEKID: ref.Value.KEKID, WrappedKey: ref.Value.WrappedKey}
			if reencrypt && kind == meta.SealedChunkKey {
				if err := reencryptChunk(ctx, st, store, ref, owner, old); err != nil {
					return err
				}
				*done++
				if progress != nil {
					progress(*done)
				}
				continue
			}
			var next meta.Sealed
			if reencrypt {
				plain, err := store.OpenValue(owner, id, ref.Value.Data, old)
				if err != nil {
					return fmt.Errorf("re-encrypting %s: %w", kind, err)
				}
				data, w, err := store.SealValue(owner, id, plain)
				if err != nil {
					return err
				}
				next = meta.Sealed{Data: data, KEKID: w.KEKID, WrappedKey: w.WrappedKey}
			} else {
				w, err := store.Rewrap(old, owner, id)
				if err != nil {
					return fmt.Errorf("rewrapping %s: %w", kind, err)
				}
				next = meta.Sealed{Data: ref.Value.Data, KEKID: w.KEKID, WrappedKey: w.WrappedKey}
			}
			err = st.Rewrap(ctx, ref, next)
			if err != nil && !errors.Is(err, meta.ErrVersionMismatch) && !errors.Is(err, meta.ErrNotFound) {
				return err
			}
			// A changed or deleted row is either gone or was rewritten by a
			// server under the new key; the reference count loop catches
			// anything else.
			*done++
			if progress != nil {
				progress(*done)
			}
		}
	}
}

// reencryptChunk writes a chunk's blob again under a fresh data key and the
// current KEK, into a new blob, points the record at it, and only then
// deletes the old blob: a crash in between leaves an unreferenced blob,
// never a record whose key does not open its blob. An inline chunk is
// re-sealed and replaced in its record, value and key in one update.
func reencryptChunk(ctx context.Context, st meta.Store, store *atrest.Store, ref meta.SealedRef, owner []byte, old atrest.Wrapped) error {
	rec, err := st.GetChunk(ctx, ref.Key.Account, ref.Key.ID)
	if errors.Is(err, meta.ErrNotFound) {
		return nil // collected meanwhile
	}
	if err != nil {
		return err
	}
	if rec.BlobKey == "" {
		return reencryptInline(ctx, st, store, rec, ref, owner)
	}
	newKey := newBlobKey()
	w, err := store.Reencrypt(ctx, owner, ref.Key.ID[:], rec.BlobKey, newKey, old)
	if err != nil {
		return fmt.Errorf("re-encrypting chunk %x: %w", ref.Key.ID, err)
	}
	err = st.ReplaceChunkBlob(ctx, ref.Key.Account, ref.Key.ID, rec.BlobKey, ref.Value, newKey,
		meta.Sealed{KEKID: w.KEKID, WrappedKey: w.WrappedKey})
	if err != nil {
		store.Delete(context.WithoutCancel(ctx), newKey)
		if errors.Is(err, meta.ErrVersionMismatch) || errors.Is(err, meta.ErrNotFound) {
			return nil // changed or gone meanwhile: the count loop catches a leftover
		}
		return err
	}
	return store.Delete(ctx, rec.BlobKey)
}

// reencryptInline re-seals an inline chunk's value under a fresh data key
// and the current KEK. The replacement is conditional on the value and the
// key read, which open each other, so the record never holds a key that
// does not open its value.
func reencryptInline(ctx context.Context, st meta.Store, store *atrest.Store, rec meta.ChunkRecord, ref meta.SealedRef, owner []byte) error {
	if rec.KEKID != ref.Value.KEKID || !bytes.Equal(rec.WrappedKey, ref.Value.WrappedKey) {
		return nil // changed since it was listed: the count loop catches a leftover
	}
	old := meta.Sealed{Data: rec.Inline, KEKID: rec.KEKID, WrappedKey: rec.WrappedKey}
	plain, err := store.OpenValue(owner, rec.ID[:], rec.Inline, atrest.Wrapped{KEKID: rec.KEKID, WrappedKey: rec.WrappedKey})
	if err != nil {
		return fmt.Errorf("re-encrypting chunk %x: %w", rec.ID, err)
	}
	data, w, err := store.SealValue(owner, rec.ID[:], plain)
	clear(plain)
	if err != nil {
		return err
	}
	err = st.ReplaceInlineChunk(ctx, ref.Key.Account, rec.ID, old, meta.Sealed{Data: data, KEKID: w.KEKID, WrappedKey: w.WrappedKey})
	if errors.Is(err, meta.ErrVersionMismatch) || errors.Is(err, meta.ErrNotFound) {
		return nil // changed or gone meanwhile: the count loop catches a leftover
	}
	return err
}
