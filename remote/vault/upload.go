package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

// UploadOptions tune one Upload.
type UploadOptions struct {
	// Mode and ModTime become the file's attributes (default 0644, now).
	Mode    fs.FileMode
	ModTime time.Time
	// Progress is told of bytes sent and of the file when done.
	Progress Progress
	// Limit, when set, caps the upload rate (shared between uploads).
	Limit *RateLimit
	// Looked says the caller already looked the target up, with the result
	// in Existing (nil: nothing there), sparing one request per file when a
	// tree is uploaded into a directory listed once.
	Looked   bool
	Existing *Node
	// ResumePath, when set, is the state file that lets an interrupted
	// upload of a multi-chunk file continue; Dest and Source are recorded in
	// it for people reading it. The state is valid only for an unchanged
	// source (same size and ModTime) and an unchanged target.
	ResumePath   string
	Dest, Source string
	// OnResume is called once when the upload continues a previous one,
	// with the bytes found on the server and the file's size.
	OnResume func(done, total int64)
	// Unchanged, when set, is asked once every byte is read and before
	// the new version is committed; an error (the source was written to
	// meanwhile) fails the upload, which then stores nothing rather than
	// a mix of old and new content that never existed.
	Unchanged func() error
}

// upload is one file's upload in progress.
type upload struct {
	v    *Vault
	dir  crypto.ID
	name string
	src  io.ReaderAt
	size int64
	opts UploadOptions
	prog Progress
	fc   *crypto.FileCipher
	file crypto.ID
	base int64  // inode version the commit is conditional on; 0 for a new file
	gen  uint64 // generation of the new version
	// ctime is the replaced version's, which the new one's must not fall
	// below (crypto.Attr.TouchCtime).
	ctime int64
	chunk []crypto.ChunkEntry
}

// Upload writes size bytes from src as file name in directory dir: a new
// file, or a new version of an existing one. The new content becomes
// visible in one step, and only once it is whole.
func (v *Vault) Upload(ctx context.Context, dir crypto.ID, name string, src io.ReaderAt, size int64, opts UploadOptions) (*Node, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("negative size %d", size)
	}
	if opts.Mode == 0 {
		opts.Mode = 0o644
	}
	if opts.ModTime.IsZero() {
		opts.ModTime = time.Now()
	}
	u := &upload{v: v, dir: dir, name: name, src: src, size: size, opts: opts, prog: progressOr(opts.Progress)}
	existing := opts.Existing
	if !opts.Looked {
		n, err := v.Lookup(ctx, dir, name)
		switch {
		case err == nil:
			existing = n
		case !IsNotExist(err):
			return nil, err
		}
	}
	if existing != nil {
		if !existing.IsFile() {
			if existing.IsDir() {
				return nil, syscall.EISDIR
			}
			return nil, fmt.Errorf("%w (not a regular file)", syscall.EEXIST)
		}
		u.file, u.base, u.gen = existing.ID, existing.Version, existing.Attr.Generation+1
		u.ctime = existing.Attr.Ctime
	} else {
		u.file, u.gen = crypto.NewID(), 1
	}
	var err error
	if u.fc, err = crypto.NewFileCipher(v.keys.Content, u.file, v.layout); err != nil {
		return nil, err
	}
	var in *wire.Inode
	if size <= int64(v.layout.ChunkSize()) {
		in, err = u.small(ctx)
	} else {
		in, err = u.large(ctx)
	}
	if err != nil {
		return nil, err
	}
	u.prog.AddFiles(1)
	return v.node(in, u.file, dir, name, v.index(dir, name))
}

// readChunk reads chunk i of the source into p, which has its exact length.
func (u *upload) readChunk(i uint64, p []byte) error {
	off := int64(i) * int64(u.v.layout.ChunkSize())
	n, err := u.src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("the source is shorter than %d bytes now: it changed while being uploaded", u.size)
	}
	return fmt.Errorf("reading the source: %w", err)
}

// seal reads and seals chunk i under a fresh chunk ID, computing the
// transfer HMAC in the same pass.
func (u *upload) seal(i uint64, buf *chunkBuf) (crypto.ChunkRef, []byte, crypto.ChunkTag, []byte, error) {
	n := u.v.layout.ChunkPlainLen(uint64(u.size), i)
	plain := buf.plain[:n]
	if err := u.readChunk(i, plain); err != nil {
		return crypto.ChunkRef{}, nil, crypto.ChunkTag{}, nil, err
	}
	ref := crypto.ChunkRef{File: u.file, Index: i, ID: crypto.NewID()}
	h := u.v.tmac.New(ref)
	last := i == u.v.layout.ChunkCount(uint64(u.size))-1
	sealed, tag, err := u.fc.SealChunk(buf.sealed[:0], i, ref.ID, plain, last, h)
	if err != nil {
		return ref, nil, tag, nil, err
	}
	buf.sealed = sealed
	return ref, sealed, tag, h.Sum(nil), nil
}

