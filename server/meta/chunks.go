package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// chunkCols selects a ChunkRecord; blob_key is NULL for an inline chunk.
const chunkCols = `id, file, idx, size, COALESCE(blob_key, ''), kek_id, wrapped_key, created_at, mac, inline_data`

// chunkColsC is chunkCols qualified by the alias c, for joins.
const chunkColsC = `c.id, c.file, c.idx, c.size, COALESCE(c.blob_key, ''), c.kek_id, c.wrapped_key, c.created_at, c.mac, c.inline_data`

// chunkScan receives the columns of chunkCols.
type chunkScan struct {
	c       ChunkRecord
	idx     int64
	created int64
}

func (r *chunkScan) dests() []any {
	return []any{idDest{&r.c.ID}, idDest{&r.c.File}, &r.idx, &r.c.Size, &r.c.BlobKey, &r.c.KEKID, &r.c.WrappedKey, &r.created, &r.c.MAC, &r.c.Inline}
}

func (r *chunkScan) record() ChunkRecord {
	c := r.c
	c.Index = uint64(r.idx)
	c.CreatedAt = fromNanos(r.created)
	return c
}

func getChunk(d dbtx, account int64, id ID) (ChunkRecord, error) {
	var r chunkScan
	err := d.queryRow(`SELECT `+chunkCols+` FROM chunks WHERE account = $1 AND id = $2`, account, id[:]).Scan(r.dests()...)
	if err != nil {
		return ChunkRecord{}, dbErr("get chunk", notFound(err, "chunk %x", id))
	}
	return r.record(), nil
}

// PutChunk implements Chunks.
func (s *SQLite) PutChunk(ctx context.Context, account int64, c ChunkRecord) (ChunkRecord, bool, error) {
	if err := checkChunkRecord(c); err != nil {
		return ChunkRecord{}, false, err
	}
	var stored ChunkRecord
	created := false
	err := s.update(ctx, func(d dbtx) error {
		var err error
		stored, created, err = putChunkTx(d, account, c, time.Now())
		return err
	})
	if err != nil {
		return ChunkRecord{}, false, err
	}
	return stored, created, nil
}

// putChunkTx records a chunk inside a write transaction: see PutChunk.
func putChunkTx(d dbtx, account int64, c ChunkRecord, now time.Time) (ChunkRecord, bool, error) {
	var blobKey, inline any // NULL unless set
	if c.BlobKey != "" {
		blobKey = c.BlobKey
	} else {
		inline = c.Inline
	}
	var mac any // NULL unless known
	if len(c.MAC) > 0 {
		mac = c.MAC
	}
	// Insert first and look only on a conflict, and charge the quota in
	// the statement that checks it: a new chunk, the usual case, costs two
	// statements. A failure rolls back the insert with the operation.
	n, err := d.execN(`INSERT INTO chunks (account, id, file, idx, size, blob_key, kek_id, wrapped_key, created_at, unref_at, inline_data, mac)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11) ON CONFLICT (account, id) DO NOTHING`,
		account, c.ID[:], c.File[:], int64(c.Index), c.Size, blobKey, c.KEKID, c.WrappedKey, nanos(now), inline, mac)
	if err != nil {
		var one int
		if qerr := d.queryRow(`SELECT 1 FROM accounts WHERE id = $1`, account).Scan(&one); errors.Is(qerr, sql.ErrNoRows) {
			return ChunkRecord{}, false, fmt.Errorf("%w: account %d", ErrNotFound, account)
		}
		return ChunkRecord{}, false, dbErr("put chunk", err)
	}
	if n == 0 {
		old, err := getChunk(d, account, c.ID)
		if err != nil {
			return ChunkRecord{}, false, err
		}
		if old.File != c.File || old.Index != c.Index || old.Size != c.Size {
			return ChunkRecord{}, false, fmt.Errorf("%w: chunk %x was stored for another position", ErrExists, c.ID)
		}
		return old, false, nil
	}
	n, err = d.execN(`UPDATE accounts SET used_bytes = used_bytes + $2
		WHERE id = $1 AND (quota_bytes = 0 OR used_bytes + $2 <= quota_bytes)`, account, c.Size)
	if err != nil {
		return ChunkRecord{}, false, dbErr("put chunk", err)
	}
	if n == 0 {
		var quota, used int64
		err := d.queryRow(`SELECT quota_bytes, used_bytes FROM accounts WHERE id = $1`, account).Scan(&quota, &used)
		if err != nil {
			return ChunkRecord{}, false, dbErr("put chunk", notFound(err, "account %d", account))
		}
		return ChunkRecord{}, false, fmt.Errorf("%w: %d of %d bytes used, chunk of %d", ErrQuota, used, quota, c.Size)
	}
	c.CreatedAt = fromNanos(nanos(now))
	return c, true, nil
}

