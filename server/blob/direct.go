package blob

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Large blobs are written with O_DIRECT, as MinIO writes object parts:
// the data goes from the server's buffer to the disk without a copy into
// the page cache. A blob is written once and read back rarely (clients
// cache what they read), so caching it only costs: the copy, and page
// cache pages that must be found and later written back. Measured here
// (1 MiB blobs, each fsynced): 589 MB/s and 0.3 s of system time per
// 512 MiB with O_DIRECT, against 250-410 MB/s and 0.8-1.6 s buffered.
//
// O_DIRECT wants the buffer, offset and length aligned to the device's
// block size; directAlign is a multiple of every common one. The aligned
// prefix goes direct, the remainder (under directAlign bytes) through the
// page cache, and one fsync covers both. A filesystem that refuses
// O_DIRECT (tmpfs, some FUSE and network filesystems) makes the store fall
// back to buffered writes for good.

// directAlign is the alignment of O_DIRECT buffers and lengths.
const directAlign = 4096

// directMin is the smallest blob written with O_DIRECT: below it the
// page cache copy is cheap and the second write for the tail is not.
const directMin = 64 << 10

// alignedPool holds aligned buffers for data whose own buffer is not
// aligned, keyed by capacity class.
var alignedPool sync.Map // int → *sync.Pool of *[]byte

// alignedBuf returns a buffer of n bytes whose start is directAlign
// aligned, and a function that gives it back.
func alignedBuf(n int) ([]byte, func()) {
	class := (n + directAlign - 1) &^ (directAlign - 1)
	p, _ := alignedPool.LoadOrStore(class, &sync.Pool{New: func() any {
		b := make([]byte, class+directAlign)
		off := int(uintptr(directAlign)-uintptr(unsafe.Pointer(&b[0]))%directAlign) % directAlign
		b = b[off : off+class]
		return &b
	}})
	pool := p.(*sync.Pool)
	bp := pool.Get().(*[]byte)
	return (*bp)[:n], func() { pool.Put(bp) }
}

func isAligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%directAlign == 0
}

// writeDirect writes data into the empty temporary file f, its aligned
// prefix through a second, O_DIRECT descriptor. It reports false, having
// written nothing, when the filesystem does not take O_DIRECT.
func (l *Local) writeDirect(f *os.File, data []byte) (bool, error) {
	d, err := os.OpenFile(f.Name(), os.O_WRONLY|oDirect, 0)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) {
			l.noDirect.Store(true)
			return false, nil
		}
		return true, err
	}
	defer d.Close()
	n := len(data) &^ (directAlign - 1)
	src := data[:n]
	if !isAligned(src) {
		buf, done := alignedBuf(n)
		defer done()
		copy(buf, src)
		src = buf
	}
	if _, err := l.write(d, src); err != nil {
		if errors.Is(err, syscall.EINVAL) {
			// The device wants a larger alignment: write it all
			// through the page cache, now and from now on.
			l.noDirect.Store(true)
			if terr := f.Truncate(0); terr != nil {
				return true, terr
			}
			return false, nil
		}
		return true, err
	}
	if n < len(data) {
		if _, err := f.Seek(int64(n), 0); err != nil {
			return true, err
		}
		if _, err := l.write(f, data[n:]); err != nil {
			return true, err
		}
	}
	return true, nil
}

// readDirect reads the blob file at path with O_DIRECT, as a chunk
// download needs it whole, into a pooled aligned buffer that release
// gives back: a cold read then costs no page cache pages, which on this
// kind of machine cost more than the read itself, and caches nothing a
// client will not ask for again (it caches what it read). ok is false,
// with nothing read, for a blob under directMin or a filesystem or file
// the read cannot go direct on; the caller then reads through the page
// cache.
func (l *Local) readDirect(path string) (data []byte, release func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oDirect, 0)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) {
			l.noDirect.Store(true)
			return nil, nil, false, nil
		}
		return nil, nil, true, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, true, err
	}
	size := fi.Size()
	if size < directMin || size > maxDirectRead {
		return nil, nil, false, nil
	}
	n := int(size+directAlign-1) &^ (directAlign - 1)
	// A pooled buffer: a fresh megabyte per read was cleared by the
	// allocator and then returned to the OS by the collector, a tenth of
	// the server's CPU in a large download.
	buf, done := alignedBuf(n)
	defer func() {
		if release == nil {
			done()
		}
	}()
	got := 0
	for got < int(size) {
		m, err := f.ReadAt(buf[got:], int64(got))
		got += m
		if err != nil && !(errors.Is(err, io.EOF) && got >= int(size)) {
			if errors.Is(err, syscall.EINVAL) {
				return nil, nil, false, nil
			}
			return nil, nil, true, err
		}
		if m == 0 || got%directAlign != 0 {
			break
		}
	}
	if got != int(size) {
		// A file that changed size under us, or a short read that
		// left the next offset unaligned: read it the plain way.
		return nil, nil, false, nil
	}
	return buf[:size], done, true, nil
}

// maxDirectRead bounds the buffer readDirect allocates from a size it
// read from the file system: blobs are chunks, at most a few MiB.
const maxDirectRead = 64 << 20
