package fusefs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

// entry is the sealed content of one chunk position that is not held in a
// dirty buffer: a chunk of the committed version, or one this mount sealed
// and uploaded since.
type entry struct {
	id    crypto.ID // zero: a hole, all zeros
	tag   crypto.ChunkTag
	plain int  // plaintext length it was sealed with
	last  bool // sealed as the file's final chunk
	valid int  // leading bytes that still count (a truncate cut the rest)
}

// dirtyChunk is a chunk's plaintext that the server does not have yet: a
// full chunk-size buffer, zero beyond the file's end.
type dirtyChunk struct {
	mu  sync.Mutex // held while the chunk is sealed from buf
	buf []byte
	// defined is how much of buf holds the chunk's content; past it the
	// pooled buffer holds old bytes that read as zeros once defineTo
	// clears them. Clearing a whole 1 MiB buffer up front cost more than
	// encrypting the 10 KB file that used it.
	defined   int
	seq       uint64 // counts changes, so an upload knows whether it is still current
	uploading bool
}

// defineTo makes buf[:n] the chunk's content, zeros past what was defined
// (a hole, or bytes cut off by a truncate). The caller holds mu, or is the
// only one who knows dc.
func (dc *dirtyChunk) defineTo(n int) {
	if n > dc.defined {
		clear(dc.buf[dc.defined:n])
		dc.defined = n
	}
}

// fileState is an open (or unsaved) file: the committed version its edits
// are based on and the edits themselves. Its fields are guarded by the
// node's mu; changes to them take the node's opMu too.
type fileState struct {
	// keptAt is when the file's last close kept this state (reuseKept).
	keptAt   time.Time
	layout   crypto.Layout
	fc       *crypto.FileCipher
	gen      uint64 // generation of the base version
	size     int64
	ents     []entry
	dirty    map[int]*dirtyChunk
	changed  bool // differs from the committed version
	inflight int  // background uploads running
	// uploadedAt is when the oldest chunk uploaded since the last commit
	// reached the server; zero when there is none.
	uploadedAt time.Time
	idle       *sync.Cond
	opens      int
	readEnd    int64 // where the last read ended, to detect sequential reads
	// randomRun counts reads in a row that did not follow the previous
	// one; fillStarted is set once a fill of the file started.
	randomRun   int
	fillStarted bool
	lastErr     error
	// upCtx is shared by the background uploads started since the last
	// failure; the first one to fail cancels it (see put).
	upCtx    context.Context
	upCancel context.CancelFunc
	// based is the mount's invalidation counter (FS.gen) read before the
	// fetch or commit that made the base version: a state kept after its
	// last close may be used again only while nothing was invalidated
	// since (see reuseKept).
	based uint64
}

// newFileState builds the state of a file's committed version m.
func newFileState(n *node, m *crypto.Manifest, fc *crypto.FileCipher) *fileState {
	st := &fileState{layout: m.Layout, fc: fc, gen: m.Generation, size: int64(m.Size), dirty: map[int]*dirtyChunk{}}
	st.idle = sync.NewCond(&n.mu)
	st.setManifest(m)
	return st
}

// setManifest makes m's chunks the entries.
func (st *fileState) setManifest(m *crypto.Manifest) {
	st.ents = make([]entry, len(m.Chunks))
	for i, c := range m.Chunks {
		pl := m.ChunkPlainLen(i)
		st.ents[i] = entry{id: c.ID, tag: c.Tag, plain: pl, last: m.IsLast(i), valid: pl}
	}
	st.gen, st.size = m.Generation, int64(m.Size)
}

// chunkSize is the plaintext size of a full chunk.
func (st *fileState) chunkSize() int64 { return int64(st.layout.ChunkSize()) }

// count is the number of chunks of the current size.
func (st *fileState) count() int { return int(st.layout.ChunkCount(uint64(st.size))) }

// entryAt returns the sealed content of chunk i; a hole past the entries.
func (st *fileState) entryAt(i int) entry {
	if i < len(st.ents) {
		return st.ents[i]
	}
	return entry{}
}

// setEntry records the sealed content of chunk i.
func (st *fileState) setEntry(i int, e entry) {
	for len(st.ents) <= i {
		st.ents = append(st.ents, entry{})
	}
	st.ents[i] = e
}

// pinned reports whether the state must outlive its descriptors.
func (st *fileState) pinned() bool { return st.changed || len(st.dirty) > 0 }

// bufPool recycles chunk-size plaintext buffers and sealed buffers; the
// budget, not the pool, bounds how many are live.
var bufPools sync.Map // int → *sync.Pool

func getBuf(n int) []byte {
	p, _ := bufPools.LoadOrStore(n, &sync.Pool{New: func() any { b := make([]byte, n); return &b }})
	return *(p.(*sync.Pool).Get().(*[]byte))
}

// getBufFor returns a pooled buffer for n bytes of a kind whose largest is
// full bytes: a full one when n is more than half of that, else the power
// of two at or above n (at least 4 KiB), so that pools stay few. A small
// file's chunk then takes a few KiB, in the hot set and on its way there,
// instead of a whole chunk's buffer.
func getBufFor(n, full int) []byte {
	if n > full/2 {
		return getBuf(full)
	}
	c := 4 << 10
	for c < n {
		c <<= 1
	}
	return getBuf(c)
}

