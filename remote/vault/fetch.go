package vault

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// PartialSuffix marks a download in progress: DST+PartialSuffix holds the
// verified prefix of the file, and DST+PartialSuffix+".json" says which
// version of which file it is. Only a whole, verified file is renamed to
// DST. Where that name cannot be used (too long, or taken by a file that is
// not a partial download), a hidden name beside it ends in PartialSuffix
// (see partialPath).
const PartialSuffix = ".sealfs-partial"

// partialFormat versions the sidecar; another format starts over.
const partialFormat = 1

// partialMeta is the sidecar of a partial download. Done is a chunk
// boundary up to which the partial file was verified and synced.
type partialMeta struct {
	Format     int        `json:"format"`
	File       wire.HexID `json:"file"`
	Generation uint64     `json:"generation"`
	Size       int64      `json:"size"`
	Done       int64      `json:"done"`
}

// DownloadOptions tune Download.
type DownloadOptions struct {
	Progress Progress
	Limit    *RateLimit
	// OnResume is called once when a previous partial download of the same
	// version continues, with the bytes already there and the file's size.
	OnResume func(done, total int64)
	// Taken, when set, reports the local paths that other downloads of
	// the same run write (their destinations): a partial file must not
	// be one of them, or the two downloads would overwrite each other.
	Taken func(path string) bool
}

// syncEvery bounds how much verified work an interrupted download loses.
const syncEvery = time.Second

// Download writes file n to the local path dst. It writes into
// dst+PartialSuffix, continues a partial download of the same version from
// its last synced chunk boundary, syncs, and renames into place only after
// every chunk verified. An interrupted or failed download never leaves an
// unverified file under dst.
func (v *Vault) Download(ctx context.Context, n *Node, dst string, opts DownloadOptions) (err error) {
	if st, err := os.Lstat(dst); err == nil && st.IsDir() {
		return fmt.Errorf("%s exists and is a directory; a file cannot replace it", dst)
	}
	f, err := v.OpenFile(ctx, n)
	if err != nil {
		return err
	}
	partial := partialPath(dst, f.Node.ID, opts.Taken)
	side := partial + ".json"
	meta := partialMeta{Format: partialFormat, File: wire.HexID(f.Node.ID), Generation: f.Generation(), Size: f.Size()}

	out, from := resumePartial(partial, side, meta, f.ChunkSize())
	if out == nil {
		// The sidecar first: a partial file without one is taken for a
		// file of the user's (see partialPath), and a run killed between
		// the two would leave it behind for good.
		if err := writeFileAtomic(side, mustJSON(meta), 0o600); err != nil {
			return err
		}
		if out, err = os.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			os.Remove(side)
			return err
		}
	}
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
	meta.Done = from * f.ChunkSize()
	if from > 0 {
		progressOr(opts.Progress).AddBytes(meta.Done)
		if opts.OnResume != nil {
			opts.OnResume(meta.Done, f.Size())
		}
	}

	ck := &checkpointer{out: out, side: side, meta: meta, last: time.Now(), done: meta.Done}
	verified := meta.Done
	// The last chunk's write is padded to the alignment; Truncate below
	// gives the file its size.
	preallocate(out, (f.Size()+directAlign-1)&^(directAlign-1))
	dw := newDirectWriter(out)
	defer dw.Close()
	err = v.WriteTo(ctx, f, nil, ReadOptions{
		FromChunk: int(from),
		At:        dw,
		Progress:  opts.Progress,
		Limit:     opts.Limit,
		AfterChunk: func(_ int, end int64) error {
			verified = end
			return ck.maybe(end)
		},
	})
	ckErr := ck.wait()
	if err == nil {
		err = ckErr
	}
	if err != nil {
		if verified > ck.recorded() {
			_ = ck.save(verified) // keep what verified for the next try
		}
		if ck.recorded() == 0 {
			// Nothing verified: leave no clutter behind.
			out.Close()
			out = nil
			os.Remove(partial)
			os.Remove(side)
			os.Remove(side + ".tmp")
		}
		return err
	}
	if err := out.Truncate(f.Size()); err != nil {
		return err
	}
	if err := out.Chmod(ModeBits(f.Node.Mode())); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	out = nil
	mt := f.Node.ModTime()
	_ = os.Chtimes(partial, mt, mt)
	if err := os.Rename(partial, dst); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	_ = os.Remove(side)
	_ = os.Remove(side + ".tmp") // left by a run killed while saving side
	progressOr(opts.Progress).AddFiles(1)
	return nil
}

