package fusefs

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/sealfs/sealfs/cache"
	"github.com/sealfs/sealfs/crypto"
)

// readahead is how many chunks past a sequential read are fetched ahead.
const readahead = 4

// read fills dest from offset off of the file: dirty buffers first, then
// sealed chunks, opening only the blocks the range touches.
func (n *node) read(st *fileState, dest []byte, off int64) (int, syscall.Errno) {
	cs := st.chunkSize()
	n.mu.Lock()
	size := st.size
	sequential := off == st.readEnd
	n.mu.Unlock()
	if off >= size {
		return 0, 0
	}
	end := min(off+int64(len(dest)), size)
	for pos := off; pos < end; {
		i := int(pos / cs)
		a := int(pos - int64(i)*cs)
		b := int(min(end-int64(i)*cs, cs))
		out := dest[pos-off : pos-off+int64(b-a)]
		n.mu.Lock()
		if dc := st.dirty[i]; dc != nil {
			dc.mu.Lock()
			copy(out, dc.buf[a:b])
			dc.mu.Unlock()
			n.mu.Unlock()
		} else {
			e := st.entryAt(i)
			n.mu.Unlock()
			if err := n.readEntry(st, i, e, out, a); err != nil {
				return 0, n.fsys.fail("read", n.path(), err)
			}
		}
		pos += int64(b - a)
	}
	n.mu.Lock()
	st.readEnd = end
	n.mu.Unlock()
	if sequential {
		n.prefetch(st, int(end/cs))
	}
	return int(end - off), 0
}

// readEntry copies chunk i's content from byte a into dst. Bytes past the
// entry's valid length read as zeros.
func (n *node) readEntry(st *fileState, i int, e entry, dst []byte, a int) error {
	valid := e.valid
	if e.id.IsZero() || a >= valid {
		clear(dst)
		return nil
	}
	if tail := a + len(dst) - valid; tail > 0 {
		clear(dst[len(dst)-tail:])
		dst = dst[:len(dst)-tail]
	}
	hk := hotKey{file: n.id, index: i, id: e.id}
	if n.fsys.hot.read(hk, dst, a) {
		return nil
	}
	bs := int(st.layout.BlockSize)
	sealed := getBuf(bs + crypto.BlockOverhead + int(st.layout.PadUnit))
	plain := getBuf(bs + int(st.layout.PadUnit))
	defer putBuf(sealed)
	defer putBuf(plain)
	fetched := false
	for pos := a; pos < a+len(dst); {
		blk := pos / bs
		boff, blen, ok := st.layout.BlockSpan(e.plain, e.last, uint32(blk))
		if !ok {
			return fmt.Errorf("chunk %d: block %d outside its %d bytes", i, blk, e.plain)
		}
		err := n.fsys.chunks.ReadAt(e.id, sealed[:blen], int64(boff))
		if errors.Is(err, cache.ErrMiss) && !fetched {
			fetched = true
			if err = n.fetch(st, i, e); err != nil {
				return err
			}
			if n.fsys.hot.read(hk, dst, a) {
				return nil
			}
			err = n.fsys.chunks.ReadAt(e.id, sealed[:blen], int64(boff))
		}
		if errors.Is(err, cache.ErrMiss) {
			// The cache could not keep it (too small): read the
			// chunk directly.
			return n.readUncached(st, i, e, dst, a)
		}
		if err != nil {
			return fmt.Errorf("chunk cache: %w", err)
		}
		p, err := st.fc.OpenBlock(plain[:0], uint64(i), e.id, sealed[:blen], uint32(blk), e.plain, e.last)
		if err != nil {
			n.fsys.chunks.Remove(e.id)
			return fmt.Errorf("cached chunk %d (dropped from the cache): %w", i, err)
		}
		from := pos - blk*bs
		c := copy(dst[pos-a:], p[from:])
		pos += c
	}
	return nil
}

