// Package metatest is the conformance suite of meta.Store. Every
// implementation runs it from its own tests:
//
//	func TestStore(t *testing.T) {
//		metatest.RunSuite(t, func(t *testing.T) meta.Store { ... })
//	}
//
// The suite asserts observable behaviour only (results, errors, versions,
// usage), never implementation details, so the same tests hold a SQLite and a
// PostgreSQL backend to one contract.
package metatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/meta"
)

// RunSuite runs every conformance test, in parallel, each against a fresh
// empty store made by open. open must arrange (with t.Cleanup) for the store
// to be closed; closing it twice must be harmless.
func RunSuite(t *testing.T, open func(t *testing.T) meta.Store) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

var tests = []struct {
	name string
	fn   func(t *testing.T, s meta.Store)
}{
	{"Accounts", testAccounts},
	{"Invites", testInvites},
	{"Sessions", testSessions},
	{"CreateLookup", testCreateLookup},
	{"ReadDirPaging", testReadDirPaging},
	{"HardLinks", testHardLinks},
	{"UnlinkRmdir", testUnlinkRmdir},
	{"SetAttr", testSetAttr},
	{"SetXattrs", testSetXattrs},
	{"RenameMove", testRenameMove},
	{"RenameReplace", testRenameReplace},
	{"RenameNoReplace", testRenameNoReplace},
	{"RenameExchange", testRenameExchange},
	{"RenameCycles", testRenameCycles},
	{"RenameSelf", testRenameSelf},
	{"RenameErrors", testRenameErrors},
	{"RenameStaleChild", testRenameStaleChild},
	{"PutChunk", testPutChunk},
	{"Quota", testQuota},
	{"Commit", testCommit},
	{"CommitLarge", testCommitLarge},
	{"CreateWithContent", testCreateWithContent},
	{"NewChunksInCommit", testNewChunksInCommit},
	{"ReplaceChunkBlob", testReplaceChunkBlob},
	{"InlineChunks", testInlineChunks},
	{"InlineInCommit", testInlineInCommit},
	{"ReplaceInlineChunk", testReplaceInlineChunk},
	{"GCGraceFromUnref", testGCGraceFromUnref},
	{"GC", testGC},
	{"Rotation", testRotation},
	{"RewrapRaces", testRewrapRaces},
	{"ListChunks", testListChunks},
	{"Isolation", testIsolation},
	{"ChangeRecording", testChangeRecording},
	{"ChangePaging", testChangePaging},
	{"ChangePruning", testChangePruning},
	{"ChangeIsolation", testChangeIsolation},
	{"ConcurrentCreates", testConcurrentCreates},
	{"ConcurrentSameName", testConcurrentSameName},
	{"ConcurrentQuota", testConcurrentQuota},
	{"ConcurrentLinks", testConcurrentLinks},
	{"Cancelled", testCancelled},
	{"Closed", testClosed},
}

// root is the ID of every account's root directory.
var root meta.ID

// idx is the blind name index of a test name.
func idx(name string) []byte {
	h := sha256.Sum256([]byte(name))
	return h[:]
}

// sealed is a stand-in for a client-sealed name, distinct per parent so
// tests can tell a rebound name from a stale one.
func sealed(parent meta.ID, name string) []byte {
	return fmt.Appendf(nil, "sealed(%x/%s)", parent[:4], name)
}

func newID() meta.ID {
	var id meta.ID
	rand.Read(id[:])
	return id
}

func accountSpec(name string) meta.NewAccount {
	return meta.NewAccount{
		Name:              name,
		AuthHash:          []byte("auth:" + name),
		KDF:               `{"alg":"argon2id","m":65536}`,
		WrappedMaster:     []byte("master:" + name),
		AccountPub:        []byte("pub:" + name),
		AccountPrivSealed: []byte("priv:" + name),
		TransferKey:       meta.Sealed{Data: []byte("transfer:" + name), KEKID: "kek1", WrappedKey: []byte("wrapped:" + name)},
		Layout:            `{"chunk":4194304}`,
		RootAttr:          []byte("rootattr:" + name),
	}
}

func newAccount(t *testing.T, s meta.Store, name string) meta.Account {
	t.Helper()
	a, err := s.CreateAccount(t.Context(), accountSpec(name))
	if err != nil {
		t.Fatalf("CreateAccount(%q): %v", name, err)
	}
	return a
}

func create(t *testing.T, s meta.Store, acct int64, parent meta.ID, name string, typ meta.InodeType) meta.Inode {
	t.Helper()
	in, err := s.Create(t.Context(), acct, createReq(parent, name, typ))
	if err != nil {
		t.Fatalf("Create(%s %q): %v", typ, name, err)
	}
	return in
}

