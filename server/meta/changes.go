package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Change is one row of an account's change feed. A change of the namespace
// (one Create, Link, Unlink, Rename, SetAttr or Commit) records one row per
// inode it affected, all with the change's Seq.
type Change struct {
	// Seq numbers the change: the account's changes have seqs 1, 2, 3...
	// in commit order.
	Seq int64
	// Inode is an inode whose attributes, content or link count changed,
	// or that was created, deleted, moved or given another name.
	Inode ID
	// Dir, when not nil, is the directory in which an entry naming Inode
	// was added, removed or replaced; the directory's own version changed
	// with it. Nil when only Inode itself changed.
	Dir *ID
	// Origin is the client ID the change's request carried (see
	// WithOrigin), nil when it carried none.
	Origin *ID
}

// ChangePage is one page of an account's change feed.
type ChangePage struct {
	// Seq is the account's current seq, from the same snapshot as Changes:
	// when More is false, a reader is up to date as of Seq.
	Seq int64
	// Changes are in seq order; one change's rows are never split between
	// pages.
	Changes []Change
	// More is true when changes after the last one of this page exist.
	More bool
	// Reset is true, and Changes empty, when the rows after the requested
	// seq may have been pruned, or when it is beyond Seq (the database is
	// older than the reader's cursor, as after a restore from backup): the
	// reader can no longer tell what changed.
	Reset bool
}

type originKey struct{}

// WithOrigin returns a context under which the store records the changes it
// commits as made by the client with ID origin. It is a context value rather
// than a parameter because it describes the request, not the operation: the
// server sets it once for every request, and every writing method picks it
// up without each caller having to thread it through.
func WithOrigin(ctx context.Context, origin ID) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// OriginOf returns the client ID WithOrigin set, if any.
func OriginOf(ctx context.Context) (ID, bool) {
	id, ok := ctx.Value(originKey{}).(ID)
	return id, ok
}

// originArg is the origin column value for a change made under ctx: nil
// (NULL) when the request named no client. It is read before the operation
// enters the writer, whose statements run under the writer's own context.
func originArg(ctx context.Context) []byte {
	if id, ok := OriginOf(ctx); ok {
		return id[:]
	}
	return nil
}

// changed is one row a change records: inode, and the directory whose entry
// naming it changed (nil for none).
type changed struct {
	inode ID
	dir   *ID
}

