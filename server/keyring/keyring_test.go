package keyring_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/keyring"
)

func create(t *testing.T) (*keyring.Keyring, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring.json")
	k, err := keyring.Open(path, true)
	if err != nil {
		t.Fatalf("Open(create): %v", err)
	}
	return k, path
}

func mustCurrent(t *testing.T, k *keyring.Keyring) (string, []byte) {
	t.Helper()
	id, key, err := k.Current()
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return id, key
}

var idPattern = regexp.MustCompile(`^k-[0-9a-f]{8}$`)

func TestOpenCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	if _, err := keyring.Open(path, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing keyring without create = %v, want fs.ErrNotExist", err)
	}
	k, err := keyring.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	id, key := mustCurrent(t, k)
	if !idPattern.MatchString(id) {
		t.Errorf("key ID %q does not look like k-xxxxxxxx", id)
	}
	if len(key) != keyring.KeySize || bytes.Equal(key, make([]byte, keyring.KeySize)) {
		t.Errorf("first key is %x", key)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	again, err := keyring.Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	id2, key2 := mustCurrent(t, again)
	if id2 != id || !bytes.Equal(key2, key) {
		t.Fatal("reopening with create=true replaced the existing keyring")
	}

	raw, _ := os.ReadFile(path)
	var doc struct {
		Version int
		Current string
		Keys    []struct {
			ID      string
			Key     string
			Created time.Time
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("keyring is not the documented JSON: %v\n%s", err, raw)
	}
	if doc.Version != 1 || doc.Current != id || len(doc.Keys) != 1 || doc.Keys[0].Created.IsZero() {
		t.Errorf("unexpected keyring document:\n%s", raw)
	}
}

func TestOpenRefusesInsecurePermissions(t *testing.T) {
	_, path := create(t)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := keyring.Open(path, false)
		if !errors.Is(err, keyring.ErrInsecurePermissions) {
			t.Errorf("Open of a %#o keyring = %v, want ErrInsecurePermissions", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := keyring.Open(path, false); err != nil {
		t.Errorf("Open of a 0400 keyring: %v", err)
	}
}

func TestOpenRejectsBadFiles(t *testing.T) {
	key := `"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="`
	bad := map[string]string{
		"garbage":       "not json",
		"version":       `{"version":2,"current":"a","keys":[{"id":"a","key":` + key + `}]}`,
		"no keys":       `{"version":1,"current":"a","keys":[]}`,
		"no current":    `{"version":1,"current":"b","keys":[{"id":"a","key":` + key + `}]}`,
		"short key":     `{"version":1,"current":"a","keys":[{"id":"a","key":"AAAA"}]}`,
		"duplicate":     `{"version":1,"current":"a","keys":[{"id":"a","key":` + key + `},{"id":"a","key":` + key + `}]}`,
		"bad id":        `{"version":1,"current":"a b","keys":[{"id":"a b","key":` + key + `}]}`,
		"unknown field": `{"version":1,"current":"a","kesy":[],"keys":[{"id":"a","key":` + key + `}]}`,
	}
	for name, content := range bad {
		path := filepath.Join(t.TempDir(), "keyring.json")
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := keyring.Open(path, true); err == nil {
			t.Errorf("%s: Open accepted %s", name, content)
		}
	}
	path := filepath.Join(t.TempDir(), "keyring.json")
	os.WriteFile(path, []byte(`{"version":1,"current":"a","keys":[{"id":"a","key":`+key+`}]}`), 0o600)
	if _, err := keyring.Open(path, false); err != nil {
		t.Errorf("a minimal hand-written keyring: %v", err)
	}
}

func TestRotateAndRemove(t *testing.T) {
	k, _ := create(t)
	oldID, oldKey := mustCurrent(t, k)
	newID, err := k.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID || !idPattern.MatchString(newID) {
		t.Fatalf("Rotate returned %q (old %q)", newID, oldID)
	}
	curID, curKey := mustCurrent(t, k)
	if curID != newID || bytes.Equal(curKey, oldKey) {
		t.Fatalf("after Rotate, Current = %s", curID)
	}
	if got, err := k.Key(oldID); err != nil || !bytes.Equal(got, oldKey) {
		t.Fatalf("old key after Rotate: %v", err)
	}
	infos := k.Keys()
	if len(infos) != 2 || infos[0].ID != oldID || infos[1].ID != newID || infos[0].Current || !infos[1].Current {
		t.Fatalf("Keys = %+v", infos)
	}

	if err := k.Remove(newID); !errors.Is(err, keyring.ErrCurrentKey) {
		t.Fatalf("Remove(current) = %v, want ErrCurrentKey", err)
	}
	if err := k.Remove("k-00000000"); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("Remove(unknown) = %v, want ErrUnknownKey", err)
	}
	if err := k.Remove(oldID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Key(oldID); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Fatalf("Key(removed) = %v, want ErrUnknownKey", err)
	}
	if got := k.Keys(); len(got) != 1 || got[0].ID != newID {
		t.Fatalf("Keys after Remove = %+v", got)
	}
}

// TestSeesOtherProcessChanges plays server and admin with two instances on
// one file, as two processes would.
func TestSeesOtherProcessChanges(t *testing.T) {
	admin, path := create(t)
	server, err := keyring.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	oldID, _ := mustCurrent(t, server)

	newID, err := admin.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	// An unknown ID makes the server look at once.
	if _, err := server.Key(newID); err != nil {
		t.Fatalf("server Key(new ID) right after rotation: %v", err)
	}
	if id, _ := mustCurrent(t, server); id != newID {
		t.Fatalf("server Current = %s after it loaded %s", id, newID)
	}

	// Periodic reload: the admin rotates again and the server notices
	// within the reload interval without being asked for the new ID.
	third, err := admin.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 3*time.Second, func() bool { id, _ := mustCurrent(t, server); return id == third })
	if d := time.Since(start); d > keyring.ReloadInterval+time.Second {
		t.Errorf("server took %v to notice the rotation", d)
	}

	if err := admin.Remove(oldID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, func() bool {
		_, err := server.Key(oldID)
		return errors.Is(err, keyring.ErrUnknownKey)
	})
	if err := server.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStaleRefusesCurrent breaks the file the way an operator might (a copy
// with loose permissions) and checks that the server stops wrapping after
// the staleness bound, still unwraps, and recovers once the file is fixed.
func TestStaleRefusesCurrent(t *testing.T) {
	admin, path := create(t)
	server, err := keyring.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	keyring.SetTiming(server, 5*time.Millisecond, 100*time.Millisecond)
	id, _ := mustCurrent(t, server)

	raw, _ := os.ReadFile(path)
	loose := path + ".new"
	os.WriteFile(loose, raw, 0o644)
	if err := os.Rename(loose, path); err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(); !errors.Is(err, keyring.ErrInsecurePermissions) {
		t.Fatalf("Reload of a loose keyring = %v, want ErrInsecurePermissions", err)
	}
	waitFor(t, 2*time.Second, func() bool {
		_, _, err := server.Current()
		return errors.Is(err, keyring.ErrStale)
	})
	if _, err := server.Key(id); err != nil {
		t.Fatalf("Key while stale: %v (unwrapping must go on)", err)
	}
	if _, err := admin.Rotate(); !errors.Is(err, keyring.ErrInsecurePermissions) {
		t.Fatalf("Rotate on a loose keyring = %v, want ErrInsecurePermissions", err)
	}

	os.Chmod(path, 0o600)
	waitFor(t, 2*time.Second, func() bool { _, _, err := server.Current(); return err == nil })
}

// TestConcurrentWriters rotates from several instances at once; the file
// lock must keep every rotation.
func TestConcurrentWriters(t *testing.T) {
	_, path := create(t)
	const writers, each = 4, 8
	var wg sync.WaitGroup
	for range writers {
		k, err := keyring.Open(path, false)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for range each {
				if _, err := k.Rotate(); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	checkKeyCount(t, path, 1+writers*each)
}

func checkKeyCount(t *testing.T, path string, want int) {
	t.Helper()
	k, err := keyring.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	infos := k.Keys()
	seen := map[string]bool{}
	for _, in := range infos {
		seen[in.ID] = true
	}
	if len(infos) != want || len(seen) != want {
		t.Fatalf("keyring has %d keys (%d distinct), want %d: a writer lost another's update", len(infos), len(seen), want)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if e.Name() != "keyring.json" && e.Name() != "keyring.json.lock" {
			t.Errorf("stray file %s beside the keyring", e.Name())
		}
	}
}

// TestConcurrentWriterProcesses runs real processes (this test binary, re-
// executed) rotating the same keyring at once.
func TestConcurrentWriterProcesses(t *testing.T) {
	if os.Getenv("KEYRING_HELPER_PATH") != "" {
		t.Skip("helper process")
	}
	_, path := create(t)
	const procs, each = 3, 6
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRotate$")
		cmd.Env = append(os.Environ(), "KEYRING_HELPER_PATH="+path, "KEYRING_HELPER_N="+strconv.Itoa(each))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper process: %v", err)
		}
	}
	checkKeyCount(t, path, 1+procs*each)
}

// TestHelperRotate is the body of a helper process; it does nothing in a
// normal test run.
func TestHelperRotate(t *testing.T) {
	path := os.Getenv("KEYRING_HELPER_PATH")
	if path == "" {
		t.Skip("only runs as a helper process")
	}
	n, _ := strconv.Atoi(os.Getenv("KEYRING_HELPER_N"))
	k, err := keyring.Open(path, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for range n {
		if _, err := k.Rotate(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// TestRewriteKeepsOwner checks that a rotation run as root keeps the file
// readable by the service user that owns it.
func TestRewriteKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	k, path := create(t)
	const uid, gid = 4242, 4343
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after rotation the keyring is %d:%d %v, want %d:%d 0600", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}
}
