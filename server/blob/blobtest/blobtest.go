// Package blobtest is the conformance suite for blob.Store implementations.
// Every implementation (the local directory store, an object store) runs
// RunSuite from its own tests, so the contracts written on blob.Store are
// checked the same way everywhere instead of being re-tested ad hoc.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sealfs/sealfs/server/blob"
)

// RunSuite checks that store keeps the blob.Store contracts. The store need
// not be empty: the suite uses fresh random keys and ignores blobs it did
// not write, so it can run against a shared bucket. It does not close the
// store.
func RunSuite(t *testing.T, store blob.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, blob.Store)
	}{
		{"InvalidKeys", testInvalidKeys},
		{"RoundTrip", testRoundTrip},
		{"BuffersNotShared", testBuffersNotShared},
		{"Replace", testReplace},
		{"Missing", testMissing},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStopsOnError", testListStopsOnError},
		{"CancelledContext", testCancelledContext},
		{"ConcurrentPuts", testConcurrentPuts},
		{"AtomicReplace", testAtomicReplace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, store) })
	}
}

// NewKey returns a random valid key of 32 hex digits, the form the server
// generates.
func NewKey() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// randomData returns n random bytes, so a blob cannot pass for another.
func randomData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func mustPut(t *testing.T, s blob.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), key, data); err != nil {
		t.Fatalf("Put(%s, %d bytes): %v", key, len(data), err)
	}
}

func mustGet(t *testing.T, s blob.Store, key string) []byte {
	t.Helper()
	data, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	return data
}

func testInvalidKeys(t *testing.T, s blob.Store) {
	ctx := context.Background()
	bad := []string{
		"",
		"abc",
		strings.Repeat("a", blob.MinKeyLen-1),
		strings.Repeat("a", blob.MaxKeyLen+1),
		"ABCDEF0123456789",
		"0123456789abcdeg",
		"../../../../etc/passwd",
		"0123456789abcdef/..",
		"0123456789abcdef\x00",
		"/0123456789abcdef",
		"01234567 89abcdef",
	}
	for _, key := range bad {
		if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	// The bounds themselves are valid.
	for _, n := range []int{blob.MinKeyLen, blob.MaxKeyLen} {
		key := (NewKey() + strings.Repeat(NewKey(), 4))[:n]
		mustPut(t, s, key, []byte("bound"))
		if got := mustGet(t, s, key); string(got) != "bound" {
			t.Errorf("Get of %d-digit key = %q", n, got)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete of %d-digit key: %v", n, err)
		}
	}
}

func testRoundTrip(t *testing.T, s blob.Store) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 4095, 64 << 10, 1<<20 + 17} {
		key := NewKey()
		data := randomData(n)
		mustPut(t, s, key, data)
		if got := mustGet(t, s, key); !bytes.Equal(got, data) {
			t.Errorf("size %d: Get returned %d different bytes", n, len(got))
		}
		size, err := s.Stat(ctx, key)
		if err != nil || size != int64(n) {
			t.Errorf("size %d: Stat = %d, %v", n, size, err)
		}
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("size %d: Delete: %v", n, err)
		}
	}
}

func testBuffersNotShared(t *testing.T, s blob.Store) {
	key := NewKey()
	data := randomData(1000)
	want := bytes.Clone(data)
	mustPut(t, s, key, data)
	clear(data) // the caller may reuse its buffer after Put
	got := mustGet(t, s, key)
	if !bytes.Equal(got, want) {
		t.Fatal("blob changed when the caller reused the buffer given to Put")
	}
	clear(got) // the caller owns what Get returns
	if again := mustGet(t, s, key); !bytes.Equal(again, want) {
		t.Fatal("blob changed when the caller modified a buffer from Get")
	}
	s.Delete(context.Background(), key)
}

func testReplace(t *testing.T, s blob.Store) {
	key := NewKey()
	mustPut(t, s, key, randomData(5000))
	second := randomData(300)
	mustPut(t, s, key, second)
	if got := mustGet(t, s, key); !bytes.Equal(got, second) {
		t.Fatalf("after replacing, Get returned %d bytes, not the second blob", len(got))
	}
	if size, err := s.Stat(context.Background(), key); err != nil || size != 300 {
		t.Fatalf("after replacing, Stat = %d, %v; want 300", size, err)
	}
	s.Delete(context.Background(), key)
}

func testMissing(t *testing.T, s blob.Store) {
	ctx := context.Background()
	key := NewKey()
	if _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get of a missing key = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat of a missing key = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a missing key = %v, want nil", err)
	}
}

func testDelete(t *testing.T, s blob.Store) {
	ctx := context.Background()
	key, other := NewKey(), NewKey()
	mustPut(t, s, key, []byte("doomed"))
	mustPut(t, s, other, []byte("kept"))
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if got := mustGet(t, s, other); string(got) != "kept" {
		t.Errorf("Delete touched another blob: %q", got)
	}
	s.Delete(ctx, other)
}

