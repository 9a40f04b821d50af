package fusefs

import (
	"context"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

// metaBits are the setattr fields stored in the sealed attributes.
const metaBits = fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_GID | fuse.FATTR_ATIME | fuse.FATTR_MTIME |
	fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW | fuse.FATTR_CTIME

// Setattr implements chmod, chown, utimensat (nanoseconds kept) and
// truncate. A file with unsaved changes takes them into its next commit;
// otherwise they are sent in the background a moment later (attrsync.go).
// A truncate through a path (no open descriptor) is committed before it
// returns.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.ro {
		return syscall.EROFS
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	sized := false
	if sz, ok := in.GetSize(); ok {
		switch n.typ {
		case wire.TypeDir:
			return syscall.EISDIR
		case wire.TypeSymlink:
			return syscall.EINVAL
		}
		release := n.holdPages()
		st, e := n.loadFileHeld()
		if e != 0 {
			release(nil, false)
			return e
		}
		tooLarge := sz > uint64(st.layout.MaxFileSize())
		if !tooLarge {
			n.truncate(st, int64(sz))
		}
		// The truncate pinned the state (it has changes); the hold can go.
		n.mu.Lock()
		st.opens--
		n.mu.Unlock()
		release(nil, false)
		if tooLarge {
			n.dropIfIdle()
			return syscall.EFBIG
		}
		sized = true
	}
	// With HANDLE_KILLPRIV_V2 the kernel leaves clearing set-user-ID and
	// set-group-ID to us: it asks with FATTR_KILL_SUIDGID on chown and on
	// a truncate by a caller without CAP_FSETID.
	kill := in.Valid&fuse.FATTR_KILL_SUIDGID != 0 && n.typ == wire.TypeFile
	meta := in.Valid&metaBits != 0 || kill
	// The change may be applied again later (attrsync.go), when the
	// request's buffer holds another request: it takes its values now,
	// and sets absolute ones, ctime too.
	now := time.Now()
	mode, setMode := in.GetMode()
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	atime, setAtime := in.GetATime()
	mtime, setMtime := in.GetMTime()
	change := func(a *crypto.Attr) {
		if kill {
			a.Mode = killPrivs(a.Mode)
		}
		if setMode {
			a.Mode = a.Mode&^07777 | mode
		}
		if setUID {
			a.UID = uid
		}
		if setGID {
			a.GID = gid
		}
		if setAtime {
			a.Atime = crypto.AttrTime(atime)
		}
		if setMtime {
			a.Mtime = crypto.AttrTime(mtime)
		}
		a.TouchCtime(now.UnixNano())
	}
	n.mu.Lock()
	st := n.file
	deferred := st != nil && st.pinned()
	if deferred && meta {
		change(&n.attr)
		st.changed = true
	}
	opens := 0
	if st != nil {
		opens = st.opens
	}
	if meta && !deferred && n.nlink == 0 && n.pending == nil {
		// Unlinked (by this mount) while open: nothing on the server
		// has this inode any more, and the attributes live as long as
		// the descriptors, as on a local disk.
		change(&n.attr)
		meta = false
	}
	if meta && !deferred {
		// A change to what is already stored (tar chowns every
		// directory to the owner it has) would cost a round trip to
		// bump ctime alone: it is not sent.
		b := n.attr
		change(&b)
		b.Ctime = n.attr.Ctime
		meta = b != n.attr
	}
	n.mu.Unlock()
	if meta && !deferred {
		if e := n.queueAttr(change); e != 0 {
			return e
		}
	}
	if (deferred || sized) && opens == 0 {
		if e := n.commitLocked("setattr"); e != 0 {
			return e
		}
		n.dropIfIdle()
	}
	n.fillAttr(&out.Attr)
	out.SetTimeout(n.fsys.cacheTimeout(n.fsys.gen()))
	return 0
}

