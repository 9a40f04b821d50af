package meta_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/meta"
)

// TestDiskFull fills a tiny tmpfs under the database: writes must fail with
// ErrNoSpace (which the server answers with 507), nothing half-written may
// show, and reads must keep working.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	s := openAt(t, filepath.Join(dir, "meta.db"))
	ctx := t.Context()
	acct, err := s.CreateAccount(ctx, meta.NewAccount{Name: "alice", AuthHash: []byte("h"), KDF: "{}", Layout: "{}",
		WrappedMaster: []byte("w"), AccountPub: []byte("p"), AccountPrivSealed: []byte("s"),
		TransferKey: meta.Sealed{Data: []byte("t"), KEKID: "k-1", WrappedKey: []byte("wk")}})
	if err != nil {
		t.Fatal(err)
	}
	var root meta.ID
	attr := make([]byte, 4000)
	created := 0
	deadline := time.Now().Add(30 * time.Second)
	for ; time.Now().Before(deadline); created++ {
		var id meta.ID
		copy(id[:], fmt.Sprintf("%016d", created))
		idx := make([]byte, meta.NameIndexSize)
		copy(idx, id[:])
		_, err = s.Create(ctx, acct.ID, meta.CreateRequest{Parent: root, NameIndex: idx, SealedName: []byte("name"),
			Inode: meta.NewInode{ID: id, Type: meta.TypeFile, Attr: attr}})
		if err != nil {
			break
		}
	}
	if !errors.Is(err, meta.ErrNoSpace) {
		t.Fatalf("after %d creates on a full disk: %v, want ErrNoSpace", created, err)
	}
	// Everything acknowledged is still there, and reads work.
	ents, _, err := s.ReadDir(ctx, acct.ID, root, nil, meta.MaxPage)
	if err != nil {
		t.Fatalf("ReadDir on a full disk: %v", err)
	}
	if len(ents) != created {
		t.Fatalf("%d entries after %d acknowledged creates", len(ents), created)
	}
}
