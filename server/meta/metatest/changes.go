package metatest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/meta"
)

// row is a change row as tests spell it; dir is nil when the change names
// no directory.
type row struct {
	inode meta.ID
	dir   *meta.ID
}

func (r row) String() string {
	if r.dir == nil {
		return fmt.Sprintf("(%x)", r.inode[:4])
	}
	return fmt.Sprintf("(%x in %x)", r.inode[:4], r.dir[:4])
}

func at(inode meta.ID, dir meta.ID) row { return row{inode, &dir} }

func only(inode meta.ID) row { return row{inode: inode} }

// feed follows one account's change feed as a client would.
type feed struct {
	t      *testing.T
	s      meta.Store
	acct   int64
	cursor int64
}

func newFeed(t *testing.T, s meta.Store, acct int64) *feed {
	t.Helper()
	seq, err := s.ChangeSeq(t.Context(), acct)
	noErr(t, "ChangeSeq", err)
	return &feed{t: t, s: s, acct: acct, cursor: seq}
}

// next checks that exactly one change was committed since the last call,
// made by origin (nil for none), with exactly the given rows in any order.
func (f *feed) next(what string, origin *meta.ID, want ...row) {
	f.t.Helper()
	p, err := f.s.ChangesSince(f.t.Context(), f.acct, f.cursor, 0)
	noErr(f.t, what+": ChangesSince", err)
	if p.Reset || p.More || p.Seq != f.cursor+1 {
		f.t.Fatalf("%s: seq %d after %d, reset %v, more %v; want one change", what, p.Seq, f.cursor, p.Reset, p.More)
	}
	var got []string
	for _, c := range p.Changes {
		if c.Seq != p.Seq {
			f.t.Fatalf("%s: row of seq %d in change %d", what, c.Seq, p.Seq)
		}
		if (c.Origin == nil) != (origin == nil) || (origin != nil && *c.Origin != *origin) {
			f.t.Fatalf("%s: origin %v, want %v", what, c.Origin, origin)
		}
		got = append(got, row{c.Inode, c.Dir}.String())
	}
	var wantS []string
	for _, r := range want {
		wantS = append(wantS, r.String())
	}
	slices.Sort(got)
	slices.Sort(wantS)
	if !slices.Equal(got, wantS) {
		f.t.Fatalf("%s: rows %v, want %v", what, got, wantS)
	}
	f.cursor = p.Seq
}

// none checks that nothing was committed since the last call.
func (f *feed) none(what string) {
	f.t.Helper()
	seq, err := f.s.ChangeSeq(f.t.Context(), f.acct)
	noErr(f.t, what+": ChangeSeq", err)
	if seq != f.cursor {
		p, _ := f.s.ChangesSince(f.t.Context(), f.acct, f.cursor, 0)
		f.t.Fatalf("%s recorded changes: %+v", what, p.Changes)
	}
}

