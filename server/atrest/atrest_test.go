package atrest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/blob/blobtest"
	"github.com/sealfs/sealfs/server/keyring"
)

type env struct {
	dir     string
	blobs   *blob.Local
	kr      *keyring.Keyring // the server's view
	admin   *keyring.Keyring // an admin command's view of the same file
	store   *atrest.Store
	keyPath string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	blobs, err := blob.OpenLocal(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blobs.Close() })
	keyPath := filepath.Join(dir, "keyring.json")
	kr, err := keyring.Open(keyPath, true)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := keyring.Open(keyPath, false)
	if err != nil {
		t.Fatal(err)
	}
	return &env{dir: dir, blobs: blobs, kr: kr, admin: admin, store: atrest.New(blobs, kr), keyPath: keyPath}
}

func (e *env) blobPath(key string) string {
	return filepath.Join(e.blobs.Dir(), key[:2], key)
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

var (
	owner  = []byte("alice")
	blobID = []byte("0123456789abcdef")
	ctx    = context.Background()
)

func TestRoundTrip(t *testing.T) {
	e := newEnv(t)
	for _, n := range []int{0, 1, 4096, 1 << 20} {
		key := blobtest.NewKey()
		plain := random(n)
		w, err := e.store.Put(ctx, owner, blobID, key, plain)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.WrappedKey) != crypto.WrappedDataKeySize {
			t.Errorf("wrapped key is %d bytes", len(w.WrappedKey))
		}
		if cur, _, _ := e.kr.Current(); w.KEKID != cur {
			t.Errorf("wrapped under %s, current is %s", w.KEKID, cur)
		}
		stored, err := os.ReadFile(e.blobPath(key))
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != n+crypto.AtRestOverhead {
			t.Errorf("stored %d bytes for %d of plaintext", len(stored), n)
		}
		if n >= 16 && bytes.Contains(stored, plain[:16]) {
			t.Error("plaintext visible in the stored blob")
		}
		for range 2 { // opening in place must not disturb the next read
			got, err := e.store.Get(ctx, owner, blobID, key, w)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("size %d: Get = %d bytes, %v", n, len(got), err)
			}
		}
	}
}

func TestWrongBinding(t *testing.T) {
	e := newEnv(t)
	key := blobtest.NewKey()
	w, err := e.store.Put(ctx, owner, blobID, key, []byte("secret chunk"))
	if err != nil {
		t.Fatal(err)
	}
	other := blobtest.NewKey()
	wOther, err := e.store.Put(ctx, owner, []byte("another-blob-id"), other, []byte("other chunk"))
	if err != nil {
		t.Fatal(err)
	}

	cases := map[string]func() error{
		"other owner": func() error {
			_, err := e.store.Get(ctx, []byte("mallory"), blobID, key, w)
			return err
		},
		"other blob ID": func() error {
			_, err := e.store.Get(ctx, owner, []byte("fedcba9876543210"), key, w)
			return err
		},
		"other blob's wrapped key": func() error {
			_, err := e.store.Get(ctx, owner, blobID, key, wOther)
			return err
		},
		"blob swapped on disk": func() error {
			data, _ := os.ReadFile(e.blobPath(other))
			os.WriteFile(e.blobPath(key), data, 0o600)
			_, err := e.store.Get(ctx, owner, blobID, key, w)
			return err
		},
	}
	for name, get := range cases {
		if err := get(); !errors.Is(err, crypto.ErrAuthentication) {
			t.Errorf("%s: Get = %v, want ErrAuthentication", name, err)
		}
	}
}

