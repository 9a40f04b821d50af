package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EGetPartialNames downloads files whose partial-download name
// (DST.sealfs-partial) cannot be used: it is another file of the same get -r,
// it holds a file of the user's, or it is longer than a file name may be.
// Each file must arrive whole under its own name, nothing else may be
// overwritten, and nothing may be left behind. get -r of a directory
// holding x and x.sealfs-partial wrote the second over the first's partial
// data and renamed it to x (exit 0, wrong content); a 255-byte name failed.
func TestE2EGetPartialNames(t *testing.T) {
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	src := t.TempDir()
	long := strings.Repeat("n", 255)
	files := map[string]string{
		"x":                "the real x\n",
		"x.sealfs-partial": "another file, named x.sealfs-partial\n",
		long:               "a file with a 255-byte name\n",
		"y":                strings.Repeat("y", 3<<20), // more than one chunk
		"y.sealfs-partial": "and one beside a large file\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.ok("put", "-r", src, "/t")
	check := func(dir string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := files
		if len(entries) != len(want) {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("%s holds %q, want the %d files and nothing else", dir, names, len(want))
		}
		for name, content := range want {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || string(got) != content {
				t.Fatalf("%s/%.20s holds %.40q (%v), want %.40q", dir, name, got, err, content)
			}
		}
	}
	for range 3 { // the downloads run in parallel: their order varies
		dst := t.TempDir()
		d.ok("get", "-r", "/t", dst)
		check(filepath.Join(dst, "t"))
	}

	// A file of the user's where the partial download would go is kept.
	dst := t.TempDir()
	mine := filepath.Join(dst, "z.sealfs-partial")
	if err := os.WriteFile(mine, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.ok("get", "/t/x", filepath.Join(dst, "z"))
	if got, _ := os.ReadFile(mine); string(got) != "mine\n" {
		t.Fatalf("get overwrote a file of the user's at its partial name: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "z")); string(got) != files["x"] {
		t.Fatalf("get beside a user's file: %q", got)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 2 {
		t.Fatalf("get left %d entries, want 2", len(entries))
	}
}