// testChangeRecording checks the rows every kind of change records, that
// they carry the origin of the context, and that failures and no-ops
// record nothing.
func testChangeRecording(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	f := newFeed(t, s, acct)
	wantEq(t, "seq of a new account", f.cursor, int64(0))
	me := newID()
	mctx := meta.WithOrigin(ctx, me)
	if got, ok := meta.OriginOf(mctx); !ok || got != me {
		t.Fatalf("OriginOf = %x, %v", got, ok)
	}
	mine := func(r meta.CreateRequest) meta.Inode {
		t.Helper()
		in, err := s.Create(mctx, acct, r)
		noErr(t, "Create", err)
		return in
	}

	d := mine(createReq(root, "d", meta.TypeDir))
	f.next("mkdir", &me, at(d.ID, root))
	x := mine(createReq(d.ID, "x", meta.TypeFile))
	f.next("create", &me, at(x.ID, d.ID))
	_, err := s.Create(mctx, acct, createReq(d.ID, "x", meta.TypeFile))
	wantErr(t, "create onto a taken name", err, meta.ErrExists)
	f.none("failed create")

	// Without an origin in the context, rows have none.
	l := create(t, s, acct, root, "l", meta.TypeSymlink)
	f.next("symlink without origin", nil, at(l.ID, root))

	// Create with content, and commits with and without new chunks.
	c := putChunk(t, s, acct, x.ID, 0, 10)
	f.none("PutChunk")
	cr := createReq(root, "g", meta.TypeFile)
	cr.Content = &meta.FileContent{Manifest: manifest("kek1", "g"), Chunks: positions(c)}
	g := mine(cr)
	f.next("create with content", &me, at(g.ID, root))
	_, err = s.Commit(mctx, acct, meta.CommitRequest{File: x.ID, Manifest: manifest("kek1", "x"), Chunks: positions(c)})
	noErr(t, "Commit", err)
	f.next("commit", &me, only(x.ID))
	nc := chunkRec(x.ID, 0, 5)
	_, err = s.Commit(mctx, acct, meta.CommitRequest{File: x.ID, Manifest: manifest("kek1", "x2"),
		Chunks: positions(nc), NewChunks: []meta.ChunkRecord{nc}})
	noErr(t, "Commit with new chunks", err)
	f.next("commit with new chunks", &me, only(x.ID))
	_, err = s.Commit(mctx, acct, meta.CommitRequest{File: x.ID, IfVersion: 1, Manifest: manifest("kek1", "x3")})
	wantErr(t, "stale commit", err, meta.ErrVersionMismatch)
	_, err = s.Commit(mctx, acct, meta.CommitRequest{File: x.ID, Manifest: manifest("kek1", "x3"), Chunks: positions(chunkRec(x.ID, 0, 1))})
	wantErr(t, "commit with a missing chunk", err, meta.ErrMissingChunks)
	f.none("failed commits")

	_, err = s.SetAttr(mctx, acct, x.ID, 0, []byte("a2"))
	noErr(t, "SetAttr", err)
	f.next("setattr", &me, only(x.ID))
	_, err = s.SetAttr(mctx, acct, x.ID, 1, []byte("a3"))
	wantErr(t, "stale SetAttr", err, meta.ErrVersionMismatch)
	f.none("failed setattr")

	_, err = s.Link(mctx, acct, meta.LinkRequest{Parent: root, NameIndex: idx("xl"), SealedName: sealed(root, "xl"), Target: x.ID})
	noErr(t, "Link", err)
	f.next("link", &me, at(x.ID, root))
	_, err = s.Link(mctx, acct, meta.LinkRequest{Parent: root, NameIndex: idx("dl"), SealedName: sealed(root, "dl"), Target: d.ID})
	wantErr(t, "link to a dir", err, meta.ErrNotPermitted)
	f.none("failed link")
	noErr(t, "Unlink", s.Unlink(mctx, acct, root, idx("xl"), meta.UnlinkFile))
	f.next("unlink of one of two links", &me, at(x.ID, root))

	// Renames.
	r := renamer{t, s, acct}
	rename := func(flag meta.RenameFlag, sp meta.ID, sn string, dp meta.ID, dn string) error {
		req := meta.RenameRequest{SrcParent: sp, SrcIndex: idx(sn), DstParent: dp, DstIndex: idx(dn),
			NewSrcSealedName: sealed(dp, dn+"#new"), Flag: flag}
		if flag == meta.RenameExchange {
			req.NewDstSealedName = sealed(sp, sn+"#new")
		}
		return s.Rename(mctx, acct, req)
	}
	noErr(t, "move", rename(meta.RenameReplace, d.ID, "x", root, "y"))
	f.next("move across directories", &me, at(x.ID, d.ID), at(x.ID, root))
	noErr(t, "rename in place", rename(meta.RenameNoReplace, root, "y", root, "z"))
	f.next("rename within a directory", &me, at(x.ID, root))
	noErr(t, "rename onto itself", rename(meta.RenameReplace, root, "z", root, "z"))
	f.none("rename onto itself")
	wantErr(t, "noreplace onto a taken name", rename(meta.RenameNoReplace, root, "z", root, "g"), meta.ErrExists)
	f.none("failed rename")

	h := mine(createReq(d.ID, "h", meta.TypeFile))
	f.next("create h", &me, at(h.ID, d.ID))
	noErr(t, "replace", rename(meta.RenameReplace, d.ID, "h", root, "z"))
	f.next("replace across directories", &me, at(h.ID, d.ID), at(h.ID, root), at(x.ID, root))
	r.missing(d.ID, "h")
	noErr(t, "replace in place", rename(meta.RenameReplace, root, "g", root, "z"))
	f.next("replace within a directory", &me, at(g.ID, root), at(h.ID, root))

	e := mine(createReq(d.ID, "e", meta.TypeDir))
	f.next("mkdir e", &me, at(e.ID, d.ID))
	noErr(t, "exchange", rename(meta.RenameExchange, root, "z", d.ID, "e"))
	f.next("exchange across directories", &me, at(g.ID, root), at(g.ID, d.ID), at(e.ID, d.ID), at(e.ID, root))
	noErr(t, "exchange in place", rename(meta.RenameExchange, root, "z", root, "l"))
	f.next("exchange within a directory", &me, at(e.ID, root), at(l.ID, root))

	// Removals.
	noErr(t, "rmdir", s.Unlink(mctx, acct, root, idx("l"), meta.UnlinkDir))
	f.next("rmdir", &me, at(e.ID, root))
	wantErr(t, "rmdir of a non-empty dir", s.Unlink(mctx, acct, root, idx("d"), meta.UnlinkDir), meta.ErrNotEmpty)
	f.none("failed rmdir")
	noErr(t, "unlink", s.Unlink(mctx, acct, d.ID, idx("e"), meta.UnlinkFile))
	f.next("unlink of a last link", &me, at(g.ID, d.ID))

	// Work that changes nothing a client caches records nothing.
	_, _, err = s.PutChunk(mctx, acct, chunkRec(d.ID, 0, 1))
	noErr(t, "PutChunk", err)
	for _, sc := range garbage(t, s) {
		_, err := s.DeleteChunk(ctx, sc.Account, sc.ID)
		noErr(t, "DeleteChunk", err)
	}
	f.none("PutChunk and DeleteChunk")
}

