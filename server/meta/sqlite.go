package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is a Store in one SQLite database file.
//
// Writes are funnelled through one goroutine that runs concurrent requests in
// shared transactions (group commit, see writer), so a burst of durable writes
// pays one fsync instead of one each. Reads run concurrently on a separate
// pool of query-only connections; in WAL mode they never wait for the writer
// and see the last committed state.
//
// Other processes, such as admin commands, may open the same file at the
// same time: SQLite's file locks serialize their write transactions with
// ours, and busy_timeout makes each side wait for the other instead of
// failing.
type SQLite struct {
	rdb       *sql.DB
	wdb       *sql.DB
	rstmts    *stmtCache
	w         *writer
	cp        *checkpointer
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*SQLite)(nil)

type options struct {
	busyTimeout time.Duration
	maxBatch    int
	readConns   int
}

// Option configures OpenSQLite.
type Option func(*options)

// WithBusyTimeout sets how long a connection waits for another process's
// lock before failing (default 10s). It bounds how long an admin command can
// stall the server, and the server the command.
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) { o.busyTimeout = d }
}

// WithMaxBatch sets how many write operations may share one transaction
// (default 64). Larger batches amortize fsyncs further but make each
// operation wait for more work ahead of it.
func WithMaxBatch(n int) Option {
	return func(o *options) { o.maxBatch = n }
}

// WithReadConns sets the size of the read connection pool (default: twice
// GOMAXPROCS, at least 4). Each connection keeps its own page cache.
func WithReadConns(n int) Option {
	return func(o *options) { o.readConns = n }
}

// Stats counts the writer's work since the store was opened. Ops divided by
// Commits is the group-commit factor: how many durable writes shared a sync.
type Stats struct {
	// Ops counts committed write operations, failed ones excluded.
	Ops uint64
	// Commits counts committed transactions, i.e. WAL syncs.
	Commits uint64
}

// OpenSQLite opens or creates the database at path and brings its schema up
// to date.
func OpenSQLite(path string, opts ...Option) (*SQLite, error) {
	o := options{busyTimeout: 10 * time.Second, maxBatch: 64, readConns: max(4, 2*runtime.GOMAXPROCS(0))}
	for _, opt := range opts {
		opt(&o)
	}
	if o.busyTimeout < 0 || o.maxBatch < 1 || o.readConns < 1 {
		return nil, fmt.Errorf("%w: options %+v", ErrInvalid, o)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	ctx := context.Background()

	wdb, err := sql.Open("sqlite", dsn(abs, o, false))
	if err != nil {
		return nil, fmt.Errorf("meta: open %s: %w", abs, err)
	}
	// One connection: SQLite has one writer per file anyway, and holding
	// it keeps the page cache warm between batches.
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, wdb); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("%w (database %s)", err, abs)
	}

	rdb, err := sql.Open("sqlite", dsn(abs, o, true))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("meta: open %s: %w", abs, err)
	}
	rdb.SetMaxOpenConns(o.readConns)
	rdb.SetMaxIdleConns(o.readConns)
	if err := rdb.PingContext(ctx); err != nil {
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("meta: open %s: %w", abs, err)
	}
	// The checkpointer waits for readers only briefly: a RESTART that
	// waits holds off new writers meanwhile (see checkpointer).
	co := o
	co.busyTimeout = restartWait
	cdb, err := sql.Open("sqlite", dsn(abs, co, false))
	if err != nil {
		rdb.Close()
		wdb.Close()
		return nil, fmt.Errorf("meta: open %s: %w", abs, err)
	}
	cdb.SetMaxOpenConns(1)
	cp := startCheckpointer(cdb)
	return &SQLite{rdb: rdb, wdb: wdb, rstmts: newStmtCache(rdb.PrepareContext), cp: cp,
		w: startWriter(wdb, o.maxBatch, cp.notify)}, nil
}

// dsn builds the connection string. The pragmas go in _pragma parameters so
// that database/sql applies them to every connection it opens, not only to
// the first:
//
//   - journal_mode=WAL lets readers run while the writer commits, and other
//     processes open the file concurrently.
//   - synchronous=FULL syncs the WAL at every commit. With NORMAL, WAL mode
//     syncs only at checkpoints: the database stays consistent after a
//     power loss, but the last acknowledged transactions can vanish, and an
//     acknowledged upload or rename must not.
//   - busy_timeout waits for another process's lock instead of failing.
//   - foreign_keys enforces the references between tables, which SQLite
//     leaves off by default.
//   - temp_store=MEMORY keeps the statement journals of the writer's
//     savepoints (see writer) in memory: on disk SQLite created a temporary
//     file in every transaction and wrote a copy of each page it changed.
//   - wal_autocheckpoint=0 leaves checkpoints to the checkpointer, off the
//     path of a commit, and journal_size_limit gives the WAL file back to
//     the file system when it restarts after a burst.
//
// Write transactions are IMMEDIATE, taking the write lock up front: a
// deferred transaction that reads and then writes can fail with SQLITE_BUSY
// when another process wrote in between, which busy_timeout does not cure.
// Readers are query_only, so a bug cannot write outside the writer.
func dsn(path string, o options, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(o.busyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Add("_pragma", "wal_autocheckpoint(0)")
	q.Add("_pragma", "journal_size_limit(67108864)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// Close implements Store. It lets queued writes finish, then optimizes the
// query planner statistics and closes the connections.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.w.close()
		cpErr := s.cp.close()
		s.rstmts.close()
		// optimize is cheap when nothing changed and keeps query plans good
		// as tables grow; it is advisory, so its failure is not the
		// caller's problem.
		s.wdb.ExecContext(context.Background(), "PRAGMA optimize")
		s.closeErr = errors.Join(cpErr, s.rdb.Close(), s.wdb.Close())
	})
	return s.closeErr
}

