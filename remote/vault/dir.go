package vault

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

// ReadDirError lists the entries of a directory that did not verify. ReadDir
// returns it together with the entries that did, so a listing shows what it
// can and still fails loudly.
type ReadDirError struct {
	Bad []error
}

// Error implements error with a message meant for people.
func (e *ReadDirError) Error() string {
	msgs := make([]string, len(e.Bad))
	for i, b := range e.Bad {
		msgs[i] = b.Error()
	}
	return fmt.Sprintf("%d entries are corrupt: %s", len(e.Bad), strings.Join(msgs, "; "))
}

// ReadDir lists directory dir, sorted by name. Each sealed name must open
// under this directory and its inode, and its blind index must match the
// name, so the server can neither invent, rename nor move entries.
func (v *Vault) ReadDir(ctx context.Context, dir crypto.ID) ([]*Node, error) {
	_, entries, err := v.c.ReadDir(ctx, dir)
	if err != nil {
		return nil, fsError(err)
	}
	nodes := make([]*Node, 0, len(entries))
	var bad []error
	for i := range entries {
		e := &entries[i]
		id := crypto.ID(e.Inode.ID)
		name, err := crypto.OpenName(v.keys.Names, dir, id, e.SealedName)
		if err != nil {
			bad = append(bad, &CorruptError{What: "name of entry " + e.Index.String()[:16], Err: err})
			continue
		}
		if v.index(dir, name) != e.Index {
			bad = append(bad, &CorruptError{What: fmt.Sprintf("entry %q", name), Err: errors.New("its index does not match its name")})
			continue
		}
		n, err := v.node(&e.Inode, id, dir, name, e.Index)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	if len(bad) > 0 {
		return nodes, &ReadDirError{Bad: bad}
	}
	return nodes, nil
}

// create adds an entry for a new inode to dir. A create whose answer was
// lost and that was retried finds its own inode under the name (inode IDs
// are random), which counts as success.
func (v *Vault) create(ctx context.Context, dir crypto.ID, name string, in wire.NewInode, commit *wire.CommitRequest) (*wire.Inode, wire.Index, error) {
	if err := CheckName(name); err != nil {
		return nil, wire.Index{}, err
	}
	idx := v.index(dir, name)
	sealedName, err := crypto.SealName(v.keys.Names, dir, crypto.ID(in.ID), name)
	if err != nil {
		return nil, idx, err
	}
	out, err := v.c.Create(ctx, dir, &wire.CreateRequest{Index: idx, SealedName: sealedName, Inode: in, Commit: commit})
	if remote.IsExists(err) {
		if e, lerr := v.c.Lookup(ctx, dir, idx); lerr == nil && e.Inode.ID == in.ID {
			return &e.Inode, idx, nil
		}
	}
	return out, idx, fsError(err)
}

// Mkdir creates directory name in dir.
func (v *Vault) Mkdir(ctx context.Context, dir crypto.ID, name string, perm fs.FileMode) (*Node, error) {
	id := crypto.NewID()
	attr := newAttr(wire.TypeDir, perm, timeZero)
	sealed, err := crypto.SealAttr(v.keys.Attr, id, &attr)
	if err != nil {
		return nil, err
	}
	in, idx, err := v.create(ctx, dir, name, wire.NewInode{ID: wire.HexID(id), Type: wire.TypeDir, Attr: sealed}, nil)
	if err != nil {
		return nil, err
	}
	return v.node(in, id, dir, name, idx)
}

// MkdirAll creates path and any missing parents, like mkdir -p; existing
// directories are fine, anything else in the way is ENOTDIR.
func (v *Vault) MkdirAll(ctx context.Context, path string, perm fs.FileMode) (*Node, error) {
	names, err := SplitPath(path)
	if err != nil {
		return nil, err
	}
	n, err := v.Root(ctx)
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		here := "/" + strings.Join(names[:i+1], "/")
		next, err := v.Lookup(ctx, n.ID, name)
		if IsNotExist(err) {
			next, err = v.Mkdir(ctx, n.ID, name, perm)
			if errors.Is(err, fs.ErrExist) { // made by someone else meanwhile
				next, err = v.Lookup(ctx, n.ID, name)
			}
		}
		if err != nil {
			return nil, pathErr("mkdir", here, err)
		}
		if !next.IsDir() {
			return nil, pathErr("mkdir", here, syscall.ENOTDIR)
		}
		n = next
	}
	return n, nil
}

