package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"testing"
	"time"
)

// TestMountWriteBackBeforeGC writes a file that stays open for longer than
// the server's garbage-collection grace. The chunks uploaded early are
// garbage to the server until a commit references them, so the mount
// commits the open file once they have waited --write-back-age: the close
// at the end then stores the whole file instead of failing on chunks the
// server collected meanwhile.
func TestMountWriteBackBeforeGC(t *testing.T) {
	requireFUSE(t)
	s := startServerWith(t, "--gc-grace", "2s", "--gc-interval", "500ms")
	m := mountAccount(t, initAccount(t, s, "alice", "pw"), "--write-back-age", "1s")
	data := make([]byte, 3<<20+100)
	rand.Read(data)
	f, err := os.Create(m.path("long"))
	if err != nil {
		t.Fatal(err)
	}
	// Two whole chunks go to the server in the background as the writer
	// moves past them.
	for off := 0; off < 2<<20+100; off += 1 << 20 {
		if _, err := f.Write(data[off:min(off+1<<20, 2<<20+100)]); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Second) // the grace, then a collection, twice over
	if _, err := f.Write(data[2<<20+100:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close after a long write: %v\n%s", err, m.log)
	}
	m.remountCold()
	got, err := os.ReadFile(m.path("long"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
}
