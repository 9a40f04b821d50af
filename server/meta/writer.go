package meta

import (
	"context"
	"database/sql"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
)

// writer implements group commit. With synchronous=FULL every COMMIT syncs
// the WAL, and a sync costs far more than the statements of a typical
// operation, so one transaction per request would cap throughput at the
// disk's sync rate no matter how many requests wait. Instead operations
// queue, and one request at a time leads: it takes whatever is queued (its
// own operation first, up to maxBatch), runs it in one transaction with a
// SAVEPOINT each, commits once, and only then answers all of them. An
// operation that fails rolls back to its savepoint, undoing exactly its own
// changes, and the others commit. A batch that fails as a whole (the commit
// itself, or an error that aborts the transaction) fails every operation in
// it that had succeeded, which is truthful: none of them took effect.
//
// The leader is a requester, not a goroutine of the writer's own: a lone
// request, the common case of a sequential client such as tar, then runs
// its transaction on its own goroutine, where handing it to a writer
// goroutine and its answer back cost two wake-ups (the first measured at
// 52-75 µs on average during a tar -x on a 2-core machine). When the
// leader's batch is done it hands the lead to the oldest waiting
// operation's requester, so no request serves others' batches for longer
// than its own takes.
//
// Each answer is definitive: nil means committed and durable, an error means
// no effect. That holds for cancelled requests too: the leader checks the
// context only before running an operation, and the requester waits for the
// answer once its operation is queued.
type writer struct {
	db       *sql.DB
	maxBatch int
	// conn and stmts belong to the current leader.
	conn  *sql.Conn
	stmts *stmtCache

	mu      sync.Mutex
	pending []*writeOp
	leading bool // a requester is running a batch, or has been handed the lead
	closed  bool
	idle    *sync.Cond // broadcast when leading turns false

	ops     atomic.Uint64
	commits atomic.Uint64
	// committed, if set, is called after every commit, on the leader's
	// goroutine.
	committed func()
}

// writeOp is one operation waiting for the writer.
type writeOp struct {
	ctx context.Context
	fn  func(d dbtx) error
	err error
	// done is closed when the operation is answered, or when its requester
	// is to lead the next batch (lead set).
	done chan struct{}
	lead bool
}

func startWriter(db *sql.DB, maxBatch int, committed func()) *writer {
	w := &writer{db: db, maxBatch: maxBatch, committed: committed}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// do runs fn in the next batch and returns its outcome once the batch has
// committed. fn must use only the dbtx it is given, must not retain it, and
// must have no effects outside the database, because it may be rolled back.
func (w *writer) do(ctx context.Context, fn func(d dbtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan struct{})}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.pending = append(w.pending, op)
	if w.leading {
		w.mu.Unlock()
		<-op.done
		if !op.lead {
			return op.err
		}
		// Handed the lead: op is the oldest waiting operation, and its
		// batch answers it on a channel of its own.
		w.mu.Lock()
		op.done = make(chan struct{})
	}
	w.leading = true
	w.lead()
	return op.err
}

// lead runs one batch from the head of the queue, then passes the lead on.
// It is called with w.mu held, and returns with it released.
func (w *writer) lead() {
	n := min(len(w.pending), w.maxBatch)
	batch := slices.Clone(w.pending[:n])
	clear(w.pending[:n]) // drop references to answered operations
	w.pending = w.pending[n:]
	w.mu.Unlock()
	// Even a panic outside the operations (they have their own recover)
	// must not leave the lead taken, or every later write would wait for
	// ever.
	defer func() {
		w.mu.Lock()
		if len(w.pending) > 0 {
			next := w.pending[0]
			next.lead = true
			close(next.done)
		} else {
			w.leading = false
			w.idle.Broadcast()
		}
		w.mu.Unlock()
	}()
	w.runBatch(batch)
}

// close stops accepting operations, lets the queued ones commit and closes
// the connection.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	for w.leading {
		w.idle.Wait()
	}
	w.mu.Unlock()
	if w.conn != nil {
		w.stmts.close()
		w.conn.Close()
		w.conn, w.stmts = nil, nil
	}
}

// runBatch runs and commits one batch and answers every operation in it.
func (w *writer) runBatch(batch []*writeOp) {
	defer func() {
		for _, op := range batch {
			close(op.done)
		}
	}()
	ctx := context.Background()
	if err := w.connect(ctx); err != nil {
		failPending(batch, err)
		return
	}
	d := dbtx{ctx: ctx, q: w.conn, cache: w.stmts}
	if _, err := d.exec("BEGIN IMMEDIATE"); err != nil {
		failPending(batch, dbErr("begin", err))
		w.abort(ctx)
		return
	}
	live := 0
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.err = err
			continue
		}
		if len(batch) == 1 {
			// Alone in its transaction, an operation needs no
			// savepoint: if it fails, the rollback below undoes
			// exactly its changes.
			op.err = callOp(op.fn, d)
		} else if err := applyOp(d, op); err != nil {
			failPending(batch, err)
			w.abort(ctx)
			return
		}
		if op.err == nil {
			live++
		}
	}
	if live == 0 {
		// Nothing to make durable: spare the sync.
		if _, err := d.exec("ROLLBACK"); err != nil {
			w.abort(ctx)
		}
		return
	}
	if _, err := d.exec("COMMIT"); err != nil {
		failPending(batch, dbErr("commit", err))
		w.abort(ctx)
		return
	}
	w.commits.Add(1)
	w.ops.Add(uint64(live))
	if w.committed != nil {
		w.committed()
	}
}

// connect pins the connection the writer uses until an error makes it
// suspect. Transactions are begun and ended by statements on it rather than
// through sql.Tx, whose statements cannot outlive the transaction: this way
// the prepared statements in w.stmts serve every batch.
func (w *writer) connect(ctx context.Context) error {
	if w.conn != nil {
		return nil
	}
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return dbErr("connect", err)
	}
	w.conn = conn
	w.stmts = newStmtCache(conn.PrepareContext)
	return nil
}

// abort ends a failed batch: it rolls back whatever is left of the
// transaction (SQLite may already have) and releases the connection, so the
// next batch starts from a fresh one in a known state.
func (w *writer) abort(ctx context.Context) {
	w.conn.ExecContext(ctx, "ROLLBACK")
	w.stmts.close()
	w.conn.Close()
	w.conn, w.stmts = nil, nil
}

// applyOp runs one operation inside its savepoint. The operation's own
// failure is recorded in op.err; the returned error means the transaction
// itself is no longer usable.
func applyOp(d dbtx, op *writeOp) error {
	if _, err := d.exec("SAVEPOINT op"); err != nil {
		return dbErr("savepoint", err)
	}
	if op.err = callOp(op.fn, d); op.err != nil {
		if _, err := d.exec("ROLLBACK TO op"); err != nil {
			return fmt.Errorf("meta: rolling back after %v: %w", op.err, err)
		}
	}
	if _, err := d.exec("RELEASE op"); err != nil {
		return dbErr("release savepoint", err)
	}
	return nil
}

// callOp runs fn, turning a panic into that operation's error: the writer
// serves every request, so one bug must not take the others down with it,
// as net/http does not either.
func callOp(fn func(d dbtx) error, d dbtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("meta: panic in write operation: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(d)
}

// failPending gives err to every operation of a failed batch that has no
// error of its own.
func failPending(batch []*writeOp, err error) {
	for _, op := range batch {
		if op.err == nil {
			op.err = err
		}
	}
}