// fetchCall is one download of a chunk that concurrent readers share.
type fetchCall struct {
	done chan struct{}
	err  error
}

// fetch downloads chunk i, verifies its transfer HMAC and then every
// block against the manifest entry, and stores it sealed in the cache.
func (n *node) fetch(st *fileState, i int, e entry) error {
	f := n.fsys
	f.fetchMu.Lock()
	if c := f.fetches[e.id]; c != nil {
		f.fetchMu.Unlock()
		<-c.done
		return c.err
	}
	c := &fetchCall{done: make(chan struct{})}
	f.fetches[e.id] = c
	f.fetchMu.Unlock()
	finish := func(err error) {
		c.err = err
		f.fetchMu.Lock()
		delete(f.fetches, e.id)
		f.fetchMu.Unlock()
		close(c.done)
	}
	sealed, plainBuf, p, err := n.download(st, i, e)
	if err != nil {
		finish(err)
		return err
	}
	// Readers waiting for this chunk go on as soon as its plaintext is in
	// memory; the copy into the on-disk cache is only for later reads.
	f.hot.put(hotKey{file: n.id, index: i, id: e.id}, plainBuf, p)
	finish(nil)
	if perr := f.chunks.Put(e.id, sealed); perr != nil {
		f.log.Warn("chunk cache", "err", perr)
	}
	putBuf(sealed)
	return nil
}

// download fetches and fully verifies chunk i. It returns the sealed chunk
// and its plaintext p, which lies in plainBuf; the caller returns both
// buffers with putBuf.
func (n *node) download(st *fileState, i int, e entry) (sealed, plainBuf, p []byte, err error) {
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	buf := getBuf(sealedBufSize(st.layout))
	sealed, err = n.fsys.v.Client().GetChunk(ctx, crypto.ChunkRef{File: n.id, Index: uint64(i), ID: e.id}, n.fsys.v.TransferMAC(), buf[:0])
	if err != nil {
		putBuf(buf)
		return nil, nil, nil, fmt.Errorf("chunk %d: %w", i, err)
	}
	plainBuf = getBuf(st.layout.ChunkSize())
	p, err = st.fc.OpenChunk(plainBuf[:0], uint64(i), e.id, sealed, e.plain, e.last, e.tag)
	if err != nil {
		putBuf(plainBuf)
		putBuf(buf)
		return nil, nil, nil, fmt.Errorf("chunk %d failed verification (tampered or corrupt data on the server): %w", i, err)
	}
	return sealed, plainBuf, p, nil
}

// readUncached reads a range of a chunk the cache cannot hold.
func (n *node) readUncached(st *fileState, i int, e entry, dst []byte, a int) error {
	sealed, plainBuf, p, err := n.download(st, i, e)
	if err != nil {
		return err
	}
	putBuf(sealed)
	defer putBuf(plainBuf)
	copy(dst, p[a:])
	return nil
}

// prefetch fetches, in the background, the chunks a sequential reader will
// want next, so downloads overlap its reads. It never waits: when the
// readahead slots are busy it does nothing.
func (n *node) prefetch(st *fileState, from int) {
	for i := from; i < from+readahead; i++ {
		n.mu.Lock()
		if i >= st.count() || st.dirty[i] != nil {
			n.mu.Unlock()
			return
		}
		e := st.entryAt(i)
		n.mu.Unlock()
		if e.id.IsZero() || n.fsys.hot.has(hotKey{file: n.id, index: i, id: e.id}) || n.fsys.chunks.Has(e.id) {
			continue
		}
		select {
		case n.fsys.raSem <- struct{}{}:
		default:
			return
		}
		n.fsys.pending.Add(1)
		go func() {
			defer n.fsys.pending.Done()
			defer func() { <-n.fsys.raSem }()
			if err := n.fetch(st, i, e); err != nil {
				n.fsys.logError("readahead", n.path(), err)
			}
		}()
	}
}
