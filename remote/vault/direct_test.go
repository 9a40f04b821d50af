package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestDirectWriter writes chunk-like pieces at their offsets, concurrently
// and out of order, the last one short, from aligned and unaligned
// buffers, and checks the file holds them exactly once truncated to their
// length, as Download does.
func TestDirectWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	const chunk = 64 << 10
	want := make([]byte, 7*chunk+1234)
	for i := range want {
		want[i] = byte(i*7 + i>>11)
	}
	w := newDirectWriter(out)
	if oDirect != 0 && w.direct == nil {
		t.Logf("O_DIRECT refused by the file system of %s: testing the fallback only", path)
	}
	var wg sync.WaitGroup
	for _, off := range []int{6 * chunk, chunk, 0, 7 * chunk, 3 * chunk, 2 * chunk, 5 * chunk, 4 * chunk} {
		p := want[off:min(off+chunk, len(want))]
		if off == chunk || off == 4*chunk {
			// An unaligned source buffer goes through a bounce buffer.
			backing := make([]byte, chunk+1)
			copy(backing[1:], p)
			p = backing[1 : 1+len(p)]
		}
		wg.Go(func() {
			if n, err := w.WriteAt(p, int64(off)); err != nil || n != len(p) {
				t.Errorf("write at %d: %d, %v", off, n, err)
			}
		})
	}
	wg.Wait()
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
