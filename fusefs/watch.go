package fusefs

import (
	"context"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// pollInterval is how often the mount asks the server what other clients
// changed: the delay after which their changes show here.
const pollInterval = time.Second

// Watch follows the server's change feed until Shutdown, so that the mount
// may keep what it fetched until another client changes it (see
// coherence.go). Call it once the filesystem is mounted: it talks to the
// kernel.
func (f *FS) Watch() {
	f.pending.Add(1)
	go func() {
		defer f.pending.Done()
		f.watch()
	}()
}

func (f *FS) watch() {
	c := f.v.Client()
	me := wire.HexID(c.ClientID())
	cursor := f.cursor
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	stopped, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-f.stop
		cancel()
	}()
	for {
		cursor = f.poll(stopped, cursor, me)
		select {
		case <-f.stop:
			f.following.Store(false)
			return
		case <-t.C:
		}
	}
}

// poll applies the changes after cursor and returns the new cursor; -1
// when the mount has none yet.
func (f *FS) poll(stopped context.Context, cursor int64, me wire.HexID) int64 {
	for {
		ctx, cancel := context.WithTimeout(stopped, f.timeout)
		ch, err := f.v.Client().Changes(ctx, cursor, 0)
		cancel()
		if err == nil {
			f.reachable()
		}
		switch {
		case err != nil && stopped.Err() != nil:
			return cursor
		case err != nil:
			// Changes made elsewhere meanwhile cannot be known: fall
			// back to short timeouts until the feed answers again.
			if f.following.Swap(false) {
				f.log.Warn("cannot follow the server's changes; caching for a second only until it answers", "err", err)
				f.invalidateAll()
			}
			return cursor
		case cursor < 0 || ch.Reset:
			// A start, or the server cannot say what changed since
			// cursor: everything fetched before is suspect.
			f.invalidateAll()
			f.following.Store(true)
			return ch.Seq
		}
		inodes, dirs := map[crypto.ID]bool{}, map[crypto.ID]bool{}
		for _, c := range ch.Changes {
			if c.Origin == nil || *c.Origin != me {
				inodes[crypto.ID(c.Inode)] = true
				if c.Dir != nil {
					dirs[crypto.ID(*c.Dir)] = true
				}
			}
			cursor = c.Seq
		}
		if len(inodes) > 0 {
			f.invalidate(inodes, dirs)
		}
		if !ch.More {
			cursor = max(cursor, ch.Seq)
			if !f.following.Swap(true) {
				f.log.Info("following the server's changes again")
			}
			return cursor
		}
	}
}