func TestTamperedBlob(t *testing.T) {
	e := newEnv(t)
	key := blobtest.NewKey()
	plain := random(10000)
	w, err := e.store.Put(ctx, owner, blobID, key, plain)
	if err != nil {
		t.Fatal(err)
	}
	path := e.blobPath(key)
	orig, _ := os.ReadFile(path)
	// A bit in the nonce, the ciphertext's start, middle and end, the tag.
	for _, pos := range []int{1, 12, 13, 5000, len(orig) - 17, len(orig) - 1} {
		bad := bytes.Clone(orig)
		bad[pos] ^= 0x04
		os.WriteFile(path, bad, 0o600)
		if _, err := e.store.Get(ctx, owner, blobID, key, w); !errors.Is(err, crypto.ErrAuthentication) {
			t.Errorf("bit flipped at %d: Get = %v, want ErrAuthentication", pos, err)
		}
	}
	for _, bad := range [][]byte{orig[:len(orig)-1], append(bytes.Clone(orig), 0), orig[:10], {orig[0] ^ 1}} {
		os.WriteFile(path, bad, 0o600)
		if _, err := e.store.Get(ctx, owner, blobID, key, w); err == nil {
			t.Errorf("%d-byte damaged blob opened", len(bad))
		}
	}
	os.WriteFile(path, orig, 0o600)
	if got, err := e.store.Get(ctx, owner, blobID, key, w); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("restored blob: %v", err)
	}

	bad := w
	bad.WrappedKey = bytes.Clone(w.WrappedKey)
	bad.WrappedKey[20] ^= 1
	if _, err := e.store.Get(ctx, owner, blobID, key, bad); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("tampered wrapped key: Get = %v, want ErrAuthentication", err)
	}
	second, err := e.admin.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	relabelled := atrest.Wrapped{KEKID: second, WrappedKey: w.WrappedKey}
	if _, err := e.store.Get(ctx, owner, blobID, key, relabelled); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("wrapped key relabelled to another KEK: Get = %v, want ErrAuthentication", err)
	}
	unknown := atrest.Wrapped{KEKID: "k-00000000", WrappedKey: w.WrappedKey}
	if _, err := e.store.Get(ctx, owner, blobID, key, unknown); !errors.Is(err, keyring.ErrUnknownKey) {
		t.Errorf("unknown KEK: Get = %v, want keyring.ErrUnknownKey", err)
	}
	if _, err := e.store.Get(ctx, owner, blobID, blobtest.NewKey(), w); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("missing blob: Get = %v, want blob.ErrNotFound", err)
	}
}

// TestRewrapThenRemoveOldKey runs the rotation protocol and checks that
// blobs stay byte-for-byte untouched and open after the old KEK is gone.
func TestRewrapThenRemoveOldKey(t *testing.T) {
	e := newEnv(t)
	type ref struct {
		key   string
		id    []byte
		plain []byte
		w     atrest.Wrapped
	}
	var refs []ref
	for i := range 5 {
		r := ref{key: blobtest.NewKey(), id: []byte{'b', byte(i)}, plain: random(1000 * i)}
		var err error
		if r.w, err = e.store.Put(ctx, owner, r.id, r.key, r.plain); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	oldID := refs[0].w.KEKID
	before := map[string][]byte{}
	for _, r := range refs {
		before[r.key], _ = os.ReadFile(e.blobPath(r.key))
	}

	newID, err := e.admin.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.kr.Reload(); err != nil { // instead of waiting SettleTime
		t.Fatal(err)
	}
	for i := range refs {
		nw, err := e.store.Rewrap(refs[i].w, owner, refs[i].id)
		if err != nil {
			t.Fatal(err)
		}
		if nw.KEKID != newID || bytes.Equal(nw.WrappedKey, refs[i].w.WrappedKey) {
			t.Fatalf("Rewrap gave %s, want a key wrapped under %s", nw.KEKID, newID)
		}
		again, err := e.store.Rewrap(nw, owner, refs[i].id)
		if err != nil || again.KEKID != nw.KEKID || !bytes.Equal(again.WrappedKey, nw.WrappedKey) {
			t.Fatalf("Rewrap of a current wrapped key changed it (%v)", err)
		}
		refs[i].w = nw
	}
	if _, err := e.store.Rewrap(refs[0].w, []byte("mallory"), refs[0].id); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("Rewrap with the wrong owner = %v, want ErrAuthentication", err)
	}
	if err := e.admin.Remove(oldID); err != nil {
		t.Fatal(err)
	}
	if err := e.kr.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		after, _ := os.ReadFile(e.blobPath(r.key))
		if !bytes.Equal(after, before[r.key]) {
			t.Errorf("rewrapping rewrote blob %s", r.key)
		}
		got, err := e.store.Get(ctx, owner, r.id, r.key, r.w)
		if err != nil || !bytes.Equal(got, r.plain) {
			t.Errorf("after removing the old KEK, Get = %v", err)
		}
	}
}

