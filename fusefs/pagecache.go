package fusefs

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Handing the rest of an opened block to the kernel's page cache.
//
// A read opens (authenticates and decrypts) whole 64 KiB blocks, but a
// random reader asks for 4 KiB at a time: the kernel sends no more than
// the pages it lacks, and fio, like most random readers, turns readahead
// off. Without help, every 4 KiB read would open its block again. So once
// a read opened a block it did not need whole, the block's other pages are
// pushed into the kernel's page cache (FUSE_NOTIFY_STORE), where later
// reads of them are answered without a request to the mount. The pages
// hold plaintext the read just verified, nothing else; the kernel drops
// them like any cached page (and on every open, since the mount does not
// ask it to keep its cache).
//
// A pushed page must never be older than the file: pushes are done only
// from a file state no writable handle was opened on, and they are
// ordered against opens and truncates by pageGate. They run in the
// background, after the read has answered: the push locks pages the kernel
// may hold locked for reads in flight, and a read must never wait for one.

// pageGate orders pushes of a node's pages against what could make them
// stale. A push holds mu shared while it checks the gate and writes to the
// kernel; opens and truncates take it exclusively, so no push started
// before them completes after them, and they change epoch, so no push of
// bytes read before them starts after them.
//
// The gate also remembers which committed version the kernel's cache of
// the file may hold, so that an open of the same version keeps it
// (FOPEN_KEEP_CACHE) and repeated reads of an unchanged file never reach
// the mount. Everything this mount changes in a file passes through that
// cache (writes are written through it, truncates cut it), and a version
// is one commit: only versions differ, and a different version, or a
// state with changes not committed yet, makes the open drop the cache.
type pageGate struct {
	mu      sync.RWMutex
	epoch   atomic.Uint64
	tainted *fileState // a writable handle was opened on it: no pushes from it; guarded by mu
	cached  uint64     // generation the kernel's cache may hold, 0 if unknown; guarded by mu
}

// holdPages takes the gate for an open or a truncate: pushes running
// finish first, none starts until the returned function is called, and
// none of bytes read before starts after. The function releases the gate;
// given the state the open loaded it returns the open's flags, and a
// writable open stops pushes from that state for good. holdPages must not
// be called with the node's mu held.
func (n *node) holdPages() func(st *fileState, writable bool) uint32 {
	g := &n.pages
	g.mu.Lock()
	g.epoch.Add(1)
	return func(st *fileState, writable bool) (flags uint32) {
		defer g.mu.Unlock()
		if st == nil {
			return 0
		}
		if writable {
			g.tainted = st
		}
		n.mu.Lock()
		gen, unchanged := st.gen, !st.pinned()
		n.mu.Unlock()
		if unchanged && gen != 0 && gen == g.cached {
			flags = fuse.FOPEN_KEEP_CACHE
		}
		g.cached = 0
		if unchanged {
			g.cached = gen
		}
		return flags
	}
}

// pushDelay postpones every push by SEALFS_TEST_PUSH_DELAY, for tests
// that widen the races the gate closes.
var pushDelay, _ = time.ParseDuration(os.Getenv("SEALFS_TEST_PUSH_DELAY"))

// pushMax bounds the pushes running at once in the mount; a push that
// finds no slot is skipped (it only saves later requests).
const pushMax = 8

// pushBlock hands the kernel the parts of an opened block that the read
// did not ask for: plain holds the block's plaintext from file offset off;
// [skipFrom, skipTo) is what the read asked for. ep is the gate's epoch
// when the read started. It takes over buf, the pooled buffer plain lies
// in.
func (n *node) pushBlock(st *fileState, ep uint64, off int64, plain []byte, skipFrom, skipTo int, buf []byte) {
	const page = 4096
	skipFrom = skipFrom / page * page
	skipTo = min((skipTo+page-1)/page*page, len(plain))
	if skipFrom == 0 && skipTo == len(plain) {
		putBuf(buf)
		return
	}
	select {
	case n.fsys.rd.pushSem <- struct{}{}:
	default:
		putBuf(buf)
		return
	}
	go func() {
		defer func() { <-n.fsys.rd.pushSem }()
		defer putBuf(buf)
		if pushDelay > 0 {
			time.Sleep(pushDelay)
		}
		g := &n.pages
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.epoch.Load() != ep || g.tainted == st {
			return
		}
		n.mu.Lock()
		current := n.file == st
		size := st.size
		n.mu.Unlock()
		if !current {
			return
		}
		for _, r := range [2][2]int{{0, skipFrom}, {skipTo, len(plain)}} {
			from, to := int64(r[0]), min(int64(r[1]), size-off)
			if to > from {
				// An error (the kernel forgot the inode, an old
				// kernel) only means the pages are not cached.
				n.WriteCache(off+from, plain[from:to])
			}
		}
	}()
}
