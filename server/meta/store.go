package meta

import (
	"context"
	"time"
)

// Store is the server's metadata. Every method is safe for concurrent use,
// and every method that changes more than one row does so atomically: it
// either takes full effect, durably, before returning nil, or has no effect.
// A method that returns a context error has had no effect either.
//
// The account argument of the namespace and chunk methods is the ID of the
// authenticated account; the caller must have checked that it is active.
//
// Every method that changes a namespace (Create, Link, Unlink, Rename,
// SetAttr, Commit) records the change in the account's change feed in the
// same transaction, attributed to the client that WithOrigin put in its
// context; see Changes.
type Store interface {
	Accounts
	Sessions
	Namespace
	Chunks
	Changes
	Maintenance
	// Close waits for writes in progress and releases the store. Calls
	// after Close fail with ErrClosed.
	Close() error
}

// Accounts manages accounts and the invites that create them.
type Accounts interface {
	// CreateAccount creates an account and its root directory, without an
	// invite (for administrators). A taken name is ErrExists.
	CreateAccount(ctx context.Context, a NewAccount) (Account, error)
	// CreateInvite stores an invite; ExpiresAt is required, a reused code
	// hash is ErrExists.
	CreateInvite(ctx context.Context, inv Invite) error
	// ListInvites returns every invite, used ones included, by creation.
	ListInvites(ctx context.Context) ([]Invite, error)
	// DeleteInvite revokes an invite (ErrNotFound if unknown).
	DeleteInvite(ctx context.Context, codeHash []byte) error
	// RedeemInvite consumes the invite and creates the account with the
	// invite's quota in one transaction. An unknown, used or expired
	// invite, or one for another name, is ErrInviteInvalid; a taken name is
	// ErrExists and leaves the invite unused.
	RedeemInvite(ctx context.Context, codeHash []byte, a NewAccount) (Account, error)
	// GetAccount returns the account with that name.
	GetAccount(ctx context.Context, name string) (Account, error)
	// GetAccountByID returns the account with that ID, as sessions name it.
	GetAccountByID(ctx context.Context, id int64) (Account, error)
	// ListAccounts returns every account, by name.
	ListAccounts(ctx context.Context) ([]AccountSummary, error)
	// SetAccountState disables or re-enables an account. Disabling also
	// deletes its sessions, in the same transaction, so no request already
	// authenticated can outlive it by more than its own duration.
	SetAccountState(ctx context.Context, name string, disabled bool) error
	// UpdateLogin replaces the login secrets after a password change. It
	// keeps the sessions: the master key, and so the data, are unchanged.
	UpdateLogin(ctx context.Context, account int64, l Login) error
	// SetQuota sets the quota in bytes, 0 for none. Lowering it below the
	// usage is allowed and only makes further uploads fail.
	SetQuota(ctx context.Context, name string, quotaBytes int64) error
}

// Sessions manages login sessions.
type Sessions interface {
	// CreateSession stores a session; it is ErrNotPermitted if the account
	// is disabled, checked in the same transaction so that a concurrent
	// SetAccountState cannot be undone by a login racing with it.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns an unexpired session; an expired one is
	// ErrNotFound and is deleted.
	GetSession(ctx context.Context, tokenHash []byte) (Session, error)
	// DeleteSession deletes one session (logout); deleting an unknown one
	// is not an error, so logout is idempotent.
	DeleteSession(ctx context.Context, tokenHash []byte) error
	// DeleteSessions deletes every session of an account and returns how
	// many there were.
	DeleteSessions(ctx context.Context, account int64) (int64, error)
	// PurgeExpiredSessions deletes sessions that expired before now and
	// returns how many, to bound the table without relying on lookups.
	PurgeExpiredSessions(ctx context.Context) (int64, error)
}

// Namespace is the tree of each account: directories of sealed names,
// files and symbolic links. Parents are always directories: ErrNotFound if
// the parent does not exist, ErrNotDir if it is not a directory. Name
// indexes must be NameIndexSize bytes and sealed values non-empty (apart
// from attributes) and within MaxSealedSize, or ErrInvalid / ErrTooLarge.
// Every change to a directory's entries bumps its version.
type Namespace interface {
	// GetInode returns an inode.
	GetInode(ctx context.Context, account int64, id ID) (Inode, error)
	// Lookup returns the entry of a name and the inode it names.
	Lookup(ctx context.Context, account int64, parent ID, nameIndex []byte) (Entry, Inode, error)
	// ReadDir returns up to limit entries (MaxPage at most, a default
	// of 1000 if limit <= 0) with a name index after the given one (nil
	// for the first page), in name index order, and whether more follow.
	ReadDir(ctx context.Context, account int64, parent ID, after []byte, limit int) ([]DirEntry, bool, error)
	// Create makes an inode and names it. A taken name or inode ID is
	// ErrExists; the zero ID is reserved for the root (ErrInvalid).
	Create(ctx context.Context, account int64, r CreateRequest) (Inode, error)
	// Link adds a name for a non-directory (ErrNotPermitted for a
	// directory) and returns it with its new link count.
	Link(ctx context.Context, account int64, r LinkRequest) (Inode, error)
	// Unlink removes a name. The inode is deleted when no name is left,
	// and its chunks become garbage for GC. See UnlinkMode for the checks.
	Unlink(ctx context.Context, account int64, parent ID, nameIndex []byte, mode UnlinkMode) error
	// Rename is renameat2(2); see RenameFlag. Moving a directory into its
	// own subtree is ErrInvalid; renaming an entry onto itself, or onto
	// another name of the same inode, is a successful no-op.
	Rename(ctx context.Context, account int64, r RenameRequest) error
	// SetAttr replaces the sealed attributes, conditionally on ifVersion
	// unless it is 0, and returns the updated inode.
	SetAttr(ctx context.Context, account int64, id ID, ifVersion int64, attr []byte) (Inode, error)
	// SetXattrs replaces the sealed extended attribute set (empty: none),
	// conditionally on ifVersion like SetAttr, within MaxXattrsSize.
	SetXattrs(ctx context.Context, account int64, id ID, ifVersion int64, xattrs []byte) (Inode, error)
}

