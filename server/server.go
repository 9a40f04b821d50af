package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/netbatch"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/meta"
)

// Config tunes a Server. The zero value of each field picks the default.
type Config struct {
	// SessionTTL is how long a login lasts (default 30 days).
	SessionTTL time.Duration
	// UploadsPerAccount bounds concurrent chunk uploads of one account
	// (default 32); more answer 429 too_many_uploads.
	UploadsPerAccount int
	// GCGrace is how long a chunk must have been unreferenced before it
	// is collected (default 24 hours). It covers uploads in progress,
	// including a mount's commit that keeps failing through a server or
	// network outage, and open files whose last name was removed.
	GCGrace time.Duration
	// GCInterval is how often garbage is collected and the change feed
	// pruned (default 5 minutes).
	GCInterval time.Duration
	// ChangeRetention is how long the change feed keeps a change (default
	// 1 hour); a client whose cursor is older must drop its caches.
	ChangeRetention time.Duration
	// ChangeKeep bounds the change feed's rows per account (default
	// 100,000); older ones are pruned even within ChangeRetention.
	ChangeKeep int
	// Secret keys the fake pre-login salts of unknown users; it must be
	// stable across restarts (cmd/sealfs keeps it in the data directory).
	Secret []byte
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when not nil, counts requests and bytes.
	Metrics *Metrics
	// SessionStamp is the path of a file that every other process changing
	// sessions or accounts in the metadata store replaces afterwards (see
	// TouchSessionStamp); with it the server remembers sessions for a few
	// seconds instead of reading them for every request. Empty: it reads
	// every time, as a server must when others change the store without
	// telling it.
	SessionStamp string
	// NoInline stores every chunk as a blob file, however small, instead
	// of keeping those of up to InlineChunkMax bytes in the metadata
	// database. Tests use it to exercise blobs with small chunks.
	NoInline bool
	// SpaceLeft, when not nil, reports whether the disk holding the
	// stores has room for new chunks beyond a reserve kept for metadata;
	// when it has not, chunk uploads fail with 507 insufficient_storage.
	// Without a reserve, uploads fill the disk to the last byte, and the
	// transactions that delete files, the only way to free space, fail
	// too; nor does the server start again.
	SpaceLeft func() bool
}

// Server serves the sealfs API. Create it with New; it is an http.Handler.
type Server struct {
	meta    meta.Store
	store   *atrest.Store
	cfg     Config
	log     *slog.Logger
	secret  []byte
	metrics *Metrics
	limits  *throttle
	mux     *http.ServeMux

	uploadsMu sync.Mutex
	uploads   map[int64]int

	sessions *sessionCache
	// idem remembers recent answers to changes by Idempotency-Key.
	idem *idempotency

	macsMu sync.Mutex
	macs   map[int64]*crypto.TransferMAC
}