func testList(t *testing.T, s blob.Store) {
	ctx := context.Background()
	want := map[string]int64{}
	for i := range 40 {
		key := NewKey()
		n := i * 37
		mustPut(t, s, key, randomData(n))
		want[key] = int64(n)
	}
	deleted := NewKey()
	mustPut(t, s, deleted, []byte("gone"))
	if err := s.Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}

	seen := map[string]int{}
	err := s.List(ctx, func(key string, size int64) error {
		if err := blob.CheckKey(key); err != nil {
			t.Errorf("List reported an invalid key: %v", err)
		}
		seen[key]++
		if n, ok := want[key]; ok && n != size {
			t.Errorf("List: %s has size %d, want %d", key, size, n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for key := range want {
		if seen[key] != 1 {
			t.Errorf("List reported %s %d times, want once", key, seen[key])
		}
	}
	if seen[deleted] != 0 {
		t.Errorf("List reported deleted key %s", deleted)
	}
	for key := range want {
		s.Delete(ctx, key)
	}
}

func testListStopsOnError(t *testing.T, s blob.Store) {
	ctx := context.Background()
	keys := []string{NewKey(), NewKey(), NewKey()}
	for _, k := range keys {
		mustPut(t, s, k, []byte("x"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.List(ctx, func(string, int64) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("List = %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Errorf("List called fn %d times after it failed, want 1", calls)
	}
	for _, k := range keys {
		s.Delete(ctx, k)
	}
}

func testCancelledContext(t *testing.T, s blob.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := NewKey()
	if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Get(context.Background(), key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("a cancelled Put stored its blob (Get = %v)", err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context = %v, want context.Canceled", err)
	}
	err := s.List(ctx, func(string, int64) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context = %v, want context.Canceled", err)
	}
}

func testConcurrentPuts(t *testing.T, s blob.Store) {
	const workers, each = 8, 16
	keys := make([][]string, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		keys[w] = make([]string, each)
		for i := range each {
			keys[w][i] = NewKey()
		}
		wg.Go(func() {
			for i, key := range keys[w] {
				if err := s.Put(context.Background(), key, blobFor(key, 1000+i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Put: %v", err)
	}
	for w := range workers {
		for i, key := range keys[w] {
			if got := mustGet(t, s, key); !bytes.Equal(got, blobFor(key, 1000+i)) {
				t.Errorf("blob %s has wrong content after concurrent Puts", key)
			}
			s.Delete(context.Background(), key)
		}
	}
}

// blobFor makes deterministic content for a key, so a reader can tell
// whose blob it got.
func blobFor(key string, n int) []byte {
	b := bytes.Repeat([]byte(key), n/len(key)+1)
	return b[:n]
}

// testAtomicReplace has writers replace one key over and over with
// self-describing versions while readers check that every read is exactly
// one whole version: never empty, short, missing or mixed.
func testAtomicReplace(t *testing.T, s blob.Store) {
	const writers, versions, readers = 4, 12, 4
	key := NewKey()
	mustPut(t, s, key, version(0, 0))

	done := make(chan struct{})
	var readWG, writeWG sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for range readers {
		readWG.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				data, err := s.Get(context.Background(), key)
				if err != nil {
					fail("Get during replacement: %v", err)
					return
				}
				if err := checkVersion(data); err != nil {
					fail("Get during replacement: %v", err)
					return
				}
			}
		})
	}
	for w := range writers {
		writeWG.Go(func() {
			for v := 1; v <= versions; v++ {
				if err := s.Put(context.Background(), key, version(w, v)); err != nil {
					fail("Put during replacement: %v", err)
					return
				}
			}
		})
	}
	writeWG.Wait()
	close(done)
	readWG.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if err := checkVersion(mustGet(t, s, key)); err != nil {
		t.Errorf("final blob: %v", err)
	}
	s.Delete(context.Background(), key)
}

// version builds a blob whose 16-byte header gives its writer, number and
// length, followed by a fill byte derived from both; sizes differ between
// versions so a torn read shows as a length mismatch.
func version(writer, v int) []byte {
	n := 16 + 64<<10 + (writer*31+v*7919)%(256<<10)
	b := make([]byte, n)
	binary.BigEndian.PutUint32(b[0:], uint32(writer))
	binary.BigEndian.PutUint32(b[4:], uint32(v))
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	fill := byte(writer*16 + v)
	for i := 16; i < n; i++ {
		b[i] = fill
	}
	return b
}

func checkVersion(b []byte) error {
	if len(b) < 16 {
		return fmt.Errorf("blob of %d bytes is shorter than a version header", len(b))
	}
	writer := binary.BigEndian.Uint32(b[0:])
	v := binary.BigEndian.Uint32(b[4:])
	if n := binary.BigEndian.Uint64(b[8:]); n != uint64(len(b)) {
		return fmt.Errorf("version %d/%d: read %d bytes, header says %d", writer, v, len(b), n)
	}
	fill := byte(writer*16 + v)
	for i := 16; i < len(b); i++ {
		if b[i] != fill {
			return fmt.Errorf("version %d/%d: byte %d is %#x, want %#x (mixed versions)", writer, v, i, b[i], fill)
		}
	}
	return nil
}
