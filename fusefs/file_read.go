package fusefs

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"

	"github.com/sealfs/sealfs/cache"
	"github.com/sealfs/sealfs/crypto"
)

// Reading. A read copies from dirty buffers, from the plaintext of chunks
// downloaded last (hot.go), or opens the 64 KiB blocks it touches out of
// the sealed chunks in the on-disk cache. A chunk that is nowhere is
// downloaded, verified as a whole and cached.
//
// Two kinds of background fetches hide the download latency:
//
//   - readahead: a sequential reader's next chunks, a few at a time;
//   - fill: once reads of a file jump around, its other chunks, so that
//     later reads find them in the cache. A fill only stores what fits in
//     the cache without evicting anything, yields to readers waiting for a
//     chunk, and stops when the file is closed.
//
// A read that needs only part of a block hands the rest of it to the
// kernel's page cache (pagecache.go).
//
// A sequential read of a file larger than the whole cache does not store
// its chunks in it: each would push out a chunk that is worth keeping, and
// the file itself cannot stay (an LRU cache smaller than a file that is
// read from start to end never hits). Its chunks live in the hot set only.
const (
	// readaheadBytes is how far past a sequential read chunks are
	// fetched ahead, raFetchBytes how much of that is fetched at once
	// (fs.go's raSem); both are bytes, so that an account with larger
	// chunks holds no more memory in flight. Cold 1 GiB reads of 1 MiB
	// chunks on loopback, 2 cores shared with the server: 8 and 4 MiB
	// gave 180 MiB/s, 16 and 8 190, 24 and 12 205, with less CPU per
	// byte too (fewer idle wake-ups).
	readaheadBytes = 24 << 20
	raFetchBytes   = 12 << 20

	// fillFetches is how many fill downloads run at once in the mount.
	fillFetches = 2

	// randomTrigger is how many reads in a row that do not follow the
	// previous one make a file's reads random, which starts a fill.
	randomTrigger = 3

	// seqSlack is how far from the previous read's end a read may start
	// and still count as sequential: the kernel's readahead sends the
	// pieces of a sequential read in parallel, so they arrive out of
	// order.
	seqSlack = 4 << 20
)

// readers is the mount-wide state of reading.
type readers struct {
	fillSem chan struct{} // bounds concurrent fill downloads
	pushSem chan struct{} // bounds concurrent pushes into the page cache
	waiting atomic.Int32  // reads waiting for a chunk download
}

func newReaders() *readers {
	return &readers{fillSem: make(chan struct{}, fillFetches), pushSem: make(chan struct{}, pushMax)}
}

// readOpts are what a read of a handle does besides copying bytes.
type readOpts struct {
	keep  bool   // a chunk it downloads goes into the chunk cache
	push  bool   // the parts of opened blocks it did not ask for go to the page cache
	epoch uint64 // the page gate's epoch when the read started
	// pin, when set, receives the hot set's own bytes instead of a copy
	// into dst, for a read that one held chunk serves whole.
	pin **hotBytes
}

// read fills dest from offset off of the file: dirty buffers first, then
// sealed chunks, opening only the blocks the range touches. When pin is
// set and one chunk of the hot set serves the whole range, nothing is
// copied: the read succeeded, *pin holds those bytes, dest is untouched,
// and the caller must call Done once it no longer needs them.
func (n *node) read(st *fileState, dest []byte, off int64, pin **hotBytes) (int, syscall.Errno) {
	cs := st.chunkSize()
	o := readOpts{push: true, epoch: n.pages.epoch.Load()}
	n.mu.Lock()
	size := st.size
	sequential := off >= st.readEnd-seqSlack && off <= st.readEnd+seqSlack
	if sequential {
		st.randomRun = 0
	} else {
		st.randomRun++
	}
	fill := st.randomRun >= randomTrigger && !st.fillStarted
	if fill {
		st.fillStarted = true
	}
	n.mu.Unlock()
	if off >= size {
		return 0, 0
	}
	end := min(off+int64(len(dest)), size)
	o.keep = !sequential || !n.tooBigToCache(st)
	for pos := off; pos < end; {
		i := int(pos / cs)
		a := int(pos - int64(i)*cs)
		b := int(min(end-int64(i)*cs, cs))
		out := dest[pos-off : pos-off+int64(b-a)]
		n.mu.Lock()
		if dc := st.dirty[i]; dc != nil {
			dc.mu.Lock()
			dc.defineTo(b)
			copy(out, dc.buf[a:b])
			dc.mu.Unlock()
			n.mu.Unlock()
		} else {
			e := st.entryAt(i)
			n.mu.Unlock()
			eo := o
			if pos == off && int64(b-a) == end-off {
				eo.pin = pin // one segment: it may be served in place
			}
			if err := n.readEntryWith(st, i, e, out, a, eo); err != nil {
				return 0, n.fsys.fail("read", n.path(), err)
			}
		}
		pos += int64(b - a)
	}
	n.mu.Lock()
	st.readEnd = end
	n.mu.Unlock()
	if sequential {
		n.prefetch(st, int(end/cs), o.keep)
	}
	if fill {
		n.startFill(st, int(off/cs))
	}
	return int(end - off), 0
}

