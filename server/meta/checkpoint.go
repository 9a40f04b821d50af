package meta

import (
	"context"
	"database/sql"
	"time"
)

// checkpointer copies the WAL back into the database file on a connection
// of its own. SQLite's automatic checkpoint runs inside the COMMIT that
// crosses its threshold, so every few dozen small files one request waited
// for a thousand pages to be copied and the database file synced; here the
// writer's connection has wal_autocheckpoint off and this goroutine does
// the copying beside it (a PASSIVE checkpoint never blocks the writer or the
// readers). Durability is unchanged: a transaction is durable once its WAL
// frames are synced, whoever copies them later.
//
// A passive checkpoint cannot reset the WAL while readers still use it, so
// under steady load the file could grow without end; past restartFrames the
// checkpointer asks for a RESTART, which waits for the readers of the old
// WAL to finish so that the next write starts it over. New writes wait
// while it does, so it waits at most restartWait (its connection's
// busy_timeout) and is tried at most once per restartEvery (more often once
// the WAL is twice as long): a long reader (a scrub, a big listing) delays
// the restart, never the writes for long.
type checkpointer struct {
	db   *sql.DB
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

const (
	// checkpointDelay lets a burst of commits accumulate before a
	// checkpoint copies their pages, so a page written by many of them is
	// copied once.
	checkpointDelay = 20 * time.Millisecond
	// restartFrames is the WAL length (4 KiB pages) past which a
	// checkpoint also restarts the WAL.
	restartFrames = 8192
	restartWait   = 100 * time.Millisecond
	restartEvery  = time.Second
)

func startCheckpointer(db *sql.DB) *checkpointer {
	c := &checkpointer{db: db, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c
}

// notify tells the checkpointer that a transaction committed. It never
// blocks the writer.
func (c *checkpointer) notify() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTimer(0)
	<-t.C
	var lastRestart time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		t.Reset(checkpointDelay)
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		// Errors are left for the next commit's checkpoint to retry: until
		// then the WAL only grows, and every transaction in it is durable.
		frames, err := c.checkpoint("PASSIVE")
		if err == nil && frames > restartFrames && time.Since(lastRestart) >= restartInterval(frames) {
			lastRestart = time.Now()
			c.checkpoint("RESTART")
		}
	}
}

// restartInterval is how long after the last restart attempt the next may
// come, for a WAL of frames: once it is twice the threshold, the restarts
// that failed (a reader held on for longer than restartWait, as happens on
// a machine short of CPU) are retried four times as often, so that the file
// stays bounded at some cost to the writes' latency.
func restartInterval(frames int64) time.Duration {
	if frames > 2*restartFrames {
		return restartEvery / 4
	}
	return restartEvery
}

// checkpoint runs one checkpoint of the given mode and returns how many
// frames the WAL held.
func (c *checkpointer) checkpoint(mode string) (frames int64, err error) {
	var busy, checkpointed int64
	err = c.db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint("+mode+")").
		Scan(&busy, &frames, &checkpointed)
	return frames, err
}

// close stops the goroutine and closes its connection. The last connection
// to close checkpoints whatever is left.
func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
