package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

// Benchmarks of the hot paths against the bare primitives over the same
// bytes. Run on one core:
//
//	go test -run '^$' -bench . -cpu 1 -benchtime 2s ./crypto/
//
// SealChunkMAC should approach 1/(1/PrimitiveGCMSeal + 1/PrimitiveHMAC) and
// VerifyOpenChunk 1/(1/PrimitiveGCMOpen + 1/PrimitiveHMAC) in MB/s: the
// sealing layer should add little beyond the AEAD and the MAC it must run.

type benchChunk struct {
	c      *FileCipher
	tm     *TransferMAC
	ref    ChunkRef
	plain  []byte
	sealed []byte
	tag    ChunkTag
	mac    []byte
}

func newBenchChunk(b *testing.B) *benchChunk {
	b.Helper()
	k := mustKeys(b, fixedKey("bench master"))
	file := fixedID("bench file")
	c := mustFileCipher(b, k.Content, file, DefaultLayout)
	tm, err := NewTransferMAC(k.Transfer, "bench-account")
	if err != nil {
		b.Fatal(err)
	}
	ref := ChunkRef{File: file, Index: 9, ID: fixedID("bench chunk")}
	plain := filePattern(0, DefaultLayout.ChunkSize())
	h := tm.New(ref)
	sealed, tag, err := c.SealChunk(nil, ref.Index, ref.ID, plain, false, h)
	if err != nil {
		b.Fatal(err)
	}
	return &benchChunk{c: c, tm: tm, ref: ref, plain: plain, sealed: sealed, tag: tag, mac: h.Sum(nil)}
}

func BenchmarkSealChunkMAC(b *testing.B) {
	bc := newBenchChunk(b)
	dst := make([]byte, 0, DefaultLayout.MaxSealedChunkSize())
	var mac [MACSize]byte
	b.SetBytes(int64(len(bc.plain)))
	b.ReportAllocs()
	for b.Loop() {
		h := bc.tm.New(bc.ref)
		out, _, err := bc.c.SealChunk(dst[:0], bc.ref.Index, bc.ref.ID, bc.plain, false, h)
		if err != nil || len(out) != len(bc.sealed) {
			b.Fatal(err)
		}
		h.Sum(mac[:0])
	}
}

func BenchmarkVerifyOpenChunk(b *testing.B) {
	bc := newBenchChunk(b)
	dst := make([]byte, 0, DefaultLayout.ChunkSize())
	b.SetBytes(int64(len(bc.plain)))
	b.ReportAllocs()
	for b.Loop() {
		if err := bc.tm.Verify(bc.ref, bc.sealed, bc.mac); err != nil {
			b.Fatal(err)
		}
		out, err := bc.c.OpenChunk(dst[:0], bc.ref.Index, bc.ref.ID, bc.sealed, len(bc.plain), false, bc.tag)
		if err != nil || len(out) != len(bc.plain) {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealChunk and BenchmarkOpenChunk split the two above: the
// sealing layer alone, without the transfer MAC.
func BenchmarkSealChunk(b *testing.B) {
	bc := newBenchChunk(b)
	dst := make([]byte, 0, DefaultLayout.MaxSealedChunkSize())
	b.SetBytes(int64(len(bc.plain)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := bc.c.SealChunk(dst[:0], bc.ref.Index, bc.ref.ID, bc.plain, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenChunk(b *testing.B) {
	bc := newBenchChunk(b)
	dst := make([]byte, 0, DefaultLayout.ChunkSize())
	b.SetBytes(int64(len(bc.plain)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bc.c.OpenChunk(dst[:0], bc.ref.Index, bc.ref.ID, bc.sealed, len(bc.plain), false, bc.tag); err != nil {
			b.Fatal(err)
		}
	}
}

// benchAD is an associated-data string of the chunk blocks' size.
var benchAD = make([]byte, 47)

func BenchmarkPrimitiveGCMSeal(b *testing.B) {
	aead := mustGCM(fixedKey("bench gcm"))
	bs := int(DefaultLayout.BlockSize)
	plain := filePattern(0, DefaultLayout.ChunkSize())
	out := make([]byte, 0, DefaultLayout.MaxSealedChunkSize())
	nonce := make([]byte, NonceSize)
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		for off := 0; off < len(plain); off += bs {
			out = aead.Seal(out, nonce, plain[off:off+bs], benchAD)
		}
	}
}

func BenchmarkPrimitiveGCMOpen(b *testing.B) {
	aead := mustGCM(fixedKey("bench gcm"))
	bs := int(DefaultLayout.BlockSize)
	plain := filePattern(0, DefaultLayout.ChunkSize())
	nonce := make([]byte, NonceSize)
	var sealed []byte
	for off := 0; off < len(plain); off += bs {
		sealed = aead.Seal(sealed, nonce, plain[off:off+bs], benchAD)
	}
	sbs := bs + TagSize
	out := make([]byte, 0, len(plain))
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		out = out[:0]
		for off := 0; off < len(sealed); off += sbs {
			var err error
			if out, err = aead.Open(out, nonce, sealed[off:off+sbs], benchAD); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkPrimitiveHMAC(b *testing.B) {
	bc := newBenchChunk(b)
	h := hmac.New(sha256.New, fixedKey("bench hmac"))
	var sum [MACSize]byte
	b.SetBytes(int64(len(bc.plain)))
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Write(bc.sealed)
		h.Sum(sum[:0])
	}
}

// BenchmarkOpenBlock4K is the cryptographic cost of a random 4 KiB read
// served from a verified cached chunk: one 64 KiB block opened (ns/op).
func BenchmarkOpenBlock4K(b *testing.B) {
	bc := newBenchChunk(b)
	const blk = 5
	off, n, ok := DefaultLayout.BlockSpan(len(bc.plain), false, blk)
	if !ok {
		b.Fatal("no block")
	}
	block := bc.sealed[off : off+n]
	dst := make([]byte, 0, DefaultLayout.BlockSize)
	b.SetBytes(int64(DefaultLayout.BlockSize))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bc.c.OpenBlock(dst[:0], bc.ref.Index, bc.ref.ID, block, blk, len(bc.plain), false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKDFDefault re-measures the half-second choice of DefaultKDFParams.
func BenchmarkKDFDefault(b *testing.B) {
	p := DefaultKDFParams(make([]byte, SaltSize))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DeriveLoginKeys([]byte("correct horse battery staple"), p); err != nil {
			b.Fatal(err)
		}
	}
}
