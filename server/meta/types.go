package meta

import (
	"fmt"
	"time"
)

// ID identifies an inode or a chunk within one account. Clients choose IDs at
// random, so they are unique per account but not across accounts, and every
// row is keyed by (account, ID). The zero ID names the root directory that
// every account gets at creation. ID is an alias, not a defined type, so that
// crypto.ID values convert without ceremony.
type ID = [16]byte

// Limits on opaque values. They bound what one request can make the server
// store; anything larger fails with ErrTooLarge.
const (
	// NameIndexSize is the exact size of a blind name index (HMAC-SHA256).
	NameIndexSize = 32
	// MaxSealedSize bounds sealed names, sealed attributes and sealed
	// symlink targets, which are small by nature.
	MaxSealedSize = 8 << 10
	// MaxManifestSize bounds a file's manifest, which grows with its chunk
	// count by 48 bytes a chunk: the 96 MiB of a file of the format's
	// 2^21 chunks (2 TiB in 1 MiB chunks), sealed once by the client and
	// once at rest. (It was 32 MiB, which refused files over 682 GiB that
	// the client had accepted.)
	MaxManifestSize = 100 << 20
	// MaxXattrsSize bounds an inode's sealed extended attribute set: the
	// 64 KiB a Linux attribute value may hold, plus names and sealing.
	MaxXattrsSize = 80 << 10
	// MaxInlineSize bounds a chunk's Inline value: the server stores
	// chunks of up to 64 KiB inline, and the at-rest envelope adds a few
	// dozen bytes.
	MaxInlineSize = 65 << 10
	// MaxKeyFieldSize bounds each piece of account key material and settings
	// (auth hash, KDF and layout JSON, wrapped keys, the transfer key).
	MaxKeyFieldSize = 64 << 10
	// MaxAccountName bounds account names in bytes.
	MaxAccountName = 255
	// MaxPage bounds every listing page, so that no single call holds a
	// read transaction open for long.
	MaxPage = 10000
)

// InodeType is the kind of an inode; the values are part of the schema.
type InodeType uint8

// Inode types.
const (
	TypeFile    InodeType = 1
	TypeDir     InodeType = 2
	TypeSymlink InodeType = 3
)

// String returns the type's lower-case name, for messages.
func (t InodeType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("InodeType(%d)", uint8(t))
}

func (t InodeType) valid() bool { return t >= TypeFile && t <= TypeSymlink }

// Sealed is a value the server encrypts at rest under a data key of its own,
// which is stored wrapped by the KEK named KEKID. The store never interprets
// it; it keeps the three parts together so a rotation can rewrap the key (and
// re-encrypt Data) without touching anything else. For chunk data keys Data
// is always nil: the bytes live in the blob store or, for an inline chunk,
// in its record (see ReplaceInlineChunk).
type Sealed struct {
	Data       []byte
	KEKID      string
	WrappedKey []byte
}

// Inode is the server's view of a file, directory or symbolic link. Version
// starts at 1 and grows by one with every change to the row (attributes,
// content, link count, and for directories their entries), which is what
// conditional requests and client caches compare.
type Inode struct {
	ID      ID
	Type    InodeType
	Version int64
	// Nlink counts the directory entries that name the inode; directories
	// always have exactly one (the root has one by convention).
	Nlink int64
	Attr  []byte
	// Symlink is the sealed target of a symbolic link and nil otherwise.
	Symlink []byte
	// Manifest is the current committed content of a file, nil until the
	// first commit and for other types.
	Manifest *Sealed
	// Size is the sum of the sealed sizes of the chunks at each position of
	// the committed content, the only size the server can know.
	Size      int64
	ChangedAt time.Time
	// Xattrs is the sealed extended attribute set, nil when it has none.
	Xattrs []byte
	// ParentVersion, set by Create only, is the version the parent
	// directory has after the creation, so that a client that knew the
	// one before need not fetch the directory again to change it.
	ParentVersion int64
}

// Entry is one name in a directory.
type Entry struct {
	Parent     ID
	NameIndex  []byte
	SealedName []byte
	Child      ID
}

// DirEntry is a directory entry together with the inode it names, so that a
// listing needs no further lookups.
type DirEntry struct {
	Entry
	Inode Inode
}

// NewInode describes an inode to create.
type NewInode struct {
	ID   ID
	Type InodeType
	Attr []byte
	// Symlink is required for TypeSymlink and must be empty otherwise.
	Symlink []byte
}

