package fusefs

import (
	"context"
	"sort"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

// Lookup finds name in the directory: one request, the sealed name opened
// and checked against the directory and the inode it names.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if e := checkName(name); e != 0 {
		return nil, e
	}
	gen := n.fsys.gen()
	if ch, cn := n.pendingChild(name); cn != nil {
		cn.fillEntry(out)
		n.fsys.setEntryTimeouts(out, gen)
		return ch, 0
	}
	if known, present := n.listed(name); known && !present {
		return nil, syscall.ENOENT
	}
	c, cancel := n.fsys.ctx()
	defer cancel()
	vn, err := n.fsys.v.Lookup(c, n.id, name)
	if err != nil {
		return nil, n.fsys.fail("lookup", n.childPath(name), err)
	}
	in, errno := n.childFor(ctx, name, vn, out)
	if errno != 0 {
		return nil, errno
	}
	n.fsys.setEntryTimeouts(out, gen)
	return in, 0
}

// dirHandle is an open directory: the verified listing taken when it was
// opened, so seekdir and repeated reads see one consistent list.
type dirHandle struct {
	n       *node
	gen     uint64 // invalidation count before the listing was fetched
	mu      sync.Mutex
	entries []*vault.Node
	pos     int
}

var (
	_ fs.FileReaddirenter = (*dirHandle)(nil)
	_ fs.FileLookuper     = (*dirHandle)(nil)
	_ fs.FileSeekdirer    = (*dirHandle)(nil)
)

// OpendirHandle lists the directory with every name opened and verified.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	entries, gen, ok := n.fsys.takeListing(n.id)
	if !ok {
		c, cancel := n.fsys.ctx()
		defer cancel()
		gen = n.fsys.gen()
		var err error
		if entries, err = n.fsys.v.ReadDir(c, n.id); err != nil {
			if errno(err) == syscall.ENOENT && n.typ == wire.TypeDir {
				// Removed, here or by another client, while a
				// process still has it (its working directory):
				// it lists empty, as on a local disk.
				return &dirHandle{n: n, gen: gen}, 0, 0
			}
			return nil, 0, n.fsys.fail("readdir", n.path(), err)
		}
	}
	n.listAhead(entries)
	entries = n.withPending(entries)
	names := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		names[e.Name] = struct{}{}
	}
	n.setList(names, gen)
	return &dirHandle{n: n, gen: gen, entries: entries}, 0, 0
}

// pendingChild returns the child called name when it is a file this mount
// created that is not on the server yet.
func (n *node) pendingChild(name string) (*fs.Inode, *node) {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok && cn.isPending() {
			return ch, cn
		}
	}
	return nil, nil
}

// withPending adds to a listing from the server the files created here
// that are not on the server yet, so ls shows what the mount's own
// processes made.
func (n *node) withPending(entries []*vault.Node) []*vault.Node {
	added := false
	for name, ch := range n.Children() {
		cn, ok := ch.Operations().(*node)
		if !ok || !cn.isPending() {
			continue
		}
		dup := false
		for _, e := range entries {
			if e.Name == name {
				dup = true
				break
			}
		}
		if !dup {
			cn.mu.Lock()
			entries = append(entries, &vault.Node{ID: cn.id, Type: cn.typ, Parent: n.id, Name: name, Attr: cn.attr, Nlink: cn.nlink})
			cn.mu.Unlock()
			added = true
		}
	}
	if added {
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	}
	return entries
}

// hasPendingChildren reports whether files created here and not on the
// server yet live in the directory, which the server would think empty.
func (n *node) hasPendingChildren() bool {
	for _, ch := range n.Children() {
		if cn, ok := ch.Operations().(*node); ok && cn.isPending() {
			return true
		}
	}
	return false
}

// cancelPending makes a file that is not on the server yet unlinked, so
// its first commit creates nothing: unlinked (or replaced by a rename)
// before it was ever stored. It reports whether the file was pending.
func (n *node) cancelPending() bool {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending == nil {
		return false
	}
	n.pending = nil
	n.nlink = 0
	return true
}

// settleCancelled drops the data of a cancelled file at once when no
// descriptor has it open; otherwise the last release does.
func (n *node) settleCancelled() {
	if n.openCount() == 0 {
		_ = n.commit("unlink")
	}
}

// dots is how many entries a listing starts with: "." and "..", which
// POSIX readdir returns and tools such as find and ls -f count on.
const dots = 2

