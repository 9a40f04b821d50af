package fusefs

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
)

// renamePending gives a file that is not yet on the server a conflict
// name, because its name was taken on the server meanwhile; the tree
// follows, and the kernel forgets the old name, which now belongs to the
// other client's file.
func (n *node) renamePending(k int) {
	n.mu.Lock()
	pc := n.pending
	if pc == nil {
		n.mu.Unlock()
		return
	}
	old := pc.name
	base := old
	if k > 0 {
		base = pc.base
	}
	pc.base = base
	pc.name = conflictName(base, n.fsys.host, time.Now(), k)
	newName := pc.name
	n.mu.Unlock()
	n.fsys.conflicts.Add(1)
	if name, parent := n.Parent(); parent != nil && name == old {
		parent.MvChild(old, parent, newName, true)
		if pn, ok := parent.Operations().(*node); ok {
			pn.listAdd(newName)
		}
		go parent.NotifyEntry(old)
		n.fsys.log.Warn("conflict: another client created a file of the same name first; this mount's file is kept as a copy",
			"file", parent.Operations().(*node).childPath(old), "copy", newName)
	}
}

// conflictName names a conflict copy of name, with a counter after the
// first attempt; it stays within 255 bytes.
func conflictName(name, host string, now time.Time, k int) string {
	suffix := ".conflict-" + now.Format("20060102-150405") + "-" + host
	if k > 0 {
		suffix += fmt.Sprintf("-%d", k)
	}
	if len(suffix) > 200 {
		suffix = suffix[:200]
	}
	if len(name)+len(suffix) > 255 {
		name = name[:255-len(suffix)]
	}
	return name + suffix
}

// conflict keeps this mount's version m of a file another client replaced
// (cur) or removed (cur nil): it is written as a new file with a new ID
// beside the original, so its chunks are sealed again for that ID. The
// data is then durable, so close(2) succeeds; the log names both files.
func (n *node) conflict(st *fileState, m *crypto.Manifest, cur *vault.File) syscall.Errno {
	defer n.fsys.changing()()
	name, parent := n.Parent()
	pn, ok := (*node)(nil), false
	if parent != nil {
		pn, ok = parent.Operations().(*node)
	}
	if !ok || name == "" {
		// Removed by another client, and the kernel dropped the name
		// when told: the copy goes where the file last was.
		n.mu.Lock()
		pn, name = n.home, n.homeName
		n.mu.Unlock()
		ok = pn != nil
	}
	if !ok || name == "" {
		err := fmt.Errorf("the file changed on the server and this mount knows no directory to keep its own version in")
		n.noteErr(st, err)
		return n.fsys.failSave("save", n.path(), err)
	}
	newID := crypto.NewID()
	fc, err := n.fsys.v.FileCipher(newID, st.layout)
	if err != nil {
		return n.fsys.failSave("save", n.path(), err)
	}
	cm := &crypto.Manifest{File: newID, Generation: 1, Size: m.Size, Layout: m.Layout, Chunks: make([]crypto.ChunkEntry, len(m.Chunks))}
	buf := getBuf(sealedBufSize(st.layout))
	defer putBuf(buf)
	for i, c := range m.Chunks {
		if c.IsHole() {
			continue
		}
		j := job{i: i, plain: m.ChunkPlainLen(i), last: m.IsLast(i)}
		// A chunk without unsaved bytes is read from what the file's
		// state holds as stored, as prepare sealed it: the chunk m names
		// may never have reached the server (a small file's travels with
		// its commit, which failed) and, under 64 KiB, is not cached.
		n.mu.Lock()
		j.dc, j.e = st.dirty[i], st.entryAt(i)
		n.mu.Unlock()
		ref, sealed, tag, mac, err := n.sealJob(st, newID, fc, j, buf)
		if err == nil {
			err = n.put(context.Background(), ref, sealed, mac, true)
		}
		if err != nil {
			n.noteErr(st, err)
			return n.fsys.failSave("save conflict copy", n.path(), err)
		}
		cm.Chunks[i] = crypto.ChunkEntry{ID: ref.ID, Tag: tag}
	}
	n.mu.Lock()
	a := n.attr
	n.mu.Unlock()
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	now := time.Now()
	orig := pn.childPath(name)
	var cname string
	for k := 0; ; k++ {
		cname = conflictName(name, n.fsys.host, now, k)
		var vn *vault.Node
		vn, err = n.fsys.v.CreateCommitted(ctx, pn.id, cname, cm, a)
		if err == nil {
			pn.childCreated(vn.ParentVersion)
		}
		if errno(err) == syscall.ENOENT && pn != n.fsys.root {
			// Another client removed the directory too (rm -r): the
			// copy goes to the root, which always exists, rather than
			// nowhere.
			pn, k = n.fsys.root, -1
			continue
		}
		if errno(err) != syscall.EEXIST || k >= 20 {
			break
		}
	}
	if err != nil {
		n.noteErr(st, err)
		return n.fsys.failSave("save conflict copy", n.path(), err)
	}
	pn.listAdd(cname)
	n.fsys.conflicts.Add(1)
	what := "changed"
	if cur == nil {
		what = "removed"
	}
	n.fsys.log.Warn("conflict: the file was "+what+" by another client; this mount's version is kept as a copy",
		"file", orig, "copy", pn.childPath(cname))
	n.discard(st, cur)
	if cur == nil {
		// Gone on the server for good: what the descriptors still write
		// becomes another copy at its commit, never dropped as an
		// unlink here would drop it.
		n.goneOnServer()
	}
	go n.NotifyContent(0, 0)
	return 0
}
