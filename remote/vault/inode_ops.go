package vault

// Inode-level operations for the mount. The path-level API in the rest of
// this package suits the CLI, which names things by path and writes whole
// files; a FUSE mount instead holds inode IDs, sets attributes it chose
// itself (the caller's uid, an exact mtime), links, and commits versions
// whose chunks it sealed and uploaded on its own schedule. These functions
// give it that without exposing the account's keys.

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

// NameIndex returns the blind index of name in directory dir: the key the
// server knows an entry by, which rename requests need.
func (v *Vault) NameIndex(dir crypto.ID, name string) wire.Index { return v.index(dir, name) }

// Stat fetches inode id afresh, without its manifest. The returned node has
// no parent or name: an inode ID alone does not say how it was reached.
func (v *Vault) Stat(ctx context.Context, id crypto.ID) (*Node, error) {
	in, err := v.c.Inode(ctx, id, false)
	if err != nil {
		return nil, fsError(err)
	}
	return v.node(in, id, crypto.ID{}, "", wire.Index{})
}

// CreateInode creates a file (empty and never committed), directory or
// symlink called name in dir with exactly the attributes given, so the mount
// can record the calling user's uid and gid rather than its own. For a
// symlink, target is sealed with it.
func (v *Vault) CreateInode(ctx context.Context, dir crypto.ID, name string, typ int, attr crypto.Attr, target string) (*Node, error) {
	id := crypto.NewID()
	attr.Mode = attr.Mode&^syscall.S_IFMT | unixMode(typ, 0) // the type bits, which node checks
	sealedAttr, err := crypto.SealAttr(v.keys.Attr, id, &attr)
	if err != nil {
		return nil, err
	}
	ni := wire.NewInode{ID: wire.HexID(id), Type: typ, Attr: sealedAttr}
	if typ == wire.TypeSymlink {
		if ni.Symlink, err = crypto.SealSymlink(v.keys.Names, id, target); err != nil {
			return nil, fmt.Errorf("symlink target: %w", err)
		}
	}
	in, idx, err := v.create(ctx, dir, name, ni, nil)
	if err != nil {
		return nil, err
	}
	return v.node(in, id, dir, name, idx)
}

// Link adds the name name in dir for the existing non-directory target and
// returns the target with its new link count and version.
func (v *Vault) Link(ctx context.Context, dir crypto.ID, name string, target crypto.ID) (*Node, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	idx := v.index(dir, name)
	sealedName, err := crypto.SealName(v.keys.Names, dir, target, name)
	if err != nil {
		return nil, err
	}
	in, err := v.c.Link(ctx, dir, &wire.LinkRequest{Index: idx, SealedName: sealedName, Target: wire.HexID(target)})
	if err != nil {
		return nil, fsError(err)
	}
	return v.node(in, target, dir, name, idx)
}

// SetAttr replaces the sealed attributes of inode id with a, provided the
// inode is still at version ifVersion (0: unconditionally). A file's Size
// and Generation in a must be those of its committed manifest, or other
// clients will refuse the file as corrupt.
func (v *Vault) SetAttr(ctx context.Context, id crypto.ID, a crypto.Attr, ifVersion int64) (*Node, error) {
	sealed, err := crypto.SealAttr(v.keys.Attr, id, &a)
	if err != nil {
		return nil, err
	}
	in, err := v.c.SetAttr(ctx, id, sealed, ifVersion)
	if err != nil {
		return nil, fsError(err)
	}
	return v.node(in, id, crypto.ID{}, "", wire.Index{})
}

