package metatest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sealfs/sealfs/server/meta"
)

// testConcurrentCreates checks for lost updates: every create in one
// directory bumps the same row, the directory's version.
func testConcurrentCreates(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	d := create(t, s, acct, root, "d", meta.TypeDir)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Create(t.Context(), acct, createReq(d.ID, fmt.Sprintf("w%d-%d", w, i), meta.TypeFile)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	page, more, err := s.ReadDir(t.Context(), acct, d.ID, nil, meta.MaxPage)
	noErr(t, "ReadDir", err)
	if len(page) != workers*each || more {
		t.Fatalf("%d entries (more %v), want %d", len(page), more, workers*each)
	}
	wantEq(t, "dir version", getInode(t, s, acct, d.ID).Version, int64(1+workers*each))
}

// testConcurrentSameName races creates of one name, among creates of other
// names that succeed (so that an implementation batching writes gets
// batches mixing both): exactly one wins, and the losers leave nothing
// behind, not even their inode.
func testConcurrentSameName(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	const n = 24
	reqs := make([]meta.CreateRequest, 2*n)
	for i := range reqs {
		name := "contended"
		if i%2 == 1 {
			name = fmt.Sprintf("other%d", i)
		}
		reqs[i] = createReq(root, name, meta.TypeFile)
	}
	var wins atomic.Int32
	parallel(t, len(reqs), func(i int) error {
		_, err := s.Create(t.Context(), acct, reqs[i])
		switch {
		case err == nil:
			if i%2 == 0 {
				wins.Add(1)
			}
		case i%2 == 1 || !errors.Is(err, meta.ErrExists):
			return err
		}
		return nil
	})
	wantEq(t, "winners", wins.Load(), int32(1))
	e, _ := lookup(t, s, acct, root, "contended")
	for i, r := range reqs {
		_, err := s.GetInode(t.Context(), acct, r.Inode.ID)
		if i%2 == 1 || r.Inode.ID == e.Child {
			noErr(t, "created inode", err)
		} else {
			wantErr(t, "loser's inode", err, meta.ErrNotFound)
		}
	}
	wantEq(t, "root version", getInode(t, s, acct, root).Version, int64(2+n))
}

// testConcurrentQuota races uploads against a quota: the checks and the
// usage updates must serialize, so exactly the chunks that fit are stored.
func testConcurrentQuota(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	noErr(t, "SetQuota", s.SetQuota(t.Context(), "alice", 1000))
	var stored atomic.Int32
	parallel(t, 50, func(i int) error {
		_, _, err := s.PutChunk(t.Context(), acct, chunkRec(newID(), uint64(i), 100))
		switch {
		case err == nil:
			stored.Add(1)
		case !errors.Is(err, meta.ErrQuota):
			return err
		}
		return nil
	})
	wantEq(t, "stored chunks", stored.Load(), int32(10))
	wantEq(t, "used bytes", usedBytes(t, s, acct), int64(1000))
}

// testConcurrentLinks races link count updates on one inode.
func testConcurrentLinks(t *testing.T, s meta.Store) {
	acct := newAccount(t, s, "alice").ID
	f := create(t, s, acct, root, "f", meta.TypeFile)
	const n = 32
	parallel(t, n, func(i int) error {
		name := fmt.Sprintf("link%d", i)
		_, err := s.Link(t.Context(), acct, meta.LinkRequest{Parent: root, NameIndex: idx(name), SealedName: sealed(root, name), Target: f.ID})
		return err
	})
	in := getInode(t, s, acct, f.ID)
	wantEq(t, "nlink", in.Nlink, int64(n+1))
	wantEq(t, "version", in.Version, int64(n+1))
	parallel(t, n, func(i int) error {
		return s.Unlink(t.Context(), acct, root, idx(fmt.Sprintf("link%d", i)), meta.UnlinkFile)
	})
	in = getInode(t, s, acct, f.ID)
	wantEq(t, "nlink after unlinking", in.Nlink, int64(1))
}
