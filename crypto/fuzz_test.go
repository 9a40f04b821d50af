package crypto

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every parser of bytes that come from outside: the server,
// the network or the disk. Each has a seed corpus in testdata/fuzz/<Name>/,
// written by
//
//	go test -run TestWriteFuzzCorpus ./crypto/ -args -write-fuzz-corpus
//
// with the fixed keys below, so sealed seeds keep opening; files whose name
// starts with "valid-" must open (TestFuzzSeedCorpora checks it). Run one with
//
//	go test -run '^$' -fuzz '^FuzzOpenChunk$' -fuzztime 30s ./crypto/

var writeFuzzCorpus = flag.Bool("write-fuzz-corpus", false, "rewrite the seed corpora in testdata/fuzz")

// Fixed inputs of the fuzz targets.
var (
	fuzzLayout  = Layout{BlockSize: 4096, ChunkBlocks: 2, PadUnit: 16}
	fuzzMaster  = fixedKey("fuzz master")
	fuzzFile    = fixedID("fuzz file")
	fuzzParent  = fixedID("fuzz parent")
	fuzzChunkID = fixedID("fuzz chunk")
	fuzzWrapKey = fixedKey("fuzz wrap")
	fuzzDataKey = fixedKey("fuzz data key")
	fuzzKEK     = fixedKey("fuzz kek")

	fuzzKeys = sync.OnceValue(func() *Keys {
		k, err := DeriveKeys(fuzzMaster)
		if err != nil {
			panic(err)
		}
		return k
	})
	fuzzCipher = sync.OnceValue(func() *FileCipher {
		c, err := NewFileCipher(fuzzKeys().Content, fuzzFile, fuzzLayout)
		if err != nil {
			panic(err)
		}
		return c
	})
)

// fuzzChunkPlain is the plaintext every fuzz seed chunk of index holds: the
// file pattern at the chunk's offset. Any chunk that opens under the fuzz key
// must read as a prefix of it followed by zero padding.
func fuzzChunkOffset(index uint64) uint64 { return index * uint64(fuzzLayout.ChunkSize()) }

// checkPatternPlain asserts that got is filePattern(off, k) followed by zeros
// for some k: the only plaintexts ever sealed under the fuzz keys.
func checkPatternPlain(t *testing.T, off uint64, got []byte) {
	t.Helper()
	k := bytes.IndexByte(got, 0)
	if k < 0 {
		k = len(got)
	}
	if !bytes.Equal(got[:k], filePattern(off, k)) {
		t.Fatalf("opened to bytes that were never sealed: %x", got[:min(k, 64)])
	}
	if bytes.ContainsFunc(got[k:], func(r rune) bool { return r != 0 }) {
		t.Fatalf("opened to non-zero bytes after the padding starts at %d", k)
	}
}

