package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2ETrailingSlash gives destinations a trailing slash, which for cp and
// mv means "into this directory": a file of that name must never be
// replaced, and a file must not take a name written as a directory's.
// Before, the slash was dropped: mv and put replaced the file /d/backup
// (its content lost, exit 0), and put made a file /d/newname.
func TestE2ETrailingSlash(t *testing.T) {
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
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	src := filepath.Join(t.TempDir(), "big")
	writeRandom(t, src, 24<<20)
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
