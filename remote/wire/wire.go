// Package wire holds the types of the sealfs HTTPS API that both the client
// (package remote) and the server encode and decode: request and response
// bodies, header names, error codes and limits. It is the executable half of
// docs/protocol.md and depends only on the standard library and crypto.
//
// []byte fields travel as standard base64 (encoding/json's default); IDs as
// 32 lower-case hex digits; name index values as 64 hex digits.
package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/sealfs/sealfs/crypto"
)

// APIPrefix is the path prefix of protocol version 1.
const APIPrefix = "/v1"

// Header names.
const (
	// HeaderMAC carries a chunk's transfer HMAC, hex, in both directions.
	HeaderMAC = "X-Sealfs-Mac"
	// HeaderIfMatch makes an update conditional on an inode version.
	HeaderIfMatch = "If-Match"
	// HeaderRetryAfter tells a throttled client when to try again.
	HeaderRetryAfter = "Retry-After"
	// HeaderClient carries the sending client process's random ID, 32
	// lower-case hex digits, on every request. The server records it as
	// the origin of the changes the request makes, so that a client can
	// tell its own changes from other clients' in the change feed.
	HeaderClient = "Sealfs-Client"
	// HeaderIdempotencyKey carries a random ID, 32 hex digits, that a
	// client sends unchanged with every attempt of one change (any method
	// but GET and HEAD). When an attempt's answer was lost on the way and
	// the client sends it again, the server answers with the first
	// attempt's answer instead of applying the change twice: a rename or
	// an exchange applied twice undoes itself, and a create retried finds
	// its own file and reports it taken.
	HeaderIdempotencyKey = "Idempotency-Key"
	// ContentTypeJSON and ContentTypeChunk are the two body types.
	ContentTypeJSON  = "application/json"
	ContentTypeChunk = "application/octet-stream"
	// ContentTypeSmall frames a small-file upload: JSON header and chunk.
	ContentTypeSmall = "application/x-sealfs-small"
)

// Limits the server enforces and the client respects.
const (
	MaxJSONBody      = 1 << 20   // any JSON request body, except commits
	MaxCommitBody    = 256 << 20 // a commit lists up to 2^21 chunks and carries their manifest
	MaxSealedName    = crypto.MaxNameLen + crypto.BoxOverhead + 16
	MaxSealedSymlink = crypto.MaxSymlinkLen + crypto.BoxOverhead + 16
	MaxSealedAttr    = crypto.SealedAttrSize
	// MaxSealedXattrs bounds an inode's sealed extended attribute set.
	MaxSealedXattrs = 80 << 10
	MaxReadDirLimit = 1000
	MaxHaveChunks   = 10000
	MaxUserName     = 64
	// MaxChangesLimit bounds the limit of GET /v1/changes;
	// DefaultChangesLimit applies when the request names none.
	MaxChangesLimit     = 10000
	DefaultChangesLimit = 1000
)

// Inode types.
const (
	TypeFile    = 1
	TypeDir     = 2
	TypeSymlink = 3
)

// ID is an inode or chunk ID that marshals as 32 hex digits.
type ID = crypto.ID

// Index is a blind name index that marshals as 64 hex digits.
type Index [crypto.NameIndexSize]byte

// String is the hex form used in URLs.
func (x Index) String() string { return hex.EncodeToString(x[:]) }

// ParseIndex parses the 64-hex-digit form.
func ParseIndex(s string) (Index, error) {
	var x Index
	if len(s) != 2*len(x) {
		return x, fmt.Errorf("name index %q is not %d hex digits", s, 2*len(x))
	}
	if _, err := hex.Decode(x[:], []byte(s)); err != nil {
		return x, fmt.Errorf("name index %q is not hex", s)
	}
	return x, nil
}

