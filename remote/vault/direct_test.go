package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestDirectWriter writes chunk-like pieces, the last one short, from
// aligned and unaligned buffers, and checks the file holds them exactly
// once truncated to their length, as Download does.
func TestDirectWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	const chunk = 64 << 10
	want := make([]byte, 3*chunk+1234)
	for i := range want {
		want[i] = byte(i*7 + i>>11)
	}
	w := newDirectWriter(out, 0)
	if oDirect != 0 && w.direct == nil {
		t.Logf("O_DIRECT refused by the file system of %s: testing the fallback only", path)
	}
	backing := make([]byte, chunk+1)
	for off := 0; off < len(want); off += chunk {
		p := want[off:min(off+chunk, len(want))]
		if off == chunk {
			// An unaligned source buffer goes through the bounce buffer.
			copy(backing[1:], p)
			p = backing[1 : 1+len(p)]
		}
		if n, err := w.Write(p); err != nil || n != len(p) {
			t.Fatalf("write at %d: %d, %v", off, n, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := out.Truncate(int64(len(want))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(want))
	}
}
