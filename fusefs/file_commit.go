package fusefs

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

// commit stores the file's changes on the server as a new version; it
// returns once the version is committed, or with the errno of why not.
// Nothing changed: nothing to do.
func (n *node) commit(why string) syscall.Errno {
	n.opMu.Lock()
	defer n.opMu.Unlock()
	return n.commitLocked(why)
}

// smallCacheMin is the size up to which a chunk this mount just wrote is
// not put in the disk cache. Each cached chunk is a file, and creating a
// file costs about as much as the whole upload of a small one (ext4 inode
// allocation measured at 0.6 ms per file here during tar -x); a later
// read fetches such a chunk with one small request instead.
const smallCacheMin = 64 << 10

// smallChunk is a one-chunk version's sealing, sent with its commit.
type smallChunk struct {
	sealed, mac []byte
}

// commitLocked is commit with opMu held. The commit is conditional on the
// version the edits are based on; a mismatch that is only a metadata
// change (a link, a chmod) is retried on the new version, one that is new
// content from another client becomes a conflict copy.
func (n *node) commitLocked(why string) syscall.Errno {
	n.rememberHome()
	n.mu.Lock()
	st := n.file
	if st == nil {
		n.mu.Unlock()
		return 0
	}
	st.waitIdle()
	if !st.pinned() {
		n.mu.Unlock()
		return 0
	}
	if n.pending == nil && n.nlink == 0 && !n.goneElsewhere {
		// Unlinked here (also one created here and unlinked before it
		// reached the server): there is nothing to store it under, and
		// no commit that failed before the unlink (a full quota) is to
		// be retried. POSIX drops the data with the last descriptor,
		// and until then the descriptors still open read what was
		// written (a temporary file made with open and unlink, as
		// tmpfile(3) does), whatever fsync or the close of a duplicate
		// asked.
		open := st.opens > 0
		n.mu.Unlock()
		if !open {
			n.discard(st, nil)
		}
		return 0
	}
	baseGen := st.gen
	n.mu.Unlock()
	for attempt := 0; ; attempt++ {
		m, small, err := n.prepare(st)
		if err != nil {
			n.noteErr(st, err)
			return n.fsys.failSave("save ("+why+")", n.path(), err)
		}
		var cached chan struct{}
		if small != nil && len(small.sealed) > smallCacheMin {
			// The chunk goes into the cache while the request is on the
			// wire rather than after it, off the latency of close(2),
			// which a small-file workload pays once per file. Caching a
			// chunk whose commit then fails is harmless: a chunk ID names
			// one sealing, so the entry can never be read as other data,
			// and the LRU ages it out.
			cached = make(chan struct{})
			go func(id crypto.ID, sealed []byte) {
				_ = n.fsys.chunks.Put(id, sealed)
				close(cached)
			}(m.Chunks[0].ID, small.sealed)
		}
		gen := n.fsys.gen()
		vn, err := n.send(m, small)
		if small != nil {
			if cached != nil {
				<-cached
			}
			putBuf(small.sealed)
		}
		if err == nil {
			n.committed(st, m, vn, gen)
			return 0
		}
		switch {
		case remote.IsExists(err) && n.isPending() && attempt < 20:
			// Another client took the name since this mount created
			// the file: its file stays, this one becomes a copy.
			n.renamePending(attempt)
			continue
		case remote.IsVersionMismatch(err) && attempt < 5:
			ctx, cancel := n.fsys.ctx()
			cur, gerr := n.fsys.v.OpenFile(ctx, &vault.Node{ID: n.id, Type: wire.TypeFile, Name: n.path()})
			cancel()
			if gerr != nil {
				n.noteErr(st, gerr)
				return n.fsys.failSave("save ("+why+")", n.path(), gerr)
			}
			if cur.Generation() == baseGen {
				// Another client changed attributes, xattrs or links
				// only: the commit goes on top of that change, keeping
				// it where this mount changed nothing.
				n.mu.Lock()
				base, mine := n.attrBase, n.attr
				n.takeAttrLocked(cur.Node.Attr, cur.Node.Version)
				n.attr = rebaseAttr(base, mine, cur.Node.Attr)
				n.mu.Unlock()
				continue
			}
			return n.conflict(st, m, cur)
		case errno(err) == syscall.ENOENT:
			n.mu.Lock()
			gone, open := n.nlink == 0 && !n.goneElsewhere, st.opens > 0
			n.mu.Unlock()
			if gone {
				// Unlinked here: the data had no name left, and
				// POSIX drops it with the last descriptor, not
				// before (see above). Removed by another client
				// instead, it is kept as a conflict copy.
				if !open {
					n.discard(st, nil)
				}
				return 0
			}
			return n.conflict(st, m, nil)
		default:
			n.noteErr(st, err)
			return n.fsys.failSave("save ("+why+")", n.path(), err)
		}
	}
}

