package crypto

import (
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"hash"
	"math/bits"
)

// Layout fixes how a file's plaintext is cut. A chunk is the unit of
// transfer and storage (one blob on the server); it holds ChunkBlocks sealed
// blocks of BlockSize plaintext bytes each, so that a 4 KiB read opens one
// block instead of a whole chunk. Only the file's final block may be short,
// and it is zero-padded up to a multiple of PadUnit so the server learns
// sizes only to that granularity. A layout is chosen per account and recorded
// in every manifest, so it can change without rewriting old files.
type Layout struct {
	BlockSize   uint32 `json:"block_size"`
	ChunkBlocks uint32 `json:"chunk_blocks"`
	PadUnit     uint32 `json:"pad_unit"`
}

// DefaultLayout is 64 KiB blocks, 16 blocks (1 MiB) per chunk, padding to
// 4 KiB. docs/format.md records the measurements behind it.
var DefaultLayout = Layout{BlockSize: 64 << 10, ChunkBlocks: 16, PadUnit: 4 << 10}

// BlockOverhead is what sealing adds to each block: nonce (12) + tag (16).
const BlockOverhead = NonceSize + TagSize

// Check reports whether l is a layout this version reads.
func (l Layout) Check() error {
	pow2 := func(v uint32) bool { return v != 0 && v&(v-1) == 0 }
	switch {
	case !pow2(l.BlockSize) || l.BlockSize < 4<<10 || l.BlockSize > 1<<20:
		return fmt.Errorf("%w: block size %d", ErrCorrupt, l.BlockSize)
	case l.ChunkBlocks == 0 || uint64(l.ChunkBlocks)*uint64(l.BlockSize) > 64<<20:
		return fmt.Errorf("%w: %d blocks per chunk", ErrCorrupt, l.ChunkBlocks)
	case !pow2(l.PadUnit) || l.PadUnit > l.BlockSize:
		return fmt.Errorf("%w: pad unit %d", ErrCorrupt, l.PadUnit)
	}
	return nil
}

// ChunkSize is the plaintext size of a full chunk.
func (l Layout) ChunkSize() int { return int(l.BlockSize) * int(l.ChunkBlocks) }

// MaxFileSize is the size of the largest file a manifest of this layout
// can describe: MaxManifestChunks full chunks.
func (l Layout) MaxFileSize() int64 { return int64(MaxManifestChunks) * int64(l.ChunkSize()) }

// MaxSealedChunkSize is the sealed size of a full chunk, the largest body a
// chunk upload can have.
func (l Layout) MaxSealedChunkSize() int {
	return l.ChunkSize() + int(l.ChunkBlocks)*BlockOverhead
}

// ChunkCount is how many chunks a file of size bytes has.
func (l Layout) ChunkCount(size uint64) uint64 {
	cs := uint64(l.ChunkSize())
	if cs == 0 {
		return 0
	}
	return size/cs + min(size%cs, 1)
}

// ChunkPlainLen is how many bytes of a size-byte file chunk index holds, or
// 0 when the chunk lies beyond the end.
func (l Layout) ChunkPlainLen(size, index uint64) int {
	cs := uint64(l.ChunkSize())
	if cs == 0 {
		return 0
	}
	hi, lo := bits.Mul64(index, cs)
	if hi != 0 || lo >= size {
		return 0
	}
	return int(min(size-lo, cs))
}

// SealedChunkLen is the exact sealed size of a chunk holding plainLen bytes;
// last says whether it is the file's final chunk, whose final block is
// padded.
func (l Layout) SealedChunkLen(plainLen int, last bool) int {
	if plainLen <= 0 || l.Check() != nil {
		return 0
	}
	bs := int(l.BlockSize)
	nblocks := (plainLen + bs - 1) / bs
	padded := plainLen
	if last {
		tail := plainLen - (nblocks-1)*bs
		padded = (nblocks-1)*bs + l.paddedTail(tail)
	}
	return padded + nblocks*BlockOverhead
}

// paddedTail is the plaintext length the final block is padded to.
func (l Layout) paddedTail(n int) int {
	p := int(l.PadUnit)
	if p == 0 {
		return n
	}
	return min((n+p-1)/p*p, int(l.BlockSize))
}

