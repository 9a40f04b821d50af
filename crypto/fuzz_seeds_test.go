package crypto

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fuzzChunkPlain is the plaintext every fuzz seed chunk of index holds: the
// file pattern at the chunk's offset. Any chunk that opens under the fuzz key
// must read as a prefix of it followed by zero padding.
func fuzzChunkOffset(index uint64) uint64 { return index * uint64(fuzzLayout.ChunkSize()) }

func idFrom(b []byte, def ID) ID {
	if len(b) != IDSize {
		return def
	}
	return ID(b)
}

// chunkTagFrom uses tag when it has the right size, and otherwise the tag
// of sealed itself, so the fuzzer also reaches the per-block checks.
func chunkTagFrom(tag, sealed []byte) ChunkTag {
	if len(tag) == ChunkTagSize {
		return ChunkTag(tag)
	}
	return sealedBlockTags(fuzzLayout, sealed)
}

func atRestPayload(owner, blob []byte) []byte {
	return []byte("at-rest payload of " + string(owner) + "/" + string(blob))
}

// ---------------------------------------------------------------------------
// Seeds.

type fuzzSeed struct {
	label string // "valid-..." seeds must open
	vals  []any
}

// fuzzTargets describes each target: its argument types (as written in
// corpus files), how to make its seeds, and, for "valid-" seeds, how to check
// that they open.
var fuzzTargets = map[string]struct {
	types []string
	seeds func() []fuzzSeed
	opens func(vals []any) error
}{
	"FuzzOpenChunk": {
		types: []string{"[]byte", "[]byte", "uint64", "int", "bool"},
		seeds: func() []fuzzSeed {
			c := fuzzCipher()
			var out []fuzzSeed
			for _, s := range []struct {
				index uint64
				n     int
				last  bool
				tag   bool
			}{{0, 1, true, true}, {3, 4096 + 100, true, false}, {1, 8192, false, true}, {0, 8192, true, true}, {5, 17, true, true}} {
				sealed, tag, err := c.SealChunk(nil, s.index, fuzzChunkID, filePattern(fuzzChunkOffset(s.index), s.n), s.last, nil)
				if err != nil {
					panic(err)
				}
				tb := []byte(nil)
				if s.tag {
					tb = tag[:]
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d-%d-%v", s.index, s.n, s.last), []any{sealed, tb, s.index, s.n, s.last}})
				if s.n == 4096+100 {
					out = append(out, fuzzSeed{"truncated", []any{sealed[:len(sealed)-1], tb, s.index, s.n, s.last}})
					out = append(out, fuzzSeed{"wrong-index", []any{sealed, tb, s.index + 1, s.n, s.last}})
				}
			}
			return out
		},
		opens: func(v []any) error {
			sealed, tag := v[0].([]byte), v[1].([]byte)
			_, err := fuzzCipher().OpenChunk(nil, v[2].(uint64), fuzzChunkID, sealed, v[3].(int), v[4].(bool), chunkTagFrom(tag, sealed))
			return err
		},
	},
	"FuzzOpenBlock": {
		types: []string{"[]byte", "uint64", "uint32", "int", "bool"},
		seeds: func() []fuzzSeed {
			c := fuzzCipher()
			var out []fuzzSeed
			for _, s := range []struct {
				index uint64
				n     int
				last  bool
			}{{0, 8192, false}, {2, 4096 + 7, true}, {0, 1, true}} {
				sealed, _, err := c.SealChunk(nil, s.index, fuzzChunkID, filePattern(fuzzChunkOffset(s.index), s.n), s.last, nil)
				if err != nil {
					panic(err)
				}
				for b := uint32(0); ; b++ {
					off, n, ok := fuzzLayout.BlockSpan(s.n, s.last, b)
					if !ok {
						break
					}
					out = append(out, fuzzSeed{fmt.Sprintf("valid-%d-%d-%v-block%d", s.index, s.n, s.last, b), []any{sealed[off : off+n], s.index, b, s.n, s.last}})
				}
			}
			out = append(out, fuzzSeed{"short", []any{make([]byte, 20), uint64(0), uint32(0), 1, true}})
			return out
		},
		opens: func(v []any) error {
			_, err := fuzzCipher().OpenBlock(nil, v[1].(uint64), fuzzChunkID, v[0].([]byte), v[2].(uint32), v[3].(int), v[4].(bool))
			return err
		},
	},
	"FuzzManifestUnmarshal": {
		types: []string{"[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i, m := range fuzzManifests() {
				b, err := m.MarshalBinary()
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{b}})
				if i == 2 {
					out = append(out, fuzzSeed{"cut", []any{b[:len(b)-1]}})
				}
			}
			return out
		},
		opens: func(v []any) error { var m Manifest; return m.UnmarshalBinary(v[0].([]byte)) },
	},
	"FuzzOpenManifest": {
		types: []string{"[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i, m := range fuzzManifests() {
				s, err := SealManifest(fuzzKeys().Manifest, m)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{s, slices.Clone(m.File[:])}})
				if i == 1 {
					out = append(out, fuzzSeed{"other-file", []any{s, fuzzParent[:]}})
				}
			}
			return out
		},
		opens: func(v []any) error {
			_, err := OpenManifest(fuzzKeys().Manifest, idFrom(v[1].([]byte), fuzzFile), v[0].([]byte))
			return err
		},
	},
	"FuzzOpenName": {
		types: []string{"[]byte", "[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for _, name := range []string{"a", "0123456789abcdef", "notes.txt", strings.Repeat("n", 255), "\xff\xfe"} {
				s, err := SealName(fuzzKeys().Names, fuzzParent, fuzzFile, name)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", len(name)), []any{s, fuzzParent[:], fuzzFile[:]}})
			}
			out = append(out, fuzzSeed{"swapped-ids", []any{out[0].vals[0], fuzzFile[:], fuzzParent[:]}})
			return out
		},
		opens: func(v []any) error {
			_, err := OpenName(fuzzKeys().Names, idFrom(v[1].([]byte), fuzzParent), idFrom(v[2].([]byte), fuzzFile), v[0].([]byte))
			return err
		},
	},
	"FuzzOpenSymlink": {
		types: []string{"[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for _, target := range []string{"/", "../a/b", strings.Repeat("x/", 100), strings.Repeat("t", 4095)} {
				s, err := SealSymlink(fuzzKeys().Names, fuzzFile, target)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", len(target)), []any{s, fuzzFile[:]}})
			}
			out = append(out, fuzzSeed{"version-2", []any{append([]byte{2}, out[0].vals[0].([]byte)[1:]...), fuzzFile[:]}})
			return out
		},
		opens: func(v []any) error {
			_, err := OpenSymlink(fuzzKeys().Names, idFrom(v[1].([]byte), fuzzFile), v[0].([]byte))
			return err
		},
	},
	"FuzzAttrUnmarshal": {
		types: []string{"[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i, a := range fuzzAttrs() {
				b, _ := a.MarshalBinary()
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{b}})
			}
			out = append(out, fuzzSeed{"short", []any{make([]byte, 55)}})
			return out
		},
		opens: func(v []any) error { var a Attr; return a.UnmarshalBinary(v[0].([]byte)) },
	},
	"FuzzOpenAttr": {
		types: []string{"[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i, a := range fuzzAttrs() {
				s, err := SealAttr(fuzzKeys().Attr, fuzzFile, &a)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{s, fuzzFile[:]}})
			}
			out = append(out, fuzzSeed{"other-file", []any{out[0].vals[0], fuzzParent[:]}})
			return out
		},
		opens: func(v []any) error {
			_, err := OpenAttr(fuzzKeys().Attr, idFrom(v[1].([]byte), fuzzFile), v[0].([]byte))
			return err
		},
	},
	"FuzzDecodeXattrs": {
		types: []string{"[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i, x := range fuzzXattrs() {
				b, err := EncodeXattrs(x)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{b}})
			}
			out = append(out, fuzzSeed{"descending", []any{[]byte("\x00\x02\x01b\x00\x00\x00\x00\x01a\x00\x00\x00\x00")}})
			return out
		},
		opens: func(v []any) error { _, err := DecodeXattrs(v[0].([]byte)); return err },
	},
	"FuzzOpenXattrs": {
		types: []string{"[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i, x := range fuzzXattrs() {
				s, err := SealXattrs(fuzzKeys().Attr, fuzzFile, x, int64(i)+1)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{s, fuzzFile[:]}})
			}
			return out
		},
		opens: func(v []any) error {
			_, _, err := OpenXattrs(fuzzKeys().Attr, idFrom(v[1].([]byte), fuzzFile), v[0].([]byte))
			return err
		},
	},
	"FuzzUnwrapMasterKey": {
		types: []string{"[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i := range 3 {
				w, err := WrapMasterKey(fuzzWrapKey, fuzzMaster)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{w}})
			}
			w := slices.Clone(out[0].vals[0].([]byte))
			w[0] = 0
			out = append(out, fuzzSeed{"version-0", []any{w}}, fuzzSeed{"short", []any{w[:60]}})
			return out
		},
		opens: func(v []any) error { _, err := UnwrapMasterKey(fuzzWrapKey, v[0].([]byte)); return err },
	},
	"FuzzOpenAccountKeyPair": {
		types: []string{"[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for i := range 3 {
				p, err := NewAccountKeyPair(fuzzKeys())
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{p.Public, p.SealedPrivate}})
			}
			out = append(out, fuzzSeed{"mismatched", []any{out[0].vals[0], out[1].vals[1]}})
			return out
		},
		opens: func(v []any) error {
			_, err := OpenAccountKeyPair(fuzzKeys(), AccountKeyPair{Public: v[0].([]byte), SealedPrivate: v[1].([]byte)})
			return err
		},
	},
	"FuzzOpenAtRest": {
		types: []string{"[]byte", "[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for _, ob := range [][2]string{{"alice", "chunk-1"}, {"bob", "manifest/0123"}, {"a", "b"}, {strings.Repeat("o", 1024), strings.Repeat("b", 1024)}} {
				o, b := []byte(ob[0]), []byte(ob[1])
				s, err := SealAtRest(nil, fuzzDataKey, o, b, atRestPayload(o, b))
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d-%d", len(o), len(b)), []any{s, o, b}})
			}
			out = append(out, fuzzSeed{"boundary-moved", []any{out[0].vals[0], []byte("alicec"), []byte("hunk-1")}})
			return out
		},
		opens: func(v []any) error {
			_, err := OpenAtRest(nil, fuzzDataKey, v[1].([]byte), v[2].([]byte), v[0].([]byte))
			return err
		},
	},
	"FuzzUnwrapDataKey": {
		types: []string{"[]byte", "string", "[]byte", "[]byte"},
		seeds: func() []fuzzSeed {
			var out []fuzzSeed
			for _, s := range [][3]string{{"k1", "alice", "chunk-1"}, {"kek-2024", "bob", "b"}, {"k", "o", "b"}} {
				w, err := WrapDataKey(fuzzKEK, s[0], []byte(s[1]), []byte(s[2]), fuzzDataKey)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{"valid-" + s[0], []any{w, s[0], []byte(s[1]), []byte(s[2])}})
			}
			out = append(out, fuzzSeed{"other-kek-id", []any{out[0].vals[0], "k2", []byte("alice"), []byte("chunk-1")}})
			return out
		},
		opens: func(v []any) error {
			_, err := UnwrapDataKey(fuzzKEK, v[1].(string), v[2].([]byte), v[3].([]byte), v[0].([]byte))
			return err
		},
	},
	"FuzzParseID": {
		types: []string{"string"},
		seeds: func() []fuzzSeed {
			return []fuzzSeed{
				{"valid-zero", []any{strings.Repeat("0", 32)}},
				{"valid-file", []any{fuzzFile.String()}},
				{"valid-ff", []any{strings.Repeat("f", 32)}},
				{"upper", []any{strings.ToUpper(fuzzFile.String())}},
				{"short", []any{"0123"}},
				{"non-hex", []any{strings.Repeat("z", 32)}},
			}
		},
		opens: func(v []any) error { _, err := ParseID(v[0].(string)); return err },
	},
	"FuzzKDFParamsCheck": {
		types: []string{"byte", "uint32", "uint32", "byte", "[]byte"},
		seeds: func() []fuzzSeed {
			salt := bytes.Repeat([]byte{0x5a}, SaltSize)
			d := DefaultKDFParams(salt)
			return []fuzzSeed{
				{"valid-default", []any{d.Algorithm, d.Time, d.MemoryKiB, d.Threads, salt}},
				{"valid-min", []any{MinKDFParams.Algorithm, MinKDFParams.Time, MinKDFParams.MemoryKiB, MinKDFParams.Threads, salt}},
				{"valid-max", []any{uint8(KDFAlgorithmArgon2id), uint32(maxKDFTime), uint32(maxKDFMemoryKiB), uint8(255), salt}},
				{"weak", []any{uint8(KDFAlgorithmArgon2id), uint32(1), uint32(1024), uint8(1), salt}},
				{"alg-2", []any{uint8(2), d.Time, d.MemoryKiB, d.Threads, salt}},
				{"no-salt", []any{d.Algorithm, d.Time, d.MemoryKiB, d.Threads, []byte{}}},
			}
		},
		opens: func(v []any) error {
			return KDFParams{Algorithm: v[0].(uint8), Time: v[1].(uint32), MemoryKiB: v[2].(uint32), Threads: v[3].(uint8), Salt: v[4].([]byte)}.Check()
		},
	},
}