// small uploads a file of at most one chunk with one request.
func (u *upload) small(ctx context.Context) (*wire.Inode, error) {
	hdr := &wire.SmallHeader{Parent: wire.HexID(u.dir), File: wire.HexID(u.file)}
	var sealed []byte
	u.chunk = nil
	if u.size > 0 {
		buf := u.v.getBuf(u.v.layout)
		defer u.v.putBuf(u.v.layout, buf)
		ref, s, tag, mac, err := u.seal(0, buf)
		if err != nil {
			return nil, err
		}
		sealed = s
		u.chunk = []crypto.ChunkEntry{{ID: ref.ID, Tag: tag}}
		hdr.Chunk = &wire.SmallChunk{Index: 0, ID: wire.HexID(ref.ID), MAC: mac}
		if err := u.opts.Limit.wait(ctx, len(sealed)); err != nil {
			return nil, err
		}
	}
	if u.opts.Unchanged != nil {
		if err := u.opts.Unchanged(); err != nil {
			return nil, err
		}
	}
	cr, sealedAttr, err := u.commitRequest()
	if err != nil {
		return nil, err
	}
	hdr.Commit = *cr
	if u.base == 0 {
		idx := u.v.index(u.dir, u.name)
		name, err := crypto.SealName(u.v.keys.Names, u.dir, u.file, u.name)
		if err != nil {
			return nil, err
		}
		hdr.Create = &wire.CreateRequest{Index: idx, SealedName: name, Inode: wire.NewInode{ID: wire.HexID(u.file), Type: wire.TypeFile, Attr: sealedAttr}}
	}
	in, err := u.v.c.PutSmall(ctx, hdr, sealed)
	if err != nil {
		if in2, ok := u.arrived(ctx, err, sealedAttr); ok {
			in, err = in2, nil
		}
	}
	if err != nil {
		return nil, fsError(err)
	}
	u.prog.AddBytes(u.size)
	return in, nil
}

// commitRequest seals the manifest and attributes of the new version.
func (u *upload) commitRequest() (*wire.CommitRequest, []byte, error) {
	m := &crypto.Manifest{File: u.file, Generation: u.gen, Size: uint64(u.size), Layout: u.v.layout, Chunks: u.chunk}
	sealedM, err := crypto.SealManifest(u.v.keys.Manifest, m)
	if err != nil {
		return nil, nil, err
	}
	attr := newAttr(wire.TypeFile, u.opts.Mode, u.opts.ModTime)
	attr.Size, attr.Generation = uint64(u.size), u.gen
	attr.Ctime = crypto.NextStamp(u.ctime, attr.Ctime)
	sealedA, err := crypto.SealAttr(u.v.keys.Attr, u.file, &attr)
	if err != nil {
		return nil, nil, err
	}
	cr := &wire.CommitRequest{IfVersion: u.base, Manifest: sealedM, Attr: sealedA}
	for i, c := range u.chunk {
		if !c.IsHole() {
			cr.Chunks = append(cr.Chunks, wire.ChunkPos{Index: uint64(i), ID: wire.HexID(c.ID)})
		}
	}
	return cr, sealedA, nil
}

// arrived tells whether a commit that failed with exists or
// version_mismatch had in fact succeeded on an earlier attempt whose answer
// was lost: the inode then carries exactly the attributes this upload
// sealed (a random nonce makes them unique).
func (u *upload) arrived(ctx context.Context, err error, sealedAttr []byte) (*wire.Inode, bool) {
	if !remote.IsExists(err) && !remote.IsVersionMismatch(err) {
		return nil, false
	}
	in, gerr := u.v.c.Inode(ctx, u.file, false)
	if gerr != nil || !bytes.Equal(in.Attr, sealedAttr) {
		return nil, false
	}
	if e, lerr := u.v.c.Lookup(ctx, u.dir, u.v.index(u.dir, u.name)); lerr != nil || crypto.ID(e.Inode.ID) != u.file {
		return nil, false
	}
	return in, true
}