// checkpointer syncs the partial file and records its verified length in
// the sidecar now and then, in the background, so the download does not
// stall on fsync. The sidecar only ever names bytes that a finished sync
// covered.
type checkpointer struct {
	out     *os.File
	side    string
	meta    partialMeta
	last    time.Time
	busy    sync.WaitGroup
	mu      sync.Mutex
	running bool
	err     error
	done    int64 // the length the sidecar records
}

// maybe starts a checkpoint at end when one is due and none is running.
func (c *checkpointer) maybe(end int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if c.running || time.Since(c.last) < syncEvery {
		return nil
	}
	c.running = true
	c.busy.Add(1)
	go func() {
		defer c.busy.Done()
		err := c.save(end)
		c.mu.Lock()
		c.running, c.last = false, time.Now()
		if err != nil {
			c.err = err
		}
		c.mu.Unlock()
	}()
	return nil
}

// save syncs everything written so far and records end as verified.
func (c *checkpointer) save(end int64) error {
	if err := c.out.Sync(); err != nil {
		return err
	}
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	m.Done = end
	if err := writeFileAtomic(c.side, mustJSON(m), 0o600); err != nil {
		return err
	}
	c.mu.Lock()
	c.done = max(c.done, end)
	c.mu.Unlock()
	return nil
}

// recorded returns the verified length the sidecar holds.
func (c *checkpointer) recorded() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// wait lets a running checkpoint finish and returns its error.
func (c *checkpointer) wait() error {
	c.busy.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// resumePartial opens a partial download that matches meta and positions
// it at its last verified chunk boundary; nil when there is none to
// continue.
func resumePartial(partial, side string, meta partialMeta, chunkSize int64) (*os.File, int64) {
	b, err := os.ReadFile(side)
	if err != nil {
		return nil, 0
	}
	var old partialMeta
	if json.Unmarshal(b, &old) != nil || old.Format != meta.Format || old.File != meta.File ||
		old.Generation != meta.Generation || old.Size != meta.Size ||
		old.Done <= 0 || old.Done%chunkSize != 0 || old.Done > meta.Size {
		return nil, 0
	}
	out, err := os.OpenFile(partial, os.O_RDWR, 0)
	if err != nil {
		return nil, 0
	}
	st, err := out.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() < old.Done {
		out.Close()
		return nil, 0
	}
	if out.Truncate(old.Done) != nil {
		out.Close()
		return nil, 0
	}
	if _, err := out.Seek(old.Done, io.SeekStart); err != nil {
		out.Close()
		return nil, 0
	}
	return out, old.Done / chunkSize
}

// nameMax is the longest file name local file systems take (NAME_MAX).
const nameMax = 255

// partialPath picks where a download of file to dst keeps its verified
// prefix: dst+PartialSuffix, unless that name (with its sidecar's ".json"
// and the sidecar's temporary ".json.tmp") is too long, is a destination
// of the same run (taken), or is a file that is not a partial download (it
// has no sidecar): such a file may be the user's, and is never overwritten. The alternative is a hidden name
// in the same directory, derived from dst and the file's ID so that a
// later run finds it again.
func partialPath(dst string, file crypto.ID, taken func(string) bool) string {
	usable := func(p string) bool {
		if len(filepath.Base(p))+len(".json.tmp") > nameMax {
			return false
		}
		if taken != nil && (taken(p) || taken(p+".json") || taken(p+".json.tmp")) {
			return false
		}
		for _, q := range []string{p, p + ".json.tmp"} {
			if _, err := os.Lstat(q); err == nil {
				if _, err := os.Lstat(p + ".json"); err != nil {
					return false // not ours
				}
			}
		}
		return true
	}
	if p := dst + PartialSuffix; usable(p) {
		return p
	}
	sum := sha256.Sum256([]byte(filepath.Base(dst)))
	base := fmt.Sprintf(".%x-%s%s", sum[:8], file.String()[:8], PartialSuffix)
	for k := 0; ; k++ {
		p := filepath.Join(filepath.Dir(dst), base)
		if k > 0 {
			p += fmt.Sprintf("-%d", k)
		}
		if usable(p) {
			return p
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("vault: marshal %T: %v", v, err))
	}
	return b
}
