// Package meta is the storage server's metadata store: accounts, invites,
// sessions, the encrypted namespace (inodes and directory entries) and the
// bookkeeping of sealed chunks whose bytes live in the blob store.
//
// The server never sees plaintext: names, attributes, symlink targets and
// manifests arrive sealed by the client and are stored as opaque bytes.
// Directory entries are keyed by a client-computed blind index (an HMAC of
// the name), which gives the server exact-match lookups and a stable listing
// order without learning names. Every method takes the account explicitly and
// every query is filtered by it, so an ID belonging to another account is
// indistinguishable from one that does not exist (ErrNotFound).
//
// Some values are additionally encrypted by the server at rest (envelope
// encryption by the caller): manifests, transfer keys and chunk data keys.
// They are stored as Sealed values tagged with the ID of the key-encryption
// key (KEK) that wraps them, so that a KEK rotation can find, rewrap and
// finally retire every value of an old KEK (see Maintenance).
//
// Store is the backend-neutral contract; SQLite implements it on one database
// file with group commit, and metatest holds the conformance suite every
// implementation must pass. Errors are the sentinels of this package, tested
// with errors.Is; the HTTP layer maps each to one status code.
package meta
