package cache

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// Chunks is a size-capped on-disk LRU cache of sealed chunks, keyed by chunk
// ID. A chunk ID names exactly one sealing, so a cached chunk never goes
// stale: a newer version of a file has new chunk IDs. It is safe for
// concurrent use.
//
// Files are written to a temporary name and renamed, so a reader sees a
// whole chunk or none. They are not fsynced: after a crash a torn file fails
// its AEAD on read, and the caller drops it and fetches it again.
type Chunks struct {
	dir string
	max int64

	mu    sync.Mutex
	lru   *list.List // front: most recently used; values are *entry
	items map[crypto.ID]*list.Element
	size  int64
}

type entry struct {
	id   crypto.ID
	size int64
}

// OpenChunks opens (creating) a chunk cache in dir holding at most maxBytes.
// Existing chunks are kept, oldest-modified evicted first.
func OpenChunks(dir string, maxBytes int64) (*Chunks, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("cache: size cap must be positive, got %d", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &Chunks{dir: dir, max: maxBytes, lru: list.New(), items: map[crypto.ID]*list.Element{}}
	type found struct {
		id    crypto.ID
		size  int64
		mtime time.Time
	}
	var all []found
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if strings.HasPrefix(name, ".tmp-") {
			return os.Remove(p)
		}
		id, perr := crypto.ParseID(name)
		if perr != nil {
			return nil // not ours: leave it alone
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		all = append(all, found{id, info.Size(), info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.After(all[j].mtime) })
	for _, f := range all {
		c.items[f.id] = c.lru.PushBack(&entry{f.id, f.size})
		c.size += f.size
	}
	c.mu.Lock()
	victims := c.evictLocked()
	c.mu.Unlock()
	c.removeFiles(victims)
	return c, nil
}

func (c *Chunks) path(id crypto.ID) string {
	s := id.String()
	return filepath.Join(c.dir, s[:2], s)
}

// Size returns the bytes the cache holds.
func (c *Chunks) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// Has reports whether the chunk is cached, and marks it used.
func (c *Chunks) Has(id crypto.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[id]
	if ok {
		c.lru.MoveToFront(e)
	}
	return ok
}

// Put stores a sealed chunk the caller has verified.
func (c *Chunks) Put(id crypto.ID, sealed []byte) error {
	if int64(len(sealed)) > c.max {
		return nil // larger than the whole cache: not worth keeping
	}
	p := c.path(id)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(sealed)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return werr
	}
	c.mu.Lock()
	if e, ok := c.items[id]; ok {
		c.size -= e.Value.(*entry).size
		c.lru.Remove(e)
	}
	c.items[id] = c.lru.PushFront(&entry{id, int64(len(sealed))})
	c.size += int64(len(sealed))
	victims := c.evictLocked()
	c.mu.Unlock()
	c.removeFiles(victims)
	return nil
}

// evictLocked unlinks least recently used entries until the cache fits and
// returns their IDs for removal outside the lock.
func (c *Chunks) evictLocked() []crypto.ID {
	var victims []crypto.ID
	for c.size > c.max {
		e := c.lru.Back()
		ent := e.Value.(*entry)
		c.lru.Remove(e)
		delete(c.items, ent.id)
		c.size -= ent.size
		victims = append(victims, ent.id)
	}
	return victims
}

func (c *Chunks) removeFiles(ids []crypto.ID) {
	for _, id := range ids {
		os.Remove(c.path(id))
	}
}

// ErrMiss means the chunk is not cached.
var ErrMiss = errors.New("cache: chunk not cached")

// ReadAt reads len(p) bytes of the sealed chunk at off, for opening one
// block without reading the whole chunk. A short read returns
// io.ErrUnexpectedEOF; a missing chunk ErrMiss.
func (c *Chunks) ReadAt(id crypto.ID, p []byte, off int64) error {
	if !c.Has(id) {
		return ErrMiss
	}
	f, err := os.Open(c.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		c.Remove(id)
		return ErrMiss
	}
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Get returns the whole sealed chunk.
func (c *Chunks) Get(id crypto.ID) ([]byte, error) {
	if !c.Has(id) {
		return nil, ErrMiss
	}
	b, err := os.ReadFile(c.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		c.Remove(id)
		return nil, ErrMiss
	}
	return b, err
}

// Remove drops a chunk, for example one that failed to open.
func (c *Chunks) Remove(id crypto.ID) {
	c.mu.Lock()
	if e, ok := c.items[id]; ok {
		c.size -= e.Value.(*entry).size
		c.lru.Remove(e)
		delete(c.items, id)
	}
	c.mu.Unlock()
	os.Remove(c.path(id))
}
