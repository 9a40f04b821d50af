package fusefs

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
)

// What the mount may answer without asking the server.
//
// Without news from the server, everything fetched is trusted for attrTTL,
// the kernel's timeouts are as short, and a change made by another client
// shows within about a second. While the server's change feed is followed
// (see watch), the mount learns of every other client's change within a
// poll interval and drops exactly what it touched; until then what it
// fetched stays valid, and the kernel is told so with long timeouts. That
// is what lets a second rsync or a find run at local speed, and a tar into
// a fresh directory know that a name is free without asking.
//
// A fetch that overlapped an invalidation might have read the state from
// before the change, after the change was processed: such answers are
// trusted for attrTTL only. invalidations counts every batch of
// invalidations so that a fetch can tell.

// longTimeout is the kernel's entry and attribute timeout while the change
// feed is followed: long, because the feed invalidates what changes.
const longTimeout = 10 * time.Minute

// gen returns the invalidation counter, read before a fetch.
func (f *FS) gen() uint64 { return f.invalidations.Load() }

// trusted reports whether what was fetched after gen was read may be kept
// until the feed says otherwise.
func (f *FS) trusted(gen uint64) bool {
	return f.following.Load() && f.invalidations.Load() == gen
}

// fresh reports whether something fetched at t (zero: invalidated) is
// still current.
func (f *FS) fresh(t time.Time) bool {
	if t.IsZero() {
		return false
	}
	return f.following.Load() || time.Since(t) < attrTTL
}

// cacheTimeout is the kernel cache timeout for an answer fetched after gen.
func (f *FS) cacheTimeout(gen uint64) time.Duration {
	if f.trusted(gen) {
		return longTimeout
	}
	return attrTTL
}

// setEntryTimeouts sets the timeouts of a lookup answer fetched after gen.
func (f *FS) setEntryTimeouts(out *fuse.EntryOut, gen uint64) {
	d := f.cacheTimeout(gen)
	out.SetEntryTimeout(d)
	out.SetAttrTimeout(d)
}

// adopt registers the node of an inode the kernel now knows, so the change
// feed can find it by ID. It returns the node in the tree, which is an
// existing one when the inode was known already (a hard link).
func (f *FS) adopt(in *fs.Inode) *node {
	n, ok := in.Operations().(*node)
	if !ok {
		return nil
	}
	f.nodesMu.Lock()
	f.nodes[n.id] = n
	f.nodesMu.Unlock()
	return n
}

// byID returns the registered node of an inode.
func (f *FS) byID(id crypto.ID) *node {
	f.nodesMu.Lock()
	defer f.nodesMu.Unlock()
	return f.nodes[id]
}

// childCreated takes the version the server gave directory n when this
// mount created a child in it. If it is the one after the version n holds,
// nothing else changed the directory meanwhile, and the attributes n holds
// are still current: a later chmod or utimensat of the directory (tar sets
// them after filling it) then goes through without first failing on the
// old version and fetching the directory again.
func (n *node) childCreated(version int64) {
	if version == 0 {
		return
	}
	n.mu.Lock()
	if n.version == version-1 {
		n.version = version
	}
	n.mu.Unlock()
}

// OnForget drops the node from the registry once the kernel forgot it.
func (n *node) OnForget() {
	n.mu.Lock()
	n.forgotten = true
	v := seenVersion{ver: max(n.version, n.maxVer), gen: n.maxGen, ctime: n.maxCtime, xstamp: n.maxXstamp}
	n.mu.Unlock()
	n.fsys.nodesMu.Lock()
	if n.fsys.nodes[n.id] == n {
		delete(n.fsys.nodes, n.id)
	}
	if old, ok := n.fsys.seen[n.id]; ok {
		n.fsys.seen[n.id] = seenVersion{ver: max(v.ver, old.ver), gen: max(v.gen, old.gen), ctime: max(v.ctime, old.ctime), xstamp: max(v.xstamp, old.xstamp)}
	} else if v.ctime != 0 {
		if len(n.fsys.seen) >= maxSeen {
			for id := range n.fsys.seen { // any one
				delete(n.fsys.seen, id)
				break
			}
		}
		n.fsys.seen[n.id] = v
	}
	n.fsys.nodesMu.Unlock()
}

// maxSeen bounds what a mount remembers of forgotten inodes, some 60 bytes
// each (a 16-byte key and a 32-byte value in a map, estimated, not
// measured): past a million inodes (a find over a huge tree), the check of
// the ones dropped lapses rather than memory growing without end.
const maxSeen = 1 << 20

// seenVersion is what a mount saw of an inode whose node is gone.
type seenVersion struct {
	ver    int64  // the highest inode version
	gen    uint64 // the highest file generation
	ctime  int64  // the highest ctime of its sealed attributes
	xstamp int64  // the highest stamp of its extended attributes
}

