package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EHardLinks puts and gets a tree whose files have several names, as
// git checkouts, package trees and backups made with cp -al have. Each file
// must be stored once, with all its names in the tree leading to it, and
// come back as one local file with those names; a name whose other links
// lie outside the tree is a plain file. Before, every name became a
// separate copy both ways (three times the bytes uploaded here).
func TestE2EHardLinks(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	src := filepath.Join(t.TempDir(), "t") // put -r into / makes /t every time
	small := writeRandom(t, filepath.Join(src, "a"), 5000)
	writeRandom(t, filepath.Join(src, "big"), 3<<20+17) // several chunks
	writeRandom(t, filepath.Join(src, "lone"), 100)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	must(os.Link(filepath.Join(src, "a"), filepath.Join(src, "sub", "a2")))
	must(os.Link(filepath.Join(src, "a"), filepath.Join(src, "a3")))
	must(os.Link(filepath.Join(src, "big"), filepath.Join(src, "sub", "big2")))
	must(os.Link(filepath.Join(src, "lone"), filepath.Join(filepath.Dir(src), "outside")))

	put := func() {
		t.Helper()
		before := s.chunkBytesIn()
		d.ok("put", "-r", src, "/")
		sent := s.chunkBytesIn() - before
		if limit := float64(len(small) + 3<<20 + 17 + 100 + 64<<10); sent > limit {
			t.Errorf("put -r sent %.0f chunk bytes, more than the %0.f one copy of each file takes", sent, limit)
		}
	}
	put()
	links := func(p string) string {
		t.Helper()
		out := d.ok("stat", p)
		i := strings.Index(out, "Links: ")
		if i < 0 {
			t.Fatalf("stat %s: no link count in %q", p, out)
		}
		return strings.Fields(out[i+len("Links: "):])[0]
	}
	for p, want := range map[string]string{"/t/a": "3", "/t/sub/a2": "3", "/t/a3": "3", "/t/big": "2", "/t/sub/big2": "2", "/t/lone": "1"} {
		if got := links(p); got != want {
			t.Errorf("%s has %s links on the server, want %s", p, got, want)
		}
	}

	// Again (put copies, as cp does): the links stay.
	put()
	if got := links("/t/a"); got != "3" {
		t.Errorf("/t/a has %s links after a second put, want 3", got)
	}

	// A name that was a separate file on the server becomes a link again.
	other := t.TempDir()
	must(os.WriteFile(filepath.Join(other, "a3"), []byte("separate"), 0o644))
	d.ok("rm", "/t/a3")
	d.ok("put", filepath.Join(other, "a3"), "/t/a3")
	if got := links("/t/a"); got != "2" {
		t.Fatalf("/t/a has %s links after /t/a3 was replaced by another file, want 2", got)
	}
	put()
	if got := links("/t/a3"); got != "3" {
		t.Errorf("/t/a3 has %s links after put -r restored the link, want 3", got)
	}

	dst := t.TempDir()
	got := filepath.Join(dst, "t")
	check := func() {
		t.Helper()
		for _, group := range [][]string{{"a", "sub/a2", "a3"}, {"big", "sub/big2"}} {
			first, err := os.Stat(filepath.Join(got, group[0]))
			must(err)
			sameFile(t, filepath.Join(src, group[0]), filepath.Join(got, group[0]))
			for _, name := range group[1:] {
				fi, err := os.Stat(filepath.Join(got, name))
				must(err)
				if !os.SameFile(first, fi) {
					t.Errorf("get -r: %s and %s are separate files, want one file with both names", group[0], name)
				}
			}
		}
		entries, err := os.ReadDir(got)
		must(err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != "a a3 big lone sub" {
			t.Errorf("get -r left %q, want a a3 big lone sub and nothing else", names)
		}
	}
	d.ok("get", "-r", "/t", dst)
	check()
	// Again over the result, with one name made a separate local file.
	must(os.Remove(filepath.Join(got, "a3")))
	must(os.WriteFile(filepath.Join(got, "a3"), []byte("separate"), 0o644))
	d.ok("get", "-r", "/t", dst)
	check()
}
