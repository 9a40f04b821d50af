// Package keyring keeps the server's key-encryption keys (KEKs): the keys
// that wrap the per-blob data keys of the at-rest envelope. Rotating a KEK
// rewraps small data keys in the metadata and never rewrites blobs.
//
// The keyring is a JSON file, mode 0600, holding the current key's ID and
// every key still referenced:
//
//	{"version": 1, "current": "k-3fa9c2e1",
//	 "keys": [{"id": "k-3fa9c2e1", "key": "<base64, 32 bytes>", "created": "…"}]}
//
// It may sit apart from the data (on another disk, say), so that a stolen
// data disk alone opens nothing. A file that group or others may access is
// refused, as ssh refuses such private keys.
//
// # Several processes, one file
//
// The server reads the keyring while an admin command (sealfs server
// rotate-key) changes it. Writers take an exclusive flock on PATH.lock, read
// the file afresh, and replace it atomically (temporary file, fsync, rename,
// directory fsync), so two admin commands cannot lose each other's changes
// and a reader sees one whole version. Readers stat the file at most every
// ReloadInterval and re-read it when it changed; asked for a key ID they do
// not know, they check at once. A process that cannot confirm its view of
// the file for MaxStale stops handing out the current key (ErrStale) rather
// than wrap new data keys under one that may have been retired.
//
// # Rotation protocol
//
// Removing a KEK that still wraps a data key would destroy that blob, so
// rotate-key runs these steps, in order:
//
//  1. Rotate: add a new random key and make it current.
//  2. Wait SettleTime. By then every server process has either reloaded and
//     wraps new data keys under the new key, or has been refusing to wrap
//     for a while (ErrStale), and writes that picked the old key just before
//     the rotation have committed their references.
//  3. Rewrap every reference to the old key in the metadata under the new
//     one (server/meta; atrest.Store.Rewrap does one). Blobs are untouched.
//  4. Count references to the old key again. If any appeared (a slow
//     straggler), go back to 3. Only a count of zero ends the loop.
//  5. Remove the old key.
//
// A crash anywhere leaves a keyring that still holds every key some
// reference needs; rerunning the command finishes the job.
package keyring

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Timing of the multi-process protocol described in the package doc.
const (
	// ReloadInterval is how often, at most, a process stats the file to
	// notice another process's change.
	ReloadInterval = 500 * time.Millisecond
	// MaxStale is how long a process keeps handing out its current key when
	// it cannot confirm the file; after that Current fails with ErrStale.
	MaxStale = 5 * time.Second
	// SettleTime is how long rotate-key waits after Rotate before rewrapping:
	// MaxStale plus a wide margin for writes in flight, which pick the KEK
	// just before sealing and commit their reference soon after.
	SettleTime = 30 * time.Second
)

// Errors for errors.Is.
var (
	// ErrUnknownKey means no key with that ID is in the keyring: it was
	// removed, or the reference is corrupt.
	ErrUnknownKey = errors.New("keyring: unknown key ID")
	// ErrCurrentKey means an attempt to remove the current key, which would
	// leave nothing to wrap new data keys under.
	ErrCurrentKey = errors.New("keyring: cannot remove the current key")
	// ErrInsecurePermissions means the keyring file is accessible by group
	// or others.
	ErrInsecurePermissions = errors.New("keyring: insecure file permissions")
	// ErrStale means this process could not confirm the keyring file for
	// longer than MaxStale, so its current key may have been retired.
	ErrStale = errors.New("keyring: keyring file could not be re-read")
)

// Keyring is a process's view of a keyring file. It is safe for concurrent
// use; Current and Key are lock-free between reloads.
type Keyring struct {
	path     string
	lockPath string

	// reloadInterval and maxStale are ReloadInterval and MaxStale, held per
	// instance so tests can shrink them.
	reloadInterval time.Duration
	maxStale       time.Duration

	epoch   time.Time // origin of the monotonic times below
	state   atomic.Pointer[state]
	checked atomic.Int64 // time of the last check of the file, ns since epoch
	okAt    atomic.Int64 // time the file last matched state, ns since epoch

	mu      sync.Mutex // serializes checks and writes within the process
	lastErr error      // why the last check failed, nil if it did not; under mu
}

// state is one parsed version of the file. It is never modified once
// published, so readers need no lock.
type state struct {
	id      fileID
	current string
	keys    map[string][]byte
	infos   []KeyInfo
}

// KeyInfo describes a key without revealing it, for listings.
type KeyInfo struct {
	ID      string
	Created time.Time
	Current bool
}

// Open opens the keyring at path. If the file does not exist and create is
// true, it is created with one fresh key; otherwise a missing file is an
// error for which errors.Is(err, fs.ErrNotExist) holds. The directory must
// exist: creating it here could give it the wrong owner or mode.
func Open(path string, create bool) (*Keyring, error) {
	k := &Keyring{
		path:           path,
		lockPath:       path + ".lock",
		reloadInterval: ReloadInterval,
		maxStale:       MaxStale,
		epoch:          time.Now(),
	}
	d, id, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		d, id, err = k.create()
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k.publish(d, id)
	return k, nil
}