// large uploads a multi-chunk file: chunks in parallel, then one commit.
func (u *upload) large(ctx context.Context) (*wire.Inode, error) {
	l := u.v.layout
	n := l.ChunkCount(uint64(u.size))
	u.chunk = make([]crypto.ChunkEntry, n)
	have := make([]bool, n)

	var log *resumeLog
	if u.opts.ResumePath != "" {
		state := u.resumable(ctx, have)
		log = startResumeLog(u.opts.ResumePath, state)
		defer func() {
			if log != nil {
				_ = log.close()
			}
		}()
	}

	for round := 0; ; round++ {
		if err := u.sendChunks(ctx, have, log); err != nil {
			return nil, err
		}
		if u.opts.Unchanged != nil {
			if err := u.opts.Unchanged(); err != nil {
				return nil, err
			}
		}
		cr, sealedAttr, err := u.commitRequest()
		if err != nil {
			return nil, err
		}
		var in *wire.Inode
		if u.base == 0 {
			cr.IfVersion = 0
			in, _, err = u.v.create(ctx, u.dir, u.name, wire.NewInode{ID: wire.HexID(u.file), Type: wire.TypeFile, Attr: sealedAttr}, cr)
		} else {
			in, err = u.v.c.Commit(ctx, u.file, cr)
			if in2, ok := u.arrived(ctx, err, sealedAttr); ok {
				in, err = in2, nil
			}
		}
		missing := remote.MissingChunks(err)
		if len(missing) > 0 && round < 2 {
			// Pending chunks were collected (a long pause): send those
			// positions again under new chunk IDs.
			gone := map[crypto.ID]bool{}
			for _, id := range missing {
				gone[crypto.ID(id)] = true
			}
			for i, c := range u.chunk {
				if gone[c.ID] {
					have[i] = false
				}
			}
			continue
		}
		if err != nil {
			if remote.IsVersionMismatch(err) {
				return nil, fmt.Errorf("the file changed on the server during the upload; nothing was replaced, run the command again")
			}
			return nil, fsError(err)
		}
		if log != nil {
			err := log.close()
			log.remove()
			log = nil
			_ = err // the upload is committed; a stale state is harmless and is rejected next time
		}
		return in, nil
	}
}

// sendChunks seals and uploads every chunk not yet held, at most
// v.parallel at a time, each worker holding one chunk buffer.
func (u *upload) sendChunks(ctx context.Context, have []bool, log *resumeLog) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(u.v.parallel)
	for i := range have {
		if have[i] {
			continue
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			buf := u.v.getBuf(u.v.layout)
			defer u.v.putBuf(u.v.layout, buf)
			ref, sealed, tag, mac, err := u.seal(uint64(i), buf)
			if err != nil {
				return err
			}
			if err := u.opts.Limit.wait(gctx, len(sealed)); err != nil {
				return err
			}
			if err := u.v.c.PutChunk(gctx, ref, sealed, mac); err != nil {
				return fmt.Errorf("chunk %d: %w", i, fsError(err))
			}
			u.chunk[i] = crypto.ChunkEntry{ID: ref.ID, Tag: tag}
			have[i] = true
			if log != nil {
				log.add(uint64(i), ref.ID, tag)
			}
			u.prog.AddBytes(int64(u.v.layout.ChunkPlainLen(uint64(u.size), uint64(i))))
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return context.Cause(ctx)
}

// resumable loads a matching state, asks the server which of its chunks it
// holds, marks those in have, and returns the state to keep extending. A
// state for another source, target or layout is replaced by a fresh one.
func (u *upload) resumable(ctx context.Context, have []bool) *resumeState {
	fresh := &resumeState{
		Format: resumeFormat, Dest: u.opts.Dest, Source: u.opts.Source,
		SourceSize: u.size, SourceMtime: u.opts.ModTime.UnixNano(),
		File: wire.HexID(u.file), Parent: wire.HexID(u.dir), Index: u.v.index(u.dir, u.name),
		BaseVersion: u.base, Generation: u.gen, Layout: u.v.layout,
	}
	s := loadResume(u.opts.ResumePath)
	if s == nil || s.SourceSize != fresh.SourceSize || s.SourceMtime != fresh.SourceMtime ||
		s.Parent != fresh.Parent || s.Index != fresh.Index || s.Layout != fresh.Layout ||
		s.BaseVersion != u.base || (u.base != 0 && s.File != fresh.File) {
		return fresh
	}
	ids := make([]crypto.ID, 0, len(s.Chunks))
	for _, c := range s.Chunks {
		if c.Index < uint64(len(have)) {
			ids = append(ids, crypto.ID(c.ID))
		}
	}
	held, err := u.v.c.Have(ctx, ids)
	if err != nil {
		return fresh
	}
	u.file, u.gen = crypto.ID(s.File), s.Generation
	fc, err := crypto.NewFileCipher(u.v.keys.Content, u.file, u.v.layout)
	if err != nil {
		return fresh
	}
	u.fc = fc
	kept := s.Chunks[:0]
	var done int64
	for _, c := range s.Chunks {
		if c.Index >= uint64(len(have)) || !held[crypto.ID(c.ID)] || have[c.Index] {
			continue
		}
		have[c.Index] = true
		u.chunk[c.Index] = crypto.ChunkEntry{ID: crypto.ID(c.ID), Tag: crypto.ChunkTag(c.Tag)}
		done += int64(u.v.layout.ChunkPlainLen(uint64(u.size), c.Index))
		kept = append(kept, c)
	}
	s.Chunks = kept
	s.Dest, s.Source = fresh.Dest, fresh.Source
	if done > 0 {
		u.prog.AddBytes(done)
		if u.opts.OnResume != nil {
			u.opts.OnResume(done, u.size)
		}
	}
	return s
}
