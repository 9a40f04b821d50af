package fusefs

import (
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

func TestIno(t *testing.T) {
	if ino(crypto.ID{}) != 1 {
		t.Fatal("the root is not inode 1")
	}
	seen := map[uint64]bool{}
	for i := 0; i < 1000; i++ {
		x := ino(crypto.NewID())
		if x <= 1 || seen[x] {
			t.Fatalf("inode number %d", x)
		}
		seen[x] = true
	}
}

func TestConflictName(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if got := conflictName("a.txt", "host", now, 0); got != "a.txt.conflict-20240506-070809-host" {
		t.Fatal(got)
	}
	if got := conflictName("a.txt", "host", now, 2); !strings.HasSuffix(got, "-host-2") {
		t.Fatal(got)
	}
	if got := conflictName(strings.Repeat("x", 255), strings.Repeat("h", 300), now, 1); len(got) > 255 {
		t.Fatalf("%d bytes", len(got))
	}
}

func TestErrno(t *testing.T) {
	for code, want := range map[string]syscall.Errno{
		wire.CodeNotFound: syscall.ENOENT, wire.CodeExists: syscall.EEXIST, wire.CodeNotEmpty: syscall.ENOTEMPTY,
		wire.CodeNotDir: syscall.ENOTDIR, wire.CodeIsDir: syscall.EISDIR, wire.CodeInvalid: syscall.EINVAL,
		wire.CodeNotPermitted: syscall.EPERM, wire.CodeQuotaExceeded: syscall.EDQUOT,
		wire.CodeInsufficientStorage: syscall.ENOSPC, wire.CodeInternal: syscall.EIO, wire.CodeVersionMismatch: syscall.EIO,
	} {
		err := &remote.APIError{Status: wire.Status[code], Wire: &wire.Error{Code: code}}
		if got := errno(err); got != want {
			t.Errorf("%s: %v, want %v", code, got, want)
		}
	}
	if errno(&remote.NetError{URL: "https://x", Err: syscall.ECONNREFUSED}) != syscall.EIO {
		t.Error("a network error is not EIO")
	}
}

// TestRebaseAttr checks how a commit goes on top of another client's
// attribute change: each field this mount changed is its own, every other
// one the other client's, and ctime rises above both even when this
// mount's clock is behind.
func TestRebaseAttr(t *testing.T) {
	base := crypto.Attr{Mode: 0o100644, UID: 1, GID: 1, Size: 5, Generation: 3, Atime: 10, Mtime: 10, Ctime: 10}
	mine := base
	mine.Size, mine.Generation, mine.Mtime, mine.Ctime = 12, 4, 20, 20 // a write here
	theirs := base
	theirs.Mode, theirs.Ctime = 0o100600, 30 // a chmod there, by a clock ahead
	got := rebaseAttr(base, mine, theirs)
	want := crypto.Attr{Mode: 0o100600, UID: 1, GID: 1, Size: 12, Generation: 4, Atime: 10, Mtime: 20, Ctime: 31}
	if got != want {
		t.Fatalf("rebased\n got %+v\nwant %+v", got, want)
	}
	// Both changed the mode: this mount's commit is the later change.
	mine.Mode = 0o100755
	if got := rebaseAttr(base, mine, theirs); got.Mode != 0o100755 {
		t.Fatalf("mode %#o, want this mount's 0100755", got.Mode)
	}
	// This mount's clock is ahead: its ctime stays.
	mine.Ctime = 40
	if got := rebaseAttr(base, mine, theirs); got.Ctime != 40 {
		t.Fatalf("ctime %d, want 40", got.Ctime)
	}
}

// TestNodeSize keeps a node within 576 bytes, the allocation size class it
// fills now. The mount keeps one for every inode the kernel holds: after an
// ls -lR of 100,000 files that is 100,000 of them (a heap profile showed
// 58 MB of nodes at 640 bytes each), the most of any one thing under the
// mount's memory limit. A field only some nodes need
// goes behind a pointer (like walk) instead.
func TestNodeSize(t *testing.T) {
	if n := unsafe.Sizeof(node{}); n > 576 {
		t.Fatalf("a node takes %d bytes, more than 576", n)
	}
}
