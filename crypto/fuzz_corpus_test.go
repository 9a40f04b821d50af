package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

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

// TestFuzzSeedCorpora checks that every fuzz target in fuzz_test.go has a seed
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