func putBuf(b []byte) {
	b = b[:cap(b)]
	if p, ok := bufPools.Load(len(b)); ok {
		p.(*sync.Pool).Put(&b)
	}
}

// sealedBufSize is the capacity a sealed chunk of layout l needs.
func sealedBufSize(l crypto.Layout) int { return l.MaxSealedChunkSize() + int(l.PadUnit) }

// openCount returns how many descriptors have the file open.
func (n *node) openCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.file == nil {
		return 0
	}
	return n.file.opens
}

// loadFile returns the file's state, fetching and verifying the current
// manifest when there is none. The caller holds opMu.
func (n *node) loadFile() (*fileState, syscall.Errno) {
	n.mu.Lock()
	st := n.file
	if st == nil {
		st = n.reuseKept()
	}
	n.mu.Unlock()
	if st != nil {
		return st, 0
	}
	if n.typ != wire.TypeFile {
		return nil, syscall.EISDIR
	}
	c, cancel := n.fsys.ctx()
	defer cancel()
	var f *vault.File
	var gen uint64
	for attempt := 0; ; attempt++ {
		gen = n.fsys.gen()
		var err error
		f, err = n.fsys.v.OpenFile(c, &vault.Node{ID: n.id, Type: wire.TypeFile, Name: n.path()})
		if errno(err) == syscall.ENOENT {
			// Removed or replaced by another client (a save by rename
			// over it) after the kernel looked the name up: ESTALE makes
			// it look the name up again and retry the open once, which
			// finds what the name leads to now. ENOENT told the
			// application that a file which had only been replaced did
			// not exist.
			n.goneOnServer()
			return nil, syscall.ESTALE
		}
		if err != nil {
			return nil, n.fsys.fail("open", n.path(), err)
		}
		n.mu.Lock()
		g, ctime := f.Manifest.Generation, f.Node.Attr.Ctime
		older := g < n.maxGen || ctime < n.maxCtime
		if !older {
			// The attributes are taken below, under the same lock
			// as the state.
			n.maxGen = g
			n.mu.Unlock()
			break
		}
		seenGen, seenCtime := n.maxGen, n.maxCtime
		n.mu.Unlock()
		if attempt == 0 {
			// An answer overtaken by a newer one about the same inode
			// (a stat sent later but answered sooner) is only late:
			// ask again.
			continue
		}
		what, why := "manifest of "+n.path(), fmt.Errorf("generation %d is older than the %d this mount has seen: the server rolled the file back", g, seenGen)
		if g >= seenGen {
			what, why = "attributes of "+n.path(), fmt.Errorf("ctime %d is older than the %d this mount has seen: the server rolled the attributes back", ctime, seenCtime)
		}
		return nil, n.fsys.fail("open", n.path(), &vault.CorruptError{What: what, Err: why})
	}
	n.rememberHome()
	st = newFileState(n, f.Manifest, f.Cipher())
	st.based = gen
	n.mu.Lock()
	n.file = st
	n.takeAttrLocked(f.Node.Attr, f.Node.Version)
	n.nlink = f.Node.Nlink
	n.reapplyDue()
	n.mu.Unlock()
	return st, 0
}

// loadFileHeld is loadFile with a descriptor count taken on the state
// returned, under the same lock that checks it is still the node's: the
// last release of an earlier descriptor runs dropIfIdle without opMu, and
// could otherwise discard the state between loadFile and its use, leaving
// the caller with a state nobody commits or reads. The caller holds opMu
// and gives the count back (a descriptor's release does).
func (n *node) loadFileHeld() (*fileState, syscall.Errno) {
	for {
		st, e := n.loadFile()
		if e != 0 {
			return nil, e
		}
		n.mu.Lock()
		if n.file == st {
			st.opens++
			n.mu.Unlock()
			return st, 0
		}
		n.mu.Unlock()
	}
}

// newFile returns the state of a file this mount just created: empty, never
// committed.
func (n *node) newFile() (*fileState, error) {
	l := n.fsys.v.Layout()
	fc, err := n.fsys.v.FileCipher(n.id, l)
	if err != nil {
		return nil, err
	}
	return newFileState(n, &crypto.Manifest{File: n.id, Layout: l}, fc), nil
}

// dropIfIdle forgets the state of a file that is closed and saved, so a
// later open fetches the newest version; one within a second of the close
// may use it again (reuseKept).
func (n *node) dropIfIdle() {
	n.mu.Lock()
	st := n.file
	if st == nil || st.opens != 0 || st.pinned() || st.inflight != 0 {
		n.mu.Unlock()
		return
	}
	n.file = nil
	n.fetched = n.fetched.Add(-attrTTL) // the kernel may ask again soon
	keep := st.lastErr == nil && n.fsys.gen() == st.based
	if keep {
		n.kept, st.keptAt = st, time.Now()
	}
	n.mu.Unlock()
	if keep {
		n.fsys.keep(n, st)
	}
}

