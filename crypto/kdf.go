package crypto

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// FormatVersion is the version byte that starts or is bound into every
// sealed structure. A reader refuses any other value with
// ErrUnsupportedVersion.
const FormatVersion = 1

// KeySize is the size of every symmetric key: AES-256 and HMAC-SHA256 keys.
const KeySize = 32

// HKDF labels. Every key sealfs uses is derived with exactly one of these as
// the HKDF info string; a new purpose gets a new label, never a reused one.
const (
	labelAuthKey    = "sealfs v1 login auth key"
	labelWrapKey    = "sealfs v1 login wrapping key"
	labelContent    = "sealfs v1 content key"
	labelNames      = "sealfs v1 name sealing key"
	labelNameIndex  = "sealfs v1 name index key"
	labelManifest   = "sealfs v1 manifest key"
	labelTransfer   = "sealfs v1 transfer hmac key"
	labelAttr       = "sealfs v1 attribute key"
	labelAccountKey = "sealfs v1 account private key sealing key"
	labelFileKey    = "sealfs v1 file content key" // followed by the 16-byte file ID
)

// deriveKey is the one HKDF-SHA256 call behind every derived key: no salt
// (the input is already uniformly random), info = label || context.
func deriveKey(secret []byte, label string, context []byte) []byte {
	info := make([]byte, 0, len(label)+len(context))
	info = append(info, label...)
	info = append(info, context...)
	k, err := hkdf.Key(sha256.New, secret, nil, string(info), KeySize)
	if err != nil {
		// Only possible for lengths above 255*32 bytes.
		panic("sealfs/crypto: hkdf: " + err.Error())
	}
	return k
}

// KDFAlgorithmArgon2id is the only password KDF of format version 1.
const KDFAlgorithmArgon2id = 1

// SaltSize is the size of the per-user KDF salt.
const SaltSize = 16

// KDFParams are the stored, versioned parameters of the password KDF. The
// server keeps them per account and hands them out at pre-login; the client
// checks them against MinKDFParams before spending the password on them.
type KDFParams struct {
	Algorithm uint8  `json:"alg"`  // KDFAlgorithmArgon2id
	Time      uint32 `json:"time"` // Argon2 passes
	MemoryKiB uint32 `json:"mem"`  // Argon2 memory in KiB
	Threads   uint8  `json:"thr"`  // Argon2 lanes
	Salt      []byte `json:"salt"` // SaltSize random bytes
}

// DefaultKDFParams are measured on the project's 2-core reference machine to
// take about half a second: 64 MiB (the floor the threat model asks for, and
// small enough to leave a mount under its 256 MiB budget) and as many passes
// as fill the time. See docs/format.md for the measurement.
func DefaultKDFParams(salt []byte) KDFParams {
	return KDFParams{Algorithm: KDFAlgorithmArgon2id, Time: 18, MemoryKiB: 64 * 1024, Threads: 4, Salt: salt}
}

// MinKDFParams is the weakest setting a client accepts from a server.
// Below it, a malicious server could collect auth keys that are cheap to
// brute-force. Tests use exactly this floor to stay fast.
var MinKDFParams = KDFParams{Algorithm: KDFAlgorithmArgon2id, Time: 1, MemoryKiB: 8 * 1024, Threads: 1}

// maxKDFMemoryKiB bounds what a server can make a client allocate (1 GiB),
// and maxKDFTime how long it can make it compute.
const (
	maxKDFMemoryKiB = 1 << 20
	maxKDFTime      = 100
)

// Check reports whether p is well formed and at least as strong as
// MinKDFParams.
func (p KDFParams) Check() error {
	if p.Algorithm != KDFAlgorithmArgon2id {
		return fmt.Errorf("%w: KDF algorithm %d", ErrUnsupportedVersion, p.Algorithm)
	}
	if len(p.Salt) != SaltSize {
		return fmt.Errorf("%w: KDF salt is %d bytes, want %d", ErrCorrupt, len(p.Salt), SaltSize)
	}
	if p.MemoryKiB > maxKDFMemoryKiB || p.Time > maxKDFTime || p.Threads == 0 {
		return fmt.Errorf("%w: KDF parameters out of range", ErrCorrupt)
	}
	if p.Time < MinKDFParams.Time || p.MemoryKiB < MinKDFParams.MemoryKiB {
		return ErrWeakParameters
	}
	return nil
}

// LoginKeys are what a password yields: AuthKey is the only secret the
// server ever receives (it keeps a salted slow hash of it); WrapKey never
// leaves the client and unwraps the master key.
type LoginKeys struct {
	AuthKey []byte
	WrapKey []byte
}

// DeriveLoginKeys runs Argon2id over the password with p, then splits the
// result with HKDF into the auth key and the wrapping key.
func DeriveLoginKeys(password []byte, p KDFParams) (LoginKeys, error) {
	if err := p.Check(); err != nil {
		return LoginKeys{}, err
	}
	root := argon2.IDKey(password, p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	return LoginKeys{
		AuthKey: deriveKey(root, labelAuthKey, nil),
		WrapKey: deriveKey(root, labelWrapKey, nil),
	}, nil
}
