package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fanout is the number of subdirectories, one per value of the first two hex
// digits of a key. It keeps directories small enough for fast lookups with
// millions of blobs, and gives group commit a unit to batch on.
const fanout = 256

// tempSuffix marks files a Put has not yet renamed into place. Such a name
// never passes CheckKey, so List and Get never see one.
const tempSuffix = ".tmp"

// lockName is the lock file in the store's root. Its name is not two hex
// digits, so it cannot collide with a fan-out directory.
const lockName = "lock"

// Local is a Store keeping each blob as a file under a directory, fanned out
// by the first two hex digits of the key: dir/ab/abcdef….
//
// Put writes a temporary file in the blob's subdirectory, fsyncs it, renames
// it over the final name and then waits for a directory fsync shared with
// concurrent Puts into the same subdirectory (see Stats).
//
// Several processes may open the same directory (the server and an admin
// command, say): each holds a shared lock on dir/lock for as long as it is
// open. Leftover temporary files from a crash are removed at open only by a
// process that finds no other holder, so a live writer's file is never
// pulled from under it.
type Local struct {
	dir     string
	lock    *os.File
	subdirs [fanout]localDir

	puts     atomic.Uint64
	dirSyncs atomic.Uint64

	// write writes a temporary file's contents; tests replace it to inject
	// failures a real disk cannot be made to produce on demand.
	write func(f *os.File, p []byte) (int, error)
	// noDirect is set once the filesystem refused O_DIRECT (direct.go).
	noDirect atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// localDir is one fan-out subdirectory: an open handle to fsync and the
// group-commit state of its renames.
type localDir struct {
	path   string
	f      *os.File
	syncer dirSyncer
}

// LocalStats counts work done by Put, to observe how much directory fsync
// work group commit saves: DirSyncs well below Puts means writers shared.
type LocalStats struct {
	Puts     uint64 // successful renames into place
	DirSyncs uint64 // directory fsyncs performed
}

var _ Store = (*Local)(nil)

// OpenLocal opens the store in dir, creating dir (mode 0700) and its
// subdirectories if needed.
func OpenLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("blob: empty directory name")
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
	}
	l := &Local{dir: dir, write: (*os.File).Write}
	exclusive, err := l.openLock()
	if err != nil {
		return nil, err
	}
	if err := l.openSubdirs(exclusive); err != nil {
		l.Close()
		return nil, err
	}
	if exclusive {
		// Converting to a shared lock lets other processes in; flock may
		// drop and re-take it, which is harmless since cleanup is done.
		if err := unix.Flock(int(l.lock.Fd()), unix.LOCK_SH); err != nil {
			l.Close()
			return nil, fmt.Errorf("blob: lock %s: %w", l.lock.Name(), err)
		}
	}
	return l, nil
}

// openLock opens dir/lock and takes an exclusive lock if nobody else holds
// it, a shared one otherwise. It reports whether the lock is exclusive.
func (l *Local) openLock() (bool, error) {
	f, err := os.OpenFile(filepath.Join(l.dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("blob: %w", err)
	}
	l.lock = f
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return false, fmt.Errorf("blob: lock %s: %w", f.Name(), err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return false, fmt.Errorf("blob: lock %s: %w", f.Name(), err)
	}
	return false, nil
}

// openSubdirs creates missing fan-out directories, removes leftover
// temporary files if cleanup is set, and opens a handle on each directory
// for fsync.
func (l *Local) openSubdirs(cleanup bool) error {
	created := false
	for i := range l.subdirs {
		sd := &l.subdirs[i]
		sd.path = filepath.Join(l.dir, fmt.Sprintf("%02x", i))
		switch err := os.Mkdir(sd.path, 0o700); {
		case err == nil:
			created = true
		case !errors.Is(err, fs.ErrExist):
			return fmt.Errorf("blob: %w", err)
		}
		f, err := os.Open(sd.path)
		if err != nil {
			return fmt.Errorf("blob: %w", err)
		}
		sd.f = f
		if cleanup {
			if err := removeTemps(sd.path); err != nil {
				return err
			}
		}
	}
	if created {
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("blob: %w", err)
		}
	}
	return nil
}

// removeTemps deletes temporary files left by Puts that crashed before
// their rename. Their removal needs no fsync: if it is lost, the next
// cleanup repeats it.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tempSuffix) {
			err := os.Remove(filepath.Join(dir, e.Name()))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("blob: remove leftover: %w", err)
			}
		}
	}
	return nil
}

// Dir returns the store's root directory.
func (l *Local) Dir() string { return l.dir }

// Stats returns counters since OpenLocal.
func (l *Local) Stats() LocalStats {
	return LocalStats{Puts: l.puts.Load(), DirSyncs: l.dirSyncs.Load()}
}

func (l *Local) subdir(key string) *localDir {
	return &l.subdirs[unhex(key[0])<<4|unhex(key[1])]
}

func unhex(c byte) int {
	if c <= '9' {
		return int(c - '0')
	}
	return int(c-'a') + 10
}

