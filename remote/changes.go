package remote

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sealfs/sealfs/remote/wire"
)

// Changes reads the account's change feed (GET /v1/changes). With since < 0
// it asks only for the current seq, the cursor a new cache starts from;
// otherwise it returns up to limit rows of the changes after seq since
// (limit <= 0: the server's default; at most wire.MaxChangesLimit).
//
// The caller continues from the last row's seq while More is true, and
// from Seq once it is false. On Reset it must drop every cache it holds and
// continue from Seq: the server can no longer tell what changed since.
// Rows whose Origin is ClientID() are the caller's own changes.
//
// The answer is checked for consistency (rows in seq order, after since and
// no later than Seq) so that a cursor built from it always advances.
func (c *Client) Changes(ctx context.Context, since int64, limit int) (*wire.Changes, error) {
	out := new(wire.Changes)
	r, _ := jsonRequest(http.MethodGet, "/changes", nil, out)
	q := url.Values{}
	if since >= 0 {
		q.Set("since", strconv.FormatInt(since, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(min(limit, wire.MaxChangesLimit)))
	}
	r.query = q
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	if err := checkChanges(since, out); err != nil {
		return nil, fmt.Errorf("GET /v1/changes: the server's answer is inconsistent: %w", err)
	}
	return out, nil
}

// checkChanges checks what a caller relies on to advance its cursor: a
// server that broke these rules (by a bug, or a compromised one) could
// otherwise make a cache skip changes or loop forever.
func checkChanges(since int64, ch *wire.Changes) error {
	switch {
	case ch.Seq < 0:
		return fmt.Errorf("seq %d", ch.Seq)
	case since < 0 || ch.Reset:
		if len(ch.Changes) != 0 || ch.More {
			return fmt.Errorf("%d changes (more %v) in an answer without any", len(ch.Changes), ch.More)
		}
		return nil
	case since > ch.Seq:
		return fmt.Errorf("seq %d is before the cursor %d, yet no reset", ch.Seq, since)
	case ch.More && len(ch.Changes) == 0:
		return fmt.Errorf("more changes announced, none listed")
	}
	prev := since
	for _, c := range ch.Changes {
		if c.Seq < prev || c.Seq == since || c.Seq > ch.Seq {
			return fmt.Errorf("change seq %d after %d, cursor %d, seq %d", c.Seq, prev, since, ch.Seq)
		}
		prev = c.Seq
	}
	return nil
}
