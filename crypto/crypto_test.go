package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// ---------------------------------------------------------------------------
// Shared helpers of the package's tests (crypto_test.go, tamper_test.go,
// fuzz_test.go, bench_test.go).

// fixedKey is a deterministic 32-byte key, so seed corpora sealed once keep
// opening.
func fixedKey(label string) []byte {
	k := sha256.Sum256([]byte("sealfs test key " + label))
	return k[:]
}

// fixedID is a deterministic non-zero ID.
func fixedID(label string) ID {
	var id ID
	h := sha256.Sum256([]byte("sealfs test id " + label))
	copy(id[:], h[:])
	return id
}

// Layouts used by the tests besides DefaultLayout.
var (
	smallLayout    = Layout{BlockSize: 4096, ChunkBlocks: 4, PadUnit: 16}
	smallLayoutPad = Layout{BlockSize: 4096, ChunkBlocks: 4, PadUnit: 4096}
)

// filePattern returns n plaintext bytes of a file starting at offset off.
// It never contains a zero byte, so padding is distinguishable from content.
func filePattern(off uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off+uint64(i))%251) + 1
	}
	return b
}

// testKDFParams are the cheapest parameters Check accepts.
func testKDFParams(salt []byte) KDFParams {
	p := MinKDFParams
	p.Salt = salt
	return p
}

// sealedBlockTags walks a sealed chunk the way OpenChunk does and returns the
// chunk tag its blocks would have: SHA-256 over the GCM tags in order. Tests
// use it to check the definition of ChunkTag and to get past the tag check
// on purpose, so that the per-block AD check is exercised on its own.
func sealedBlockTags(l Layout, sealed []byte) ChunkTag {
	var tag ChunkTag
	sbs := int(l.BlockSize) + BlockOverhead
	h := sha256.New()
	for off := 0; off < len(sealed); off += sbs {
		end := min(off+sbs, len(sealed))
		if end-off < TagSize {
			return tag
		}
		h.Write(sealed[end-TagSize : end])
	}
	h.Sum(tag[:0])
	return tag
}

func mustFileCipher(t testing.TB, key []byte, file ID, l Layout) *FileCipher {
	t.Helper()
	c, err := NewFileCipher(key, file, l)
	if err != nil {
		t.Fatalf("NewFileCipher(%+v): %v", l, err)
	}
	return c
}

func mustSealChunk(t testing.TB, c *FileCipher, index uint64, id ID, plain []byte, last bool) ([]byte, ChunkTag) {
	t.Helper()
	sealed, tag, err := c.SealChunk(nil, index, id, plain, last, nil)
	if err != nil {
		t.Fatalf("SealChunk(index %d, %d bytes, last=%v): %v", index, len(plain), last, err)
	}
	return sealed, tag
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func mustKeys(t testing.TB, master []byte) *Keys {
	t.Helper()
	k, err := DeriveKeys(master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ---------------------------------------------------------------------------
// Errors.

func TestErrorHierarchy(t *testing.T) {
	for _, e := range []error{ErrTruncated, ErrExtended} {
		if !errors.Is(e, ErrCorrupt) {
			t.Errorf("errors.Is(%v, ErrCorrupt) = false", e)
		}
		if errors.Is(e, ErrAuthentication) || errors.Is(e, ErrUnsupportedVersion) {
			t.Errorf("%v matches an unrelated sentinel", e)
		}
		wrapped := fmt.Errorf("ctx: %w", e)
		if !errors.Is(wrapped, e) || !errors.Is(wrapped, ErrCorrupt) {
			t.Errorf("wrapped %v lost its identity", e)
		}
	}
	if errors.Is(ErrCorrupt, ErrTruncated) || errors.Is(ErrTruncated, ErrExtended) || errors.Is(ErrExtended, ErrTruncated) {
		t.Error("sentinels are not distinct")
	}
	all := []error{ErrAuthentication, ErrCorrupt, ErrUnsupportedVersion, ErrTruncated, ErrExtended, ErrWeakParameters}
	for i, a := range all {
		if a.Error() == "" {
			t.Errorf("error %d has no message", i)
		}
		for j, b := range all {
			if i != j && a.Error() == b.Error() {
				t.Errorf("errors %d and %d share the message %q", i, j, a)
			}
		}
	}
}

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

// ---------------------------------------------------------------------------
// Password, master key, purpose keys.

func TestKDFParamsCheck(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, SaltSize)
	if err := DefaultKDFParams(salt).Check(); err != nil {
		t.Fatalf("DefaultKDFParams.Check() = %v", err)
	}
	if err := testKDFParams(salt).Check(); err != nil {
		t.Fatalf("MinKDFParams with a salt: Check() = %v", err)
	}
	d := DefaultKDFParams(salt)
	if d.MemoryKiB < 64*1024 || d.Time < MinKDFParams.Time || d.Threads < 1 || d.Algorithm != KDFAlgorithmArgon2id || !bytes.Equal(d.Salt, salt) {
		t.Errorf("DefaultKDFParams = %+v", d)
	}
	mod := func(f func(*KDFParams)) KDFParams {
		p := testKDFParams(slices.Clone(salt))
		f(&p)
		return p
	}
	cases := []struct {
		name string
		p    KDFParams
		want error
	}{
		{"algorithm 0", mod(func(p *KDFParams) { p.Algorithm = 0 }), ErrUnsupportedVersion},
		{"algorithm 2", mod(func(p *KDFParams) { p.Algorithm = 2 }), ErrUnsupportedVersion},
		{"algorithm 255", mod(func(p *KDFParams) { p.Algorithm = 255 }), ErrUnsupportedVersion},
		{"no salt", mod(func(p *KDFParams) { p.Salt = nil }), ErrCorrupt},
		{"short salt", mod(func(p *KDFParams) { p.Salt = p.Salt[:15] }), ErrCorrupt},
		{"long salt", mod(func(p *KDFParams) { p.Salt = append(p.Salt, 0) }), ErrCorrupt},
		{"zero threads", mod(func(p *KDFParams) { p.Threads = 0 }), ErrCorrupt},
		{"memory over 4 GiB", mod(func(p *KDFParams) { p.MemoryKiB = 4<<20 + 1 }), ErrCorrupt},
		{"memory max", mod(func(p *KDFParams) { p.MemoryKiB = math.MaxUint32 }), ErrCorrupt},
		{"time 1001", mod(func(p *KDFParams) { p.Time = 1001 }), ErrCorrupt},
		{"time max", mod(func(p *KDFParams) { p.Time = math.MaxUint32 }), ErrCorrupt},
		{"time 0", mod(func(p *KDFParams) { p.Time = 0 }), ErrWeakParameters},
		{"memory 8191 KiB", mod(func(p *KDFParams) { p.MemoryKiB = 8191 }), ErrWeakParameters},
		{"memory 0", mod(func(p *KDFParams) { p.MemoryKiB = 0 }), ErrWeakParameters},
		{"memory 64 KiB", mod(func(p *KDFParams) { p.MemoryKiB = 64 }), ErrWeakParameters},
	}
	for _, tc := range cases {
		err := tc.p.Check()
		wantErr(t, tc.name, err, tc.want)
		for _, other := range []error{ErrUnsupportedVersion, ErrCorrupt, ErrWeakParameters} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%s: error %v also matches %v", tc.name, err, other)
			}
		}
		// A client never spends the password on rejected parameters.
		_, err = DeriveLoginKeys([]byte("pw"), tc.p)
		wantErr(t, tc.name+" (DeriveLoginKeys)", err, tc.want)
	}
	okCases := []KDFParams{
		mod(func(p *KDFParams) { p.Time = maxKDFTime }),
		mod(func(p *KDFParams) { p.MemoryKiB = maxKDFMemoryKiB }),
		mod(func(p *KDFParams) { p.Threads = 255 }),
	}
	for _, p := range okCases {
		if err := p.Check(); err != nil {
			t.Errorf("%+v.Check() = %v, want nil", p, err)
		}
	}
}