// maxKept bounds the states kept after their last close: each holds its
// file's chunk list and cipher, and a copy of 100,000 files must not keep
// them all. Reopening happens right after the close or not at all.
const maxKept = 64

// keptState is one state kept after its file's last close.
type keptState struct {
	n  *node
	st *fileState
}

// keep records that n keeps st, and forgets the oldest kept state when
// more than maxKept are. It is called without any node's mu held.
func (f *FS) keep(n *node, st *fileState) {
	f.keptMu.Lock()
	if len(f.kept) < maxKept {
		f.kept = append(f.kept, keptState{n, st})
		f.keptMu.Unlock()
		return
	}
	old := f.kept[f.keptNext]
	f.kept[f.keptNext] = keptState{n, st}
	f.keptNext = (f.keptNext + 1) % maxKept
	f.keptMu.Unlock()
	old.n.mu.Lock()
	if old.n.kept == old.st {
		old.n.kept = nil
	}
	old.n.mu.Unlock()
}

// reuseKept returns the state kept since the file's last close, when it
// still describes the file, and makes it the node's open state; nil
// otherwise. rsync closes the file it wrote, then opens it again to
// fchmod it; git and editors reopen what they just wrote. Without this
// every such open fetched the manifest the mount had just committed, a
// round trip of about 1 ms. The state is used while nothing was
// invalidated since its base was fetched or committed (the change feed
// reports every other client's change), and for attrTTL at most, like
// an attribute fetched without the feed: what the feed cannot report (a
// server that rolled the file back) is then found by the next open after
// that. The caller holds n.mu.
func (n *node) reuseKept() *fileState {
	st := n.kept
	if st == nil {
		return nil
	}
	n.kept = nil
	if st.gen != n.attr.Generation || n.fsys.gen() != st.based || time.Since(st.keptAt) >= attrTTL {
		return nil
	}
	st.readEnd, st.randomRun, st.fillStarted = 0, 0, false
	n.file = st
	return st
}

// uploadCtx returns the context of background uploads started now. The
// caller holds the node's mu.
func (st *fileState) uploadCtx() context.Context {
	if st.upCtx == nil {
		st.upCtx, st.upCancel = context.WithCancel(context.Background())
	}
	return st.upCtx
}

// abortUploads cancels the background uploads that share ctx, after one of
// them failed; uploads started later get a fresh context and try the server
// again. The caller holds the node's mu.
func (st *fileState) abortUploads(ctx context.Context) {
	if st.upCtx == ctx {
		st.upCancel()
		st.upCtx, st.upCancel = nil, nil
	}
}

// waitIdle waits until no background upload of st runs. The caller holds
// n.mu.
func (st *fileState) waitIdle() {
	for st.inflight > 0 {
		st.idle.Wait()
	}
}

// freeDirty releases a dirty buffer and its budget.
//
// It takes dc.mu, so a sealing of the chunk that is running ends before the
// buffer goes back to the pool (where another file would reuse it while
// it is being encrypted); a sealing that starts later finds no buffer
// (errChunkGone).
func (n *node) freeDirty(dc *dirtyChunk) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.buf == nil {
		return
	}
	cost := int64(len(dc.buf))
	putBuf(dc.buf)
	dc.buf = nil
	n.fsys.budget.Release(cost)
}

// errChunkGone is a dirty chunk's upload that found its buffer released:
// a commit stored the chunk, or a truncate or discard dropped it, after
// the upload was queued. Nothing is lost; there is nothing left to do.
var errChunkGone = errors.New("the chunk was stored or dropped meanwhile")

// touchLocked records a change of content: mtime and ctime are now.
func (n *node) touchLocked() {
	now := time.Now().UnixNano()
	n.attr.Mtime = now
	n.attr.TouchCtime(now)
}

// truncate sets the file's size: chunks past the end are dropped, the
// part of the final chunk past the end reads as zeros, and growth is a
// hole. The caller holds opMu.
func (n *node) truncate(st *fileState, size int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st.waitIdle()
	if size == st.size {
		return
	}
	cs := st.chunkSize()
	keep := int(st.layout.ChunkCount(uint64(size)))
	for i, dc := range st.dirty {
		if i >= keep {
			delete(st.dirty, i)
			n.freeDirty(dc)
		}
	}
	if len(st.ents) > keep {
		st.ents = st.ents[:keep]
	}
	if size < st.size && keep > 0 {
		i := keep - 1
		tail := int(size - int64(i)*cs)
		if dc := st.dirty[i]; dc != nil {
			dc.mu.Lock()
			dc.defined = min(dc.defined, tail)
			dc.seq++
			dc.mu.Unlock()
		} else if i < len(st.ents) && st.ents[i].valid > tail {
			st.ents[i].valid = tail
		}
	}
	st.size = size
	st.changed = true
	n.touchLocked()
	n.fsys.markDirty(n, true)
}

// uploadedBefore reports whether the file holds chunks uploaded before t
// that no commit references yet.
func (n *node) uploadedBefore(t time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.file
	return st != nil && !st.uploadedAt.IsZero() && st.uploadedAt.Before(t)
}
