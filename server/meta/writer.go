package meta

import (
	"context"
	"database/sql"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// writer implements group commit. With synchronous=FULL every COMMIT syncs
// the WAL, and a sync costs far more than the statements of a typical
// operation, so one transaction per request would cap throughput at the
// disk's sync rate no matter how many requests wait. Instead one goroutine
// owns the write connection; it takes whatever operations are queued (up to
// maxBatch), runs them in one transaction with a SAVEPOINT each, commits
// once, and only then answers all of them. An operation that fails rolls
// back to its savepoint, undoing exactly its own changes, and the others
// commit. A batch that fails as a whole (the commit itself, or an error that
// aborts the transaction) fails every operation in it that had succeeded,
// which is truthful: none of them took effect.
//
// Each answer is definitive: nil means committed and durable, an error means
// no effect. That holds for cancelled requests too: the writer checks the
// context only before running an operation, and the caller waits for the
// answer once the writer has the operation.
type writer struct {
	db       *sql.DB
	maxBatch int
	// conn and stmts belong to the goroutine running run.
	conn    *sql.Conn
	stmts   *stmtCache
	queue   chan *writeOp
	stopped chan struct{}

	// mu orders submissions against close: do holds it shared while
	// sending, so close, holding it exclusively, knows no send is in flight
	// when it closes the queue.
	mu     sync.RWMutex
	closed bool

	ops     atomic.Uint64
	commits atomic.Uint64
	// committed, if set, is called after every commit, on the writer's
	// goroutine.
	committed func()
}

// writeOp is one operation waiting for the writer.
type writeOp struct {
	ctx  context.Context
	fn   func(d dbtx) error
	err  error
	done chan struct{}
}

func startWriter(db *sql.DB, maxBatch int, committed func()) *writer {
	w := &writer{
		db:        db,
		maxBatch:  maxBatch,
		committed: committed,
		// The buffer lets requests queue while a batch syncs, which is
		// what makes the next batch large.
		queue:   make(chan *writeOp, 4*maxBatch),
		stopped: make(chan struct{}),
	}
	go w.run()
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
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	select {
	case w.queue <- op:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	<-op.done
	return op.err
}

// close stops accepting operations and waits for the queued ones.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.stopped
}

func (w *writer) run() {
	defer close(w.stopped)
	batch := make([]*writeOp, 0, w.maxBatch)
	for op := range w.queue {
		batch = append(batch[:0], op)
	fill:
		for len(batch) < w.maxBatch {
			select {
			case op, ok := <-w.queue:
				if !ok {
					break fill
				}
				batch = append(batch, op)
			default:
				break fill
			}
		}
		w.runBatch(batch)
		clear(batch) // drop references to answered operations
	}
	if w.conn != nil {
		w.stmts.close()
		w.conn.Close()
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
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		failPending(batch, dbErr("begin", err))
		w.abort(ctx)
		return
	}
	d := dbtx{ctx: ctx, q: w.conn, cache: w.stmts}
	live := 0
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.err = err
			continue
		}
		if err := applyOp(d, op); err != nil {
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
