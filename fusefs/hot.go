package fusefs

import (
	"sync"

	"github.com/sealfs/sealfs/crypto"
)

// hotChunks is the decrypted content of the chunks downloaded last, kept in
// memory so that the reads a download serves (a sequential reader's next
// 1 MiB, which arrive in 128 KiB requests) copy it directly. Without it,
// every read opened the chunk's file in the on-disk cache, read the sealed
// blocks back and decrypted them a second time, although download had just
// decrypted the whole chunk to verify it: for a cold sequential read that
// was a third of the mount's CPU.
//
// Only fully verified content enters (download checks the transfer HMAC and
// every block against the manifest entry), keyed by file, index and chunk
// ID, the identity the verification was bound to. A chunk ID names one
// sealing, so an entry never goes stale. Nothing here is ever written to
// disk.
type hotChunks struct {
	mu      sync.Mutex
	max     int
	entries map[hotKey]*hotChunk
	order   []*hotChunk // oldest first
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

// hotChunksMax bounds the memory: readahead fetches plus the chunk being
// read, for a few concurrent sequential readers (1 MiB each by default).
// A sequential reader of a file too big for the chunk cache finds its
// chunks only here, so it must hold more than a readahead window (two
// such readers at once).
const hotChunksMax = 2 * readahead

func newHotChunks(max int) *hotChunks {
	return &hotChunks{max: max, entries: map[hotKey]*hotChunk{}}
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
	for len(h.order) > h.max {
		old := h.order[0]
		h.order = h.order[1:]
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
