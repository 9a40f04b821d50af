// Package crypto holds every cryptographic construction of sealfs: the
// password KDF, the account's key hierarchy, chunk and manifest sealing,
// sealed names and the blind name index, the transfer HMAC, and the server's
// at-rest envelope. It is pure: no I/O, no global state, and it imports no
// other sealfs package, so docs/format.md and this package are the whole
// format.
//
// Every sealed structure starts or is bound to a one-byte format version and
// a one-byte domain, so a ciphertext made for one purpose never opens as
// another. Errors are sentinel values to be tested with errors.Is:
// ErrAuthentication (a tag or MAC did not verify: wrong key, tampering,
// swapping, replay), ErrCorrupt (bytes that cannot be a valid structure,
// including ErrTruncated and ErrExtended) and ErrUnsupportedVersion.
package crypto
