package fusefs

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sealfs/sealfs/crypto"
)

// hotChunks is the decrypted content of the chunks downloaded last, kept in
// memory so that the reads a download serves (a sequential reader's next
// 1 MiB) are answered from it, in place when one chunk covers the read
// (hotBytes). Without it, every read opened the chunk's file in the on-disk
// cache, read the sealed blocks back and decrypted them a second time,
// although download had just decrypted the whole chunk to verify it: for a
// cold sequential read that was a third of the mount's CPU.
//
// Only fully verified content enters (download checks the transfer HMAC and
// every block against the manifest entry), keyed by file, index and chunk
// ID, the identity the verification was bound to. A chunk ID names one
// sealing, so an entry never goes stale. Nothing here is ever written to
// disk.
type hotChunks struct {
	mu         sync.Mutex
	max        int64 // bytes of buffers held, beyond which the oldest go
	maxEntries int   // chunks held, beyond which the oldest go
	size       int64
	entries    map[hotKey]*hotChunk
	order      []*hotChunk // oldest first
}

type hotKey struct {
	file  crypto.ID
	index int
	id    crypto.ID
}

// hotChunk is one chunk's plaintext; buf is the pooled buffer p lies in.
// Readers hold a reference while copying, so eviction returns the buffer
// to the pool only once the last reader is done.
type hotChunk struct {
	key     hotKey
	buf, p  []byte
	refs    int
	evicted bool
}

// hotMax bounds the memory, in bytes: readahead fetches plus the chunk
// being read, for a few concurrent sequential readers. A sequential
// reader of a file too big for the chunk cache finds its chunks only
// here, so it must hold more than a readahead window (two such readers at
// once), and at least three chunks of layout l however large they are.
// A bound in chunks held 192 MiB with 4 MiB chunks, more than the
// mount's memory limit: the collector then ran without pause and a cold
// read faulted in 1.4 GB of fresh pages per GiB read.
func hotMax(l crypto.Layout) int64 {
	return max(2*readaheadBytes, 3*int64(l.ChunkSize()))
}

// hotMaxEntries bounds the chunks held, whatever their size: at least two
// readahead windows of layout l's chunks, and 256. The chunks of small files
// take a few KiB each (getBufFor), and a reader of many small files needs
// each only for the read that fetched it. With the byte bound alone,
// reading a tree of 100,000 small files kept 48 MiB of them, a 1 MiB
// buffer each; beside the mount's nodes for those files that held the heap
// at the mount's memory limit, where the collector runs without pause.
func hotMaxEntries(l crypto.Layout) int {
	return max(256, int(2*readaheadBytes/int64(max(l.ChunkSize(), 1)))+3)
}

func newHotChunks(max int64, maxEntries int) *hotChunks {
	return &hotChunks{max: max, maxEntries: maxEntries, entries: map[hotKey]*hotChunk{}}
}

// put adds plaintext p (within pooled buffer buf, which the cache now owns).
func (h *hotChunks) put(k hotKey, buf, p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.entries[k]; ok {
		putBuf(buf)
		return
	}
	c := &hotChunk{key: k, buf: buf, p: p}
	h.entries[k] = c
	h.order = append(h.order, c)
	h.size += int64(cap(buf))
	for (h.size > h.max || len(h.order) > h.maxEntries) && len(h.order) > 1 {
		old := h.order[0]
		h.order = h.order[1:]
		h.size -= int64(cap(old.buf))
		delete(h.entries, old.key)
		old.evicted = true
		if old.refs == 0 {
			putBuf(old.buf)
		}
	}
}

// has reports whether the chunk is held.
func (h *hotChunks) has(k hotKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.entries[k]
	return ok
}

// read copies the chunk's bytes from a into dst and reports whether it
// could: the chunk is held and covers the range.
func (h *hotChunks) read(k hotKey, dst []byte, a int) bool {
	h.mu.Lock()
	c := h.entries[k]
	if c == nil || a+len(dst) > len(c.p) {
		h.mu.Unlock()
		return false
	}
	c.refs++
	h.mu.Unlock()
	copy(dst, c.p[a:])
	h.mu.Lock()
	c.refs--
	if c.evicted && c.refs == 0 {
		putBuf(c.buf)
	}
	h.mu.Unlock()
	return true
}

// hotBytes lends a read the hot set's own bytes of a chunk, so that the
// reply goes to the kernel without being copied first (that copy was about
// 4 % of the mount's CPU in a cold sequential read: 0.10 of 2.45 s per
// GiB in its profile). It is a fuse.ReadResult
// that go-fuse writes as is (Slices) and releases with Done once the reply
// is sent; until then the chunk's buffer is not reused.
type hotBytes struct {
	h    *hotChunks
	c    *hotChunk
	p    []byte
	once sync.Once
}

// pin returns the n bytes of the chunk from a, held until Done, or nil
// when the chunk is not held or does not cover the range.
func (h *hotChunks) pin(k hotKey, a, n int) *hotBytes {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.entries[k]
	if c == nil || n == 0 || a+n > len(c.p) {
		return nil // go-fuse does not release an empty result
	}
	c.refs++
	return &hotBytes{h: h, c: c, p: c.p[a : a+n]}
}

// Bytes implements fuse.ReadResult.
func (b *hotBytes) Bytes(buf []byte) ([]byte, fuse.Status) { return b.p, fuse.OK }

// Slices lets go-fuse write the bytes in place, calling Done after the
// write (a ReadResult without it is copied out and released before).
func (b *hotBytes) Slices() ([][]byte, fuse.Status) { return [][]byte{b.p}, fuse.OK }

// Size implements fuse.ReadResult.
func (b *hotBytes) Size() int { return len(b.p) }

// Done releases the bytes; calls after the first do nothing.
func (b *hotBytes) Done() {
	b.once.Do(func() {
		b.h.mu.Lock()
		defer b.h.mu.Unlock()
		b.c.refs--
		if b.c.evicted && b.c.refs == 0 {
			putBuf(b.c.buf)
		}
	})
}
