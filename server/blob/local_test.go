package blob_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/blob/blobtest"
)

func openLocal(t testing.TB, dir string) *blob.Local {
	t.Helper()
	s, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLocalSuite(t *testing.T) {
	blobtest.RunSuite(t, openLocal(t, t.TempDir()))
}

func TestLocalLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "blobs")
	s := openLocal(t, dir)
	key := "ab" + blobtest.NewKey()
	if err := s.Put(context.Background(), key, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "ab", key))
	if err != nil {
		t.Fatalf("blob is not at dir/ab/key: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("blob file mode %v, want 0600", fi.Mode().Perm())
	}
	root, err := os.Stat(dir)
	if err != nil || root.Mode().Perm() != 0o700 {
		t.Errorf("store directory: %v, %v; want mode 0700", root.Mode(), err)
	}
	for _, sub := range []string{"00", "7f", "ff"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err != nil {
			t.Errorf("fan-out directory %s: %v", sub, err)
		}
	}
}

func TestLocalReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := blobtest.NewKey()
	if err := s.Put(context.Background(), key, []byte("persisted")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := openLocal(t, dir).Get(context.Background(), key)
	if err != nil || string(got) != "persisted" {
		t.Fatalf("after reopening, Get = %q, %v", got, err)
	}
}

func TestLocalRemovesLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	holder, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	key := "cd" + blobtest.NewKey()
	if err := holder.Put(context.Background(), key, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "cd", key+".123456.tmp")
	if err := os.WriteFile(leftover, []byte("half a blob"), 0o600); err != nil {
		t.Fatal(err)
	}

	// While another process (here: another handle) has the store open, a
	// temporary file may belong to a live Put and must stay.
	second, err := blob.OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); err != nil {
		t.Fatalf("open beside another holder removed a temp file: %v", err)
	}
	second.Close()
	holder.Close()

	// Opened with no other holder, the leftover goes; the blob stays.
	s := openLocal(t, dir)
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("leftover temp file survived open: %v", err)
	}
	if got, err := s.Get(context.Background(), key); err != nil || string(got) != "kept" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	var listed []string
	s.List(context.Background(), func(k string, _ int64) error {
		listed = append(listed, k)
		return nil
	})
	if len(listed) != 1 || listed[0] != key {
		t.Fatalf("List = %v, want only %s", listed, key)
	}
}

func TestLocalGroupCommitSharesDirSyncs(t *testing.T) {
	s := openLocal(t, t.TempDir())
	const workers, each = 16, 8
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				// All keys in one fan-out directory, so writers meet.
				if err := s.Put(context.Background(), "ee"+blobtest.NewKey(), make([]byte, 4096)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("%d puts, %d directory fsyncs", st.Puts, st.DirSyncs)
	if st.Puts != workers*each {
		t.Errorf("Stats.Puts = %d, want %d", st.Puts, workers*each)
	}
	if st.DirSyncs == 0 || st.DirSyncs > st.Puts {
		t.Errorf("Stats.DirSyncs = %d for %d puts", st.DirSyncs, st.Puts)
	}
}

// checkNoSpace asserts what a full disk must leave behind: an ErrNoSpace
// error, the previous blob under the key intact, no temporary file, and a
// store that still serves reads.
func checkNoSpace(t *testing.T, s *blob.Local, key string, old, big []byte) {
	t.Helper()
	ctx := context.Background()
	err := s.Put(ctx, key, big)
	if !errors.Is(err, blob.ErrNoSpace) {
		t.Fatalf("Put on a full disk = %v, want ErrNoSpace", err)
	}
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		t.Errorf("ErrNoSpace error %v lost the underlying errno", err)
	}
	got, err := s.Get(ctx, key)
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("previous blob after a failed replace: %d bytes, %v", len(got), err)
	}
	entries, err := os.ReadDir(filepath.Join(s.Dir(), key[:2]))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("failed Put left %s behind", e.Name())
		}
	}
}

func TestLocalNoSpaceInjected(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		t.Run(errno.Error(), func(t *testing.T) {
			s := openLocal(t, t.TempDir())
			key := blobtest.NewKey()
			old := []byte("the previous version")
			if err := s.Put(context.Background(), key, old); err != nil {
				t.Fatal(err)
			}
			blob.SetWriteHook(s, func(f *os.File, p []byte) (int, error) {
				n, _ := f.Write(p[:len(p)/2])
				return n, &os.PathError{Op: "write", Path: f.Name(), Err: errno}
			})
			checkNoSpace(t, s, key, old, make([]byte, 1<<20))
			blob.SetWriteHook(s, (*os.File).Write)
			if err := s.Put(context.Background(), key, []byte("after")); err != nil {
				t.Fatalf("Put once space is back: %v", err)
			}
		})
	}
}

