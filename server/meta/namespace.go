package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

const inodeCols = `id, type, version, nlink, attr, symlink, manifest_data, manifest_kek, manifest_wrapped, size_bytes, changed_at, xattrs`

// inodeColsI is inodeCols qualified by the alias i, for joins.
var inodeColsI = "i." + strings.ReplaceAll(inodeCols, ", ", ", i.")

// inodeScan receives the columns of inodeCols.
type inodeScan struct {
	in       Inode
	typ      int64
	mdata    []byte
	mkek     sql.NullString
	mwrapped []byte
	changed  int64
}

func (r *inodeScan) dests() []any {
	return []any{idDest{&r.in.ID}, &r.typ, &r.in.Version, &r.in.Nlink, &r.in.Attr, &r.in.Symlink,
		&r.mdata, &r.mkek, &r.mwrapped, &r.in.Size, &r.changed, &r.in.Xattrs}
}

func (r *inodeScan) inode() Inode {
	in := r.in
	in.Type = InodeType(r.typ)
	if r.mkek.Valid {
		in.Manifest = &Sealed{Data: r.mdata, KEKID: r.mkek.String, WrappedKey: r.mwrapped}
	}
	in.ChangedAt = fromNanos(r.changed)
	return in
}

func getInode(d dbtx, account int64, id ID) (Inode, error) {
	var r inodeScan
	err := d.queryRow(`SELECT `+inodeCols+` FROM inodes WHERE account = $1 AND id = $2`, account, id[:]).
		Scan(r.dests()...)
	if err != nil {
		return Inode{}, dbErr("get inode", notFound(err, "inode %x", id))
	}
	return r.inode(), nil
}

// inodeType reads only the type, to check parents and targets without
// loading attributes and manifests.
func inodeType(d dbtx, account int64, id ID) (InodeType, error) {
	var t int64
	err := d.queryRow(`SELECT type FROM inodes WHERE account = $1 AND id = $2`, account, id[:]).Scan(&t)
	if err != nil {
		return 0, dbErr("get inode", notFound(err, "inode %x", id))
	}
	return InodeType(t), nil
}

// checkDir fails unless id is a directory of the account.
func checkDir(d dbtx, account int64, id ID) error {
	t, err := inodeType(d, account, id)
	if err != nil {
		return err
	}
	if t != TypeDir {
		return fmt.Errorf("%w: %x is a %s", ErrNotDir, id, t)
	}
	return nil
}

func getEntry(d dbtx, account int64, parent ID, index []byte) (Entry, error) {
	e := Entry{Parent: parent, NameIndex: index}
	err := d.queryRow(`SELECT sealed_name, child FROM entries WHERE account = $1 AND parent = $2 AND name_index = $3`,
		account, parent[:], index).Scan(&e.SealedName, idDest{&e.Child})
	if err != nil {
		return Entry{}, dbErr("get entry", notFound(err, "no such name in %x", parent))
	}
	return e, nil
}

// isEmptyDir reports whether a directory has no entries.
func isEmptyDir(d dbtx, account int64, id ID) (bool, error) {
	var one int
	err := d.queryRow(`SELECT 1 FROM entries WHERE account = $1 AND parent = $2 LIMIT 1`, account, id[:]).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return true, nil
	}
	return false, dbErr("read directory", err)
}

// touchDir records a change to a directory's entries, so that clients
// caching its listing revalidate.
func touchDir(d dbtx, account int64, id ID, now time.Time) error {
	_, err := d.exec(`UPDATE inodes SET version = version + 1, changed_at = $3 WHERE account = $1 AND id = $2`,
		account, id[:], nanos(now))
	return dbErr("update directory", err)
}

// touchParent is checkDir and touchDir in one statement for the common
// case, a directory that exists, and returns its new version.
func touchParent(d dbtx, account int64, id ID, now time.Time) (int64, error) {
	var v int64
	err := d.queryRow(`UPDATE inodes SET version = version + 1, changed_at = $3
		WHERE account = $1 AND id = $2 AND type = $4 RETURNING version`, account, id[:], nanos(now), int64(TypeDir)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if err := checkDir(d, account, id); err != nil {
			return 0, err
		}
	}
	return v, dbErr("update directory", err)
}