// MarshalText implements encoding.TextMarshaler.
func (x Index) MarshalText() ([]byte, error) { return []byte(x.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (x *Index) UnmarshalText(b []byte) error {
	v, err := ParseIndex(string(b))
	*x = v
	return err
}

// HexID wraps crypto.ID for JSON as hex.
type HexID crypto.ID

// MarshalText implements encoding.TextMarshaler.
func (h HexID) MarshalText() ([]byte, error) { return []byte(crypto.ID(h).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HexID) UnmarshalText(b []byte) error {
	v, err := crypto.ParseID(string(b))
	*h = HexID(v)
	return err
}

// Error is the body of every non-2xx response.
type Error struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Missing []HexID `json:"missing,omitempty"` // missing_chunks: which
	Version int64   `json:"version,omitempty"` // version_mismatch: the current one
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes: stable strings a client may switch on. Each has one HTTP
// status (see Status).
const (
	CodeBadRequest          = "bad_request"
	CodeMACMismatch         = "mac_mismatch"
	CodeUnauthorized        = "unauthorized"
	CodeBadCredentials      = "bad_credentials"
	CodeInviteInvalid       = "invite_invalid"
	CodeAccountDisabled     = "account_disabled"
	CodeNotFound            = "not_found"
	CodeExists              = "exists"
	CodeNotEmpty            = "not_empty"
	CodeNotDir              = "not_dir"
	CodeIsDir               = "is_dir"
	CodeInvalid             = "invalid"
	CodeNotPermitted        = "not_permitted"
	CodeMissingChunks       = "missing_chunks"
	CodeVersionMismatch     = "version_mismatch"
	CodeTooLarge            = "too_large"
	CodeQuotaExceeded       = "quota_exceeded"
	CodeThrottled           = "throttled"
	CodeTooManyUploads      = "too_many_uploads"
	CodeInternal            = "internal"
	CodeDamaged             = "damaged" // stored bytes failed the server's at-rest check
	CodeInsufficientStorage = "insufficient_storage"
	CodeUnavailable         = "unavailable"
)

// Status maps an error code to its HTTP status.
var Status = map[string]int{
	CodeBadRequest:          400,
	CodeMACMismatch:         400,
	CodeUnauthorized:        401,
	CodeBadCredentials:      401,
	CodeInviteInvalid:       403,
	CodeAccountDisabled:     403,
	CodeNotFound:            404,
	CodeExists:              409,
	CodeNotEmpty:            409,
	CodeNotDir:              409,
	CodeIsDir:               409,
	CodeInvalid:             409,
	CodeNotPermitted:        409,
	CodeMissingChunks:       409,
	CodeVersionMismatch:     412,
	CodeTooLarge:            413,
	CodeQuotaExceeded:       413,
	CodeThrottled:           429,
	CodeTooManyUploads:      429,
	CodeInternal:            500,
	CodeDamaged:             500,
	CodeUnavailable:         503,
	CodeInsufficientStorage: 507,
}

// KDFParams travel as crypto.KDFParams.
type KDFParams = crypto.KDFParams

// Layout travels as crypto.Layout.
type Layout = crypto.Layout

// RegisterRequest creates an account with an invite (POST /v1/register).
type RegisterRequest struct {
	User                 string    `json:"user"`
	Invite               string    `json:"invite"`
	AuthKey              []byte    `json:"auth_key"`
	KDF                  KDFParams `json:"kdf"`
	WrappedMaster        []byte    `json:"wrapped_master"`
	AccountPublic        []byte    `json:"account_public"`
	AccountPrivateSealed []byte    `json:"account_private_sealed"`
	TransferKey          []byte    `json:"transfer_key"`
	Layout               Layout    `json:"layout"`
}

// PreloginRequest asks for a user's KDF parameters (POST /v1/prelogin).
type PreloginRequest struct {
	User string `json:"user"`
}

// PreloginResponse carries the KDF parameters; for unknown users they are
// fake but stable, so the answer does not reveal whether an account exists.
type PreloginResponse struct {
	KDF KDFParams `json:"kdf"`
}

// LoginRequest proves knowledge of the password (POST /v1/login).
type LoginRequest struct {
	User    string `json:"user"`
	AuthKey []byte `json:"auth_key"`
}

// LoginResponse returns a session and what the client needs to open its
// vault with the password.
type LoginResponse struct {
	Token     string  `json:"token"`
	ExpiresAt int64   `json:"expires_at"` // Unix seconds
	Account   Account `json:"account"`
}

// Account is what GET /v1/account returns (and login embeds).
type Account struct {
	User                 string    `json:"user"`
	KDF                  KDFParams `json:"kdf"`
	WrappedMaster        []byte    `json:"wrapped_master"`
	AccountPublic        []byte    `json:"account_public"`
	AccountPrivateSealed []byte    `json:"account_private_sealed"`
	Layout               Layout    `json:"layout"`
	QuotaBytes           int64     `json:"quota_bytes"` // 0: unlimited
	UsedBytes            int64     `json:"used_bytes"`
}

// PasswdRequest changes the password (POST /v1/passwd): the current auth key
// proves the caller knows the old password.
type PasswdRequest struct {
	AuthKey          []byte    `json:"auth_key"`
	NewAuthKey       []byte    `json:"new_auth_key"`
	NewKDF           KDFParams `json:"new_kdf"`
	NewWrappedMaster []byte    `json:"new_wrapped_master"`
}

// Inode is the server's view of an inode: everything secret is sealed.
type Inode struct {
	ID       HexID  `json:"id"`
	Type     int    `json:"type"`
	Version  int64  `json:"version"`
	Nlink    int64  `json:"nlink"`
	Attr     []byte `json:"attr,omitempty"`     // sealed crypto.Attr
	Symlink  []byte `json:"symlink,omitempty"`  // sealed target
	Stored   int64  `json:"stored"`             // sealed bytes of its chunks
	Manifest []byte `json:"manifest,omitempty"` // sealed manifest, when asked for
	Xattrs   []byte `json:"xattrs,omitempty"`   // sealed extended attributes, absent when none
	// ParentVersion is, in the answer to a create, the version of the
	// directory it was created in afterwards.
	ParentVersion int64 `json:"parent_version,omitempty"`
}

// Entry is a directory entry with the inode it names.
type Entry struct {
	Index      Index  `json:"index"`
	SealedName []byte `json:"name"`
	Inode      Inode  `json:"inode"`
}

// ReadDirResponse is one page of a directory (GET /v1/dirs/{id}/entries).
type ReadDirResponse struct {
	Dir     Inode   `json:"dir"`
	Entries []Entry `json:"entries"`
	More    bool    `json:"more"`
}

// NewInode describes an inode to create.
type NewInode struct {
	ID      HexID  `json:"id"`
	Type    int    `json:"type"`
	Attr    []byte `json:"attr"`
	Symlink []byte `json:"symlink,omitempty"`
}

// CreateRequest creates a file, directory or symlink in a directory (POST
// /v1/dirs/{id}/entries).
type CreateRequest struct {
	Index      Index    `json:"index"`
	SealedName []byte   `json:"name"`
	Inode      NewInode `json:"inode"`
	// Commit, for a file, makes its first version current in the same
	// transaction, so a name appears only once its content is whole.
	Commit *CommitRequest `json:"commit,omitempty"`
}

// LinkRequest adds a hard link (POST /v1/dirs/{id}/links).
type LinkRequest struct {
	Index      Index  `json:"index"`
	SealedName []byte `json:"name"`
	Target     HexID  `json:"target"`
}

// Rename modes.
const (
	RenameReplace   = "replace"
	RenameNoReplace = "noreplace"
	RenameExchange  = "exchange"
)

// RenameRequest moves an entry (POST /v1/rename). Names are re-sealed by the
// client because each sealed name is bound to its parent.
type RenameRequest struct {
	SrcParent     HexID  `json:"src_parent"`
	SrcIndex      Index  `json:"src_index"`
	DstParent     HexID  `json:"dst_parent"`
	DstIndex      Index  `json:"dst_index"`
	SrcSealedName []byte `json:"src_name"`           // src's name sealed for DstParent
	DstSealedName []byte `json:"dst_name,omitempty"` // exchange: dst's name sealed for SrcParent
	Mode          string `json:"mode"`
	// SrcChild and DstChild (exchange) are the inodes the sealed names
	// were made for; the server refuses (version_mismatch) to move an
	// entry that names another inode by now. Absent: not checked.
	SrcChild *HexID `json:"src_child,omitempty"`
	DstChild *HexID `json:"dst_child,omitempty"`
}

// SetAttrRequest replaces an inode's sealed attributes (PATCH
// /v1/inodes/{id}), conditional on If-Match.
type SetAttrRequest struct {
	Attr []byte `json:"attr"`
}

// SetXattrsRequest replaces an inode's sealed extended attribute set (PUT
// /v1/inodes/{id}/xattrs), conditional on If-Match; empty removes them all.
type SetXattrsRequest struct {
	Xattrs []byte `json:"xattrs"`
}

// ChunkPos is one position of a committed version.
type ChunkPos struct {
	Index uint64 `json:"index"`
	ID    HexID  `json:"id"`
}

// CommitRequest makes a new version of a file current (POST
// /v1/files/{id}/commit), conditional on IfVersion when it is not 0.
type CommitRequest struct {
	IfVersion int64      `json:"if_version"`
	Manifest  []byte     `json:"manifest"`
	Attr      []byte     `json:"attr"`
	Chunks    []ChunkPos `json:"chunks"` // holes are left out
}

// HaveRequest asks which chunks the server holds (POST /v1/chunks/have), to
// resume an upload.
type HaveRequest struct {
	IDs []HexID `json:"ids"`
}

// HaveResponse lists the held subset.
type HaveResponse struct {
	Have []HexID `json:"have"`
}

// SmallHeader is the JSON part of a small-file upload (POST /v1/small): a
// file of at most one chunk, created (when Create is set) and committed with
// its chunk in one request and one server transaction. The body is
// uint32 big-endian length of the JSON, the JSON, then the sealed chunk.
type SmallHeader struct {
	Parent HexID          `json:"parent"`
	Create *CreateRequest `json:"create,omitempty"` // its Commit is ignored: Commit below applies
	File   HexID          `json:"file"`
	Chunk  *SmallChunk    `json:"chunk,omitempty"` // nil for an empty file
	Commit CommitRequest  `json:"commit"`
}

// SmallChunk identifies the chunk carried in a small-file upload.
type SmallChunk struct {
	Index uint64 `json:"index"`
	ID    HexID  `json:"id"`
	MAC   []byte `json:"mac"`
}

// Changes is the answer of GET /v1/changes: the account's change feed
// after the requested seq. The feed is a hint for caches, not a log to
// replay: a client drops or revalidates what the listed inodes and
// directories cached, and on Reset drops every cache.
type Changes struct {
	// Seq is the account's current seq. Without a since parameter it is
	// all the answer holds: the cursor a new client starts from. When
	// More is false the client is up to date as of Seq.
	Seq int64 `json:"seq"`
	// Changes are the rows of the changes after since, in seq order; a
	// page never splits one change's rows.
	Changes []Change `json:"changes"`
	// More is true when further changes follow the last one listed: ask
	// again with since set to its seq.
	More bool `json:"more"`
	// Reset is true, with no changes, when the changes after since may
	// have been pruned or since is beyond Seq (the server's state went
	// back, as after a restore from backup): the client cannot know what
	// changed, so it drops all its caches and continues from Seq.
	Reset bool `json:"reset"`
}

// Change is one row of the change feed. One change of the namespace (a
// create, link, unlink, rename, attribute change or commit) lists one row
// per inode it affected, all with its seq.
type Change struct {
	// Seq numbers the change; an account's changes have seqs 1, 2, 3...
	// in the order they were committed.
	Seq int64 `json:"seq"`
	// Inode changed: its attributes, content or link count, or it was
	// created, removed or moved.
	Inode HexID `json:"inode"`
	// Dir, when present, is the directory in which an entry naming Inode
	// was added, removed or replaced; the directory's own attributes
	// (its version) changed with it. The root's ID is all zeros.
	Dir *HexID `json:"dir,omitempty"`
	// Origin is the Sealfs-Client ID of the request that made the change,
	// absent when it sent none.
	Origin *HexID `json:"origin,omitempty"`
}

// Decode strictly decodes a JSON body: unknown fields and trailing data are
// errors, so a malformed request gets a clear 400 instead of half a meaning.
func Decode(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after JSON body")
	}
	return nil
}
