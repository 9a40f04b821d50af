package vault

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
)

// File is one committed version of a file, opened for reading: its
// verified manifest and the cipher of its chunks.
type File struct {
	Node     *Node
	Manifest *crypto.Manifest
	fc       *crypto.FileCipher
}

// Size is the plaintext size of this version.
func (f *File) Size() int64 { return int64(f.Manifest.Size) }

// Generation identifies this version; it grows with every commit.
func (f *File) Generation() uint64 { return f.Manifest.Generation }

// ChunkSize is the plaintext size of this version's full chunks.
func (f *File) ChunkSize() int64 { return int64(f.Manifest.Layout.ChunkSize()) }

// ChunkError is a failure to get chunk Index of a file: it did not verify,
// or could not be fetched. Kind says which, in words a person can act on.
type ChunkError struct {
	Index int
	Err   error
}

// Error implements error with a message meant for people.
func (e *ChunkError) Error() string {
	switch {
	case errors.Is(e.Err, remote.ErrChunkMAC), errors.Is(e.Err, crypto.ErrAuthentication):
		return fmt.Sprintf("chunk %d failed authentication (tampered or corrupt data on the server)", e.Index)
	case errors.Is(e.Err, crypto.ErrTruncated):
		return fmt.Sprintf("chunk %d is shorter than its manifest says (truncated data on the server)", e.Index)
	case errors.Is(e.Err, crypto.ErrExtended):
		return fmt.Sprintf("chunk %d is longer than its manifest says (tampered data on the server)", e.Index)
	case remote.IsNotFound(e.Err):
		return fmt.Sprintf("chunk %d is missing on the server", e.Index)
	case remote.IsCode(e.Err, "internal"):
		return fmt.Sprintf("the server could not read chunk %d (its stored copy may be damaged): %v", e.Index, e.Err)
	}
	return fmt.Sprintf("cannot fetch chunk %d: %v", e.Index, e.Err)
}

// Unwrap exposes the cause.
func (e *ChunkError) Unwrap() error { return e.Err }

// OpenFile fetches and verifies the current manifest of file n. The
// attributes that come with it must be of the same commit: same generation,
// same size.
func (v *Vault) OpenFile(ctx context.Context, n *Node) (*File, error) {
	if !n.IsFile() {
		return nil, fmt.Errorf("%s is not a regular file", describe(n.Name, n.ID))
	}
	in, err := v.c.Inode(ctx, n.ID, true)
	if err != nil {
		return nil, fsError(err)
	}
	fresh, err := v.node(in, n.ID, n.Parent, n.Name, n.Index)
	if err != nil {
		return nil, err
	}
	f := &File{Node: fresh}
	if len(in.Manifest) == 0 {
		if fresh.Attr.Generation != 0 || fresh.Attr.Size != 0 {
			return nil, &CorruptError{What: "manifest of " + describe(n.Name, n.ID), Err: errors.New("the server sent none for a committed file")}
		}
		// Created, never committed: an empty file.
		f.Manifest = &crypto.Manifest{File: n.ID, Layout: v.layout}
	} else {
		m, err := crypto.OpenManifest(v.keys.Manifest, n.ID, in.Manifest)
		if err != nil {
			return nil, &CorruptError{What: "manifest of " + describe(n.Name, n.ID), Err: err}
		}
		if m.Generation != fresh.Attr.Generation || m.Size != fresh.Attr.Size {
			return nil, &CorruptError{What: "manifest of " + describe(n.Name, n.ID),
				Err: fmt.Errorf("generation %d size %d, its attributes say generation %d size %d", m.Generation, m.Size, fresh.Attr.Generation, fresh.Attr.Size)}
		}
		f.Manifest = m
	}
	if f.fc, err = crypto.NewFileCipher(v.keys.Content, n.ID, f.Manifest.Layout); err != nil {
		return nil, err
	}
	return f, nil
}

