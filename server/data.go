package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/atrest"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/meta"
)

func wrappedOf(v meta.Sealed) atrest.Wrapped {
	return atrest.Wrapped{KEKID: v.KEKID, WrappedKey: v.WrappedKey}
}

// transferMAC returns the account's chunk MAC, opening its transfer key from
// the at-rest layer once per process: keys never change after registration.
func (s *Server) transferMAC(a meta.Account) (*crypto.TransferMAC, error) {
	s.macsMu.Lock()
	m := s.macs[a.ID]
	s.macsMu.Unlock()
	if m != nil {
		return m, nil
	}
	key, err := s.store.OpenValue([]byte(a.Name), transferKeyID, a.TransferKey.Data, wrappedOf(a.TransferKey))
	if err != nil {
		return nil, err
	}
	m, err = crypto.NewTransferMAC(key, a.Name)
	if err != nil {
		return nil, err
	}
	s.macsMu.Lock()
	s.macs[a.ID] = m
	s.macsMu.Unlock()
	return m, nil
}

// uploadSlot bounds concurrent uploads per account, so one account cannot
// take all the server's memory and disk bandwidth.
func (s *Server) uploadSlot(account int64) (release func(), err error) {
	s.uploadsMu.Lock()
	defer s.uploadsMu.Unlock()
	if s.uploads[account] >= s.cfg.UploadsPerAccount {
		return nil, &apiError{code: wire.CodeTooManyUploads, msg: "too many concurrent uploads for this account", retry: 1}
	}
	s.uploads[account]++
	return func() {
		s.uploadsMu.Lock()
		s.uploads[account]--
		if s.uploads[account] == 0 {
			delete(s.uploads, account)
		}
		s.uploadsMu.Unlock()
	}, nil
}

func accountLayout(a meta.Account) (crypto.Layout, error) {
	var l crypto.Layout
	if err := json.Unmarshal([]byte(a.Layout), &l); err != nil {
		return l, err
	}
	return l, l.Check()
}

var chunkBufs = sync.Pool{New: func() any { return new([]byte) }}

// readChunk reads a sealed chunk body of at most limit bytes and feeds it to
// mac as it arrives, so the bytes are hashed while still in cache. The
// returned buffer goes back to chunkBufs through the release func.
func readChunk(w http.ResponseWriter, r io.Reader, limit int, mac io.Writer) ([]byte, func(), error) {
	bp := chunkBufs.Get().(*[]byte)
	if cap(*bp) < limit+1 {
		*bp = make([]byte, 0, limit+1)
	}
	buf := (*bp)[:0]
	release := func() { *bp = buf[:0]; chunkBufs.Put(bp) }
	for {
		if len(buf) > limit {
			release()
			return nil, nil, errf(wire.CodeTooLarge, "chunk exceeds the account layout's %d sealed bytes", limit)
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), len(buf)+256<<10)])
		mac.Write(buf[len(buf) : len(buf)+n])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, release, nil
		}
		if err != nil {
			release()
			return nil, nil, errf(wire.CodeBadRequest, "reading the chunk: %v", err)
		}
	}
}

func parseMAC(s string) ([]byte, error) {
	mac, err := hex.DecodeString(s)
	if err != nil || len(mac) != crypto.MACSize {
		return nil, badRequest("%s must be %d hex-encoded bytes", wire.HeaderMAC, crypto.MACSize)
	}
	return mac, nil
}

// newBlobKey returns a fresh storage key. Its first byte, which picks the
// blob store's fan-out directory, comes from the clock rather than chance:
// uploads that run at the same moment land in one directory and share its
// group-committed fsync, while over time every directory fills evenly.
func newBlobKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] = byte(time.Now().UnixMilli() / 250)
	return hex.EncodeToString(b)
}

// InlineChunkMax is the largest sealed chunk the server keeps inline, in
// its row of the metadata database, rather than as a blob file. Small files
// are the case it serves: a blob costs a file creation (whose inode
// allocation alone can take most of a millisecond of CPU on ext4), an
// fsync, a rename and a directory fsync on top of the database commit that
// records it, while an inline chunk rides in that commit, so that a small
// file written with POST /v1/small costs one durable write and nothing
// else. Below about 100 KB SQLite also reads a value faster than the file
// system opens and reads a file (SQLite's "Internal Versus External BLOBs"
// measurements). Past 64 KiB the trade turns: every inline
// byte is written twice (into the WAL, then into the database at the
// checkpoint) and through the one writer that all commits share, where
// blobs of the usual 1 MiB chunks are written beside it in parallel, and a
// batch of 64 commits then carries at most 4 MiB of chunks. The value is
// sealed at rest exactly as a blob would be (see atrest.Store.SealValue).
const InlineChunkMax = 64 << 10

// The meta store must accept the largest inline value: the array length is
// negative, and the build fails, if it does not.
var _ [meta.MaxInlineSize - InlineChunkMax - crypto.AtRestOverhead]struct{}

