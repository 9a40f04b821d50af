package fusefs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

// node is one inode of the mount: a file, directory or symlink of the
// account, known by its 128-bit ID. Hard links share one node.
type node struct {
	fs.Inode
	fsys *FS
	id   crypto.ID
	typ  int // wire.TypeFile, TypeDir or TypeSymlink

	// opMu serialises the operations that change a file's content
	// (write, truncate, commit), so a commit sees one consistent state,
	// and everything that sends its attributes (a commit, a flush of
	// attrDue, an xattr change): each is conditional on the inode
	// version the one before it produced.
	opMu sync.Mutex

	// mu guards everything below, and the open file state.
	mu      sync.Mutex
	attr    crypto.Attr // committed size and generation, local mode and times
	version int64       // inode version the next commit is conditional on
	// attrBase is attr as the server had it at version, before this
	// mount's changes: what tells them apart from another client's when
	// a commit is rebased onto that client's attribute change.
	attrBase crypto.Attr
	nlink    int64
	target   string
	fetched  time.Time // when attr last came from the server
	file     *fileState
	// kept is the state of the file as of its last close, kept for a
	// moment in case it is opened again (see reuseKept).
	kept *fileState
	// pending is set while a file created here is not yet on the server:
	// its first commit creates it (see Create).
	pending *pendingCreate
	// list is a directory's known names (see coherence.go).
	list *dirList
	// walk is when the directory was last opened and last had its
	// subdirectories queued as siblings (listahead.go); nil until the
	// first, as files never are. A node is kept for every inode the
	// kernel holds, 100,000 for a tree of that many files, so what only
	// some nodes need is not in every one.
	walk *walkTimes
	// xattrs is the extended attribute set as last read or written, and
	// xattrsVer the inode version it was read or written at: a listing
	// fetched before this mount's last setxattr must not bring back the
	// set from before it (the next setxattr would then store the set
	// without the attribute, on an open file whose version the listing
	// does not change).
	xattrs    map[string][]byte
	xattrsVer int64
	// xattrStamp is the stamp xattrs was sealed with, which the next
	// set's must exceed; maxXstamp the highest the server sent, below
	// which a set is an earlier one served again (a rollback).
	xattrStamp, maxXstamp int64
	// maxGen is the highest generation of the file seen: a server that
	// answers with a lower one is rolling the file back. maxVer is the
	// highest inode version seen, which version does not follow while
	// the file is open: an answer below it is merely late.
	maxGen uint64
	maxVer int64
	// maxCtime is the highest ctime of the attributes the server sent:
	// every change raises it (crypto.Attr.TouchCtime), so a server that
	// answers with a lower one is serving an earlier sealing of the
	// attributes, undoing a chmod, chown or utimensat.
	maxCtime int64
	// home is the directory and name the file was last seen under, where
	// a conflict copy goes once another client removed the file and the
	// kernel forgot its name (see conflict).
	home     *node
	homeName string
	// goneElsewhere is set when the server said the inode no longer
	// exists while this mount still had a name for it: another client
	// removed it, which unlike an unlink here does not drop what this
	// mount wrote.
	goneElsewhere bool
	// attrDue are chmod, chown and utimensat changes applied to attr
	// here and not yet sent, attrSending those being sent; both are
	// applied again to attributes taken from the server meanwhile.
	// attrScheduled is set while a flush is due (attrsync.go).
	attrDue, attrSending []attrChange
	attrScheduled        bool
	// forgotten is set once the kernel forgot the inode: a later lookup
	// makes a new node, which takes over its attribute changes.
	forgotten bool

	pages pageGate // orders pushes into the kernel's page cache (pagecache.go)
}

// pendingCreate is where a file this mount created will be created on the
// server by its first commit.
type pendingCreate struct {
	dir  crypto.ID
	name string
	base string // the name asked for, once a conflict renamed it
}

// isPending reports whether the file exists only in this mount so far.
func (n *node) isPending() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pending != nil
}