// checkFuzzErr asserts that err is one of the package's sentinels and that a
// failed call returned nothing.
func checkFuzzErr(t *testing.T, err error, out any) {
	t.Helper()
	if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("error %v is none of the sentinels", err)
	}
	switch v := out.(type) {
	case []byte:
		if v != nil {
			t.Fatalf("failed call returned %d bytes", len(v))
		}
	case *Manifest:
		if v != nil {
			t.Fatal("failed call returned a manifest")
		}
	case *Attr:
		if v != nil {
			t.Fatal("failed call returned attributes")
		}
	case map[string][]byte:
		if v != nil {
			t.Fatal("failed call returned xattrs")
		}
	case string:
		if v != "" {
			t.Fatal("failed call returned a string")
		}
	}
}

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
				s, err := SealXattrs(fuzzKeys().Attr, fuzzFile, x)
				if err != nil {
					panic(err)
				}
				out = append(out, fuzzSeed{fmt.Sprintf("valid-%d", i), []any{s, fuzzFile[:]}})
			}
			return out
		},
		opens: func(v []any) error {
			_, err := OpenXattrs(fuzzKeys().Attr, idFrom(v[1].([]byte), fuzzFile), v[0].([]byte))
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

// ---------------------------------------------------------------------------
// Targets.

func FuzzOpenChunk(f *testing.F) {
	addSeeds(f, "FuzzOpenChunk")
	f.Add([]byte(nil), []byte(nil), uint64(0), 0, false)
	f.Add(make([]byte, 44), make([]byte, 32), uint64(0), 1, true)
	f.Add(make([]byte, 8248), []byte(nil), uint64(1<<63), 8192, false)
	f.Add(make([]byte, 100), []byte(nil), uint64(0), -1, true)
	f.Fuzz(func(t *testing.T, sealed, tagIn []byte, index uint64, plainLen int, last bool) {
		c := fuzzCipher()
		in := slices.Clone(sealed)
		got, err := c.OpenChunk(nil, index, fuzzChunkID, sealed, plainLen, last, chunkTagFrom(tagIn, sealed))
		if !bytes.Equal(in, sealed) {
			t.Fatal("OpenChunk modified its input")
		}
		if err != nil {
			checkFuzzErr(t, err, got)
		} else {
			if len(got) != plainLen {
				t.Fatalf("opened %d bytes, want %d", len(got), plainLen)
			}
			checkPatternPlain(t, fuzzChunkOffset(index), got)
		}

		// And the other way: whatever the fuzzer picked as length and
		// position, a sealing either is refused or opens to its plaintext.
		if plainLen < 1 || plainLen > fuzzLayout.ChunkSize() {
			return
		}
		id := idFrom(tagIn[:min(len(tagIn), IDSize)], fuzzChunkID)
		plain := filePattern(fuzzChunkOffset(index), plainLen)
		s, tag, err := c.SealChunk(nil, index, id, plain, last, nil)
		if !last && plainLen != fuzzLayout.ChunkSize() || id.IsZero() {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("SealChunk(%d bytes, last=%v, id %v): %v, want ErrCorrupt", plainLen, last, id, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("SealChunk(%d bytes, last=%v): %v", plainLen, last, err)
		}
		if len(s) != fuzzLayout.SealedChunkLen(plainLen, last) {
			t.Fatalf("sealed length %d, want %d", len(s), fuzzLayout.SealedChunkLen(plainLen, last))
		}
		back, err := c.OpenChunk(nil, index, id, s, plainLen, last, tag)
		if err != nil || !bytes.Equal(back, plain) {
			t.Fatalf("round trip of %d bytes (last=%v): %v", plainLen, last, err)
		}
	})
}

func FuzzOpenBlock(f *testing.F) {
	addSeeds(f, "FuzzOpenBlock")
	f.Add([]byte(nil), uint64(0), uint32(0), 0, false)
	f.Add(make([]byte, 4124), uint64(0), uint32(1<<31), 1<<62, true)
	f.Add(make([]byte, 44), uint64(0), uint32(0xffffffff), -1, true)
	f.Fuzz(func(t *testing.T, block []byte, index uint64, b uint32, plainLen int, last bool) {
		c := fuzzCipher()
		got, err := c.OpenBlock(nil, index, fuzzChunkID, block, b, plainLen, last)
		if err != nil {
			checkFuzzErr(t, err, got)
			return
		}
		bs := int(fuzzLayout.BlockSize)
		if want := min(bs, plainLen-int(b)*bs); len(got) != want {
			t.Fatalf("opened %d bytes, want %d", len(got), want)
		}
		checkPatternPlain(t, fuzzChunkOffset(index)+uint64(b)*uint64(bs), got)
	})
}

func FuzzManifestUnmarshal(f *testing.F) {
	addSeeds(f, "FuzzManifestUnmarshal")
	f.Add([]byte{})
	f.Add(make([]byte, 48))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Manifest
		if err := m.UnmarshalBinary(data); err != nil {
			checkFuzzErr(t, err, nil)
			if !manifestsEqual(&m, &Manifest{}) {
				t.Fatal("failed UnmarshalBinary changed its receiver")
			}
			return
		}
		// Non-malleability: one manifest, one encoding.
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of an accepted manifest: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted encoding is not canonical:\n in  %x\n out %x", data, again)
		}
		if err := m.Check(); err != nil {
			t.Fatalf("accepted manifest fails Check: %v", err)
		}
		if uint64(len(m.Chunks)) != m.Layout.ChunkCount(m.Size) {
			t.Fatal("chunk count does not match size")
		}
	})
}

