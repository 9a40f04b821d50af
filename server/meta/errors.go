package meta

import (
	"errors"
	"fmt"
)

// Errors returned by a Store. Each maps to one HTTP status (and, on the
// client, one errno), so an implementation must return exactly the one the
// method documents and wrap it (fmt.Errorf("%w: ...")) only to add detail.
var (
	// ErrNotFound: no such account, inode, entry, chunk, session or
	// invite for this account (also for another account's objects).
	ErrNotFound = errors.New("meta: not found")
	// ErrExists: the name, ID or account name is taken.
	ErrExists = errors.New("meta: already exists")
	// ErrNotEmpty: a directory to remove or replace has entries.
	ErrNotEmpty = errors.New("meta: directory not empty")
	// ErrNotDir: a directory was required (ENOTDIR).
	ErrNotDir = errors.New("meta: not a directory")
	// ErrIsDir: a non-directory was required (EISDIR).
	ErrIsDir = errors.New("meta: is a directory")
	// ErrInvalid: a malformed request, or a rename into its own subtree
	// (EINVAL).
	ErrInvalid = errors.New("meta: invalid argument")
	// ErrNotPermitted: an operation POSIX forbids, such as hard-linking a
	// directory, or acting for a disabled account (EPERM).
	ErrNotPermitted = errors.New("meta: operation not permitted")
	// ErrVersionMismatch: a conditional request lost a race (HTTP 412).
	ErrVersionMismatch = errors.New("meta: version mismatch")
	// ErrMissingChunks: a commit references chunks the account does not
	// have; the error is a *MissingChunksError listing them.
	ErrMissingChunks = errors.New("meta: missing chunks")
	// ErrQuota: storing the chunk would exceed the account's quota.
	ErrQuota = errors.New("meta: quota exceeded")
	// ErrInviteInvalid: the invite is unknown, used, expired or for
	// another name. One error for all, so codes cannot be probed.
	ErrInviteInvalid = errors.New("meta: invite invalid")
	// ErrTooLarge: an opaque value exceeds its limit.
	ErrTooLarge = errors.New("meta: value too large")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("meta: store closed")
	// ErrNoSpace: the database's disk is full; nothing of the failed change
	// was written, and reads still work.
	ErrNoSpace = errors.New("meta: no space left on the database's disk")
)

// MissingChunksError lists the chunks a commit referenced that the account
// does not store, so the client can upload exactly those and retry.
type MissingChunksError struct {
	IDs []ID
}

// Error implements error.
func (e *MissingChunksError) Error() string {
	switch len(e.IDs) {
	case 0:
		return ErrMissingChunks.Error()
	case 1:
		return fmt.Sprintf("meta: missing chunks: %x", e.IDs[0])
	}
	return fmt.Sprintf("meta: missing chunks: %d, first %x", len(e.IDs), e.IDs[0])
}

// Is makes errors.Is(err, ErrMissingChunks) hold.
func (e *MissingChunksError) Is(target error) bool { return target == ErrMissingChunks }

// VersionMismatchError is ErrVersionMismatch for a conditional change of an
// inode, carrying the inode's current version so that a client can tell
// what it lost to.
type VersionMismatchError struct {
	ID      ID
	Current int64
	Wanted  int64
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("%v: inode %x is at version %d, not %d", ErrVersionMismatch, e.ID, e.Current, e.Wanted)
}

// Is makes errors.Is(err, ErrVersionMismatch) hold.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }

// CurrentVersion is the inode's version when the change was refused.
func (e *VersionMismatchError) CurrentVersion() int64 { return e.Current }
