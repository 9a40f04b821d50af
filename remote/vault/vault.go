// Package vault is the encrypted filesystem client of sealfs: it turns the
// server's namespace of sealed names, attributes, manifests and chunks (see
// docs/format.md) into paths, directories and files with plaintext content,
// on top of package remote's API client.
//
// A Vault holds the account's purpose keys in memory and nowhere else.
// Everything it reads is verified before use: names against their parent and
// inode, attributes against their inode, manifests against their file, and
// every chunk first by its transfer HMAC and then by the AEAD of each block
// against the manifest entry. Uploads seal and MAC a chunk in one pass,
// transfer chunks in parallel with a bounded number in memory, and make a
// new version current in one commit, so a reader never sees a mix. Large
// uploads can resume from a state file, downloads from a partial file.
//
// The CLI and the mount both build on this package; it does no terminal
// I/O and knows nothing of configuration files.
package vault

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
)

// DefaultParallel is how many chunk transfers run at once per file: enough
// to keep one HTTP/2 connection and both cores of a small machine busy,
// few enough to keep memory to a few tens of MiB.
const DefaultParallel = 16

// Vault is an unlocked account: the API client plus the keys that seal and
// open everything. It is safe for concurrent use.
type Vault struct {
	c      *remote.Client
	user   string
	keys   *crypto.Keys
	layout crypto.Layout
	tmac   *crypto.TransferMAC

	parallel int
	bufs     sync.Pool // *chunkBuf sized for layout
}

// MinPadUnit is the smallest padding unit the client writes files with.
// The server hands the account's layout out at every login, and the format
// allows any power of two up to the block size; a server that lowered it
// would see every new file's exact size, so, as with the KDF parameters,
// the client holds a floor.
const MinPadUnit = 4 << 10

// checkLayout is what a layout must be for this client to write with it:
// valid for the format, and padding to at least MinPadUnit.
func checkLayout(l crypto.Layout) error {
	if err := l.Check(); err != nil {
		return err
	}
	if l.PadUnit < MinPadUnit {
		return fmt.Errorf("a layout that pads files to %d bytes is below the %d this client accepts: the server would learn exact file sizes", l.PadUnit, MinPadUnit)
	}
	return nil
}

// New returns the vault of user for an already unwrapped master key; layout
// is the account's layout, used for new files. Most callers use Unlock.
func New(c *remote.Client, user string, master []byte, layout crypto.Layout) (*Vault, error) {
	if err := checkLayout(layout); err != nil {
		return nil, fmt.Errorf("the account's layout is not usable: %w", err)
	}
	keys, err := crypto.DeriveKeys(master)
	if err != nil {
		return nil, err
	}
	tm, err := crypto.NewTransferMAC(keys.Transfer, user)
	if err != nil {
		return nil, err
	}
	v := &Vault{c: c, user: user, keys: keys, layout: layout, tmac: tm, parallel: DefaultParallel}
	if runtime.NumCPU() > 4 {
		v.parallel = 2 * runtime.NumCPU()
	}
	return v, nil
}

// Client returns the API client the vault talks through.
func (v *Vault) Client() *remote.Client { return v.c }

// User returns the account name.
func (v *Vault) User() string { return v.user }

// Layout returns the layout new files are written with.
func (v *Vault) Layout() crypto.Layout { return v.layout }

// SetParallel sets how many chunk transfers of one file run at once.
func (v *Vault) SetParallel(n int) {
	if n > 0 {
		v.parallel = n
	}
}

// Parallel returns the number of concurrent chunk transfers per file.
func (v *Vault) Parallel() int { return v.parallel }

// chunkBuf is the memory one chunk in flight needs: its plaintext and its
// sealing. Pooling them keeps a long transfer from churning the allocator
// and bounds memory by the number of chunks in flight.
type chunkBuf struct {
	plain  []byte
	sealed []byte
}

func (v *Vault) getBuf(l crypto.Layout) *chunkBuf {
	if l == v.layout {
		if b, ok := v.bufs.Get().(*chunkBuf); ok {
			return b
		}
	}
	return &chunkBuf{
		plain:  make([]byte, l.ChunkSize()),
		sealed: make([]byte, 0, l.MaxSealedChunkSize()),
	}
}

func (v *Vault) putBuf(l crypto.Layout, b *chunkBuf) {
	if l == v.layout && cap(b.plain) >= l.ChunkSize() {
		b.plain = b.plain[:cap(b.plain)]
		b.sealed = b.sealed[:0]
		v.bufs.Put(b)
	}
}

// Progress receives counts as a transfer advances; it lets a caller draw
// bars without the vault knowing about terminals. Implementations must be
// safe for concurrent use.
type Progress interface {
	// AddBytes reports n more plaintext bytes transferred (or found
	// already on the server when resuming).
	AddBytes(n int64)
	// AddFiles reports n more files completed.
	AddFiles(n int)
}

type noProgress struct{}

func (noProgress) AddBytes(int64) {}
func (noProgress) AddFiles(int)   {}

func progressOr(p Progress) Progress {
	if p == nil {
		return noProgress{}
	}
	return p
}
