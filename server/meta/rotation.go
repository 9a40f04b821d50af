package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// sealedTable describes where one kind of Sealed value is stored, so that
// listing, rewrapping and counting share one implementation. Transfer keys
// live in accounts, keyed by the account alone.
type sealedTable struct {
	table, data, kek, wrapped string
	byID                      bool // keyed by (account, id), not by account
	maxData                   int  // 0: no Data column
}

var sealedTables = map[SealedKind]sealedTable{
	SealedManifest:    {"inodes", "manifest_data", "manifest_kek", "manifest_wrapped", true, MaxManifestSize},
	SealedTransferKey: {"accounts", "transfer_data", "transfer_kek", "transfer_wrapped", false, MaxKeyFieldSize},
	SealedChunkKey:    {"chunks", "", "kek_id", "wrapped_key", true, 0},
}

// where returns the condition selecting one row, with its parameters
// starting at $1.
func (t sealedTable) where(k RowKey) (string, []any) {
	if t.byID {
		return `account = $1 AND id = $2`, []any{k.Account, k.ID[:]}
	}
	return `id = $1`, []any{k.Account}
}

// StaleSealed implements Maintenance. Listing by key rather than re-querying
// from the start means a value that cannot be rewrapped is passed over
// instead of being returned forever.
func (s *SQLite) StaleSealed(ctx context.Context, kind SealedKind, currentKEK string, after RowKey, limit int) ([]SealedRef, error) {
	t, ok := sealedTables[kind]
	if !ok {
		return nil, fmt.Errorf("%w: sealed kind %d", ErrInvalid, kind)
	}
	d, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	data := "NULL"
	if t.maxData > 0 {
		data = t.data
	}
	var rows *sql.Rows
	if t.byID {
		rows, err = d.query(`SELECT account, id, `+data+`, `+t.kek+`, `+t.wrapped+` FROM `+t.table+`
			WHERE `+t.kek+` IS NOT NULL AND `+t.kek+` <> $1 AND (account, id) > ($2, $3)
			ORDER BY account, id LIMIT $4`, currentKEK, after.Account, after.ID[:], pageLimit(limit))
	} else {
		rows, err = d.query(`SELECT id, NULL, `+data+`, `+t.kek+`, `+t.wrapped+` FROM `+t.table+`
			WHERE `+t.kek+` <> $1 AND id > $2 ORDER BY id LIMIT $3`, currentKEK, after.Account, pageLimit(limit))
	}
	if err != nil {
		return nil, dbErr("list stale keys", err)
	}
	defer rows.Close()
	var out []SealedRef
	for rows.Next() {
		ref := SealedRef{Kind: kind}
		var id []byte
		if err := rows.Scan(&ref.Key.Account, &id, &ref.Value.Data, &ref.Value.KEKID, &ref.Value.WrappedKey); err != nil {
			return nil, dbErr("list stale keys", err)
		}
		copy(ref.Key.ID[:], id)
		out = append(out, ref)
	}
	return out, dbErr("list stale keys", rows.Err())
}

