package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// ---------------------------------------------------------------------------
// Layout.

func TestLayoutCheck(t *testing.T) {
	good := []Layout{
		DefaultLayout, smallLayout, smallLayoutPad,
		{BlockSize: 4096, ChunkBlocks: 1, PadUnit: 1},
		{BlockSize: 1 << 20, ChunkBlocks: 64, PadUnit: 1 << 20},
		{BlockSize: 4096, ChunkBlocks: 16384, PadUnit: 4096},
	}
	for _, l := range good {
		if err := l.Check(); err != nil {
			t.Errorf("%+v.Check() = %v, want nil", l, err)
		}
	}
	bad := []Layout{
		{},
		{BlockSize: 0, ChunkBlocks: 16, PadUnit: 4096},
		{BlockSize: 2048, ChunkBlocks: 16, PadUnit: 1024},
		{BlockSize: 3 << 12, ChunkBlocks: 16, PadUnit: 4096},
		{BlockSize: 2 << 20, ChunkBlocks: 1, PadUnit: 4096},
		{BlockSize: 1 << 31, ChunkBlocks: 1, PadUnit: 4096},
		{BlockSize: 65536, ChunkBlocks: 0, PadUnit: 4096},
		{BlockSize: 65536, ChunkBlocks: 1025, PadUnit: 4096},
		{BlockSize: 4096, ChunkBlocks: 16385, PadUnit: 4096},
		{BlockSize: 65536, ChunkBlocks: math.MaxUint32, PadUnit: 4096},
		{BlockSize: 65536, ChunkBlocks: 16, PadUnit: 0},
		{BlockSize: 65536, ChunkBlocks: 16, PadUnit: 3000},
		{BlockSize: 65536, ChunkBlocks: 16, PadUnit: 131072},
	}
	for _, l := range bad {
		wantErr(t, fmt.Sprintf("%+v.Check()", l), l.Check(), ErrCorrupt)
		_, err := NewFileCipher(fixedKey("content"), fixedID("f"), l)
		wantErr(t, fmt.Sprintf("NewFileCipher(%+v)", l), err, ErrCorrupt)
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		_, err := NewFileCipher(make([]byte, n), fixedID("f"), DefaultLayout)
		wantErr(t, fmt.Sprintf("NewFileCipher with a %d-byte key", n), err, ErrCorrupt)
	}
	if DefaultLayout.ChunkSize() != 1<<20 || DefaultLayout.MaxSealedChunkSize() != 1<<20+16*28 {
		t.Errorf("DefaultLayout sizes: chunk %d, sealed %d", DefaultLayout.ChunkSize(), DefaultLayout.MaxSealedChunkSize())
	}
	c := mustFileCipher(t, fixedKey("content"), fixedID("f"), smallLayout)
	if c.Layout() != smallLayout {
		t.Errorf("Layout() = %+v, want %+v", c.Layout(), smallLayout)
	}
}

// layoutModel computes the layout helpers the slow, obvious way.
type layoutModel struct{ l Layout }

func (m layoutModel) chunks(size uint64) []int {
	cs := uint64(m.l.ChunkSize())
	var out []int
	for left := size; left > 0; {
		n := min(left, cs)
		out = append(out, int(n))
		left -= n
	}
	return out
}

// blocks returns the plaintext length and sealed (padded) body length of
// each block of a chunk.
func (m layoutModel) blocks(plainLen int, last bool) (plain, body []int) {
	bs := int(m.l.BlockSize)
	for left := plainLen; left > 0; {
		n := min(left, bs)
		left -= n
		p := n
		if last && left == 0 {
			for p%int(m.l.PadUnit) != 0 {
				p++
			}
			p = min(p, bs)
		}
		plain = append(plain, n)
		body = append(body, p)
	}
	return plain, body
}