// TestLocalNoSpaceTmpfs fills a real 1 MiB tmpfs. Mounting needs root, so
// it is skipped elsewhere; CI runs as root.
func TestLocalNoSpaceTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	s, err := blob.OpenLocal(filepath.Join(mnt, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	key := blobtest.NewKey()
	old := bytes.Repeat([]byte("old "), 50<<10) // 200 KiB
	if err := s.Put(ctx, key, old); err != nil {
		t.Fatal(err)
	}
	checkNoSpace(t, s, key, old, make([]byte, 2<<20))

	// The failed write's space is free again: smaller blobs still fit.
	other := blobtest.NewKey()
	if err := s.Put(ctx, other, make([]byte, 300<<10)); err != nil {
		t.Fatalf("Put after a full-disk failure: %v", err)
	}
	if n, err := s.Stat(ctx, other); err != nil || n != 300<<10 {
		t.Fatalf("Stat = %d, %v", n, err)
	}
}

func TestOpenLocalErrors(t *testing.T) {
	if _, err := blob.OpenLocal(""); err == nil {
		t.Error("OpenLocal(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := blob.OpenLocal(file); err == nil {
		t.Error("OpenLocal on a regular file succeeded")
	}
}

// TestLocalDirectWrites checks blobs written with O_DIRECT (an aligned
// prefix direct, the rest buffered) read back exactly, large ones with
// O_DIRECT reads too, whatever their size and the alignment of the
// caller's buffer, and that a device refusing O_DIRECT buffers make the
// store fall back to buffered writes.
func TestLocalDirectWrites(t *testing.T) {
	ctx := context.Background()
	s := openLocal(t, t.TempDir())
	backing := make([]byte, 2<<20+8192)
	for i := range backing {
		backing[i] = byte(i*31 + i>>9)
	}
	for _, size := range []int{64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20, 1<<20 + 4096 + 45, 2<<20 + 3} {
		for _, off := range []int{0, 1, 4096} {
			data := backing[off : off+size]
			key := blobtest.NewKey()
			if err := s.Put(ctx, key, data); err != nil {
				t.Fatalf("size %d offset %d: %v", size, off, err)
			}
			got, err := s.Get(ctx, key)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d offset %d: read back %d bytes (%v), differ", size, off, len(got), err)
			}
		}
	}
	// A refusal (EINVAL) of the direct write: written buffered instead.
	calls := 0
	blob.SetWriteHook(s, func(f *os.File, p []byte) (int, error) {
		calls++
		if calls == 1 {
			return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EINVAL}
		}
		return f.Write(p)
	})
	data := backing[3 : 3+1<<20+77]
	key := blobtest.NewKey()
	if err := s.Put(ctx, key, data); err != nil {
		t.Fatalf("Put after an O_DIRECT refusal: %v", err)
	}
	if got, err := s.Get(ctx, key); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after an O_DIRECT refusal: read back %d bytes (%v), differ", len(got), err)
	}
}

// TestLocalLend lends large blobs from pooled buffers: each loan holds the
// blob's bytes even when the buffer served another blob before, a loan
// released and lent again reads right, and a small blob comes in a buffer
// of the caller's own (no release).
func TestLocalLend(t *testing.T) {
	ctx := context.Background()
	s := openLocal(t, t.TempDir())
	var keys []string
	var blobs [][]byte
	for i, size := range []int{1 << 20, 1 << 20, 1<<20 + 4096 + 45, 100} {
		data := bytes.Repeat([]byte{byte(i + 1)}, size)
		key := blobtest.NewKey()
		if err := s.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
		keys, blobs = append(keys, key), append(blobs, data)
	}
	for round := 0; round < 3; round++ {
		for i, key := range keys {
			got, release, err := s.Lend(ctx, key)
			if err != nil || !bytes.Equal(got, blobs[i]) {
				t.Fatalf("round %d blob %d: lent %d bytes (%v), differ", round, i, len(got), err)
			}
			if (release == nil) != (len(blobs[i]) < 64<<10) {
				t.Fatalf("blob %d of %d bytes: release %v", i, len(blobs[i]), release != nil)
			}
			if release != nil {
				release()
			}
		}
	}
	if _, _, err := s.Lend(ctx, blobtest.NewKey()); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("lending a missing blob: %v", err)
	}
}
