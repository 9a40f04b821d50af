package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

// Node is an inode as the vault sees it: opened and verified, with the
// name it was reached by.
type Node struct {
	ID      crypto.ID
	Type    int // wire.TypeFile, TypeDir or TypeSymlink
	Version int64
	Nlink   int64
	Stored  int64 // sealed bytes the server holds for it
	Attr    crypto.Attr
	Target  string            // symlink target
	Xattrs  map[string][]byte // extended attributes, nil when none
	// XattrStamp is the stamp the extended attribute set was sealed
	// with (crypto.SealXattrs); 0 when none was ever set.
	XattrStamp int64
	// ParentVersion is, for a node just created, its directory's version
	// right after; zero when not known.
	ParentVersion int64

	// How it was reached; zero for the root.
	Parent crypto.ID
	Name   string
	Index  wire.Index

	sealedAttr []byte
}

// IsDir reports whether n is a directory.
func (n *Node) IsDir() bool { return n.Type == wire.TypeDir }

// IsFile reports whether n is a regular file.
func (n *Node) IsFile() bool { return n.Type == wire.TypeFile }

// IsSymlink reports whether n is a symbolic link.
func (n *Node) IsSymlink() bool { return n.Type == wire.TypeSymlink }

// Size is the plaintext size of a file (or a symlink's target length).
func (n *Node) Size() int64 { return int64(n.Attr.Size) }

// ModTime is the modification time.
func (n *Node) ModTime() time.Time { return time.Unix(0, n.Attr.Mtime) }

// Mode converts the sealed st_mode to an fs.FileMode.
func (n *Node) Mode() fs.FileMode {
	m := fs.FileMode(n.Attr.Mode & 0o777)
	if n.Attr.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if n.Attr.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if n.Attr.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	switch n.Type {
	case wire.TypeDir:
		m |= fs.ModeDir
	case wire.TypeSymlink:
		m |= fs.ModeSymlink
	}
	return m
}

// ModeBits keeps of m what a file's mode stores: the permission bits and
// set-user-ID, set-group-ID and sticky, as cp -a, rsync -a and tar keep
// them (Perm alone drops the last three).
func ModeBits(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// unixMode builds st_mode from an inode type and permission bits.
func unixMode(typ int, perm fs.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		m |= syscall.S_ISUID
	}
	if perm&fs.ModeSetgid != 0 {
		m |= syscall.S_ISGID
	}
	if perm&fs.ModeSticky != 0 {
		m |= syscall.S_ISVTX
	}
	switch typ {
	case wire.TypeDir:
		m |= syscall.S_IFDIR
	case wire.TypeSymlink:
		m |= syscall.S_IFLNK
	default:
		m |= syscall.S_IFREG
	}
	return m
}

// timeZero asks newAttr for the current time.
var timeZero time.Time

// newAttr returns attributes for a new inode owned by the calling user.
func newAttr(typ int, perm fs.FileMode, mtime time.Time) crypto.Attr {
	now := time.Now().UnixNano()
	mt := now
	if !mtime.IsZero() {
		mt = crypto.AttrTime(mtime)
	}
	return crypto.Attr{
		Mode: unixMode(typ, perm),
		UID:  uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Atime: mt, Mtime: mt, Ctime: now,
	}
}

// CorruptError means something the server sent does not verify under the
// account's keys: tampering, damage, or a server bug. It is never silently
// skipped.
type CorruptError struct {
	What string // e.g. "name of entry 3fa1…", "attributes"
	Err  error
}

// Error implements error with a message meant for people.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s failed authentication (tampered or corrupt data on the server): %v", e.What, e.Err)
}

// Unwrap exposes the crypto error.
func (e *CorruptError) Unwrap() error { return e.Err }