// Readdirent returns the next entry; an offset is the position in the
// listing after the entry, counting the two dot entries first.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.pos == 0:
		d.pos++
		return &fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: d.n.StableAttr().Ino, Off: 1}, 0
	case d.pos == 1:
		d.pos++
		return &fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: d.n.parentIno(), Off: 2}, 0
	case d.pos-dots >= len(d.entries):
		return nil, 0
	}
	e := d.entries[d.pos-dots]
	d.pos++
	return &fuse.DirEntry{Name: e.Name, Mode: typeMode(e.Type), Ino: ino(e.ID), Off: uint64(d.pos)}, 0
}

// parentIno is the inode number of the directory's parent as the kernel
// knows it; the root is its own parent.
func (n *node) parentIno() uint64 {
	if _, p := n.Parent(); p != nil {
		return p.StableAttr().Ino
	}
	return n.StableAttr().Ino
}

// Seekdir moves to an offset Readdirent handed out.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pos = int(min(off, uint64(len(d.entries)+dots)))
	return 0
}

// Lookup answers readdirplus from the listing, without a request per entry.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d.mu.Lock()
	var vn *vault.Node
	for i := d.pos - 1 - dots; i >= 0 && i < len(d.entries); i-- {
		if d.entries[i].Name == name {
			vn = d.entries[i]
			break
		}
	}
	d.mu.Unlock()
	if vn == nil {
		return d.n.Lookup(ctx, name, out)
	}
	in, errno := d.n.childFor(ctx, name, vn, out)
	if errno != 0 {
		return nil, errno
	}
	d.n.fsys.setEntryTimeouts(out, d.gen)
	return in, 0
}

// Mkdir creates a directory owned by the caller.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return n.create(ctx, name, wire.TypeDir, mode, "", out)
}

// Symlink creates a symbolic link; its target is sealed like a name.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if len(target) == 0 || len(target) > crypto.MaxSymlinkLen {
		return nil, syscall.ENAMETOOLONG
	}
	return n.create(ctx, name, wire.TypeSymlink, 0o777, target, out)
}

// create makes a directory or symlink in n.
func (n *node) create(ctx context.Context, name string, typ int, mode uint32, target string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	defer n.fsys.changing()()
	if n.fsys.ro {
		return nil, syscall.EROFS
	}
	if e := checkName(name); e != 0 {
		return nil, e
	}
	a := n.newAttr(ctx, typ, mode)
	a.Size = uint64(len(target))
	c, cancel := n.fsys.ctx()
	defer cancel()
	vn, err := n.fsys.v.CreateInode(c, n.id, name, typ, a, target)
	if err != nil {
		return nil, n.fsys.fail("create", n.childPath(name), err)
	}
	n.childCreated(vn.ParentVersion)
	in, cn := n.newChild(ctx, vn, nil, out)
	if typ == wire.TypeDir {
		cn.setList(map[string]struct{}{}, n.fsys.gen())
	}
	return in, 0
}

// Readlink returns the symlink's target, opened when it was looked up.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	n.mu.Lock()
	t := n.target
	n.mu.Unlock()
	if t == "" {
		if e := n.refresh(); e != 0 {
			return nil, e
		}
		n.mu.Lock()
		t = n.target
		n.mu.Unlock()
	}
	return []byte(t), 0
}

// Rmdir removes an empty directory (ENOTEMPTY otherwise).
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

// Unlink removes a name. A file still open here stays readable through its
// descriptors: they keep its manifest, and the server keeps its chunks for
// a grace period.
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

func (n *node) remove(name string, dir bool) syscall.Errno {
	defer n.fsys.changing()()
	if n.fsys.ro {
		return syscall.EROFS
	}
	if e := checkName(name); e != 0 {
		return e
	}
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			if dir && cn.hasPendingChildren() {
				return syscall.ENOTEMPTY
			}
			if !dir && cn.cancelPending() {
				cn.settleCancelled()
				n.listRemove(name)
				return 0
			}
		}
	}
	c, cancel := n.fsys.ctx()
	defer cancel()
	if err := n.fsys.v.Remove(c, n.id, name, dir); err != nil {
		return n.fsys.fail("remove", n.childPath(name), err)
	}
	n.listRemove(name)
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			cn.dropLink()
			if !dir {
				cn.touchCtime() // unless that was its last name
			}
		}
	}
	return 0
}

// dropLink records that one name of the node is gone.
func (n *node) dropLink() {
	n.mu.Lock()
	if n.nlink > 0 {
		n.nlink--
	}
	n.mu.Unlock()
}

// childNode returns the child called name: from the tree when the kernel
// knows it, else from the server.
func (n *node) childNode(ctx context.Context, name string) (*node, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok {
			return cn, 0
		}
	}
	vn, err := n.fsys.v.Lookup(ctx, n.id, name)
	if err != nil {
		return nil, n.fsys.fail("lookup", n.childPath(name), err)
	}
	cn := n.fsys.newNode(vn.ID, vn.Type)
	cn.absorb(vn)
	return cn, 0
}

