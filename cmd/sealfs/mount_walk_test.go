package main

import (
	"os"
	"slices"
	"testing"
	"time"
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