// FileContent is a committed version of a file: the manifest the server
// keeps sealed at rest and the chunk at each position, which the store uses
// for reference counting and usage.
type FileContent struct {
	Manifest Sealed
	Chunks   []ChunkPos
	// NewChunks are recorded in the same transaction, as PutChunk would,
	// before the references are checked: a small file's chunk, entry and
	// manifest then cost one durable write.
	NewChunks []ChunkRecord
}

// ChunkPos places a chunk at an index of a file.
type ChunkPos struct {
	Index uint64
	ID    ID
}

// CreateRequest creates an inode and its first directory entry.
type CreateRequest struct {
	Parent     ID
	NameIndex  []byte
	SealedName []byte
	Inode      NewInode
	// Content, for files only, commits the first version in the same
	// transaction, so a small file costs one durable write instead of two.
	Content *FileContent
}

// LinkRequest adds a name for an existing non-directory inode.
type LinkRequest struct {
	Parent     ID
	NameIndex  []byte
	SealedName []byte
	Target     ID
}

// UnlinkMode selects between unlink(2) and rmdir(2) semantics, because the
// server, not the client, knows the current type of the named inode.
type UnlinkMode uint8

// Unlink modes.
const (
	// UnlinkFile removes a name of a non-directory (ErrIsDir otherwise).
	UnlinkFile UnlinkMode = iota
	// UnlinkDir removes an empty directory (ErrNotDir, ErrNotEmpty).
	UnlinkDir
)

// RenameFlag is the renameat2(2) flag of a rename.
type RenameFlag uint8

// Rename flags.
const (
	// RenameReplace replaces an existing destination (plain rename(2)).
	RenameReplace RenameFlag = iota
	// RenameNoReplace fails with ErrExists if the destination exists.
	RenameNoReplace
	// RenameExchange atomically swaps two existing entries.
	RenameExchange
)

// RenameRequest moves the entry (SrcParent, SrcIndex) to (DstParent,
// DstIndex). Sealed names are bound by the client to their parent, so the
// client supplies the sealed name each moved inode gets at its new place.
type RenameRequest struct {
	SrcParent ID
	SrcIndex  []byte
	DstParent ID
	DstIndex  []byte
	// NewSrcSealedName is stored in the entry at (DstParent, DstIndex),
	// which afterwards names the source inode.
	NewSrcSealedName []byte
	// NewDstSealedName, for RenameExchange only, is stored in the entry at
	// (SrcParent, SrcIndex), which afterwards names the former destination.
	NewDstSealedName []byte
	Flag             RenameFlag
	// SrcChild and DstChild, when not zero, are the inodes the client
	// believes the source and (for RenameExchange) the destination entry
	// name. A sealed name is bound to its inode, so moving an entry that
	// another client has since pointed at another inode would store a name
	// that no longer opens: the rename fails with ErrVersionMismatch
	// instead, and the client looks the name up again.
	SrcChild, DstChild ID
}

// CommitRequest makes new content the current version of a file.
type CommitRequest struct {
	File ID
	// IfVersion, when not 0, makes the commit conditional on the file's
	// current version (ErrVersionMismatch otherwise).
	IfVersion int64
	Manifest  Sealed
	// Attr replaces the file's attributes; nil keeps them.
	Attr   []byte
	Chunks []ChunkPos
	// NewChunks are recorded in the same transaction; see FileContent.
	NewChunks []ChunkRecord
}

// ChunkRecord is the metadata of one sealed chunk. Its bytes are stored
// either in the blob store under BlobKey or, for a small chunk, in the
// record itself as Inline; exactly one of the two is set. Either way they
// are encrypted at rest under a data key that WrappedKey holds wrapped by
// KEKID.
type ChunkRecord struct {
	ID ID
	// File and Index are where the client uploaded the chunk for; the
	// transfer MAC binds them, so a retry must repeat them exactly.
	File  ID
	Index uint64
	// Size is the sealed size of the chunk as the client sent it, before
	// at-rest encryption: what quotas and usage count.
	Size int64
	// BlobKey names the chunk's blob; it is empty for an inline chunk.
	BlobKey string
	// Inline is the chunk's bytes sealed at rest, at most MaxInlineSize,
	// for a chunk kept in the metadata store; nil for a blob.
	Inline     []byte
	KEKID      string
	WrappedKey []byte
	// MAC is the transfer MAC the chunk was uploaded with (optional): a
	// download answers with it instead of computing it again.
	MAC []byte
	// CreatedAt is set by the store; GC spares chunks younger than its
	// cutoff so that uploads in progress are not collected.
	CreatedAt time.Time
}

