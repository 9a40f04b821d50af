package server_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
)

func (c *client) changes(query string) *resp { return c.do("GET", "/v1/changes"+query, nil) }

// wantChanges checks a 200 answer of GET /v1/changes and decodes it
// strictly, as the protocol's types define it.
func (r *resp) wantChanges(t *testing.T) wire.Changes {
	t.Helper()
	r.want(t, 200, nil)
	var ch wire.Changes
	if err := wire.Decode(r.body, &ch); err != nil {
		t.Fatalf("changes answer %q: %v", r.body, err)
	}
	if ch.Changes == nil {
		t.Fatalf("changes answer %q has no changes array", r.body)
	}
	return ch
}

// follower reads an account's change feed as a mount would.
type follower struct {
	t      *testing.T
	c      *client
	cursor int64
}

// follow starts at the account's current seq, as a new client does.
func follow(t *testing.T, c *client) *follower {
	t.Helper()
	ch := c.changes("").wantChanges(t)
	if len(ch.Changes) != 0 || ch.More || ch.Reset {
		t.Fatalf("GET /v1/changes without since: %+v", ch)
	}
	return &follower{t: t, c: c, cursor: ch.Seq}
}

// row is a change row as tests spell it.
type row struct {
	inode crypto.ID
	dir   *crypto.ID
}

func (r row) String() string {
	if r.dir == nil {
		return r.inode.String()[:8]
	}
	return r.inode.String()[:8] + " in " + r.dir.String()[:8]
}

func at(inode, dir crypto.ID) row { return row{inode, &dir} }

func only(inode crypto.ID) row { return row{inode: inode} }

// next checks that exactly one change was made since the last call, by the
// client with ID origin ("" for none), with exactly the given rows.
func (f *follower) next(what, origin string, want ...row) {
	f.t.Helper()
	ch := f.c.changes(fmt.Sprintf("?since=%d", f.cursor)).wantChanges(f.t)
	if ch.Reset || ch.More || ch.Seq != f.cursor+1 {
		f.t.Fatalf("%s: seq %d after %d, reset %v, more %v; want one change", what, ch.Seq, f.cursor, ch.Reset, ch.More)
	}
	var got, wantS []string
	for _, c := range ch.Changes {
		o := ""
		if c.Origin != nil {
			o = crypto.ID(*c.Origin).String()
		}
		if c.Seq != ch.Seq || o != origin {
			f.t.Fatalf("%s: row of seq %d from %q, want seq %d from %q", what, c.Seq, o, ch.Seq, origin)
		}
		r := row{inode: crypto.ID(c.Inode)}
		if c.Dir != nil {
			d := crypto.ID(*c.Dir)
			r.dir = &d
		}
		got = append(got, r.String())
	}
	for _, r := range want {
		wantS = append(wantS, r.String())
	}
	slices.Sort(got)
	slices.Sort(wantS)
	if !slices.Equal(got, wantS) {
		f.t.Fatalf("%s: rows %v, want %v", what, got, wantS)
	}
	f.cursor = ch.Seq
}

// none checks that nothing was recorded since the last call.
func (f *follower) none(what string) {
	f.t.Helper()
	if ch := f.c.changes("").wantChanges(f.t); ch.Seq != f.cursor {
		f.t.Fatalf("%s recorded changes: seq %d, was %d", what, ch.Seq, f.cursor)
	}
}

// smallFile builds a POST /v1/small of content as generation gen of file
// id, creating it as name in parent unless name is empty.
func smallFile(t *testing.T, c *client, parent, id crypto.ID, gen uint64, content []byte, name string) (*wire.SmallHeader, []byte) {
	t.Helper()
	chunks, commit := c.a.seal(t, id, gen, content)
	if len(chunks) != 1 {
		t.Fatal("not a one-chunk file")
	}
	hdr := &wire.SmallHeader{File: wire.HexID(id), Commit: *commit,
		Chunk: &wire.SmallChunk{ID: wire.HexID(chunks[0].ref.ID), MAC: chunks[0].mac}}
	if name != "" {
		hdr.Parent = wire.HexID(parent)
		x, sealed := c.a.name(t, parent, id, name)
		hdr.Create = &wire.CreateRequest{Index: x, SealedName: sealed,
			Inode: wire.NewInode{ID: wire.HexID(id), Type: wire.TypeFile, Attr: commit.Attr}}
	}
	return hdr, chunks[0].body
}