// Stats returns the writer's counters.
func (s *SQLite) Stats() Stats {
	return Stats{Ops: s.w.ops.Load(), Commits: s.w.commits.Load()}
}

// update runs fn in the writer, in a transaction shared with other writes.
func (s *SQLite) update(ctx context.Context, fn func(d dbtx) error) error {
	return s.w.do(ctx, fn)
}

// view runs fn in a read transaction, so that all its statements see one
// snapshot.
func (s *SQLite) view(ctx context.Context, fn func(d dbtx) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return dbErr("begin read", err)
	}
	defer tx.Rollback()
	return fn(dbtx{ctx: ctx, q: tx, cache: s.rstmts, tx: tx})
}

// read returns a handle for single-statement reads, which need no
// transaction to be consistent.
func (s *SQLite) read(ctx context.Context) (dbtx, error) {
	if s.closed.Load() {
		return dbtx{}, ErrClosed
	}
	return dbtx{ctx: ctx, q: s.rdb, cache: s.rstmts}, nil
}

// querier is what *sql.DB, *sql.Conn and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// dbtx binds a querier to the context its statements run under. Inside the
// writer that is the writer's own context, never the request's: interrupting
// a statement can roll back the whole shared transaction.
//
// Queries use $N placeholders, which SQLite and PostgreSQL both accept.
type dbtx struct {
	ctx context.Context
	q   querier
	// cache, if set, supplies prepared statements for q's connection or
	// pool; tx, if set, is the read transaction they must be bound to.
	cache *stmtCache
	tx    *sql.Tx
}

// stmt returns a prepared statement for query, or nil to run it unprepared:
// when there is no cache, the cache is full, or preparing failed, in which
// case running it reports the same error where the caller expects it.
func (d dbtx) stmt(query string) *sql.Stmt {
	if d.cache == nil {
		return nil
	}
	st, err := d.cache.get(d.ctx, query)
	if err != nil || st == nil {
		return nil
	}
	if d.tx != nil {
		return d.tx.StmtContext(d.ctx, st)
	}
	return st
}

func (d dbtx) exec(query string, args ...any) (sql.Result, error) {
	if st := d.stmt(query); st != nil {
		return st.ExecContext(d.ctx, args...)
	}
	return d.q.ExecContext(d.ctx, query, args...)
}

// execN runs a statement and returns how many rows it changed.
func (d dbtx) execN(query string, args ...any) (int64, error) {
	res, err := d.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (d dbtx) query(query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(query); st != nil {
		return st.QueryContext(d.ctx, args...)
	}
	return d.q.QueryContext(d.ctx, query, args...)
}

func (d dbtx) queryRow(query string, args ...any) *sql.Row {
	if st := d.stmt(query); st != nil {
		return st.QueryRowContext(d.ctx, args...)
	}
	return d.q.QueryRowContext(d.ctx, query, args...)
}

// dbErr wraps an unexpected database error; errors of this package and
// context errors pass through unchanged so errors.Is keeps working.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if isMetaErr(err) {
		return err
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, op, err)
	}
	return fmt.Errorf("meta: %s: %w", op, err)
}

func isMetaErr(err error) bool {
	for _, e := range []error{ErrNotFound, ErrExists, ErrNotEmpty, ErrNotDir, ErrIsDir, ErrInvalid,
		ErrNotPermitted, ErrVersionMismatch, ErrMissingChunks, ErrQuota, ErrInviteInvalid, ErrTooLarge, ErrClosed, ErrNoSpace,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// notFound turns sql.ErrNoRows into ErrNotFound with a description.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: "+format, append([]any{ErrNotFound}, args...)...)
	}
	return err
}

// idDest scans a 16-byte BLOB into an ID, refusing anything else rather than
// truncating or padding.
type idDest struct{ id *ID }

// Scan implements sql.Scanner.
func (d idDest) Scan(src any) error {
	b, ok := src.([]byte)
	if !ok || len(b) != len(d.id) {
		return fmt.Errorf("meta: stored ID is %T of %d bytes", src, len(b))
	}
	copy(d.id[:], b)
	return nil
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// blob makes an empty value a zero-length BLOB: the driver binds a nil slice
// as NULL, which NOT NULL columns reject.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// placeholders returns "$first, $first+1, ..." for n parameters, for IN
// lists and multi-row inserts.
func placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(first + i))
	}
	return b.String()
}

// batchSize bounds the parameters of one statement, well below SQLite's
// 32766 and PostgreSQL's 65535, while still amortizing statement overhead
// over hundreds of rows.
const batchSize = 500

// inBatches calls fn for consecutive slices of at most batchSize IDs.
func inBatches(ids []ID, fn func(batch []ID) error) error {
	for len(ids) > 0 {
		n := min(len(ids), batchSize)
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// idArgs returns the IDs as query arguments, after the given leading ones.
func idArgs(lead []any, ids []ID) []any {
	args := make([]any, 0, len(lead)+len(ids))
	args = append(args, lead...)
	for i := range ids {
		args = append(args, ids[i][:])
	}
	return args
}