// create writes a keyring with one key, unless another process created one
// first, in which case that one is read.
func (k *Keyring) create() (*fileData, fileID, error) {
	unlock, err := lockFile(k.lockPath)
	if err != nil {
		return nil, fileID{}, err
	}
	defer unlock()
	d, id, err := readFile(k.path)
	if !errors.Is(err, fs.ErrNotExist) {
		return d, id, err
	}
	d = &fileData{Version: formatVersion}
	d.addKey(time.Now())
	id, err = writeFile(k.path, d)
	return d, id, err
}

// Path returns the keyring file's path.
func (k *Keyring) Path() string { return k.path }

func (k *Keyring) now() int64 { return int64(time.Since(k.epoch)) }

// publish makes d the state readers see and marks it confirmed now.
func (k *Keyring) publish(d *fileData, id fileID) {
	s := &state{id: id, current: d.Current, keys: make(map[string][]byte, len(d.Keys))}
	for _, e := range d.Keys {
		s.keys[e.ID] = e.Key
		s.infos = append(s.infos, KeyInfo{ID: e.ID, Created: e.Created, Current: e.ID == d.Current})
	}
	k.state.Store(s)
	now := k.now()
	k.checked.Store(now)
	k.okAt.Store(now)
}

// refresh checks the file if the last check is older than the reload
// interval, or always if force is set.
func (k *Keyring) refresh(force bool) {
	if !force && k.now()-k.checked.Load() < int64(k.reloadInterval) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !force && k.now()-k.checked.Load() < int64(k.reloadInterval) {
		return // another goroutine checked while this one waited
	}
	k.lastErr = k.check()
}

// check stats the file and re-reads it if it changed; k.mu is held. On
// failure the previous state stays in use and okAt is not advanced.
func (k *Keyring) check() error {
	k.checked.Store(k.now())
	fi, err := os.Stat(k.path)
	if err != nil {
		return err
	}
	if fileIDOf(fi) == k.state.Load().id {
		k.okAt.Store(k.now())
		return nil
	}
	d, id, err := readFile(k.path)
	if err != nil {
		return err
	}
	k.publish(d, id)
	return nil
}

// Reload checks the file now and reports why it could not be read, if so.
// Callers need not call it; it serves a SIGHUP handler and admin commands
// that want a definite answer.
func (k *Keyring) Reload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastErr = k.check()
	if k.lastErr != nil {
		return fmt.Errorf("keyring: %w", k.lastErr)
	}
	return nil
}

// Current returns the key new data keys must be wrapped under, with its ID.
// It fails with ErrStale when the file could not be confirmed for MaxStale;
// see the package doc for why wrapping must stop then. The key must not be
// modified.
func (k *Keyring) Current() (id string, key []byte, err error) {
	k.refresh(false)
	if k.now()-k.okAt.Load() > int64(k.maxStale) {
		k.mu.Lock()
		cause := k.lastErr
		k.mu.Unlock()
		return "", nil, fmt.Errorf("%w: %s: %v", ErrStale, k.path, cause)
	}
	s := k.state.Load()
	return s.current, s.keys[s.current], nil
}

// Key returns the key with the given ID, for unwrapping. An ID not in the
// loaded state triggers an immediate check of the file, since another
// process may have just rotated. The key must not be modified.
func (k *Keyring) Key(id string) ([]byte, error) {
	k.refresh(false)
	if key, ok := k.state.Load().keys[id]; ok {
		return key, nil
	}
	k.refresh(true)
	if key, ok := k.state.Load().keys[id]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKey, id)
}

// Keys lists the keys in the order they were added.
func (k *Keyring) Keys() []KeyInfo {
	k.refresh(false)
	return slices.Clone(k.state.Load().infos)
}

// Rotate adds a new random key, makes it current and returns its ID. It is
// step 1 of the rotation protocol in the package doc.
func (k *Keyring) Rotate() (string, error) {
	var newID string
	err := k.modify(func(d *fileData) error {
		newID = d.addKey(time.Now())
		return nil
	})
	if err != nil {
		return "", err
	}
	return newID, nil
}

// Remove deletes the key with the given ID. It refuses the current key
// (ErrCurrentKey). The caller must have established that no reference uses
// the key any more (steps 2 to 4 of the rotation protocol); the keyring
// cannot know.
func (k *Keyring) Remove(id string) error {
	return k.modify(func(d *fileData) error {
		i := slices.IndexFunc(d.Keys, func(e fileEntry) bool { return e.ID == id })
		switch {
		case i < 0:
			return fmt.Errorf("%w: %q", ErrUnknownKey, id)
		case id == d.Current:
			return fmt.Errorf("%w: %q", ErrCurrentKey, id)
		}
		d.Keys = slices.Delete(d.Keys, i, i+1)
		return nil
	})
}

// modify applies fn to the file's current contents under the writers' lock
// and writes the result, so concurrent writers in any process (goroutines
// of this one included: each locks through its own descriptor) serialize
// and none works from a stale copy. Readers are not held up meanwhile.
func (k *Keyring) modify(fn func(*fileData) error) error {
	unlock, err := lockFile(k.lockPath)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	defer unlock()
	d, _, err := readFile(k.path)
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := fn(d); err != nil {
		return err
	}
	if err := d.validate(); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	id, err := writeFile(k.path, d)
	if err != nil {
		return fmt.Errorf("keyring: write %s: %w", k.path, err)
	}
	// Publishing under mu orders this after any check that read the
	// previous version, so the older state cannot overwrite the newer.
	k.mu.Lock()
	k.publish(d, id)
	k.lastErr = nil
	k.mu.Unlock()
	return nil
}