// Rewrap implements Maintenance. The update is conditional on all three old
// parts, so a value replaced since it was listed (a new commit of the file)
// is never overwritten with a rewrap of its predecessor. It does not change
// the inode's version: what clients see is unchanged.
func (s *SQLite) Rewrap(ctx context.Context, old SealedRef, value Sealed) error {
	t, ok := sealedTables[old.Kind]
	if !ok {
		return fmt.Errorf("%w: sealed kind %d", ErrInvalid, old.Kind)
	}
	if err := checkSealedValue(old.Kind.String(), value, t.maxData > 0, t.maxData); err != nil {
		return err
	}
	where, args := t.where(old.Key)
	n := len(args)
	set := fmt.Sprintf(`%s = $%d, %s = $%d`, t.kek, n+1, t.wrapped, n+2)
	cond := fmt.Sprintf(`%s = $%d AND %s = $%d`, t.kek, n+3, t.wrapped, n+4)
	args = append(args, value.KEKID, value.WrappedKey, old.Value.KEKID, blob(old.Value.WrappedKey))
	if t.maxData > 0 {
		set += fmt.Sprintf(`, %s = $%d`, t.data, n+5)
		cond += fmt.Sprintf(` AND %s = $%d`, t.data, n+6)
		args = append(args, value.Data, blob(old.Value.Data))
	}
	return s.update(ctx, func(d dbtx) error {
		updated, err := d.execN(`UPDATE `+t.table+` SET `+set+` WHERE `+where+` AND `+cond, args...)
		if err != nil {
			return dbErr("rewrap", err)
		}
		if updated == 1 {
			return nil
		}
		var present bool
		err = d.queryRow(`SELECT `+t.kek+` IS NOT NULL FROM `+t.table+` WHERE `+where, args[:n]...).Scan(&present)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && !present) {
			return fmt.Errorf("%w: %s of %d/%x", ErrNotFound, old.Kind, old.Key.Account, old.Key.ID)
		}
		if err != nil {
			return dbErr("rewrap", err)
		}
		return fmt.Errorf("%w: %s of %d/%x changed since it was listed", ErrVersionMismatch, old.Kind, old.Key.Account, old.Key.ID)
	})
}

// KEKReferences implements Maintenance. One statement, so the three counts
// come from one snapshot.
func (s *SQLite) KEKReferences(ctx context.Context, kekID string) (int64, error) {
	d, err := s.read(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	err = d.queryRow(`SELECT
		(SELECT count(*) FROM accounts WHERE transfer_kek = $1) +
		(SELECT count(*) FROM inodes WHERE manifest_kek = $1) +
		(SELECT count(*) FROM chunks WHERE kek_id = $1)`, kekID).Scan(&n)
	return n, dbErr("count KEK references", err)
}

// ReplaceInlineChunk implements Maintenance.
func (s *SQLite) ReplaceInlineChunk(ctx context.Context, account int64, id ID, old, value Sealed) error {
	if err := checkSealedValue("inline chunk", value, true, MaxInlineSize); err != nil {
		return err
	}
	return s.update(ctx, func(d dbtx) error {
		n, err := d.execN(`UPDATE chunks SET inline_data = $3, kek_id = $4, wrapped_key = $5
			WHERE account = $1 AND id = $2 AND inline_data = $6 AND kek_id = $7 AND wrapped_key = $8`,
			account, id[:], value.Data, value.KEKID, value.WrappedKey, blob(old.Data), old.KEKID, blob(old.WrappedKey))
		if err != nil {
			return dbErr("replace inline chunk", err)
		}
		if n == 1 {
			return nil
		}
		if _, err := getChunk(d, account, id); err != nil {
			return err
		}
		return fmt.Errorf("%w: chunk %x changed since it was listed", ErrVersionMismatch, id)
	})
}

// ReplaceChunkBlob implements Maintenance.
func (s *SQLite) ReplaceChunkBlob(ctx context.Context, account int64, id ID, oldBlobKey string, old Sealed, newBlobKey string, value Sealed) error {
	if err := checkSealedValue("chunk key", value, false, 0); err != nil {
		return err
	}
	if newBlobKey == "" || len(newBlobKey) > 255 {
		return fmt.Errorf("%w: blob key of %d bytes", ErrInvalid, len(newBlobKey))
	}
	return s.update(ctx, func(d dbtx) error {
		n, err := d.execN(`UPDATE chunks SET blob_key = $3, kek_id = $4, wrapped_key = $5
			WHERE account = $1 AND id = $2 AND blob_key = $6 AND kek_id = $7 AND wrapped_key = $8`,
			account, id[:], newBlobKey, value.KEKID, value.WrappedKey, oldBlobKey, old.KEKID, blob(old.WrappedKey))
		if err != nil {
			return dbErr("replace chunk blob", err)
		}
		if n == 1 {
			return nil
		}
		if _, err := getChunk(d, account, id); err != nil {
			return err
		}
		return fmt.Errorf("%w: chunk %x changed since it was listed", ErrVersionMismatch, id)
	})
}
