package crypto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The vectors and worked sizes live in docs/format.md, and this test reads
// them from there, so the document and the code cannot drift apart. Run with
// SEALFS_GEN_VECTORS=1 to print fresh vector blocks (sealing is randomized,
// so regenerated sealed values differ but open to the same plaintext).

const formatDoc = "../docs/format.md"

// vector is one ```vector block: ordered key/value lines.
type vector map[string]string

func (v vector) hex(t *testing.T, k string) []byte {
	t.Helper()
	s, ok := v[k]
	if !ok {
		t.Fatalf("vector %q has no %q", v["name"], k)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("vector %q field %q: %v", v["name"], k, err)
	}
	return b
}

func (v vector) id(t *testing.T, k string) ID {
	var id ID
	b := v.hex(t, k)
	if len(b) != IDSize {
		t.Fatalf("vector %q field %q: %d bytes", v["name"], k, len(b))
	}
	copy(id[:], b)
	return id
}

func (v vector) num(t *testing.T, k string) uint64 {
	n, err := strconv.ParseUint(v[k], 10, 64)
	if err != nil {
		t.Fatalf("vector %q field %q: %v", v["name"], k, err)
	}
	return n
}

func (v vector) layout(t *testing.T) Layout {
	return Layout{BlockSize: uint32(v.num(t, "block_size")), ChunkBlocks: uint32(v.num(t, "chunk_blocks")), PadUnit: uint32(v.num(t, "pad_unit"))}
}

// parseVectors reads every ```vector fenced block of the format document.
func parseVectors(t *testing.T, doc []byte) []vector {
	var out []vector
	var cur vector
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```vector":
			cur = vector{}
		case cur != nil && line == "```":
			out = append(out, cur)
			cur = nil
		case cur != nil:
			k, val, ok := strings.Cut(line, ":")
			if !ok {
				t.Fatalf("vector line without a colon: %q", line)
			}
			// Long hex values continue on following "k+:" lines.
			k = strings.TrimSpace(k)
			cur[strings.TrimSuffix(k, "+")] += strings.TrimSpace(val)
		}
	}
	return out
}

var expectErrors = map[string]error{
	"success":               nil,
	"authentication failed": ErrAuthentication,
	"truncated":             ErrTruncated,
	"extended":              ErrExtended,
	"corrupt":               ErrCorrupt,
	"unsupported version":   ErrUnsupportedVersion,
}

func TestFormatVectors(t *testing.T) {
	doc, err := os.ReadFile(formatDoc)
	if err != nil {
		t.Fatal(err)
	}
	vs := parseVectors(t, doc)
	if len(vs) < 12 {
		t.Fatalf("found %d vectors in %s, want at least 12", len(vs), formatDoc)
	}
	seen := map[string]bool{}
	for _, v := range vs {
		kind := v["kind"]
		seen[kind] = true
		t.Run(v["name"], func(t *testing.T) {
			want, ok := expectErrors[v["expect"]]
			if !ok {
				t.Fatalf("unknown expect %q", v["expect"])
			}
			got := checkVector(t, kind, v)
			if want == nil && got != nil {
				t.Fatalf("want success, got %v", got)
			}
			if want != nil && !errors.Is(got, want) {
				t.Fatalf("want %v, got %v", want, got)
			}
		})
	}
	for _, k := range []string{"kdf", "purpose-keys", "master-wrap", "account-key", "chunk", "transfer-mac", "manifest", "name", "name-index", "symlink", "attr", "xattr", "data-key-wrap", "at-rest"} {
		if !seen[k] {
			t.Errorf("format.md has no vector of kind %q", k)
		}
	}
}