// ChunkRef names one chunk of one file version: the file's ID, the chunk's
// position, and the random ID of this particular sealing. A chunk ID is used
// for exactly one sealing and never again, so an older sealing of the same
// position cannot stand in for a newer one.
type ChunkRef struct {
	File  ID
	Index uint64
	ID    ID
}

// ChunkTagSize is the size of a chunk tag.
const ChunkTagSize = sha256.Size

// ChunkTag is SHA-256 over the GCM tags of a chunk's blocks in order. The
// manifest lists it, so a chunk is pinned to the exact sealing the manifest
// was written for without hashing the chunk's bytes a second time.
type ChunkTag [ChunkTagSize]byte

// FileCipher seals and opens the chunks of one file. It is safe for
// concurrent use.
type FileCipher struct {
	aead   cipher.AEAD
	file   ID
	layout Layout
}

// NewFileCipher derives the file's key from the content key and returns its
// cipher for layout l.
func NewFileCipher(contentKey []byte, file ID, l Layout) (*FileCipher, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	if len(contentKey) != KeySize {
		return nil, fmt.Errorf("%w: content key is %d bytes", ErrCorrupt, len(contentKey))
	}
	return &FileCipher{aead: mustGCM(FileKey(contentKey, file)), file: file, layout: l}, nil
}

// Layout returns the layout the cipher was made for.
func (c *FileCipher) Layout() Layout { return c.layout }

// blockAD is version 'C' fileID chunkIndex chunkID blockIndex lastFlag.
func (c *FileCipher) blockAD(buf *[47]byte, index uint64, id ID, block uint32, last bool) []byte {
	ad := adBuilder(buf[:0])
	ad = append(ad, FormatVersion, domainChunkBlock)
	ad = ad.bytes(c.file[:]).u64(index).bytes(id[:]).u32(block)
	if last {
		ad = append(ad, 1)
	} else {
		ad = append(ad, 0)
	}
	return ad
}

// SealChunk appends the sealing of plain, chunk index of the file under the
// fresh chunk ID id, to dst, and returns it with the chunk's tag. last marks
// the file's final chunk. Every block except a final chunk's last must be
// full. When mac is not nil, each sealed block is also written to it as it is
// produced (while still in cache), which is how the transfer HMAC is computed
// without a second pass over memory.
func (c *FileCipher) SealChunk(dst []byte, index uint64, id ID, plain []byte, last bool, mac hash.Hash) ([]byte, ChunkTag, error) {
	var tag ChunkTag
	l := c.layout
	if len(plain) == 0 || len(plain) > l.ChunkSize() || (!last && len(plain) != l.ChunkSize()) {
		return nil, tag, fmt.Errorf("%w: chunk of %d bytes (last=%v) does not fit layout", ErrCorrupt, len(plain), last)
	}
	if id.IsZero() {
		return nil, tag, fmt.Errorf("%w: zero chunk ID is reserved for holes", ErrCorrupt)
	}
	need := l.SealedChunkLen(len(plain), last)
	if cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need)
		copy(grown, dst)
		dst = grown
	}
	tags := sha256.New()
	var adBuf [47]byte
	bs := int(l.BlockSize)
	for b, off := uint32(0), 0; off < len(plain); b, off = b+1, off+bs {
		p := plain[off:min(off+bs, len(plain))]
		final := last && off+bs >= len(plain)
		start := len(dst)
		dst = dst[:start+NonceSize]
		randomNonce(dst[start:])
		if final && len(p) < l.paddedTail(len(p)) {
			// Pad with zeros in the output buffer, then seal in place, so
			// the caller's plaintext is never copied or written.
			body := dst[start+NonceSize : start+NonceSize+l.paddedTail(len(p))]
			clear(body[copy(body, p):])
			p = body
		}
		dst = c.aead.Seal(dst[:start+NonceSize], dst[start:start+NonceSize], p, c.blockAD(&adBuf, index, id, b, final))
		tags.Write(dst[len(dst)-TagSize:])
		if mac != nil {
			mac.Write(dst[start:])
		}
	}
	tags.Sum(tag[:0])
	return dst, tag, nil
}

