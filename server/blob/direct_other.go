//go:build !linux

package blob

// oDirect is zero where the platform has no O_DIRECT: the open succeeds
// and the write simply goes through the page cache.
const oDirect = 0