var (
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeOpendirHandler = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeReadlinker     = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeStatfser       = (*node)(nil)
)

// typeMode is the S_IFMT bits of an inode type.
func typeMode(typ int) uint32 {
	switch typ {
	case wire.TypeDir:
		return syscall.S_IFDIR
	case wire.TypeSymlink:
		return syscall.S_IFLNK
	}
	return syscall.S_IFREG
}

// attrTTL is how long attributes fetched from the server are trusted, the
// same as the kernel's attribute timeout.
const attrTTL = time.Second

// absorb takes what the server says of the inode. A file with an open or
// unsaved state keeps the version and attributes its edits are based on;
// only the link count is news to it.
func (n *node) absorb(vn *vault.Node) {
	if vn.ID != n.id {
		// The vault checks that an answer is about the inode asked for;
		// nothing of another inode may land here whatever a caller did.
		n.fsys.log.Error("the server's answer is about another inode; ignoring it", "path", n.path(), "got", vn.ID)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if vn.Version < max(n.version, n.maxVer) {
		// The answer to a lookup, stat or listing sent before this
		// mount learned of a newer version (its own commit, or an
		// answer that overtook this one): nothing in it is news. Two
		// mounts busy on one directory saw thousands of these, each
		// logged as a rollback.
		return
	}
	n.maxVer = vn.Version
	if vn.Attr.Generation < n.maxGen {
		// The server went back to an older version of the file than
		// this mount has seen: keep what it knows, and say so.
		n.fsys.log.Error("the server returned an older version of the file than this mount has seen (rollback); keeping the newer one",
			"path", n.path(), "seen", n.maxGen, "returned", vn.Attr.Generation)
		return
	}
	n.maxGen = vn.Attr.Generation
	if vn.Attr.Ctime < n.maxCtime {
		n.fsys.log.Error("the server returned older attributes than this mount has seen (rollback); keeping the newer ones",
			"path", n.path(), "seen_ctime", n.maxCtime, "returned_ctime", vn.Attr.Ctime)
		return
	}
	n.maxCtime = vn.Attr.Ctime
	n.nlink = vn.Nlink
	if vn.Version >= n.xattrsVer {
		if vn.XattrStamp < n.maxXstamp {
			n.fsys.log.Error("the server returned older extended attributes than this mount has seen (rollback); keeping the newer ones",
				"path", n.path(), "seen_stamp", n.maxXstamp, "returned_stamp", vn.XattrStamp)
		} else {
			n.xattrs, n.xattrsVer = vn.Xattrs, vn.Version
			n.xattrStamp, n.maxXstamp = vn.XattrStamp, vn.XattrStamp
		}
	}
	if n.file != nil {
		return
	}
	n.takeAttrLocked(vn.Attr, vn.Version)
	n.target = vn.Target
	n.reapplyDue()
	n.fetched = time.Now()
}

// goneOnServer records that the server no longer has the inode although
// the kernel still had a name for it: another client removed it.
func (n *node) goneOnServer() {
	n.mu.Lock()
	n.nlink, n.goneElsewhere, n.fetched = 0, true, time.Now()
	n.mu.Unlock()
}

// rememberHome records the directory and name the node is under now, if
// the kernel still knows one.
func (n *node) rememberHome() {
	name, p := n.Parent()
	if p == nil || name == "" {
		return
	}
	if pn, ok := p.Operations().(*node); ok {
		n.mu.Lock()
		n.home, n.homeName = pn, name
		n.mu.Unlock()
	}
}

// path names the node for logs: a path from the mount's root.
func (n *node) path() string {
	if n.id.IsZero() {
		return "/"
	}
	p := n.Path(nil)
	if p == "" {
		return "(unlinked " + n.id.String()[:16] + ")"
	}
	return "/" + p
}

// childPath names a child for logs.
func (n *node) childPath(name string) string {
	p := n.path()
	if p == "/" {
		return "/" + name
	}
	return p + "/" + name
}

// fillAttr writes the node's attributes as stat(2) shows them.
func (n *node) fillAttr(out *fuse.Attr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fillAttrLocked(out)
}

func (n *node) fillAttrLocked(out *fuse.Attr) {
	a := n.attr
	size := a.Size
	if n.file != nil {
		size = uint64(n.file.size)
	}
	out.Ino = ino(n.id)
	out.Mode = typeMode(n.typ) | a.Mode&07777
	out.Size = size
	out.Blocks = (size + 511) / 512
	out.Blksize = 4096
	out.Nlink = uint32(max(n.nlink, 0))
	if n.typ == wire.TypeDir && out.Nlink == 0 {
		out.Nlink = 1
	}
	out.Uid, out.Gid, out.Rdev = a.UID, a.GID, a.Rdev
	out.Atime, out.Atimensec = splitNanos(a.Atime)
	out.Mtime, out.Mtimensec = splitNanos(a.Mtime)
	out.Ctime, out.Ctimensec = splitNanos(a.Ctime)
}

// splitNanos splits nanoseconds since the epoch for struct stat.
func splitNanos(ns int64) (uint64, uint32) {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return uint64(sec), uint32(nsec)
}

// fillEntry writes a lookup answer for the node.
func (n *node) fillEntry(out *fuse.EntryOut) {
	n.fillAttr(&out.Attr)
}

// Getattr answers stat(2). Attributes older than the kernel's timeout are
// fetched again, so changes made by other clients show.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	gen := n.fsys.gen()
	n.mu.Lock()
	stale := n.file == nil && !n.fsys.fresh(n.fetched)
	n.mu.Unlock()
	if stale {
		if e := n.refresh(); e != 0 {
			return e
		}
	}
	n.fillAttr(&out.Attr)
	out.SetTimeout(n.fsys.cacheTimeout(gen))
	return 0
}

