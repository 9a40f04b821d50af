package fusefs

import (
	"bytes"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// TestHotBytesOutliveEviction checks that bytes lent to a FUSE reply stay
// the chunk's until the reply is done, even when the chunk leaves the hot
// set meanwhile, and that the buffer is released exactly once.
func TestHotBytesOutliveEviction(t *testing.T) {
	h := newHotChunks(64, 1000) // one 64-byte chunk
	kA := hotKey{index: 0, id: crypto.ID{1}}
	kB := hotKey{index: 1, id: crypto.ID{2}}
	a := getBuf(64)
	copy(a, bytes.Repeat([]byte("a"), 64))
	h.put(kA, a, a[:64])

	if h.pin(kA, 60, 8) != nil || h.pin(kA, 0, 0) != nil || h.pin(kB, 0, 1) != nil {
		t.Fatal("pin lent bytes past the chunk, none at all, or of a chunk not held")
	}
	hb := h.pin(kA, 8, 16)
	if hb == nil {
		t.Fatal("pin of a held chunk failed")
	}
	slices, st := hb.Slices()
	got, st2 := hb.Bytes(nil)
	if !st.Ok() || !st2.Ok() || len(slices) != 1 || !bytes.Equal(slices[0], got) || hb.Size() != 16 || string(got) != string(bytes.Repeat([]byte("a"), 16)) {
		t.Fatalf("lent %q / %q (size %d)", slices, got, hb.Size())
	}

	b := getBuf(64)
	h.put(kB, b, b[:64]) // evicts A while it is lent
	if h.has(kA) || h.pin(kA, 0, 1) != nil {
		t.Fatal("an evicted chunk is still served")
	}
	if !hb.c.evicted || hb.c.refs != 1 {
		t.Fatalf("evicted chunk: evicted %v, refs %d; want true, 1 (its buffer must wait for the reply)", hb.c.evicted, hb.c.refs)
	}
	hb.Done()
	hb.Done() // go-fuse calls it once; a second call must not release twice
	if hb.c.refs != 0 {
		t.Fatalf("after Done: refs %d, want 0", hb.c.refs)
	}
}

// TestHotChunksBoundBytes checks that the hot set is bounded by the bytes
// it holds, not by a number of chunks, and keeps the newest chunk even
// when that alone is larger than the bound.
func TestHotChunksBoundBytes(t *testing.T) {
	h := newHotChunks(3<<10, 1000)
	for i := range 4 {
		b := getBuf(1 << 10)
		h.put(hotKey{index: i, id: crypto.ID{byte(i + 1)}}, b, b)
	}
	if h.size != 3<<10 || len(h.order) != 3 || h.has(hotKey{index: 0, id: crypto.ID{1}}) {
		t.Fatalf("after four 1 KiB chunks under a 3 KiB bound: %d bytes in %d chunks, oldest held %v", h.size, len(h.order), h.has(hotKey{index: 0, id: crypto.ID{1}}))
	}
	big := getBuf(8 << 10)
	h.put(hotKey{index: 9, id: crypto.ID{9}}, big, big)
	if len(h.order) != 1 || !h.has(hotKey{index: 9, id: crypto.ID{9}}) || h.size != 8<<10 {
		t.Fatalf("a chunk larger than the bound: %d chunks, %d bytes", len(h.order), h.size)
	}
}

// TestHotChunksBoundCount checks that small chunks are bounded by number
// too: a reader of many small files must not fill the byte bound with
// thousands of them.
func TestHotChunksBoundCount(t *testing.T) {
	maxHotEntries := hotMaxEntries(crypto.DefaultLayout)
	if maxHotEntries != 256 {
		t.Fatalf("%d chunks held with the default layout, want 256", maxHotEntries)
	}
	if n := hotMaxEntries(crypto.Layout{BlockSize: 64 << 10, ChunkBlocks: 1, PadUnit: 4 << 10}); n < 2*readaheadBytes/(64<<10) {
		t.Fatalf("%d chunks of 64 KiB held, less than two readahead windows", n)
	}
	h := newHotChunks(48<<20, maxHotEntries)
	key := func(i int) hotKey { return hotKey{index: i, id: crypto.ID{byte(i), byte(i >> 8)}} }
	for i := range maxHotEntries + 100 {
		b := getBufFor(100, 1<<20)
		h.put(key(i), b, b[:100])
	}
	if len(h.order) != maxHotEntries || len(h.entries) != maxHotEntries || h.size != int64(maxHotEntries)*4<<10 {
		t.Fatalf("after %d small chunks: %d held (%d in the map), %d bytes; want %d of 4 KiB", maxHotEntries+100, len(h.order), len(h.entries), h.size, maxHotEntries)
	}
	if h.has(key(99)) || !h.has(key(100)) || !h.has(key(maxHotEntries+99)) {
		t.Fatal("the oldest chunks were not the ones evicted")
	}
}

// TestGetBufFor checks that a small need gets a small buffer and a large
// one the full size, so pooled buffers come in few sizes.
func TestGetBufFor(t *testing.T) {
	const full = 1<<20 + 448
	for _, tc := range []struct{ n, want int }{
		{0, 4 << 10}, {1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 8 << 10},
		{300 << 10, 512 << 10}, {full / 2, 1 << 20}, {full/2 + 1, full}, {full, full},
	} {
		b := getBufFor(tc.n, full)
		if len(b) != tc.want || cap(b) != tc.want {
			t.Errorf("getBufFor(%d, %d): len %d cap %d, want %d", tc.n, full, len(b), cap(b), tc.want)
		}
		putBuf(b)
	}
}
