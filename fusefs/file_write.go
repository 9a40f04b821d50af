package fusefs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// write copies data into the file's chunk buffers at off. A chunk's first
// write reads its current content in (read-modify-write), unless the write
// covers it whole. Chunks the writer has moved past are sealed and
// uploaded in the background while it goes on.
func (n *node) write(st *fileState, data []byte, off int64) (uint32, syscall.Errno) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	n.opMu.Lock()
	defer n.opMu.Unlock()
	// Past the largest size a manifest describes, a write stores what
	// fits and then fails with EFBIG, as at a local file system's limit.
	if limit := st.layout.MaxFileSize(); off > limit-int64(len(data)) {
		if off >= limit {
			return 0, syscall.EFBIG
		}
		data = data[:limit-off]
	}
	cs := st.chunkSize()
	end := off + int64(len(data))
	first, lastTouched := int(off/cs), int((end-1)/cs)
	for pos := off; pos < end; {
		i := int(pos / cs)
		a := int(pos - int64(i)*cs)
		b := int(min(end-int64(i)*cs, cs))
		dc, err := n.dirtyFor(st, i, a == 0 && b == int(cs))
		if err != nil {
			return 0, n.fsys.fail("write", n.path(), err)
		}
		n.mu.Lock()
		if st.dirty[i] != dc {
			// A background upload finished and took the buffer
			// meanwhile: start over with the chunk's new state.
			n.mu.Unlock()
			continue
		}
		dc.mu.Lock()
		// Only a gap before the write needs zeros; what it covers is
		// overwritten (clearing that too cost a sequential writer a
		// pass over every chunk).
		dc.defineTo(a)
		copy(dc.buf[a:b], data[pos-off:])
		dc.defined = max(dc.defined, b)
		dc.seq++
		dc.mu.Unlock()
		if e := int64(i)*cs + int64(b); e > st.size {
			st.size = e
		}
		st.changed = true
		n.touchLocked()
		n.mu.Unlock()
		pos += int64(b - a)
	}
	n.fsys.markDirty(n, true)
	// Sequential writing: the chunk before a write that starts on a
	// boundary, and every chunk a large write filled, are complete.
	if off%cs == 0 && first > 0 {
		n.startUpload(st, first-1, false)
	}
	for i := first; i < lastTouched; i++ {
		n.startUpload(st, i, false)
	}
	return uint32(len(data)), 0
}

// dirtyFor returns chunk i's dirty buffer, making one (within the memory
// budget) filled with the chunk's current content unless whole says the
// caller overwrites all of it. The caller holds opMu.
func (n *node) dirtyFor(st *fileState, i int, whole bool) (*dirtyChunk, error) {
	n.mu.Lock()
	dc := st.dirty[i]
	n.mu.Unlock()
	if dc != nil {
		return dc, nil
	}
	cs := st.chunkSize()
	ctx, cancel := n.fsys.ctx()
	err := n.fsys.budget.Acquire(ctx, cs, n.fsys.evict)
	cancel()
	if err != nil {
		return nil, err
	}
	dc = &dirtyChunk{buf: getBuf(int(cs))}
	if !whole {
		n.mu.Lock()
		e := st.entryAt(i)
		n.mu.Unlock()
		if !e.id.IsZero() && e.valid > 0 {
			dc.defineTo(e.valid)
			if err := n.readEntry(st, i, e, dc.buf[:e.valid], 0); err != nil {
				putBuf(dc.buf)
				n.fsys.budget.Release(cs)
				return nil, err
			}
		}
	}
	n.mu.Lock()
	st.dirty[i] = dc
	n.mu.Unlock()
	return dc, nil
}

// startUpload seals and uploads dirty chunk i in the background, as it is
// now. Uploading the file's final chunk early is allowed only under memory
// pressure (final): its sealing may have to be redone at commit if the
// file grows.
func (n *node) startUpload(st *fileState, i int, final bool) bool {
	n.mu.Lock()
	dc := st.dirty[i]
	count := st.count()
	if dc == nil || dc.uploading || i >= count || (i == count-1 && !final) {
		n.mu.Unlock()
		return false
	}
	plain := st.layout.ChunkPlainLen(uint64(st.size), uint64(i))
	last := i == count-1
	dc.uploading = true
	st.inflight++
	ctx := st.uploadCtx()
	n.mu.Unlock()
	n.fsys.pending.Add(1)
	go func() {
		defer n.fsys.pending.Done()
		n.fsys.upSem <- struct{}{}
		e, seq, err := n.sealAndPut(ctx, st, i, dc, plain, last)
		<-n.fsys.upSem
		n.mu.Lock()
		dc.uploading = false
		st.inflight--
		if errors.Is(err, errChunkGone) || err != nil && ctx.Err() != nil {
			// Nothing to do, or given up because another upload of
			// the file failed: that one set lastErr and is logged.
			n.mu.Unlock()
		} else if err != nil {
			st.lastErr = err
			st.abortUploads(ctx)
			n.mu.Unlock()
			n.fsys.logError("upload", n.path(), err)
		} else {
			if st.dirty[i] == dc && dc.seq == seq {
				st.setEntry(i, e)
				delete(st.dirty, i)
				n.freeDirty(dc)
				if st.uploadedAt.IsZero() {
					st.uploadedAt = time.Now()
				}
			}
			n.mu.Unlock()
		}
		n.mu.Lock()
		st.idle.Broadcast()
		n.mu.Unlock()
	}()
	return true
}

