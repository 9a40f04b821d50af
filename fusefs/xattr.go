package fusefs

import (
	"context"
	"maps"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"

	"github.com/sealfs/sealfs/remote"
)

// Extended attributes are sealed as one set per inode (crypto.SealXattrs)
// and replaced as a whole on the server, conditionally on the inode's
// version. They are stored at once, not with the next commit: they are
// small, and tools that set them (cp -a, rsync -X, tar --xattrs) do so
// after writing. The system.* namespace (POSIX ACLs) is refused: the
// kernel would not enforce ACLs stored here.

var (
	_ fs.NodeGetxattrer    = (*node)(nil)
	_ fs.NodeSetxattrer    = (*node)(nil)
	_ fs.NodeListxattrer   = (*node)(nil)
	_ fs.NodeRemovexattrer = (*node)(nil)
)

const (
	xattrCreate  = 1 // XATTR_CREATE
	xattrReplace = 2 // XATTR_REPLACE
)

// currentXattrs returns the inode's attribute set, fetched again when
// what the mount holds may be stale.
func (n *node) currentXattrs() (map[string][]byte, syscall.Errno) {
	n.mu.Lock()
	stale := n.file == nil && n.pending == nil && !n.fsys.fresh(n.fetched)
	n.mu.Unlock()
	if stale {
		if e := n.refresh(); e != 0 {
			return nil, e
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.xattrs, 0
}

// Getxattr implements getxattr(2).
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	x, e := n.currentXattrs()
	if e != 0 {
		return 0, e
	}
	v, ok := x[attr]
	if !ok {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr implements listxattr(2): the names, each NUL-terminated.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	x, e := n.currentXattrs()
	if e != 0 {
		return 0, e
	}
	names := make([]string, 0, len(x))
	for k := range x {
		names = append(names, k)
	}
	sort.Strings(names)
	var b []byte
	for _, k := range names {
		b = append(append(b, k...), 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// Setxattr implements setxattr(2) with XATTR_CREATE and XATTR_REPLACE.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !storedNamespace(attr) {
		return syscall.EOPNOTSUPP
	}
	value := append([]byte{}, data...)
	return n.changeXattrs("setxattr", func(x map[string][]byte) syscall.Errno {
		_, exists := x[attr]
		switch {
		case flags&xattrCreate != 0 && exists:
			return syscall.EEXIST
		case flags&xattrReplace != 0 && !exists:
			return syscall.ENODATA
		}
		x[attr] = value
		return 0
	})
}

// Removexattr implements removexattr(2). Removing a POSIX ACL succeeds:
// none is ever stored, and tools that strip ACLs (setfacl -b, a copy
// that resets them) expect success where a local disk has none either.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	switch {
	case attr == "system.posix_acl_access", attr == "system.posix_acl_default":
		return 0
	case !storedNamespace(attr):
		return syscall.EOPNOTSUPP
	}
	return n.changeXattrs("removexattr", func(x map[string][]byte) syscall.Errno {
		if _, ok := x[attr]; !ok {
			return syscall.ENODATA
		}
		delete(x, attr)
		return 0
	})
}

var storedNamespaces = []string{"user.", "trusted.", "security."}

// storedNamespace reports whether attr is in a namespace the mount
// stores: user, trusted (the kernel lets only CAP_SYS_ADMIN reach it) and
// security. The system namespace (POSIX ACLs) is not, and names outside
// any namespace are refused as a local file system refuses them.
func storedNamespace(attr string) bool {
	for _, ns := range storedNamespaces {
		if strings.HasPrefix(attr, ns) && len(attr) > len(ns) {
			return true
		}
	}
	return false
}

// xattrRetryDelay postpones every retried change of an xattr set by
// SEALFS_TEST_XATTR_RETRY_DELAY, for tests that close a descriptor while a
// retry is on its way; zero unless set.
var xattrRetryDelay, _ = time.ParseDuration(os.Getenv("SEALFS_TEST_XATTR_RETRY_DELAY"))

// changeXattrs applies change to the inode's attribute set and stores the
// result, conditional on the version it was read at; when another change
// came first, it is applied again on top of that one.
func (n *node) changeXattrs(op string, change func(map[string][]byte) syscall.Errno) syscall.Errno {
	defer n.fsys.changing()()
	if n.fsys.ro {
		return syscall.EROFS
	}
	if n.isPending() {
		// The server must know the inode before it can hold anything
		// of it.
		if e := n.commit(op); e != 0 {
			return e
		}
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	n.mu.Lock()
	x, ver, stamp := maps.Clone(n.xattrs), n.version, max(n.xattrStamp, n.maxXstamp)
	n.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if x == nil {
			x = map[string][]byte{}
		}
		if e := change(x); e != 0 {
			return e
		}
		if attempt > 0 && xattrRetryDelay > 0 {
			time.Sleep(xattrRetryDelay)
		}
		vn, err := n.fsys.v.SetXattrs(ctx, n.id, x, stamp, ver)
		if err == nil {
			n.mu.Lock()
			n.xattrs, n.xattrsVer = vn.Xattrs, vn.Version
			n.xattrStamp, n.maxXstamp = vn.XattrStamp, max(n.maxXstamp, vn.XattrStamp)
			n.nlink = vn.Nlink
			n.sawLocked(vn.Attr, vn.Version)
			switch {
			case n.file == nil:
				// The answer's attributes go with its version: a
				// retry may have gone on top of another client's
				// commit while a descriptor, now closed, kept the
				// node at the older one, and a chmod that sealed the
				// older size and generation under the new version
				// would make the file unreadable for every client.
				n.takeAttrLocked(vn.Attr, vn.Version)
				n.reapplyDue()
				n.fetched = time.Now()
			case n.version == vn.Version-1:
				// The only change since the version the open file's
				// edits are based on: adopt the new one, so a later
				// commit is not taken for a conflict.
				n.version = vn.Version
			}
			n.mu.Unlock()
			return 0
		}
		if !remote.IsVersionMismatch(err) || !raceBackoff(ctx, attempt) {
			return n.fsys.fail(op, n.path(), err)
		}
		cur, serr := n.fsys.v.Stat(ctx, n.id)
		if serr != nil {
			return n.fsys.fail(op, n.path(), serr)
		}
		x, ver = maps.Clone(cur.Xattrs), cur.Version
		n.mu.Lock()
		stamp = max(cur.XattrStamp, n.maxXstamp)
		if n.file == nil && cur.Attr.Ctime >= n.maxCtime {
			n.takeAttrLocked(cur.Attr, cur.Version)
			n.reapplyDue()
		}
		n.mu.Unlock()
	}
}