// rebaseAttr returns the attributes of a commit first prepared on base,
// with this mount's changes in mine, to go on top of theirs, another
// client's later change of the same content: theirs, with every field this
// mount changed taken from mine (size and generation are the commit's
// own), and a ctime above both, which a later sealing must never lower.
func rebaseAttr(base, mine, theirs crypto.Attr) crypto.Attr {
	a := theirs
	keepChanged(&a.Mode, mine.Mode, base.Mode)
	keepChanged(&a.UID, mine.UID, base.UID)
	keepChanged(&a.GID, mine.GID, base.GID)
	keepChanged(&a.Rdev, mine.Rdev, base.Rdev)
	keepChanged(&a.Atime, mine.Atime, base.Atime)
	keepChanged(&a.Mtime, mine.Mtime, base.Mtime)
	a.Size, a.Generation = mine.Size, mine.Generation
	a.TouchCtime(mine.Ctime)
	return a
}

// keepChanged sets *field to mine where mine differs from base.
func keepChanged[T comparable](field *T, mine, base T) {
	if mine != base {
		*field = mine
	}
}

// noteErr keeps the last failure of a file.
func (n *node) noteErr(st *fileState, err error) {
	n.mu.Lock()
	st.lastErr = err
	n.mu.Unlock()
}

// job is one chunk a commit must seal and upload: a dirty buffer, or a
// stored chunk whose sealing no longer fits (the file grew or shrank).
type job struct {
	i     int
	dc    *dirtyChunk
	e     entry
	plain int
	last  bool
}

// prepare uploads every chunk of the new version the server lacks and
// returns its manifest. A version of one chunk that must be sealed is not
// uploaded here but returned, to go with the commit in one request.
func (n *node) prepare(st *fileState) (*crypto.Manifest, *smallChunk, error) {
	n.mu.Lock()
	// The commit uploads the dirty chunks itself: none may be in a
	// background upload (evict, for another file's writer, starts them
	// without this file's opMu), and none may start until it is done.
	st.waitIdle()
	size, count := st.size, st.count()
	m := &crypto.Manifest{File: n.id, Generation: st.gen + 1, Size: uint64(size), Layout: st.layout, Chunks: make([]crypto.ChunkEntry, count)}
	var jobs []job
	for i := 0; i < count; i++ {
		plain := st.layout.ChunkPlainLen(uint64(size), uint64(i))
		last := i == count-1
		if dc := st.dirty[i]; dc != nil {
			dc.uploading = true
			jobs = append(jobs, job{i: i, dc: dc, plain: plain, last: last})
			continue
		}
		e := st.entryAt(i)
		switch {
		case e.id.IsZero():
		case e.plain == plain && e.last == last && e.valid >= plain:
			m.Chunks[i] = crypto.ChunkEntry{ID: e.id, Tag: e.tag}
		default:
			jobs = append(jobs, job{i: i, e: e, plain: plain, last: last})
		}
	}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		for _, j := range jobs {
			if j.dc != nil {
				j.dc.uploading = false
			}
		}
		n.mu.Unlock()
	}()

	if count == 1 && len(jobs) == 1 {
		j := jobs[0]
		buf := getBuf(sealedBufSize(st.layout))
		ref, sealed, tag, mac, err := n.sealJob(st, n.id, st.fc, j, buf)
		if err != nil {
			putBuf(buf)
			return nil, nil, err
		}
		m.Chunks[0] = crypto.ChunkEntry{ID: ref.ID, Tag: tag}
		return m, &smallChunk{sealed: sealed, mac: mac}, nil
	}
	var mu sync.Mutex
	// One deadline for all of the commit's uploads, and the first
	// failure stops the rest (see put).
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(cap(n.fsys.upSem))
	for _, j := range jobs {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			buf := getBuf(sealedBufSize(st.layout))
			defer putBuf(buf)
			ref, sealed, tag, mac, err := n.sealJob(st, n.id, st.fc, j, buf)
			if err != nil {
				return err
			}
			if err := n.put(ctx, ref, sealed, mac, true); err != nil {
				return err
			}
			mu.Lock()
			m.Chunks[j.i] = crypto.ChunkEntry{ID: ref.ID, Tag: tag}
			mu.Unlock()
			// The chunk is on the server: its buffer can go.
			n.mu.Lock()
			st.setEntry(j.i, entry{id: ref.ID, tag: tag, plain: j.plain, last: j.last, valid: j.plain})
			if j.dc != nil && st.dirty[j.i] == j.dc {
				delete(st.dirty, j.i)
				n.freeDirty(j.dc)
			}
			n.mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return m, nil, nil
}