func FuzzOpenManifest(f *testing.F) {
	addSeeds(f, "FuzzOpenManifest")
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 77), fuzzFile[:])
	f.Fuzz(func(t *testing.T, sealed, fileB []byte) {
		file := idFrom(fileB, fuzzFile)
		m, err := OpenManifest(fuzzKeys().Manifest, file, sealed)
		if err != nil {
			checkFuzzErr(t, err, m)
			return
		}
		if m.File != file {
			t.Fatalf("manifest of %v opened as %v", m.File, file)
		}
		plain, err := m.MarshalBinary()
		if err != nil || len(plain)+BoxOverhead != len(sealed) {
			t.Fatalf("opened manifest re-encodes to %d bytes (%v), sealed was %d", len(plain), err, len(sealed))
		}
	})
}

func FuzzOpenName(f *testing.F) {
	addSeeds(f, "FuzzOpenName")
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(make([]byte, 45), fuzzParent[:], fuzzFile[:])
	f.Fuzz(func(t *testing.T, sealed, parentB, fileB []byte) {
		parent, file := idFrom(parentB, fuzzParent), idFrom(fileB, fuzzFile)
		name, err := OpenName(fuzzKeys().Names, parent, file, sealed)
		if err != nil {
			checkFuzzErr(t, err, name)
			return
		}
		if len(name) == 0 || len(name) > MaxNameLen || strings.IndexByte(name, 0) >= 0 {
			t.Fatalf("opened an invalid name %q", name)
		}
		if want := (len(name)+15)/16*16 + BoxOverhead; len(sealed) != want {
			t.Fatalf("name of %d bytes came from %d sealed bytes, want %d", len(name), len(sealed), want)
		}
		again, err := SealName(fuzzKeys().Names, parent, file, name)
		if err != nil {
			t.Fatalf("an opened name does not seal: %v", err)
		}
		if back, err := OpenName(fuzzKeys().Names, parent, file, again); err != nil || back != name {
			t.Fatalf("re-sealed name: %q, %v", back, err)
		}
	})
}

func FuzzOpenSymlink(f *testing.F) {
	addSeeds(f, "FuzzOpenSymlink")
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, sealed, fileB []byte) {
		file := idFrom(fileB, fuzzFile)
		target, err := OpenSymlink(fuzzKeys().Names, file, sealed)
		if err != nil {
			checkFuzzErr(t, err, target)
			return
		}
		if len(target) == 0 || len(target) > MaxSymlinkLen || strings.IndexByte(target, 0) >= 0 {
			t.Fatalf("opened an invalid target %q", target)
		}
		if want := (len(target)+15)/16*16 + BoxOverhead; len(sealed) != want {
			t.Fatalf("target of %d bytes came from %d sealed bytes, want %d", len(target), len(sealed), want)
		}
	})
}

func FuzzAttrUnmarshal(f *testing.F) {
	addSeeds(f, "FuzzAttrUnmarshal")
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Attr
		if err := a.UnmarshalBinary(data); err != nil {
			checkFuzzErr(t, err, nil)
			if a != (Attr{}) {
				t.Fatal("failed UnmarshalBinary changed its receiver")
			}
			return
		}
		again, err := a.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted encoding is not canonical: %x -> %x (%v)", data, again, err)
		}
	})
}