// Chunks records uploaded chunks and commits file versions that use them.
type Chunks interface {
	// PutChunk records a chunk whose blob has been stored, or an inline
	// chunk with its value, charging its size to the account (ErrQuota,
	// with nothing recorded, beyond the quota). It is idempotent: if the
	// chunk exists with the same file, index and size it returns the
	// stored record and false, and the caller should delete the blob it
	// just wrote if its key differs; if it exists with other values it is
	// ErrExists. It returns true when it created.
	PutChunk(ctx context.Context, account int64, c ChunkRecord) (ChunkRecord, bool, error)
	// GetChunk returns a chunk's record.
	GetChunk(ctx context.Context, account int64, id ID) (ChunkRecord, error)
	// HaveChunks reports, for each ID, whether the account stores it, so
	// an interrupted upload resumes with what is missing.
	HaveChunks(ctx context.Context, account int64, ids []ID) ([]bool, error)
	// Commit makes new content the current version of a file and returns
	// the updated inode. Every referenced chunk must exist for the account
	// (a *MissingChunksError otherwise). Until Commit returns nil, the
	// previous version stays whole and readable.
	Commit(ctx context.Context, account int64, r CommitRequest) (Inode, error)
}

// Changes is each account's change feed, which lets a client that caches
// entries and attributes hear of what other clients changed. Every change of
// a namespace takes the account's next seq (1, 2, 3... in commit order) and
// records a Change row for each inode it affected: Create, Link and Unlink
// the inode and its directory; Rename the moved inode in both directories,
// and a replaced or exchanged one in its directory or both; SetAttr and
// Commit the inode alone. A request that fails, or a rename that is a no-op,
// records nothing. Rows older than the retention are pruned (see
// PruneChanges), and a reader behind the pruning is told to reset.
type Changes interface {
	// ChangeSeq returns the account's current seq, 0 before its first
	// change: a new reader's starting cursor.
	ChangeSeq(ctx context.Context, account int64) (int64, error)
	// ChangesSince returns the changes after seq since (ErrInvalid if
	// negative), up to limit rows (MaxPage at most, a default of 1000 if
	// limit <= 0) but never part of a change: a page ends on a change's
	// last row, and a change with more rows than limit comes whole.
	ChangesSince(ctx context.Context, account int64, since int64, limit int) (ChangePage, error)
}

// Maintenance is what background jobs and administrators need: garbage
// collection, scrubbing and KEK rotation. It spans all accounts.
type Maintenance interface {
	// GarbageChunks returns up to limit chunks, oldest first, that no file
	// version references and that have been unreferenced (or, if never
	// referenced, stored) since before olderThan. The cutoff protects chunks
	// uploaded for a commit still in progress, and a replaced or unlinked
	// file's chunks that an open file on a mount may still read.
	GarbageChunks(ctx context.Context, olderThan time.Time, limit int) ([]StoredChunk, error)
	// DeleteChunk deletes a chunk's record, and credits its size back to
	// the account, only if it is still unreferenced; it reports whether it
	// did. The caller deletes the blob afterwards, and only then; an
	// inline chunk goes with its record.
	DeleteChunk(ctx context.Context, account int64, id ID) (bool, error)
	// ListChunks returns up to limit chunks of all accounts after the
	// given key, for scrubbing; pass the last Key to continue.
	ListChunks(ctx context.Context, after RowKey, limit int) ([]StoredChunk, error)
	// StaleSealed returns up to limit values of one kind, after the given
	// key, whose KEKID is not currentKEK; pass the last Key to continue.
	StaleSealed(ctx context.Context, kind SealedKind, currentKEK string, after RowKey, limit int) ([]SealedRef, error)
	// Rewrap replaces a value listed by StaleSealed, only if it still is
	// the one listed (ErrVersionMismatch otherwise, ErrNotFound if it is
	// gone). Chunk keys take no Data; other kinds require it, unchanged
	// when only the data key was rewrapped, new when re-encrypted.
	Rewrap(ctx context.Context, old SealedRef, value Sealed) error
	// ReplaceChunkBlob points a chunk at a re-encrypted copy of its blob,
	// only if the chunk still has the old blob key and wrapped key
	// (ErrVersionMismatch otherwise, ErrNotFound if it is gone). The caller
	// deletes the old blob afterwards, or the new one when this fails.
	ReplaceChunkBlob(ctx context.Context, account int64, id ID, oldBlobKey string, old Sealed, newBlobKey string, value Sealed) error
	// ReplaceInlineChunk replaces an inline chunk's value (Data) and data
	// key with a re-encryption of it, in one update and only if the chunk
	// still has the old value and wrapped key (ErrVersionMismatch
	// otherwise, also for a blob chunk; ErrNotFound if it is gone).
	ReplaceInlineChunk(ctx context.Context, account int64, id ID, old, value Sealed) error
	// KEKReferences counts the stored values wrapped by a KEK, which may be
	// destroyed only when the count is zero.
	KEKReferences(ctx context.Context, kekID string) (int64, error)
	// PruneChanges deletes, in every account, the change feed's rows of
	// changes made before olderThan and those beyond the newest keep rows,
	// whole changes at a time, and remembers the highest seq it deleted so
	// that ChangesSince below it answers Reset. It returns how many rows it
	// deleted.
	PruneChanges(ctx context.Context, olderThan time.Time, keep int) (int64, error)
}