func TestKDFParamsJSON(t *testing.T) {
	salt := bytes.Repeat([]byte{0xab}, SaltSize)
	p := DefaultKDFParams(salt)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"alg", "time", "mem", "thr", "salt"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	var q KDFParams
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q.Algorithm != p.Algorithm || q.Time != p.Time || q.MemoryKiB != p.MemoryKiB || q.Threads != p.Threads || !bytes.Equal(q.Salt, p.Salt) {
		t.Fatalf("JSON round trip: %+v != %+v", q, p)
	}
}

func TestDeriveLoginKeys(t *testing.T) {
	salt := bytes.Repeat([]byte{1}, SaltSize)
	salt2 := bytes.Repeat([]byte{2}, SaltSize)
	k1, err := DeriveLoginKeys([]byte("correct horse"), testKDFParams(salt))
	if err != nil {
		t.Fatal(err)
	}
	k1b, err := DeriveLoginKeys([]byte("correct horse"), testKDFParams(slices.Clone(salt)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k1.AuthKey, k1b.AuthKey) || !bytes.Equal(k1.WrapKey, k1b.WrapKey) {
		t.Fatal("DeriveLoginKeys is not deterministic")
	}
	if len(k1.AuthKey) != KeySize || len(k1.WrapKey) != KeySize {
		t.Fatalf("key sizes %d, %d", len(k1.AuthKey), len(k1.WrapKey))
	}
	if bytes.Equal(k1.AuthKey, k1.WrapKey) {
		t.Fatal("auth key equals wrapping key")
	}
	others := map[string]KDFParams{"salt": testKDFParams(salt2)}
	p2 := testKDFParams(salt)
	p2.Time = 2
	others["time"] = p2
	p3 := testKDFParams(salt)
	p3.MemoryKiB = 9 * 1024
	others["memory"] = p3
	p4 := testKDFParams(salt)
	p4.Threads = 2
	others["threads"] = p4
	seen := [][]byte{k1.AuthKey, k1.WrapKey}
	check := func(what string, k LoginKeys) {
		for _, s := range seen {
			if bytes.Equal(s, k.AuthKey) || bytes.Equal(s, k.WrapKey) {
				t.Fatalf("different %s gave a key seen before", what)
			}
		}
		seen = append(seen, k.AuthKey, k.WrapKey)
	}
	for what, p := range others {
		k, err := DeriveLoginKeys([]byte("correct horse"), p)
		if err != nil {
			t.Fatal(err)
		}
		check(what, k)
	}
	for _, pw := range []string{"correct horsf", "", "correct horse "} {
		k, err := DeriveLoginKeys([]byte(pw), testKDFParams(salt))
		if err != nil {
			t.Fatal(err)
		}
		check("password "+pw, k)
	}
}

func TestMasterKeyWrap(t *testing.T) {
	login, err := DeriveLoginKeys([]byte("first password"), testKDFParams(bytes.Repeat([]byte{1}, SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	master := NewMasterKey()
	if len(master) != MasterKeySize || bytes.Equal(master, make([]byte, MasterKeySize)) {
		t.Fatalf("NewMasterKey = %x", master)
	}
	wrapped, err := WrapMasterKey(login.WrapKey, master)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != WrappedMasterKeySize || WrappedMasterKeySize != 61 || wrapped[0] != FormatVersion {
		t.Fatalf("wrapped master key is %d bytes starting %#x", len(wrapped), wrapped[0])
	}
	if bytes.Contains(wrapped, master) {
		t.Fatal("wrapped master key contains the master key")
	}
	got, err := UnwrapMasterKey(login.WrapKey, wrapped)
	if err != nil || !bytes.Equal(got, master) {
		t.Fatalf("UnwrapMasterKey: %v", err)
	}

	// Wrong password.
	wrong, err := DeriveLoginKeys([]byte("second password"), testKDFParams(bytes.Repeat([]byte{1}, SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = UnwrapMasterKey(wrong.WrapKey, wrapped)
	wantErr(t, "UnwrapMasterKey with a wrong password", err, ErrAuthentication)
	// The auth key, which the server knows, does not unwrap it either.
	_, err = UnwrapMasterKey(login.AuthKey, wrapped)
	wantErr(t, "UnwrapMasterKey with the auth key", err, ErrAuthentication)

	// Password change: new salt, new password, same master.
	newLogin, err := DeriveLoginKeys([]byte("second password"), testKDFParams(bytes.Repeat([]byte{9}, SaltSize)))
	if err != nil {
		t.Fatal(err)
	}
	rewrapped, err := WrapMasterKey(newLogin.WrapKey, got)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rewrapped, wrapped) {
		t.Fatal("rewrapped master key equals the old wrapping")
	}
	got2, err := UnwrapMasterKey(newLogin.WrapKey, rewrapped)
	if err != nil || !bytes.Equal(got2, master) {
		t.Fatalf("unwrap after password change: %v", err)
	}
	_, err = UnwrapMasterKey(login.WrapKey, rewrapped)
	wantErr(t, "old password after change", err, ErrAuthentication)
	k1, k2 := mustKeys(t, master), mustKeys(t, got2)
	if !bytes.Equal(k1.Content, k2.Content) || !bytes.Equal(k1.Names, k2.Names) {
		t.Fatal("purpose keys changed with the password")
	}
	// Same master wrapped twice gives different bytes (fresh nonce).
	again, _ := WrapMasterKey(login.WrapKey, master)
	if bytes.Equal(again, wrapped) {
		t.Fatal("two wrappings are identical")
	}

	// Malformed inputs.
	for _, n := range []int{0, 16, 31, 33} {
		_, err := WrapMasterKey(login.WrapKey, make([]byte, n))
		wantErr(t, fmt.Sprintf("WrapMasterKey of a %d-byte master", n), err, ErrCorrupt)
		_, err = WrapMasterKey(make([]byte, n), master)
		wantErr(t, fmt.Sprintf("WrapMasterKey under a %d-byte key", n), err, ErrCorrupt)
		_, err = UnwrapMasterKey(make([]byte, n), wrapped)
		wantErr(t, fmt.Sprintf("UnwrapMasterKey under a %d-byte key", n), err, ErrCorrupt)
	}
	for _, n := range []int{0, 1, BoxOverhead, WrappedMasterKeySize - 1, WrappedMasterKeySize + 1} {
		_, err := UnwrapMasterKey(login.WrapKey, make([]byte, n))
		wantErr(t, fmt.Sprintf("UnwrapMasterKey of %d bytes", n), err, ErrCorrupt)
	}
}

func TestDeriveKeys(t *testing.T) {
	master := fixedKey("master")
	k := mustKeys(t, master)
	all := [][]byte{k.Content, k.Names, k.NameIndex, k.Manifest, k.Transfer, k.Attr, k.Account}
	for i, a := range all {
		if len(a) != KeySize {
			t.Fatalf("key %d is %d bytes", i, len(a))
		}
		if bytes.Equal(a, master) {
			t.Fatalf("key %d equals the master key", i)
		}
		for j, b := range all[:i] {
			if bytes.Equal(a, b) {
				t.Fatalf("keys %d and %d are equal", i, j)
			}
		}
	}
	k2 := mustKeys(t, slices.Clone(master))
	if !bytes.Equal(k.Content, k2.Content) || !bytes.Equal(k.Account, k2.Account) || !bytes.Equal(k.Transfer, k2.Transfer) {
		t.Fatal("DeriveKeys is not deterministic")
	}
	k3 := mustKeys(t, fixedKey("other master"))
	for i, a := range [][]byte{k3.Content, k3.Names, k3.NameIndex, k3.Manifest, k3.Transfer, k3.Attr, k3.Account} {
		if bytes.Equal(a, all[i]) {
			t.Fatalf("key %d is the same under another master", i)
		}
	}
	for _, n := range []int{0, 31, 33} {
		_, err := DeriveKeys(make([]byte, n))
		wantErr(t, fmt.Sprintf("DeriveKeys of a %d-byte master", n), err, ErrCorrupt)
	}

	// File keys.
	fa, fb := fixedID("a"), fixedID("b")
	ka, kb := FileKey(k.Content, fa), FileKey(k.Content, fb)
	if len(ka) != KeySize || bytes.Equal(ka, kb) || bytes.Equal(ka, k.Content) {
		t.Fatal("file keys are not distinct")
	}
	if !bytes.Equal(ka, FileKey(slices.Clone(k.Content), fa)) {
		t.Fatal("FileKey is not deterministic")
	}
	if bytes.Equal(FileKey(k.Content, ID{}), FileKey(k.Content, ID{1})) {
		t.Fatal("FileKey ignores the file ID")
	}
	if bytes.Equal(ka, FileKey(k3.Content, fa)) {
		t.Fatal("FileKey ignores the content key")
	}
	// The file key is what FileCipher seals under: another file's cipher
	// with the same content key cannot open the chunk even with its tag.
	ca := mustFileCipher(t, k.Content, fa, smallLayout)
	cb := mustFileCipher(t, k.Content, fb, smallLayout)
	id := NewID()
	sealed, tag := mustSealChunk(t, ca, 0, id, []byte("x"), true)
	_, err := cb.OpenChunk(nil, 0, id, sealed, 1, true, tag)
	wantErr(t, "chunk of file a opened as file b", err, ErrAuthentication)
}

func TestAccountKeyPair(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	p, err := NewAccountKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Public) != 32 || len(p.SealedPrivate) != SealedPrivateKeySize || SealedPrivateKeySize != 61 {
		t.Fatalf("sizes: public %d, sealed %d", len(p.Public), len(p.SealedPrivate))
	}
	priv, err := OpenAccountKeyPair(k, p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), p.Public) {
		t.Fatal("opened private key does not match the public key")
	}
	if bytes.Contains(p.SealedPrivate, priv.Bytes()) {
		t.Fatal("sealed private key contains the private key")
	}
	// The key works: an ECDH with another key pair agrees.
	q, err := NewAccountKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(q.Public, p.Public) {
		t.Fatal("two key pairs share a public key")
	}
	privQ, err := OpenAccountKeyPair(k, q)
	if err != nil {
		t.Fatal(err)
	}
	s1, err1 := priv.ECDH(privQ.PublicKey())
	s2, err2 := privQ.ECDH(priv.PublicKey())
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Fatal("ECDH between opened keys disagrees")
	}

	// Mismatched public key.
	_, err = OpenAccountKeyPair(k, AccountKeyPair{Public: q.Public, SealedPrivate: p.SealedPrivate})
	wantErr(t, "sealed private key with another public key", err, ErrAuthentication)
	// Wrong key.
	_, err = OpenAccountKeyPair(mustKeys(t, fixedKey("other")), p)
	wantErr(t, "account key pair under another master", err, ErrAuthentication)
	// Wrong sizes.
	for _, bad := range []AccountKeyPair{
		{},
		{Public: p.Public[:31], SealedPrivate: p.SealedPrivate},
		{Public: append(slices.Clone(p.Public), 0), SealedPrivate: p.SealedPrivate},
		{Public: p.Public, SealedPrivate: p.SealedPrivate[:60]},
		{Public: p.Public, SealedPrivate: append(slices.Clone(p.SealedPrivate), 0)},
	} {
		_, err := OpenAccountKeyPair(k, bad)
		wantErr(t, fmt.Sprintf("account key pair of sizes %d/%d", len(bad.Public), len(bad.SealedPrivate)), err, ErrCorrupt)
	}
}

// ---------------------------------------------------------------------------
// IDs.

func TestID(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b || a.IsZero() || b.IsZero() {
		t.Fatalf("NewID: %v %v", a, b)
	}
	if !(ID{}).IsZero() || (ID{15: 1}).IsZero() {
		t.Fatal("IsZero")
	}
	s := a.String()
	if len(s) != 32 || s != strings.ToLower(s) {
		t.Fatalf("String() = %q", s)
	}
	got, err := ParseID(s)
	if err != nil || got != a {
		t.Fatalf("ParseID(String()) = %v, %v", got, err)
	}
	if (ID{}).String() != strings.Repeat("0", 32) {
		t.Fatal("zero ID string")
	}
	id, err := ParseID("000102030405060708090a0b0c0d0eff")
	if err != nil || id != (ID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff}) {
		t.Fatalf("ParseID: %v %v", id, err)
	}
	for _, bad := range []string{"", "0", strings.Repeat("0", 31), strings.Repeat("0", 33), strings.Repeat("g", 32), strings.Repeat("0", 30) + " 0", strings.Repeat("0", 31) + "\x00", "0x" + strings.Repeat("0", 30), strings.Repeat("é", 16)} {
		_, err := ParseID(bad)
		wantErr(t, fmt.Sprintf("ParseID(%q)", bad), err, ErrCorrupt)
	}
}

// ---------------------------------------------------------------------------
// Manifests.

func manifestForTest(file ID, l Layout, size uint64, holes ...int) *Manifest {
	m := &Manifest{File: file, Generation: 42, Size: size, Layout: l}
	for i := range l.ChunkCount(size) {
		e := ChunkEntry{ID: fixedID(fmt.Sprintf("chunk %d", i))}
		copy(e.Tag[:], fixedKey(fmt.Sprintf("tag %d", i)))
		if slices.Contains(holes, int(i)) {
			e = ChunkEntry{}
		}
		m.Chunks = append(m.Chunks, e)
	}
	return m
}

func manifestsEqual(a, b *Manifest) bool {
	return a.File == b.File && a.Generation == b.Generation && a.Size == b.Size && a.Layout == b.Layout &&
		len(a.Chunks) == len(b.Chunks) && (len(a.Chunks) == 0 || slices.Equal(a.Chunks, b.Chunks))
}

func TestManifestRoundTrip(t *testing.T) {
	key := fixedKey("manifest")
	file := fixedID("file")
	cs := uint64(DefaultLayout.ChunkSize())
	cases := []*Manifest{
		manifestForTest(file, DefaultLayout, 0),
		manifestForTest(file, DefaultLayout, 1),
		manifestForTest(file, DefaultLayout, cs),
		manifestForTest(file, DefaultLayout, cs+1),
		manifestForTest(file, DefaultLayout, 3*cs+5, 1, 2),
		manifestForTest(file, DefaultLayout, 2*cs, 0, 1), // all holes
		manifestForTest(file, smallLayout, 100*uint64(smallLayout.ChunkSize())-1, 50),
		manifestForTest(ID{}, smallLayoutPad, 12345),
	}
	cases[0].Generation = 0
	cases[1].Generation = math.MaxUint64
	for _, m := range cases {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(size %d): %v", m.Size, err)
		}
		if want := 48 + 48*len(m.Chunks); len(b) != want {
			t.Fatalf("manifest of %d chunks encodes to %d bytes, want %d", len(m.Chunks), len(b), want)
		}
		var u Manifest
		if err := u.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if !manifestsEqual(m, &u) {
			t.Fatalf("unmarshal round trip: %+v != %+v", u, m)
		}
		b2, _ := u.MarshalBinary()
		if !bytes.Equal(b, b2) {
			t.Fatal("re-marshal differs")
		}
		sealed, err := SealManifest(key, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(b)+BoxOverhead || sealed[0] != FormatVersion {
			t.Fatalf("sealed manifest is %d bytes, want %d", len(sealed), len(b)+BoxOverhead)
		}
		o, err := OpenManifest(key, m.File, sealed)
		if err != nil {
			t.Fatalf("OpenManifest: %v", err)
		}
		if !manifestsEqual(m, o) {
			t.Fatalf("seal round trip: %+v != %+v", o, m)
		}
		// Per-chunk helpers.
		var total uint64
		for i := range o.Chunks {
			n := o.ChunkPlainLen(i)
			if n <= 0 || n > o.Layout.ChunkSize() || (i < len(o.Chunks)-1 && n != o.Layout.ChunkSize()) {
				t.Fatalf("ChunkPlainLen(%d) = %d", i, n)
			}
			if o.IsLast(i) != (i == len(o.Chunks)-1) {
				t.Fatalf("IsLast(%d)", i)
			}
			if o.Chunks[i].IsHole() != (o.Chunks[i].ID == ID{}) {
				t.Fatalf("IsHole(%d)", i)
			}
			total += uint64(n)
		}
		if total != m.Size {
			t.Fatalf("chunks hold %d bytes, size is %d", total, m.Size)
		}
		if o.ChunkPlainLen(len(o.Chunks)) != 0 {
			t.Fatal("ChunkPlainLen beyond the end is not 0")
		}
	}
	// A 0-byte file has 0 chunks and encodes to its header alone.
	m0 := &Manifest{File: file, Layout: DefaultLayout}
	sealed, err := SealManifest(key, m0)
	if err != nil || len(sealed) != 77 {
		t.Fatalf("empty manifest: %d bytes, %v", len(sealed), err)
	}
	if o, err := OpenManifest(key, file, sealed); err != nil || len(o.Chunks) != 0 || o.Size != 0 {
		t.Fatalf("empty manifest: %+v, %v", o, err)
	}
	if _, err := SealManifest(key[:31], m0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("SealManifest with a 31-byte key: %v", err)
	}
	if _, err := OpenManifest(key[:31], file, sealed); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenManifest with a 31-byte key: %v", err)
	}
}

// TestManifestWithChunks ties a manifest to real sealed chunks: a reader that
// walks the opened manifest gets the file back, holes as zeros.
func TestManifestWithChunks(t *testing.T) {
	master := fixedKey("master")
	k := mustKeys(t, master)
	l := smallLayout
	file := NewID()
	c := mustFileCipher(t, k.Content, file, l)
	size := uint64(3*l.ChunkSize() + 777)
	content := filePattern(0, int(size))
	hole := 1
	clear(content[hole*l.ChunkSize() : (hole+1)*l.ChunkSize()])
	m := &Manifest{File: file, Generation: 1, Size: size, Layout: l}
	store := map[ID][]byte{}
	for i := range l.ChunkCount(size) {
		lo := int(i) * l.ChunkSize()
		n := l.ChunkPlainLen(size, i)
		if int(i) == hole {
			m.Chunks = append(m.Chunks, ChunkEntry{})
			continue
		}
		id := NewID()
		sealed, tag := mustSealChunk(t, c, i, id, content[lo:lo+n], i == l.ChunkCount(size)-1)
		store[id] = sealed
		m.Chunks = append(m.Chunks, ChunkEntry{ID: id, Tag: tag})
	}
	sm, err := SealManifest(k.Manifest, m)
	if err != nil {
		t.Fatal(err)
	}
	o, err := OpenManifest(k.Manifest, file, sm)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i, e := range o.Chunks {
		n := o.ChunkPlainLen(i)
		if e.IsHole() {
			got = append(got, make([]byte, n)...)
			continue
		}
		got, err = c.OpenChunk(got, uint64(i), e.ID, store[e.ID], n, o.IsLast(i), e.Tag)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if !bytes.Equal(got, content) {
		t.Fatal("file read through its manifest differs")
	}
}

// ---------------------------------------------------------------------------
// Names and symlinks.

func TestNames(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	parent, file := fixedID("parent"), fixedID("file")
	rng := rand.New(rand.NewPCG(3, 4))
	lengths := []int{}
	for n := 1; n <= 255; n++ {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 256, 1000, MaxNameLen-1, MaxNameLen)
	for _, n := range lengths {
		name := make([]byte, n)
		for i := range name {
			name[i] = byte(1 + rng.IntN(255)) // any byte but NUL, not necessarily UTF-8
		}
		sealed, err := SealName(k.Names, parent, file, string(name))
		if err != nil {
			t.Fatalf("SealName(%d bytes): %v", n, err)
		}
		if want := (n+15)/16*16 + BoxOverhead; len(sealed) != want {
			t.Fatalf("sealed %d-byte name is %d bytes, want %d", n, len(sealed), want)
		}
		got, err := OpenName(k.Names, parent, file, sealed)
		if err != nil || got != string(name) {
			t.Fatalf("OpenName(%d bytes): %q, %v", n, got, err)
		}
	}
	for _, name := range []string{"", "a\x00b", "\x00", "abc\x00", strings.Repeat("a", MaxNameLen+1)} {
		_, err := SealName(k.Names, parent, file, name)
		wantErr(t, fmt.Sprintf("SealName(%d bytes)", len(name)), err, ErrCorrupt)
	}
	_, err := SealName(k.Names[:16], parent, file, "x")
	wantErr(t, "SealName with a short key", err, ErrCorrupt)
	_, err = OpenName(k.Names[:16], parent, file, make([]byte, 45))
	wantErr(t, "OpenName with a short key", err, ErrCorrupt)
	// Names sealed at the root (zero parent) and for the root (zero file).
	for _, pf := range [][2]ID{{{}, file}, {parent, {}}, {{}, {}}} {
		s, err := SealName(k.Names, pf[0], pf[1], "x")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := OpenName(k.Names, pf[0], pf[1], s); err != nil || got != "x" {
			t.Fatalf("zero IDs: %q %v", got, err)
		}
	}
}

func TestNameIndex(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	p1, p2 := fixedID("p1"), fixedID("p2")
	a := NameIndex(k.NameIndex, p1, "report.txt")
	if a != NameIndex(slices.Clone(k.NameIndex), p1, "report.txt") {
		t.Fatal("NameIndex is not deterministic")
	}
	h := hmac.New(sha256.New, k.NameIndex)
	h.Write(p1[:])
	h.Write([]byte("report.txt"))
	if !bytes.Equal(a[:], h.Sum(nil)) {
		t.Fatal("NameIndex is not HMAC(key, parent || name)")
	}
	others := map[string][NameIndexSize]byte{
		"parent":    NameIndex(k.NameIndex, p2, "report.txt"),
		"name":      NameIndex(k.NameIndex, p1, "report.txT"),
		"longer":    NameIndex(k.NameIndex, p1, "report.txt\x01"),
		"key":       NameIndex(k.Names, p1, "report.txt"),
		"other key": NameIndex(mustKeys(t, fixedKey("other")).NameIndex, p1, "report.txt"),
		"root":      NameIndex(k.NameIndex, ID{}, "report.txt"),
	}
	seen := map[[NameIndexSize]byte]string{a: "base"}
	for what, v := range others {
		if prev, ok := seen[v]; ok {
			t.Fatalf("NameIndex with different %s equals the one for %s", what, prev)
		}
		seen[v] = what
	}
}

func TestSymlink(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file := fixedID("link")
	for _, n := range []int{1, 15, 16, 17, 255, 4095, MaxSymlinkLen} {
		target := strings.Repeat("d/", n/2) + strings.Repeat("x", n%2)
		sealed, err := SealSymlink(k.Names, file, target)
		if err != nil {
			t.Fatalf("SealSymlink(%d bytes): %v", n, err)
		}
		if want := (n+15)/16*16 + BoxOverhead; len(sealed) != want {
			t.Fatalf("sealed %d-byte target is %d bytes, want %d", n, len(sealed), want)
		}
		got, err := OpenSymlink(k.Names, file, sealed)
		if err != nil || got != target {
			t.Fatalf("OpenSymlink(%d bytes): %v", n, err)
		}
	}
	for _, target := range []string{"", "a\x00", strings.Repeat("a", MaxSymlinkLen+1)} {
		_, err := SealSymlink(k.Names, file, target)
		wantErr(t, fmt.Sprintf("SealSymlink(%d bytes)", len(target)), err, ErrCorrupt)
	}
	_, err := SealSymlink(k.Names[:5], file, "x")
	wantErr(t, "SealSymlink with a short key", err, ErrCorrupt)
	_, err = OpenSymlink(nil, file, make([]byte, 45))
	wantErr(t, "OpenSymlink with no key", err, ErrCorrupt)
}

// ---------------------------------------------------------------------------
// Attributes.

func TestAttrRoundTrip(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file := fixedID("file")
	cases := []Attr{
		{},
		{Mode: 0o100644, UID: 1000, GID: 1000, Size: 12345, Generation: 3, Atime: 1, Mtime: 2, Ctime: 3},
		{Mode: math.MaxUint32, UID: math.MaxUint32, GID: math.MaxUint32, Rdev: math.MaxUint32, Size: math.MaxUint64, Generation: math.MaxUint64, Atime: math.MinInt64, Mtime: math.MaxInt64, Ctime: -1},
	}
	for _, a := range cases {
		b, err := a.MarshalBinary()
		if err != nil || len(b) != 56 {
			t.Fatalf("MarshalBinary: %d bytes, %v", len(b), err)
		}
		var u Attr
		if err := u.UnmarshalBinary(b); err != nil || u != a {
			t.Fatalf("UnmarshalBinary: %+v, %v", u, err)
		}
		sealed, err := SealAttr(k.Attr, file, &a)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != SealedAttrSize || SealedAttrSize != 85 {
			t.Fatalf("sealed attr is %d bytes", len(sealed))
		}
		o, err := OpenAttr(k.Attr, file, sealed)
		if err != nil || *o != a {
			t.Fatalf("OpenAttr: %+v, %v", o, err)
		}
	}
	// Field order of the fixed layout (docs/format.md).
	a := Attr{Mode: 1, UID: 2, GID: 3, Rdev: 4, Size: 5, Generation: 6, Atime: 7, Mtime: 8, Ctime: -9}
	b, _ := a.MarshalBinary()
	for i, want := range []uint64{1, 2, 3, 4} {
		if got := binary.BigEndian.Uint32(b[4*i:]); uint64(got) != want {
			t.Fatalf("field %d = %d", i, got)
		}
	}
	for i, want := range []uint64{5, 6, 7, 8, uint64(math.MaxUint64 - 8)} {
		if got := binary.BigEndian.Uint64(b[16+8*i:]); got != want {
			t.Fatalf("field %d = %d", 4+i, got)
		}
	}
	for _, n := range []int{0, 55, 57, 85} {
		var u Attr
		wantErr(t, fmt.Sprintf("UnmarshalBinary of %d bytes", n), u.UnmarshalBinary(make([]byte, n)), ErrCorrupt)
	}
	_, err := SealAttr(k.Attr[:1], file, &a)
	wantErr(t, "SealAttr with a short key", err, ErrCorrupt)
	_, err = OpenAttr(k.Attr[:1], file, make([]byte, SealedAttrSize))
	wantErr(t, "OpenAttr with a short key", err, ErrCorrupt)
}

func TestXattrRoundTrip(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	file := fixedID("file")
	big := map[string][]byte{}
	for i := range MaxXattrCount {
		big[fmt.Sprintf("user.%04d", i)] = []byte{byte(i)}
	}
	cases := []map[string][]byte{
		{},
		{"user.a": {}},
		{"user.a": []byte("1"), "user.b": []byte("22"), "security.selinux": []byte("system_u:object_r\x00")},
		{strings.Repeat("n", MaxXattrNameLen): bytes.Repeat([]byte{0xff}, MaxXattrValueLen)},
		{"\x00bin\xff": {0}},
		big,
	}
	for i, x := range cases {
		b, err := EncodeXattrs(x)
		if err != nil {
			t.Fatalf("case %d: EncodeXattrs: %v", i, err)
		}
		size := 2
		for n, v := range x {
			size += 1 + len(n) + 4 + len(v)
		}
		if len(b) != size || int(binary.BigEndian.Uint16(b)) != len(x) {
			t.Fatalf("case %d: encoded %d bytes, want %d", i, len(b), size)
		}
		// Canonical: encoding again (different map iteration order) is identical.
		b2, _ := EncodeXattrs(x)
		if !bytes.Equal(b, b2) {
			t.Fatalf("case %d: encoding is not canonical", i)
		}
		d, err := DecodeXattrs(b)
		if err != nil || !xattrsEqual(d, x) {
			t.Fatalf("case %d: DecodeXattrs: %v", i, err)
		}
		sealed, err := SealXattrs(k.Attr, file, x)
		if err != nil || len(sealed) != len(b)+BoxOverhead {
			t.Fatalf("case %d: SealXattrs: %d bytes, %v", i, len(sealed), err)
		}
		o, err := OpenXattrs(k.Attr, file, sealed)
		if err != nil || !xattrsEqual(o, x) {
			t.Fatalf("case %d: OpenXattrs: %v", i, err)
		}
	}
	// Decoded values do not alias the input.
	b, _ := EncodeXattrs(map[string][]byte{"user.a": []byte("value")})
	d, _ := DecodeXattrs(b)
	clear(b)
	if string(d["user.a"]) != "value" {
		t.Fatal("decoded value aliases the encoding")
	}
	// What does not fit.
	tooMany := maps1025()
	for i, x := range []map[string][]byte{
		{"": []byte("v")},
		{strings.Repeat("n", MaxXattrNameLen+1): nil},
		{"user.a": make([]byte, MaxXattrValueLen+1)},
		tooMany,
	} {
		_, err := EncodeXattrs(x)
		wantErr(t, fmt.Sprintf("EncodeXattrs bad case %d", i), err, ErrCorrupt)
		_, err = SealXattrs(k.Attr, file, x)
		wantErr(t, fmt.Sprintf("SealXattrs bad case %d", i), err, ErrCorrupt)
	}
}

func maps1025() map[string][]byte {
	m := map[string][]byte{}
	for i := range MaxXattrCount + 1 {
		m[fmt.Sprint(i)] = nil
	}
	return m
}

func xattrsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Transfer MAC.

func TestTransferMAC(t *testing.T) {
	k := mustKeys(t, fixedKey("master"))
	tm, err := NewTransferMAC(k.Transfer, "alice")
	if err != nil {
		t.Fatal(err)
	}
	l := smallLayout
	file := fixedID("file")
	c := mustFileCipher(t, k.Content, file, l)
	ref := ChunkRef{File: file, Index: 3, ID: NewID()}
	plain := filePattern(0, 2*int(l.BlockSize)+100)

	// MAC fed while sealing equals Sum over the output, also when dst has a
	// prefix that is not part of the chunk.
	for _, prefix := range [][]byte{nil, []byte("not part of the chunk")} {
		h := tm.New(ref)
		out, _, err := c.SealChunk(slices.Clone(prefix), ref.Index, ref.ID, plain, true, h)
		if err != nil {
			t.Fatal(err)
		}
		sealed := out[len(prefix):]
		mac := h.Sum(nil)
		if len(mac) != MACSize {
			t.Fatalf("MAC is %d bytes", len(mac))
		}
		if sum := tm.Sum(ref, sealed); !bytes.Equal(mac, sum) {
			t.Fatalf("MAC fed during SealChunk (prefix %d) != Sum over the output", len(prefix))
		}
		if err := tm.Verify(ref, sealed, mac); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}

	// New + Write in pieces == Sum.
	data := filePattern(5, 10000)
	want := tm.Sum(ref, data)
	h := tm.New(ref)
	for i := 0; i < len(data); i += 333 {
		h.Write(data[i:min(i+333, len(data))])
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		t.Fatal("New+Write != Sum")
	}
	// The documented construction.
	ad := []byte{FormatVersion, 'T', 0, 5}
	ad = append(ad, "alice"...)
	ad = append(ad, ref.File[:]...)
	ad = binary.BigEndian.AppendUint64(ad, ref.Index)
	ad = append(ad, ref.ID[:]...)
	mh := hmac.New(sha256.New, k.Transfer)
	mh.Write(ad)
	mh.Write(data)
	if !bytes.Equal(mh.Sum(nil), want) {
		t.Fatal("transfer MAC does not follow docs/format.md")
	}
	// Empty body and the empty-account / bad-key constructors.
	if err := tm.Verify(ref, nil, tm.Sum(ref, []byte{})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     []byte
		account string
	}{
		{k.Transfer, ""},
		{k.Transfer, strings.Repeat("a", 1025)},
		{k.Transfer[:31], "alice"},
		{nil, "alice"},
	} {
		_, err := NewTransferMAC(tc.key, tc.account)
		wantErr(t, fmt.Sprintf("NewTransferMAC(%d-byte key, %d-byte account)", len(tc.key), len(tc.account)), err, ErrCorrupt)
	}
	long, err := NewTransferMAC(k.Transfer, strings.Repeat("a", 1024))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(long.Sum(ref, data), want) {
		t.Fatal("account not bound")
	}
	if err := CheckMAC(want, slices.Clone(want)); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// At rest.

func TestAtRest(t *testing.T) {
	kek := fixedKey("kek")
	owner, blob := []byte("alice"), []byte("chunks/0123")
	dk := NewDataKey()
	if len(dk) != KeySize || bytes.Equal(dk, NewDataKey()) {
		t.Fatal("NewDataKey")
	}
	wrapped, err := WrapDataKey(kek, "k1", owner, blob, dk)
	if err != nil {
		t.Fatal(err)
	}
	if len(wrapped) != WrappedDataKeySize || WrappedDataKeySize != 61 || bytes.Contains(wrapped, dk) {
		t.Fatalf("wrapped data key is %d bytes", len(wrapped))
	}
	got, err := UnwrapDataKey(kek, "k1", owner, blob, wrapped)
	if err != nil || !bytes.Equal(got, dk) {
		t.Fatalf("UnwrapDataKey: %v", err)
	}
	// KEK rotation: rewrap under k2, blob untouched.
	kek2 := fixedKey("kek2")
	rewrapped, err := WrapDataKey(kek2, "k2", owner, blob, got)
	if err != nil {
		t.Fatal(err)
	}
	if got2, err := UnwrapDataKey(kek2, "k2", owner, blob, rewrapped); err != nil || !bytes.Equal(got2, dk) {
		t.Fatalf("unwrap after rotation: %v", err)
	}

	for _, plain := range [][]byte{nil, {}, []byte("x"), filePattern(0, 1<<20+3)} {
		sealed, err := SealAtRest(nil, dk, owner, blob, plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(plain)+AtRestOverhead || sealed[0] != FormatVersion {
			t.Fatalf("at-rest blob of %d bytes is %d", len(plain), len(sealed))
		}
		o, err := OpenAtRest(nil, dk, owner, blob, sealed)
		if err != nil || !bytes.Equal(o, plain) {
			t.Fatalf("OpenAtRest(%d bytes): %v", len(plain), err)
		}
		// dst prefixes are kept on both sides.
		s2, err := SealAtRest([]byte("hdr"), dk, owner, blob, plain)
		if err != nil || string(s2[:3]) != "hdr" {
			t.Fatalf("SealAtRest with a dst: %v", err)
		}
		o2, err := OpenAtRest([]byte("pre"), dk, owner, blob, s2[3:])
		if err != nil || string(o2[:3]) != "pre" || !bytes.Equal(o2[3:], plain) {
			t.Fatalf("OpenAtRest with a dst: %v", err)
		}
	}
	// Identifier limits.
	long := bytes.Repeat([]byte("i"), 1025)
	longest := bytes.Repeat([]byte("i"), 1024)
	if _, err := SealAtRest(nil, dk, longest, longest, []byte("x")); err != nil {
		t.Fatalf("1024-byte IDs: %v", err)
	}
	if _, err := WrapDataKey(kek, string(longest), longest, longest, dk); err != nil {
		t.Fatalf("1024-byte IDs: %v", err)
	}
	for _, ids := range [][3][]byte{{owner, nil, []byte("k")}, {nil, blob, []byte("k")}, {long, blob, []byte("k")}, {owner, long, []byte("k")}, {owner, blob, nil}, {owner, blob, long}} {
		o, b, kid := ids[0], ids[1], string(ids[2])
		if len(o) == 0 || len(b) == 0 || len(o) > 1024 || len(b) > 1024 {
			_, err := SealAtRest(nil, dk, o, b, []byte("x"))
			wantErr(t, "SealAtRest with a bad ID", err, ErrCorrupt)
			_, err = OpenAtRest(nil, dk, o, b, make([]byte, 40))
			wantErr(t, "OpenAtRest with a bad ID", err, ErrCorrupt)
		}
		_, err := WrapDataKey(kek, kid, o, b, dk)
		wantErr(t, "WrapDataKey with a bad ID", err, ErrCorrupt)
		_, err = UnwrapDataKey(kek, kid, o, b, wrapped)
		wantErr(t, "UnwrapDataKey with a bad ID", err, ErrCorrupt)
	}
	for _, n := range []int{0, 16, 33} {
		_, err := WrapDataKey(kek, "k1", owner, blob, make([]byte, n))
		wantErr(t, fmt.Sprintf("WrapDataKey of a %d-byte data key", n), err, ErrCorrupt)
		_, err = WrapDataKey(make([]byte, n), "k1", owner, blob, dk)
		wantErr(t, fmt.Sprintf("WrapDataKey under a %d-byte KEK", n), err, ErrCorrupt)
		_, err = SealAtRest(nil, make([]byte, n), owner, blob, []byte("x"))
		wantErr(t, fmt.Sprintf("SealAtRest under a %d-byte key", n), err, ErrCorrupt)
	}
	for _, n := range []int{0, 60, 62} {
		_, err := UnwrapDataKey(kek, "k1", owner, blob, make([]byte, n))
		wantErr(t, fmt.Sprintf("UnwrapDataKey of %d bytes", n), err, ErrCorrupt)
	}
	for _, n := range []int{0, 1, BoxOverhead - 1} {
		_, err := OpenAtRest(nil, dk, owner, blob, make([]byte, n))
		wantErr(t, fmt.Sprintf("OpenAtRest of %d bytes", n), err, ErrCorrupt)
	}
}

func TestRandomBytes(t *testing.T) {
	for _, n := range []int{0, 1, 16, 32, 1000} {
		if b := RandomBytes(n); len(b) != n {
			t.Fatalf("RandomBytes(%d) is %d bytes", n, len(b))
		}
	}
	if bytes.Equal(RandomBytes(32), RandomBytes(32)) {
		t.Fatal("RandomBytes repeats")
	}
}

// ---------------------------------------------------------------------------
// Inputs that must be refused, not panic.

// noPanic runs f and fails the test, instead of crashing it, if f panics.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s panics: %v", what, r)
		}
	}()
	f()
}

// TestLayoutHelpersInvalidLayout: a Layout arrives from the server (account
// settings) before anyone calls Check on it; its helpers must not crash the
// client on a zero or malformed value. Expected to fail until content.go
// guards ChunkCount, SealedChunkLen and paddedTail against zero sizes.
func TestLayoutHelpersInvalidLayout(t *testing.T) {
	for _, l := range []Layout{{}, {BlockSize: 4096}, {BlockSize: 4096, ChunkBlocks: 1}, {ChunkBlocks: 16, PadUnit: 4096}} {
		if l.Check() == nil {
			t.Fatalf("setup: %+v passes Check", l)
		}
		noPanic(t, fmt.Sprintf("%+v.ChunkCount(1)", l), func() { l.ChunkCount(1) })
		noPanic(t, fmt.Sprintf("%+v.ChunkPlainLen(1, 0)", l), func() { l.ChunkPlainLen(1, 0) })
		noPanic(t, fmt.Sprintf("%+v.SealedChunkLen(1, true)", l), func() { l.SealedChunkLen(1, true) })
		noPanic(t, fmt.Sprintf("%+v.BlockSpan(1, true, 0)", l), func() { l.BlockSpan(1, true, 0) })
		noPanic(t, fmt.Sprintf("%+v.MaxSealedChunkSize()", l), func() { l.MaxSealedChunkSize() })
		m := &Manifest{Size: 1, Layout: l}
		noPanic(t, fmt.Sprintf("Manifest with %+v: Check", l), func() { wantErr(t, "Check", m.Check(), ErrCorrupt) })
		noPanic(t, fmt.Sprintf("Manifest with %+v: ChunkPlainLen", l), func() { m.ChunkPlainLen(0) })
	}
}

// TestAccountKeyPairBadKey: every other function refuses a key of the wrong
// size with ErrCorrupt; the account key pair functions panic in mustGCM
// instead. Expected to fail until keys.go uses newGCM there.
func TestAccountKeyPairBadKey(t *testing.T) {
	good, err := NewAccountKeyPair(mustKeys(t, fixedKey("master")))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 16, 31} {
		k := &Keys{Account: make([]byte, n)}
		noPanic(t, fmt.Sprintf("NewAccountKeyPair with a %d-byte account key", n), func() {
			_, err := NewAccountKeyPair(k)
			wantErr(t, "NewAccountKeyPair", err, ErrCorrupt)
		})
		noPanic(t, fmt.Sprintf("OpenAccountKeyPair with a %d-byte account key", n), func() {
			_, err := OpenAccountKeyPair(k, good)
			wantErr(t, "OpenAccountKeyPair", err, ErrCorrupt)
		})
	}
}

// TestParseIDErrorReturnsZero: a failed ParseID must not hand back the bytes
// it decoded before the first bad digit (a caller that logs or uses the ID
// despite the error would act on a half-parsed value). Expected to fail
// until keys.go returns ID{} on error (the fuzzer found this; the input is in
// testdata/fuzz/FuzzParseID/regress-partial-id-on-error).
func TestParseIDErrorReturnsZero(t *testing.T) {
	for _, s := range []string{"000000000000000000010X0000000000", "ff" + strings.Repeat("z", 30), "0123456789abcdef0123456789abcdeg"} {
		id, err := ParseID(s)
		wantErr(t, fmt.Sprintf("ParseID(%q)", s), err, ErrCorrupt)
		if !id.IsZero() {
			t.Errorf("ParseID(%q) failed but returned %v", s, id)
		}
	}
}