// Put stores data under key; see Store for the guarantees.
func (l *Local) Put(ctx context.Context, key string, data []byte) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sd := l.subdir(key)
	f, err := os.CreateTemp(sd.path, key+".*"+tempSuffix)
	if err != nil {
		return opError("put", key, err)
	}
	tmp := f.Name()
	if err := l.writeTemp(f, data); err != nil {
		os.Remove(tmp)
		return opError("put", key, err)
	}
	if err := os.Rename(tmp, filepath.Join(sd.path, key)); err != nil {
		os.Remove(tmp)
		return opError("put", key, err)
	}
	l.puts.Add(1)
	err = sd.syncer.sync(func() error {
		l.dirSyncs.Add(1)
		return sd.f.Sync()
	})
	if err != nil {
		// The blob is in place but may not survive a crash. Reporting the
		// failure makes the caller retry or give up; either is safe.
		return opError("put", key, fmt.Errorf("fsync directory: %w", err))
	}
	return nil
}

// writeTemp writes, fsyncs and closes a temporary file. The fsync comes
// before the rename so the new name can never point at unwritten data.
func (l *Local) writeTemp(f *os.File, data []byte) error {
	done := false
	if len(data) >= directMin && !l.noDirect.Load() {
		var err error
		if done, err = l.writeDirect(f, data); err != nil {
			f.Close()
			return err
		}
	}
	if !done {
		if _, err := l.write(f, data); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		// Delayed allocation means ENOSPC may only show up here.
		f.Close()
		return err
	}
	return f.Close()
}

// Get returns the blob stored under key.
func (l *Local) Get(ctx context.Context, key string) ([]byte, error) {
	data, release, err := l.Lend(ctx, key)
	if err != nil || release == nil {
		return data, err
	}
	defer release()
	return bytes.Clone(data), nil
}

// Lend implements Lender: a large blob is read with O_DIRECT into a
// pooled buffer, which release gives back; a small one, or one on a file
// system that refuses O_DIRECT, into a buffer of its own (release nil).
func (l *Local) Lend(ctx context.Context, key string) (data []byte, release func(), err error) {
	if err := CheckKey(key); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	path := filepath.Join(l.subdir(key).path, key)
	if !l.noDirect.Load() {
		if data, release, ok, err := l.readDirect(path); ok {
			if err != nil {
				return nil, nil, readError("get", key, err)
			}
			return data, release, nil
		}
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, readError("get", key, err)
	}
	return data, nil, nil
}

// Stat returns the size of the blob stored under key.
func (l *Local) Stat(ctx context.Context, key string) (int64, error) {
	if err := CheckKey(key); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	fi, err := os.Stat(filepath.Join(l.subdir(key).path, key))
	if err != nil {
		return 0, readError("stat", key, err)
	}
	return fi.Size(), nil
}

// Delete removes the blob stored under key, if any.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(l.subdir(key).path, key))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return opError("delete", key, err)
	}
	return nil
}

// List calls fn for every blob, one fan-out directory at a time, reading
// each in batches so memory stays bounded however many blobs there are.
func (l *Local) List(ctx context.Context, fn func(key string, size int64) error) error {
	for i := range l.subdirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := l.listDir(&l.subdirs[i], fn); err != nil {
			return err
		}
	}
	return nil
}

func (l *Local) listDir(sd *localDir, fn func(key string, size int64) error) error {
	d, err := os.Open(sd.path)
	if err != nil {
		return fmt.Errorf("blob: list: %w", err)
	}
	defer d.Close()
	prefix := filepath.Base(sd.path)
	for {
		entries, err := d.ReadDir(1024)
		for _, e := range entries {
			name := e.Name()
			if !e.Type().IsRegular() || !validKey(name) || name[:2] != prefix {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the directory was read
			}
			if err != nil {
				return fmt.Errorf("blob: list: %w", err)
			}
			if err := fn(name, info.Size()); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("blob: list: %w", err)
		}
	}
}

// Close releases the directory handles and the lock. Puts still running
// when Close is called may fail.
func (l *Local) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		for i := range l.subdirs {
			if f := l.subdirs[i].f; f != nil {
				errs = append(errs, f.Close())
			}
		}
		if l.lock != nil {
			errs = append(errs, l.lock.Close())
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// readError is opError for reads, where a missing file means a missing blob.
// (For Put, a missing directory is a broken store, not a missing blob.)
func readError(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: %s %s: %w", op, key, ErrNotFound)
	}
	return opError(op, key, err)
}

// opError wraps a file system error with the operation and key, mapping a
// full disk or quota to ErrNoSpace.
func opError(op, key string, err error) error {
	switch {
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return fmt.Errorf("blob: %s %s: %w: %w", op, key, ErrNoSpace, err)
	default:
		return fmt.Errorf("blob: %s %s: %w", op, key, err)
	}
}

// syncDir fsyncs a directory, making the creation, removal and renaming of
// its entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
