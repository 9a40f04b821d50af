package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
)

// Limits on what is sealed as a name or a symlink target. The server stores
// sealed names in its database, not as file names, so sealing costs no
// usable name length: a 255-byte name stays a 255-byte name.
const (
	MaxNameLen    = 1024
	MaxSymlinkLen = 4096
	// namePadUnit hides a name's exact length: sealed names reveal it only
	// to a multiple of 16 bytes.
	namePadUnit = 16
)

// NameIndexSize is the size of a blind index value.
const NameIndexSize = sha256.Size

// NameIndex is the keyed blind index of a directory entry:
// HMAC-SHA256(name index key, parentID || name). The server uses it to keep
// names unique in a directory and to answer lookups, without learning names.
func NameIndex(nameIndexKey []byte, parent ID, name string) [NameIndexSize]byte {
	h := hmac.New(sha256.New, nameIndexKey)
	h.Write(parent[:])
	h.Write([]byte(name))
	var out [NameIndexSize]byte
	h.Sum(out[:0])
	return out
}

func checkSealable(s string, limit int, what string) error {
	if len(s) == 0 || len(s) > limit {
		return fmt.Errorf("%w: %s of %d bytes", ErrCorrupt, what, len(s))
	}
	if bytes.IndexByte([]byte(s), 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrCorrupt, what)
	}
	return nil
}

// padded appends s and zeros up to a multiple of namePadUnit; NUL cannot
// occur in names or targets, so the padding is unambiguous.
func padded(s string) []byte {
	n := (len(s) + namePadUnit - 1) / namePadUnit * namePadUnit
	b := make([]byte, n)
	copy(b, s)
	return b
}

func unpad(b []byte, limit int, what string) (string, error) {
	if len(b) == 0 || len(b)%namePadUnit != 0 {
		return "", fmt.Errorf("%w: sealed %s has bad padding", ErrCorrupt, what)
	}
	s := string(bytes.TrimRight(b, "\x00"))
	if len(b)-len(s) >= namePadUnit {
		return "", fmt.Errorf("%w: sealed %s has bad padding", ErrCorrupt, what)
	}
	if err := checkSealable(s, limit, what); err != nil {
		return "", err
	}
	return s, nil
}

func nameAD(parent, file ID) []byte {
	return newAD(domainName, 2*IDSize).bytes(parent[:]).bytes(file[:])
}

// SealName seals a directory entry's name, bound to its parent directory and
// to the inode it names, so the server can neither read it nor make it show
// other content or appear in another directory.
func SealName(namesKey []byte, parent, file ID, name string) ([]byte, error) {
	if err := checkSealable(name, MaxNameLen, "name"); err != nil {
		return nil, err
	}
	aead, err := newGCM(namesKey)
	if err != nil {
		return nil, err
	}
	p := padded(name)
	return sealBox(make([]byte, 0, len(p)+BoxOverhead), aead, p, nameAD(parent, file)), nil
}

// OpenName opens a sealed name found under parent and pointing at file.
func OpenName(namesKey []byte, parent, file ID, sealed []byte) (string, error) {
	aead, err := newGCM(namesKey)
	if err != nil {
		return "", err
	}
	p, err := openBox(nil, aead, sealed, nameAD(parent, file))
	if err != nil {
		return "", err
	}
	return unpad(p, MaxNameLen, "name")
}

func symlinkAD(file ID) []byte { return newAD(domainSymlink, IDSize).bytes(file[:]) }

// SealSymlink seals a symlink's target, bound to the symlink's inode.
func SealSymlink(namesKey []byte, file ID, target string) ([]byte, error) {
	if err := checkSealable(target, MaxSymlinkLen, "symlink target"); err != nil {
		return nil, err
	}
	aead, err := newGCM(namesKey)
	if err != nil {
		return nil, err
	}
	p := padded(target)
	return sealBox(make([]byte, 0, len(p)+BoxOverhead), aead, p, symlinkAD(file)), nil
}

// OpenSymlink opens the sealed target of symlink file.
func OpenSymlink(namesKey []byte, file ID, sealed []byte) (string, error) {
	aead, err := newGCM(namesKey)
	if err != nil {
		return "", err
	}
	p, err := openBox(nil, aead, sealed, symlinkAD(file))
	if err != nil {
		return "", err
	}
	return unpad(p, MaxSymlinkLen, "symlink target")
}