// Rename moves name to newName in newParent atomically on the server, with
// rename(2)'s replace semantics, RENAME_NOREPLACE or RENAME_EXCHANGE.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	defer n.fsys.changing()()
	if n.fsys.ro {
		return syscall.EROFS
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	if e := checkName(name); e != 0 {
		return e
	}
	if e := checkName(newName); e != 0 {
		return e
	}
	const noReplace, exchange = 1, 2
	mode := wire.RenameReplace
	switch {
	case flags&^(noReplace|exchange) != 0, flags == noReplace|exchange:
		return syscall.EINVAL
	case flags&noReplace != 0:
		mode = wire.RenameNoReplace
	case flags&exchange != 0:
		mode = wire.RenameExchange
	}
	c, cancel := n.fsys.ctx()
	defer cancel()
	src, e := n.childNode(c, name)
	if e != 0 {
		return e
	}
	var dst *node
	if ch := np.GetChild(newName); ch != nil {
		dst, _ = ch.Operations().(*node)
	}
	// A file not on the server yet is created first: a rename names
	// things the server knows. A pending destination of a plain rename
	// is simply replaced; the server never held it.
	if src.isPending() {
		if e := src.commit("rename"); e != 0 {
			return e
		}
	}
	if dst != nil && dst.isPending() {
		switch mode {
		case wire.RenameNoReplace:
			return syscall.EEXIST
		case wire.RenameExchange:
			if e := dst.commit("rename"); e != 0 {
				return e
			}
		}
	}
	var dstVN *vault.Node
	if mode == wire.RenameExchange {
		if dst == nil {
			if dst, e = np.childNode(c, newName); e != 0 {
				return e
			}
		}
		dstVN = &vault.Node{ID: dst.id, Type: dst.typ}
	}
	srcVN := &vault.Node{ID: src.id, Type: src.typ, Parent: n.id, Name: name, Index: n.fsys.v.NameIndex(n.id, name)}
	if err := n.fsys.v.Rename(c, srcVN, np.id, newName, mode, dstVN); err != nil {
		e := n.fsys.fail("rename", n.childPath(name)+" -> "+np.childPath(newName), err)
		if e == syscall.ESTALE {
			// Another client replaced the name under this mount: the
			// kernel's entry is stale, and so is the one it would
			// look up again from a listing.
			n.forgetList()
			np.forgetList()
			go n.NotifyEntry(name)
			if mode == wire.RenameExchange {
				go np.NotifyEntry(newName)
			}
		}
		return e
	}
	if mode != wire.RenameExchange {
		n.listRemove(name)
	}
	np.listAdd(newName)
	src.touchCtime()
	if mode == wire.RenameExchange {
		dst.touchCtime()
	}
	if mode == wire.RenameReplace && dst != nil && dst.id != src.id {
		if dst.cancelPending() {
			dst.settleCancelled()
		} else {
			dst.dropLink()
			dst.touchCtime() // unless that was its last name
		}
	}
	return 0
}

// Link adds a hard link; the link count and version the server returns
// become the node's.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	defer n.fsys.changing()()
	if n.fsys.ro {
		return nil, syscall.EROFS
	}
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	if tn.typ == wire.TypeDir {
		return nil, syscall.EPERM
	}
	if e := checkName(name); e != 0 {
		return nil, e
	}
	if tn.isPending() {
		if e := tn.commit("link"); e != 0 {
			return nil, e
		}
	}
	c, cancel := n.fsys.ctx()
	defer cancel()
	vn, err := n.fsys.v.Link(c, n.id, name, tn.id)
	if err != nil {
		return nil, n.fsys.fail("link", n.childPath(name), err)
	}
	// The answer is the inode as the server has it now, maybe changed by
	// another client since this mount fetched it: the ctime change below
	// must go on top of that, not put back an older generation and size
	// (which made the file unreadable for everyone) or mode. absorb takes
	// it, but for the link count, only for a file not open here.
	tn.absorb(vn)
	tn.mu.Lock()
	if tn.file != nil && tn.version == vn.Version-1 {
		// The link is the only change since the version the open file's
		// edits are based on: adopt the new version, or its commit would
		// see a mismatch that is not a conflict.
		tn.version = vn.Version
	}
	tn.mu.Unlock()
	tn.touchCtime()
	n.listAdd(name)
	tn.fillEntry(out)
	return tn.EmbeddedInode(), 0
}
