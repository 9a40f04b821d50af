package fusefs

import (
	"errors"
	"sync/atomic"
	"time"
)

// Background fetches: readahead for sequential readers and the fill of
// randomly read files (see file_read.go for when each starts).

// present reports whether chunk i needs no download: a hole, dirty, hot,
// cached or being downloaded. It returns the entry to fetch otherwise;
// ok is false past the file's end.
func (n *node) present(st *fileState, i int) (e entry, skip, ok bool) {
	n.mu.Lock()
	if i >= st.count() {
		n.mu.Unlock()
		return entry{}, true, false
	}
	dirty := st.dirty[i] != nil
	e = st.entryAt(i)
	n.mu.Unlock()
	skip = dirty || e.id.IsZero() ||
		n.fsys.hot.has(hotKey{file: n.id, index: i, id: e.id}) ||
		n.fsys.chunks.Contains(e.id) || n.fsys.fetching(e.id)
	return e, skip, true
}

// prefetch fetches, in the background, the chunks a sequential reader will
// want next, so downloads overlap its reads. It never waits: when the
// readahead slots are busy it does nothing.
func (n *node) prefetch(st *fileState, from int, keep bool) {
	cs := st.chunkSize()
	ahead := max(1, int(readaheadBytes/cs))
	weight := min(cs, raFetchBytes)
	for i := from; i < from+ahead; i++ {
		e, skip, ok := n.present(st, i)
		if !ok {
			return
		}
		if skip {
			continue
		}
		if !n.fsys.raSem.TryAcquire(weight) {
			return
		}
		n.fsys.pending.Add(1)
		go func() {
			defer n.fsys.pending.Done()
			defer n.fsys.raSem.Release(weight)
			if err := n.fetch(st, i, e, fetchAhead, keep); err != nil {
				n.fsys.logError("readahead", n.path(), err)
			}
		}()
	}
}

// startFill starts fetching, in the background, the chunks of a randomly
// read file that are not cached yet, from chunk from on (wrapping around).
func (n *node) startFill(st *fileState, from int) {
	if n.fsys.chunks.Room() < int64(st.layout.MaxSealedChunkSize()) {
		return
	}
	n.fsys.pending.Add(1)
	go func() {
		defer n.fsys.pending.Done()
		n.fill(st, from)
	}()
}

// fill is startFill's loop. It stops when the file is closed or replaced,
// the mount shuts down, the cache is full or a download fails.
func (n *node) fill(st *fileState, from int) {
	f := n.fsys
	var stop atomic.Bool
	done := make(chan struct{}, fillFetches)
	running := 0
	defer func() {
		for ; running > 0; running-- {
			<-done
		}
	}()
	n.mu.Lock()
	count := st.count()
	n.mu.Unlock()
	chunk := int64(st.layout.MaxSealedChunkSize())
	for k := 0; k < count && !stop.Load(); k++ {
		i := (from + k) % count
		n.mu.Lock()
		open := st.opens > 0 && n.file == st
		n.mu.Unlock()
		if !open {
			return
		}
		e, skip, ok := n.present(st, i)
		if !ok {
			return // truncated meanwhile
		}
		if skip {
			continue
		}
		if f.chunks.Room() < chunk {
			return
		}
		// Readers waiting for a download go first.
		for f.rd.waiting.Load() > 0 {
			select {
			case <-f.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
		if running == fillFetches {
			<-done
			running--
		}
		select {
		case f.rd.fillSem <- struct{}{}:
		case <-f.stop:
			return
		}
		running++
		go func() {
			defer func() { <-f.rd.fillSem; done <- struct{}{} }()
			err := n.fetch(st, i, e, fetchFill, true)
			switch {
			case errors.Is(err, errCacheFull):
				stop.Store(true)
			case err != nil:
				stop.Store(true)
				f.logError("background fetch", n.path(), err)
			}
		}()
	}
}