// ReadChunk returns the plaintext of chunk i, appended to dst[:0], after
// verifying its transfer HMAC and then every block against the manifest.
// sealedBuf is scratch space for the sealed bytes (may be nil). A hole reads
// as zeros.
func (v *Vault) ReadChunk(ctx context.Context, f *File, i int, dst, sealedBuf []byte) ([]byte, error) {
	m := f.Manifest
	if i < 0 || i >= len(m.Chunks) {
		return nil, fmt.Errorf("chunk %d outside a file of %d chunks", i, len(m.Chunks))
	}
	n := m.ChunkPlainLen(i)
	e := m.Chunks[i]
	if e.IsHole() {
		if cap(dst) < n {
			dst = make([]byte, n)
		}
		dst = dst[:n]
		clear(dst)
		return dst, nil
	}
	ref := crypto.ChunkRef{File: m.File, Index: uint64(i), ID: e.ID}
	sealed, err := v.c.GetChunk(ctx, ref, v.tmac, sealedBuf)
	if err != nil {
		return nil, &ChunkError{Index: i, Err: err}
	}
	plain, err := f.fc.OpenChunk(dst[:0], uint64(i), e.ID, sealed, n, m.IsLast(i), e.Tag)
	if err != nil {
		return nil, &ChunkError{Index: i, Err: err}
	}
	return plain, nil
}

// ReadOptions tune WriteTo.
type ReadOptions struct {
	// FromChunk skips the chunks before it (a resumed download).
	FromChunk int
	Progress  Progress
	Limit     *RateLimit
	// AfterChunk, when set, is called after chunk i's plaintext was
	// written to w, in order, with the bytes written so far (counting from
	// the start of the file): a resumable download records its progress
	// there.
	AfterChunk func(i int, end int64) error
	// At, when set, takes the place of w: the worker that fetched a chunk
	// writes it at its offset in the file as soon as it verified, so the
	// writes overlap each other and the downloads. AfterChunk still comes
	// in order, once the chunk's write and those of all before it
	// returned. At must allow concurrent writes to different ranges.
	At io.WriterAt
}

// slot is one chunk of the readahead window: fetched by a worker, consumed
// in order.
type slot struct {
	i     int
	done  chan struct{}
	buf   *chunkBuf
	plain []byte
	err   error
}

// WriteTo writes the file's plaintext to w in order (or to opts.At, at each
// chunk's offset), fetching and verifying up to v.parallel chunks ahead.
// Memory is bounded by the window: no more than 2×parallel chunks are held
// at once, whatever the file's size. No byte of a chunk reaches w (or At)
// before the whole chunk verified.
func (v *Vault) WriteTo(ctx context.Context, f *File, w io.Writer, opts ReadOptions) error {
	prog := progressOr(opts.Progress)
	n := len(f.Manifest.Chunks)
	if opts.FromChunk >= n {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	layout := f.Manifest.Layout
	slots := make(chan *slot, v.parallel)
	sem := make(chan struct{}, v.parallel)
	go func() {
		defer close(slots)
		for i := opts.FromChunk; i < n; i++ {
			s := &slot{i: i, done: make(chan struct{})}
			select {
			case slots <- s:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.err = context.Cause(ctx)
				close(s.done)
				return
			}
			go func() {
				defer func() { <-sem; close(s.done) }()
				s.buf = v.getBuf(layout)
				if s.err = opts.Limit.wait(ctx, f.Manifest.ChunkPlainLen(s.i)); s.err != nil {
					return
				}
				s.plain, s.err = v.ReadChunk(ctx, f, s.i, s.buf.plain, s.buf.sealed)
				if s.err == nil && opts.At != nil {
					_, s.err = opts.At.WriteAt(s.plain, int64(s.i)*int64(layout.ChunkSize()))
				}
			}()
		}
	}()
	var err error
	end := int64(opts.FromChunk) * int64(layout.ChunkSize())
	for s := range slots {
		<-s.done
		if err == nil && s.err != nil {
			err = s.err
		}
		if err == nil {
			var werr error
			if opts.At == nil {
				_, werr = w.Write(s.plain)
			}
			if werr != nil {
				err = werr
			} else {
				end += int64(len(s.plain))
				prog.AddBytes(int64(len(s.plain)))
				if opts.AfterChunk != nil {
					err = opts.AfterChunk(s.i, end)
				}
			}
		}
		if s.buf != nil {
			v.putBuf(layout, s.buf)
		}
		if err != nil {
			cancel() // the producer stops; the loop drains what is in flight
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}
