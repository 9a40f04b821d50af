package vault

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// TestServerCannotSwapInodes is a compromised server that answers for one
// inode with another, or changes an inode's type or the account's layout
// in its database. Everything sealed in an inode is bound to its own ID,
// so each lie opens cleanly; the vault must still refuse it.
func TestServerCannotSwapInodes(t *testing.T) {
	ctx := context.Background()
	f, v := newVault(t)
	root := crypto.ID{}
	up := func(name, content string) *Node {
		t.Helper()
		n, err := v.Upload(ctx, root, name, strings.NewReader(content), int64(len(content)), UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	a, b := up("a", "content of a"), up("b", "content of b, longer")
	d, err := v.Mkdir(ctx, root, "d", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := func(what string, err error) {
		t.Helper()
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a CorruptError", what, err)
		}
	}
	lie := func(asked, answered crypto.ID) {
		f.redirect.Store(&[2]string{"/v1/inodes/" + asked.String(), "/v1/inodes/" + answered.String()})
	}

	lie(a.ID, b.ID)
	_, err = v.Stat(ctx, a.ID)
	corrupt("stat of a answered with b", err)
	_, err = v.OpenFile(ctx, a)
	corrupt("open of a answered with b", err)
	lie(root, d.ID)
	_, err = v.Root(ctx)
	corrupt("the root answered with a subdirectory", err)
	_, err = v.Resolve(ctx, "/a")
	corrupt("a path resolved from a false root", err)
	f.redirect.Store(nil)
	if _, err := v.Stat(ctx, a.ID); err != nil {
		t.Fatalf("stat once the server tells the truth: %v", err)
	}

	db, err := sql.Open("sqlite", filepath.Join(f.dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`UPDATE inodes SET type = ? WHERE id = ?`, wire.TypeDir, a.ID[:])
	_, err = v.Lookup(ctx, root, "a")
	corrupt("a file the server calls a directory", err)
	var rde *ReadDirError
	if _, err = v.ReadDir(ctx, root); !errors.As(err, &rde) || len(rde.Bad) != 1 {
		t.Errorf("listing with a file the server calls a directory: %v, want one corrupt entry", err)
	} else {
		corrupt("the entry of a file the server calls a directory", rde.Bad[0])
	}
	exec(`UPDATE inodes SET type = ? WHERE id = ?`, wire.TypeFile, a.ID[:])
	exec(`UPDATE inodes SET type = ? WHERE id = ?`, wire.TypeFile, d.ID[:])
	_, err = v.Lookup(ctx, root, "d")
	corrupt("a directory the server calls a file", err)
	exec(`UPDATE inodes SET type = ? WHERE id = ?`, wire.TypeDir, d.ID[:])
	if _, err := v.Lookup(ctx, root, "a"); err != nil {
		t.Fatalf("lookup once the types are back: %v", err)
	}

	// A layout that pads to 16 bytes would show the server every new
	// file's exact size.
	exec(`UPDATE accounts SET layout = replace(layout, '"pad_unit":4096', '"pad_unit":16')`)
	var layout string
	if err := db.QueryRow(`SELECT layout FROM accounts`).Scan(&layout); err != nil || !strings.Contains(layout, `"pad_unit":16`) {
		t.Fatalf("layout is now %q (%v): the test no longer lowers the pad unit", layout, err)
	}
	if _, _, err := Login(ctx, f.client(t), "alice", []byte("pw")); err == nil || !strings.Contains(err.Error(), "pads files to 16 bytes") {
		t.Errorf("login with a lowered pad unit: %v", err)
	}
}
