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
	t.Parallel()
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

// TestE2EModes round-trips the mode bits that cp -a, rsync -a and tar keep
// through put -r and get -r: set-user-ID, set-group-ID and sticky were
// dropped, and a read-only directory came back writable.
func TestE2EModes(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	d := initAccount(t, s, "alice", "pw")
	src := t.TempDir()
	modes := map[string]os.FileMode{
		"suid":      0o4755,
		"sgid":      0o2750,
		"plain":     0o640,
		"sticky/":   0o1777,
		"readonly/": 0o555,
		"private/":  0o700,
	}
	for name := range modes {
		p := filepath.Join(src, strings.TrimSuffix(name, "/"))
		if strings.HasSuffix(name, "/") {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Modes last: a read-only directory is filled first.
	for name, mode := range modes {
		if err := os.Chmod(filepath.Join(src, strings.TrimSuffix(name, "/")), unixPerm(mode)); err != nil {
			t.Fatal(err)
		}
	}
	d.ok("put", "-r", src, "/m")
	dst := t.TempDir()
	d.ok("get", "-r", "/m", dst)
	for name, mode := range modes {
		p := filepath.Join(dst, "m", strings.TrimSuffix(name, "/"))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky); got != unixPerm(mode) {
			t.Errorf("%s: mode %v after put and get, want %v", name, got, unixPerm(mode))
		}
	}
}

// unixPerm converts octal mode bits as chmod(1) writes them (04755) to an
// os.FileMode.
func unixPerm(m os.FileMode) os.FileMode {
	p := m & os.ModePerm
	if m&0o4000 != 0 {
		p |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		p |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		p |= os.ModeSticky
	}
	return p
}