// tooBigToCache reports whether the file's sealed chunks exceed the whole
// chunk cache.
func (n *node) tooBigToCache(st *fileState) bool {
	n.mu.Lock()
	count := st.count()
	n.mu.Unlock()
	return int64(count)*int64(st.layout.MaxSealedChunkSize()) > n.fsys.chunks.Max()
}

// readEntry copies chunk i's content from byte a into dst. Bytes past the
// entry's valid length read as zeros.
func (n *node) readEntry(st *fileState, i int, e entry, dst []byte, a int) error {
	return n.readEntryWith(st, i, e, dst, a, readOpts{keep: true})
}

// readEntryWith is readEntry, doing what o says besides.
func (n *node) readEntryWith(st *fileState, i int, e entry, dst []byte, a int, o readOpts) error {
	valid := e.valid
	if e.id.IsZero() || a >= valid {
		clear(dst)
		return nil
	}
	if tail := a + len(dst) - valid; tail > 0 {
		clear(dst[len(dst)-tail:])
		dst = dst[:len(dst)-tail]
		o.pin = nil // the zeros are in dst only
	}
	hk := hotKey{file: n.id, index: i, id: e.id}
	if n.readHot(st, o, hk, i, valid, dst, a) {
		return nil
	}
	bs := int(st.layout.BlockSize)
	sealed := getBuf(bs + crypto.BlockOverhead + int(st.layout.PadUnit))
	plain := getBuf(bs + int(st.layout.PadUnit))
	defer putBuf(sealed)
	defer func() { putBuf(plain) }()
	fetched := false
	// refetch fetches the chunk into the cache; done means it came into
	// the hot set meanwhile and dst is filled from there.
	refetch := func() (done bool, err error) {
		n.fsys.rd.waiting.Add(1)
		err = n.fetch(st, i, e, fetchRead, o.keep)
		n.fsys.rd.waiting.Add(-1)
		return err == nil && n.readHot(st, o, hk, i, valid, dst, a), err
	}
	for pos := a; pos < a+len(dst); {
		blk := pos / bs
		boff, blen, ok := st.layout.BlockSpan(e.plain, e.last, uint32(blk))
		if !ok {
			return fmt.Errorf("chunk %d: block %d outside its %d bytes", i, blk, e.plain)
		}
		err := n.fsys.chunks.ReadAt(e.id, sealed[:blen], int64(boff))
		if errors.Is(err, cache.ErrMiss) && !fetched {
			fetched = true
			if done, err := refetch(); done || err != nil {
				return err
			}
			err = n.fsys.chunks.ReadAt(e.id, sealed[:blen], int64(boff))
		}
		if errors.Is(err, cache.ErrMiss) {
			// Neither the hot set nor the cache could keep it: read
			// the chunk directly.
			return n.readUncached(st, i, e, dst, a)
		}
		if err != nil {
			return fmt.Errorf("chunk cache: %w", err)
		}
		p, err := st.fc.OpenBlock(plain[:0], uint64(i), e.id, sealed[:blen], uint32(blk), e.plain, e.last)
		if err != nil {
			// The cache is not fsynced (a crash can tear a file) and
			// lives on the client's disk: a copy that fails is dropped
			// and the chunk fetched again, which the server's copy
			// passes unless that one is bad too.
			n.fsys.chunks.Remove(e.id)
			if fetched {
				return fmt.Errorf("chunk %d, fetched again after its cached copy failed: %w", i, err)
			}
			n.fsys.log.Warn("a cached chunk failed verification; dropped it and fetching it again", "path", n.path(), "chunk", i, "err", err)
			fetched = true
			if done, err := refetch(); done || err != nil {
				return err
			}
			continue // read the block again, from the fresh copy
		}
		from := pos - blk*bs
		c := copy(dst[pos-a:], p[from:])
		pos += c
		if o.push && (from > 0 || from+c < len(p)) {
			// Bytes past the entry's valid length read as zeros,
			// not as what the block holds.
			if v := min(len(p), valid-blk*bs); v > 0 {
				n.pushBlock(st, o.epoch, int64(i)*st.chunkSize()+int64(blk*bs), p[:v], from, from+c, plain)
				plain = getBuf(bs + int(st.layout.PadUnit))
			}
		}
	}
	return nil
}

// readHot serves dst from byte a of chunk i when the hot set holds it: in
// place through o.pin when the caller asked for that, else as a copy.
func (n *node) readHot(st *fileState, o readOpts, hk hotKey, i, valid int, dst []byte, a int) bool {
	var ok bool
	if o.pin != nil {
		if hb := n.fsys.hot.pin(hk, a, len(dst)); hb != nil {
			*o.pin, ok = hb, true
		}
	}
	if !ok && !n.fsys.hot.read(hk, dst, a) {
		return false
	}
	if o.push {
		n.pushFromHot(st, o, hk, i, valid, a, len(dst))
	}
	return true
}