// TestChangeFeedRecords makes every kind of change over the API and checks
// the rows each records, with the origin its request carried.
func TestChangeFeedRecords(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	me := crypto.NewID().String()
	c.origin = me
	f := follow(t, c)
	if f.cursor != 0 {
		t.Fatalf("a new account starts at seq %d", f.cursor)
	}

	d := c.mkdir(t, rootID, "d")
	f.next("mkdir", me, at(d, rootID))
	x := c.mustUpload(t, d, "x", randomContent(testLayout.ChunkSize()+10))
	f.next("create with commit", me, at(x, d))
	g := crypto.NewID()
	hdr, body := smallFile(t, c, rootID, g, 1, []byte("small"), "g")
	c.small(hdr, body).want(t, 201, nil)
	f.next("small create", me, at(g, rootID))
	hdr, body = smallFile(t, c, rootID, g, 2, []byte("small, again"), "")
	c.small(hdr, body).want(t, 201, nil)
	f.next("small commit", me, only(g))

	chunks, commit := c.a.seal(t, x, 2, randomContent(100))
	c.putChunk(chunks[0]).want(t, 201, nil)
	f.none("a chunk upload")
	c.commit(x, commit).want(t, 200, nil)
	f.next("commit", me, only(x))
	c.commit(x, &wire.CommitRequest{IfVersion: 1, Manifest: commit.Manifest, Attr: commit.Attr, Chunks: commit.Chunks}).
		wantErr(t, 412, wire.CodeVersionMismatch)
	f.none("a stale commit")
	attr, err := crypto.SealAttr(c.a.keys.Attr, x, &crypto.Attr{Mode: 0o100600, Size: 100, Generation: 2})
	must(t, err)
	c.json("PATCH", "/v1/inodes/"+x.String(), &wire.SetAttrRequest{Attr: attr}).want(t, 200, nil)
	f.next("PATCH", me, only(x))

	xl, sealed := c.a.name(t, rootID, x, "xl")
	c.json("POST", "/v1/dirs/"+rootID.String()+"/links", &wire.LinkRequest{Index: xl, SealedName: sealed, Target: wire.HexID(x)}).want(t, 201, nil)
	f.next("link", me, at(x, rootID))
	c.unlink(rootID, xl, "nondir").want(t, 204, nil)
	f.next("unlink of a second link", me, at(x, rootID))

	rename(c, renameReq(t, c.a, d, "x", x, rootID, "y", wire.RenameNoReplace, crypto.ID{})).want(t, 200, nil)
	f.next("move", me, at(x, d), at(x, rootID))
	h := c.mustUpload(t, d, "h", []byte("h"))
	f.next("create h", me, at(h, d))
	rename(c, renameReq(t, c.a, d, "h", h, rootID, "y", wire.RenameReplace, crypto.ID{})).want(t, 200, nil)
	f.next("replace", me, at(h, d), at(h, rootID), at(x, rootID))
	sub := c.mkdir(t, d, "sub")
	f.next("mkdir sub", me, at(sub, d))
	rename(c, renameReq(t, c.a, rootID, "y", h, d, "sub", wire.RenameExchange, sub)).want(t, 200, nil)
	f.next("exchange", me, at(h, rootID), at(h, d), at(sub, d), at(sub, rootID))
	rename(c, renameReq(t, c.a, rootID, "g", g, rootID, "g", wire.RenameReplace, crypto.ID{})).want(t, 200, nil)
	f.none("a rename onto itself")
	c.unlink(rootID, c.a.index(rootID, "y"), "dir").want(t, 204, nil)
	f.next("rmdir", me, at(sub, rootID))
	c.unlink(d, c.a.index(d, "sub"), "nondir").want(t, 204, nil)
	f.next("unlink of a last link", me, at(h, d))
	c.create(rootID, c.a.createReq(t, rootID, "d", crypto.NewID(), wire.TypeDir, "")).wantErr(t, 409, wire.CodeExists)
	c.unlink(rootID, c.a.index(rootID, "g"), "dir").wantErr(t, 409, wire.CodeNotDir)
	f.none("failed create and rmdir")

	// The origin is whatever well-formed ID the request carried, and
	// nothing when it carried none or a malformed one, which is no reason
	// to refuse the request.
	for _, o := range []string{"", strings.ToUpper(me), me[:31], "not an id"} {
		c.origin = o
		id := c.mkdir(t, rootID, "o"+o)
		f.next(fmt.Sprintf("Sealfs-Client %q", o), "", at(id, rootID))
	}
	other := c.session(t, e.fp)
	other.origin = crypto.NewID().String()
	id := other.mkdir(t, d, "other")
	f.next("another device", other.origin, at(id, d))
	// The answer omits what a row does not have.
	c.origin = me
	dattr, err := crypto.SealAttr(c.a.keys.Attr, d, &crypto.Attr{Mode: 0o040700})
	must(t, err)
	c.json("PATCH", "/v1/inodes/"+d.String(), &wire.SetAttrRequest{Attr: dattr}).want(t, 200, nil)
	r := c.changes(fmt.Sprintf("?since=%d", f.cursor))
	if want := fmt.Sprintf(`"changes":[{"seq":%d,"inode":"%s","origin":"%s"}]`, f.cursor+1, d, me); !bytes.Contains(r.body, []byte(want)) {
		t.Fatalf("answer %s does not contain %s", r.body, want)
	}
}

