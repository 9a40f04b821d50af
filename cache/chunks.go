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
//
// Reads keep the files they open: a random reader would otherwise pay an
// open and a close for every block it reads. At most maxOpen stay open,
// least recently used closed first.
type Chunks struct {
	dir string
	max int64

	mu       sync.Mutex
	lru      *list.List // front: most recently used; values are *entry
	items    map[crypto.ID]*list.Element
	size     int64
	reserved int64      // bytes PutIfRoom is writing, not yet in size
	open     *list.List // entries with an open file, front: most recently read
	maxOpen  int
}

type entry struct {
	id   crypto.ID
	size int64

	// f is the chunk's file, open for reading, or nil; openElem is its
	// place in Chunks.open. refs counts reads using f; gone marks an
	// entry that left the cache, whose file the last reader closes.
	f        *os.File
	openElem *list.Element
	refs     int
	gone     bool
}

// DefaultMaxOpen is how many cached chunk files stay open by default:
// enough for every chunk of a 1 GiB cache of 1 MiB chunks. A quarter of
// the process's file descriptor limit caps it.
const DefaultMaxOpen = 1024

// defaultMaxOpen is DefaultMaxOpen within a quarter of the descriptor
// limit (fileLimit, 0 when unknown).
func defaultMaxOpen() int {
	if lim := fileLimit(); lim > 0 && lim < 4*DefaultMaxOpen {
		return max(int(lim/4), 1)
	}
	return DefaultMaxOpen
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
	c := &Chunks{dir: dir, max: maxBytes, lru: list.New(), items: map[crypto.ID]*list.Element{},
		open: list.New(), maxOpen: defaultMaxOpen()}
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
		c.items[f.id] = c.lru.PushBack(&entry{id: f.id, size: f.size})
		c.size += f.size
	}
	c.mu.Lock()
	victims, _ := c.evictLocked() // nothing is open yet
	c.mu.Unlock()
	c.removeFiles(victims)
	return c, nil
}

// SetMaxOpen changes how many chunk files stay open for reading (at least
// 1), closing the least recently read beyond it.
func (c *Chunks) SetMaxOpen(n int) {
	c.mu.Lock()
	c.maxOpen = max(n, 1)
	closing := c.trimOpenLocked()
	c.mu.Unlock()
	closeFiles(closing)
}

// OpenFiles returns how many chunk files are open.
func (c *Chunks) OpenFiles() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open.Len()
}

// Max returns the cache's size cap.
func (c *Chunks) Max() int64 { return c.max }

// Room returns how many bytes can still be stored without evicting
// anything.
func (c *Chunks) Room() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.max-c.size-c.reserved, 0)
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

// Contains reports whether the chunk is cached, without marking it used.
func (c *Chunks) Contains(id crypto.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[id]
	return ok
}

// Put stores a sealed chunk the caller has verified, evicting least
// recently used chunks to make room.
func (c *Chunks) Put(id crypto.ID, sealed []byte) error {
	if int64(len(sealed)) > c.max {
		return nil // larger than the whole cache: not worth keeping
	}
	if err := c.write(id, sealed); err != nil {
		return err
	}
	c.mu.Lock()
	c.insertLocked(id, int64(len(sealed)))
	victims, closing := c.evictLocked()
	c.mu.Unlock()
	closeFiles(closing)
	c.removeFiles(victims)
	return nil
}

// PutIfRoom stores a sealed chunk the caller has verified only when it
// fits without evicting anything, and reports whether it did. It is for
// speculative fetches, which must never push out what is being read.
func (c *Chunks) PutIfRoom(id crypto.ID, sealed []byte) (bool, error) {
	n := int64(len(sealed))
	c.mu.Lock()
	if _, ok := c.items[id]; ok {
		c.mu.Unlock()
		return true, nil
	}
	if c.size+c.reserved+n > c.max {
		c.mu.Unlock()
		return false, nil
	}
	c.reserved += n
	c.mu.Unlock()
	err := c.write(id, sealed)
	c.mu.Lock()
	c.reserved -= n
	if err == nil {
		c.insertLocked(id, n)
	}
	// A concurrent Put may have counted on the reserved bytes being free.
	victims, closing := c.evictLocked()
	c.mu.Unlock()
	closeFiles(closing)
	c.removeFiles(victims)
	return err == nil, err
}

// write stores sealed as the chunk's file: a temporary file renamed into
// place, so a reader sees a whole chunk or none.
func (c *Chunks) write(id crypto.ID, sealed []byte) error {
	p := c.path(id)
	tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			tmp, err = os.CreateTemp(filepath.Dir(p), ".tmp-")
		}
	}
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
	}
	return werr
}

// insertLocked records a chunk just written as the most recently used.
func (c *Chunks) insertLocked(id crypto.ID, n int64) {
	if e, ok := c.items[id]; ok {
		c.dropLocked(e) // its file was replaced; an open one reads the same bytes
	}
	c.items[id] = c.lru.PushFront(&entry{id: id, size: n})
	c.size += n
}