// testChangePaging checks that pages come in seq order, never split a
// change, and together are the whole feed.
func testChangePaging(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	a := create(t, s, acct, root, "a", meta.TypeDir)
	create(t, s, acct, root, "b", meta.TypeDir)
	r := renamer{t, s, acct}
	for i := range 10 {
		create(t, s, acct, a.ID, fmt.Sprint("f", i), meta.TypeFile)
		// Four rows in one change.
		noErr(t, "exchange", r.rename(meta.RenameExchange, a.ID, fmt.Sprint("f", i), root, "b"))
		noErr(t, "exchange back", r.rename(meta.RenameExchange, a.ID, fmt.Sprint("f", i), root, "b"))
	}
	all, err := s.ChangesSince(ctx, acct, 0, meta.MaxPage)
	noErr(t, "ChangesSince", err)
	wantEq(t, "seq", all.Seq, int64(2+30))
	wantEq(t, "rows", len(all.Changes), 2+10*(1+4+4))
	if all.More || all.Reset {
		t.Fatalf("whole feed: more %v, reset %v", all.More, all.Reset)
	}
	for _, limit := range []int{1, 3, 4, 5, 7} {
		var got []meta.Change
		cursor := int64(0)
		for pages := 0; ; pages++ {
			if pages > len(all.Changes) {
				t.Fatalf("limit %d: the feed does not advance", limit)
			}
			p, err := s.ChangesSince(ctx, acct, cursor, limit)
			noErr(t, "ChangesSince", err)
			if p.Reset || len(p.Changes) == 0 {
				t.Fatalf("limit %d, after %d: reset %v, %d rows", limit, cursor, p.Reset, len(p.Changes))
			}
			if len(p.Changes) > max(limit, 4) {
				t.Fatalf("limit %d: page of %d rows", limit, len(p.Changes))
			}
			if p.Changes[0].Seq != cursor+1 {
				t.Fatalf("limit %d: page after %d starts at %d", limit, cursor, p.Changes[0].Seq)
			}
			got = append(got, p.Changes...)
			cursor = p.Changes[len(p.Changes)-1].Seq
			if !p.More {
				wantEq(t, "last page ends at the seq", cursor, p.Seq)
				break
			}
		}
		if len(got) != len(all.Changes) {
			t.Fatalf("limit %d: %d rows in pages, %d in one", limit, len(got), len(all.Changes))
		}
		for i := range got {
			g, w := got[i], all.Changes[i]
			if g.Seq != w.Seq || g.Inode != w.Inode || (g.Dir == nil) != (w.Dir == nil) || (g.Dir != nil && *g.Dir != *w.Dir) {
				t.Fatalf("limit %d: row %d is %+v, want %+v", limit, i, g, w)
			}
		}
	}
	p, err := s.ChangesSince(ctx, acct, all.Seq, 0)
	noErr(t, "ChangesSince at the end", err)
	if len(p.Changes) != 0 || p.More || p.Reset || p.Seq != all.Seq {
		t.Fatalf("at the end: %+v", p)
	}
	p, err = s.ChangesSince(ctx, acct, all.Seq+1, 0)
	noErr(t, "ChangesSince beyond the end", err)
	if len(p.Changes) != 0 || !p.Reset || p.Seq != all.Seq {
		t.Fatalf("beyond the end: %+v", p)
	}
	_, err = s.ChangesSince(ctx, acct, -1, 0)
	wantErr(t, "negative since", err, meta.ErrInvalid)
	_, err = s.ChangesSince(ctx, 1<<40, 0, 0)
	wantErr(t, "ChangesSince of a missing account", err, meta.ErrNotFound)
	_, err = s.ChangeSeq(ctx, 1<<40)
	wantErr(t, "ChangeSeq of a missing account", err, meta.ErrNotFound)
}