// patch stores the node's attributes now, conditional on the inode's
// version. When another change came first, change (what this mount
// changed) is applied on top of that one.
func (n *node) patch(change attrChange) syscall.Errno {
	defer n.fsys.changing()()
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	n.mu.Lock()
	b, ver := n.attr, n.version
	n.mu.Unlock()
	for attempt := 0; ; attempt++ {
		vn, err := n.fsys.v.SetAttr(ctx, n.id, b, ver)
		if err == nil {
			n.mu.Lock()
			// A listing fetched before this change is late: raising
			// maxVer lets absorb tell, also for an open file that
			// keeps its older version.
			n.sawLocked(vn.Attr, vn.Version)
			if n.file == nil || vn.Attr.Generation == n.file.gen {
				n.takeAttrLocked(vn.Attr, vn.Version)
				// The changes sent are in the answer; applied again,
				// each would raise its ctime once more.
				for _, c := range n.attrDue {
					c(&n.attr)
				}
				n.fetched = time.Now()
			}
			n.nlink = vn.Nlink
			n.mu.Unlock()
			return 0
		}
		if !remote.IsVersionMismatch(err) || !raceBackoff(ctx, attempt) {
			return n.fsys.fail("setattr", n.path(), err)
		}
		cur, serr := n.fsys.v.Stat(ctx, n.id)
		if serr != nil {
			return n.fsys.fail("setattr", n.path(), serr)
		}
		b, ver = cur.Attr, cur.Version
		change(&b)
	}
}

// raceBackoff waits before another attempt of a change that lost a race
// for the inode's version to another client changing it at the same time:
// a random pause that grows with the attempts, so two clients that keep
// colliding draw apart instead of failing after a few immediate retries
// (6-13 % of concurrent chmods and setxattrs from two mounts failed with
// EIO that way). It reports false once the attempts are used up.
func raceBackoff(ctx context.Context, attempt int) bool {
	const attempts = 16
	if attempt >= attempts-1 {
		return false
	}
	// Up to 5 ms at first (about a round trip and a half), doubling to
	// at most 320 ms: at most about 3.5 s in all.
	d := time.Duration(rand.Int64N(int64(5*time.Millisecond) << min(attempt, 6)))
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// killPrivs clears the set-user-ID bit, and the set-group-ID bit where it
// means that (group execute set; without it the bit marks mandatory
// locking), as Linux does when a file is written, truncated or chowned.
func killPrivs(mode uint32) uint32 {
	mode &^= syscall.S_ISUID
	if mode&syscall.S_IXGRP != 0 {
		mode &^= syscall.S_ISGID
	}
	return mode
}

// killPrivsFor clears the file's set-ID bits when a caller without
// privilege writes or truncates it. The kernel sends no flag for that
// through go-fuse's file API, so a caller other than root stands for one
// without CAP_FSETID. As in Linux, such a caller also loses a set-group-ID
// bit without group execute unless it is in the file's group (its primary
// group: FUSE does not tell the others). The change goes with the file's
// next commit; the caller holds opMu and the state is pinned by the write.
func (n *node) killPrivsFor(ctx context.Context, st *fileState) {
	c, ok := fuse.FromContext(ctx)
	if !ok || c.Uid == 0 {
		return
	}
	n.mu.Lock()
	mode := killPrivs(n.attr.Mode)
	if c.Gid != n.attr.GID {
		mode &^= syscall.S_ISGID
	}
	changed := mode != n.attr.Mode
	if changed {
		n.attr.Mode = mode
		n.attr.TouchCtime(time.Now().UnixNano())
		st.changed = true
	}
	n.mu.Unlock()
	if changed {
		// The kernel keeps the mode it cached, set-ID bits and all, for
		// as long as the attributes are valid (the change feed makes that
		// long): it must ask again. Only the attributes are dropped
		// (offset -1), which takes no lock the write holds.
		n.NotifyContent(-1, 0)
	}
}