// StoredChunk is a chunk with its owner, as maintenance jobs see it.
type StoredChunk struct {
	Account     int64
	AccountName string
	ChunkRecord
}

// Key returns the chunk's position in an iteration.
func (c StoredChunk) Key() RowKey { return RowKey{Account: c.Account, ID: c.ID} }

// RowKey is a position in a server-wide iteration, ordered by account and
// then ID. The zero RowKey is before every row.
type RowKey struct {
	Account int64
	ID      ID
}

// AccountState is whether an account may be used.
type AccountState string

// Account states.
const (
	StateActive   AccountState = "active"
	StateDisabled AccountState = "disabled"
)

// Account is everything the server keeps about a user. Apart from the name,
// quota and state, every field is opaque to the store: the client derives and
// seals the keys, and the caller hashes the password.
type Account struct {
	ID                int64
	Name              string
	AuthHash          []byte
	KDF               string
	WrappedMaster     []byte
	AccountPub        []byte
	AccountPrivSealed []byte
	TransferKey       Sealed
	Layout            string
	// QuotaBytes limits UsedBytes; 0 means unlimited.
	QuotaBytes int64
	// UsedBytes is the sealed size of every chunk the account stores,
	// including chunks no longer referenced until GC removes them, because
	// that is what occupies the disk.
	UsedBytes int64
	State     AccountState
	CreatedAt time.Time
}

// NewAccount describes an account to create.
type NewAccount struct {
	Name              string
	AuthHash          []byte
	KDF               string
	WrappedMaster     []byte
	AccountPub        []byte
	AccountPrivSealed []byte
	TransferKey       Sealed
	Layout            string
	// QuotaBytes is ignored by RedeemInvite, where the invite sets it.
	QuotaBytes int64
	// RootAttr is the sealed attributes of the root directory, which is
	// created with the account.
	RootAttr []byte
}

// AccountSummary is the administrative view of an account.
type AccountSummary struct {
	ID         int64
	Name       string
	State      AccountState
	QuotaBytes int64
	UsedBytes  int64
	CreatedAt  time.Time
}

// Login is what a password change replaces: the verifier and the master key
// wrapped under the new password-derived key.
type Login struct {
	AuthHash      []byte
	KDF           string
	WrappedMaster []byte
}

// Invite lets one person create an account. The store keeps only a hash of
// the code, so a leaked database does not leak usable invites.
type Invite struct {
	CodeHash []byte
	// UserName, when not empty, is the only name the invite can create.
	UserName   string
	QuotaBytes int64
	ExpiresAt  time.Time
	CreatedAt  time.Time
	// UsedAt is zero until the invite is redeemed, by UsedBy.
	UsedAt time.Time
	UsedBy int64
}

// Session is a login session. The store keeps only a hash of the token, so
// a leaked database does not leak usable sessions.
type Session struct {
	TokenHash []byte
	AccountID int64
	CreatedAt time.Time
	ExpiresAt time.Time
	// Account is the session's account as GetSession read it in the same
	// query, so that authenticating a request costs one read; it is
	// ignored by CreateSession.
	Account Account
}

// SealedKind names one of the places where Sealed values are stored.
type SealedKind uint8

// Kinds of Sealed values.
const (
	// SealedManifest is the current manifest of a file; RowKey is the inode.
	SealedManifest SealedKind = iota + 1
	// SealedTransferKey is an account's transfer key; RowKey.ID is zero.
	SealedTransferKey
	// SealedChunkKey is a chunk's data key; Data is always nil, also
	// for an inline chunk, whose value a rewrap leaves as it is.
	SealedChunkKey
)

// String returns the kind's name, for messages.
func (k SealedKind) String() string {
	switch k {
	case SealedManifest:
		return "manifest"
	case SealedTransferKey:
		return "transfer key"
	case SealedChunkKey:
		return "chunk key"
	}
	return fmt.Sprintf("SealedKind(%d)", uint8(k))
}

// SealedRef is one stored Sealed value and where it lives. Rewrap takes it
// back to update the value only if it is still the one that was read.
type SealedRef struct {
	Kind  SealedKind
	Key   RowKey
	Value Sealed
}
