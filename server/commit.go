package server

import (
	"context"
	"encoding/binary"
	"net/http"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/meta"
)

// fileContent seals a commit's manifest at rest and converts its chunk list.
func (s *Server) fileContent(p *principal, file meta.ID, c *wire.CommitRequest) (meta.FileContent, error) {
	if len(c.Manifest) < crypto.BoxOverhead || len(c.Manifest) > meta.MaxManifestSize {
		return meta.FileContent{}, badRequest("manifest of %d bytes", len(c.Manifest))
	}
	if err := checkSealedLen("sealed attributes", c.Attr, wire.MaxSealedAttr); err != nil {
		return meta.FileContent{}, err
	}
	data, wr, err := s.store.SealValue([]byte(p.account.Name), manifestID(file), c.Manifest)
	if err != nil {
		return meta.FileContent{}, err
	}
	fc := meta.FileContent{Manifest: meta.Sealed{Data: data, KEKID: wr.KEKID, WrappedKey: wr.WrappedKey}, Chunks: make([]meta.ChunkPos, len(c.Chunks))}
	for i, cp := range c.Chunks {
		fc.Chunks[i] = meta.ChunkPos{Index: cp.Index, ID: meta.ID(cp.ID)}
	}
	return fc, nil
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) error {
	file, err := pathID(r, "file")
	if err != nil {
		return err
	}
	var req wire.CommitRequest
	if err := decodeJSON(w, r, wire.MaxCommitBody, &req); err != nil {
		return err
	}
	p := principalOf(r)
	in, err := s.commitContent(r.Context(), p, file, &req)
	if err != nil {
		return err
	}
	return writeInode(w, http.StatusOK, in)
}

func (s *Server) commitContent(ctx context.Context, p *principal, file meta.ID, req *wire.CommitRequest) (meta.Inode, error) {
	fc, err := s.fileContent(p, file, req)
	if err != nil {
		return meta.Inode{}, err
	}
	return s.meta.Commit(ctx, p.account.ID, meta.CommitRequest{File: file, IfVersion: req.IfVersion,
		Manifest: fc.Manifest, Attr: req.Attr, Chunks: fc.Chunks})
}

// small handles a whole small file in one request: MAC check, chunk, then
// create-and-commit or commit.
func (s *Server) small(w http.ResponseWriter, r *http.Request) error {
	a := principalOf(r).account
	l, err := accountLayout(a)
	if err != nil {
		return err
	}
	release, err := s.uploadSlot(a.ID)
	if err != nil {
		return err
	}
	defer release()
	limit := int64(4 + wire.MaxJSONBody + l.MaxSealedChunkSize())
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	if len(body) < 4 {
		return badRequest("small upload shorter than its framing")
	}
	hlen := binary.BigEndian.Uint32(body)
	if uint64(hlen) > uint64(len(body)-4) || hlen > wire.MaxJSONBody {
		return badRequest("small upload header length %d does not fit", hlen)
	}
	var hdr wire.SmallHeader
	if err := wire.Decode(body[4:4+hlen], &hdr); err != nil {
		return badRequest("malformed small upload header: %v", err)
	}
	chunk := body[4+hlen:]
	p := principalOf(r)
	file := meta.ID(hdr.File)
	var newChunks []meta.ChunkRecord
	if hdr.Chunk != nil {
		if len(chunk) == 0 || len(chunk) > l.MaxSealedChunkSize() {
			return badRequest("small upload chunk of %d bytes", len(chunk))
		}
		if crypto.ID(hdr.Chunk.ID).IsZero() {
			return badRequest("the zero chunk ID is reserved for holes")
		}
		tm, err := s.transferMAC(a)
		if err != nil {
			return err
		}
		ref := crypto.ChunkRef{File: file, Index: hdr.Chunk.Index, ID: crypto.ID(hdr.Chunk.ID)}
		if err := tm.Verify(ref, chunk, hdr.Chunk.MAC); err != nil {
			s.metrics.hmacRejected()
			return errf(wire.CodeMACMismatch, "the chunk's transfer HMAC does not verify; nothing was stored")
		}
		s.metrics.bytesIn(len(chunk))
		rec, err := s.writeChunk(r.Context(), a, ref, chunk, hdr.Chunk.MAC)
		if err != nil {
			return err
		}
		if rec != nil {
			newChunks = append(newChunks, *rec)
		}
	} else if len(chunk) != 0 {
		return badRequest("small upload carries bytes but no chunk header")
	}
	// The chunk's record, the entry and the manifest go into one metadata
	// transaction: one durable write for the whole file, and with the
	// chunk inline nothing else.
	in, err := s.smallCommit(r, p, file, &hdr, newChunks)
	if err != nil {
		for _, c := range newChunks {
			s.dropChunk(r.Context(), c)
		}
		return err
	}
	return writeInode(w, http.StatusCreated, in)
}

// smallCommit creates-and-commits or commits a small file together with the
// records of its new chunks.
func (s *Server) smallCommit(r *http.Request, p *principal, file meta.ID, hdr *wire.SmallHeader, newChunks []meta.ChunkRecord) (meta.Inode, error) {
	fc, err := s.fileContent(p, file, &hdr.Commit)
	if err != nil {
		return meta.Inode{}, err
	}
	fc.NewChunks = newChunks
	if hdr.Create == nil {
		return s.meta.Commit(r.Context(), p.account.ID, meta.CommitRequest{File: file, IfVersion: hdr.Commit.IfVersion,
			Manifest: fc.Manifest, Attr: hdr.Commit.Attr, Chunks: fc.Chunks, NewChunks: newChunks})
	}
	if meta.ID(hdr.Create.Inode.ID) != file {
		return meta.Inode{}, badRequest("create names another inode than file")
	}
	if hdr.Commit.Attr != nil {
		hdr.Create.Inode.Attr = hdr.Commit.Attr
	}
	cr, err := s.createRequest(r, meta.ID(hdr.Parent), hdr.Create, &fc)
	if err != nil {
		return meta.Inode{}, err
	}
	return s.meta.Create(r.Context(), p.account.ID, cr)
}
