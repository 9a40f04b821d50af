package meta

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// migrations[i] brings the schema from version i to i+1; PRAGMA user_version
// holds the current version and changes in the same transaction as the
// schema, so a crash mid-migration leaves the previous version intact.
// Applied migrations are never edited: changes are new entries.
//
// Conventions: times are INTEGER Unix nanoseconds; IDs are 16-byte BLOBs;
// chunk indexes are INTEGER (validated to fit int64). Tables are STRICT so a
// bug cannot store a value of the wrong type, and keyed tables of small rows
// are WITHOUT ROWID so rows cluster by account and parent, which is how they
// are read.
var migrations = [][]string{
	{
		`CREATE TABLE accounts (
			id                  INTEGER PRIMARY KEY AUTOINCREMENT,
			name                TEXT    NOT NULL UNIQUE,
			auth_hash           BLOB    NOT NULL,
			kdf                 TEXT    NOT NULL,
			wrapped_master      BLOB    NOT NULL,
			account_pub         BLOB    NOT NULL,
			account_priv_sealed BLOB    NOT NULL,
			transfer_data       BLOB    NOT NULL,
			transfer_kek        TEXT    NOT NULL,
			transfer_wrapped    BLOB    NOT NULL,
			layout              TEXT    NOT NULL,
			quota_bytes         INTEGER NOT NULL CHECK (quota_bytes >= 0),
			used_bytes          INTEGER NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
			state               TEXT    NOT NULL CHECK (state IN ('active', 'disabled')),
			created_at          INTEGER NOT NULL,
			-- change_seq is the seq of the account's last change (see the
			-- changes table), change_pruned the highest seq whose rows
			-- retention deleted: a client whose cursor is below it may have
			-- missed changes.
			change_seq          INTEGER NOT NULL DEFAULT 0,
			change_pruned       INTEGER NOT NULL DEFAULT 0,
			CHECK (change_pruned >= 0 AND change_pruned <= change_seq)
		) STRICT`,
		`CREATE INDEX accounts_transfer_kek ON accounts (transfer_kek)`,

		`CREATE TABLE invites (
			code_hash   BLOB    PRIMARY KEY,
			user_name   TEXT    NOT NULL,
			quota_bytes INTEGER NOT NULL CHECK (quota_bytes >= 0),
			expires_at  INTEGER NOT NULL,
			created_at  INTEGER NOT NULL,
			used_at     INTEGER,
			used_by     INTEGER REFERENCES accounts (id)
		) STRICT, WITHOUT ROWID`,

		`CREATE TABLE sessions (
			token_hash BLOB    PRIMARY KEY,
			account    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
			created_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL
		) STRICT, WITHOUT ROWID`,
		`CREATE INDEX sessions_account ON sessions (account)`,
		`CREATE INDEX sessions_expires ON sessions (expires_at)`,

		`CREATE TABLE inodes (
			account          INTEGER NOT NULL REFERENCES accounts (id),
			id               BLOB    NOT NULL CHECK (length(id) = 16),
			type             INTEGER NOT NULL CHECK (type IN (1, 2, 3)),
			version          INTEGER NOT NULL CHECK (version >= 1),
			nlink            INTEGER NOT NULL CHECK (nlink >= 0),
			attr             BLOB    NOT NULL,
			symlink          BLOB,
			manifest_data    BLOB,
			manifest_kek     TEXT,
			manifest_wrapped BLOB,
			size_bytes       INTEGER NOT NULL DEFAULT 0,
			changed_at       INTEGER NOT NULL,
			xattrs           BLOB,
			PRIMARY KEY (account, id),
			CHECK ((manifest_kek IS NULL) = (manifest_data IS NULL))
		) STRICT, WITHOUT ROWID`,
		`CREATE INDEX inodes_manifest_kek ON inodes (manifest_kek) WHERE manifest_kek IS NOT NULL`,

		// Directories have exactly one entry, so entries_child is also how a
		// directory finds its parent (rename cycle checks) and how deleting
		// an inode checks the foreign keys without a scan.
		`CREATE TABLE entries (
			account     INTEGER NOT NULL,
			parent      BLOB    NOT NULL,
			name_index  BLOB    NOT NULL CHECK (length(name_index) = 32),
			sealed_name BLOB    NOT NULL,
			child       BLOB    NOT NULL,
			PRIMARY KEY (account, parent, name_index),
			FOREIGN KEY (account, parent) REFERENCES inodes (account, id),
			FOREIGN KEY (account, child) REFERENCES inodes (account, id)
		) STRICT, WITHOUT ROWID`,
		`CREATE INDEX entries_child ON entries (account, child)`,

		// refs counts file_chunks rows naming the chunk; the triggers below
		// keep it exact, so garbage is found through a partial index instead
		// of an anti-join over every chunk.
		//
		// A chunk's bytes are either a blob file named blob_key or, for a
		// small chunk, inline_data in its row; both are sealed at rest the
		// same way, under the data key in wrapped_key. Unlike the other
		// keyed tables, chunks keeps its rowid: the cells of a WITHOUT
		// ROWID table are whole rows, in its interior pages too, so inline
		// values would put up to a quarter page of every row there and cut
		// the tree's fan-out to a handful; a rowid table keeps rows in its
		// leaves, and its primary key index holds only keys. Chunk IDs are
		// random, so clustering rows by them gained nothing anyway.
		`CREATE TABLE chunks (
			account     INTEGER NOT NULL REFERENCES accounts (id),
			id          BLOB    NOT NULL CHECK (length(id) = 16),
			file        BLOB    NOT NULL,
			idx         INTEGER NOT NULL CHECK (idx >= 0),
			size        INTEGER NOT NULL CHECK (size >= 0),
			blob_key    TEXT,
			kek_id      TEXT    NOT NULL,
			wrapped_key BLOB    NOT NULL,
			refs        INTEGER NOT NULL DEFAULT 0 CHECK (refs >= 0),
			created_at  INTEGER NOT NULL,
			-- unref_at is when refs last became 0 (created_at for a chunk
			-- never referenced): the GC grace period runs from there, so a
			-- file's old chunks stay readable for it after an overwrite or
			-- an unlink, as open files on a mount need.
			unref_at    INTEGER NOT NULL,
			-- mac is the transfer MAC the chunk arrived with, kept so a
			-- download does not compute it again.
			mac         BLOB,
			-- Last, so the columns before it stay in the row's first page
			-- and reading them never follows the value's overflow pages.
			inline_data BLOB,
			PRIMARY KEY (account, id),
			CHECK ((blob_key IS NULL) <> (inline_data IS NULL))
		) STRICT`,
		`CREATE INDEX chunks_garbage ON chunks (unref_at) WHERE refs = 0`,
		`CREATE INDEX chunks_kek ON chunks (kek_id)`,

		// The foreign key to chunks makes deleting a referenced chunk fail,
		// a last line of defence for GC.
		`CREATE TABLE file_chunks (
			account INTEGER NOT NULL,
			file    BLOB    NOT NULL,
			idx     INTEGER NOT NULL,
			chunk   BLOB    NOT NULL,
			PRIMARY KEY (account, file, idx),
			FOREIGN KEY (account, file) REFERENCES inodes (account, id),
			FOREIGN KEY (account, chunk) REFERENCES chunks (account, id)
		) STRICT, WITHOUT ROWID`,
		`CREATE INDEX file_chunks_chunk ON file_chunks (account, chunk)`,

		// The change feed. Every committed change of a namespace takes the
		// next seq of its account by bumping accounts.change_seq in its own
		// transaction, which also locks the account's row until the commit:
		// seqs then follow commit order on any backend, where a global
		// sequence would not. It records one row per (inode, directory)
		// pair it affected, numbered by n within the change; dir is NULL
		// when only the inode itself changed (the root's ID is zero, so
		// zero cannot mean none), origin is the ID the client sent, if any,
		// and at is when the change was made, for retention.
		`CREATE TABLE changes (
			account INTEGER NOT NULL REFERENCES accounts (id),
			seq     INTEGER NOT NULL CHECK (seq >= 1),
			n       INTEGER NOT NULL CHECK (n >= 0),
			inode   BLOB    NOT NULL CHECK (length(inode) = 16),
			dir     BLOB    CHECK (length(dir) = 16),
			origin  BLOB    CHECK (length(origin) = 16),
			at      INTEGER NOT NULL,
			PRIMARY KEY (account, seq, n)
		) STRICT, WITHOUT ROWID`,
		`CREATE INDEX changes_at ON changes (account, at)`,
		`CREATE TRIGGER file_chunks_insert AFTER INSERT ON file_chunks BEGIN
			UPDATE chunks SET refs = refs + 1 WHERE account = NEW.account AND id = NEW.chunk;
		END`,
		`CREATE TRIGGER file_chunks_delete AFTER DELETE ON file_chunks BEGIN
			UPDATE chunks SET refs = refs - 1,
				unref_at = CASE WHEN refs = 1 THEN CAST(unixepoch('subsec') * 1000000000 AS INTEGER) ELSE unref_at END
			WHERE account = OLD.account AND id = OLD.chunk;
		END`,
		`CREATE TRIGGER file_chunks_update AFTER UPDATE OF chunk ON file_chunks BEGIN
			UPDATE chunks SET refs = refs - 1,
				unref_at = CASE WHEN refs = 1 THEN CAST(unixepoch('subsec') * 1000000000 AS INTEGER) ELSE unref_at END
			WHERE account = OLD.account AND id = OLD.chunk;
			UPDATE chunks SET refs = refs + 1 WHERE account = NEW.account AND id = NEW.chunk;
		END`,
	},
	// Every index costs each transaction that touches its table a page
	// written to the WAL and synced, and a small file's commit touches
	// most tables. These three served rare work: key rotation walks the
	// tables in key order anyway, KEKReferences is an operator's command,
	// and pruning the change feed runs hourly over at most 100k rows.
	{
		`DROP INDEX chunks_kek`,
		`DROP INDEX inodes_manifest_kek`,
		`DROP INDEX changes_at`,
	},
}

// migrate brings the database to the latest schema version. It runs in one
// IMMEDIATE transaction, so a server and an admin command opening the same
// new file at once migrate it once.
func migrate(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("meta: reading journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("meta: journal mode is %q, not WAL (does the file system support shared memory?)", mode)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("meta: migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("meta: reading schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("meta: schema version %d is newer than this program (%d); refusing to open", version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	for v := version; v < len(migrations); v++ {
		for _, stmt := range migrations[v] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("meta: migrating to schema version %d: %w", v+1, err)
			}
		}
	}
	// PRAGMA takes no parameters; the value is a trusted integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("meta: setting schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("meta: migrate: %w", err)
	}
	return nil
}
