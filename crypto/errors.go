package crypto

import "errors"

var (
	// ErrAuthentication means a tag or MAC did not verify: the key is wrong,
	// or the bytes were changed, moved, swapped or replayed.
	ErrAuthentication = errors.New("sealfs/crypto: authentication failed")
	// ErrCorrupt means the bytes cannot be a valid structure of this format.
	ErrCorrupt = errors.New("sealfs/crypto: corrupt data")
	// ErrUnsupportedVersion means the structure is from a format version this
	// build does not read.
	ErrUnsupportedVersion = errors.New("sealfs/crypto: unsupported format version")
	// ErrTruncated means data is shorter than its authenticated description
	// says. errors.Is(ErrTruncated, ErrCorrupt) holds.
	ErrTruncated error = &subError{"sealfs/crypto: truncated data", ErrCorrupt}
	// ErrExtended means data is longer than its authenticated description
	// says. errors.Is(ErrExtended, ErrCorrupt) holds.
	ErrExtended error = &subError{"sealfs/crypto: extended data", ErrCorrupt}
	// ErrWeakParameters means KDF parameters fall below MinKDFParams; a
	// server that offers them may be trying to make the password cheaper to
	// guess.
	ErrWeakParameters = errors.New("sealfs/crypto: KDF parameters below the accepted minimum")
)

// subError is a sentinel that is also its parent, so callers can test for the
// specific failure or the whole class.
type subError struct {
	msg    string
	parent error
}

func (e *subError) Error() string { return e.msg }
func (e *subError) Unwrap() error { return e.parent }