func fuzzManifests() []*Manifest {
	cs := uint64(fuzzLayout.ChunkSize())
	return []*Manifest{
		{File: fuzzFile, Layout: DefaultLayout},
		manifestForTest(fuzzFile, DefaultLayout, 1),
		manifestForTest(fuzzFile, fuzzLayout, 3*cs+1, 1),
		manifestForTest(fuzzFile, Layout{BlockSize: 1 << 20, ChunkBlocks: 64, PadUnit: 1}, 1<<26),
		manifestForTest(fuzzParent, smallLayoutPad, 5*uint64(smallLayoutPad.ChunkSize()), 0, 1, 2, 3, 4),
	}
}

func fuzzAttrs() []Attr {
	return []Attr{
		{},
		{Mode: 0o100644, UID: 1000, GID: 1000, Size: 4096, Generation: 2, Atime: 1700000000e9, Mtime: 1700000001e9, Ctime: 1700000002e9},
		{Mode: 0o20666, Rdev: 0x0501, Atime: -1, Mtime: -1 << 63, Ctime: 1<<63 - 1},
	}
}

func fuzzXattrs() []map[string][]byte {
	return []map[string][]byte{
		{},
		{"user.a": nil},
		{"user.mime": []byte("text/plain"), "security.selinux": []byte("u:r:t:s0\x00"), "user.empty": {}},
		{strings.Repeat("n", 255): bytes.Repeat([]byte{1}, 300)},
	}
}

func addSeeds(f *testing.F, name string) {
	for _, s := range fuzzTargets[name].seeds() {
		f.Add(s.vals...)
	}
}