// testChangePruning checks retention by count and by age, that it never
// splits a change, and that readers behind it are told to reset.
func testChangePruning(t *testing.T, s meta.Store) {
	ctx := t.Context()
	acct := newAccount(t, s, "alice").ID
	other := newAccount(t, s, "bob").ID
	d := create(t, s, acct, root, "d", meta.TypeDir)
	for i := range 5 {
		create(t, s, acct, d.ID, fmt.Sprint("f", i), meta.TypeFile) // seqs 2-6
	}
	r := renamer{t, s, acct}
	noErr(t, "move", r.rename(meta.RenameReplace, d.ID, "f0", root, "g")) // seq 7, two rows
	create(t, s, other, root, "o", meta.TypeFile)
	_, err := s.PruneChanges(ctx, time.Now().Add(-time.Hour), -1)
	wantErr(t, "negative keep", err, meta.ErrInvalid)

	// Nothing old, and fewer rows than kept: nothing goes.
	n, err := s.PruneChanges(ctx, time.Now().Add(-time.Hour), 100)
	noErr(t, "PruneChanges", err)
	wantEq(t, "rows pruned", n, int64(0))
	p, err := s.ChangesSince(ctx, acct, 0, 0)
	noErr(t, "ChangesSince", err)
	wantEq(t, "rows", len(p.Changes), 8)

	// Keep one row: the last change has two, so it goes whole and the
	// whole feed is pruned.
	n, err = s.PruneChanges(ctx, time.Now().Add(-time.Hour), 1)
	noErr(t, "PruneChanges", err)
	wantEq(t, "rows pruned", n, int64(8))
	for _, since := range []int64{0, 3, 6} {
		p, err = s.ChangesSince(ctx, acct, since, 0)
		noErr(t, "ChangesSince", err)
		if !p.Reset || len(p.Changes) != 0 || p.Seq != 7 {
			t.Fatalf("since %d after pruning: %+v", since, p)
		}
	}
	p, err = s.ChangesSince(ctx, acct, 7, 0)
	noErr(t, "ChangesSince", err)
	if p.Reset || len(p.Changes) != 0 || p.Seq != 7 {
		t.Fatalf("up-to-date reader after pruning: %+v", p)
	}
	// The other account's feed is its own.
	p, err = s.ChangesSince(ctx, other, 0, 0)
	noErr(t, "ChangesSince", err)
	if p.Reset || len(p.Changes) != 1 || p.Seq != 1 {
		t.Fatalf("Bob's feed after pruning (its one row is within keep): %+v", p)
	}

	// Keep three rows of f8 f9 (one each) and a move (two rows): the move
	// and f9 stay, f8 goes.
	create(t, s, acct, d.ID, "f8", meta.TypeFile)                         // seq 8
	create(t, s, acct, d.ID, "f9", meta.TypeFile)                         // seq 9
	noErr(t, "move", r.rename(meta.RenameReplace, d.ID, "f1", root, "h")) // seq 10
	_, err = s.PruneChanges(ctx, time.Now().Add(-time.Hour), 3)
	noErr(t, "PruneChanges", err)
	p, err = s.ChangesSince(ctx, acct, 7, 0)
	noErr(t, "ChangesSince", err)
	wantEq(t, "reset below the pruning", p.Reset, true)
	p, err = s.ChangesSince(ctx, acct, 8, 0)
	noErr(t, "ChangesSince", err)
	if p.Reset || len(p.Changes) != 3 || p.Changes[0].Seq != 9 {
		t.Fatalf("after keeping 3 rows: %+v", p)
	}

	// By age: everything before now goes, later changes stay.
	cutoff := time.Now()
	time.Sleep(time.Millisecond)
	create(t, s, acct, d.ID, "new", meta.TypeFile) // seq 11
	_, err = s.PruneChanges(ctx, cutoff, 1000)
	noErr(t, "PruneChanges", err)
	p, err = s.ChangesSince(ctx, acct, 9, 0)
	noErr(t, "ChangesSince", err)
	wantEq(t, "reset below the age cutoff", p.Reset, true)
	p, err = s.ChangesSince(ctx, acct, 10, 0)
	noErr(t, "ChangesSince", err)
	if p.Reset || len(p.Changes) != 1 || p.Changes[0].Seq != 11 {
		t.Fatalf("after pruning by age: %+v", p)
	}
	// Pruning is idempotent and changes continue from the same seq.
	n, err = s.PruneChanges(ctx, cutoff, 1000)
	noErr(t, "PruneChanges again", err)
	wantEq(t, "rows pruned again", n, int64(0))
	create(t, s, acct, d.ID, "newer", meta.TypeFile)
	seq, err := s.ChangeSeq(ctx, acct)
	noErr(t, "ChangeSeq", err)
	wantEq(t, "seq after pruning", seq, int64(12))
}

