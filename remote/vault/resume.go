package vault

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// resumeFormat versions the state file; a state of another format is
// ignored and the upload starts over.
const resumeFormat = 1

// resumeState is what an interrupted multi-chunk upload needs to continue:
// where it goes, what it was made from, and which sealed chunks it sent.
// It holds no key: chunk IDs and tags are public to the server anyway.
type resumeState struct {
	Format      int           `json:"format"`
	Dest        string        `json:"dest,omitempty"`   // for people reading the file
	Source      string        `json:"source,omitempty"` // likewise
	SourceSize  int64         `json:"source_size"`
	SourceMtime int64         `json:"source_mtime_ns"`
	File        wire.HexID    `json:"file"`
	Parent      wire.HexID    `json:"parent"`
	Index       wire.Index    `json:"index"`
	BaseVersion int64         `json:"base_version"`
	Generation  uint64        `json:"generation"`
	Layout      crypto.Layout `json:"layout"`
	Chunks      []resumeChunk `json:"chunks"`
}

// resumeChunk is one uploaded chunk.
type resumeChunk struct {
	Index uint64     `json:"i"`
	ID    wire.HexID `json:"id"`
	Tag   hexTag     `json:"tag"`
}

// hexTag is a chunk tag as hex in JSON.
type hexTag crypto.ChunkTag

func (t hexTag) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(t[:])), nil }

func (t *hexTag) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(t) {
		return fmt.Errorf("chunk tag of %d hex digits", len(b))
	}
	_, err := hex.Decode(t[:], b)
	return err
}

// loadResume reads a state file; a missing or unreadable one is no state.
func loadResume(path string) *resumeState {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := new(resumeState)
	if json.Unmarshal(b, s) != nil || s.Format != resumeFormat {
		return nil
	}
	return s
}

// writeFileAtomic writes b to path through a synced temporary file and a
// rename, so a crash leaves the old content or the new, never a torn file.
// The temporary file is path+".tmp", not a random name: a process killed
// while writing it leaves one file that the next write replaces, instead
// of a new one beside the user's files every time.
func writeFileAtomic(path string, b []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// resumeLog records completed chunks and writes the state file in batches
// from a background loop, so workers never wait on fsync.
type resumeLog struct {
	path  string
	mu    sync.Mutex
	state *resumeState
	dirty bool
	err   error
	stop  chan struct{}
	done  chan struct{}
}

// resumeFlushEvery bounds the work an interrupted upload can lose.
const resumeFlushEvery = 250 * time.Millisecond

func startResumeLog(path string, s *resumeState) *resumeLog {
	l := &resumeLog{path: path, state: s, dirty: true, stop: make(chan struct{}), done: make(chan struct{})}
	go l.loop()
	return l
}

func (l *resumeLog) loop() {
	defer close(l.done)
	t := time.NewTicker(resumeFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.flush()
		case <-l.stop:
			return
		}
	}
}

// add records chunk i as sent.
func (l *resumeLog) add(i uint64, id crypto.ID, tag crypto.ChunkTag) {
	l.mu.Lock()
	l.state.Chunks = append(l.state.Chunks, resumeChunk{Index: i, ID: wire.HexID(id), Tag: hexTag(tag)})
	l.dirty = true
	l.mu.Unlock()
}

// flush writes the state when it changed. A failure to write is kept and
// reported at the end: losing resumability must not fail an upload that
// otherwise succeeds, but it must not pass unnoticed either.
func (l *resumeLog) flush() {
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return
	}
	b, err := json.Marshal(l.state)
	l.dirty = false
	l.mu.Unlock()
	if err == nil {
		err = writeFileAtomic(l.path, b, 0o600)
	}
	if err != nil {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
	}
}

// close stops the loop and writes what is pending.
func (l *resumeLog) close() error {
	close(l.stop)
	<-l.done
	l.flush()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// remove deletes the state after a successful commit.
func (l *resumeLog) remove() {
	if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		l.err = err
	}
}