// writeChunk seals a chunk whose MAC its caller checked at rest, inline or
// into a new blob, and returns the record to keep for it, or nil when the
// account already holds this exact chunk (a retry). The record is not yet
// in the metadata: the caller records it, or drops it with dropChunk.
func (s *Server) writeChunk(ctx context.Context, a meta.Account, ref crypto.ChunkRef, body, mac []byte) (*meta.ChunkRecord, error) {
	inline := len(body) <= InlineChunkMax && !s.cfg.NoInline
	// A blob is checked for first so that a retried upload does not write
	// it again. An inline chunk costs nothing to seal twice, and recording
	// it checks the same in its transaction, so it spares the read.
	if !inline {
		if old, err := s.meta.GetChunk(ctx, a.ID, ref.ID); err == nil {
			if old.File == ref.File && old.Index == ref.Index && old.Size == int64(len(body)) {
				return nil, nil
			}
			return nil, errf(wire.CodeExists, "chunk ID already used for other content")
		} else if !errors.Is(err, meta.ErrNotFound) {
			return nil, err
		}
	}
	if s.cfg.SpaceLeft != nil && !s.cfg.SpaceLeft() {
		return nil, errf(wire.CodeInsufficientStorage, "the server's disk is full (what is left is kept for removing files)")
	}
	if a.QuotaBytes > 0 && a.UsedBytes+int64(len(body)) > a.QuotaBytes {
		return nil, errf(wire.CodeQuotaExceeded, "the account's quota of %d bytes would be exceeded", a.QuotaBytes)
	}
	rec := &meta.ChunkRecord{ID: ref.ID, File: ref.File, Index: ref.Index, Size: int64(len(body)), MAC: mac}
	// The at-rest ID of an inline chunk is its chunk ID, as for a blob: it
	// is the same content wherever it is kept.
	var w atrest.Wrapped
	var err error
	if inline {
		rec.Inline, w, err = s.store.SealValue([]byte(a.Name), ref.ID[:], body)
	} else {
		rec.BlobKey = newBlobKey()
		w, err = s.store.Put(ctx, []byte(a.Name), ref.ID[:], rec.BlobKey, body)
	}
	if err != nil {
		return nil, err
	}
	rec.KEKID, rec.WrappedKey = w.KEKID, w.WrappedKey
	return rec, nil
}

// dropChunk deletes the blob of a chunk written by writeChunk that no
// record references after all. An inline chunk has nothing to delete.
func (s *Server) dropChunk(ctx context.Context, rec meta.ChunkRecord) {
	if rec.BlobKey == "" {
		return
	}
	if err := s.store.Delete(context.WithoutCancel(ctx), rec.BlobKey); err != nil {
		s.log.Warn("deleting an unrecorded blob", "err", err)
	}
}

// storeChunk writes and records a chunk; an identical retry is a no-op. It
// reports whether it created the chunk.
func (s *Server) storeChunk(ctx context.Context, a meta.Account, ref crypto.ChunkRef, body, mac []byte) (bool, error) {
	rec, err := s.writeChunk(ctx, a, ref, body, mac)
	if err != nil || rec == nil {
		return false, err
	}
	_, created, err := s.meta.PutChunk(ctx, a.ID, *rec)
	if err != nil || !created {
		// Not recorded (an error, or a concurrent identical upload won):
		// the blob just written, if any, is nobody's.
		s.dropChunk(ctx, *rec)
	}
	return created, err
}

func (s *Server) putChunk(w http.ResponseWriter, r *http.Request) error {
	file, err := pathID(r, "file")
	if err != nil {
		return err
	}
	chunk, err := pathID(r, "chunk")
	if err != nil {
		return err
	}
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		return badRequest("chunk index must be a non-negative integer")
	}
	if crypto.ID(chunk).IsZero() {
		return badRequest("the zero chunk ID is reserved for holes")
	}
	mac, err := parseMAC(r.Header.Get(wire.HeaderMAC))
	if err != nil {
		return err
	}
	a := principalOf(r).account
	release, err := s.uploadSlot(a.ID)
	if err != nil {
		return err
	}
	defer release()
	l, err := accountLayout(a)
	if err != nil {
		return err
	}
	tm, err := s.transferMAC(a)
	if err != nil {
		return err
	}
	ref := crypto.ChunkRef{File: file, Index: index, ID: chunk}
	h := tm.New(ref)
	body, done, err := readChunk(w, http.MaxBytesReader(w, r.Body, int64(l.MaxSealedChunkSize())+1), l.MaxSealedChunkSize(), h)
	if err != nil {
		return err
	}
	defer done()
	if err := crypto.CheckMAC(h.Sum(nil), mac); err != nil {
		s.metrics.hmacRejected()
		return errf(wire.CodeMACMismatch, "the chunk's transfer HMAC does not verify; nothing was stored")
	}
	if len(body) == 0 {
		return badRequest("empty chunk")
	}
	s.metrics.bytesIn(len(body))
	created, err := s.storeChunk(r.Context(), a, ref, body, mac)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, struct{}{})
	return nil
}

