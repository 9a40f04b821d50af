package vault

import (
	"context"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// TestChangeFeedBetweenDevices follows the change feed from a second device
// against the real server: it sees the first device's changes attributed
// to that device's client ID, its own attributed to itself, and is told to
// reset when its cursor is beyond the server's.
func TestChangeFeedBetweenDevices(t *testing.T) {
	ctx := context.Background()
	f, v := newVault(t)
	c2 := f.client(t)
	v2, _, err := Login(ctx, c2, "alice", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Client().ClientID() == c2.ClientID() {
		t.Fatal("two devices share a client ID")
	}
	start, err := c2.Changes(ctx, -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	cursor := start.Seq

	// next returns the rows of the one change made since the last call.
	next := func(what string) []wire.Change {
		t.Helper()
		ch, err := c2.Changes(ctx, cursor, 0)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ch.Reset || ch.More || ch.Seq != cursor+1 || len(ch.Changes) == 0 {
			t.Fatalf("%s: %+v after %d, want one change", what, ch, cursor)
		}
		cursor = ch.Seq
		return ch.Changes
	}
	from := func(c wire.Change) crypto.ID {
		if c.Origin == nil {
			return crypto.ID{}
		}
		return crypto.ID(*c.Origin)
	}

	d, err := v.Mkdir(ctx, crypto.ID{}, "from1", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	rows := next("device 1's mkdir")
	if len(rows) != 1 || crypto.ID(rows[0].Inode) != d.ID || rows[0].Dir == nil || !crypto.ID(*rows[0].Dir).IsZero() ||
		from(rows[0]) != v.Client().ClientID() {
		t.Fatalf("device 1's mkdir: %+v", rows)
	}
	n, err := v2.Mkdir(ctx, d.ID, "from2", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	rows = next("device 2's mkdir")
	if len(rows) != 1 || crypto.ID(rows[0].Inode) != n.ID || crypto.ID(*rows[0].Dir) != d.ID || from(rows[0]) != c2.ClientID() {
		t.Fatalf("device 2's mkdir: %+v", rows)
	}
	if err := v.Rename(ctx, n, crypto.ID{}, "moved", wire.RenameNoReplace, nil); err != nil {
		t.Fatal(err)
	}
	rows = next("device 1's move")
	if len(rows) != 2 || crypto.ID(rows[0].Inode) != n.ID || crypto.ID(rows[1].Inode) != n.ID {
		t.Fatalf("device 1's move: %+v", rows)
	}

	ch, err := c2.Changes(ctx, cursor+10, 0)
	if err != nil || !ch.Reset || ch.Seq != cursor {
		t.Fatalf("a cursor beyond the seq: %+v, %v", ch, err)
	}
}
