// Package cache holds the client's caches: sealed chunks on disk, kept in
// least-recently-used order under a size cap. It holds ciphertext only, as
// the server sends it; a reader still opens every block it reads with its
// AEAD, so a cache file changed on disk yields an error, never wrong data.
package cache