// checkVector recomputes or opens one vector and compares every given output.
func checkVector(t *testing.T, kind string, v vector) error {
	eq := func(field string, got []byte) {
		t.Helper()
		if want := v.hex(t, field); !bytes.Equal(got, want) {
			t.Errorf("%s = %x, want %x", field, got, want)
		}
	}
	switch kind {
	case "kdf":
		p := KDFParams{Algorithm: uint8(v.num(t, "alg")), Time: uint32(v.num(t, "time")), MemoryKiB: uint32(v.num(t, "memory_kib")), Threads: uint8(v.num(t, "threads")), Salt: v.hex(t, "salt")}
		lk, err := DeriveLoginKeys([]byte(v["password"]), p)
		if err != nil {
			return err
		}
		eq("auth_key", lk.AuthKey)
		eq("wrap_key", lk.WrapKey)
	case "purpose-keys":
		k, err := DeriveKeys(v.hex(t, "master"))
		if err != nil {
			return err
		}
		for field, got := range map[string][]byte{"content": k.Content, "names": k.Names, "name_index": k.NameIndex, "manifest": k.Manifest, "transfer": k.Transfer, "attr": k.Attr, "account": k.Account} {
			eq(field, got)
		}
		eq("file_key", FileKey(k.Content, v.id(t, "file")))
	case "master-wrap":
		m, err := UnwrapMasterKey(v.hex(t, "wrap_key"), v.hex(t, "wrapped"))
		if err != nil {
			return err
		}
		eq("master", m)
	case "account-key":
		priv, err := OpenAccountKeyPair(&Keys{Account: v.hex(t, "account_key")}, AccountKeyPair{Public: v.hex(t, "public"), SealedPrivate: v.hex(t, "sealed_private")})
		if err != nil {
			return err
		}
		eq("private", priv.Bytes())
	case "chunk":
		c, err := NewFileCipher(v.hex(t, "content_key"), v.id(t, "file"), v.layout(t))
		if err != nil {
			return err
		}
		var tag ChunkTag
		copy(tag[:], v.hex(t, "tag"))
		p, err := c.OpenChunk(nil, v.num(t, "index"), v.id(t, "chunk_id"), v.hex(t, "sealed"), int(v.num(t, "plain_len")), v["last"] == "true", tag)
		if err != nil {
			return err
		}
		eq("plaintext", p)
		if n := c.Layout().SealedChunkLen(len(p), v["last"] == "true"); n != len(v.hex(t, "sealed")) {
			t.Errorf("SealedChunkLen = %d, vector has %d bytes", n, len(v.hex(t, "sealed")))
		}
	case "transfer-mac":
		m, err := NewTransferMAC(v.hex(t, "transfer_key"), v["account"])
		if err != nil {
			return err
		}
		ref := ChunkRef{File: v.id(t, "file"), Index: v.num(t, "index"), ID: v.id(t, "chunk_id")}
		return m.Verify(ref, v.hex(t, "sealed"), v.hex(t, "mac"))
	case "manifest":
		m, err := OpenManifest(v.hex(t, "manifest_key"), v.id(t, "file"), v.hex(t, "sealed"))
		if err != nil {
			return err
		}
		plain, _ := m.MarshalBinary()
		eq("plaintext", plain)
	case "name":
		n, err := OpenName(v.hex(t, "names_key"), v.id(t, "parent"), v.id(t, "file"), v.hex(t, "sealed"))
		if err != nil {
			return err
		}
		if n != v["name_text"] {
			t.Errorf("name = %q, want %q", n, v["name_text"])
		}
	case "name-index":
		idx := NameIndex(v.hex(t, "name_index_key"), v.id(t, "parent"), v["name_text"])
		eq("index", idx[:])
	case "symlink":
		s, err := OpenSymlink(v.hex(t, "names_key"), v.id(t, "file"), v.hex(t, "sealed"))
		if err != nil {
			return err
		}
		if s != v["target"] {
			t.Errorf("target = %q, want %q", s, v["target"])
		}
	case "attr":
		a, err := OpenAttr(v.hex(t, "attr_key"), v.id(t, "file"), v.hex(t, "sealed"))
		if err != nil {
			return err
		}
		plain, _ := a.MarshalBinary()
		eq("plaintext", plain)
	case "xattr":
		x, stamp, err := OpenXattrs(v.hex(t, "attr_key"), v.id(t, "file"), v.hex(t, "sealed"))
		if err != nil {
			return err
		}
		plain, _ := EncodeXattrs(x)
		if _, ok := v["stamp"]; ok {
			if want := int64(v.num(t, "stamp")); stamp != want {
				t.Errorf("stamp = %d, want %d", stamp, want)
			}
			plain = append(binary.BigEndian.AppendUint64([]byte{xattrStamped}, uint64(stamp)), plain...)
		} else if stamp != 0 {
			t.Errorf("an unstamped set opened with stamp %d", stamp)
		}
		eq("plaintext", plain)
	case "data-key-wrap":
		dk, err := UnwrapDataKey(v.hex(t, "kek"), v["kek_id"], []byte(v["owner"]), []byte(v["blob_id"]), v.hex(t, "wrapped"))
		if err != nil {
			return err
		}
		eq("data_key", dk)
	case "at-rest":
		p, err := OpenAtRest(nil, v.hex(t, "data_key"), []byte(v["owner"]), []byte(v["blob_id"]), v.hex(t, "sealed"))
		if err != nil {
			return err
		}
		eq("plaintext", p)
	default:
		t.Fatalf("unknown vector kind %q", kind)
	}
	return nil
}