// pushFromHot pushes the parts of the blocks of chunk i that a read of
// [a, a+k) served from the hot set touched but did not ask for. valid is
// the entry's valid length.
func (n *node) pushFromHot(st *fileState, o readOpts, hk hotKey, i, valid, a, k int) {
	bs := int(st.layout.BlockSize)
	for _, blk := range [2]int{a / bs, (a + k - 1) / bs} {
		start, end := blk*bs, min(blk*bs+bs, valid)
		from, to := max(a, start)-start, min(a+k, end)-start
		if end <= start || (from == 0 && to == end-start) {
			continue
		}
		buf := getBuf(bs + int(st.layout.PadUnit))
		if !n.fsys.hot.read(hk, buf[:end-start], start) {
			putBuf(buf)
			return
		}
		n.pushBlock(st, o.epoch, int64(i)*st.chunkSize()+int64(start), buf[:end-start], from, to, buf)
		if a/bs == (a+k-1)/bs {
			return // one block: the second pass would push it again
		}
	}
}

// fetchCall is one download of a chunk that concurrent readers share.
type fetchCall struct {
	done    chan struct{}
	err     error
	waiters atomic.Int32
}

// fetchMode says who a download is for.
type fetchMode int

const (
	fetchRead  fetchMode = iota // a reader waits for it
	fetchAhead                  // readahead of a sequential reader
	fetchFill                   // the fill of a randomly read file
)

// errCacheFull ends a fill: the chunk cache has no room left.
var errCacheFull = errors.New("chunk cache full")

// fetch downloads chunk i, verifies its transfer HMAC and then every
// block against the manifest entry, and stores it sealed in the cache
// (unless keep is false). A read or readahead also keeps its plaintext in
// the hot set. A fill stores the chunk only where it fits without
// evicting, and returns errCacheFull when it does not; it does not wait
// for a download that is already running.
func (n *node) fetch(st *fileState, i int, e entry, mode fetchMode, keep bool) error {
	f := n.fsys
	f.fetchMu.Lock()
	if c := f.fetches[e.id]; c != nil {
		f.fetchMu.Unlock()
		if mode == fetchFill {
			return nil
		}
		c.waiters.Add(1)
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
	hk := hotKey{file: n.id, index: i, id: e.id}
	if mode == fetchFill {
		// Readers that came for this chunk meanwhile get it from the hot
		// set at once; otherwise the plaintext is not kept, so a fill
		// does not push out the chunks sequential readers need.
		if c.waiters.Load() > 0 {
			f.hot.put(hk, plainBuf, p)
			plainBuf = nil
		}
		stored, perr := f.chunks.PutIfRoom(e.id, sealed)
		if !stored && plainBuf != nil {
			f.hot.put(hk, plainBuf, p) // for readers that come now
			plainBuf = nil
		}
		if plainBuf != nil {
			putBuf(plainBuf)
		}
		putBuf(sealed)
		finish(nil)
		switch {
		case perr != nil:
			return fmt.Errorf("chunk cache: %w", perr)
		case !stored:
			return errCacheFull
		}
		return nil
	}
	// Readers waiting for this chunk go on as soon as its plaintext is in
	// memory; the copy into the on-disk cache is only for later reads.
	f.hot.put(hk, plainBuf, p)
	finish(nil)
	if keep {
		if perr := f.chunks.Put(e.id, sealed); perr != nil {
			f.log.Warn("chunk cache", "err", perr)
		}
	}
	putBuf(sealed)
	return nil
}

// fetching reports whether a download of the chunk is running.
func (f *FS) fetching(id crypto.ID) bool {
	f.fetchMu.Lock()
	defer f.fetchMu.Unlock()
	return f.fetches[id] != nil
}

// download fetches and fully verifies chunk i. It returns the sealed chunk
// and its plaintext p, which lies in plainBuf; the caller returns both
// buffers with putBuf.
func (n *node) download(st *fileState, i int, e entry) (sealed, plainBuf, p []byte, err error) {
	ctx, cancel := n.fsys.ctx()
	defer cancel()
	sealedLen := st.layout.SealedChunkLen(e.plain, e.last)
	buf := getBufFor(sealedLen, sealedBufSize(st.layout))
	sealed, err = n.fsys.v.Client().GetChunk(ctx, crypto.ChunkRef{File: n.id, Index: uint64(i), ID: e.id}, n.fsys.v.TransferMAC(), buf[:0])
	if err != nil {
		putBuf(buf)
		return nil, nil, nil, fmt.Errorf("chunk %d: %w", i, err)
	}
	plainBuf = getBufFor(sealedLen, st.layout.ChunkSize())
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