func FuzzOpenAttr(f *testing.F) {
	addSeeds(f, "FuzzOpenAttr")
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, sealed, fileB []byte) {
		a, err := OpenAttr(fuzzKeys().Attr, idFrom(fileB, fuzzFile), sealed)
		if err != nil {
			checkFuzzErr(t, err, a)
			return
		}
		if len(sealed) != SealedAttrSize {
			t.Fatalf("attributes opened from %d bytes", len(sealed))
		}
	})
}

func FuzzDecodeXattrs(f *testing.F) {
	addSeeds(f, "FuzzDecodeXattrs")
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := DecodeXattrs(data)
		if err != nil {
			checkFuzzErr(t, err, x)
			return
		}
		if len(x) > MaxXattrCount {
			t.Fatalf("decoded %d attributes", len(x))
		}
		again, err := EncodeXattrs(x)
		if err != nil {
			t.Fatalf("decoded attributes do not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted encoding is not canonical:\n in  %x\n out %x", data, again)
		}
	})
}

func FuzzOpenXattrs(f *testing.F) {
	addSeeds(f, "FuzzOpenXattrs")
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, sealed, fileB []byte) {
		x, err := OpenXattrs(fuzzKeys().Attr, idFrom(fileB, fuzzFile), sealed)
		if err != nil {
			checkFuzzErr(t, err, x)
			return
		}
		if !slices.ContainsFunc(fuzzXattrs(), func(y map[string][]byte) bool { return xattrsEqual(x, y) }) {
			t.Fatalf("opened attributes that were never sealed: %q", x)
		}
	})
}

func FuzzUnwrapMasterKey(f *testing.F) {
	addSeeds(f, "FuzzUnwrapMasterKey")
	f.Add([]byte{})
	f.Add(make([]byte, WrappedMasterKeySize))
	f.Fuzz(func(t *testing.T, wrapped []byte) {
		m, err := UnwrapMasterKey(fuzzWrapKey, wrapped)
		if err != nil {
			checkFuzzErr(t, err, m)
			return
		}
		if !bytes.Equal(m, fuzzMaster) {
			t.Fatalf("unwrapped a master key that was never wrapped: %x", m)
		}
	})
}

func FuzzOpenAccountKeyPair(f *testing.F) {
	addSeeds(f, "FuzzOpenAccountKeyPair")
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 32), make([]byte, SealedPrivateKeySize))
	f.Fuzz(func(t *testing.T, public, sealedPrivate []byte) {
		priv, err := OpenAccountKeyPair(fuzzKeys(), AccountKeyPair{Public: public, SealedPrivate: sealedPrivate})
		if err != nil {
			if !errors.Is(err, ErrAuthentication) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("error %v is none of the sentinels", err)
			}
			if priv != nil {
				t.Fatal("failed call returned a key")
			}
			return
		}
		if !bytes.Equal(priv.PublicKey().Bytes(), public) {
			t.Fatal("opened a private key that does not match its public key")
		}
	})
}

func FuzzOpenAtRest(f *testing.F) {
	addSeeds(f, "FuzzOpenAtRest")
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(make([]byte, 40), []byte("a"), []byte("b"))
	f.Fuzz(func(t *testing.T, sealed, owner, blob []byte) {
		got, err := OpenAtRest(nil, fuzzDataKey, owner, blob, sealed)
		if err != nil {
			checkFuzzErr(t, err, got)
			return
		}
		if !bytes.Equal(got, atRestPayload(owner, blob)) {
			t.Fatalf("blob of %q/%q opened to %q", owner, blob, got)
		}
	})
}

func FuzzUnwrapDataKey(f *testing.F) {
	addSeeds(f, "FuzzUnwrapDataKey")
	f.Add([]byte{}, "", []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, wrapped []byte, kekID string, owner, blob []byte) {
		dk, err := UnwrapDataKey(fuzzKEK, kekID, owner, blob, wrapped)
		if err != nil {
			checkFuzzErr(t, err, dk)
			return
		}
		if !bytes.Equal(dk, fuzzDataKey) {
			t.Fatalf("unwrapped a data key that was never wrapped: %x", dk)
		}
	})
}