// OpenChunk checks a sealed chunk against what the manifest says of it (its
// plaintext length, whether it is final, its tag) and appends the plaintext,
// without padding, to dst. A chunk of the wrong length fails with
// ErrTruncated or ErrExtended; a chunk from another file, position or
// sealing, or with any changed bit, fails with ErrAuthentication.
func (c *FileCipher) OpenChunk(dst []byte, index uint64, id ID, sealed []byte, plainLen int, last bool, want ChunkTag) ([]byte, error) {
	l := c.layout
	if plainLen <= 0 || plainLen > l.ChunkSize() {
		return nil, fmt.Errorf("%w: chunk plaintext length %d", ErrCorrupt, plainLen)
	}
	need := l.SealedChunkLen(plainLen, last)
	switch {
	case len(sealed) < need:
		return nil, fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrTruncated, index, len(sealed), need)
	case len(sealed) > need:
		return nil, fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrExtended, index, len(sealed), need)
	}
	bs := int(l.BlockSize)
	sbs := bs + BlockOverhead
	var got ChunkTag
	tags := sha256.New()
	for off := 0; off < len(sealed); off += sbs {
		end := min(off+sbs, len(sealed))
		tags.Write(sealed[end-TagSize : end])
	}
	tags.Sum(got[:0])
	if !hmacEqual(got[:], want[:]) {
		return nil, fmt.Errorf("%w: chunk %d does not match its manifest tag", ErrAuthentication, index)
	}
	base := len(dst)
	var adBuf [47]byte
	var err error
	for b, off := uint32(0), 0; off < len(sealed); b, off = b+1, off+sbs {
		end := min(off+sbs, len(sealed))
		final := last && end == len(sealed)
		dst, err = c.aead.Open(dst, sealed[off:off+NonceSize], sealed[off+NonceSize:end], c.blockAD(&adBuf, index, id, b, final))
		if err != nil {
			return nil, fmt.Errorf("%w: chunk %d block %d", ErrAuthentication, index, b)
		}
	}
	return dst[:base+plainLen], nil
}

// BlockSpan returns where block b of a chunk lies within the sealed chunk, so
// a reader can fetch or read just that block.
func (l Layout) BlockSpan(plainLen int, last bool, b uint32) (off, n int, ok bool) {
	bs := int(l.BlockSize)
	if l.Check() != nil {
		return 0, 0, false
	}
	start := int(b) * bs
	if start >= plainLen {
		return 0, 0, false
	}
	off = int(b) * (bs + BlockOverhead)
	p := min(bs, plainLen-start)
	if last && start+bs >= plainLen {
		p = l.paddedTail(p)
	}
	return off, p + BlockOverhead, true
}

// OpenBlock opens one sealed block b of a chunk (as located by BlockSpan)
// and appends its plaintext, without padding, to dst. It authenticates the
// block against its file, chunk index, chunk ID and position, but not against
// the chunk tag: callers use it only on chunks whose whole sealing was
// checked with OpenChunk when it entered their cache, which is safe because
// a chunk ID is sealed exactly once.
func (c *FileCipher) OpenBlock(dst []byte, index uint64, id ID, block []byte, b uint32, plainLen int, last bool) ([]byte, error) {
	_, n, ok := c.layout.BlockSpan(plainLen, last, b)
	if !ok || plainLen > c.layout.ChunkSize() {
		return nil, fmt.Errorf("%w: block %d outside a chunk of %d bytes", ErrCorrupt, b, plainLen)
	}
	switch {
	case len(block) < n:
		return nil, fmt.Errorf("%w: block %d is %d bytes, want %d", ErrTruncated, b, len(block), n)
	case len(block) > n:
		return nil, fmt.Errorf("%w: block %d is %d bytes, want %d", ErrExtended, b, len(block), n)
	}
	bs := int(c.layout.BlockSize)
	final := last && int(b+1)*bs >= plainLen
	var adBuf [47]byte
	base := len(dst)
	dst, err := c.aead.Open(dst, block[:NonceSize], block[NonceSize:], c.blockAD(&adBuf, index, id, b, final))
	if err != nil {
		return nil, fmt.Errorf("%w: chunk %d block %d", ErrAuthentication, index, b)
	}
	return dst[:base+min(bs, plainLen-int(b)*bs)], nil
}
