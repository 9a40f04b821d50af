package meta

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxCachedStmts bounds a statement cache. The static queries number a few
// dozen; the rest of the room goes to IN lists and multi-row inserts, whose
// text varies with the batch size, and once it is full further queries are
// simply prepared per use.
const maxCachedStmts = 256

// stmtCache keeps prepared statements by query text. Preparing (parsing and
// planning) costs more than executing most of this package's statements,
// and the transpiled SQLite pays it in Go: reusing statements triples the
// throughput of concurrent creates (BenchmarkConcurrentCreate).
type stmtCache struct {
	prepare func(ctx context.Context, query string) (*sql.Stmt, error)
	mu      sync.Mutex
	stmts   map[string]*sql.Stmt
}

func newStmtCache(prepare func(ctx context.Context, query string) (*sql.Stmt, error)) *stmtCache {
	return &stmtCache{prepare: prepare, stmts: make(map[string]*sql.Stmt)}
}

// get returns the cached statement for query, preparing it if there is room,
// or nil if the cache is full.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	if len(c.stmts) >= maxCachedStmts {
		return nil, nil
	}
	st, err := c.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = st
	return st, nil
}

// close closes every cached statement; the cache stays usable.
func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	return errors.Join(errs...)
}
