// Package fusefs is the FUSE filesystem behind `sealfs mount`: it presents an
// account's encrypted tree as an ordinary directory, on
// github.com/hanwen/go-fuse/v2.
//
// Data flows fusefs → cache → remote/vault → HTTPS → server. Reads open
// only the 64 KiB blocks they need out of sealed chunks kept in an on-disk
// cache (cache.Chunks), each chunk verified against its manifest when it
// enters the cache. Writes go to per-file chunk buffers under a global
// memory budget (cache.Budget); full chunks are sealed and uploaded in the
// background while the application keeps writing, and close(2) and
// fsync(2) return only once every chunk and the new manifest are
// committed on the server. A commit that finds the file replaced by another
// client keeps both versions: this mount's data goes to a conflict copy
// beside the file. docs/semantics.md lists the guarantees.
package fusefs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/semaphore"

	"github.com/sealfs/sealfs/cache"
	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/vault"
)

// Options configure a filesystem.
type Options struct {
	// Vault is the unlocked account.
	Vault *vault.Vault
	// Chunks is the on-disk cache of sealed chunks.
	Chunks *cache.Chunks
	// DirtyBytes bounds the plaintext held for writes not yet uploaded
	// (default 64 MiB).
	DirtyBytes int64
	// Timeout bounds how long one operation waits for the server before it
	// fails with EIO (default 30 s).
	Timeout time.Duration
	// ReadOnly refuses every change with EROFS.
	ReadOnly bool
	// Uploads is how many chunk uploads run at once (default 8).
	Uploads int
	// Host names this machine in conflict copies (default os.Hostname).
	Host string
	// Log receives errors and conflicts (default slog.Default()).
	Log *slog.Logger
	// WriteBackAge is how long chunks uploaded for a file that is still
	// open may wait for a commit before the mount commits the file itself
	// (default 1 h). Until a commit references them the server counts
	// them as garbage, and collects them after its grace period (24 h by
	// default): a file written for longer than that without close or
	// fsync would otherwise lose them.
	WriteBackAge time.Duration
	// AttrDelay is how long a chmod, chown or utimensat waits before it is
	// sent, with those that follow it meanwhile (default DefaultAttrDelay;
	// see attrsync.go).
	AttrDelay time.Duration
}

// FS is one mounted account. It is safe for concurrent use.
type FS struct {
	// writeBackAge: see Options.WriteBackAge.
	writeBackAge time.Duration
	attrDelay    time.Duration
	v            *vault.Vault
	chunks       *cache.Chunks
	budget       *cache.Budget
	timeout      time.Duration
	ro           bool
	host         string
	log          *slog.Logger
	upSem        chan struct{}       // bounds concurrent chunk uploads
	raSem        *semaphore.Weighted // bounds the bytes of readahead fetches running

	fetchMu sync.Mutex
	fetches map[crypto.ID]*fetchCall
	hot     *hotChunks // plaintext of the chunks downloaded last
	rd      *readers   // background fetches for random readers

	mu      sync.Mutex
	dirty   map[*node]struct{} // files with uncommitted data
	attrDue map[*node]struct{} // inodes with attribute changes not stored yet
	errs    []string           // recent errors, newest last
	pending sync.WaitGroup     // background uploads and commits

	uploading atomic.Int64 // chunk uploads in flight
	uploaded  atomic.Int64 // chunks uploaded since start
	commits   atomic.Int64 // versions committed since start
	conflicts atomic.Int64

	root *node
	stop chan struct{}

	// unreachable is when an operation last failed for want of an
	// answer from the server (UnixNano; 0: none since it answered). See
	// outage.go.
	unreachable atomic.Int64

	// See coherence.go.
	nodesMu       sync.Mutex
	nodes         map[crypto.ID]*node // the inodes the kernel knows, by ID
	following     atomic.Bool         // the change feed is followed and current
	invalidations atomic.Uint64       // batches of invalidations so far
	cursor        int64               // the feed's cursor when New returned (-1: none)
	// seen (under nodesMu) keeps the highest version and generation this
	// mount saw of each file whose node the kernel forgot, for the node
	// made for it next: a server must not be able to roll a file back by
	// waiting until the kernel drops the inode (or by naming it in the
	// change feed, which makes the kernel drop it). Bounded by maxSeen.
	seen map[crypto.ID]seenVersion

	// ahead holds directory listings fetched ahead of their opendir;
	// local counts this mount's changes on the server (listahead.go).
	ahead *listAhead
	local atomic.Uint64

	// keptMu guards kept and keptNext: the states kept after their last
	// close, oldest at keptNext once maxKept are (see FS.keep).
	keptMu   sync.Mutex
	kept     []keptState
	keptNext int
}