// refresh fetches the inode's attributes from the server.
func (n *node) refresh() syscall.Errno {
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	gen := n.fsys.gen()
	defer func() {
		if !n.fsys.trusted(gen) && n.fsys.following.Load() {
			// Fetched across an invalidation: maybe older than it.
			n.mu.Lock()
			n.fetched = time.Now().Add(-attrTTL / 2)
			n.mu.Unlock()
		}
	}()
	vn, err := n.fsys.v.Stat(ctx, n.id)
	if err != nil {
		if errno(err) == syscall.ENOENT {
			// Gone on the server (removed by another client): what the
			// kernel still holds is all that is left of it.
			n.goneOnServer()
			return 0
		}
		return n.fsys.fail("stat", n.path(), err)
	}
	n.absorb(vn)
	return 0
}

// childFor returns the inode for a child the server described, reusing the
// node the tree already has under that name when it is the same inode, so
// a file with unsaved writes keeps its state. A file the server rolled
// back to a generation older than one this mount saw is EIO.
func (n *node) childFor(ctx context.Context, name string, vn *vault.Node, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if ch := n.GetChild(name); ch != nil {
		if cn, ok := ch.Operations().(*node); ok && cn.id == vn.ID {
			cn.absorb(vn)
			cn.fillEntry(out)
			return ch, 0
		}
	}
	if ex := n.fsys.byID(vn.ID); ex != nil && ex.typ == vn.Type {
		// Known under another name (a hard link, or a name another
		// client gave it): the kernel keeps the inode it has, so the
		// answer is that node's, with what this mount has not stored
		// yet, and the node stays the one the change feed finds.
		ex.absorb(vn)
		ex.fillEntry(out)
		return ex.EmbeddedInode(), 0
	}
	cn := n.fsys.newNode(vn.ID, vn.Type)
	if cn.olderThanSeen(vn) {
		// An answer older than what this mount saw before the kernel
		// forgot the inode: a listing or lookup that was late, or a
		// rollback. absorb would keep newer attributes, but a new node
		// has none, so ask again.
		c, cancel := n.fsys.ctx()
		fresh, err := n.fsys.v.Stat(c, vn.ID)
		cancel()
		if err != nil {
			return nil, n.fsys.fail("lookup", n.childPath(name), err)
		}
		if cn.olderThanSeen(fresh) {
			n.fsys.log.Error("the server returned an older version of the inode than this mount has seen (rollback)",
				"path", n.childPath(name), "seen", cn.maxGen, "returned", fresh.Attr.Generation,
				"seen_ctime", cn.maxCtime, "returned_ctime", fresh.Attr.Ctime,
				"seen_xattr_stamp", cn.maxXstamp, "returned_xattr_stamp", fresh.XattrStamp)
			return nil, syscall.EIO
		}
		vn = fresh
	}
	cn.absorb(vn)
	cn.inheritAttrs()
	cn.fillEntry(out)
	in := n.NewInode(ctx, cn, fs.StableAttr{Mode: typeMode(vn.Type), Ino: ino(vn.ID)})
	if got := n.fsys.adopt(in); got != nil && got != cn {
		got.absorb(vn)
		got.fillEntry(out)
	}
	return in, 0
}