// sealJob seals a job's content for file (cipher fc) into buf.
func (n *node) sealJob(st *fileState, file crypto.ID, fc *crypto.FileCipher, j job, buf []byte) (crypto.ChunkRef, []byte, crypto.ChunkTag, []byte, error) {
	if j.dc != nil {
		j.dc.mu.Lock()
		defer j.dc.mu.Unlock()
		if j.dc.buf == nil {
			return crypto.ChunkRef{}, nil, crypto.ChunkTag{}, nil, fmt.Errorf("chunk %d: %w", j.i, errChunkGone)
		}
		j.dc.defineTo(j.plain)
		return n.seal(file, fc, j.i, j.dc.buf[:j.plain], j.last, buf)
	}
	plain := getBuf(st.layout.ChunkSize())
	defer putBuf(plain)
	if err := n.readEntry(st, j.i, j.e, plain[:j.plain], 0); err != nil {
		return crypto.ChunkRef{}, nil, crypto.ChunkTag{}, nil, err
	}
	return n.seal(file, fc, j.i, plain[:j.plain], j.last, buf)
}

// send commits manifest m with the node's attributes, conditional on the
// version the edits are based on. The attributes include the changes still
// waiting to be sent (attrsync.go): opMu keeps new ones and their flushes
// out until the commit is done.
func (n *node) send(m *crypto.Manifest, small *smallChunk) (*vault.Node, error) {
	defer n.fsys.changing()()
	n.mu.Lock()
	a, ver, pc := n.attr, n.version, n.pending
	n.mu.Unlock()
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	if pc != nil {
		var vn *vault.Node
		var err error
		switch {
		case small != nil:
			vn, err = n.fsys.v.CreateSmall(ctx, pc.dir, pc.name, m, a, small.sealed, small.mac)
		case len(m.Chunks) == 0:
			vn, err = n.fsys.v.CreateSmall(ctx, pc.dir, pc.name, m, a, nil, nil)
		default:
			vn, err = n.fsys.v.CreateCommitted(ctx, pc.dir, pc.name, m, a)
		}
		if err == nil {
			if d := n.fsys.byID(pc.dir); d != nil {
				d.childCreated(vn.ParentVersion)
			}
		}
		return vn, err
	}
	if small != nil {
		return n.fsys.v.CommitSmall(ctx, m, a, ver, small.sealed, small.mac)
	}
	return n.fsys.v.CommitManifest(ctx, m, a, ver)
}

// committed makes m the base of the file's state; gen is the
// invalidation counter read before the commit was sent.
func (n *node) committed(st *fileState, m *crypto.Manifest, vn *vault.Node, gen uint64) {
	n.mu.Lock()
	st.setManifest(m)
	st.based = gen
	for i, dc := range st.dirty {
		delete(st.dirty, i)
		n.freeDirty(dc)
	}
	st.changed, st.lastErr, st.uploadedAt = false, nil, time.Time{}
	n.takeAttrLocked(vn.Attr, vn.Version)
	n.nlink = vn.Nlink
	attrsSent := len(n.attrDue) > 0 // they went with the commit
	n.attrDue = nil
	n.maxGen = max(n.maxGen, m.Generation)
	n.fetched = time.Now()
	n.pending = nil
	n.mu.Unlock()
	n.fsys.markDirty(n, false)
	if attrsSent {
		n.fsys.markAttrDue(n, false)
	}
	n.fsys.commits.Add(1)
}

// discard drops the file's unsaved changes and, when cur is given, makes
// the server's current version the base of its state.
func (n *node) discard(st *fileState, cur *vault.File) {
	n.mu.Lock()
	for i, dc := range st.dirty {
		delete(st.dirty, i)
		n.freeDirty(dc)
	}
	if cur != nil {
		st.layout, st.fc = cur.Manifest.Layout, cur.Cipher()
		st.setManifest(cur.Manifest)
		n.takeAttrLocked(cur.Node.Attr, cur.Node.Version)
		n.nlink = cur.Node.Nlink
		n.reapplyDue()
	}
	st.changed, st.lastErr, st.uploadedAt = false, nil, time.Time{}
	n.mu.Unlock()
	n.fsys.markDirty(n, false)
}