// testChangeIsolation checks that a feed shows only its account's changes,
// and that a failed attempt on another account's objects records nothing
// in either feed.
func testChangeIsolation(t *testing.T, s meta.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "alice").ID
	b := newAccount(t, s, "bob").ID
	fa, fb := newFeed(t, s, a), newFeed(t, s, b)
	d := create(t, s, a, root, "d", meta.TypeDir)
	fa.next("Alice's mkdir", nil, at(d.ID, root))
	_, err := s.Create(ctx, b, createReq(d.ID, "x", meta.TypeFile))
	wantErr(t, "Bob's create in Alice's dir", err, meta.ErrNotFound)
	_, err = s.SetAttr(ctx, b, d.ID, 0, []byte("mine"))
	wantErr(t, "Bob's SetAttr", err, meta.ErrNotFound)
	fa.none("Bob's attempts, in Alice's feed")
	fb.none("Bob's attempts, in Bob's feed")
	g := create(t, s, b, root, "g", meta.TypeFile)
	fb.next("Bob's create", nil, at(g.ID, root))
	fa.none("Bob's create, in Alice's feed")
	p, err := s.ChangesSince(ctx, b, 0, 0)
	noErr(t, "ChangesSince", err)
	for _, c := range p.Changes {
		if c.Inode == d.ID {
			t.Fatal("Bob's feed shows Alice's directory")
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.ChangesSince(cancelled, a, 0, 0)
	wantErr(t, "cancelled ChangesSince", err, context.Canceled)
}