func (s *Server) getChunk(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "chunk")
	if err != nil {
		return err
	}
	a := principalOf(r).account
	rec, err := s.meta.GetChunk(r.Context(), a.ID, id)
	if err != nil {
		return err
	}
	body, release, rec, err := openChunk(r.Context(), s.meta, s.store, a.ID, a.Name, rec)
	if err != nil {
		if errors.Is(err, crypto.ErrAuthentication) || errors.Is(err, crypto.ErrCorrupt) || errors.Is(err, blob.ErrNotFound) {
			s.log.Error("stored chunk is damaged or missing", "account", a.ID, "chunk", crypto.ID(rec.ID),
				"blob", rec.BlobKey, "inline", rec.BlobKey == "", "err", err)
			return errf(wire.CodeDamaged, "the stored chunk is damaged or missing on the server (run 'sealfs server scrub')")
		}
		return err
	}
	mac := rec.MAC
	if len(mac) == 0 {
		tm, err := s.transferMAC(a)
		if err != nil {
			return err
		}
		mac = tm.Sum(crypto.ChunkRef{File: rec.File, Index: rec.Index, ID: id}, body)
	}
	w.Header().Set(wire.HeaderMAC, hex.EncodeToString(mac))
	w.Header().Set("Content-Type", wire.ContentTypeChunk)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Cache-Control", "no-store")
	end := batchAnswer(w, r)
	w.Write(body)
	end()
	release() // the response writer keeps no reference once Write returns
	s.metrics.bytesOut(len(body))
	return nil
}

// openChunk reads and opens a chunk's bytes, from its blob or its inline
// value, into a buffer that may be lent by the blob store: the caller calls
// release once done with body. Key rotation can change a chunk's record
// between our reading it and its blob: 'rotate-key --reencrypt' moves the
// chunk to a new blob and deletes the old one, and a rotation removes the
// old KEK once every record is rewrapped. Either way the fresh record
// opens, so on failure the record is read again and, if it changed, the
// read is retried with it. (An inline value comes with its record, so only
// the KEK's removal can affect it.)
func openChunk(ctx context.Context, st meta.Store, store *atrest.Store, account int64, owner string, rec meta.ChunkRecord) (body []byte, release func(), _ meta.ChunkRecord, err error) {
	for attempt := 0; ; attempt++ {
		w := atrest.Wrapped{KEKID: rec.KEKID, WrappedKey: rec.WrappedKey}
		release = nil
		if rec.BlobKey == "" {
			body, err = store.OpenValue([]byte(owner), rec.ID[:], rec.Inline, w)
		} else {
			body, release, err = store.Lend(ctx, []byte(owner), rec.ID[:], rec.BlobKey, w)
		}
		if release == nil {
			release = func() {}
		}
		if err == nil || attempt == 3 || ctx.Err() != nil {
			return body, release, rec, err
		}
		fresh, ferr := st.GetChunk(ctx, account, rec.ID)
		if ferr != nil || (fresh.BlobKey == rec.BlobKey && bytes.Equal(fresh.Inline, rec.Inline) &&
			fresh.KEKID == rec.KEKID && bytes.Equal(fresh.WrappedKey, rec.WrappedKey)) {
			return nil, release, rec, err
		}
		rec = fresh
	}
}

func (s *Server) haveChunks(w http.ResponseWriter, r *http.Request) error {
	var req wire.HaveRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	if len(req.IDs) > wire.MaxHaveChunks {
		return badRequest("at most %d IDs per request", wire.MaxHaveChunks)
	}
	ids := make([]meta.ID, len(req.IDs))
	for i, id := range req.IDs {
		ids[i] = meta.ID(id)
	}
	have, err := s.meta.HaveChunks(r.Context(), principalOf(r).account.ID, ids)
	if err != nil {
		return err
	}
	resp := wire.HaveResponse{Have: []wire.HexID{}}
	for i, ok := range have {
		if ok {
			resp.Have = append(resp.Have, req.IDs[i])
		}
	}
	writeJSON(w, http.StatusOK, &resp)
	return nil
}

// CollectGarbage deletes chunks that no file version references and that
// are older than the grace period: first the record (only if still
// unreferenced), then the blob; an inline chunk goes with its record. It
// returns how many it deleted.
func (s *Server) CollectGarbage(ctx context.Context) (int, error) {
	n := 0
	for {
		batch, err := s.meta.GarbageChunks(ctx, time.Now().Add(-s.cfg.GCGrace), 1000)
		if err != nil || len(batch) == 0 {
			return n, err
		}
		progress := false
		for _, c := range batch {
			ok, err := s.meta.DeleteChunk(ctx, c.Account, c.ID)
			if err != nil {
				return n, err
			}
			if !ok {
				continue
			}
			progress = true
			n++
			if c.BlobKey == "" {
				continue
			}
			if err := s.store.Delete(ctx, c.BlobKey); err != nil {
				s.log.Warn("deleting a collected blob", "blob", c.BlobKey, "err", err)
			}
		}
		if !progress {
			return n, nil
		}
	}
}
