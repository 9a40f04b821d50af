package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestMountAttrsInBackground checks what chmod and utimensat promise now
// that the mount sends them in the background. The mount shows them at
// once, also after the server answered for the inode with what it holds.
// The server gets them with fsync of the file or of a directory, with the
// file's next commit, and at unmount, and a burst of them on one inode
// goes as one request. The delay is an hour here, so that nothing else
// sends them.
func TestMountAttrsInBackground(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d, "--attr-delay", "1h")
	names := []string{"fsynced", "committed", "unmounted"}
	for _, name := range names {
		if err := os.WriteFile(m.path(name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(m.path("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// stored reads an inode's mode and mtime from the server, through
	// another client.
	stored := func(p string) (mode, mtime string) {
		t.Helper()
		for _, line := range strings.Split(d.ok("stat", p), "\n") {
			line = strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(line, "Mode: "); ok {
				mode = v
			}
			if v, ok := strings.CutPrefix(line, "Mtime: "); ok {
				mtime = v
			}
		}
		return mode, mtime
	}
	const wantTime = "2001-02-03 04:05:06.000000007 +0000"
	when := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	patches := func() float64 { return s.requests("PATCH /v1/inodes/{id}") }
	before := patches()
	for _, name := range append(names, "dir") {
		mode := os.FileMode(0o600)
		if name == "dir" {
			mode = 0o700
		}
		if err := os.Chmod(m.path(name), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(m.path(name), when, when); err != nil {
			t.Fatal(err)
		}
	}
	if got := patches(); got != before {
		t.Fatalf("%v attribute requests before any was due", got-before)
	}
	if mode, _ := stored("/fsynced"); mode != "-rw-r--r--" {
		t.Fatalf("the server has mode %s before the change was sent", mode)
	}

	// Another client renames a file: the mount looks the new name up on
	// the server, which answers with the old attributes; the mount still
	// shows its own.
	d.ok("mv", "/unmounted", "/moved")
	eventually(t, "the rename by the other client is seen", func() bool {
		_, err := os.Stat(m.path("moved"))
		return err == nil
	})
	if fi, err := os.Stat(m.path("moved")); err != nil || fi.Mode() != 0o600 || !fi.ModTime().Equal(when) {
		t.Fatalf("after the server's answer the mount shows %v %v (%v), want its own -rw------- %v", fi.Mode(), fi.ModTime(), err, when)
	}

	// fsync sends the file's changes, both in one request.
	fsync := func(p string) {
		t.Helper()
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			t.Fatalf("fsync %s: %v", p, err)
		}
	}
	fsync(m.path("fsynced"))
	if mode, mtime := stored("/fsynced"); mode != "-rw-------" || mtime != wantTime {
		t.Fatalf("after fsync the server has %s %s, want -rw------- %s", mode, mtime, wantTime)
	}
	if got := patches() - before; got != 1 {
		t.Fatalf("fsync sent the chmod and the utimensat in %v requests, want 1", got)
	}

	// fsync of a directory sends the directory's.
	fsync(m.path("dir"))
	if mode, mtime := stored("/dir"); mode != "drwx------" || mtime != wantTime {
		t.Fatalf("after fsync of the directory the server has %s %s, want drwx------ %s", mode, mtime, wantTime)
	}

	// The file's next commit carries them.
	f, err := os.OpenFile(m.path("committed"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(" more"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if mode, _ := stored("/committed"); mode != "-rw-------" {
		t.Fatalf("after a commit the server has mode %s, want -rw-------", mode)
	}

	// The unmount sends what is left.
	m.unmount()
	if mode, mtime := stored("/moved"); mode != "-rw-------" || mtime != wantTime {
		t.Fatalf("after the unmount the server has %s %s, want -rw------- %s", mode, mtime, wantTime)
	}
}
