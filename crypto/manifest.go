package crypto

import (
	"encoding/binary"
	"fmt"
)

// Manifest describes one version of a file: its exact size, the layout its
// chunks were cut with, and for every chunk position the ID and tag of the
// sealing that belongs there. It is sealed as a whole under the manifest key
// with the file ID as associated data, so opening a file through its manifest
// detects truncation, extension, reordering, a chunk swapped in from another
// file, and an older sealing replayed at its own position.
type Manifest struct {
	File ID
	// Generation increases with every committed version of the file; a client
	// that remembers the last generation it saw can detect a rollback.
	Generation uint64
	Size       uint64
	Layout     Layout
	Chunks     []ChunkEntry
}

// ChunkEntry is one chunk position in a manifest. A zero ID (with a zero
// tag) is a hole: the chunk reads as zeros and is not stored.
type ChunkEntry struct {
	ID  ID
	Tag ChunkTag
}

// IsHole reports whether the entry stands for a chunk of zeros.
func (e ChunkEntry) IsHole() bool { return e.ID.IsZero() }

const (
	manifestHeaderSize = IDSize + 8 + 8 + 4 + 4 + 4 + 4
	manifestEntrySize  = IDSize + ChunkTagSize
	// MaxManifestChunks bounds a file to 2^21 chunks (2 TiB with the default
	// 1 MiB chunks), keeping a manifest under 100 MiB.
	MaxManifestChunks = 1 << 21
	// MaxSealedManifestSize is the size of the sealed manifest of a file
	// of MaxManifestChunks chunks, the largest a client sends.
	MaxSealedManifestSize = manifestHeaderSize + manifestEntrySize*MaxManifestChunks + BoxOverhead
)

// Check reports whether m is internally consistent: a valid layout, exactly
// as many chunks as its size needs, and holes only with zero tags.
func (m *Manifest) Check() error {
	if err := m.Layout.Check(); err != nil {
		return err
	}
	if uint64(len(m.Chunks)) > MaxManifestChunks {
		return fmt.Errorf("%w: %d chunks exceed the limit of %d", ErrCorrupt, len(m.Chunks), MaxManifestChunks)
	}
	if want := m.Layout.ChunkCount(m.Size); uint64(len(m.Chunks)) != want {
		return fmt.Errorf("%w: manifest of %d bytes lists %d chunks, want %d", ErrCorrupt, m.Size, len(m.Chunks), want)
	}
	for i, c := range m.Chunks {
		if c.IsHole() && c.Tag != (ChunkTag{}) {
			return fmt.Errorf("%w: hole %d has a tag", ErrCorrupt, i)
		}
	}
	return nil
}

// ChunkPlainLen is how many bytes of the file chunk i holds.
func (m *Manifest) ChunkPlainLen(i int) int { return m.Layout.ChunkPlainLen(m.Size, uint64(i)) }

// IsLast reports whether chunk i is the file's final chunk.
func (m *Manifest) IsLast(i int) bool { return i == len(m.Chunks)-1 }

// MarshalBinary encodes the plaintext manifest (docs/format.md, "Manifest").
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.Check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, manifestHeaderSize+manifestEntrySize*len(m.Chunks))
	b = append(b, m.File[:]...)
	b = binary.BigEndian.AppendUint64(b, m.Generation)
	b = binary.BigEndian.AppendUint64(b, m.Size)
	b = binary.BigEndian.AppendUint32(b, m.Layout.BlockSize)
	b = binary.BigEndian.AppendUint32(b, m.Layout.ChunkBlocks)
	b = binary.BigEndian.AppendUint32(b, m.Layout.PadUnit)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = append(b, c.ID[:]...)
		b = append(b, c.Tag[:]...)
	}
	return b, nil
}

// UnmarshalBinary decodes and checks a plaintext manifest.
func (m *Manifest) UnmarshalBinary(b []byte) error {
	if len(b) < manifestHeaderSize {
		return fmt.Errorf("%w: manifest of %d bytes is shorter than its header", ErrCorrupt, len(b))
	}
	var out Manifest
	copy(out.File[:], b)
	out.Generation = binary.BigEndian.Uint64(b[16:])
	out.Size = binary.BigEndian.Uint64(b[24:])
	out.Layout = Layout{
		BlockSize:   binary.BigEndian.Uint32(b[32:]),
		ChunkBlocks: binary.BigEndian.Uint32(b[36:]),
		PadUnit:     binary.BigEndian.Uint32(b[40:]),
	}
	n := binary.BigEndian.Uint32(b[44:])
	if n > MaxManifestChunks {
		return fmt.Errorf("%w: manifest lists %d chunks", ErrCorrupt, n)
	}
	if want := manifestHeaderSize + manifestEntrySize*int(n); len(b) != want {
		return fmt.Errorf("%w: manifest is %d bytes, its header says %d", ErrCorrupt, len(b), want)
	}
	out.Chunks = make([]ChunkEntry, n)
	for i, p := 0, b[manifestHeaderSize:]; i < int(n); i, p = i+1, p[manifestEntrySize:] {
		copy(out.Chunks[i].ID[:], p)
		copy(out.Chunks[i].Tag[:], p[IDSize:])
	}
	if err := out.Check(); err != nil {
		return err
	}
	*m = out
	return nil
}

func manifestAD(file ID) []byte { return newAD(domainManifest, IDSize).bytes(file[:]) }

// SealManifest encodes m and seals it under the manifest key.
func SealManifest(manifestKey []byte, m *Manifest) ([]byte, error) {
	plain, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(manifestKey)
	if err != nil {
		return nil, err
	}
	return sealBox(make([]byte, 0, len(plain)+BoxOverhead), aead, plain, manifestAD(m.File)), nil
}

// OpenManifest opens the sealed manifest of file. A manifest of another file
// fails with ErrAuthentication.
func OpenManifest(manifestKey []byte, file ID, sealed []byte) (*Manifest, error) {
	aead, err := newGCM(manifestKey)
	if err != nil {
		return nil, err
	}
	plain, err := openBox(nil, aead, sealed, manifestAD(file))
	if err != nil {
		return nil, err
	}
	m := new(Manifest)
	if err := m.UnmarshalBinary(plain); err != nil {
		return nil, err
	}
	if m.File != file {
		return nil, fmt.Errorf("%w: manifest names another file", ErrAuthentication)
	}
	return m, nil
}
