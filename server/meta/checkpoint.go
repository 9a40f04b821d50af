package meta

import (
	"context"
	"database/sql"
	"strconv"
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
// busy_timeout) and is tried at most once per restartEvery (after one that
// failed, more often and waiting up to restartWaitLong): a long reader (a
// scrub, a big listing) delays the restart, never the writes for long.
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
	// restartWaitLong is restartWait after a restart that failed.
	restartWaitLong = time.Second
	restartEvery    = time.Second
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
	failed := false // the last restart found readers it could not wait for
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
		if err == nil && frames > restartFrames && time.Since(lastRestart) >= restartInterval(failed) {
			lastRestart = time.Now()
			failed = !c.restart(failed)
		}
	}
}

// restartInterval is how long after the last restart attempt the next may
// come. A restart that failed (a reader held on for longer than it waited,
// as happens on a machine short of CPU: beside two CPU hogs the WAL reached
// 76 MB) is tried again four times as soon, waiting restartWaitLong for
// the readers, so that the file stays bounded at some cost to the writes'
// latency.
func restartInterval(failed bool) time.Duration {
	if failed {
		return restartEvery / 4
	}
	return restartEvery
}

// restart checkpoints the WAL and starts it over, waiting for the readers
// of the old WAL up to restartWait, or restartWaitLong when long is set;
// new writes wait meanwhile. It reports whether the WAL was restarted.
func (c *checkpointer) restart(long bool) bool {
	ctx := context.Background()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return false
	}
	defer conn.Close()
	wait := func(d time.Duration) error {
		// PRAGMA takes no parameters; the value is a constant.
		_, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = "+strconv.FormatInt(d.Milliseconds(), 10))
		return err
	}
	if long {
		if wait(restartWaitLong) != nil {
			return false
		}
		defer wait(restartWait)
	}
	var busy, frames, done int64
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &frames, &done); err != nil {
		return false
	}
	return busy == 0
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
