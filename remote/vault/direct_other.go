//go:build !linux

package vault

import "os"

// oDirect is zero where O_DIRECT does not exist: downloads then write
// through the page cache.
const oDirect = 0

// preallocate does nothing where fallocate is not available.
func preallocate(f *os.File, size int64) {}
