package atrest_test

import (
	"testing"

	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob/blobtest"
)

// BenchmarkPut1MiB measures the hot path for one chunk: seal once into a
// pooled buffer, write once, durably.
func BenchmarkPut1MiB(b *testing.B) {
	e := newEnv(b)
	plain := random(1 << 20)
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.store.Put(ctx, owner, blobID, blobtest.NewKey(), plain); err != nil {
			b.Fatal(err)
		}
	}
}

// storedChunk stores a random 1 MiB chunk for a read benchmark.
func storedChunk(b *testing.B) (*env, string, atrest.Wrapped, int64) {
	e := newEnv(b)
	plain := random(1 << 20)
	key := blobtest.NewKey()
	w, err := e.store.Put(ctx, owner, blobID, key, plain)
	if err != nil {
		b.Fatal(err)
	}
	return e, key, w, int64(len(plain))
}

// BenchmarkGet1MiB measures reading a chunk into a buffer the caller keeps.
func BenchmarkGet1MiB(b *testing.B) {
	e, key, w, size := storedChunk(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.store.Get(ctx, owner, blobID, key, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLend1MiB measures what a chunk download does: the blob read
// into a buffer the store lends, opened in place, the buffer given back.
// Against BenchmarkGet1MiB it shows what a fresh megabyte per read costs.
func BenchmarkLend1MiB(b *testing.B) {
	e, key, w, size := storedChunk(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		_, release, err := e.store.Lend(ctx, owner, blobID, key, w)
		if err != nil {
			b.Fatal(err)
		}
		if release != nil {
			release()
		}
	}
}
