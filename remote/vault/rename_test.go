package vault

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// TestRenameStaleEntry renames through a Node that another device has
// since replaced under its name. The new sealed name is bound to the inode
// the renaming client knew; storing it on the entry, which now leads to
// another inode, would leave a name that fails authentication for good
// (the whole directory's listing then fails). The rename must fail with
// ESTALE instead, change nothing, and work once the name is looked up
// again.
func TestRenameStaleEntry(t *testing.T) {
	ctx := context.Background()
	f, v := newVault(t)
	v2, _, err := Login(ctx, f.client(t), "alice", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	root := crypto.ID{}
	mkfile := func(v *Vault, name string) *Node {
		t.Helper()
		n, err := v.CreateInode(ctx, root, name, wire.TypeFile, crypto.Attr{Mode: 0o644}, "")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	x := mkfile(v, "s0")
	stale, err := v.Lookup(ctx, root, "s0")
	if err != nil || stale.ID != x.ID {
		t.Fatalf("lookup: %v", err)
	}
	y := mkfile(v2, "tmp")
	if err := v2.Rename(ctx, y, root, "s0", wire.RenameReplace, nil); err != nil {
		t.Fatal(err)
	}

	err = v.Rename(ctx, stale, root, "s1", wire.RenameReplace, nil)
	if !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("rename through a replaced entry: %v, want ESTALE", err)
	}
	check := func(want map[string]crypto.ID) {
		t.Helper()
		list, err := v.ReadDir(ctx, root)
		if err != nil {
			t.Fatalf("listing after the rename: %v", err)
		}
		got := map[string]crypto.ID{}
		for _, n := range list {
			got[n.Name] = n.ID
		}
		if len(got) != len(want) {
			t.Fatalf("listing %v, want %v", got, want)
		}
		for name, id := range want {
			if got[name] != id {
				t.Fatalf("listing %v, want %v", got, want)
			}
		}
	}
	check(map[string]crypto.ID{"s0": y.ID})

	fresh, err := v.Lookup(ctx, root, "s0")
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Rename(ctx, fresh, root, "s1", wire.RenameReplace, nil); err != nil {
		t.Fatalf("rename after looking up again: %v", err)
	}
	check(map[string]crypto.ID{"s1": y.ID})

	// An exchange checks its destination the same way.
	a := mkfile(v, "a")
	b := mkfile(v, "b")
	if err := v2.Remove(ctx, root, "b", false); err != nil {
		t.Fatal(err)
	}
	c := mkfile(v2, "b")
	if err := v.Rename(ctx, a, root, "b", wire.RenameExchange, b); !errors.Is(err, syscall.ESTALE) {
		t.Fatalf("exchange with a replaced destination: %v, want ESTALE", err)
	}
	check(map[string]crypto.ID{"s1": y.ID, "a": a.ID, "b": c.ID})
}

// TestRenameAppliedBefore repeats renames that the server has applied
// already, as a client does when the answer to its first attempt was lost
// and the server restarted meanwhile (so it no longer knows the request's
// idempotency key): the source is gone, because it is where it was asked
// to go. That is success; it was reported as "no such file" for the
// destination, which exists. A source that is simply gone still fails.
func TestRenameAppliedBefore(t *testing.T) {
	ctx := context.Background()
	_, v := newVault(t)
	root := crypto.ID{}
	mk := func(name string) *Node {
		t.Helper()
		n, err := v.CreateInode(ctx, root, name, wire.TypeFile, crypto.Attr{Mode: 0o644}, "")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, mode := range []string{wire.RenameReplace, wire.RenameNoReplace} {
		f := mk("f-" + mode)
		if err := v.Rename(ctx, f, root, "g-"+mode, mode, nil); err != nil {
			t.Fatal(err)
		}
		if err := v.Rename(ctx, f, root, "g-"+mode, mode, nil); err != nil {
			t.Errorf("%s rename repeated after it was applied: %v, want success", mode, err)
		}
	}
	gone := mk("gone")
	if err := v.Remove(ctx, root, "gone", false); err != nil {
		t.Fatal(err)
	}
	if err := v.Rename(ctx, gone, root, "elsewhere", wire.RenameReplace, nil); !IsNotExist(err) {
		t.Errorf("rename of a removed file: %v, want not found", err)
	}
}
