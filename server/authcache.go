package server

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/server/meta"
)

// SessionStampName is the file, in a server's data directory, that an
// operator's command replaces after it changed sessions or accounts in the
// database directly (disable, enable): the running server then drops the
// sessions it remembers. See Config.SessionStamp.
const SessionStampName = "sessions.stamp"

// TouchSessionStamp replaces the stamp file at path, under a new inode, so
// that a server watching it notices even two changes within one tick of
// the file system's clock.
func TouchSessionStamp(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".stamp-*")
	if err != nil {
		return err
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// sessionCache remembers the sessions (with their accounts) that requests
// presented, so that most requests authenticate without a database read:
// in WAL mode every commit voids the page cache of SQLite's readers, and
// the read cost a small file about a twentieth of its time on the server.
//
// An entry is believed for at most sessionCacheTTL, never past its
// session's expiry, and not at all once the stamp file changed (another
// process revoked sessions) or this server revoked one itself (logout,
// password change): either empties the cache, and an answer read from the
// database before that is not stored after it. Without a stamp file (a
// server whose metadata other processes may change without telling it,
// such as several replicas sharing one database) nothing is cached.
type sessionCache struct {
	stamp string
	mu    sync.Mutex
	seen  stampID // the stamp's identity when the entries were stored
	gen   uint64  // bumped by every revocation in this process
	byTok map[string]cachedSession
}

type cachedSession struct {
	sess   meta.Session
	stored time.Time
}

// stampID identifies one version of the stamp file.
type stampID struct {
	ino, size uint64
	mtime     int64
	missing   bool
}

const (
	sessionCacheTTL = 10 * time.Second
	sessionCacheMax = 10000
)

func newSessionCache(stamp string) *sessionCache {
	return &sessionCache{stamp: stamp, byTok: map[string]cachedSession{}}
}

func (c *sessionCache) stampNow() stampID {
	fi, err := os.Stat(c.stamp)
	if err != nil {
		return stampID{missing: true}
	}
	id := stampID{size: uint64(fi.Size()), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
	}
	return id
}

// ticket is what a lookup that missed hands to store: the state the
// database read began in.
type ticket struct {
	stamp stampID
	gen   uint64
}

// lookup returns the remembered session of a token hash, or a ticket for
// storing the one read from the database.
func (c *sessionCache) lookup(tokHash []byte, now time.Time) (meta.Session, bool, ticket) {
	if c.stamp == "" {
		return meta.Session{}, false, ticket{}
	}
	s := c.stampNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != c.seen {
		clear(c.byTok)
		c.seen = s
	}
	t := ticket{stamp: s, gen: c.gen}
	e, ok := c.byTok[string(tokHash)]
	if !ok || now.Sub(e.stored) >= sessionCacheTTL || !now.Before(e.sess.ExpiresAt) {
		return meta.Session{}, false, t
	}
	return e.sess, true, t
}

// store remembers a session read from the database, unless something was
// revoked since the read began.
func (c *sessionCache) store(tokHash []byte, sess meta.Session, t ticket, now time.Time) {
	if c.stamp == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.stamp != c.seen || t.gen != c.gen {
		return
	}
	if len(c.byTok) >= sessionCacheMax {
		clear(c.byTok)
	}
	c.byTok[string(tokHash)] = cachedSession{sess: sess, stored: now}
}

// revoked forgets every session: this process changed sessions or an
// account.
func (c *sessionCache) revoked() {
	c.mu.Lock()
	c.gen++
	clear(c.byTok)
	c.mu.Unlock()
}
