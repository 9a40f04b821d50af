package fusefs

import (
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// A chmod, chown or utimensat of an inode without unsaved writes is applied
// in the mount at once and sent to the server a moment later, in the
// background. Tools make these calls one after another on each file, with
// nothing waiting on their durability: rsync sets the times and then the
// mode of every file it has written (before renaming it into place), tar
// the times and mode of every directory it has filled. Sent as they came,
// each was one round trip and one durable transaction on the server,
// during which the tool waited: two of the four per file of an rsync. Sent
// later, the calls of one burst go as one change, off the tool's path.
// A local disk makes them durable no sooner: at the journal's next commit,
// or at fsync, which here sends them before it returns (docs/semantics.md).

// DefaultAttrDelay is how long a change waits for the next one of its
// burst (Options.AttrDelay).
const DefaultAttrDelay = 20 * time.Millisecond

// attrDueMax is how many changes may wait; a burst beyond it is sent at once.
const attrDueMax = 64

// attrChange is one setattr's change of the sealed attributes. It sets
// absolute values (its ctime too), so applying it again changes nothing.
type attrChange func(*crypto.Attr)

// queueAttr applies change here and has it sent in the background. It is
// called with opMu held.
func (n *node) queueAttr(change attrChange) syscall.Errno {
	n.mu.Lock()
	change(&n.attr)
	n.attrDue = append(n.attrDue, change)
	full := len(n.attrDue) >= attrDueMax
	schedule := !n.attrScheduled && !full
	n.attrScheduled = n.attrScheduled || schedule
	n.mu.Unlock()
	n.fsys.markAttrDue(n, true)
	if full {
		return n.flushAttrsLocked()
	}
	if schedule {
		time.AfterFunc(n.fsys.attrDelay, func() { _ = n.flushAttrs() })
	}
	return 0
}

// attrFlushScheduled reports whether a flush of waiting changes is due
// (none is after one failed: the retry loop sends them).
func (n *node) attrFlushScheduled() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attrScheduled
}

// touchCtime moves the inode's ctime, as a local disk does when a link, a
// rename or the removal of one of its names changes the inode without a
// setattr; the change goes to the server like a chmod's, with the burst
// it may belong to (rsync renames right after its chmod).
func (n *node) touchCtime() {
	now := time.Now().UnixNano()
	n.opMu.Lock()
	defer n.opMu.Unlock()
	n.mu.Lock()
	gone := n.nlink == 0 || n.pending != nil
	n.mu.Unlock()
	if gone {
		return
	}
	_ = n.queueAttr(func(a *crypto.Attr) { a.TouchCtime(now) })
}

// reapplyDue applies the changes not yet stored to attributes just taken
// from the server, which does not have them yet. n.mu is held.
func (n *node) reapplyDue() {
	for _, c := range n.attrSending {
		c(&n.attr)
	}
	for _, c := range n.attrDue {
		c(&n.attr)
	}
}

// flushAttrs sends the changes waiting, and returns once the server has
// them. A failure keeps them for the next attempt: the retry loop's, an
// fsync's or the unmount's. An inode the server no longer has takes them
// nowhere: they stay in the mount while it knows the inode.
func (n *node) flushAttrs() syscall.Errno {
	// opMu keeps out what else changes the attributes here while the
	// request is on the wire (a write by another user clears
	// set-user-ID), which the answer would otherwise overwrite.
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return n.flushAttrsLocked()
}

// flushAttrsLocked is flushAttrs with opMu held.
func (n *node) flushAttrsLocked() syscall.Errno {
	n.mu.Lock()
	n.attrScheduled = false
	if len(n.attrDue) == 0 || n.file != nil && n.file.pinned() {
		// Nothing waits, or the file has unsaved changes: its
		// commit, which close, fsync or the retry loop makes, carries
		// its attributes (since a write may have changed them too,
		// clearing set-user-ID, sending the changes here would undo
		// that).
		n.mu.Unlock()
		return 0
	}
	n.attrSending, n.attrDue = n.attrDue, nil
	sending := n.attrSending
	n.mu.Unlock()
	e := n.patch(func(a *crypto.Attr) {
		for _, c := range sending {
			c(a)
		}
	})
	n.mu.Lock()
	n.attrSending = nil
	if e != 0 && e != syscall.ENOENT {
		n.attrDue = sending // opMu kept new ones out meanwhile
	}
	due := len(n.attrDue) > 0
	n.mu.Unlock()
	n.fsys.markAttrDue(n, due)
	if e == syscall.ENOENT {
		return 0
	}
	return e
}

// inheritAttrs takes over the attribute changes still waiting in a node of
// the same inode that the kernel forgot (it drops inodes nothing uses, and
// those whose names another client changed), so that the inode shows them
// and they are sent once. It reports whether there were any.
func (n *node) inheritAttrs() bool {
	var old *node
	for _, o := range n.fsys.attrDueNodes() {
		o.mu.Lock()
		forgotten := o.forgotten
		o.mu.Unlock()
		if o.id == n.id && forgotten {
			old = o
			break
		}
	}
	if old == nil {
		return false
	}
	old.opMu.Lock() // waits for a flush on the way
	old.mu.Lock()
	due := old.attrDue
	old.attrDue = nil
	old.mu.Unlock()
	old.opMu.Unlock()
	old.fsys.markAttrDue(old, false)
	if len(due) == 0 {
		return false
	}
	n.mu.Lock()
	n.attrDue = append(due, n.attrDue...)
	n.reapplyDue()
	n.attrScheduled = true
	n.mu.Unlock()
	n.fsys.markAttrDue(n, true)
	time.AfterFunc(n.fsys.attrDelay, func() { _ = n.flushAttrs() })
	return true
}

// markAttrDue records whether n has attribute changes the server lacks.
func (f *FS) markAttrDue(n *node, due bool) { f.mark(f.attrDue, n, due) }

// attrDueNodes returns the inodes with attribute changes the server lacks.
func (f *FS) attrDueNodes() []*node { return f.marked(f.attrDue) }