// New returns the filesystem of opts.Vault. Call Root for the go-fuse root
// node and Shutdown after the mount has ended.
func New(ctx context.Context, opts Options) (*FS, error) {
	if opts.Vault == nil || opts.Chunks == nil {
		return nil, errors.New("fusefs: a vault and a chunk cache are required")
	}
	if opts.DirtyBytes <= 0 {
		opts.DirtyBytes = 64 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Uploads <= 0 {
		opts.Uploads = 8
	}
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
		if opts.Host == "" {
			opts.Host = "unknown"
		}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.AttrDelay <= 0 {
		opts.AttrDelay = DefaultAttrDelay
	}
	if opts.WriteBackAge <= 0 {
		opts.WriteBackAge = time.Hour
	}
	f := &FS{
		v: opts.Vault, chunks: opts.Chunks, budget: cache.NewBudget(opts.DirtyBytes),
		timeout: opts.Timeout, ro: opts.ReadOnly, host: opts.Host, log: opts.Log, writeBackAge: opts.WriteBackAge, attrDelay: opts.AttrDelay,
		upSem: make(chan struct{}, opts.Uploads), raSem: semaphore.NewWeighted(raFetchBytes), rd: newReaders(),
		fetches: map[crypto.ID]*fetchCall{}, hot: newHotChunks(hotMax(opts.Vault.Layout()), hotMaxEntries(opts.Vault.Layout())), dirty: map[*node]struct{}{}, attrDue: map[*node]struct{}{},
		stop: make(chan struct{}), nodes: map[crypto.ID]*node{}, seen: map[crypto.ID]seenVersion{}, ahead: newListAhead(),
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	// The change feed's cursor is taken before anything is fetched, so
	// the first poll reports every change made since by other clients
	// and nothing fetched needs to be dropped at start. Without it the
	// first poll starts the feed and drops everything (see poll).
	f.cursor = -1
	if ch, err := f.v.Client().Changes(rctx, -1, 0); err == nil {
		f.cursor = ch.Seq
	}
	rn, err := f.v.Root(rctx)
	if err != nil {
		return nil, fmt.Errorf("reading the root directory: %w", err)
	}
	f.root = &node{fsys: f, id: crypto.ID{}, typ: rn.Type}
	f.root.absorb(rn)
	f.nodes[f.root.id] = f.root
	go f.retryLoop()
	f.startListAhead()
	return f, nil
}

// Root returns the root node to mount.
func (f *FS) Root() fs.InodeEmbedder { return f.root }

// MountOptions returns the go-fuse options the mount should use: kernel
// caches of one second unless an answer says longer (see coherence.go),
// and the kernel checking permissions.
func (f *FS) MountOptions(allowOther bool) *fs.Options {
	sec := time.Second
	mo := fuse.MountOptions{
		FsName: "sealfs", Name: "sealfs",
		AllowOther:   allowOther,
		MaxWrite:     1 << 20,
		MaxReadAhead: 1 << 20,
		// Read answers are bytes in memory, never file descriptors to
		// splice from; go-fuse's splice attempt would only cost three
		// system calls on a pipe per read before falling back to writev.
		DisableSplice: true,
		Options:       []string{"default_permissions"},
		// With HANDLE_KILLPRIV_V2 the kernel leaves clearing set-ID bits
		// on write, truncate and chown to us (setattr.go), and in return
		// stops asking for security.capability before every write and
		// for fresh attributes before every chown: for tar -x, two of
		// the fifteen requests a small file cost.
		ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2,
	}
	if f.ro {
		mo.Options = append(mo.Options, "ro")
	}
	return &fs.Options{
		MountOptions:   mo,
		EntryTimeout:   &sec,
		AttrTimeout:    &sec,
		RootStableAttr: &fs.StableAttr{Ino: 1},
		// Without it go-fuse shows a mode without permission bits (chmod
		// 000) as 0644, or 0755 for a directory, and the kernel, which
		// checks permissions (default_permissions), lets everyone read
		// what its owner locked.
		NullPermissions: true,
	}
}

// ino derives a stable inode number from a 128-bit inode ID. The root is 1;
// 0 and 1 are never produced for other inodes.
func ino(id crypto.ID) uint64 {
	if id.IsZero() {
		return 1
	}
	x := binary.BigEndian.Uint64(id[:8]) ^ binary.BigEndian.Uint64(id[8:])
	if x <= 1 {
		x += 2
	}
	return x
}

// errno maps an error of the vault, the API client or the cache to the
// errno a system call returns. Everything that is not a clear answer of the
// server (corruption, network failure, timeouts) is EIO.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var ce *vault.CorruptError
	if errors.As(err, &ce) {
		return syscall.EIO
	}
	switch remote.Code(err) {
	case "not_found":
		return syscall.ENOENT
	case "exists":
		return syscall.EEXIST
	case "not_empty":
		return syscall.ENOTEMPTY
	case "not_dir":
		return syscall.ENOTDIR
	case "is_dir":
		return syscall.EISDIR
	case "invalid":
		return syscall.EINVAL
	case "not_permitted":
		return syscall.EPERM
	case "quota_exceeded":
		return syscall.EDQUOT
	case "insufficient_storage":
		return syscall.ENOSPC
	}
	if errors.Is(err, vault.ErrBadPath) {
		return syscall.EINVAL
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		switch e {
		case syscall.ENOENT, syscall.EEXIST, syscall.ENOTEMPTY, syscall.ENOTDIR, syscall.EISDIR,
			syscall.EINVAL, syscall.EPERM, syscall.EDQUOT, syscall.ENOSPC, syscall.ENAMETOOLONG, syscall.EROFS,
			syscall.ESTALE:
			return e
		}
	}
	return syscall.EIO
}

// fail maps err to an errno and logs it, with the path, when it is EIO:
// an EIO says nothing by itself, the log says what broke.
func (f *FS) fail(op, path string, err error) syscall.Errno {
	e := errno(err)
	if e == syscall.EIO {
		f.noteUnreachable(err)
		f.logError(op, path, err)
	}
	return e
}

// failSave is fail for a failed commit: that leaves data this mount holds
// and the server does not, so it is logged whatever the errno (EDQUOT,
// ENOSPC, ENOENT), not only when the server is unreachable.
func (f *FS) failSave(op, path string, err error) syscall.Errno {
	e := f.fail(op, path, err)
	if e != syscall.EIO {
		f.logError(op, path, err)
	}
	return e
}

// logError logs an error and keeps it for the status file.
func (f *FS) logError(op, path string, err error) {
	f.log.Error(op+" failed", "path", path, "err", err)
	msg := fmt.Sprintf("%s %s: %s: %v", time.Now().Format(time.RFC3339), op, path, err)
	f.mu.Lock()
	f.errs = append(f.errs, msg)
	if len(f.errs) > 10 {
		f.errs = f.errs[len(f.errs)-10:]
	}
	f.mu.Unlock()
}

// Stats is what the status file shows of a running mount.
type Stats struct {
	UploadsInFlight int64    `json:"uploads_in_flight"`
	ChunksUploaded  int64    `json:"chunks_uploaded"`
	Commits         int64    `json:"commits"`
	Conflicts       int64    `json:"conflicts"`
	DirtyBytes      int64    `json:"dirty_bytes"`
	FilesPending    int      `json:"files_pending"`
	CacheBytes      int64    `json:"cache_bytes"`
	LastErrors      []string `json:"last_errors,omitempty"`
}

// Stats returns the mount's counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{
		UploadsInFlight: f.uploading.Load(), ChunksUploaded: f.uploaded.Load(),
		Commits: f.commits.Load(), Conflicts: f.conflicts.Load(),
		DirtyBytes: f.budget.Used(), FilesPending: len(f.dirty),
		CacheBytes: f.chunks.Size(), LastErrors: append([]string(nil), f.errs...),
	}
}