// SetXattrs replaces the extended attributes of inode id with x (empty:
// none), sealed with a stamp above prevStamp, the stamp of the set it
// replaces (Node.XattrStamp), provided the inode is still at version
// ifVersion (0: unconditionally). A version_mismatch answer is returned as
// is (test it with remote.IsVersionMismatch).
func (v *Vault) SetXattrs(ctx context.Context, id crypto.ID, x map[string][]byte, prevStamp, ifVersion int64) (*Node, error) {
	// An empty set is sealed too, so that its stamp stays: a server
	// cannot pass off "none" for a set a client has seen.
	sealed, err := crypto.SealXattrs(v.keys.Attr, id, x, crypto.NextStamp(prevStamp, time.Now().UnixNano()))
	if err != nil {
		return nil, err
	}
	if len(sealed) > wire.MaxSealedXattrs {
		return nil, &codeError{errno: syscall.ENOSPC, cause: fmt.Errorf("extended attributes of %d bytes sealed exceed the %d the server keeps", len(sealed), wire.MaxSealedXattrs)}
	}
	in, err := v.c.SetXattrs(ctx, id, sealed, ifVersion)
	if err != nil {
		if remote.IsVersionMismatch(err) {
			return nil, err
		}
		return nil, fsError(err)
	}
	return v.node(in, id, crypto.ID{}, "", wire.Index{})
}

// FileCipher returns the cipher that seals and opens file's chunks in
// layout l.
func (v *Vault) FileCipher(file crypto.ID, l crypto.Layout) (*crypto.FileCipher, error) {
	return crypto.NewFileCipher(v.keys.Content, file, l)
}

// TransferMAC returns the account's transfer HMAC, which every uploaded
// chunk carries and every downloaded one is checked against.
func (v *Vault) TransferMAC() *crypto.TransferMAC { return v.tmac }

// Cipher returns the cipher of this version's chunks, for a reader that
// opens single blocks out of a chunk cache.
func (f *File) Cipher() *crypto.FileCipher { return f.fc }

// commitParts seals m and a (with a's Size and Generation set from m) and
// lists m's stored chunks.
func (v *Vault) commitParts(m *crypto.Manifest, a crypto.Attr, ifVersion int64) (*wire.CommitRequest, []byte, error) {
	a.Size, a.Generation = m.Size, m.Generation
	sealedM, err := crypto.SealManifest(v.keys.Manifest, m)
	if err != nil {
		return nil, nil, err
	}
	sealedA, err := crypto.SealAttr(v.keys.Attr, m.File, &a)
	if err != nil {
		return nil, nil, err
	}
	cr := &wire.CommitRequest{IfVersion: ifVersion, Manifest: sealedM, Attr: sealedA}
	for i, c := range m.Chunks {
		if !c.IsHole() {
			cr.Chunks = append(cr.Chunks, wire.ChunkPos{Index: uint64(i), ID: wire.HexID(c.ID)})
		}
	}
	return cr, sealedA, nil
}

// CommitManifest makes m the current version of its file, whose chunks
// the caller has uploaded, with attributes a, provided the inode is still at
// version ifVersion. A version_mismatch answer is returned as is (test it
// with remote.IsVersionMismatch): the caller decides whether it is a
// conflict.
func (v *Vault) CommitManifest(ctx context.Context, m *crypto.Manifest, a crypto.Attr, ifVersion int64) (*Node, error) {
	cr, sealedA, err := v.commitParts(m, a, ifVersion)
	if err != nil {
		return nil, err
	}
	in, err := v.c.Commit(ctx, m.File, cr)
	if err != nil {
		if in2, ok := v.committed(ctx, m.File, err, sealedA); ok {
			return v.node(in2, m.File, crypto.ID{}, "", wire.Index{})
		}
		return nil, commitError(err)
	}
	return v.node(in, m.File, crypto.ID{}, "", wire.Index{})
}

// CommitSmall commits m, a version of at most one chunk, together with
// that chunk's sealing and transfer HMAC in one request (sealed is empty
// for an empty file).
func (v *Vault) CommitSmall(ctx context.Context, m *crypto.Manifest, a crypto.Attr, ifVersion int64, sealed, mac []byte) (*Node, error) {
	hdr, sealed, sealedA, err := v.smallHeader(m, a, ifVersion, sealed, mac)
	if err != nil {
		return nil, err
	}
	in, err := v.c.PutSmall(ctx, hdr, sealed)
	if err != nil {
		if in2, ok := v.committed(ctx, m.File, err, sealedA); ok {
			return v.node(in2, m.File, crypto.ID{}, "", wire.Index{})
		}
		return nil, commitError(err)
	}
	return v.node(in, m.File, crypto.ID{}, "", wire.Index{})
}