func createReq(parent meta.ID, name string, typ meta.InodeType) meta.CreateRequest {
	r := meta.CreateRequest{
		Parent: parent, NameIndex: idx(name), SealedName: sealed(parent, name),
		Inode: meta.NewInode{ID: newID(), Type: typ, Attr: []byte("attr:" + name)},
	}
	if typ == meta.TypeSymlink {
		r.Inode.Symlink = []byte("target:" + name)
	}
	return r
}

func chunkRec(file meta.ID, index uint64, size int64) meta.ChunkRecord {
	id := newID()
	return meta.ChunkRecord{ID: id, File: file, Index: index, Size: size,
		BlobKey: fmt.Sprintf("blob/%x", id), KEKID: "kek1", WrappedKey: []byte("dk")}
}

func putChunk(t *testing.T, s meta.Store, acct int64, file meta.ID, index uint64, size int64) meta.ChunkRecord {
	t.Helper()
	c, created, err := s.PutChunk(t.Context(), acct, chunkRec(file, index, size))
	if err != nil || !created {
		t.Fatalf("PutChunk: created %v, %v", created, err)
	}
	return c
}

// putChunks stores n chunks of file concurrently, as an uploading client
// would, and returns them by index.
func putChunks(t *testing.T, s meta.Store, acct int64, file meta.ID, n int, size int64) []meta.ChunkRecord {
	t.Helper()
	out := make([]meta.ChunkRecord, n)
	parallel(t, n, func(i int) error {
		c, _, err := s.PutChunk(t.Context(), acct, chunkRec(file, uint64(i), size))
		out[i] = c
		return err
	})
	return out
}

func manifest(kek, text string) meta.Sealed {
	return meta.Sealed{Data: []byte("manifest:" + text), KEKID: kek, WrappedKey: []byte("mk:" + text)}
}

func positions(chunks ...meta.ChunkRecord) []meta.ChunkPos {
	out := make([]meta.ChunkPos, len(chunks))
	for i, c := range chunks {
		out[i] = meta.ChunkPos{Index: uint64(i), ID: c.ID}
	}
	return out
}

func commit(t *testing.T, s meta.Store, acct int64, file meta.ID, m meta.Sealed, chunks ...meta.ChunkRecord) meta.Inode {
	t.Helper()
	in, err := s.Commit(t.Context(), acct, meta.CommitRequest{File: file, Manifest: m, Chunks: positions(chunks...)})
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return in
}

func getInode(t *testing.T, s meta.Store, acct int64, id meta.ID) meta.Inode {
	t.Helper()
	in, err := s.GetInode(t.Context(), acct, id)
	if err != nil {
		t.Fatalf("GetInode(%x): %v", id, err)
	}
	return in
}

func lookup(t *testing.T, s meta.Store, acct int64, parent meta.ID, name string) (meta.Entry, meta.Inode) {
	t.Helper()
	e, in, err := s.Lookup(t.Context(), acct, parent, idx(name))
	if err != nil {
		t.Fatalf("Lookup(%q): %v", name, err)
	}
	return e, in
}

func usedBytes(t *testing.T, s meta.Store, acct int64) int64 {
	t.Helper()
	a, err := s.GetAccountByID(t.Context(), acct)
	if err != nil {
		t.Fatalf("GetAccountByID: %v", err)
	}
	return a.UsedBytes
}

// wantErr fails unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func wantEq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func wantSealed(t *testing.T, what string, got *meta.Sealed, want meta.Sealed) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s is nil, want %q", what, want.Data)
	}
	if !bytes.Equal(got.Data, want.Data) || got.KEKID != want.KEKID || !bytes.Equal(got.WrappedKey, want.WrappedKey) {
		t.Fatalf("%s = {%q %q %q}, want {%q %q %q}", what, got.Data, got.KEKID, got.WrappedKey,
			want.Data, want.KEKID, want.WrappedKey)
	}
}

// garbage returns the IDs GarbageChunks reports for everything created
// until now.
func garbage(t *testing.T, s meta.Store) map[meta.ID]meta.StoredChunk {
	t.Helper()
	cs, err := s.GarbageChunks(t.Context(), time.Now().Add(time.Hour), meta.MaxPage)
	noErr(t, "GarbageChunks", err)
	out := make(map[meta.ID]meta.StoredChunk, len(cs))
	for _, c := range cs {
		out[c.ID] = c
	}
	return out
}

// parallel runs fn(0..n-1) on up to 16 goroutines and fails on the first
// error; the bounded fan-out still lets the store batch writes.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// ctxCancelled returns a context that is already cancelled.
func ctxCancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
