package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/meta"
)

// Change feed retention defaults: an hour covers a mount that was briefly
// offline or suspended, and the row bound keeps one busy account from
// growing the table without limit within that hour. A client behind the
// retention only loses its caches, not data.
const (
	defaultChangeRetention = time.Hour
	defaultChangeKeep      = 100_000
)

// withOrigin attributes the changes a request makes to the client ID in its
// Sealfs-Client header. A missing or malformed ID is ignored rather than
// refused: the origin only lets a client skip its own changes in the feed,
// and an old or foreign client must keep working without one.
func withOrigin(r *http.Request) *http.Request {
	id, err := crypto.ParseID(r.Header.Get(wire.HeaderClient))
	if err != nil {
		return r
	}
	return r.WithContext(meta.WithOrigin(r.Context(), id))
}

// changes answers GET /v1/changes: the account's current seq, and, with
// since, the changes after it.
func (s *Server) changes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := wire.DefaultChangesLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > wire.MaxChangesLimit {
			return badRequest("limit must be 1 to %d", wire.MaxChangesLimit)
		}
		limit = n
	}
	acct := principalOf(r).account.ID
	resp := wire.Changes{Changes: []wire.Change{}}
	if !q.Has("since") {
		seq, err := s.meta.ChangeSeq(r.Context(), acct)
		if err != nil {
			return err
		}
		resp.Seq = seq
		writeJSON(w, http.StatusOK, &resp)
		return nil
	}
	since, err := strconv.ParseInt(q.Get("since"), 10, 64)
	if err != nil || since < 0 {
		return badRequest("since must be a seq the server answered (a non-negative integer)")
	}
	p, err := s.meta.ChangesSince(r.Context(), acct, since, limit)
	if err != nil {
		return err
	}
	resp.Seq, resp.More, resp.Reset = p.Seq, p.More, p.Reset
	for _, c := range p.Changes {
		wc := wire.Change{Seq: c.Seq, Inode: wire.HexID(c.Inode)}
		if c.Dir != nil {
			d := wire.HexID(*c.Dir)
			wc.Dir = &d
		}
		if c.Origin != nil {
			o := wire.HexID(*c.Origin)
			wc.Origin = &o
		}
		resp.Changes = append(resp.Changes, wc)
	}
	writeJSON(w, http.StatusOK, &resp)
	return nil
}

// PruneChanges applies the change feed's retention (Config.ChangeRetention
// and Config.ChangeKeep) to every account and returns how many rows it
// deleted. Run calls it after each garbage collection.
func (s *Server) PruneChanges(ctx context.Context) (int64, error) {
	return s.meta.PruneChanges(ctx, time.Now().Add(-s.cfg.ChangeRetention), s.cfg.ChangeKeep)
}
