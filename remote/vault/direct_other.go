//go:build !linux

package vault

// oDirect is zero where O_DIRECT does not exist: downloads then write
// through the page cache.
const oDirect = 0
