package fusefs

import (
	"errors"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/vault"
	"github.com/sealfs/sealfs/remote/wire"
)

// Listing ahead.
//
// find, ls -lR, du and rsync walk a tree one directory at a time, and each
// opendir costs a round trip, plus, cold, the server's reads of its
// database: one after another, a walk pays every round trip in full, which
// over a link of 20 ms is 20 ms per directory. Once a walk shows itself
// (a directory is opened moments after its parent was), the mount lists
// that directory's subdirectories and its siblings in the background, a
// few at a time, so the walker's next opendirs find their listings ready:
// in a cold ls -lR of a Go source tree (180 directories, loopback), 171
// opendirs found theirs fetched, and waited 46 ms for them in all.
//
// A listing fetched ahead is used once, by the directory's next opendir,
// within attrTTL of its fetch, and only while nothing changed since the
// fetch started: no invalidation from the change feed (FS.gen) and no
// change by this mount (FS.local), either of which it might not show.
// Otherwise that opendir lists the directory itself, as it always did.
const (
	listAheadMax     = 8               // directories queued per opendir
	listAheadWorkers = 4               // listings fetched at once
	listAheadKeep    = 8               // listings held for an opendir
	listAheadEntries = 1024            // larger listings are not held (memory: 8 × 1024 entries at most)
	walkWindow       = 2 * time.Second // how recent a parent's opendir makes a walk
)

// aheadListing is one directory's listing fetched, or to be fetched, ahead
// of its opendir. seq and started are guarded by listAhead.mu; the rest is
// written by the worker before done is closed.
type aheadListing struct {
	seq     uint64 // order of queueing: the lowest is evicted first
	started bool
	done    chan struct{}
	entries []*vault.Node
	err     error
	gen     uint64 // FS.gen before the fetch
	local   uint64 // FS.local before the fetch
	at      time.Time
}

// listAhead holds the listings fetched ahead and the queue of those to
// fetch.
type listAhead struct {
	mu    sync.Mutex
	m     map[crypto.ID]*aheadListing
	seq   uint64
	queue chan crypto.ID
}

func newListAhead() *listAhead {
	return &listAhead{m: map[crypto.ID]*aheadListing{}, queue: make(chan crypto.ID, listAheadKeep)}
}

// changing records a change this mount makes on the server: it is called
// before the change is sent, and the function it returns after the answer,
// so that a listing fetched while the change was under way is not used.
func (f *FS) changing() func() {
	f.local.Add(1)
	return func() { f.local.Add(1) }
}

// startListAhead starts the workers that fetch listings ahead; they stop
// with the mount.
func (f *FS) startListAhead() {
	for range listAheadWorkers {
		go f.listAheadWorker()
	}
}

func (f *FS) listAheadWorker() {
	la := f.ahead
	for {
		var id crypto.ID
		select {
		case <-f.stop:
			return
		case id = <-la.queue:
		}
		la.mu.Lock()
		l := la.m[id]
		if l == nil || l.started {
			la.mu.Unlock()
			continue // taken by its opendir meanwhile, or evicted
		}
		l.started = true
		la.mu.Unlock()
		l.gen, l.local = f.gen(), f.local.Load()
		ctx, cancel := f.ctx()
		l.entries, l.err = f.v.ReadDir(ctx, id)
		cancel()
		l.at = time.Now()
		if len(l.entries) > listAheadEntries {
			l.entries, l.err = nil, errTooLarge
		}
		close(l.done)
	}
}

// errTooLarge marks a listing too large to hold.
var errTooLarge = errors.New("listing too large to hold")

// queueListing asks for directory id to be listed ahead, unless it is held
// or queued already.
func (f *FS) queueListing(id crypto.ID) {
	la := f.ahead
	la.mu.Lock()
	defer la.mu.Unlock()
	if la.m[id] != nil {
		return
	}
	select {
	case la.queue <- id:
	default:
		return // the workers are behind enough already
	}
	if len(la.m) == listAheadKeep { // evict the oldest of a few
		var oldest crypto.ID
		var min uint64
		for k, l := range la.m {
			if min == 0 || l.seq < min {
				oldest, min = k, l.seq
			}
		}
		delete(la.m, oldest)
	}
	la.seq++
	la.m[id] = &aheadListing{seq: la.seq, done: make(chan struct{})}
}

// takeListing returns the listing of directory id fetched ahead, with the
// FS.gen read before its fetch, when there is one still current. A listing
// queued but not started yet is dropped: fetching it now is faster than
// waiting for the queue.
func (f *FS) takeListing(id crypto.ID) ([]*vault.Node, uint64, bool) {
	la := f.ahead
	la.mu.Lock()
	l := la.m[id]
	delete(la.m, id)
	la.mu.Unlock()
	if l == nil || !l.started {
		return nil, 0, false
	}
	<-l.done
	if l.err != nil || l.gen != f.gen() || l.local != f.local.Load() || time.Since(l.at) >= attrTTL {
		return nil, 0, false
	}
	return l.entries, l.gen, true
}

// listAhead queues, when n's opendir is part of a walk, the listings of
// n's subdirectories (entries is n's listing) and of its siblings that
// were not opened recently.
func (n *node) listAhead(entries []*vault.Node) {
	now := time.Now()
	n.mu.Lock()
	if n.walk == nil {
		n.walk = new(walkTimes)
	}
	n.walk.listed = now
	n.mu.Unlock()
	_, pi := n.Parent()
	if pi == nil {
		return
	}
	parent, ok := pi.Operations().(*node)
	if !ok {
		return
	}
	parent.mu.Lock()
	walking := parent.walk.listedWithin(now)
	// The siblings are looked at once per walk of the parent: Children
	// copies the parent's whole child map, and doing that for every
	// subdirectory would cost a wide directory's walk time quadratic in
	// its size.
	siblings := walking && now.Sub(parent.walk.siblings) >= walkWindow
	if siblings {
		parent.walk.siblings = now
	}
	parent.mu.Unlock()
	if !walking {
		return
	}
	queued := 0
	for _, e := range entries {
		if queued == listAheadMax {
			return
		}
		if e.Type == wire.TypeDir {
			if cn := n.fsys.byID(e.ID); cn != nil && cn.listedRecently(now) {
				continue
			}
			n.fsys.queueListing(e.ID)
			queued++
		}
	}
	if !siblings {
		return
	}
	for _, ch := range parent.Children() {
		if queued == listAheadMax {
			return
		}
		if cn, ok := ch.Operations().(*node); ok && cn != n && cn.typ == wire.TypeDir && !cn.listedRecently(now) {
			n.fsys.queueListing(cn.id)
			queued++
		}
	}
}

// listedRecently reports whether the directory was opened within the walk
// window, so listing it ahead again would be wasted.
func (n *node) listedRecently(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.walk.listedWithin(now)
}

// walkTimes is when a directory was last opened, and when a walk last
// queued its subdirectories as siblings.
type walkTimes struct {
	listed, siblings time.Time
}

// listedWithin reports whether the directory was opened within the walk
// window before now; never for a directory not opened yet (w nil).
func (w *walkTimes) listedWithin(now time.Time) bool {
	return w != nil && now.Sub(w.listed) < walkWindow
}