// newNode returns a node for an inode the server described, which still
// knows the highest version and generation this mount saw of it before.
func (f *FS) newNode(id crypto.ID, typ int) *node {
	f.nodesMu.Lock()
	defer f.nodesMu.Unlock()
	s := f.seen[id]
	return &node{fsys: f, id: id, typ: typ, maxVer: s.ver, maxGen: s.gen, maxCtime: s.ctime, maxXstamp: s.xstamp}
}

// sawLocked raises what this mount has seen of the inode (olderThanSeen)
// to an answer from the server, attributes a at version. n.mu is held.
func (n *node) sawLocked(a crypto.Attr, version int64) {
	n.maxVer = max(n.maxVer, version)
	n.maxCtime = max(n.maxCtime, a.Ctime)
}

// takeAttrLocked makes a, the server's attributes at version, the node's,
// before this mount's changes not yet stored (the caller reapplies those
// it must), and raises what it has seen. n.mu is held.
func (n *node) takeAttrLocked(a crypto.Attr, version int64) {
	n.attr, n.attrBase, n.version = a, a, version
	n.sawLocked(a, version)
}

// olderThanSeen reports whether an answer about n's inode is older than
// what this mount has seen of it: a lower inode version (late, or a
// rollback), generation, attribute ctime or xattr stamp (a rollback).
func (n *node) olderThanSeen(vn *vault.Node) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return vn.Version < n.maxVer || vn.Attr.Generation < n.maxGen || vn.Attr.Ctime < n.maxCtime || vn.XattrStamp < n.maxXstamp
}

var _ fs.NodeOnForgetter = (*node)(nil)

// dirList is what the mount knows of a directory's names: every name on
// the server when it was taken (plus this mount's changes since), so that
// a name not in it does not exist, without asking.
type dirList struct {
	names map[string]struct{}
	at    time.Time
}

// setList records a directory's complete listing fetched after gen.
func (n *node) setList(names map[string]struct{}, gen uint64) {
	at := time.Now()
	if !n.fsys.trusted(gen) && n.fsys.following.Load() {
		return // it may predate a change already processed
	}
	n.mu.Lock()
	n.list = &dirList{names: names, at: at}
	n.mu.Unlock()
}

// listed tells whether the directory's listing is current, and if so
// whether name is in it.
func (n *node) listed(name string) (known, present bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.list == nil || !n.fsys.fresh(n.list.at) {
		return false, false
	}
	_, present = n.list.names[name]
	return true, present
}

// listAdd and listRemove keep the listing in step with this mount's own
// changes to the directory.
func (n *node) listAdd(name string) {
	n.mu.Lock()
	if n.list != nil {
		n.list.names[name] = struct{}{}
	}
	n.mu.Unlock()
}

func (n *node) listRemove(name string) {
	n.mu.Lock()
	if n.list != nil {
		delete(n.list.names, name)
	}
	n.mu.Unlock()
}

// forgetList drops the listing: the directory changed elsewhere.
func (n *node) forgetList() {
	n.mu.Lock()
	n.list = nil
	n.mu.Unlock()
}

// invalidate drops what the mount and the kernel hold of inodes another
// client changed: their attributes and cached content, and, in the
// directories among dirs, the names that lead to any of them and the
// listing.
func (f *FS) invalidate(inodes map[crypto.ID]bool, dirs map[crypto.ID]bool) {
	f.invalidations.Add(1)
	for id := range inodes {
		n := f.byID(id)
		if n == nil {
			continue
		}
		n.mu.Lock()
		n.fetched = time.Time{}
		n.mu.Unlock()
		n.NotifyContent(0, 0)
	}
	for id := range dirs {
		d := f.byID(id)
		if d == nil {
			continue
		}
		d.forgetList()
		d.mu.Lock()
		d.fetched = time.Time{}
		d.mu.Unlock()
		for name, ch := range d.Children() {
			if cn, ok := ch.Operations().(*node); ok && inodes[cn.id] && !cn.isPending() {
				d.NotifyEntry(name)
			}
		}
	}
}

// invalidateAll drops everything the mount and the kernel cached: the feed
// cannot say what changed (it was interrupted, or the server lost its
// history).
func (f *FS) invalidateAll() {
	f.invalidations.Add(1)
	f.nodesMu.Lock()
	all := make([]*node, 0, len(f.nodes))
	for _, n := range f.nodes {
		all = append(all, n)
	}
	f.nodesMu.Unlock() // the root is among them: New registers it
	for _, n := range all {
		n.mu.Lock()
		n.fetched = time.Time{}
		n.list = nil
		n.mu.Unlock()
		n.NotifyContent(0, 0)
		for name, ch := range n.Children() {
			if cn, ok := ch.Operations().(*node); ok && !cn.isPending() {
				n.NotifyEntry(name)
			}
		}
	}
}
