package keyring

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// formatVersion is the keyring file's format version; a file with another
// one is refused rather than half-understood.
const formatVersion = 1

// KeySize is the size of a key-encryption key.
const KeySize = 32

// maxFileSize bounds what is read as a keyring: thousands of keys fit, and
// a wrong path pointing at a huge file fails fast.
const maxFileSize = 1 << 20

// fileData is the JSON form of the keyring file.
type fileData struct {
	Version int         `json:"version"`
	Current string      `json:"current"`
	Keys    []fileEntry `json:"keys"`
}

type fileEntry struct {
	ID      string    `json:"id"`
	Key     []byte    `json:"key"` // encoding/json writes []byte as standard base64
	Created time.Time `json:"created"`
}

// fileID identifies one version of the keyring file without reading it.
// Writers replace the file by rename, so a new version has a new inode;
// size and modification time guard against inode reuse.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func fileIDOf(fi os.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return id
}

// newKeyID returns a short random ID such as "k-3fa9c2e1". IDs are part of
// the associated data of every wrapped data key, so they stay short; a
// collision within one keyring is checked by the caller.
func newKeyID() string {
	var b [4]byte
	rand.Read(b[:])
	return "k-" + hex.EncodeToString(b[:])
}

// validID accepts what newKeyID makes and a little more, so a hand-edited
// keyring with readable IDs still loads, while nothing odd can end up in
// logs, metadata or associated data.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (d *fileData) validate() error {
	if d.Version != formatVersion {
		return fmt.Errorf("unsupported keyring version %d (this build reads %d)", d.Version, formatVersion)
	}
	if len(d.Keys) == 0 {
		return errors.New("keyring has no keys")
	}
	seen := make(map[string]bool, len(d.Keys))
	for _, e := range d.Keys {
		if !validID(e.ID) {
			return fmt.Errorf("invalid key ID %q", e.ID)
		}
		if seen[e.ID] {
			return fmt.Errorf("duplicate key ID %q", e.ID)
		}
		seen[e.ID] = true
		if len(e.Key) != KeySize {
			return fmt.Errorf("key %s is %d bytes, want %d", e.ID, len(e.Key), KeySize)
		}
	}
	if !seen[d.Current] {
		return fmt.Errorf("current key %q is not in the keyring", d.Current)
	}
	return nil
}

// addKey appends a fresh random key and makes it current.
func (d *fileData) addKey(now time.Time) string {
	id := newKeyID()
	for slices.ContainsFunc(d.Keys, func(e fileEntry) bool { return e.ID == id }) {
		id = newKeyID()
	}
	key := make([]byte, KeySize)
	rand.Read(key)
	d.Keys = append(d.Keys, fileEntry{ID: id, Key: key, Created: now.UTC().Truncate(time.Second)})
	d.Current = id
	return id
}

// readFile reads and validates the keyring at path. It refuses a file that
// group or others may access, as ssh does with private keys: a keyring
// someone else could read protects nothing.
func readFile(path string) (*fileData, fileID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileID{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fileID{}, fmt.Errorf("keyring %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fileID{}, fmt.Errorf("%w: %s has mode %#o; it must not be accessible by group or others (chmod 600 %s)",
			ErrInsecurePermissions, path, perm, path)
	}
	if fi.Size() > maxFileSize {
		return nil, fileID{}, fmt.Errorf("keyring %s is %d bytes, more than a keyring can be", path, fi.Size())
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fileID{}, err
	}
	var d fileData
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fileID{}, fmt.Errorf("keyring %s: %w", path, err)
	}
	if err := d.validate(); err != nil {
		return nil, fileID{}, fmt.Errorf("keyring %s: %w", path, err)
	}
	return &d, fileIDOf(fi), nil
}

// writeFile atomically replaces the keyring at path: temporary file, fsync,
// rename, directory fsync. A reader sees the old or the new keyring, never
// a mix, and after a crash one of the two is there in full. The new file
// keeps the owner of the file it replaces, so a rotation run as root does
// not lock out a server running as its own user.
func writeFile(path string, d *fileData) (fileID, error) {
	raw, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fileID{}, err
	}
	raw = append(raw, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fileID{}, err
	}
	tmp := f.Name()
	fail := func(err error) (fileID, error) {
		f.Close()
		os.Remove(tmp)
		return fileID{}, err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if old, err := os.Stat(path); err == nil {
		st, ok := old.Sys().(*syscall.Stat_t)
		if ok && (int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid()) {
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return fail(fmt.Errorf("keep owner of %s: %w", path, err))
			}
		}
	}
	if _, err := f.Write(raw); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fileID{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fileID{}, err
	}
	if err := syncDir(dir); err != nil {
		return fileID{}, err
	}
	return fileIDOf(fi), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// lockFile takes an exclusive flock on the lock file beside the keyring,
// waiting for any other writer. The lock file is never removed: removing it
// would let two writers lock two different files of the same name.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the descriptor releases the lock.
	return func() { f.Close() }, nil
}