// sealAndPut seals the first plain bytes of a dirty chunk under a fresh
// chunk ID and uploads it; it returns the entry and the buffer's change
// count at sealing time.
func (n *node) sealAndPut(ctx context.Context, st *fileState, i int, dc *dirtyChunk, plain int, last bool) (entry, uint64, error) {
	if err := ctx.Err(); err != nil {
		return entry{}, 0, err
	}
	sealed := getBuf(sealedBufSize(st.layout))
	defer putBuf(sealed)
	dc.mu.Lock()
	if dc.buf == nil {
		dc.mu.Unlock()
		return entry{}, 0, errChunkGone
	}
	seq := dc.seq
	dc.defineTo(plain)
	ref, s, tag, mac, err := n.seal(n.id, st.fc, i, dc.buf[:plain], last, sealed)
	dc.mu.Unlock()
	if err != nil {
		return entry{}, 0, err
	}
	if err := n.put(ctx, ref, s, mac, false); err != nil {
		return entry{}, 0, err
	}
	return entry{id: ref.ID, tag: tag, plain: plain, last: last, valid: plain}, seq, nil
}

// seal seals plaintext p as chunk i of file (whose cipher is fc) under a
// fresh chunk ID, into buf, computing the transfer HMAC in the same pass.
func (n *node) seal(file crypto.ID, fc *crypto.FileCipher, i int, p []byte, last bool, buf []byte) (crypto.ChunkRef, []byte, crypto.ChunkTag, []byte, error) {
	ref := crypto.ChunkRef{File: file, Index: uint64(i), ID: crypto.NewID()}
	h := n.fsys.v.TransferMAC().New(ref)
	sealed, tag, err := fc.SealChunk(buf[:0], uint64(i), ref.ID, p, last, h)
	if err != nil {
		return ref, nil, tag, nil, fmt.Errorf("sealing chunk %d: %w", i, err)
	}
	return ref, sealed, tag, h.Sum(nil), nil
}

// put uploads a sealed chunk. With keep it also goes into the chunk cache,
// so reading back what was just written needs no download. Full chunks
// streamed out while a file is being written are not kept: a large write
// would otherwise push every chunk that reads made hot out of the cache
// (a 1 GiB file fills the default cache), and writing each chunk to the
// local disk as well as uploading it cost about a fifth of a sequential
// write's CPU. The kernel's page cache still serves the rereads that
// follow the write.
//
// The upload is bounded by the mount's timeout, and by ctx: the uploads of
// one commit, or the background uploads of one file, share a context that
// the first failure cancels, so that an unreachable server fails them all
// within one timeout instead of one wave of parallel uploads after the
// other (a 64 MiB write buffer held 16 such waves).
func (n *node) put(ctx context.Context, ref crypto.ChunkRef, sealed, mac []byte, keep bool) error {
	ctx, cancel := context.WithTimeout(ctx, n.fsys.timeout)
	defer cancel()
	n.fsys.uploading.Add(1)
	err := n.fsys.v.Client().PutChunk(ctx, ref, sealed, mac)
	n.fsys.uploading.Add(-1)
	if err != nil {
		return fmt.Errorf("uploading chunk %d: %w", ref.Index, err)
	}
	n.fsys.uploaded.Add(1)
	if keep {
		_ = n.fsys.chunks.Put(ref.ID, sealed)
	}
	return nil
}

// evict starts uploads of dirty chunks of every file to free write memory
// for a writer that waits for it. A file's final chunk is uploaded only
// when nothing else can free memory (no upload is running and no other
// chunk is dirty): it is sealed as the last chunk, so it must be sealed
// and uploaded again when the file grows. A sequential writer that waits
// for memory has just filled its final chunk and is about to grow the
// file, and uploading that chunk early wasted about one chunk in six of a
// large write (and as much garbage on the server until GC).
func (f *FS) evict() {
	started, busy := 0, 0
	type final struct {
		n  *node
		st *fileState
		i  int
	}
	var finals []final
	for _, n := range f.dirtyNodes() {
		n.mu.Lock()
		st := n.file
		var idx []int
		if st != nil {
			count := st.count()
			for i, dc := range st.dirty {
				switch {
				case dc.uploading:
					busy++
				case i >= count-1:
					finals = append(finals, final{n, st, i})
				default:
					idx = append(idx, i)
				}
			}
		}
		n.mu.Unlock()
		for _, i := range idx {
			if n.startUpload(st, i, false) {
				started++
			}
			if started >= 2*cap(f.upSem) {
				return
			}
		}
	}
	if started > 0 || busy > 0 {
		return
	}
	for _, c := range finals {
		if c.n.startUpload(c.st, c.i, true) {
			started++
		}
		if started >= 2*cap(f.upSem) {
			return
		}
	}
}

// allocate implements fallocate(2) mode 0 (grow with zeros) and
// FALLOC_FL_KEEP_SIZE (nothing to reserve on a remote store).
func (n *node) allocate(st *fileState, off, length uint64, mode uint32) syscall.Errno {
	const keepSize = 1
	switch mode {
	case 0:
		if limit := uint64(st.layout.MaxFileSize()); off > limit || length > limit-off {
			return syscall.EFBIG
		}
		n.opMu.Lock()
		defer n.opMu.Unlock()
		n.mu.Lock()
		grow := int64(off+length) > st.size
		n.mu.Unlock()
		if grow {
			n.truncate(st, int64(off+length))
		}
		return 0
	case keepSize:
		return 0
	}
	return syscall.EOPNOTSUPP
}