func FuzzParseID(f *testing.F) {
	addSeeds(f, "FuzzParseID")
	f.Add("")
	f.Add(strings.Repeat("é", 16))
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseID(%q): %v is not ErrCorrupt", s, err)
			}
			if !id.IsZero() {
				t.Fatal("failed ParseID returned an ID")
			}
			return
		}
		if len(s) != 2*IDSize {
			t.Fatalf("ParseID accepted %d characters", len(s))
		}
		// Upper-case hex is accepted; the canonical form is lower case.
		if id.String() != strings.ToLower(s) {
			t.Fatalf("ParseID(%q) = %v", s, id)
		}
		if back, err := ParseID(id.String()); err != nil || back != id {
			t.Fatalf("String round trip: %v %v", back, err)
		}
	})
}

func FuzzKDFParamsCheck(f *testing.F) {
	addSeeds(f, "FuzzKDFParamsCheck")
	f.Add(uint8(0), uint32(0), uint32(0), uint8(0), []byte{})
	f.Fuzz(func(t *testing.T, alg uint8, time, mem uint32, threads uint8, salt []byte) {
		p := KDFParams{Algorithm: alg, Time: time, MemoryKiB: mem, Threads: threads, Salt: salt}
		err := p.Check()
		if err != nil {
			n := 0
			for _, s := range []error{ErrUnsupportedVersion, ErrCorrupt, ErrWeakParameters} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("Check(%+v) = %v, matching %d sentinels", p, err, n)
			}
			return
		}
		// Accepted parameters are Argon2id, salted, at least the minimum,
		// and bounded so a server cannot make the client allocate without
		// limit.
		if alg != KDFAlgorithmArgon2id || len(salt) != SaltSize || threads == 0 ||
			time < MinKDFParams.Time || time > 1000 ||
			mem < MinKDFParams.MemoryKiB || mem > 4<<20 || mem < 8*uint32(threads) {
			t.Fatalf("Check accepted %+v", p)
		}
	})
}

// ---------------------------------------------------------------------------
// Corpus files.

// marshalCorpusFile encodes vals the way the go command writes corpus files
// (internal/fuzz, "go test fuzz v1").
func marshalCorpusFile(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		case int, uint32, uint64, bool:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		default:
			panic(fmt.Sprintf("unsupported corpus type %T", v))
		}
	}
	return b.Bytes()
}

// corpusType is the type name a corpus file uses for v.
func corpusType(v any) string {
	switch v.(type) {
	case []byte:
		return "[]byte"
	case byte:
		return "byte"
	}
	return fmt.Sprintf("%T", v)
}

// parseCorpusFile reads back what marshalCorpusFile writes.
func parseCorpusFile(data []byte) (types []string, vals []any, err error) {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, nil, errors.New("missing the go test fuzz v1 header")
	}
	for _, line := range lines[1:] {
		open := strings.IndexByte(line, '(')
		if open < 0 || !strings.HasSuffix(line, ")") {
			return nil, nil, fmt.Errorf("malformed line %q", line)
		}
		typ, lit := line[:open], line[open+1:len(line)-1]
		var v any
		switch typ {
		case "[]byte", "string":
			s, err := strconv.Unquote(lit)
			if err != nil {
				return nil, nil, fmt.Errorf("line %q: %v", line, err)
			}
			if typ == "string" {
				v = s
			} else {
				v = []byte(s)
			}
		case "byte":
			s, err := strconv.Unquote(lit)
			r, n := utf8.DecodeRuneInString(s)
			if err != nil || n != len(s) || r > 255 {
				return nil, nil, fmt.Errorf("line %q: bad byte", line)
			}
			v = byte(r)
		case "int":
			n, err := strconv.ParseInt(lit, 10, 0)
			if err != nil {
				return nil, nil, err
			}
			v = int(n)
		case "uint32", "uint64":
			n, err := strconv.ParseUint(lit, 10, map[string]int{"uint32": 32, "uint64": 64}[typ])
			if err != nil {
				return nil, nil, err
			}
			if typ == "uint32" {
				v = uint32(n)
			} else {
				v = n
			}
		case "bool":
			bv, err := strconv.ParseBool(lit)
			if err != nil {
				return nil, nil, err
			}
			v = bv
		default:
			return nil, nil, fmt.Errorf("unsupported type in %q", line)
		}
		types = append(types, typ)
		vals = append(vals, v)
	}
	return types, vals, nil
}