// Symlink creates a symbolic link name in dir pointing at target. The target
// is sealed like a name and never interpreted by the vault.
func (v *Vault) Symlink(ctx context.Context, dir crypto.ID, name, target string) (*Node, error) {
	id := crypto.NewID()
	attr := newAttr(wire.TypeSymlink, 0o777, timeZero)
	attr.Size = uint64(len(target))
	sealedAttr, err := crypto.SealAttr(v.keys.Attr, id, &attr)
	if err != nil {
		return nil, err
	}
	sealedTarget, err := crypto.SealSymlink(v.keys.Names, id, target)
	if err != nil {
		return nil, fmt.Errorf("symlink target: %w", err)
	}
	in, idx, err := v.create(ctx, dir, name, wire.NewInode{ID: wire.HexID(id), Type: wire.TypeSymlink, Attr: sealedAttr, Symlink: sealedTarget}, nil)
	if err != nil {
		return nil, err
	}
	return v.node(in, id, dir, name, idx)
}

// Remove unlinks name from dir, or removes it as an empty directory when
// isDir is set.
func (v *Vault) Remove(ctx context.Context, dir crypto.ID, name string, isDir bool) error {
	if err := CheckName(name); err != nil {
		return err
	}
	return fsError(v.c.Remove(ctx, dir, v.index(dir, name), isDir))
}

// RemoveAll removes n and, for a directory, everything below it, deepest
// first, several entries at a time.
func (v *Vault) RemoveAll(ctx context.Context, n *Node) error {
	if n.ID.IsZero() {
		return fmt.Errorf("%w: refusing to remove the root directory", ErrBadPath)
	}
	if n.IsDir() {
		children, err := v.ReadDir(ctx, n.ID)
		if err != nil {
			return err
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(v.parallel)
		for _, c := range children {
			g.Go(func() error { return v.RemoveAll(gctx, c) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	err := v.Remove(ctx, n.Parent, n.Name, n.IsDir())
	if IsNotExist(err) {
		return nil // gone already: what was asked for
	}
	return err
}

// Rename moves src (reached through its Parent and Name) to dstName in
// directory dstDir with one of the wire.Rename* modes. Names are re-sealed
// for their new parents; for an exchange, dst is the entry being swapped.
func (v *Vault) Rename(ctx context.Context, src *Node, dstDir crypto.ID, dstName, mode string, dst *Node) error {
	if src.ID.IsZero() {
		return fmt.Errorf("%w: the root directory cannot be moved", ErrBadPath)
	}
	if err := CheckName(dstName); err != nil {
		return err
	}
	srcName, err := crypto.SealName(v.keys.Names, dstDir, src.ID, dstName)
	if err != nil {
		return err
	}
	srcChild := wire.HexID(src.ID)
	req := &wire.RenameRequest{
		SrcParent: wire.HexID(src.Parent), SrcIndex: src.Index,
		DstParent: wire.HexID(dstDir), DstIndex: v.index(dstDir, dstName),
		SrcSealedName: srcName, Mode: mode, SrcChild: &srcChild,
	}
	if mode == wire.RenameExchange {
		if dst == nil {
			return fmt.Errorf("%w: exchange needs the destination entry", ErrBadPath)
		}
		req.DstSealedName, err = crypto.SealName(v.keys.Names, src.Parent, dst.ID, src.Name)
		if err != nil {
			return err
		}
		dstChild := wire.HexID(dst.ID)
		req.DstChild = &dstChild
	}
	err = v.c.Rename(ctx, req)
	if err != nil && IsNotExist(fsError(err)) && v.renamed(ctx, src, dstDir, dstName, mode, dst) {
		// A retry of a rename the server applied before its answer was
		// lost, and had forgotten (it restarted): the source is gone
		// because it is where it was asked to go.
		return nil
	}
	if remote.IsVersionMismatch(err) {
		// The names were sealed for inodes that another client has
		// since replaced under them (the server refuses to store a name
		// that would not open): ESTALE makes the kernel look the names
		// up again and retry once.
		return &codeError{errno: syscall.ESTALE, cause: err}
	}
	return fsError(err)
}

// renamed reports whether src is already where a rename asked it to go:
// under dstName in dstDir, and no longer under its old name (which holds
// dst instead after an exchange).
func (v *Vault) renamed(ctx context.Context, src *Node, dstDir crypto.ID, dstName, mode string, dst *Node) bool {
	at, err := v.Lookup(ctx, dstDir, dstName)
	if err != nil || at.ID != src.ID {
		return false
	}
	back, err := v.Lookup(ctx, src.Parent, src.Name)
	if mode == wire.RenameExchange {
		return err == nil && dst != nil && back.ID == dst.ID
	}
	return IsNotExist(err) || (err == nil && back.ID != src.ID)
}