// recordChange takes the account's next seq and records rows under it, in
// the caller's transaction, so that the feed shows exactly the committed
// changes. Duplicate rows (a rename within one directory names it twice) are
// recorded once. With no rows it records nothing and takes no seq.
func recordChange(d dbtx, account int64, origin []byte, now time.Time, rows ...changed) error {
	if len(rows) == 0 {
		return nil
	}
	var seq int64
	err := d.queryRow(`UPDATE accounts SET change_seq = change_seq + 1 WHERE id = $1 RETURNING change_seq`, account).Scan(&seq)
	if err != nil {
		return dbErr("record change", notFound(err, "account %d", account))
	}
	n := 0
	for i, r := range rows {
		if isDuplicate(rows[:i], r) {
			continue
		}
		var dir []byte
		if r.dir != nil {
			dir = r.dir[:]
		}
		if _, err := d.exec(`INSERT INTO changes (account, seq, n, inode, dir, origin, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			account, seq, n, r.inode[:], dir, origin, nanos(now)); err != nil {
			return dbErr("record change", err)
		}
		n++
	}
	return nil
}

func isDuplicate(seen []changed, r changed) bool {
	for _, s := range seen {
		if s.inode == r.inode && (s.dir == nil) == (r.dir == nil) && (s.dir == nil || *s.dir == *r.dir) {
			return true
		}
	}
	return false
}

// ChangeSeq implements Changes.
func (s *SQLite) ChangeSeq(ctx context.Context, account int64) (int64, error) {
	d, err := s.read(ctx)
	if err != nil {
		return 0, err
	}
	var seq int64
	err = d.queryRow(`SELECT change_seq FROM accounts WHERE id = $1`, account).Scan(&seq)
	return seq, dbErr("read change seq", notFound(err, "account %d", account))
}

// ChangesSince implements Changes. The account's seq, the pruning mark and
// the rows are read in one snapshot, so a page is never torn by a change or
// a pruning committed meanwhile.
func (s *SQLite) ChangesSince(ctx context.Context, account int64, since int64, limit int) (ChangePage, error) {
	if since < 0 {
		return ChangePage{}, fmt.Errorf("%w: change seq %d", ErrInvalid, since)
	}
	limit = pageLimit(limit)
	var p ChangePage
	err := s.view(ctx, func(d dbtx) error {
		var pruned int64
		err := d.queryRow(`SELECT change_seq, change_pruned FROM accounts WHERE id = $1`, account).Scan(&p.Seq, &pruned)
		if err != nil {
			return dbErr("read changes", notFound(err, "account %d", account))
		}
		if since < pruned || since > p.Seq {
			p.Reset = true
			return nil
		}
		if since == p.Seq {
			return nil
		}
		rows, err := queryChanges(d, `seq > $2 ORDER BY seq, n LIMIT $3`, account, since, limit+1)
		if err != nil || len(rows) <= limit {
			p.Changes = rows
			return err
		}
		// Cut the page back to the last change it holds whole.
		p.More = true
		last := rows[limit].Seq
		cut := limit
		for cut > 0 && rows[cut-1].Seq == last {
			cut--
		}
		if cut > 0 {
			p.Changes = rows[:cut]
			return nil
		}
		// One change has more rows than the limit: it comes whole, or the
		// reader could never get past it.
		p.Changes, err = queryChanges(d, `seq = $2 ORDER BY n`, account, last)
		p.More = last < p.Seq
		return err
	})
	if err != nil {
		return ChangePage{}, err
	}
	return p, nil
}

// queryChanges reads change rows of an account; cond is the condition after
// the account's, with its parameters from $2.
func queryChanges(d dbtx, cond string, account int64, args ...any) ([]Change, error) {
	rows, err := d.query(`SELECT seq, inode, dir, origin FROM changes WHERE account = $1 AND `+cond,
		append([]any{account}, args...)...)
	if err != nil {
		return nil, dbErr("read changes", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var dir, origin []byte
		if err := rows.Scan(&c.Seq, idDest{&c.Inode}, &dir, &origin); err != nil {
			return nil, dbErr("read changes", err)
		}
		if c.Dir, err = optionalID(dir); err != nil {
			return nil, err
		}
		if c.Origin, err = optionalID(origin); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, dbErr("read changes", rows.Err())
}

// optionalID converts a nullable ID column.
func optionalID(b []byte) (*ID, error) {
	if b == nil {
		return nil, nil
	}
	id := new(ID)
	if err := (idDest{id}).Scan(b); err != nil {
		return nil, err
	}
	return id, nil
}

// pruneStep bounds the changes one pruning transaction deletes, so that
// retention never holds the writer, and the requests queued behind it, for
// long.
const pruneStep = 1000

// PruneChanges implements Maintenance. The cutoffs are found outside the
// writer; the deletes run in it, a bounded step at a time, each with the
// account's pruning mark in the same transaction. Changes committed
// meanwhile have higher seqs than any cutoff, so they are never touched.
func (s *SQLite) PruneChanges(ctx context.Context, olderThan time.Time, keep int) (int64, error) {
	if keep < 0 {
		return 0, fmt.Errorf("%w: keep %d", ErrInvalid, keep)
	}
	d, err := s.read(ctx)
	if err != nil {
		return 0, err
	}
	rows, err := d.query(`SELECT id FROM accounts WHERE change_seq > change_pruned ORDER BY id`)
	if err != nil {
		return 0, dbErr("list change feeds", err)
	}
	var accounts []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, dbErr("list change feeds", err)
		}
		accounts = append(accounts, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, dbErr("list change feeds", err)
	}
	var total int64
	for _, account := range accounts {
		cut, err := pruneCutoff(d, account, olderThan, keep)
		if err != nil {
			return total, err
		}
		n, err := s.pruneTo(ctx, account, cut)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// pruneCutoff returns the highest seq of an account whose rows retention
// drops: every change made before olderThan, and every one beyond the
// newest keep rows (a change straddling that line goes whole).
func pruneCutoff(d dbtx, account int64, olderThan time.Time, keep int) (int64, error) {
	var byAge sql.NullInt64
	err := d.queryRow(`SELECT max(seq) FROM changes WHERE account = $1 AND at < $2`, account, nanos(olderThan)).Scan(&byAge)
	if err != nil {
		return 0, dbErr("find old changes", err)
	}
	var byCount int64
	err = d.queryRow(`SELECT seq FROM changes WHERE account = $1 ORDER BY seq DESC, n DESC LIMIT 1 OFFSET $2`,
		account, keep).Scan(&byCount)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, dbErr("count changes", err)
	}
	return max(byAge.Int64, byCount), nil
}

// pruneTo deletes an account's change rows up to seq cut, pruneStep changes
// per transaction, and returns how many rows it deleted.
func (s *SQLite) pruneTo(ctx context.Context, account, cut int64) (int64, error) {
	var total int64
	for {
		done := false
		var n int64
		err := s.update(ctx, func(d dbtx) error {
			var pruned int64
			err := d.queryRow(`SELECT change_pruned FROM accounts WHERE id = $1`, account).Scan(&pruned)
			if err != nil {
				return dbErr("prune changes", notFound(err, "account %d", account))
			}
			upto := min(cut, pruned+pruneStep)
			done = upto >= cut
			if upto <= pruned {
				return nil
			}
			if n, err = d.execN(`DELETE FROM changes WHERE account = $1 AND seq <= $2`, account, upto); err != nil {
				return dbErr("prune changes", err)
			}
			_, err = d.exec(`UPDATE accounts SET change_pruned = $2 WHERE id = $1`, account, upto)
			return dbErr("prune changes", err)
		})
		if err != nil {
			return total, err
		}
		total += n
		if done {
			return total, nil
		}
	}
}
