package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// testLayout has 16 KiB chunks so multi-chunk files stay small in tests.
var testLayout = crypto.Layout{BlockSize: 4096, ChunkBlocks: 4, PadUnit: 4096}

const testChunk = 16 << 10

func newVault(t *testing.T) (*testServer, *Vault) {
	t.Helper()
	f := newTestServer(t)
	v, _, err := Register(context.Background(), f.client(t), RegisterParams{
		User: "alice", Invite: f.invite(t, "alice"), Password: []byte("pw"), KDF: crypto.MinKDFParams, Layout: testLayout,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, v
}

func TestLoginUnlockPasswd(t *testing.T) {
	ctx := context.Background()
	f, v := newVault(t)
	root, err := v.Root(ctx)
	if err != nil || !root.IsDir() {
		t.Fatalf("root: %v %v", root, err)
	}

	// A second device with nothing but the password.
	c2 := f.client(t)
	if _, _, err := Login(ctx, c2, "alice", []byte("wrong")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, _, err := Login(ctx, c2, "bob", []byte("pw")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("unknown user: %v", err)
	}
	v2, _, err := Login(ctx, c2, "alice", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Mkdir(ctx, crypto.ID{}, "from2", 0o755); err != nil {
		t.Fatal(err)
	}

	// Unlock with a held token: a wrong password fails although the
	// session is valid.
	if _, _, err := Unlock(ctx, c2, "alice", []byte("wrong")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("unlock with wrong password: %v", err)
	}

	if err := ChangePassword(ctx, v.Client(), "alice", []byte("pw"), []byte("new"), crypto.KDFParams{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Login(ctx, f.client(t), "alice", []byte("pw")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("old password after passwd: %v", err)
	}
	// The other device keeps its session and opens with the new password.
	v2, _, err = Unlock(ctx, c2, "alice", []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Resolve(ctx, "/from2"); err != nil {
		t.Fatal(err)
	}

	// A revoked session is replaced transparently.
	f.revokeSessions(t, "alice")
	var saved atomic.Value
	c2.OnTokenChange(func(tok string, _ int64) { saved.Store(tok) })
	if _, err := v2.Resolve(ctx, "/from2"); err != nil {
		t.Fatalf("after revocation: %v", err)
	}
	if tok, _ := saved.Load().(string); tok == "" || tok != c2.Token() {
		t.Fatalf("new token not reported: %q vs %q", tok, c2.Token())
	}
}

func TestNamespace(t *testing.T) {
	ctx := context.Background()
	_, v := newVault(t)
	if _, err := v.MkdirAll(ctx, "/a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := v.MkdirAll(ctx, "a/b", 0o755); err != nil {
		t.Fatalf("mkdir -p of existing: %v", err)
	}
	b, err := v.Resolve(ctx, "/a/b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Symlink(ctx, b.ID, "link", "../x/y"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Upload(ctx, b.ID, "f.txt", strings.NewReader("hello"), 5, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := v.ReadDir(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, ","); got != "c,f.txt,link" {
		t.Fatalf("readdir: %s", got)
	}
	if list[2].Target != "../x/y" || !list[2].IsSymlink() || list[1].Size() != 5 || list[1].Mode().Perm() != 0o644 {
		t.Fatalf("entries: %+v", list)
	}
	if _, err := v.Resolve(ctx, "/a/nope"); !IsNotExist(err) {
		t.Fatalf("missing path: %v", err)
	}
	if _, err := v.Resolve(ctx, "/a/b/f.txt/x"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("through a file: %v", err)
	}
	if _, err := v.Mkdir(ctx, b.ID, "c", 0o755); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("mkdir existing: %v", err)
	}

	// Rename: into another directory, then refuse to replace, then swap.
	f, _ := v.Resolve(ctx, "/a/b/f.txt")
	if err := v.Rename(ctx, f, crypto.ID{}, "moved.txt", wire.RenameNoReplace, nil); err != nil {
		t.Fatal(err)
	}
	moved, err := v.Resolve(ctx, "/moved.txt")
	if err != nil || moved.ID != f.ID {
		t.Fatalf("after rename: %v", err)
	}
	a, _ := v.Resolve(ctx, "/a")
	if err := v.Rename(ctx, moved, crypto.ID{}, "a", wire.RenameNoReplace, nil); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("noreplace onto existing: %v", err)
	}
	if err := v.Rename(ctx, moved, crypto.ID{}, "a", wire.RenameExchange, a); err != nil {
		t.Fatal(err)
	}
	if n, err := v.Resolve(ctx, "/a"); err != nil || !n.IsFile() {
		t.Fatalf("after exchange /a: %v %v", n, err)
	}
	if n, err := v.Resolve(ctx, "/moved.txt/b/c"); err != nil || !n.IsDir() {
		t.Fatalf("after exchange /moved.txt/b/c: %v", err)
	}

	// Remove: a non-empty directory needs RemoveAll.
	d, _ := v.Resolve(ctx, "/moved.txt")
	if err := v.Remove(ctx, crypto.ID{}, "moved.txt", true); err == nil {
		t.Fatal("rmdir of a non-empty directory succeeded")
	}
	if err := v.RemoveAll(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Resolve(ctx, "/moved.txt"); !IsNotExist(err) {
		t.Fatalf("after RemoveAll: %v", err)
	}
}

func TestPaths(t *testing.T) {
	for p, want := range map[string]string{"/": "/", "": "/", "a//b/": "/a/b", "/x": "/x"} {
		if got, err := CleanPath(p); err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v", p, got, err)
		}
	}
	for _, p := range []string{"/a/../b", "/./a", "/a\x00b", "/" + strings.Repeat("x", 1025)} {
		if _, err := CleanPath(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("CleanPath(%q) accepted: %v", p, err)
		}
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripSizes(t *testing.T) {
	ctx := context.Background()
	_, v := newVault(t)
	dir := t.TempDir()
	for _, size := range []int{0, 1, 4095, 4096, testChunk - 1, testChunk, testChunk + 1, 5*testChunk + 123} {
		data := randomBytes(t, size)
		name := "f" + strings.Repeat("x", size%7)
		mt := time.Unix(1700000000, 0)
		n, err := v.Upload(ctx, crypto.ID{}, name, bytes.NewReader(data), int64(size), UploadOptions{Mode: 0o600, ModTime: mt})
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if n.Size() != int64(size) || n.Attr.Generation < 1 {
			t.Fatalf("size %d: node %+v", size, n.Attr)
		}
		dst := filepath.Join(dir, name)
		if err := v.Download(ctx, n, dst, DownloadOptions{}); err != nil {
			t.Fatalf("size %d: download: %v", size, err)
		}
		got, _ := os.ReadFile(dst)
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: content differs", size)
		}
		st, _ := os.Stat(dst)
		if st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mt) {
			t.Fatalf("size %d: mode %v mtime %v", size, st.Mode(), st.ModTime())
		}
		if _, err := os.Stat(dst + PartialSuffix); !os.IsNotExist(err) {
			t.Fatalf("partial file left: %v", err)
		}
	}
}

func TestNewVersion(t *testing.T) {
	ctx := context.Background()
	_, v := newVault(t)
	for i, size := range []int{10, 3 * testChunk, 5} {
		data := randomBytes(t, size)
		n, err := v.Upload(ctx, crypto.ID{}, "f", bytes.NewReader(data), int64(size), UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Attr.Generation != uint64(i+1) {
			t.Fatalf("generation %d after %d uploads", n.Attr.Generation, i+1)
		}
		f, err := v.OpenFile(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := v.WriteTo(ctx, f, &buf, ReadOptions{}); err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("version %d: %v", i+1, err)
		}
	}
	if _, err := v.Upload(ctx, crypto.ID{}, "d", strings.NewReader(""), 0, UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Mkdir(ctx, crypto.ID{}, "dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Upload(ctx, crypto.ID{}, "dir", strings.NewReader("x"), 1, UploadOptions{}); err == nil {
		t.Fatal("upload onto a directory succeeded")
	}
}

// cancelAfter cancels a context once n bytes were reported.
type cancelAfter struct {
	n      atomic.Int64
	limit  int64
	cancel context.CancelFunc
}

func (c *cancelAfter) AddBytes(n int64) {
	if c.n.Add(n) >= c.limit {
		c.cancel()
	}
}
func (c *cancelAfter) AddFiles(int) {}

func TestResumeUpload(t *testing.T) {
	f, v := newVault(t)
	v.SetParallel(2)
	const size = 40*testChunk + 77
	data := randomBytes(t, size)
	state := filepath.Join(t.TempDir(), "resume", "x.json")
	mt := time.Now()
	opts := UploadOptions{ResumePath: state, ModTime: mt}

	ctx, cancel := context.WithCancel(context.Background())
	opts.Progress = &cancelAfter{limit: 20 * testChunk, cancel: cancel}
	if _, err := v.Upload(ctx, crypto.ID{}, "big", bytes.NewReader(data), size, opts); err == nil {
		t.Fatal("interrupted upload succeeded")
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no resume state: %v", err)
	}
	if _, err := v.Resolve(context.Background(), "/big"); !IsNotExist(err) {
		t.Fatalf("interrupted upload is visible: %v", err)
	}
	first := f.putBytes.Load()

	var resumed int64
	opts.Progress = nil
	opts.OnResume = func(done, total int64) { resumed = done }
	n, err := v.Upload(context.Background(), crypto.ID{}, "big", bytes.NewReader(data), size, opts)
	if err != nil {
		t.Fatal(err)
	}
	second := f.putBytes.Load() - first
	if resumed < 20*testChunk || second >= int64(size)-resumed+int64(4*testChunk) {
		t.Fatalf("resumed %d bytes, re-sent %d sealed bytes of %d", resumed, second, size)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("state left after success: %v", err)
	}
	var buf bytes.Buffer
	file, _ := v.OpenFile(context.Background(), n)
	if err := v.WriteTo(context.Background(), file, &buf, ReadOptions{}); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("content after resume: %v", err)
	}

	// A changed source starts over.
	ctx, cancel = context.WithCancel(context.Background())
	opts.Progress = &cancelAfter{limit: 10 * testChunk, cancel: cancel}
	opts.OnResume = nil
	v.Upload(ctx, crypto.ID{}, "big", bytes.NewReader(data), size, opts)
	opts.Progress = nil
	opts.ModTime = mt.Add(time.Second)
	opts.OnResume = func(done, total int64) { t.Errorf("resumed a changed source: %d", done) }
	if _, err := v.Upload(context.Background(), crypto.ID{}, "big", bytes.NewReader(data), size, opts); err != nil {
		t.Fatal(err)
	}
}

func TestResumeDownload(t *testing.T) {
	f, v := newVault(t)
	v.SetParallel(2)
	const size = 40*testChunk + 5
	data := randomBytes(t, size)
	n, err := v.Upload(context.Background(), crypto.ID{}, "big", bytes.NewReader(data), size, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "big")
	ctx, cancel := context.WithCancel(context.Background())
	// Slow enough that a checkpoint (once a second) happens first.
	lim := NewRateLimit(12 * testChunk)
	go func() { time.Sleep(1500 * time.Millisecond); cancel() }()
	if err := v.Download(ctx, n, dst, DownloadOptions{Limit: lim}); err == nil {
		t.Fatal("interrupted download succeeded")
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("final file exists after interruption: %v", err)
	}
	if _, err := os.Stat(dst + PartialSuffix); err != nil {
		t.Fatalf("no partial file: %v", err)
	}
	before := f.getCount.Load()
	var resumed int64
	if err := v.Download(context.Background(), n, dst, DownloadOptions{OnResume: func(d, _ int64) { resumed = d }}); err != nil {
		t.Fatal(err)
	}
	fetched := f.getCount.Load() - before
	if resumed == 0 || fetched >= 41 {
		t.Fatalf("resumed at %d, fetched %d chunks", resumed, fetched)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, data) {
		t.Fatal("content differs after resumed download")
	}
}

func TestTamperedChunk(t *testing.T) {
	f, v := newVault(t)
	data := randomBytes(t, 3*testChunk)
	n, err := v.Upload(context.Background(), crypto.ID{}, "a.bin", bytes.NewReader(data), int64(len(data)), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.corrupt.Store(true)
	dst := filepath.Join(t.TempDir(), "a.bin")
	err = v.Download(context.Background(), n, dst, DownloadOptions{})
	var ce *ChunkError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "failed authentication (tampered or corrupt data on the server)") {
		t.Fatalf("tampered download: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("final file exists after a failed verification: %v", err)
	}
}

func TestHolesReadAsZeros(t *testing.T) {
	ctx := context.Background()
	_, v := newVault(t)
	data := randomBytes(t, 3*testChunk)
	n, err := v.Upload(ctx, crypto.ID{}, "sparse", bytes.NewReader(data), int64(len(data)), UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := v.OpenFile(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	// Commit a new version whose middle chunk is a hole, as a mount does
	// after truncating and extending a file.
	m := *f.Manifest
	m.Chunks = append([]crypto.ChunkEntry{}, m.Chunks...)
	m.Chunks[1] = crypto.ChunkEntry{}
	m.Generation++
	sealedM, err := crypto.SealManifest(v.keys.Manifest, &m)
	if err != nil {
		t.Fatal(err)
	}
	attr := f.Node.Attr
	attr.Generation = m.Generation
	sealedA, _ := crypto.SealAttr(v.keys.Attr, n.ID, &attr)
	_, err = v.c.Commit(ctx, n.ID, &wire.CommitRequest{IfVersion: f.Node.Version, Manifest: sealedM, Attr: sealedA,
		Chunks: []wire.ChunkPos{{Index: 0, ID: wire.HexID(m.Chunks[0].ID)}, {Index: 2, ID: wire.HexID(m.Chunks[2].ID)}}})
	if err != nil {
		t.Fatal(err)
	}
	n, _ = v.Resolve(ctx, "/sparse")
	dst := filepath.Join(t.TempDir(), "sparse")
	if err := v.Download(ctx, n, dst, DownloadOptions{}); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{}, data...)
	clear(want[testChunk : 2*testChunk])
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
		t.Fatal("a hole did not read as zeros")
	}
}

// TestNewVersionKeepsCtimeRising uploads new versions over a file whose
// last change came from a writer with a clock an hour ahead: each new
// version's ctime is still above the one it replaced, as a mount that saw
// that one requires (it takes a lower ctime for a rollback).
func TestNewVersionKeepsCtimeRising(t *testing.T) {
	ctx := context.Background()
	_, v := newVault(t)
	n, err := v.Upload(ctx, crypto.ID{}, "f", strings.NewReader("one"), 3, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, size := range []int{5, 3 * testChunk} {
		a := n.Attr
		a.Ctime = time.Now().Add(time.Hour).UnixNano()
		ahead, err := v.SetAttr(ctx, n.ID, a, n.Version)
		if err != nil {
			t.Fatal(err)
		}
		n, err = v.Upload(ctx, crypto.ID{}, "f", bytes.NewReader(randomBytes(t, size)), int64(size), UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Attr.Ctime <= ahead.Attr.Ctime {
			t.Fatalf("version %d: ctime %d, not above the %d it replaced", i+2, n.Attr.Ctime, ahead.Attr.Ctime)
		}
	}
}