// sizeRow matches a row of the worked-sizes table:
// | plaintext | chunks | sealed chunk bytes | sealed manifest bytes | sealed attr bytes |
var sizeRow = regexp.MustCompile(`^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|`)

func TestFormatWorkedSizes(t *testing.T) {
	doc, err := os.ReadFile(formatDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(doc, []byte("<!-- worked sizes -->"))
	if !ok {
		t.Fatal("format.md has no <!-- worked sizes --> table")
	}
	rows := 0
	for _, line := range strings.Split(string(after), "\n") {
		m := sizeRow.FindStringSubmatch(line)
		if m == nil {
			if rows > 0 && !strings.HasPrefix(line, "|") {
				break
			}
			continue
		}
		rows++
		n := func(i int) uint64 { x, _ := strconv.ParseUint(m[i], 10, 64); return x }
		size := n(1)
		l := DefaultLayout
		chunks := l.ChunkCount(size)
		var stored int
		for i := uint64(0); i < chunks; i++ {
			stored += l.SealedChunkLen(l.ChunkPlainLen(size, i), i == chunks-1)
		}
		man := &Manifest{File: NewID(), Size: size, Layout: l, Chunks: make([]ChunkEntry, chunks)}
		sealedMan, err := SealManifest(make([]byte, KeySize), man)
		if err != nil {
			t.Fatal(err)
		}
		got := []uint64{chunks, uint64(stored), uint64(len(sealedMan)), SealedAttrSize}
		for i, g := range got {
			if g != n(i+2) {
				t.Errorf("file of %d bytes: column %d is %d in format.md, the code says %d", size, i+2, n(i+2), g)
			}
		}
	}
	if rows < 4 {
		t.Fatalf("found %d worked-size rows, want at least 4 (0, 1, one chunk, one chunk + 1)", rows)
	}
}

// TestGenerateVectors prints vector blocks for docs/format.md.
func TestGenerateVectors(t *testing.T) {
	if os.Getenv("SEALFS_GEN_VECTORS") == "" {
		t.Skip("set SEALFS_GEN_VECTORS=1 to print vectors for docs/format.md")
	}
	seq := func(start byte, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = start + byte(i)
		}
		return b
	}
	idOf := func(start byte) ID { var id ID; copy(id[:], seq(start, IDSize)); return id }
	var out strings.Builder
	emit := func(fields ...any) {
		out.WriteString("```vector\n")
		for i := 0; i < len(fields); i += 2 {
			val := fmt.Sprint(fields[i+1])
			switch x := fields[i+1].(type) {
			case []byte:
				val = hex.EncodeToString(x)
			case ID:
				val = x.String()
			case ChunkTag:
				val = hex.EncodeToString(x[:])
			}
			key := fields[i].(string)
			for first := true; first || len(val) > 0; first = false {
				part := val[:min(len(val), 96)]
				val = val[len(part):]
				if first {
					fmt.Fprintf(&out, "%s: %s\n", key, part)
				} else {
					fmt.Fprintf(&out, "%s+: %s\n", key, part)
				}
			}
		}
		out.WriteString("```\n\n")
	}
	p := KDFParams{Algorithm: KDFAlgorithmArgon2id, Time: 1, MemoryKiB: 8192, Threads: 1, Salt: seq(0xa0, SaltSize)}
	lk, _ := DeriveLoginKeys([]byte("correct horse battery staple"), p)
	emit("name", "kdf-argon2id-hkdf", "kind", "kdf", "expect", "success", "password", "correct horse battery staple", "alg", 1, "time", 1, "memory_kib", 8192, "threads", 1, "salt", p.Salt, "auth_key", lk.AuthKey, "wrap_key", lk.WrapKey)
	master := seq(0x00, 32)
	k, _ := DeriveKeys(master)
	file := idOf(0x10)
	emit("name", "purpose-keys", "kind", "purpose-keys", "expect", "success", "master", master, "content", k.Content, "names", k.Names, "name_index", k.NameIndex, "manifest", k.Manifest, "transfer", k.Transfer, "attr", k.Attr, "account", k.Account, "file", file, "file_key", FileKey(k.Content, file))
	wrapped, _ := WrapMasterKey(lk.WrapKey, master)
	emit("name", "master-wrap", "kind", "master-wrap", "expect", "success", "wrap_key", lk.WrapKey, "wrapped", wrapped, "master", master)
	emit("name", "master-wrap-wrong-password", "kind", "master-wrap", "expect", "authentication failed", "wrap_key", lk.AuthKey, "wrapped", wrapped, "master", master)
	kp, _ := NewAccountKeyPair(k)
	priv, _ := OpenAccountKeyPair(k, kp)
	emit("name", "account-key-pair", "kind", "account-key", "expect", "success", "account_key", k.Account, "public", kp.Public, "sealed_private", kp.SealedPrivate, "private", priv.Bytes())

	l := Layout{BlockSize: 4096, ChunkBlocks: 4, PadUnit: 16}
	c, _ := NewFileCipher(k.Content, file, l)
	plain := []byte("sealfs chunk vector!")
	chunkID := idOf(0x30)
	tm, _ := NewTransferMAC(k.Transfer, "alice")
	sealed, tag, _ := c.SealChunk(nil, 2, chunkID, plain, true, nil)
	chunk := []any{"kind", "chunk", "content_key", k.Content, "file", file, "block_size", 4096, "chunk_blocks", 4, "pad_unit", 16, "index", 2, "chunk_id", chunkID, "last", true, "plain_len", len(plain), "plaintext", plain}
	emit(append([]any{"name", "chunk-last-padded", "expect", "success"}, append(chunk, "sealed", sealed, "tag", tag)...)...)
	emit(append([]any{"name", "chunk-truncated", "expect", "truncated"}, append(chunk, "sealed", sealed[:len(sealed)-1], "tag", tag)...)...)
	moved := append([]any{}, chunk...)
	moved[13] = 3 // index
	emit(append([]any{"name", "chunk-moved-to-another-index", "expect", "authentication failed"}, append(moved, "sealed", sealed, "tag", tag)...)...)
	emit("name", "transfer-mac", "kind", "transfer-mac", "expect", "success", "transfer_key", k.Transfer, "account", "alice", "file", file, "index", 2, "chunk_id", chunkID, "sealed", sealed, "mac", tm.Sum(ChunkRef{file, 2, chunkID}, sealed))
	emit("name", "transfer-mac-other-account", "kind", "transfer-mac", "expect", "authentication failed", "transfer_key", k.Transfer, "account", "bob", "file", file, "index", 2, "chunk_id", chunkID, "sealed", sealed, "mac", tm.Sum(ChunkRef{file, 2, chunkID}, sealed))

	man := &Manifest{File: file, Generation: 7, Size: 3*uint64(l.ChunkSize()) + uint64(len(plain)), Layout: l,
		Chunks: []ChunkEntry{{ID: idOf(0x40), Tag: ChunkTag(seq(0x50, 32))}, {}, {ID: idOf(0x60), Tag: ChunkTag(seq(0x70, 32))}, {ID: chunkID, Tag: tag}}}
	mplain, _ := man.MarshalBinary()
	msealed, _ := SealManifest(k.Manifest, man)
	emit("name", "manifest-with-hole", "kind", "manifest", "expect", "success", "manifest_key", k.Manifest, "file", file, "sealed", msealed, "plaintext", mplain)
	emit("name", "manifest-of-another-file", "kind", "manifest", "expect", "authentication failed", "manifest_key", k.Manifest, "file", idOf(0x11), "sealed", msealed, "plaintext", mplain)
	v2 := append([]byte{2}, msealed[1:]...)
	emit("name", "manifest-version-2", "kind", "manifest", "expect", "unsupported version", "manifest_key", k.Manifest, "file", file, "sealed", v2, "plaintext", mplain)

	parent := idOf(0x80)
	sn, _ := SealName(k.Names, parent, file, "Quarterly report.pdf")
	emit("name", "name", "kind", "name", "expect", "success", "names_key", k.Names, "parent", parent, "file", file, "sealed", sn, "name_text", "Quarterly report.pdf")
	emit("name", "name-under-another-parent", "kind", "name", "expect", "authentication failed", "names_key", k.Names, "parent", idOf(0x81), "file", file, "sealed", sn, "name_text", "Quarterly report.pdf")
	ni := NameIndex(k.NameIndex, parent, "Quarterly report.pdf")
	emit("name", "name-index", "kind", "name-index", "expect", "success", "name_index_key", k.NameIndex, "parent", parent, "name_text", "Quarterly report.pdf", "index", ni[:])
	ss, _ := SealSymlink(k.Names, file, "../shared/notes.txt")
	emit("name", "symlink", "kind", "symlink", "expect", "success", "names_key", k.Names, "file", file, "sealed", ss, "target", "../shared/notes.txt")
	a := &Attr{Mode: 0o100644, UID: 1000, GID: 1000, Size: man.Size, Generation: 7, Atime: 1700000000123456789, Mtime: 1700000000123456789, Ctime: 1700000001000000000}
	ap, _ := a.MarshalBinary()
	as, _ := SealAttr(k.Attr, file, a)
	emit("name", "attr", "kind", "attr", "expect", "success", "attr_key", k.Attr, "file", file, "sealed", as, "plaintext", ap)
	const xstamp = 1787934006123456789
	xs, _ := SealXattrs(k.Attr, file, map[string][]byte{"user.color": []byte("blue"), "user.a": nil}, xstamp)
	xp, _ := EncodeXattrs(map[string][]byte{"user.color": []byte("blue"), "user.a": nil})
	xp = append(binary.BigEndian.AppendUint64([]byte{xattrStamped}, xstamp), xp...)
	emit("name", "xattr", "kind", "xattr", "expect", "success", "attr_key", k.Attr, "file", file, "stamp", xstamp, "sealed", xs, "plaintext", xp)

	kek := seq(0xc0, 32)
	dk := seq(0xe0, 32)
	wdk, _ := WrapDataKey(kek, "k-0001", []byte("alice"), []byte("0a0b0c0d0e0f1011"), dk)
	emit("name", "data-key-wrap", "kind", "data-key-wrap", "expect", "success", "kek", kek, "kek_id", "k-0001", "owner", "alice", "blob_id", "0a0b0c0d0e0f1011", "wrapped", wdk, "data_key", dk)
	emit("name", "data-key-wrap-other-kek-id", "kind", "data-key-wrap", "expect", "authentication failed", "kek", kek, "kek_id", "k-0002", "owner", "alice", "blob_id", "0a0b0c0d0e0f1011", "wrapped", wdk, "data_key", dk)
	ar, _ := SealAtRest(nil, dk, []byte("alice"), []byte("0a0b0c0d0e0f1011"), sealed)
	emit("name", "at-rest", "kind", "at-rest", "expect", "success", "data_key", dk, "owner", "alice", "blob_id", "0a0b0c0d0e0f1011", "sealed", ar, "plaintext", sealed)
	emit("name", "at-rest-other-owner", "kind", "at-rest", "expect", "authentication failed", "data_key", dk, "owner", "bob", "blob_id", "0a0b0c0d0e0f1011", "sealed", ar, "plaintext", sealed)
	fmt.Print(out.String())
}
