package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/remote/vault"
)

// TestE2ETrailingSlash gives destinations a trailing slash, which for cp and
// mv means "into this directory": a file of that name must never be
// replaced, and a file must not take a name written as a directory's.
// Before, the slash was dropped: mv and put replaced the file /d/backup
// (its content lost, exit 0), and put made a file /d/newname.
func TestE2ETrailingSlash(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	work := t.TempDir()
	keep := filepath.Join(work, "keep")
	other := filepath.Join(work, "other")
	os.WriteFile(keep, []byte("important data\n"), 0o644)
	os.WriteFile(other, []byte("other\n"), 0o644)
	d.ok("mkdir", "/d")
	d.ok("put", keep, "/d/backup")
	d.ok("put", other, "/d/o")

	d.fails(1, "not a directory", "mv", "/d/o", "/d/backup/")
	d.fails(1, "not a directory", "put", other, "/d/backup/")
	d.fails(1, "no such directory", "put", other, "/d/newname/")
	if got := d.ok("cat", "/d/backup"); got != "important data\n" {
		t.Fatalf("/d/backup holds %q after refused moves onto it", got)
	}
	d.fails(1, "no such file", "stat", "/d/newname")
	d.fails(1, "not an existing directory", "get", "/d/o", filepath.Join(work, "keep")+"/")
	if b, _ := os.ReadFile(keep); string(b) != "important data\n" {
		t.Fatalf("local %s holds %q after a refused get onto it", keep, b)
	}

	// Into existing directories, and a new directory named with a slash
	// (cp and mv allow that for a directory).
	d.ok("mkdir", "/into")
	d.ok("mv", "/d/o", "/into/")
	d.ok("put", other, "/into/")
	d.ok("stat", "/into/o")
	d.ok("stat", "/into/other")
	tree := filepath.Join(work, "tree")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(filepath.Join(tree, "sub", "f"), []byte("f\n"), 0o644)
	d.ok("put", "-r", tree, "/newdir/")
	d.ok("mv", "/newdir", "/moved/")
	if got := d.ok("cat", "/moved/sub/f"); got != "f\n" {
		t.Fatalf("/moved/sub/f holds %q", got)
	}
	out := filepath.Join(work, "out")
	d.ok("get", "-r", "/moved", out+"/")
	if b, _ := os.ReadFile(filepath.Join(out, "sub", "f")); string(b) != "f\n" {
		t.Fatalf("get -r into a new directory named with a slash: %q", b)
	}
}

// TestE2EPutChangingFile rewrites a file in place while put uploads it. The
// upload must fail, saying why, and store nothing: before, put exited 0
// and the server held the old content's first part followed by the new
// content's rest, a version of the file that never existed.
func TestE2EPutChangingFile(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	src := filepath.Join(t.TempDir(), "big")
	writeRandom(t, src, 12<<20)
	cmd := d.command("put", "--limit-upload", "8192", src, "/big")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("new!"), 4<<20), 4<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = cmd.Wait()
	if err == nil || !strings.Contains(stderr.String(), "changed while being uploaded") {
		t.Fatalf("put of a file rewritten meanwhile: %v, %q; want a failure saying it changed", err, stderr.String())
	}
	d.fails(1, "no such file", "stat", "/big")
	d.ok("put", src, "/big") // once it is left alone
	got := filepath.Join(t.TempDir(), "got")
	d.ok("get", "/big", got)
	sameFile(t, src, got)
}