// putNewChunks records the chunks a commit carries with it, in the commit's
// transaction. A blob chunk already recorded with another blob key (or
// inline) makes the commit fail with ErrExists, so the caller's blob is
// never orphaned silently: it deletes it and retries without the chunk. An
// inline chunk already recorded for the same position and size is fine: its
// value goes nowhere, and the stored one serves.
func putNewChunks(d dbtx, account int64, cs []ChunkRecord, now time.Time) error {
	for _, c := range cs {
		if err := checkChunkRecord(c); err != nil {
			return err
		}
		stored, _, err := putChunkTx(d, account, c, now)
		if err != nil {
			return err
		}
		if c.BlobKey != "" && stored.BlobKey != c.BlobKey {
			return fmt.Errorf("%w: chunk %x is already stored", ErrExists, c.ID)
		}
	}
	return nil
}

// GetChunk implements Chunks.
func (s *SQLite) GetChunk(ctx context.Context, account int64, id ID) (ChunkRecord, error) {
	d, err := s.read(ctx)
	if err != nil {
		return ChunkRecord{}, err
	}
	return getChunk(d, account, id)
}

// HaveChunks implements Chunks.
func (s *SQLite) HaveChunks(ctx context.Context, account int64, ids []ID) ([]bool, error) {
	have := make(map[ID]bool, len(ids))
	err := s.view(ctx, func(d dbtx) error {
		return inBatches(ids, func(batch []ID) error {
			return forChunks(d, account, batch, func(id ID, _ int64) { have[id] = true })
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	for i, id := range ids {
		out[i] = have[id]
	}
	return out, nil
}

// forChunks calls fn with the ID and size of each chunk of batch that the
// account stores.
func forChunks(d dbtx, account int64, batch []ID, fn func(id ID, size int64)) error {
	rows, err := d.query(`SELECT id, size FROM chunks WHERE account = $1 AND id IN (`+placeholders(2, len(batch))+`)`,
		idArgs([]any{account}, batch)...)
	if err != nil {
		return dbErr("read chunks", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id ID
		var size int64
		if err := rows.Scan(idDest{&id}, &size); err != nil {
			return dbErr("read chunks", err)
		}
		fn(id, size)
	}
	return dbErr("read chunks", rows.Err())
}

// chunkSizes returns the size of each of the distinct IDs, or a
// *MissingChunksError listing, in the order given, those the account lacks.
// Chunks just recorded (fresh) are known without a query: a small file's
// commit carries its only chunk.
func chunkSizes(d dbtx, account int64, ids []ID, fresh []ChunkRecord) (map[ID]int64, error) {
	sizes := make(map[ID]int64, len(ids))
	rest := ids
	if len(fresh) > 0 {
		known := make(map[ID]int64, len(fresh))
		for _, c := range fresh {
			known[c.ID] = c.Size
		}
		rest = nil
		for _, id := range ids {
			if size, ok := known[id]; ok {
				sizes[id] = size
			} else {
				rest = append(rest, id)
			}
		}
	}
	err := inBatches(rest, func(batch []ID) error {
		return forChunks(d, account, batch, func(id ID, size int64) { sizes[id] = size })
	})
	if err != nil {
		return nil, err
	}
	if len(sizes) == len(ids) {
		return sizes, nil
	}
	missing := &MissingChunksError{}
	for _, id := range ids {
		if _, ok := sizes[id]; !ok {
			missing.IDs = append(missing.IDs, id)
		}
	}
	return nil, missing
}

// contentSize is the sealed size of a file version: a chunk used at several
// positions counts at each, as it would in the file.
func contentSize(chunks []ChunkPos, sizes map[ID]int64) int64 {
	var n int64
	for _, c := range chunks {
		n += sizes[c.ID]
	}
	return n
}

// setFileChunks makes the file's chunk references exactly chunks. It writes
// only the positions that change, so committing an edit to one chunk of a
// large file costs a few rows, not a rewrite of all of them; fresh skips
// reading the old references of a file that has none.
func setFileChunks(d dbtx, account int64, file ID, chunks []ChunkPos, fresh bool) error {
	old := map[uint64]ID{}
	if !fresh {
		rows, err := d.query(`SELECT idx, chunk FROM file_chunks WHERE account = $1 AND file = $2`, account, file[:])
		if err != nil {
			return dbErr("read file chunks", err)
		}
		for rows.Next() {
			var idx int64
			var id ID
			if err := rows.Scan(&idx, idDest{&id}); err != nil {
				rows.Close()
				return dbErr("read file chunks", err)
			}
			old[uint64(idx)] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return dbErr("read file chunks", err)
		}
	}
	var changed []ChunkPos
	for _, c := range chunks {
		id, ok := old[c.Index]
		delete(old, c.Index)
		if !ok || id != c.ID {
			changed = append(changed, c)
		}
	}
	removed := make([]any, 0, len(old))
	for idx := range old {
		removed = append(removed, int64(idx))
	}
	for len(removed) > 0 {
		n := min(len(removed), batchSize)
		args := append([]any{account, file[:]}, removed[:n]...)
		if _, err := d.exec(`DELETE FROM file_chunks WHERE account = $1 AND file = $2 AND idx IN (`+
			placeholders(3, n)+`)`, args...); err != nil {
			return dbErr("write file chunks", err)
		}
		removed = removed[n:]
	}
	for len(changed) > 0 {
		n := min(len(changed), batchSize)
		var values []byte
		args := make([]any, 0, 2+2*n)
		args = append(args, account, file[:])
		for i, c := range changed[:n] {
			if i > 0 {
				values = append(values, ", "...)
			}
			values = fmt.Appendf(values, "($1, $2, $%d, $%d)", 3+2*i, 4+2*i)
			args = append(args, int64(c.Index), c.ID[:])
		}
		if _, err := d.exec(`INSERT INTO file_chunks (account, file, idx, chunk) VALUES `+string(values)+
			` ON CONFLICT (account, file, idx) DO UPDATE SET chunk = excluded.chunk`, args...); err != nil {
			return dbErr("write file chunks", err)
		}
		changed = changed[n:]
	}
	return nil
}

// Commit implements Chunks.
func (s *SQLite) Commit(ctx context.Context, account int64, r CommitRequest) (Inode, error) {
	chunkIDs, err := checkContent(r.Manifest, r.Chunks)
	if err != nil {
		return Inode{}, err
	}
	if err := checkSize("attributes", r.Attr, MaxSealedSize); err != nil {
		return Inode{}, err
	}
	if r.IfVersion < 0 {
		return Inode{}, fmt.Errorf("%w: version %d", ErrInvalid, r.IfVersion)
	}
	origin := originArg(ctx)
	var in Inode
	err = s.update(ctx, func(d dbtx) error {
		now := time.Now()
		var typ, version int64
		err := d.queryRow(`SELECT type, version FROM inodes WHERE account = $1 AND id = $2`, account, r.File[:]).
			Scan(&typ, &version)
		if err != nil {
			return dbErr("commit", notFound(err, "inode %x", r.File))
		}
		switch t := InodeType(typ); {
		case t == TypeDir:
			return fmt.Errorf("%w: commit to a directory", ErrIsDir)
		case t != TypeFile:
			return fmt.Errorf("%w: commit to a %s", ErrInvalid, t)
		case r.IfVersion != 0 && version != r.IfVersion:
			return &VersionMismatchError{ID: r.File, Current: version, Wanted: r.IfVersion}
		}
		if err := putNewChunks(d, account, r.NewChunks, now); err != nil {
			return err
		}
		sizes, err := chunkSizes(d, account, chunkIDs, r.NewChunks)
		if err != nil {
			return err
		}
		if err := setFileChunks(d, account, r.File, r.Chunks, false); err != nil {
			return err
		}
		var attr any // NULL keeps the attributes
		if r.Attr != nil {
			attr = r.Attr
		}
		in = Inode{ID: r.File, Type: TypeFile, Manifest: &r.Manifest, Size: contentSize(r.Chunks, sizes)}
		var changedAt int64
		err = d.queryRow(`UPDATE inodes SET manifest_data = $3, manifest_kek = $4, manifest_wrapped = $5,
				attr = COALESCE($6, attr), size_bytes = $7, version = version + 1, changed_at = $8
			WHERE account = $1 AND id = $2 RETURNING version, nlink, attr, changed_at`,
			account, r.File[:], r.Manifest.Data, r.Manifest.KEKID, r.Manifest.WrappedKey, attr, in.Size, nanos(now)).
			Scan(&in.Version, &in.Nlink, &in.Attr, &changedAt)
		if err != nil {
			return dbErr("commit", err)
		}
		in.ChangedAt = fromNanos(changedAt)
		return recordChange(d, account, origin, now, changed{inode: r.File})
	})
	if err != nil {
		return Inode{}, err
	}
	return in, nil
}
