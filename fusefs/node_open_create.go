package fusefs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// Open opens a file. The first open fetches and verifies its current
// manifest; later opens while it is open share that state, so every
// descriptor sees every other's writes.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.typ != wire.TypeFile {
		return nil, 0, syscall.EISDIR
	}
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := flags&syscall.O_TRUNC != 0 && writable
	if n.fsys.ro && (writable || flags&syscall.O_TRUNC != 0) {
		return nil, 0, syscall.EROFS
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	release := n.holdPages()
	st, e := n.loadFileHeld()
	if e != 0 {
		release(nil, false)
		return nil, 0, e
	}
	keep := release(st, writable)
	if trunc {
		n.truncate(st, 0)
		n.killPrivsFor(ctx, st)
	}
	return &handle{n: n, st: st, writable: writable}, keep, 0
}

// Create makes a new, empty file and opens it. Nothing is sent yet: the
// file is created on the server by its first commit (close, fsync or a
// later write-back), together with its content and the attributes set
// meanwhile, in one request. tar and git create files with open, write,
// fchmod, futimens and close, so this is one round trip per file instead
// of three. Another client that takes the name first gets it; this
// mount's file then lands as a conflict copy (see commitLocked).
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if n.fsys.ro {
		return nil, nil, 0, syscall.EROFS
	}
	if e := checkName(name); e != 0 {
		return nil, nil, 0, e
	}
	id := crypto.NewID()
	cn := &node{fsys: n.fsys, id: id, typ: wire.TypeFile, attr: n.newAttr(ctx, wire.TypeFile, mode), nlink: 1,
		fetched: time.Now(), pending: &pendingCreate{dir: n.id, name: name}}
	st, err := cn.newFile()
	if err != nil {
		return nil, nil, 0, n.fsys.fail("create", n.childPath(name), err)
	}
	st.opens = 1
	st.changed = true
	cn.file = st
	n.fsys.markDirty(cn, true)
	cn.holdPages()(st, true)
	cn.fillEntry(out)
	in := n.NewInode(ctx, cn, fs.StableAttr{Mode: syscall.S_IFREG, Ino: ino(id)})
	n.fsys.adopt(in)
	n.listAdd(name)
	n.fsys.setEntryTimeouts(out, n.fsys.gen())
	return in, &handle{n: cn, st: st, writable: flags&syscall.O_ACCMODE != syscall.O_RDONLY}, 0, 0
}

// handle is one open file description.
type handle struct {
	n        *node
	st       *fileState
	writable bool
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
)

// Read reads from the file's current state, unsaved writes included.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	var hb *hotBytes
	k, e := h.n.read(h.st, dest, off, &hb)
	if hb != nil {
		return hb, 0
	}
	if e != 0 {
		return nil, e
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// Write buffers data; it reaches the server in the background and is
// committed by the next flush, fsync or release.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if h.n.fsys.ro {
		return 0, syscall.EROFS
	}
	written, e := h.n.write(h.st, data, off)
	if e == 0 {
		h.n.opMu.Lock()
		h.n.killPrivsFor(ctx, h.st)
		h.n.opMu.Unlock()
	}
	return written, e
}

// Flush is close(2) (once per descriptor closed, so possibly several times
// per open): it returns once the file's content is committed.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return h.n.flush("close") }

// Fsync returns once the file's content and attributes are stored.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if e := h.n.flush("fsync"); e != 0 {
		return e
	}
	return h.n.flushAttrs()
}

// Release is the last close of the open file description. It commits
// what a process left without flushing (killed, or writes through mmap
// after its last close); the kernel does not wait for it, so failures are
// logged and retried in the background.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	n := h.n
	n.fsys.pending.Add(1)
	defer n.fsys.pending.Done()
	n.mu.Lock()
	h.st.opens--
	n.mu.Unlock()
	if e := n.flush("release"); e != 0 {
		n.fsys.log.Error("the file's last changes are not on the server yet; they are kept in memory and retried", "path", n.path(), "errno", e)
	}
	n.dropIfIdle()
	return 0
}

// Allocate implements fallocate(2).
func (h *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if h.n.fsys.ro {
		return syscall.EROFS
	}
	return h.n.allocate(h.st, off, size, mode)
}

// flush commits the file when it has anything to commit.
func (n *node) flush(why string) syscall.Errno {
	n.mu.Lock()
	st := n.file
	busy := st != nil && (st.pinned() || st.inflight > 0)
	n.mu.Unlock()
	if !busy {
		return 0
	}
	return n.commit(why)
}
