package remote

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// TestClientIDHeader checks that every request carries the client's ID, a
// random one per client unless Options chose it.
func TestClientIDHeader(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get(wire.HeaderClient))
		mu.Unlock()
		switch r.URL.Path {
		case "/v1/login":
			io.WriteString(w, `{"token":"t","expires_at":1,"account":{}}`)
		case "/v1/changes":
			io.WriteString(w, `{"seq":0,"changes":[],"more":false,"reset":false}`)
		default:
			io.WriteString(w, "ok")
		}
	})
	ctx := context.Background()
	c := pinned(t, ts)
	if c.ClientID().IsZero() || c.ClientID() == pinned(t, ts).ClientID() {
		t.Fatalf("client IDs are not random: %s", c.ClientID())
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Health(ctx))
	_, err := c.Login(ctx, "alice", []byte("key"))
	must(err)
	_, err = c.Changes(ctx, -1, 0)
	must(err)
	chosen := crypto.NewID()
	c2, err := New(Options{URL: ts.URL, Trust: Trust{Fingerprint: Fingerprint(ts.Certificate())}, ClientID: chosen})
	must(err)
	defer c2.Close()
	if c2.ClientID() != chosen {
		t.Fatalf("ClientID %s, chose %s", c2.ClientID(), chosen)
	}
	must(c2.Health(ctx))

	mu.Lock()
	defer mu.Unlock()
	want := []string{c.ClientID().String(), c.ClientID().String(), c.ClientID().String(), chosen.String()}
	if len(seen) != len(want) {
		t.Fatalf("%d requests seen, want %d", len(seen), len(want))
	}
	for i := range want {
		if id, err := crypto.ParseID(seen[i]); err != nil || seen[i] != want[i] || id.String() != seen[i] {
			t.Fatalf("request %d: %s %q, want %q", i, wire.HeaderClient, seen[i], want[i])
		}
	}
}

// TestChangesQueryAndCheck checks the query Changes sends and that it
// refuses answers that would not let a cursor advance.
func TestChangesQueryAndCheck(t *testing.T) {
	var mu sync.Mutex
	var query url.Values
	answer := ""
	ts := tlsServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		query = r.URL.Query()
		body := answer
		mu.Unlock()
		w.Header().Set("Content-Type", wire.ContentTypeJSON)
		io.WriteString(w, body)
	})
	c := pinned(t, ts)
	ctx := context.Background()
	call := func(body string, since int64, limit int) (*wire.Changes, url.Values, error) {
		mu.Lock()
		answer = body
		mu.Unlock()
		ch, err := c.Changes(ctx, since, limit)
		mu.Lock()
		defer mu.Unlock()
		return ch, query, err
	}

	const id = "00112233445566778899aabbccddeeff"
	ch, q, err := call(`{"seq":4,"changes":[],"more":false,"reset":false}`, -1, 0)
	if err != nil || ch.Seq != 4 || q.Has("since") || q.Has("limit") {
		t.Fatalf("current seq: %+v, query %v, %v", ch, q, err)
	}
	ch, q, err = call(`{"seq":4,"changes":[{"seq":3,"inode":"`+id+`","dir":"00000000000000000000000000000000","origin":"`+id+`"},{"seq":3,"inode":"`+id+`"},{"seq":4,"inode":"`+id+`"}],"more":false,"reset":false}`, 2, 1<<20)
	if err != nil || len(ch.Changes) != 3 || q.Get("since") != "2" || q.Get("limit") != "10000" {
		t.Fatalf("changes: %+v, query %v, %v", ch, q, err)
	}
	if c0 := ch.Changes[0]; c0.Dir == nil || !crypto.ID(*c0.Dir).IsZero() || c0.Origin == nil || crypto.ID(*c0.Origin).String() != id {
		t.Fatalf("first row: %+v", c0)
	}
	if c1 := ch.Changes[1]; c1.Dir != nil || c1.Origin != nil {
		t.Fatalf("second row: %+v", c1)
	}
	if _, _, err := call(`{"seq":1,"changes":[],"more":false,"reset":true}`, 7, 0); err != nil {
		t.Fatalf("reset: %v", err)
	}

	for _, bad := range []struct {
		body  string
		since int64
	}{
		{`{"seq":4,"changes":[{"seq":2,"inode":"` + id + `"}],"more":false}`, 2},                                // not after since
		{`{"seq":4,"changes":[{"seq":4,"inode":"` + id + `"},{"seq":3,"inode":"` + id + `"}],"more":false}`, 2}, // out of order
		{`{"seq":4,"changes":[{"seq":5,"inode":"` + id + `"}],"more":false}`, 2},                                // beyond the seq
		{`{"seq":4,"changes":[],"more":true}`, 2},                                                               // more, but nothing
		{`{"seq":1,"changes":[],"more":false}`, 2},                                                              // seq went back without reset
		{`{"seq":4,"changes":[{"seq":3,"inode":"` + id + `"}],"reset":true}`, 2},                                // changes with reset
		{`{"seq":-1,"changes":[]}`, -1},
	} {
		if _, _, err := call(bad.body, bad.since, 0); err == nil {
			t.Errorf("accepted %s since %d", bad.body, bad.since)
		}
	}
}
