package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountClearsSetID checks that set-user-ID and set-group-ID bits go as
// on a local disk when a file is written, truncated or chowned: the mount
// asks the kernel to leave that to it (HANDLE_KILLPRIV_V2), so a mistake
// here would leave a set-ID program rewritten by anyone.
func TestMountClearsSetID(t *testing.T) {
	requireFUSE(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("needs setpriv (util-linux; scripts/deps.sh installs it)")
	}
	s := startServer(t)
	m := mountAccount(t, initAccount(t, s, "alice", "pw"), "--allow-other")
	local := t.TempDir()
	run := func(dir string) []string {
		var modes []string
		step := func(what, name string, mode os.FileMode, do func(p string) error) {
			t.Helper()
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			if err := do(p); err != nil {
				t.Fatalf("%s in %s: %v", what, dir, err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			modes = append(modes, fmt.Sprintf("%s: %v", what, st.Mode()))
		}
		// An unprivileged process writes or truncates through a
		// descriptor root opened for it.
		unprivileged := func(script string) func(string) error {
			return func(p string) error {
				out, err := exec.Command("sh", "-c", `exec 3<>"$1"; setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "$2"`,
					"sh", p, script).CombinedOutput()
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			}
		}
		rootAppend := func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			f.WriteString("exit 0\n")
			return f.Close()
		}
		const setid = os.ModeSetuid | os.ModeSetgid
		step("root writes", "a", setid|0o755, rootAppend)
		step("nobody writes", "b", setid|0o777, unprivileged(`printf x >&3`))
		step("nobody writes, no group exec", "c", setid|0o646, unprivileged(`printf x >&3`))
		step("nobody truncates", "d", setid|0o777, unprivileged(`truncate -s 1 /proc/self/fd/3`))
		step("root chowns", "e", setid|0o755, func(p string) error { return os.Chown(p, 1, 1) })
		step("root chmods", "f", 0o755, func(p string) error { return os.Chmod(p, setid|0o755) })
		return modes
	}
	want := run(local)
	got := run(m.dir)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("on the mount:\n%s\non a local disk:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// What the mount changed was stored, not only shown.
	m.remountCold()
	for i, name := range []string{"a", "b", "c", "d", "e", "f"} {
		st, err := os.Stat(m.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%v", st.Mode()); !strings.HasSuffix(want[i], ": "+got) {
			t.Errorf("%s after a cold remount: %s, want %s", name, got, want[i])
		}
	}
}
