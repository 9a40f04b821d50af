package server_test

import (
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// haveSet asks which of ids the server holds for c.
func haveSet(t *testing.T, c *client, ids ...crypto.ID) map[crypto.ID]bool {
	t.Helper()
	var hr wire.HaveResponse
	c.have(ids...).want(t, 200, &hr)
	set := map[crypto.ID]bool{}
	for _, id := range hr.Have {
		set[crypto.ID(id)] = true
	}
	return set
}

// storeState is what a refused upload must leave unchanged.
type storeState struct {
	files  int // blob files
	chunks int // chunk records, blob or inline
	used   int64
}

func (e *testEnv) state(user string) storeState {
	return storeState{files: len(e.blobFiles()), chunks: len(e.chunks()), used: e.acct(user).UsedBytes}
}

func (e *testEnv) wantUnchanged(t *testing.T, user string, before storeState, c *client, ids ...crypto.ID) {
	t.Helper()
	if after := e.state(user); after != before {
		t.Fatalf("store changed by a refused upload: %+v, was %+v", after, before)
	}
	if h := haveSet(t, c, ids...); len(h) != 0 {
		t.Fatalf("the server holds refused chunks %v", h)
	}
	var acct wire.Account
	c.do("GET", "/v1/account", nil).want(t, 200, &acct)
	if acct.UsedBytes != before.used {
		t.Fatalf("GET /v1/account says %d bytes used, want %d", acct.UsedBytes, before.used)
	}
}

// firstChunk is the ID of chunk 0 of file id, from its manifest.
func (e *testEnv) firstChunk(t *testing.T, c *client, id crypto.ID) crypto.ID {
	t.Helper()
	var in wire.Inode
	c.do("GET", "/v1/inodes/"+id.String()+"?manifest=1", nil).want(t, 200, &in)
	m, err := crypto.OpenManifest(c.a.keys.Manifest, id, in.Manifest)
	must(t, err)
	return m.Chunks[0].ID
}
