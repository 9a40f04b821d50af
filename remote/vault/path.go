package vault

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// ErrBadPath means a path or name cannot name an entry: empty, "." or "..",
// containing NUL, or longer than a name may be.
var ErrBadPath = errors.New("invalid path")

// CheckName reports whether name can be a directory entry. ".." is refused
// rather than resolved: remote paths are plain names from the root, and a
// name that climbs is almost always a mistake in a script.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrBadPath)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q components are not allowed; use plain names from the root", ErrBadPath, name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("%w: name contains a NUL byte", ErrBadPath)
	case strings.IndexByte(name, '/') >= 0:
		return fmt.Errorf("%w: name %q contains '/'", ErrBadPath, name)
	case len(name) > crypto.MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes exceeds %d", ErrBadPath, len(name), crypto.MaxNameLen)
	}
	return nil
}

// SplitPath splits a remote path into its names. Paths are taken from the
// account's root whether or not they start with "/"; repeated and trailing
// slashes are ignored; "/" is the root (no names).
func SplitPath(p string) ([]string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return nil, fmt.Errorf("%w: path contains a NUL byte", ErrBadPath)
	}
	var names []string
	for _, s := range strings.Split(p, "/") {
		if s == "" {
			continue
		}
		if err := CheckName(s); err != nil {
			return nil, err
		}
		names = append(names, s)
	}
	return names, nil
}

// CleanPath returns the canonical form of a remote path ("/a/b"), or an
// error when it has a bad component.
func CleanPath(p string) (string, error) {
	names, err := SplitPath(p)
	if err != nil {
		return "", err
	}
	return "/" + strings.Join(names, "/"), nil
}

// JoinPath joins a canonical directory path and a name.
func JoinPath(dir, name string) string {
	if dir == "/" || dir == "" {
		return "/" + name
	}
	return dir + "/" + name
}

// Root returns the account's root directory.
func (v *Vault) Root(ctx context.Context) (*Node, error) {
	in, err := v.c.Inode(ctx, crypto.ID{}, false)
	if err != nil {
		return nil, pathErr("stat", "/", err)
	}
	return v.node(in, crypto.ID{}, crypto.ID{}, "", wire.Index{})
}

// index is the blind index of name in directory dir.
func (v *Vault) index(dir crypto.ID, name string) wire.Index {
	return wire.Index(crypto.NameIndex(v.keys.NameIndex, dir, name))
}

// Lookup finds name in directory dir and verifies that the entry's sealed
// name opens to exactly that name under that directory and inode: a server
// cannot answer a lookup with another entry.
func (v *Vault) Lookup(ctx context.Context, dir crypto.ID, name string) (*Node, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	idx := v.index(dir, name)
	e, err := v.c.Lookup(ctx, dir, idx)
	if err != nil {
		return nil, fsError(err)
	}
	if e.Index != idx {
		return nil, &CorruptError{What: fmt.Sprintf("entry %q", name), Err: fmt.Errorf("the server answered with another index")}
	}
	got, err := crypto.OpenName(v.keys.Names, dir, crypto.ID(e.Inode.ID), e.SealedName)
	if err != nil {
		return nil, &CorruptError{What: fmt.Sprintf("name of entry %q", name), Err: err}
	}
	if got != name {
		return nil, &CorruptError{What: fmt.Sprintf("entry %q", name), Err: fmt.Errorf("its sealed name is %q", got)}
	}
	return v.node(&e.Inode, crypto.ID(e.Inode.ID), dir, name, idx)
}

// Resolve walks path from the root. Every component but the last must be a
// directory; symlinks are not followed (they may point outside the vault).
func (v *Vault) Resolve(ctx context.Context, path string) (*Node, error) {
	names, err := SplitPath(path)
	if err != nil {
		return nil, err
	}
	n, err := v.Root(ctx)
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		if !n.IsDir() {
			return nil, pathErr("stat", "/"+strings.Join(names[:i], "/"), syscall.ENOTDIR)
		}
		n, err = v.Lookup(ctx, n.ID, name)
		if err != nil {
			return nil, pathErr("stat", "/"+strings.Join(names[:i+1], "/"), err)
		}
	}
	return n, nil
}

// ResolveParent resolves all but the last component of path, which must be
// a directory, and returns it with the last name. The root has no parent.
func (v *Vault) ResolveParent(ctx context.Context, path string) (*Node, string, error) {
	names, err := SplitPath(path)
	if err != nil {
		return nil, "", err
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%w: the root directory has no parent", ErrBadPath)
	}
	dir, err := v.Resolve(ctx, "/"+strings.Join(names[:len(names)-1], "/"))
	if err != nil {
		return nil, "", err
	}
	if !dir.IsDir() {
		return nil, "", pathErr("stat", "/"+strings.Join(names[:len(names)-1], "/"), syscall.ENOTDIR)
	}
	return dir, names[len(names)-1], nil
}

// IsNotExist reports whether err says a path does not exist.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