// TestChangeFeedPaging reads one feed in pages of several sizes: every
// page ends on a change's last row, more says when to ask again, and the
// pages together are the feed.
func TestChangeFeedPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	d := c.mkdir(t, rootID, "d")
	sub := c.mkdir(t, rootID, "sub")
	for i := range 6 {
		name := fmt.Sprint("f", i)
		f := c.mustUpload(t, d, name, []byte(name))
		// Four rows in one change, twice.
		rename(c, renameReq(t, c.a, d, name, f, rootID, "sub", wire.RenameExchange, sub)).want(t, 200, nil)
		rename(c, renameReq(t, c.a, d, name, sub, rootID, "sub", wire.RenameExchange, f)).want(t, 200, nil)
	}
	all := c.changes("?since=0&limit=10000").wantChanges(t)
	if all.Seq != 2+3*6 || len(all.Changes) != 2+9*6 || all.More || all.Reset {
		t.Fatalf("whole feed: seq %d, %d rows, more %v, reset %v", all.Seq, len(all.Changes), all.More, all.Reset)
	}
	if def := c.changes("?since=0").wantChanges(t); len(def.Changes) != len(all.Changes) {
		t.Fatalf("default limit: %d rows", len(def.Changes))
	}
	for _, limit := range []int{1, 2, 4, 5, 9} {
		var got []wire.Change
		cursor := int64(0)
		for {
			p := c.changes(fmt.Sprintf("?since=%d&limit=%d", cursor, limit)).wantChanges(t)
			if p.Reset || len(p.Changes) == 0 || len(p.Changes) > max(limit, 4) {
				t.Fatalf("limit %d, since %d: reset %v, %d rows", limit, cursor, p.Reset, len(p.Changes))
			}
			if p.Changes[0].Seq != cursor+1 {
				t.Fatalf("limit %d: the page after %d starts at %d", limit, cursor, p.Changes[0].Seq)
			}
			got = append(got, p.Changes...)
			cursor = p.Changes[len(p.Changes)-1].Seq
			if !p.More {
				break
			}
			if len(got) > len(all.Changes) {
				t.Fatalf("limit %d: the pages do not end", limit)
			}
		}
		if cursor != all.Seq || !slices.EqualFunc(got, all.Changes, sameChange) {
			t.Fatalf("limit %d: pages end at %d with %d rows; the feed at %d with %d", limit, cursor, len(got), all.Seq, len(all.Changes))
		}
	}
	if p := c.changes(fmt.Sprintf("?since=%d", all.Seq)).wantChanges(t); len(p.Changes) != 0 || p.More || p.Reset || p.Seq != all.Seq {
		t.Fatalf("at the end: %+v", p)
	}
	for _, q := range []string{"?since=-1", "?since=x", "?since=", "?since=0&limit=0", "?since=0&limit=10001", "?limit=x"} {
		c.changes(q).wantErr(t, 400, wire.CodeBadRequest)
	}
	anon := e.anon("")
	anon.changes("?since=0").wantErr(t, 401, wire.CodeUnauthorized)
}

// sameChange compares two rows by value.
func sameChange(a, b wire.Change) bool {
	same := func(x, y *wire.HexID) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Seq == b.Seq && a.Inode == b.Inode && same(a.Dir, b.Dir) && same(a.Origin, b.Origin)
}

// TestChangeFeedReset checks that a cursor beyond the seq, or behind what
// retention pruned, answers reset, and that the server's maintenance loop
// prunes.
func TestChangeFeedReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{ChangeKeep: 2})
	c := e.register("alice")
	for i := range 3 {
		c.mkdir(t, rootID, fmt.Sprint("d", i))
	}
	for _, since := range []int64{4, 1 << 40} {
		if p := c.changes(fmt.Sprintf("?since=%d", since)).wantChanges(t); !p.Reset || len(p.Changes) != 0 || p.Seq != 3 {
			t.Fatalf("since %d beyond the seq: %+v", since, p)
		}
	}
	n, err := e.srv.PruneChanges(context.Background())
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d rows beyond the newest 2 of 3", n)
	}
	if p := c.changes("?since=0").wantChanges(t); !p.Reset || len(p.Changes) != 0 || p.Seq != 3 {
		t.Fatalf("since 0 after pruning seq 1: %+v", p)
	}
	if p := c.changes("?since=1").wantChanges(t); p.Reset || len(p.Changes) != 2 || p.More {
		t.Fatalf("since 1 after pruning seq 1: %+v", p)
	}

	// By age, in the maintenance loop.
	e2 := newEnv(t, server.Config{ChangeRetention: time.Millisecond, GCInterval: 5 * time.Millisecond})
	c2 := e2.register("bob")
	c2.mkdir(t, rootID, "d")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e2.srv.Run(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; {
		p := c2.changes("?since=0").wantChanges(t)
		if p.Reset {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the maintenance loop did not prune a change older than the retention")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p := c2.changes("?since=1").wantChanges(t); p.Reset || len(p.Changes) != 0 || p.Seq != 1 {
		t.Fatalf("an up-to-date cursor after pruning: %+v", p)
	}
}