// newChild returns the inode for a child this mount just created.
func (n *node) newChild(ctx context.Context, vn *vault.Node, st *fileState, out *fuse.EntryOut) (*fs.Inode, *node) {
	cn := n.fsys.newNode(vn.ID, vn.Type)
	cn.absorb(vn)
	cn.file = st
	cn.fillEntry(out)
	in := n.NewInode(ctx, cn, fs.StableAttr{Mode: typeMode(vn.Type), Ino: ino(vn.ID)})
	n.fsys.adopt(in)
	n.listAdd(vn.Name)
	n.fsys.setEntryTimeouts(out, n.fsys.gen())
	return in, cn
}

// caller returns the uid and gid of the process making the request.
func caller(ctx context.Context) (uint32, uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return 0, 0
}

// newAttr returns the attributes of an inode a caller creates in n. In a
// set-group-ID directory the new inode takes the directory's group, and a
// new directory the bit too, as on a local disk: shared project
// directories rely on it, and under FUSE the kernel leaves it to us. (The
// kernel has already dropped S_ISGID from perm where the caller may not
// set it.)
func (n *node) newAttr(ctx context.Context, typ int, perm uint32) crypto.Attr {
	uid, gid := caller(ctx)
	mode := typeMode(typ) | perm&07777
	n.mu.Lock()
	if n.attr.Mode&syscall.S_ISGID != 0 {
		gid = n.attr.GID
		if typ == wire.TypeDir {
			mode |= syscall.S_ISGID
		}
	}
	n.mu.Unlock()
	now := time.Now().UnixNano()
	return crypto.Attr{Mode: mode, UID: uid, GID: gid, Atime: now, Mtime: now, Ctime: now}
}

// checkName refuses names a POSIX filesystem of this kind does not take.
func checkName(name string) syscall.Errno {
	if len(name) > 255 {
		return syscall.ENAMETOOLONG
	}
	if err := vault.CheckName(name); err != nil {
		return syscall.EINVAL
	}
	return 0
}

// Statfs reports the account's quota and usage, or a large free space for
// an account without quota.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	c, cancel := n.fsys.ctx()
	defer cancel()
	acct, err := n.fsys.v.Client().Account(c)
	if err != nil {
		return n.fsys.fail("statfs", "/", err)
	}
	const bs = 4096
	total := acct.QuotaBytes
	if total <= 0 {
		total = max(acct.UsedBytes, 0) + 1<<50
	}
	free := max(total-acct.UsedBytes, 0)
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = uint64(total / bs)
	out.Bfree = uint64(free / bs)
	out.Bavail = out.Bfree
	out.Files = 1 << 32
	out.Ffree = 1 << 32
	out.NameLen = 255
	return 0
}
