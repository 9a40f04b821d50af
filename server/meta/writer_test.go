package meta

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// newTestWriter returns a writer, to which tests can also hand batches of
// their choosing directly, and the database it writes.
func newTestWriter(t *testing.T) (*writer, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "w.db")
	o := options{maxBatch: 64, readConns: 1}
	db, err := sql.Open("sqlite", dsn(path, o, false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE scratch (x INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	w := startWriter(db, o.maxBatch, nil)
	t.Cleanup(func() {
		if w.conn != nil {
			w.abort(context.Background())
		}
		db.Close()
	})
	return w, db
}

func insertOp(ctx context.Context, x int64, then func() error) *writeOp {
	return &writeOp{ctx: ctx, done: make(chan struct{}), fn: func(d dbtx) error {
		if _, err := d.exec(`INSERT INTO scratch (x) VALUES ($1)`, x); err != nil {
			return err
		}
		return then()
	}}
}

func scratch(t *testing.T, w *writer) []int64 {
	t.Helper()
	var xs []int64
	op := &writeOp{ctx: context.Background(), done: make(chan struct{}), fn: func(d dbtx) error {
		rows, err := d.query(`SELECT x FROM scratch ORDER BY x`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var x int64
			if err := rows.Scan(&x); err != nil {
				return err
			}
			xs = append(xs, x)
		}
		return rows.Err()
	}}
	w.runBatch([]*writeOp{op})
	if op.err != nil {
		t.Fatal(op.err)
	}
	return xs
}

// TestWriterSavepoints runs one batch whose operations succeed, fail, panic
// or were cancelled, and checks that exactly the successful ones committed,
// in one transaction.
func TestWriterSavepoints(t *testing.T) {
	w, _ := newTestWriter(t)
	bg := context.Background()
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	errOp := errors.New("operation failed")
	ok := func() error { return nil }
	batch := []*writeOp{
		insertOp(bg, 1, ok),
		insertOp(bg, 2, func() error { return errOp }),
		insertOp(bg, 3, ok),
		insertOp(bg, 4, func() error { panic("bug") }),
		insertOp(cancelled, 5, ok),
		insertOp(bg, 1, ok), // duplicate key: the statement itself fails
		insertOp(bg, 6, ok),
	}
	w.runBatch(batch)
	for i, op := range batch {
		select {
		case <-op.done:
		default:
			t.Fatalf("op %d not answered", i)
		}
	}
	if batch[0].err != nil || batch[2].err != nil || batch[6].err != nil {
		t.Fatalf("successful ops failed: %v, %v, %v", batch[0].err, batch[2].err, batch[6].err)
	}
	if !errors.Is(batch[1].err, errOp) || batch[3].err == nil || !errors.Is(batch[4].err, context.Canceled) || batch[5].err == nil {
		t.Fatalf("failed ops: %v, %v, %v, %v", batch[1].err, batch[3].err, batch[4].err, batch[5].err)
	}
	if w.commits.Load() != 1 || w.ops.Load() != 3 {
		t.Fatalf("commits %d, ops %d, want 1 and 3", w.commits.Load(), w.ops.Load())
	}
	if got := scratch(t, w); !slices.Equal(got, []int64{1, 3, 6}) {
		t.Fatalf("committed rows %v, want [1 3 6]", got)
	}
}

// TestWriterBatchFailure breaks the shared transaction from inside an
// operation: every operation of the batch must fail, none commit, and the
// writer must recover for the next batch.
func TestWriterBatchFailure(t *testing.T) {
	w, _ := newTestWriter(t)
	bg := context.Background()
	batch := []*writeOp{
		insertOp(bg, 1, func() error { return nil }),
		{ctx: bg, done: make(chan struct{}), fn: func(d dbtx) error {
			_, err := d.exec("ROLLBACK")
			return err
		}},
		insertOp(bg, 2, func() error { return nil }),
	}
	w.runBatch(batch)
	for i, op := range batch {
		if op.err == nil {
			t.Fatalf("op %d succeeded in a failed batch", i)
		}
	}
	if w.commits.Load() != 0 {
		t.Fatalf("%d commits", w.commits.Load())
	}
	op := insertOp(bg, 3, func() error { return nil })
	w.runBatch([]*writeOp{op})
	if op.err != nil {
		t.Fatalf("batch after a failure: %v", op.err)
	}
	if got := scratch(t, w); !slices.Equal(got, []int64{3}) {
		t.Fatalf("committed rows %v, want [3]", got)
	}
}

// TestWriterFailedBatchNoSync checks that a batch of failures commits
// nothing, sparing the sync.
func TestWriterFailedBatchNoSync(t *testing.T) {
	w, _ := newTestWriter(t)
	op := insertOp(context.Background(), 1, func() error { return errors.New("no") })
	w.runBatch([]*writeOp{op})
	if op.err == nil || w.commits.Load() != 0 {
		t.Fatalf("err %v, commits %d", op.err, w.commits.Load())
	}
}

// TestWriterLeadHandoff has many requesters write at once, some of them
// failing or panicking: each must get its own outcome, the lead must pass
// between them (several commits, each of several operations under load),
// and close must wait for the queue and refuse later writes.
func TestWriterLeadHandoff(t *testing.T) {
	w, _ := newTestWriter(t)
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.do(context.Background(), func(d dbtx) error {
				if _, err := d.exec(`INSERT INTO scratch (x) VALUES ($1)`, int64(i)); err != nil {
					return err
				}
				switch i % 10 {
				case 3:
					return errors.New("refused")
				case 7:
					panic("operation bug")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	var want []int64
	for i, err := range errs {
		switch i % 10 {
		case 3, 7:
			if err == nil {
				t.Fatalf("op %d: failing operation reported success", i)
			}
		default:
			if err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			want = append(want, int64(i))
		}
	}
	if got := scratch(t, w); !slices.Equal(got, want) {
		t.Fatalf("committed rows %v, want %v", got, want)
	}
	if c := w.commits.Load(); c < 2 || c > n {
		t.Fatalf("%d commits for %d operations", c, n)
	}
	w.close()
	if err := w.do(context.Background(), func(dbtx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