// dropLocked takes an entry out of the cache. Its open file, if any, is
// closed by the last reader using it (or now, when none is, by the
// caller of closeFiles on the returned list).
func (c *Chunks) dropLocked(e *list.Element) *os.File {
	ent := e.Value.(*entry)
	c.lru.Remove(e)
	delete(c.items, ent.id)
	c.size -= ent.size
	ent.gone = true
	if ent.openElem != nil {
		c.open.Remove(ent.openElem)
		ent.openElem = nil
	}
	if ent.f != nil && ent.refs == 0 {
		f := ent.f
		ent.f = nil
		return f
	}
	return nil
}

// evictLocked unlinks least recently used entries until the cache fits and
// returns their IDs for removal, and the files to close, outside the lock.
func (c *Chunks) evictLocked() ([]crypto.ID, []*os.File) {
	var victims []crypto.ID
	var closing []*os.File
	for c.size+c.reserved > c.max && c.lru.Len() > 0 {
		e := c.lru.Back()
		victims = append(victims, e.Value.(*entry).id)
		if f := c.dropLocked(e); f != nil {
			closing = append(closing, f)
		}
	}
	return victims, closing
}

// trimOpenLocked unlinks the least recently read open files beyond
// maxOpen that no read is using and returns them for closing.
func (c *Chunks) trimOpenLocked() []*os.File {
	var closing []*os.File
	for e := c.open.Back(); e != nil && c.open.Len() > c.maxOpen; {
		prev := e.Prev()
		ent := e.Value.(*entry)
		if ent.refs == 0 {
			c.open.Remove(e)
			ent.openElem = nil
			closing = append(closing, ent.f)
			ent.f = nil
		}
		e = prev
	}
	return closing
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func (c *Chunks) removeFiles(ids []crypto.ID) {
	for _, id := range ids {
		os.Remove(c.path(id))
	}
}

// ErrMiss means the chunk is not cached.
var ErrMiss = errors.New("cache: chunk not cached")

// ReadAt reads len(p) bytes of the sealed chunk at off, for opening one
// block without reading the whole chunk. A missing chunk, or one whose
// file is too short for the read, returns ErrMiss.
func (c *Chunks) ReadAt(id crypto.ID, p []byte, off int64) error {
	f, ent, err := c.acquire(id)
	if err != nil {
		return err
	}
	n, err := f.ReadAt(p, off)
	c.release(ent)
	if n == len(p) {
		return nil
	}
	if err == io.EOF {
		// Shorter than the chunk: torn by a crash (files are not
		// synced). It is dropped, and the caller fetches the chunk.
		c.Remove(id)
		return ErrMiss
	}
	return err
}

// acquire returns the chunk's open file, marking the chunk used; release
// must follow.
func (c *Chunks) acquire(id crypto.ID) (*os.File, *entry, error) {
	c.mu.Lock()
	e, ok := c.items[id]
	if !ok {
		c.mu.Unlock()
		return nil, nil, ErrMiss
	}
	c.lru.MoveToFront(e)
	ent := e.Value.(*entry)
	if ent.f != nil {
		ent.refs++
		c.open.MoveToFront(ent.openElem)
		c.mu.Unlock()
		return ent.f, ent, nil
	}
	c.mu.Unlock()
	f, err := os.Open(c.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		c.removeEntry(ent)
		return nil, nil, ErrMiss
	}
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	switch {
	case ent.gone:
		// Evicted meanwhile. Its bytes are still valid: read them
		// once through this file, keep nothing.
		c.mu.Unlock()
		return f, &entry{id: id, f: f, refs: 1, gone: true}, nil
	case ent.f != nil:
		// Another reader opened it first.
		ent.refs++
		g := ent.f
		c.mu.Unlock()
		f.Close()
		return g, ent, nil
	}
	ent.f = f
	ent.openElem = c.open.PushFront(ent)
	ent.refs++
	closing := c.trimOpenLocked()
	c.mu.Unlock()
	closeFiles(closing)
	return f, ent, nil
}

// release ends a read that acquire started.
func (c *Chunks) release(ent *entry) {
	c.mu.Lock()
	ent.refs--
	var f *os.File
	if ent.refs == 0 && (ent.gone || (ent.openElem == nil && ent.f != nil)) {
		f = ent.f
		ent.f = nil
	}
	var closing []*os.File
	if ent.refs == 0 && c.open.Len() > c.maxOpen {
		closing = c.trimOpenLocked()
	}
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
	closeFiles(closing)
}

// removeEntry drops ent if it is still the cache's entry for its chunk.
func (c *Chunks) removeEntry(ent *entry) {
	c.mu.Lock()
	var f *os.File
	if e, ok := c.items[ent.id]; ok && e.Value.(*entry) == ent {
		f = c.dropLocked(e)
	}
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
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
	var f *os.File
	if e, ok := c.items[id]; ok {
		f = c.dropLocked(e)
	}
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
	os.Remove(c.path(id))
}