// TestE2EAwkwardLocal covers local conditions found by the CLI hunt: a FIFO
// in a tree stopped the whole put -r (nothing uploaded, although the
// message said only that entry was not); a full local disk during get was
// blamed on the server; a directory in the way of a download left its
// partial file behind.
func TestE2EAwkwardLocal(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "a"), []byte("a\n"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(tree, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.fails(1, "fifo: not a regular file, directory or symlink; not uploaded", "put", "-r", tree, "/t")
	if got := d.ok("cat", "/t/a"); got != "a\n" {
		t.Fatalf("the tree's regular file beside a FIFO: %q", got)
	}
	// A symlink named without -r stands for its file, as for cp; in a tree
	// (-r) it stays a symlink.
	os.Symlink("a", filepath.Join(tree, "link"))
	os.Remove(filepath.Join(tree, "fifo"))
	d.ok("put", filepath.Join(tree, "link"), "/linked")
	if got := d.ok("cat", "/linked"); got != "a\n" {
		t.Fatalf("put of a symlink named on the command line stored %q, want the file it points to", got)
	}
	d.ok("put", "-r", tree, "/t2")
	if out := d.ok("stat", "/t2/link"); !strings.Contains(out, "Target: a") {
		t.Fatalf("a symlink in a tree put with -r: %q, want a symlink", out)
	}

	big := filepath.Join(work, "big")
	writeRandom(t, big, 5<<20)
	d.ok("put", big, "/big")
	d.ok("put", filepath.Join(tree, "a"), "/a.txt")
	in := filepath.Join(work, "in")
	os.MkdirAll(filepath.Join(in, "a.txt"), 0o755)
	d.fails(1, "is a directory", "get", "/a.txt", in)
	if entries, _ := os.ReadDir(in); len(entries) != 1 {
		t.Errorf("a refused get left %d entries, want only the directory in the way", len(entries))
	}

	small := filepath.Join(work, "small")
	os.Mkdir(small, 0o755)
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("no tmpfs for a full local disk: %v", err)
	}
	defer syscall.Unmount(small, syscall.MNT_DETACH)
	d.fails(1, "here is full", "get", "/big", small)
	if entries, _ := os.ReadDir(small); len(entries) != 0 {
		t.Errorf("a get that filled the local disk left %d entries", len(entries))
	}
}

// TestE2EInterruptedIntoNew interrupts put -r and get -r of a directory
// into a destination that did not exist. Run again as it was, the command
// would copy into DST/SRC (DST exists now) and start over, leaving the first
// copy incomplete; the advice printed names the "SRC/." form, which
// continues into DST itself, resuming what was there.
func TestE2EInterruptedIntoNew(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	writeRandom(t, filepath.Join(tree, "small"), 100)
	writeRandom(t, filepath.Join(tree, "sub", "big"), 12<<20)
	// interrupt runs a command and sends it SIGINT, as Ctrl-C does, once
	// cond holds.
	interrupt := func(cond func() bool, args ...string) string {
		t.Helper()
		cmd := d.command(args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("condition not reached before the deadline")
			}
		}
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err == nil {
			t.Fatalf("sealfs %s finished before it was interrupted", strings.Join(args, " "))
		}
		return stderr.String()
	}

	// Interrupted once three chunks are on the server (a SIGINT saves the
	// resume state of those acknowledged).
	msg := interrupt(func() bool { return s.chunkBytesIn() >= 3*sealedChunk }, "put", "-r", "--limit-upload", "2048", tree, "/new")
	want := "sealfs put -r " + tree + "/. /new"
	if !strings.Contains(msg, want) {
		t.Fatalf("interrupted put -r says %q, want advice naming %q", msg, want)
	}
	r := d.run("put", "-r", tree+"/.", "/new")
	if r.code != 0 || !strings.Contains(r.stderr, "resuming /new/sub/big") {
		t.Fatalf("put -r %s/. /new: exit %d, %q; want it to resume /new/sub/big", tree, r.code, r.stderr)
	}
	if out := d.ok("ls", "/new"); out != "small\nsub\n" {
		t.Fatalf("/new holds %q after the continued put, want small and sub only", out)
	}

	out := filepath.Join(work, "out")
	// Interrupted once the download recorded verified progress (it does
	// every second).
	msg = interrupt(func() bool {
		var meta struct{ Done int64 }
		b, err := os.ReadFile(filepath.Join(out, "sub", "big"+vault.PartialSuffix+".json"))
		return err == nil && json.Unmarshal(b, &meta) == nil && meta.Done > 0
	}, "get", "-r", "--limit-download", "2048", "/new", out)
	if want := "sealfs get -r /new/. " + out; !strings.Contains(msg, want) {
		t.Fatalf("interrupted get -r says %q, want advice naming %q", msg, want)
	}
	r = d.run("get", "-r", "/new/.", out)
	if r.code != 0 || !strings.Contains(r.stderr, "resuming") {
		t.Fatalf("get -r /new/. %s: exit %d, %q; want it to resume", out, r.code, r.stderr)
	}
	sameFile(t, filepath.Join(tree, "sub", "big"), filepath.Join(out, "sub", "big"))
	if _, err := os.Stat(filepath.Join(out, "new")); err == nil {
		t.Error("the continued get -r made out/new")
	}
}