// dropLink removes one link from an inode whose entry the caller has
// deleted, and deletes the inode with its chunk references at zero.
func dropLink(d dbtx, account int64, id ID, now time.Time) error {
	var nlink int64
	err := d.queryRow(`UPDATE inodes SET nlink = nlink - 1, version = version + 1, changed_at = $3
		WHERE account = $1 AND id = $2 RETURNING nlink`, account, id[:], nanos(now)).Scan(&nlink)
	if err != nil {
		return dbErr("unlink", notFound(err, "inode %x", id))
	}
	if nlink > 0 {
		return nil
	}
	// Dropping the references is what turns the chunks into garbage; GC
	// deletes them and their blobs later, outside this transaction.
	if _, err := d.exec(`DELETE FROM file_chunks WHERE account = $1 AND file = $2`, account, id[:]); err != nil {
		return dbErr("unlink", err)
	}
	if _, err := d.exec(`DELETE FROM inodes WHERE account = $1 AND id = $2`, account, id[:]); err != nil {
		return dbErr("unlink", err)
	}
	return nil
}

// GetInode implements Namespace.
func (s *SQLite) GetInode(ctx context.Context, account int64, id ID) (Inode, error) {
	d, err := s.read(ctx)
	if err != nil {
		return Inode{}, err
	}
	return getInode(d, account, id)
}

// Lookup implements Namespace.
func (s *SQLite) Lookup(ctx context.Context, account int64, parent ID, nameIndex []byte) (Entry, Inode, error) {
	if err := checkNameIndex(nameIndex); err != nil {
		return Entry{}, Inode{}, err
	}
	d, err := s.read(ctx)
	if err != nil {
		return Entry{}, Inode{}, err
	}
	e := Entry{Parent: parent, NameIndex: nameIndex}
	var r inodeScan
	err = d.queryRow(`SELECT e.sealed_name, `+inodeColsI+`
		FROM entries e JOIN inodes i ON i.account = e.account AND i.id = e.child
		WHERE e.account = $1 AND e.parent = $2 AND e.name_index = $3`, account, parent[:], nameIndex).
		Scan(append([]any{&e.SealedName}, r.dests()...)...)
	if errors.Is(err, sql.ErrNoRows) {
		// Only a miss pays for telling a missing name from a bad parent.
		if err := checkDir(d, account, parent); err != nil {
			return Entry{}, Inode{}, err
		}
		return Entry{}, Inode{}, fmt.Errorf("%w: no such name in %x", ErrNotFound, parent)
	}
	if err != nil {
		return Entry{}, Inode{}, dbErr("lookup", err)
	}
	in := r.inode()
	e.Child = in.ID
	return e, in, nil
}

