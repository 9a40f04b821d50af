package vault

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const oDirect = syscall.O_DIRECT

// preallocate gives f its blocks up to size before the chunks are written.
// On ext4 an O_DIRECT write past the end of the file, or into a hole,
// holds the inode's lock for the whole write, so concurrent chunk writes
// would run one at a time; into allocated blocks they run together. A
// file system without fallocate only loses that.
func preallocate(f *os.File, size int64) {
	if size > 0 {
		_ = unix.Fallocate(int(f.Fd()), 0, 0, size)
	}
}
