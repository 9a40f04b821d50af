package meta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// maxDepth bounds the walk up the tree in the cycle check. Real trees are far
// shallower (PATH_MAX alone limits them to about 2048 levels); reaching it
// means the parent chain loops, which only corruption could cause.
const maxDepth = 1 << 16

// Rename implements Namespace. The checks follow Linux's renameat2(2): flag
// conflicts first, then the same-file no-op, then cycles, then the types and
// emptiness of a replaced destination.
func (s *SQLite) Rename(ctx context.Context, account int64, r RenameRequest) error {
	if err := checkRename(r); err != nil {
		return err
	}
	sameParent := r.SrcParent == r.DstParent
	origin := originArg(ctx)
	return s.update(ctx, func(d dbtx) error {
		now := time.Now()
		if err := checkDir(d, account, r.SrcParent); err != nil {
			return err
		}
		if !sameParent {
			if err := checkDir(d, account, r.DstParent); err != nil {
				return err
			}
		}
		src, err := getEntry(d, account, r.SrcParent, r.SrcIndex)
		if err != nil {
			return err
		}
		if r.SrcChild != (ID{}) && src.Child != r.SrcChild {
			return fmt.Errorf("%w: the rename source names another inode now", ErrVersionMismatch)
		}
		dst, err := getEntry(d, account, r.DstParent, r.DstIndex)
		dstExists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if r.Flag == RenameExchange && dstExists && r.DstChild != (ID{}) && dst.Child != r.DstChild {
			return fmt.Errorf("%w: the exchange destination names another inode now", ErrVersionMismatch)
		}
		switch {
		case r.Flag == RenameNoReplace && dstExists:
			return fmt.Errorf("%w: rename destination", ErrExists)
		case r.Flag == RenameExchange && !dstExists:
			return fmt.Errorf("%w: exchange destination", ErrNotFound)
		case dstExists && dst.Child == src.Child:
			// The same entry, or two links to one file: POSIX makes this a
			// successful no-op, and the sealed names stay valid as they are.
			return nil
		}

		srcType, err := inodeType(d, account, src.Child)
		if err != nil {
			return err
		}
		var dstType InodeType
		if dstExists {
			if dstType, err = inodeType(d, account, dst.Child); err != nil {
				return err
			}
		}
		if srcType == TypeDir && !sameParent {
			if err := checkNotAncestor(d, account, src.Child, r.DstParent); err != nil {
				return err
			}
		}
		if r.Flag == RenameExchange && dstType == TypeDir && !sameParent {
			if err := checkNotAncestor(d, account, dst.Child, r.SrcParent); err != nil {
				return err
			}
		}

		if r.Flag == RenameExchange {
			if err := setEntry(d, account, r.DstParent, r.DstIndex, src.Child, r.NewSrcSealedName); err != nil {
				return err
			}
			if err := setEntry(d, account, r.SrcParent, r.SrcIndex, dst.Child, r.NewDstSealedName); err != nil {
				return err
			}
		} else {
			if dstExists {
				if err := replaceable(d, account, srcType, dstType, dst.Child); err != nil {
					return err
				}
				if err := deleteEntry(d, account, r.DstParent, r.DstIndex); err != nil {
					return err
				}
				if err := dropLink(d, account, dst.Child, now); err != nil {
					return err
				}
			}
			if _, err := d.exec(`UPDATE entries SET parent = $4, name_index = $5, sealed_name = $6
				WHERE account = $1 AND parent = $2 AND name_index = $3`,
				account, r.SrcParent[:], r.SrcIndex, r.DstParent[:], r.DstIndex, r.NewSrcSealedName); err != nil {
				return dbErr("rename", err)
			}
		}
		if err := touchDir(d, account, r.SrcParent, now); err != nil {
			return err
		}
		if !sameParent {
			if err := touchDir(d, account, r.DstParent, now); err != nil {
				return err
			}
		}
		// The moved inode left one directory and entered the other; a
		// replaced inode left the destination, an exchanged one went the
		// other way. recordChange drops the duplicates of a rename within
		// one directory.
		rows := []changed{{src.Child, &r.SrcParent}, {src.Child, &r.DstParent}}
		if dstExists {
			rows = append(rows, changed{dst.Child, &r.DstParent})
			if r.Flag == RenameExchange {
				rows = append(rows, changed{dst.Child, &r.SrcParent})
			}
		}
		return recordChange(d, account, origin, now, rows...)
	})
}

// replaceable checks that a destination of type dstType may be replaced by a
// source of type srcType: a directory only by a directory, and only if empty.
func replaceable(d dbtx, account int64, srcType, dstType InodeType, dst ID) error {
	switch {
	case srcType == TypeDir && dstType != TypeDir:
		return fmt.Errorf("%w: cannot replace a %s with a directory", ErrNotDir, dstType)
	case srcType != TypeDir && dstType == TypeDir:
		return fmt.Errorf("%w: cannot replace a directory with a %s", ErrIsDir, srcType)
	case dstType == TypeDir:
		empty, err := isEmptyDir(d, account, dst)
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: rename destination %x", ErrNotEmpty, dst)
		}
	}
	return nil
}

// checkNotAncestor fails with ErrInvalid if dir is start or one of its
// ancestors, i.e. if moving dir into start would detach a loop from the
// tree. Directories have exactly one entry, so the walk up is a chain of
// indexed lookups.
func checkNotAncestor(d dbtx, account int64, dir, start ID) error {
	cur := start
	for range maxDepth {
		if cur == dir {
			return fmt.Errorf("%w: cannot move directory %x into its own subtree", ErrInvalid, dir)
		}
		if cur == (ID{}) {
			return nil
		}
		err := d.queryRow(`SELECT parent FROM entries WHERE account = $1 AND child = $2 LIMIT 1`,
			account, cur[:]).Scan(idDest{&cur})
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("meta: directory %x has no parent", cur)
		}
		if err != nil {
			return dbErr("rename", err)
		}
	}
	return fmt.Errorf("meta: directory %x is nested deeper than %d levels", start, maxDepth)
}

func setEntry(d dbtx, account int64, parent ID, index []byte, child ID, sealedName []byte) error {
	_, err := d.exec(`UPDATE entries SET child = $4, sealed_name = $5 WHERE account = $1 AND parent = $2 AND name_index = $3`,
		account, parent[:], index, child[:], sealedName)
	return dbErr("rename", err)
}

func deleteEntry(d dbtx, account int64, parent ID, index []byte) error {
	_, err := d.exec(`DELETE FROM entries WHERE account = $1 AND parent = $2 AND name_index = $3`,
		account, parent[:], index)
	return dbErr("delete entry", err)
}