// ReadDir implements Namespace.
func (s *SQLite) ReadDir(ctx context.Context, account int64, parent ID, after []byte, limit int) ([]DirEntry, bool, error) {
	limit = pageLimit(limit)
	var out []DirEntry
	more := false
	err := s.view(ctx, func(d dbtx) error {
		if err := checkDir(d, account, parent); err != nil {
			return err
		}
		rows, err := d.query(`SELECT e.name_index, e.sealed_name, `+inodeColsI+`
			FROM entries e JOIN inodes i ON i.account = e.account AND i.id = e.child
			WHERE e.account = $1 AND e.parent = $2 AND e.name_index > $3
			ORDER BY e.name_index LIMIT $4`, account, parent[:], blob(after), limit+1)
		if err != nil {
			return dbErr("read directory", err)
		}
		defer rows.Close()
		for rows.Next() {
			if len(out) == limit {
				more = true
				break
			}
			de := DirEntry{Entry: Entry{Parent: parent}}
			var r inodeScan
			if err := rows.Scan(append([]any{&de.NameIndex, &de.SealedName}, r.dests()...)...); err != nil {
				return dbErr("read directory", err)
			}
			de.Inode = r.inode()
			de.Child = de.Inode.ID
			out = append(out, de)
		}
		return dbErr("read directory", rows.Err())
	})
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// Create implements Namespace.
func (s *SQLite) Create(ctx context.Context, account int64, r CreateRequest) (Inode, error) {
	if err := checkName(r.NameIndex, r.SealedName); err != nil {
		return Inode{}, err
	}
	if err := checkNewInode(r.Inode); err != nil {
		return Inode{}, err
	}
	var chunkIDs []ID
	if r.Content != nil {
		if r.Inode.Type != TypeFile {
			return Inode{}, fmt.Errorf("%w: content for a %s", ErrInvalid, r.Inode.Type)
		}
		var err error
		if chunkIDs, err = checkContent(r.Content.Manifest, r.Content.Chunks); err != nil {
			return Inode{}, err
		}
	}
	origin := originArg(ctx)
	var in Inode
	err := s.update(ctx, func(d dbtx) error {
		now := time.Now()
		pv, err := touchParent(d, account, r.Parent, now)
		if err != nil {
			return err
		}
		in = Inode{ID: r.Inode.ID, Type: r.Inode.Type, Version: 1, Nlink: 1, Attr: blob(r.Inode.Attr),
			Symlink: r.Inode.Symlink, ChangedAt: fromNanos(nanos(now)), ParentVersion: pv}
		var mdata, mwrapped []byte
		var mkek *string
		if r.Content != nil {
			if err := putNewChunks(d, account, r.Content.NewChunks, now); err != nil {
				return err
			}
			sizes, err := chunkSizes(d, account, chunkIDs, r.Content.NewChunks)
			if err != nil {
				return err
			}
			m := r.Content.Manifest
			in.Manifest, in.Size = &m, contentSize(r.Content.Chunks, sizes)
			mdata, mkek, mwrapped = m.Data, &m.KEKID, m.WrappedKey
		}
		n, err := d.execN(`INSERT INTO inodes (account, id, type, version, nlink, attr, symlink,
				manifest_data, manifest_kek, manifest_wrapped, size_bytes, changed_at)
			VALUES ($1, $2, $3, 1, 1, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (account, id) DO NOTHING`,
			account, in.ID[:], int64(in.Type), in.Attr, in.Symlink, mdata, mkek, mwrapped, in.Size, nanos(now))
		if err != nil {
			return dbErr("create inode", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: inode %x", ErrExists, in.ID)
		}
		if err := insertEntry(d, account, r.Parent, r.NameIndex, r.SealedName, in.ID); err != nil {
			return err
		}
		if r.Content != nil {
			if err := setFileChunks(d, account, in.ID, r.Content.Chunks, true); err != nil {
				return err
			}
		}
		return recordChange(d, account, origin, now, changed{in.ID, &r.Parent})
	})
	if err != nil {
		return Inode{}, err
	}
	return in, nil
}

func insertEntry(d dbtx, account int64, parent ID, index, sealedName []byte, child ID) error {
	n, err := d.execN(`INSERT INTO entries (account, parent, name_index, sealed_name, child)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account, parent, name_index) DO NOTHING`,
		account, parent[:], index, sealedName, child[:])
	if err != nil {
		return dbErr("create entry", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: name taken in %x", ErrExists, parent)
	}
	return nil
}

// Link implements Namespace.
func (s *SQLite) Link(ctx context.Context, account int64, r LinkRequest) (Inode, error) {
	if err := checkName(r.NameIndex, r.SealedName); err != nil {
		return Inode{}, err
	}
	origin := originArg(ctx)
	var in Inode
	err := s.update(ctx, func(d dbtx) error {
		now := time.Now()
		if err := checkDir(d, account, r.Parent); err != nil {
			return err
		}
		t, err := inodeType(d, account, r.Target)
		if err != nil {
			return err
		}
		if t == TypeDir {
			return fmt.Errorf("%w: hard link to a directory", ErrNotPermitted)
		}
		if err := insertEntry(d, account, r.Parent, r.NameIndex, r.SealedName, r.Target); err != nil {
			return err
		}
		if _, err := d.exec(`UPDATE inodes SET nlink = nlink + 1, version = version + 1, changed_at = $3
			WHERE account = $1 AND id = $2`, account, r.Target[:], nanos(now)); err != nil {
			return dbErr("link", err)
		}
		if in, err = getInode(d, account, r.Target); err != nil {
			return err
		}
		if err := touchDir(d, account, r.Parent, now); err != nil {
			return err
		}
		return recordChange(d, account, origin, now, changed{r.Target, &r.Parent})
	})
	if err != nil {
		return Inode{}, err
	}
	return in, nil
}

// Unlink implements Namespace.
func (s *SQLite) Unlink(ctx context.Context, account int64, parent ID, nameIndex []byte, mode UnlinkMode) error {
	if err := checkNameIndex(nameIndex); err != nil {
		return err
	}
	if mode != UnlinkFile && mode != UnlinkDir {
		return fmt.Errorf("%w: unlink mode %d", ErrInvalid, mode)
	}
	origin := originArg(ctx)
	return s.update(ctx, func(d dbtx) error {
		now := time.Now()
		if err := checkDir(d, account, parent); err != nil {
			return err
		}
		e, err := getEntry(d, account, parent, nameIndex)
		if err != nil {
			return err
		}
		if e.Child == (ID{}) {
			return fmt.Errorf("%w: the root cannot be removed", ErrNotPermitted)
		}
		t, err := inodeType(d, account, e.Child)
		if err != nil {
			return err
		}
		switch {
		case mode == UnlinkFile && t == TypeDir:
			return fmt.Errorf("%w: unlink of a directory", ErrIsDir)
		case mode == UnlinkDir && t != TypeDir:
			return fmt.Errorf("%w: rmdir of a %s", ErrNotDir, t)
		case t == TypeDir:
			empty, err := isEmptyDir(d, account, e.Child)
			if err != nil {
				return err
			}
			if !empty {
				return fmt.Errorf("%w: %x", ErrNotEmpty, e.Child)
			}
		}
		if err := deleteEntry(d, account, parent, nameIndex); err != nil {
			return err
		}
		if err := dropLink(d, account, e.Child, now); err != nil {
			return err
		}
		if err := touchDir(d, account, parent, now); err != nil {
			return err
		}
		return recordChange(d, account, origin, now, changed{e.Child, &parent})
	})
}

// SetXattrs implements Namespace.
func (s *SQLite) SetXattrs(ctx context.Context, account int64, id ID, ifVersion int64, xattrs []byte) (Inode, error) {
	if err := checkSize("extended attributes", xattrs, MaxXattrsSize); err != nil {
		return Inode{}, err
	}
	if len(xattrs) == 0 {
		xattrs = nil
	}
	return s.setSealed(ctx, account, id, ifVersion, "xattrs", xattrs, func(in *Inode) { in.Xattrs = xattrs })
}

// SetAttr implements Namespace.
func (s *SQLite) SetAttr(ctx context.Context, account int64, id ID, ifVersion int64, attr []byte) (Inode, error) {
	if err := checkSize("attributes", attr, MaxSealedSize); err != nil {
		return Inode{}, err
	}
	attr = blob(attr)
	return s.setSealed(ctx, account, id, ifVersion, "attr", attr, func(in *Inode) { in.Attr = attr })
}

// setSealed replaces one sealed column of an inode (column is a constant
// of this package, never input), conditionally on ifVersion, bumps the
// version and records the change; set applies the value to the returned
// inode.
func (s *SQLite) setSealed(ctx context.Context, account int64, id ID, ifVersion int64, column string, value []byte, set func(*Inode)) (Inode, error) {
	if ifVersion < 0 {
		return Inode{}, fmt.Errorf("%w: version %d", ErrInvalid, ifVersion)
	}
	origin := originArg(ctx)
	var in Inode
	err := s.update(ctx, func(d dbtx) error {
		now := time.Now()
		var err error
		if in, err = getInode(d, account, id); err != nil {
			return err
		}
		if ifVersion != 0 && in.Version != ifVersion {
			return &VersionMismatchError{ID: id, Current: in.Version, Wanted: ifVersion}
		}
		if _, err := d.exec(`UPDATE inodes SET `+column+` = $3, version = version + 1, changed_at = $4
			WHERE account = $1 AND id = $2`, account, id[:], value, nanos(now)); err != nil {
			return dbErr("set "+column, err)
		}
		set(&in)
		in.Version, in.ChangedAt = in.Version+1, fromNanos(nanos(now))
		return recordChange(d, account, origin, now, changed{inode: id})
	})
	if err != nil {
		return Inode{}, err
	}
	return in, nil
}
