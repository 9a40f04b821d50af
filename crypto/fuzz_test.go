package crypto

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"sync"
	"testing"
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
		x, _, err := OpenXattrs(fuzzKeys().Attr, idFrom(fileB, fuzzFile), sealed)
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
