package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/keyring"
	"github.com/sealfs/sealfs/server/meta"
	"github.com/sealfs/sealfs/server/tlscert"
)

// syncBuffer collects a subprocess's output for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveProc is a 'sealfs serve' subprocess.
type serveProc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	fp     string
}

func buildSealfs(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sealfs")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/sealfs").CombinedOutput()
	if err != nil {
		t.Fatalf("building sealfs: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs the server on dir and waits until it answers /healthz.
func startServe(t testing.TB, bin, dir, addr string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.Command(bin, "serve", "--data", dir, "--listen", addr), out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	must(t, p.cmd.Start())
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(p.kill)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(30 * time.Millisecond) {
		select {
		case <-p.exited:
			t.Fatalf("sealfs serve exited: %v\n%s", p.cmd.ProcessState, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealfs serve did not come up\n%s", p.out)
		}
		fp, err := tlscert.FingerprintFile(filepath.Join(dir, "tls", tlscert.CertFileName))
		if err != nil {
			continue
		}
		c := newClient(t, "https://"+addr, fp, "")
		if r := c.do("GET", "/healthz", nil); r.status == 200 {
			c.hc.CloseIdleConnections()
			p.fp = fp
			return p
		}
		c.hc.CloseIdleConnections()
	}
}

// kill sends SIGKILL and waits for the process to go.
func (p *serveProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// crashFile is one file a worker writes, with what may be in it.
type crashFile struct {
	name    string
	id      crypto.ID
	version int64
	exists  bool     // acknowledged, or found after a restart
	content []byte   // its content when exists
	maybe   [][]byte // contents sent whose answer never came
	gone    bool     // never created: not used again
}

// crashWorker writes new files and new versions of its own files until its
// requests fail with a transport error, which is the server dying.
func crashWorker(c *client, w int, round int, owned *[]*crashFile, stats *crashStats) error {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(round)))
	cs := testLayout.ChunkSize()
	for n := 0; ; n++ {
		var live []*crashFile
		for _, f := range *owned {
			if f.exists && !f.gone {
				live = append(live, f)
			}
		}
		content := randomContent(rng.IntN(3*cs + 100))
		var f *crashFile
		if len(live) == 0 || rng.IntN(10) < 6 {
			f = &crashFile{name: fmt.Sprintf("w%d-r%d-%d", w, round, n), id: crypto.NewID()}
			*owned = append(*owned, f)
		} else {
			f = live[rng.IntN(len(live))]
		}
		f.maybe = append(f.maybe, content)
		in, err := crashWrite(c, f, content, uint64(round*1000000+n+1))
		if err != nil {
			return err
		}
		if in == nil { // the server went away: outcome unknown
			stats.add(0, 1)
			return nil
		}
		f.exists, f.content, f.version, f.maybe = true, content, in.Version, nil
		stats.add(1, 0)
	}
}

// crashWrite sends one new file or new version: one small request for a
// file of at most one chunk, else chunks then create-or-commit. It returns
// nil and no error when a transport error shows the server is gone.
func crashWrite(c *client, f *crashFile, content []byte, gen uint64) (*wire.Inode, error) {
	chunks, commit, err := c.a.trySeal(f.id, gen, content)
	if err != nil {
		return nil, err
	}
	var create *wire.CreateRequest
	if !f.exists {
		sealed, err := crypto.SealName(c.a.keys.Names, rootID, f.id, f.name)
		if err != nil {
			return nil, err
		}
		create = &wire.CreateRequest{Index: c.a.index(rootID, f.name), SealedName: sealed,
			Inode: wire.NewInode{ID: wire.HexID(f.id), Type: wire.TypeFile, Attr: commit.Attr}}
	} else {
		commit.IfVersion = f.version
	}
	var r *resp
	want := 200
	if len(chunks) <= 1 {
		hdr := &wire.SmallHeader{File: wire.HexID(f.id), Create: create, Commit: *commit}
		var body []byte
		if len(chunks) == 1 {
			hdr.Chunk = &wire.SmallChunk{Index: 0, ID: wire.HexID(chunks[0].ref.ID), MAC: chunks[0].mac}
			body = chunks[0].body
		}
		r, want = c.small(hdr, body), 201
	} else {
		for _, ch := range chunks {
			if r = c.putChunk(ch); r.err != nil {
				return nil, nil
			}
			if r.status != 201 {
				return nil, fmt.Errorf("PUT chunk: %v", r)
			}
		}
		if create != nil {
			create.Commit = commit
			r, want = c.create(rootID, create), 201
		} else {
			r = c.commit(f.id, commit)
		}
	}
	if r.err != nil {
		return nil, nil
	}
	if r.status != want {
		return nil, fmt.Errorf("writing %s: %v", f.name, r)
	}
	var in wire.Inode
	if err := json.Unmarshal(r.body, &in); err != nil || crypto.ID(in.ID) != f.id {
		return nil, fmt.Errorf("writing %s: answer %q (%v)", f.name, r.body, err)
	}
	return &in, nil
}

type crashStats struct {
	mu                 sync.Mutex
	acked, interrupted int
}

func (s *crashStats) add(acked, interrupted int) {
	s.mu.Lock()
	s.acked += acked
	s.interrupted += interrupted
	s.mu.Unlock()
}

// verifyCrashFiles checks, after a restart, that every acknowledged file
// reads back whole with its last acknowledged content or a later one that
// was sent, that unacknowledged new files are either absent or whole, and
// that the directory lists nothing else.
func verifyCrashFiles(t *testing.T, c *client, all []*crashFile, blobDir string) {
	t.Helper()
	names := map[crypto.ID]*crashFile{}
	for _, f := range all {
		if f.gone {
			continue
		}
		r := c.lookup(rootID, c.a.index(rootID, f.name))
		if r.status == 404 {
			if f.exists {
				t.Errorf("acknowledged file %s is gone after a crash", f.name)
			}
			c.getInode(f.id).wantErr(t, 404, wire.CodeNotFound)
			f.gone, f.maybe = true, nil
			continue
		}
		var ent wire.Entry
		r.want(t, 200, &ent)
		if crypto.ID(ent.Inode.ID) != f.id {
			t.Fatalf("%s names another inode", f.name)
		}
		got, in, err := c.read(f.id)
		if err != nil {
			t.Errorf("file %s is visible but does not read back after a crash: %v", f.name, err)
			continue
		}
		ok := f.exists && bytes.Equal(got, f.content)
		for _, m := range f.maybe {
			ok = ok || bytes.Equal(got, m)
		}
		if !ok {
			t.Errorf("file %s reads %d bytes that were never written whole (acknowledged: %v)", f.name, len(got), f.exists)
		}
		f.exists, f.content, f.version, f.maybe = true, got, in.Version, nil
		names[f.id] = f
	}
	// Nothing else is visible.
	var rd wire.ReadDirResponse
	c.readDir(rootID, "", 0).want(t, 200, &rd)
	if len(rd.Entries) != len(names) {
		t.Errorf("the root lists %d entries, %d files exist", len(rd.Entries), len(names))
	}
	for _, ent := range rd.Entries {
		if names[crypto.ID(ent.Inode.ID)] == nil {
			t.Errorf("unknown entry %x in the root", ent.Index)
		}
	}
	// The blob store cleaned up half-written temporary files at open.
	filepath.WalkDir(blobDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".tmp") {
			t.Errorf("temporary blob file %s left after restart", p)
		}
		return nil
	})
}

