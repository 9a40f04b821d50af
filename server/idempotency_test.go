package server_test

import (
	"sync"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

// TestIdempotencyKey repeats changes with the key of an earlier attempt, as
// a client does when the answer was lost: each is applied once and every
// attempt gets the first one's answer. Without the key, the repeated
// exchange swaps back under names sealed for the other inode, and the
// repeated create answers "exists".
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	a := c.mustUpload(t, rootID, "a", []byte("content a"))
	b := c.mustUpload(t, rootID, "b", []byte("content b"))
	key := func() string { return crypto.NewID().String() }

	k := key()
	ex := renameReq(t, c.a, rootID, "a", a, rootID, "b", wire.RenameExchange, b)
	for range 2 {
		c.json("POST", "/v1/rename", ex, wire.HeaderIdempotencyKey, k).want(t, 200, nil)
	}
	if ent := lookupOf(t, c, rootID, "a"); crypto.ID(ent.Inode.ID) != b {
		t.Fatal("a repeated exchange was applied again")
	}
	c.mustRead(t, a, []byte("content a"))
	back := renameReq(t, c.a, rootID, "a", b, rootID, "b", wire.RenameExchange, a)
	c.json("POST", "/v1/rename", back, wire.HeaderIdempotencyKey, key()).want(t, 200, nil)
	if ent := lookupOf(t, c, rootID, "a"); crypto.ID(ent.Inode.ID) != a {
		t.Fatal("an exchange with a new key was not applied")
	}

	// Repeats that arrive together: one applies, all get its answer.
	k = key()
	id := crypto.NewID()
	cr := c.a.createReq(t, rootID, "new", id, wire.TypeFile, "")
	var wg sync.WaitGroup
	answers := make([]*resp, 4)
	for i := range answers {
		wg.Go(func() {
			answers[i] = c.json("POST", "/v1/dirs/"+rootID.String()+"/entries", cr, wire.HeaderIdempotencyKey, k)
		})
	}
	wg.Wait()
	for _, r := range answers {
		var in wire.Inode
		r.want(t, 201, &in)
		if crypto.ID(in.ID) != id || string(r.body) != string(answers[0].body) {
			t.Fatalf("repeated create answered %s, the first %s", r.body, answers[0].body)
		}
	}
	c.json("POST", "/v1/dirs/"+rootID.String()+"/entries", cr).wantErr(t, 409, wire.CodeExists)

	// A key is one request's: reused for another, it is refused.
	c.json("POST", "/v1/rename", ex, wire.HeaderIdempotencyKey, k).wantErr(t, 400, wire.CodeBadRequest)
	c.json("POST", "/v1/rename", ex, wire.HeaderIdempotencyKey, "not-hex").wantErr(t, 400, wire.CodeBadRequest)

	// Keys are per account: bob's repeat of alice's key is his own change.
	bob := e.register("bob")
	bcr := bob.a.createReq(t, rootID, "new", crypto.NewID(), wire.TypeFile, "")
	bob.json("POST", "/v1/dirs/"+rootID.String()+"/entries", bcr, wire.HeaderIdempotencyKey, k).want(t, 201, nil)
}
