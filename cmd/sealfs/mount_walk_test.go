package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A walk of the tree (a directory opened right after its parent) has the
// mount list the next directories ahead, and their opendirs use those
// listings instead of asking again; a listing fetched before a change
// this mount made is not used.
func TestMountListAhead(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	for _, dir := range []string{"a/b/c", "a/d"} {
		if err := os.MkdirAll(m.path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(m.path("a/b/f.txt"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.remountCold()

	const route = "GET /v1/dirs/{id}/entries"
	names := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(m.path(dir))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	settled := func(want float64) {
		t.Helper()
		eventually(t, "the listings fetched ahead", func() bool { return s.requests(route) >= want })
		time.Sleep(300 * time.Millisecond)
		if got := s.requests(route); got != want {
			t.Fatalf("%v listings, want %v", got, want)
		}
	}

	names("")
	base := s.requests(route)
	names("a") // a walk: a's subdirectories b and d are listed ahead
	settled(base + 3)
	if got := names("a/b"); !slices.Equal(got, []string{"c", "f.txt"}) {
		t.Fatalf("a/b from its listing fetched ahead: %q", got)
	}
	settled(base + 4) // a/b was not listed again; its subdirectory c was, ahead

	// A change made here after c was listed ahead: c's opendir lists it
	// again and shows the new file.
	if err := os.WriteFile(m.path("a/b/c/new.txt"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := names("a/b/c"); !slices.Equal(got, []string{"new.txt"}) {
		t.Fatalf("a/b/c after a file was created in it: %q", got)
	}
}

// dirent is one record of getdents64.
type dirent struct {
	name string
	ino  uint64
	off  int64
}

// readDirents reads what remains of the open directory fd with getdents64,
// a small buffer at a time so that a listing takes several calls.
func readDirents(t *testing.T, fd int) []dirent {
	t.Helper()
	var out []dirent
	buf := make([]byte, 512)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			name := b[19:reclen]
			out = append(out, dirent{
				name: string(name[:bytes.IndexByte(name, 0)]),
				ino:  binary.NativeEndian.Uint64(b[0:8]),
				off:  int64(binary.NativeEndian.Uint64(b[8:16])),
			})
			b = b[reclen:]
		}
	}
}

// A listing starts with "." and "..", naming the directory and its parent
// by their inode numbers, as on a local disk (find and ls -f count them),
// and an offset handed out resumes the listing right after its entry.
func TestMountDotEntries(t *testing.T) {
	requireFUSE(t)
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	m := mountAccount(t, d)
	const files = 40
	if err := os.MkdirAll(m.path("a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		if err := os.WriteFile(m.path("a/b", fmt.Sprintf("file-with-a-longish-name-%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inoOf := func(p string) uint64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	for _, tc := range []struct {
		dir, parent string
		n           int
	}{{"a/b", "a", files}, {"a", "", 1}, {"", "", 1}} {
		f, err := os.Open(m.path(tc.dir))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() }) // before the unmount, also after a failure
		ents := readDirents(t, int(f.Fd()))
		if len(ents) != tc.n+2 {
			t.Fatalf("%q: %d entries, want %d: %v", tc.dir, len(ents), tc.n+2, ents)
		}
		if ents[0].name != "." || ents[0].ino != inoOf(m.path(tc.dir)) {
			t.Errorf("%q: first entry %+v, want . with inode %d", tc.dir, ents[0], inoOf(m.path(tc.dir)))
		}
		if ents[1].name != ".." || ents[1].ino != inoOf(m.path(tc.parent)) {
			t.Errorf("%q: second entry %+v, want .. with inode %d", tc.dir, ents[1], inoOf(m.path(tc.parent)))
		}
		seen := map[string]bool{}
		for _, e := range ents[2:] {
			if seen[e.name] || e.name == "." || e.name == ".." {
				t.Errorf("%q: %q listed twice", tc.dir, e.name)
			}
			seen[e.name] = true
		}
		// Resume after the k-th entry, as seekdir(telldir()) does.
		k := len(ents) / 2
		if _, err := unix.Seek(int(f.Fd()), ents[k].off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if rest := readDirents(t, int(f.Fd())); !slices.Equal(rest, ents[k+1:]) {
			t.Errorf("%q: after seeking to entry %d got %v, want %v", tc.dir, k, rest, ents[k+1:])
		}
	}
	if got := strings.Fields(sh(t, m.path("a/b"), "sh", "-c", "ls -f | wc -l")); len(got) != 1 || got[0] != fmt.Sprint(files+2) {
		t.Errorf("ls -f | wc -l: %q, want %d", got, files+2)
	}
}