// TestCrashSafety kills 'sealfs serve' with SIGKILL at random moments while
// four clients upload, restarts it on the same data directory, and checks
// that acknowledged writes survived and nothing half-written is visible.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it repeatedly")
	}
	t.Parallel()
	const rounds, workers = 5, 4
	bin := buildSealfs(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	start := time.Now()

	p := startServe(t, bin, dir, addr)
	inv, err := exec.Command(bin, "server", "invite", "--data", dir, "crash").Output()
	if err != nil {
		t.Fatalf("sealfs server invite: %v", err)
	}
	c := newClient(t, "https://"+addr, p.fp, "")
	c.registerAndLogin(t, strings.TrimSpace(string(inv)), "crash", testLayout)

	owned := make([][]*crashFile, workers)
	stats := &crashStats{}
	for round := range rounds {
		// A fresh connection pool each round; the session lives on in
		// the database.
		rc := newClient(t, "https://"+addr, p.fp, "")
		rc.a, rc.token = c.a, c.token
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[w] = crashWorker(rc, w, round, &owned[w], stats)
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		p.kill()
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v\nserver output:\n%s", round, err, p.out)
			}
		}
		p = startServe(t, bin, dir, addr)
		vc := newClient(t, "https://"+addr, p.fp, "")
		vc.a, vc.token = c.a, c.token
		var all []*crashFile
		for _, o := range owned {
			all = append(all, o...)
		}
		verifyCrashFiles(t, vc, all, filepath.Join(dir, "blobs"))
		if t.Failed() {
			t.Fatalf("after round %d; server output:\n%s", round, p.out)
		}
	}
	t.Logf("%d kills in %v: %d writes acknowledged, %d interrupted", rounds, time.Since(start).Round(time.Millisecond), stats.acked, stats.interrupted)
	if stats.acked < rounds || stats.interrupted < rounds {
		t.Fatalf("%d acknowledged and %d interrupted writes: the kills did not hit traffic", stats.acked, stats.interrupted)
	}

	// Stop it cleanly and scrub the data directory with the real stores.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("sealfs serve did not stop on SIGTERM\n%s", p.out)
	}
	kr, err := keyring.Open(filepath.Join(dir, "keyring.json"), false)
	must(t, err)
	m, err := meta.OpenSQLite(filepath.Join(dir, "meta.db"))
	must(t, err)
	defer m.Close()
	b, err := blob.OpenLocal(filepath.Join(dir, "blobs"))
	must(t, err)
	defer b.Close()
	damage, err := server.Scrub(context.Background(), m, atrest.New(b, kr), nil)
	must(t, err)
	if len(damage) != 0 {
		t.Fatalf("scrub after crashes: %v", damage)
	}
	if _, err := os.Stat(filepath.Join(dir, "meta.db")); err != nil {
		t.Fatal(err)
	}
}