// TestWriteFuzzCorpus regenerates testdata/fuzz when asked to.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeFuzzCorpus {
		t.Skip("run with -args -write-fuzz-corpus to rewrite testdata/fuzz")
	}
	for name, target := range fuzzTargets {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range target.seeds() {
			if err := os.WriteFile(filepath.Join(dir, "seed-"+s.label), marshalCorpusFile(s.vals...), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFuzzSeedCorpora checks that every fuzz target in this file has a seed
// corpus in testdata/fuzz, that its files parse with the target's argument
// types, and that its "valid-" seeds open, so the fuzzer starts from real
// structures and not only from noise.
func TestFuzzSeedCorpora(t *testing.T) {
	fset := token.NewFileSet()
	src, err := parser.ParseFile(fset, "fuzz_test.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range src.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && strings.HasPrefix(fn.Name.Name, "Fuzz") && fn.Recv == nil {
			names = append(names, fn.Name.Name)
		}
	}
	if len(names) < 12 {
		t.Fatalf("found only %d fuzz targets in fuzz_test.go", len(names))
	}
	for _, name := range names {
		target, ok := fuzzTargets[name]
		if !ok {
			t.Errorf("%s has no entry in fuzzTargets", name)
			continue
		}
		dir := filepath.Join("testdata", "fuzz", name)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("%s: seed corpus: %v", name, err)
			continue
		}
		files, valid := 0, 0
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			files++
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			types, vals, err := parseCorpusFile(data)
			if err != nil {
				t.Errorf("%s/%s: %v", name, e.Name(), err)
				continue
			}
			if !slices.Equal(types, target.types) {
				t.Errorf("%s/%s has types %v, the target takes %v", name, e.Name(), types, target.types)
				continue
			}
			if strings.HasPrefix(e.Name(), "seed-valid-") {
				valid++
				if err := target.opens(vals); err != nil {
					t.Errorf("%s/%s: a valid seed does not open: %v", name, e.Name(), err)
				}
			}
		}
		if files < 3 || valid < 1 {
			t.Errorf("%s: %d seed files, %d valid; want at least 3 and 1", name, files, valid)
		}
	}
	if len(fuzzTargets) != len(names) {
		t.Errorf("fuzzTargets has %d entries for %d targets", len(fuzzTargets), len(names))
	}
}

// TestFuzzSeedsInCode checks that the seeds the targets add in code are
// valid too (they are sealed afresh on each run).
func TestFuzzSeedsInCode(t *testing.T) {
	for name, target := range fuzzTargets {
		valid := 0
		for _, s := range target.seeds() {
			var types []string
			for _, v := range s.vals {
				types = append(types, corpusType(v))
			}
			if !slices.Equal(types, target.types) {
				t.Errorf("%s seed %s has types %v, want %v", name, s.label, types, target.types)
			}
			if strings.HasPrefix(s.label, "valid-") {
				valid++
				if err := target.opens(s.vals); err != nil {
					t.Errorf("%s seed %s does not open: %v", name, s.label, err)
				}
			}
		}
		if valid == 0 {
			t.Errorf("%s has no valid seed", name)
		}
	}
}
