package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/remote/wire"
)

// Calls that tools make and that map onto what the mount already does.
// Without them go-fuse answers EOPNOTSUPP, which a local disk never does
// for these.

var (
	_ fs.NodeMknoder    = (*node)(nil)
	_ fs.FileFsyncdirer = (*dirHandle)(nil)
	_ fs.FileLseeker    = (*handle)(nil)
)

// Mknod creates a regular file, as mknod(2) with S_IFREG does (GNU tar
// --xattrs creates every file that carries extended attributes so, and
// the kernel turns creat(2) into it where a file system has no atomic
// open). Nothing opens it, so it is created on the server at once, empty.
// Devices, FIFOs and sockets are not stored: EOPNOTSUPP.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if t := mode & syscall.S_IFMT; t != 0 && t != syscall.S_IFREG {
		return nil, syscall.EOPNOTSUPP
	}
	return n.create(ctx, name, wire.TypeFile, mode, "", out)
}

// Fsyncdir stores the directory's own attribute changes that are still
// waiting (attrsync.go). Every change to its entries (create, rename,
// unlink, mkdir…) is stored on the server before it returns, so there is
// nothing else left to make durable. A file created here and not yet
// closed is stored by its own first close or fsync (docs/semantics.md).
func (d *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.flushAttrs()
}

// Lseek implements SEEK_DATA and SEEK_HOLE (the kernel answers the other
// kinds itself). The whole file counts as data, one hole sits at its end,
// and an offset at or past the end is ENXIO, as on a local disk.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	h.n.mu.Lock()
	size := uint64(h.st.size)
	h.n.mu.Unlock()
	switch {
	case whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE:
		return 0, syscall.EINVAL
	case off >= size:
		return 0, syscall.ENXIO
	case whence == unix.SEEK_HOLE:
		return size, 0
	}
	return off, 0
}
