package meta

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// storedChunkQuery selects a StoredChunk; callers append the condition.
const storedChunkQuery = `SELECT c.account, a.name, ` + chunkColsC + `
	FROM chunks c JOIN accounts a ON a.id = c.account `

func scanStoredChunks(rows *sql.Rows) ([]StoredChunk, error) {
	defer rows.Close()
	var out []StoredChunk
	for rows.Next() {
		var sc StoredChunk
		var r chunkScan
		if err := rows.Scan(append([]any{&sc.Account, &sc.AccountName}, r.dests()...)...); err != nil {
			return nil, err
		}
		sc.ChunkRecord = r.record()
		out = append(out, sc)
	}
	return out, rows.Err()
}

// GarbageChunks implements Maintenance. The grace period runs from when a
// chunk lost its last reference (or was stored, if it never had one). The
// refs = 0 condition matches the
// partial index chunks_garbage, so the cost is proportional to the garbage,
// not to the number of chunks.
func (s *SQLite) GarbageChunks(ctx context.Context, olderThan time.Time, limit int) ([]StoredChunk, error) {
	d, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.query(storedChunkQuery+`WHERE c.refs = 0 AND c.unref_at < $1
		ORDER BY c.unref_at LIMIT $2`, nanos(olderThan), pageLimit(limit))
	if err != nil {
		return nil, dbErr("list garbage", err)
	}
	out, err := scanStoredChunks(rows)
	return out, dbErr("list garbage", err)
}

// DeleteChunk implements Maintenance. The refs = 0 condition is evaluated in
// the writer, after any commit that referenced the chunk again since
// GarbageChunks listed it, so such a chunk survives.
func (s *SQLite) DeleteChunk(ctx context.Context, account int64, id ID) (bool, error) {
	deleted := false
	err := s.update(ctx, func(d dbtx) error {
		var size int64
		err := d.queryRow(`DELETE FROM chunks WHERE account = $1 AND id = $2 AND refs = 0 RETURNING size`,
			account, id[:]).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return dbErr("delete chunk", err)
		}
		// Clamped rather than checked: should usage ever have drifted low,
		// refusing the delete would leak the chunk forever.
		if _, err := d.exec(`UPDATE accounts SET used_bytes = CASE WHEN used_bytes > $2 THEN used_bytes - $2 ELSE 0 END
			WHERE id = $1`, account, size); err != nil {
			return dbErr("delete chunk", err)
		}
		deleted = true
		return nil
	})
	return deleted, err
}

// ListChunks implements Maintenance.
func (s *SQLite) ListChunks(ctx context.Context, after RowKey, limit int) ([]StoredChunk, error) {
	d, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := d.query(storedChunkQuery+`WHERE (c.account, c.id) > ($1, $2)
		ORDER BY c.account, c.id LIMIT $3`, after.Account, after.ID[:], pageLimit(limit))
	if err != nil {
		return nil, dbErr("list chunks", err)
	}
	out, err := scanStoredChunks(rows)
	return out, dbErr("list chunks", err)
}