func TestReencrypt(t *testing.T) {
	e := newEnv(t)
	oldKey, newKey := blobtest.NewKey(), blobtest.NewKey()
	plain := random(70000)
	w, err := e.store.Put(ctx, owner, blobID, oldKey, plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Reencrypt(ctx, owner, blobID, oldKey, oldKey, w); err == nil {
		t.Fatal("Reencrypt in place was accepted")
	}
	nw, err := e.store.Reencrypt(ctx, owner, blobID, oldKey, newKey, w)
	if err != nil {
		t.Fatal(err)
	}
	oldData, _ := os.ReadFile(e.blobPath(oldKey))
	newData, _ := os.ReadFile(e.blobPath(newKey))
	if bytes.Equal(oldData[13:100], newData[13:100]) {
		t.Error("re-encrypted blob has the same ciphertext")
	}
	for _, c := range []struct {
		key string
		w   atrest.Wrapped
	}{{oldKey, w}, {newKey, nw}} {
		got, err := e.store.Get(ctx, owner, blobID, c.key, c.w)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Get(%s) after Reencrypt: %v", c.key, err)
		}
	}
	if _, err := e.store.Get(ctx, owner, blobID, newKey, w); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("old data key opened the re-encrypted blob: %v", err)
	}
	if err := e.store.Delete(ctx, oldKey); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Get(ctx, owner, blobID, oldKey, w); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Get after Delete = %v", err)
	}
}

func TestValues(t *testing.T) {
	e := newEnv(t)
	id := []byte("manifest/0123456789abcdef")
	plain := []byte("a manifest, already client-sealed")
	data, w, err := e.store.SealValue(owner, id, plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != len(plain)+crypto.AtRestOverhead {
		t.Errorf("sealed value is %d bytes", len(data))
	}
	got, err := e.store.OpenValue(owner, id, data, w)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("OpenValue = %q, %v", got, err)
	}
	if _, err := e.store.OpenValue(owner, []byte("manifest/other"), data, w); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("OpenValue with another id = %v", err)
	}
	if _, err := e.store.OpenValue([]byte("bob"), id, data, w); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("OpenValue with another owner = %v", err)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-20] ^= 0x80
	if _, err := e.store.OpenValue(owner, id, bad, w); !errors.Is(err, crypto.ErrAuthentication) {
		t.Errorf("OpenValue of a tampered value = %v", err)
	}
	if _, _, err := e.store.SealValue(nil, id, plain); err == nil {
		t.Error("SealValue accepted an empty owner")
	}
}

// TestRotationDuringConcurrentPuts rotates KEKs from an admin instance while
// writers keep putting, then finishes the rotation protocol and checks that
// every blob opens with only the newest KEK left.
func TestRotationDuringConcurrentPuts(t *testing.T) {
	e := newEnv(t)
	type ref struct {
		key, sum string
		id       []byte
		w        atrest.Wrapped
	}
	var (
		mu   sync.Mutex
		refs []ref
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := []byte{'g', byte(g), byte(i >> 8), byte(i)}
				plain := random(8192 + i%100)
				key := blobtest.NewKey()
				w, err := e.store.Put(ctx, owner, id, key, plain)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				refs = append(refs, ref{key: key, sum: string(plain), id: id, w: w})
				mu.Unlock()
			}
		})
	}
	var kekIDs []string
	first, _, _ := e.kr.Current()
	kekIDs = append(kekIDs, first)
	for range 3 {
		time.Sleep(keyring.ReloadInterval + 150*time.Millisecond)
		id, err := e.admin.Rotate()
		if err != nil {
			t.Fatal(err)
		}
		kekIDs = append(kekIDs, id)
	}
	// Writers must pick up the last key without being told.
	time.Sleep(keyring.ReloadInterval + 500*time.Millisecond)
	mu.Lock()
	mark := len(refs)
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()

	newest := kekIDs[len(kekIDs)-1]
	used := map[string]int{}
	for i, r := range refs {
		used[r.w.KEKID]++
		if i > mark && r.w.KEKID != newest {
			t.Errorf("put %d wrapped under %s long after %s became current", i, r.w.KEKID, newest)
		}
	}
	t.Logf("%d puts; per KEK: %v", len(refs), used)
	if len(used) < 2 {
		t.Errorf("puts used KEKs %v; rotation was not picked up", used)
	}

	// Steps 3 to 5 of the protocol: rewrap, recount, remove.
	for i := range refs {
		nw, err := e.store.Rewrap(refs[i].w, owner, refs[i].id)
		if err != nil {
			t.Fatal(err)
		}
		refs[i].w = nw
	}
	for _, id := range kekIDs[:len(kekIDs)-1] {
		for _, r := range refs {
			if r.w.KEKID == id {
				t.Fatalf("reference to %s left after rewrapping", id)
			}
		}
		if err := e.admin.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.kr.Reload(); err != nil {
		t.Fatal(err)
	}
	if infos := e.kr.Keys(); len(infos) != 1 || infos[0].ID != newest {
		t.Fatalf("keys left: %+v", infos)
	}
	for _, r := range refs {
		got, err := e.store.Get(ctx, owner, r.id, r.key, r.w)
		if err != nil || string(got) != r.sum {
			t.Fatalf("blob %s after rotation: %v", r.key, err)
		}
	}
}
