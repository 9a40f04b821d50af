package remote

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// maxSealedChunk bounds a downloaded chunk before its length is checked
// against the manifest: the largest layout (64 MiB chunks of 4 KiB blocks)
// plus its per-block overhead.
const maxSealedChunk = 64<<20 + (64<<20/4096)*crypto.BlockOverhead

// PutChunk uploads one sealed chunk with its transfer HMAC. Uploading a
// chunk the server already holds with the same identity succeeds, so a
// retried upload that had arrived is harmless.
func (c *Client) PutChunk(ctx context.Context, ref crypto.ChunkRef, sealed, mac []byte) error {
	path := "/files/" + ref.File.String() + "/chunks/" + strconv.FormatUint(ref.Index, 10) + "/" + ref.ID.String()
	return c.do(ctx, &request{
		method: http.MethodPut, path: path, auth: true,
		ctype:  wire.ContentTypeChunk,
		body:   [][]byte{sealed},
		header: http.Header{wire.HeaderMAC: {hex.EncodeToString(mac)}},
		bulk:   true,
	})
}

// ErrChunkMAC means a downloaded chunk's transfer HMAC did not verify: the
// bytes are not what the account's server stored for that file, position
// and chunk ID.
var ErrChunkMAC = errors.New("transfer HMAC of the chunk did not verify")

// GetChunk downloads the sealed chunk ref.ID into buf (reused when large
// enough) and verifies its transfer HMAC for ref before returning it. The
// caller must still open it against the manifest (FileCipher.OpenChunk).
func (c *Client) GetChunk(ctx context.Context, ref crypto.ChunkRef, tm *crypto.TransferMAC, buf []byte) ([]byte, error) {
	hdr := http.Header{}
	r := &request{
		method: http.MethodGet, path: "/chunks/" + ref.ID.String(), auth: true,
		raw: &buf, rawLimit: maxSealedChunk, respHeader: &hdr, bulk: true,
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	mac, err := hex.DecodeString(hdr.Get(wire.HeaderMAC))
	if err != nil || len(mac) != crypto.MACSize {
		return nil, fmt.Errorf("chunk %d: %w (the server sent no valid %s header)", ref.Index, ErrChunkMAC, wire.HeaderMAC)
	}
	if err := tm.Verify(ref, buf, mac); err != nil {
		return nil, fmt.Errorf("chunk %d: %w", ref.Index, ErrChunkMAC)
	}
	return buf, nil
}

// Have returns which of ids the server holds, in batches of the protocol's
// limit. It is how an interrupted upload finds what it need not send again.
func (c *Client) Have(ctx context.Context, ids []crypto.ID) (map[crypto.ID]bool, error) {
	held := make(map[crypto.ID]bool, len(ids))
	for start := 0; start < len(ids); start += wire.MaxHaveChunks {
		batch := ids[start:min(start+wire.MaxHaveChunks, len(ids))]
		req := wire.HaveRequest{IDs: make([]wire.HexID, len(batch))}
		for i, id := range batch {
			req.IDs[i] = wire.HexID(id)
		}
		var out wire.HaveResponse
		r, err := jsonRequest(http.MethodPost, "/chunks/have", &req, &out)
		if err != nil {
			return nil, err
		}
		if err := c.do(ctx, r); err != nil {
			return nil, err
		}
		for _, id := range out.Have {
			held[crypto.ID(id)] = true
		}
	}
	return held, nil
}

// Commit makes a new version of a file current.
func (c *Client) Commit(ctx context.Context, file crypto.ID, req *wire.CommitRequest) (*wire.Inode, error) {
	out := new(wire.Inode)
	r, err := jsonRequest(http.MethodPost, "/files/"+file.String()+"/commit", req, out)
	if err != nil {
		return nil, err
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// PutSmall uploads a file of at most one chunk, creates its entry when
// hdr.Create is set, and commits it, in one request and one server
// transaction. sealed is the sealed chunk (empty for an empty file).
func (c *Client) PutSmall(ctx context.Context, hdr *wire.SmallHeader, sealed []byte) (*wire.Inode, error) {
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	var frame [4]byte
	binary.BigEndian.PutUint32(frame[:], uint32(len(js)))
	out := new(wire.Inode)
	r := &request{
		method: http.MethodPost, path: "/small", auth: true,
		ctype: wire.ContentTypeSmall,
		body:  [][]byte{frame[:], js, sealed},
		out:   out,
		// A small file is a chunk with a commit: it goes as chunks do,
		// and over HTTP/1.1 a request hops between fewer goroutines on
		// both sides, which is most of its cost besides the commit.
		bulk: true,
	}
	if len(sealed) == 0 {
		r.body = r.body[:2]
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}