// CreateSmall creates file m.File called name in dir with m, a version of
// at most one chunk, as its first version, the chunk's sealing and
// transfer HMAC travelling with it: one request and one server
// transaction for a whole small file, which is what lets the mount
// create files on close(2) as fast as tar and git make them. A name that
// is taken answers an error carrying EEXIST.
func (v *Vault) CreateSmall(ctx context.Context, dir crypto.ID, name string, m *crypto.Manifest, a crypto.Attr, sealed, mac []byte) (*Node, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	hdr, sealed, sealedA, err := v.smallHeader(m, a, 0, sealed, mac)
	if err != nil {
		return nil, err
	}
	idx := v.index(dir, name)
	sealedName, err := crypto.SealName(v.keys.Names, dir, m.File, name)
	if err != nil {
		return nil, err
	}
	hdr.Parent = wire.HexID(dir)
	hdr.Create = &wire.CreateRequest{Index: idx, SealedName: sealedName, Inode: wire.NewInode{ID: wire.HexID(m.File), Type: wire.TypeFile, Attr: sealedA}}
	in, err := v.c.PutSmall(ctx, hdr, sealed)
	if remote.IsExists(err) {
		// A retried request whose first answer was lost finds its own
		// inode under the name: inode IDs are random, so that is ours.
		if e, lerr := v.c.Lookup(ctx, dir, idx); lerr == nil && crypto.ID(e.Inode.ID) == m.File {
			in, err = &e.Inode, nil
		}
	}
	if err != nil {
		return nil, commitError(err)
	}
	return v.node(in, m.File, dir, name, idx)
}

// smallHeader builds the header of a small upload of m; the returned body
// is sealed, or nothing for a version without stored chunk.
func (v *Vault) smallHeader(m *crypto.Manifest, a crypto.Attr, ifVersion int64, sealed, mac []byte) (*wire.SmallHeader, []byte, []byte, error) {
	if len(m.Chunks) > 1 {
		return nil, nil, nil, fmt.Errorf("a small commit holds at most one chunk, not %d", len(m.Chunks))
	}
	cr, sealedA, err := v.commitParts(m, a, ifVersion)
	if err != nil {
		return nil, nil, nil, err
	}
	hdr := &wire.SmallHeader{File: wire.HexID(m.File), Commit: *cr}
	if len(m.Chunks) == 1 && !m.Chunks[0].IsHole() {
		hdr.Chunk = &wire.SmallChunk{Index: 0, ID: wire.HexID(m.Chunks[0].ID), MAC: mac}
	} else {
		sealed = nil
	}
	return hdr, sealed, sealedA, nil
}

// CreateCommitted creates file m.File called name in dir with m as its
// first version, whose chunks the caller has uploaded: the name appears
// only with its content whole.
func (v *Vault) CreateCommitted(ctx context.Context, dir crypto.ID, name string, m *crypto.Manifest, a crypto.Attr) (*Node, error) {
	cr, sealedA, err := v.commitParts(m, a, 0)
	if err != nil {
		return nil, err
	}
	in, idx, err := v.create(ctx, dir, name, wire.NewInode{ID: wire.HexID(m.File), Type: wire.TypeFile, Attr: sealedA}, cr)
	if err != nil {
		return nil, err
	}
	return v.node(in, m.File, dir, name, idx)
}

// committed tells whether a commit that failed with version_mismatch had in
// fact succeeded on an earlier attempt whose answer was lost: the inode
// then carries exactly the attributes this commit sealed.
func (v *Vault) committed(ctx context.Context, file crypto.ID, err error, sealedAttr []byte) (*wire.Inode, bool) {
	if !remote.IsVersionMismatch(err) {
		return nil, false
	}
	in, gerr := v.c.Inode(ctx, file, false)
	if gerr != nil || string(in.Attr) != string(sealedAttr) {
		return nil, false
	}
	return in, true
}

// commitError maps a commit failure to an errno-carrying error, except a
// version mismatch, which the caller resolves.
func commitError(err error) error {
	if remote.IsVersionMismatch(err) {
		return err
	}
	if len(remote.MissingChunks(err)) > 0 {
		return &codeError{errno: syscall.EIO, cause: err}
	}
	return fsError(err)
}