func TestLayoutHelpersModel(t *testing.T) {
	layouts := []Layout{DefaultLayout, smallLayout, smallLayoutPad, {BlockSize: 4096, ChunkBlocks: 1, PadUnit: 1}, {BlockSize: 8192, ChunkBlocks: 3, PadUnit: 512}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, l := range layouts {
		m := layoutModel{l}
		cs := uint64(l.ChunkSize())
		bs := uint64(l.BlockSize)
		sizes := []uint64{0, 1, 2, uint64(l.PadUnit) - 1, uint64(l.PadUnit), uint64(l.PadUnit) + 1, bs - 1, bs, bs + 1, cs - 1, cs, cs + 1, 2*cs - 1, 2 * cs, 2*cs + 1, 5*cs + bs + 7, 17*cs - 1}
		for range 200 {
			sizes = append(sizes, rng.Uint64N(6*cs))
		}
		for _, size := range sizes {
			chunks := m.chunks(size)
			if got := l.ChunkCount(size); got != uint64(len(chunks)) {
				t.Fatalf("%+v.ChunkCount(%d) = %d, want %d", l, size, got, len(chunks))
			}
			for i := uint64(0); i < uint64(len(chunks))+3; i++ {
				want := 0
				if i < uint64(len(chunks)) {
					want = chunks[i]
				}
				if got := l.ChunkPlainLen(size, i); got != want {
					t.Fatalf("%+v.ChunkPlainLen(%d, %d) = %d, want %d", l, size, i, got, want)
				}
			}
			for _, i := range []uint64{1 << 32, 1 << 44, 1 << 63, math.MaxUint64} {
				if got := l.ChunkPlainLen(size, i); got != 0 {
					t.Fatalf("%+v.ChunkPlainLen(%d, %d) = %d, want 0 (index overflow)", l, size, i, got)
				}
			}
		}
		// The largest size: the last chunk index is MaxUint64/cs, and index
		// arithmetic must not wrap around beyond it.
		lastIdx := uint64(math.MaxUint64) / cs
		for _, i := range []uint64{0, 1, 1 << 20, lastIdx - 1, lastIdx, lastIdx + 1, math.MaxUint64} {
			want := 0
			if i <= lastIdx {
				want = int(min(cs, math.MaxUint64-i*cs))
			}
			if got := l.ChunkPlainLen(math.MaxUint64, i); got != want {
				t.Errorf("%+v.ChunkPlainLen(MaxUint64, %d) = %d, want %d", l, i, got, want)
			}
		}
		if got, want := l.ChunkCount(math.MaxUint64), math.MaxUint64/cs+1; got != want {
			t.Errorf("%+v.ChunkCount(MaxUint64) = %d, want %d", l, got, want)
		}

		plainLens := []int{-1, 0, 1, 2, int(l.PadUnit) - 1, int(l.PadUnit), int(l.PadUnit) + 1, int(bs) - 1, int(bs), int(bs) + 1, int(cs) - 1, int(cs)}
		for range 100 {
			plainLens = append(plainLens, 1+rng.IntN(int(cs)))
		}
		for _, n := range plainLens {
			for _, last := range []bool{false, true} {
				plain, body := m.blocks(n, last)
				want := 0
				for i := range body {
					want += body[i] + BlockOverhead
				}
				if got := l.SealedChunkLen(n, last); got != want {
					t.Fatalf("%+v.SealedChunkLen(%d, %v) = %d, want %d", l, n, last, got, want)
				}
				off := 0
				for b := range body {
					o, sz, ok := l.BlockSpan(n, last, uint32(b))
					if !ok || o != off || sz != body[b]+BlockOverhead {
						t.Fatalf("%+v.BlockSpan(%d, %v, %d) = %d, %d, %v; want %d, %d, true", l, n, last, b, o, sz, ok, off, body[b]+BlockOverhead)
					}
					if o != b*(int(bs)+BlockOverhead) {
						t.Fatalf("block %d starts at %d", b, o)
					}
					off += sz
				}
				if off != want {
					t.Fatalf("%+v: spans of (%d, %v) cover %d bytes, want %d", l, n, last, off, want)
				}
				for _, b := range []uint32{uint32(len(plain)), uint32(len(plain)) + 1, l.ChunkBlocks + 1, math.MaxUint32} {
					if o, sz, ok := l.BlockSpan(n, last, b); ok {
						t.Fatalf("%+v.BlockSpan(%d, %v, %d) = %d, %d, true beyond the chunk", l, n, last, b, o, sz)
					}
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Chunks.

// chunkLengths are the boundary plaintext lengths of a chunk in layout l.
func chunkLengths(l Layout) []int {
	pad, bs, cs := int(l.PadUnit), int(l.BlockSize), l.ChunkSize()
	var out []int
	for _, n := range []int{1, pad - 1, pad, pad + 1, bs - 1, bs, bs + 1, 2*bs + 500, cs - 1, cs} {
		if n >= 1 && n <= cs && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func TestChunkRoundTrip(t *testing.T) {
	for _, l := range []Layout{DefaultLayout, smallLayout, smallLayoutPad} {
		t.Run(fmt.Sprintf("bs%d-cb%d-pad%d", l.BlockSize, l.ChunkBlocks, l.PadUnit), func(t *testing.T) {
			file := fixedID("round trip file")
			c := mustFileCipher(t, fixedKey("content"), file, l)
			const index = 7
			id := NewID()
			for _, n := range chunkLengths(l) {
				for _, last := range []bool{true, false} {
					plain := filePattern(index*uint64(l.ChunkSize()), n)
					orig := slices.Clone(plain)
					sealed, tag, err := c.SealChunk(nil, index, id, plain, last, nil)
					if !last && n != l.ChunkSize() {
						wantErr(t, fmt.Sprintf("SealChunk of a short non-last chunk (%d bytes)", n), err, ErrCorrupt)
						if sealed != nil {
							t.Fatalf("failed SealChunk returned %d bytes", len(sealed))
						}
						continue
					}
					if err != nil {
						t.Fatalf("SealChunk(%d bytes, last=%v): %v", n, last, err)
					}
					if !bytes.Equal(plain, orig) {
						t.Fatalf("SealChunk modified its plaintext (%d bytes, last=%v)", n, last)
					}
					if want := l.SealedChunkLen(n, last); len(sealed) != want {
						t.Fatalf("sealed %d bytes (last=%v) into %d, SealedChunkLen says %d", n, last, len(sealed), want)
					}
					if len(sealed) > l.MaxSealedChunkSize() {
						t.Fatalf("sealed chunk of %d bytes exceeds MaxSealedChunkSize %d", len(sealed), l.MaxSealedChunkSize())
					}
					if got := sealedBlockTags(l, sealed); got != tag {
						t.Fatalf("chunk tag is not SHA-256 over the block tags")
					}
					if bytes.Contains(sealed, plain[:min(n, 64)]) && n >= 16 {
						t.Fatalf("sealed chunk contains its plaintext")
					}
					got, err := c.OpenChunk(nil, index, id, sealed, n, last, tag)
					if err != nil {
						t.Fatalf("OpenChunk(%d bytes, last=%v): %v", n, last, err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("OpenChunk(%d bytes, last=%v) returned other bytes", n, last)
					}
					// Appending to a non-empty dst keeps the prefix.
					prefix := []byte("prefix")
					got, err = c.OpenChunk(slices.Clone(prefix), index, id, sealed, n, last, tag)
					if err != nil || !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], plain) {
						t.Fatalf("OpenChunk with a dst prefix: err %v", err)
					}
					// Every block alone.
					nblocks := 0
					for b := uint32(0); ; b++ {
						off, sz, ok := l.BlockSpan(n, last, b)
						if !ok {
							break
						}
						nblocks++
						blk, err := c.OpenBlock(nil, index, id, sealed[off:off+sz], b, n, last)
						if err != nil {
							t.Fatalf("OpenBlock(%d) of (%d bytes, last=%v): %v", b, n, last, err)
						}
						lo := int(b) * int(l.BlockSize)
						hi := min(lo+int(l.BlockSize), n)
						if !bytes.Equal(blk, plain[lo:hi]) {
							t.Fatalf("OpenBlock(%d) of (%d bytes, last=%v) returned other bytes", b, n, last)
						}
						blk, err = c.OpenBlock([]byte("xy"), index, id, sealed[off:off+sz], b, n, last)
						if err != nil || string(blk[:2]) != "xy" || !bytes.Equal(blk[2:], plain[lo:hi]) {
							t.Fatalf("OpenBlock with a dst prefix: %v", err)
						}
					}
					if want := (n + int(l.BlockSize) - 1) / int(l.BlockSize); nblocks != want {
						t.Fatalf("chunk of %d bytes has %d blocks, want %d", n, nblocks, want)
					}
				}
			}
		})
	}
}

func TestSealChunkDst(t *testing.T) {
	l := smallLayout
	c := mustFileCipher(t, fixedKey("content"), fixedID("f"), l)
	id := NewID()
	plain := filePattern(0, 5000)
	need := l.SealedChunkLen(len(plain), true)

	// A dst with room is used in place, and its prefix is kept.
	buf := make([]byte, 3, 3+need)
	copy(buf, "abc")
	out, tag, err := c.SealChunk(buf, 0, id, plain, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3+need || &out[0] != &buf[0] || string(out[:3]) != "abc" {
		t.Fatalf("SealChunk with room: len %d (want %d), same array %v", len(out), 3+need, &out[0] == &buf[0])
	}
	// A dst without room is grown, prefix kept.
	small := []byte("abcd")
	out2, tag2, err := c.SealChunk(small, 0, id, plain, true, nil)
	if err != nil || len(out2) != 4+need || string(out2[:4]) != "abcd" {
		t.Fatalf("SealChunk without room: len %d, err %v", len(out2), err)
	}
	for i, s := range [][]byte{out[3:], out2[4:]} {
		tg := []ChunkTag{tag, tag2}[i]
		got, err := c.OpenChunk(nil, 0, id, s, len(plain), true, tg)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("sealing %d does not open: %v", i, err)
		}
	}
	// Random nonces: two sealings of the same input differ everywhere that
	// matters.
	if bytes.Equal(out[3:], out2[4:]) || tag == tag2 {
		t.Fatal("two sealings of the same chunk are identical")
	}
	if bytes.Equal(out[3:3+NonceSize], out2[4:4+NonceSize]) {
		t.Fatal("two sealings share a nonce")
	}
}

func TestSealChunkPadding(t *testing.T) {
	// The final block is padded with zeros inside the ciphertext: opening the
	// block with a plainLen that covers the padding shows zeros.
	l := smallLayout
	c := mustFileCipher(t, fixedKey("content"), fixedID("f"), l)
	id := NewID()
	plain := filePattern(0, 4096+5)
	sealed, _ := mustSealChunk(t, c, 0, id, plain, true)
	off, sz, _ := l.BlockSpan(len(plain), true, 1)
	if sz != 16+BlockOverhead {
		t.Fatalf("final block is %d bytes, want %d", sz, 16+BlockOverhead)
	}
	got, err := c.OpenBlock(nil, 0, id, sealed[off:off+sz], 1, 4096+16, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:5], plain[4096:]) || !bytes.Equal(got[5:], make([]byte, 11)) {
		t.Fatalf("padding is not zeros: %x", got)
	}
}

func TestSealChunkRejects(t *testing.T) {
	l := smallLayout
	c := mustFileCipher(t, fixedKey("content"), fixedID("f"), l)
	cs := l.ChunkSize()
	cases := []struct {
		name string
		n    int
		last bool
		id   ID
	}{
		{"empty last", 0, true, fixedID("c")},
		{"empty non-last", 0, false, fixedID("c")},
		{"over chunk size, last", cs + 1, true, fixedID("c")},
		{"over chunk size, non-last", cs + 1, false, fixedID("c")},
		{"short non-last", cs - 1, false, fixedID("c")},
		{"one block non-last", int(l.BlockSize), false, fixedID("c")},
		{"zero chunk ID", 10, true, ID{}},
	}
	for _, tc := range cases {
		out, _, err := c.SealChunk(nil, 0, tc.id, filePattern(0, tc.n), tc.last, nil)
		wantErr(t, tc.name, err, ErrCorrupt)
		if out != nil {
			t.Errorf("%s: returned %d bytes with the error", tc.name, len(out))
		}
	}
	// OpenChunk and OpenBlock refuse impossible plaintext lengths.
	for _, n := range []int{math.MinInt, -1, 0, cs + 1, math.MaxInt} {
		_, err := c.OpenChunk(nil, 0, fixedID("c"), make([]byte, 100), n, true, ChunkTag{})
		wantErr(t, fmt.Sprintf("OpenChunk plainLen %d", n), err, ErrCorrupt)
		_, err = c.OpenBlock(nil, 0, fixedID("c"), make([]byte, 100), 0, n, true)
		wantErr(t, fmt.Sprintf("OpenBlock plainLen %d", n), err, ErrCorrupt)
	}
	_, err := c.OpenBlock(nil, 0, fixedID("c"), make([]byte, 100), 1, 4096, true)
	wantErr(t, "OpenBlock beyond the chunk", err, ErrCorrupt)
}

func TestFileCipherConcurrent(t *testing.T) {
	l := smallLayout
	c := mustFileCipher(t, fixedKey("content"), fixedID("f"), l)
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 20 {
				index := uint64(g*100 + i)
				id := NewID()
				plain := filePattern(index, l.ChunkSize())
				sealed, tag, err := c.SealChunk(nil, index, id, plain, false, nil)
				if err == nil {
					var got []byte
					got, err = c.OpenChunk(nil, index, id, sealed, len(plain), false, tag)
					if err == nil && !bytes.Equal(got, plain) {
						err = errors.New("mismatch")
					}
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