// New returns a Server over the given stores.
func New(m meta.Store, store *atrest.Store, cfg Config) *Server {
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 30 * 24 * time.Hour
	}
	if cfg.UploadsPerAccount == 0 {
		cfg.UploadsPerAccount = 32
	}
	if cfg.GCGrace == 0 {
		cfg.GCGrace = 24 * time.Hour
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = 5 * time.Minute
	}
	if cfg.ChangeRetention == 0 {
		cfg.ChangeRetention = defaultChangeRetention
	}
	if cfg.ChangeKeep == 0 {
		cfg.ChangeKeep = defaultChangeKeep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		meta: m, store: store, cfg: cfg, log: cfg.Logger, secret: cfg.Secret,
		metrics: cfg.Metrics, limits: newThrottle(), mux: http.NewServeMux(),
		uploads: map[int64]int{}, macs: map[int64]*crypto.TransferMAC{}, sessions: newSessionCache(cfg.SessionStamp),
		idem: newIdempotency(),
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	p := wire.APIPrefix
	m := s.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	m.HandleFunc("POST "+p+"/register", s.handle(s.register))
	m.HandleFunc("POST "+p+"/prelogin", s.handle(s.prelogin))
	m.HandleFunc("POST "+p+"/login", s.handle(s.login))
	m.HandleFunc("POST "+p+"/logout", s.authenticated(s.logout))
	m.HandleFunc("GET "+p+"/account", s.authenticated(s.getAccount))
	m.HandleFunc("POST "+p+"/passwd", s.authenticated(s.passwd))

	m.HandleFunc("GET "+p+"/inodes/{id}", s.authenticated(s.getInode))
	m.HandleFunc("PATCH "+p+"/inodes/{id}", s.authenticated(s.setAttr))
	m.HandleFunc("PUT "+p+"/inodes/{id}/xattrs", s.authenticated(s.setXattrs))
	m.HandleFunc("GET "+p+"/dirs/{id}/entries/{index}", s.authenticated(s.lookup))
	m.HandleFunc("GET "+p+"/dirs/{id}/entries", s.authenticated(s.readDir))
	m.HandleFunc("POST "+p+"/dirs/{id}/entries", s.authenticated(s.create))
	m.HandleFunc("POST "+p+"/dirs/{id}/links", s.authenticated(s.link))
	m.HandleFunc("DELETE "+p+"/dirs/{id}/entries/{index}", s.authenticated(s.unlink))
	m.HandleFunc("POST "+p+"/rename", s.authenticated(s.rename))
	m.HandleFunc("GET "+p+"/changes", s.authenticated(s.changes))

	m.HandleFunc("PUT "+p+"/files/{file}/chunks/{index}/{chunk}", s.authenticated(s.putChunk))
	m.HandleFunc("GET "+p+"/chunks/{chunk}", s.authenticated(s.getChunk))
	m.HandleFunc("POST "+p+"/chunks/have", s.authenticated(s.haveChunks))
	m.HandleFunc("POST "+p+"/files/{file}/commit", s.authenticated(s.commit))
	m.HandleFunc("POST "+p+"/small", s.authenticated(s.small))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, &wire.Error{Code: wire.CodeNotFound, Message: "no such endpoint: see docs/protocol.md"})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(sw, r)
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	}
	s.metrics.request(route, sw.status, time.Since(start))
	// Logs carry the route pattern, never the path: paths hold IDs and
	// name indexes, and no token, key or name may reach a log.
	s.log.Debug("request", "route", route, "status", sw.status, "dur", time.Since(start))
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// batchAnswer gathers the TLS records of a large HTTP/1.1 answer into a few
// socket writes (see netbatch); the returned func sends them. Over HTTP/2,
// or on a connection that did not come through netbatch.Listener, it does
// nothing.
func batchAnswer(w http.ResponseWriter, r *http.Request) (end func()) {
	b := netbatch.FromContext(r.Context())
	if b == nil || r.ProtoMajor != 1 {
		return func() {}
	}
	b.Begin()
	return func() {
		// The answer's tail may still sit in the response's buffers.
		http.NewResponseController(w).Flush()
		// A failed send has broken the connection; the client sees a
		// short answer and retries. There is nothing to tell it here.
		_ = b.End()
	}
}

// handle adapts an error-returning handler.
func (s *Server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// readBody reads a whole body of at most limit bytes (413 beyond).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errf(wire.CodeTooLarge, "request body of %d bytes exceeds %d", r.ContentLength, limit)
	}
	if r.ContentLength >= 0 {
		// The usual case: read into a buffer of the announced size
		// (net/http ends the body there) instead of growing one as
		// the bytes arrive and copying it at each step.
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, errf(wire.CodeBadRequest, "reading the request body: %v", err)
		}
		return body, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errf(wire.CodeTooLarge, "request body exceeds %d bytes", limit)
		}
		return nil, errf(wire.CodeBadRequest, "reading the request body: %v", err)
	}
	return body, nil
}

// decodeJSON reads and strictly decodes a JSON body.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, wire.ContentTypeJSON) {
		return badRequest("Content-Type must be %s", wire.ContentTypeJSON)
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	if err := wire.Decode(body, v); err != nil {
		return badRequest("malformed JSON body: %v", err)
	}
	return nil
}

func pathID(r *http.Request, name string) (meta.ID, error) {
	id, err := crypto.ParseID(r.PathValue(name))
	if err != nil {
		return meta.ID{}, badRequest("%s is not a 32-digit hex ID", name)
	}
	return id, nil
}

func pathIndex(r *http.Request) ([]byte, error) {
	x, err := wire.ParseIndex(r.PathValue("index"))
	if err != nil {
		return nil, badRequest("name index is not 64 hex digits")
	}
	return x[:], nil
}

// ifMatch parses If-Match: "<version>" (quotes optional); 0 when absent.
func ifMatch(r *http.Request) (int64, error) {
	v := strings.Trim(strings.TrimPrefix(r.Header.Get(wire.HeaderIfMatch), "W/"), `"`)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, badRequest("If-Match must be a positive inode version")
	}
	return n, nil
}

// Run collects garbage and prunes the change feed every GCInterval until
// ctx is done.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.CollectGarbage(ctx); err != nil {
				s.log.Warn("garbage collection", "err", err)
			} else if n > 0 {
				s.log.Info("garbage collection", "chunks", n)
			}
			if n, err := s.PruneChanges(ctx); err != nil {
				s.log.Warn("pruning the change feed", "err", err)
			} else if n > 0 {
				s.log.Debug("pruning the change feed", "rows", n)
			}
		}
	}
}