// markDirty records that n holds data the server does not have yet.
func (f *FS) markDirty(n *node, dirty bool) { f.mark(f.dirty, n, dirty) }

// dirtyNodes returns the files with uncommitted data.
func (f *FS) dirtyNodes() []*node { return f.marked(f.dirty) }

// mark adds n to set or removes it.
func (f *FS) mark(set map[*node]struct{}, n *node, in bool) {
	f.mu.Lock()
	if in {
		set[n] = struct{}{}
	} else {
		delete(set, n)
	}
	f.mu.Unlock()
}

// marked returns the nodes in set.
func (f *FS) marked(set map[*node]struct{}) []*node {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*node, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	return out
}

// retryLoop commits, every ten seconds, files whose last commit failed and
// that no open descriptor will flush again: data is never dropped just
// because the server was away when the file was closed. It also commits
// open files whose uploaded chunks have waited writeBackAge for a commit,
// before the server may collect them.
func (f *FS) retryLoop() {
	t := time.NewTicker(min(10*time.Second, f.writeBackAge/2))
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		for _, n := range f.dirtyNodes() {
			switch {
			case n.openCount() == 0:
				_ = n.commit("retry")
			case n.uploadedBefore(time.Now().Add(-f.writeBackAge)):
				_ = n.commit("write-back")
			}
		}
		for _, n := range f.attrDueNodes() {
			if !n.attrFlushScheduled() {
				_ = n.flushAttrs() // its last flush failed
			}
		}
	}
}

// Shutdown commits everything still pending after the mount has ended and
// reports what could not be stored. The data it could not store is lost
// when the process exits, so every such file is logged by name.
func (f *FS) Shutdown() error {
	close(f.stop)
	f.pending.Wait()
	var failed []string
	for _, n := range f.dirtyNodes() {
		if err := n.commit("unmount"); err != 0 {
			failed = append(failed, n.path())
		}
	}
	for _, n := range f.attrDueNodes() {
		if err := n.flushAttrs(); err != 0 {
			failed = append(failed, n.path())
		}
	}
	f.pending.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("could not store the latest changes of %d file(s) on the server: %v", len(failed), failed)
	}
	return nil
}