// node opens inode want, as the server sent it in answer to a request for
// that inode, reached through parent under name. Everything sealed in it is
// bound to the inode's ID, so an answer about another inode would open
// cleanly: the ID the server put in it must be the one asked for. (For an
// entry of a listing, want is the ID its sealed name opened with.)
func (v *Vault) node(in *wire.Inode, want crypto.ID, parent crypto.ID, name string, idx wire.Index) (*Node, error) {
	n := &Node{
		ID: crypto.ID(in.ID), Type: in.Type, Version: in.Version, Nlink: in.Nlink, Stored: in.Stored,
		Parent: parent, Name: name, Index: idx, sealedAttr: in.Attr, ParentVersion: in.ParentVersion,
	}
	if n.ID != want {
		what := describe(name, want)
		if name != "" {
			what = "inode of " + what
		}
		return nil, &CorruptError{What: what, Err: fmt.Errorf("the server answered with inode %s", n.ID)}
	}
	switch in.Type {
	case wire.TypeFile, wire.TypeDir, wire.TypeSymlink:
	default:
		return nil, &CorruptError{What: "inode " + n.ID.String(), Err: fmt.Errorf("unknown type %d", in.Type)}
	}
	if n.ID.IsZero() && in.Type != wire.TypeDir {
		return nil, &CorruptError{What: "root directory", Err: fmt.Errorf("the server says it is of type %d", in.Type)}
	}
	if n.ID.IsZero() && len(in.Attr) == 0 {
		// The server creates the root at registration and cannot seal
		// attributes for it; it is a plain private directory until
		// someone sets them.
		n.Attr = crypto.Attr{Mode: syscall.S_IFDIR | 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
		return n, nil
	}
	a, err := crypto.OpenAttr(v.keys.Attr, n.ID, in.Attr)
	if err != nil {
		return nil, &CorruptError{What: "attributes of " + describe(name, n.ID), Err: err}
	}
	// The type travels in plain text beside the sealed attributes, whose
	// mode carries it too: a server that changed it would show a directory
	// as an empty file, or a file as an empty directory.
	if a.Mode&syscall.S_IFMT != unixMode(in.Type, 0) {
		return nil, &CorruptError{What: "attributes of " + describe(name, n.ID), Err: fmt.Errorf("the sealed mode %#o is not of the inode's type %d", a.Mode, in.Type)}
	}
	n.Attr = *a
	if len(in.Xattrs) > 0 {
		x, stamp, err := crypto.OpenXattrs(v.keys.Attr, n.ID, in.Xattrs)
		if err != nil {
			return nil, &CorruptError{What: "extended attributes of " + describe(name, n.ID), Err: err}
		}
		if len(x) > 0 {
			n.Xattrs = x
		}
		n.XattrStamp = stamp
	}
	if in.Type == wire.TypeSymlink {
		t, err := crypto.OpenSymlink(v.keys.Names, n.ID, in.Symlink)
		if err != nil {
			return nil, &CorruptError{What: "symlink target of " + describe(name, n.ID), Err: err}
		}
		n.Target = t
	}
	return n, nil
}

func describe(name string, id crypto.ID) string {
	if name == "" {
		return "inode " + id.String()
	}
	return fmt.Sprintf("%q", name)
}

// fsError maps a protocol error code to the errno a filesystem reports for
// it, so callers (and the mount) test errors with errors.Is(err,
// fs.ErrNotExist) or errors.As(err, &errno). Other errors pass unchanged.
func fsError(err error) error {
	if err == nil {
		return nil
	}
	errno, ok := map[string]syscall.Errno{
		wire.CodeNotFound:            syscall.ENOENT,
		wire.CodeExists:              syscall.EEXIST,
		wire.CodeNotDir:              syscall.ENOTDIR,
		wire.CodeIsDir:               syscall.EISDIR,
		wire.CodeNotEmpty:            syscall.ENOTEMPTY,
		wire.CodeInvalid:             syscall.EINVAL,
		wire.CodeNotPermitted:        syscall.EPERM,
		wire.CodeQuotaExceeded:       syscall.EDQUOT,
		wire.CodeInsufficientStorage: syscall.ENOSPC,
	}[remote.Code(err)]
	if !ok {
		return err
	}
	return &codeError{errno: errno, cause: err}
}

// codeError is an errno that remembers the server answer it came from.
type codeError struct {
	errno syscall.Errno
	cause error
}

func (e *codeError) Error() string {
	switch e.errno {
	case syscall.EDQUOT:
		return "the account's storage quota is exhausted"
	case syscall.ENOSPC:
		return "the server's disk is full"
	case syscall.ESTALE:
		return "another client replaced the entry meanwhile; look it up again and retry"
	}
	return e.errno.Error()
}

func (e *codeError) Unwrap() []error { return []error{e.errno, e.cause} }

// pathErr wraps err as a PathError for op on path.
func pathErr(op, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: path, Err: fsError(err)}
}
