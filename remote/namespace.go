package remote

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

// Inode returns an inode; withManifest also fetches the sealed manifest of
// its current version (absent for a file never committed).
func (c *Client) Inode(ctx context.Context, id crypto.ID, withManifest bool) (*wire.Inode, error) {
	out := new(wire.Inode)
	r, _ := jsonRequest(http.MethodGet, "/inodes/"+id.String(), nil, out)
	if withManifest {
		r.query = url.Values{"manifest": {"1"}}
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// SetAttr replaces an inode's sealed attributes; with ifVersion > 0 only if
// the inode is still at that version.
func (c *Client) SetAttr(ctx context.Context, id crypto.ID, sealedAttr []byte, ifVersion int64) (*wire.Inode, error) {
	return c.setInode(ctx, http.MethodPatch, "/inodes/"+id.String(), &wire.SetAttrRequest{Attr: sealedAttr}, ifVersion)
}

// SetXattrs replaces the sealed extended attribute set of inode id (empty:
// none), provided it is at version ifVersion (0: unconditionally).
func (c *Client) SetXattrs(ctx context.Context, id crypto.ID, sealed []byte, ifVersion int64) (*wire.Inode, error) {
	return c.setInode(ctx, http.MethodPut, "/inodes/"+id.String()+"/xattrs", &wire.SetXattrsRequest{Xattrs: sealed}, ifVersion)
}

// setInode sends a change of an inode's sealed values, conditional on
// ifVersion when it is positive.
func (c *Client) setInode(ctx context.Context, method, path string, body any, ifVersion int64) (*wire.Inode, error) {
	out := new(wire.Inode)
	r, err := jsonRequest(method, path, body, out)
	if err != nil {
		return nil, err
	}
	if ifVersion > 0 {
		r.header = http.Header{wire.HeaderIfMatch: {`"` + strconv.FormatInt(ifVersion, 10) + `"`}}
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// Lookup finds the entry with blind index idx in directory dir.
func (c *Client) Lookup(ctx context.Context, dir crypto.ID, idx wire.Index) (*wire.Entry, error) {
	out := new(wire.Entry)
	r, _ := jsonRequest(http.MethodGet, "/dirs/"+dir.String()+"/entries/"+idx.String(), nil, out)
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadDirPage returns one page of directory dir after the cursor (nil for
// the first page); limit 0 means the server's default.
func (c *Client) ReadDirPage(ctx context.Context, dir crypto.ID, after *wire.Index, limit int) (*wire.ReadDirResponse, error) {
	out := new(wire.ReadDirResponse)
	r, _ := jsonRequest(http.MethodGet, "/dirs/"+dir.String()+"/entries", nil, out)
	q := url.Values{}
	if after != nil {
		q.Set("after", after.String())
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	r.query = q
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadDir returns every entry of directory dir, page by page, with the
// directory's inode as of the last page.
func (c *Client) ReadDir(ctx context.Context, dir crypto.ID) (*wire.Inode, []wire.Entry, error) {
	var all []wire.Entry
	var after *wire.Index
	for {
		page, err := c.ReadDirPage(ctx, dir, after, wire.MaxReadDirLimit)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, page.Entries...)
		if !page.More || len(page.Entries) == 0 {
			return &page.Dir, all, nil
		}
		last := page.Entries[len(page.Entries)-1].Index
		after = &last
	}
}

// Create makes a file, directory or symlink in directory dir; a file's
// CreateRequest may carry its first commit.
func (c *Client) Create(ctx context.Context, dir crypto.ID, req *wire.CreateRequest) (*wire.Inode, error) {
	out := new(wire.Inode)
	r, err := jsonRequest(http.MethodPost, "/dirs/"+dir.String()+"/entries", req, out)
	if err != nil {
		return nil, err
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// Link adds a hard link to a non-directory in directory dir.
func (c *Client) Link(ctx context.Context, dir crypto.ID, req *wire.LinkRequest) (*wire.Inode, error) {
	out := new(wire.Inode)
	r, err := jsonRequest(http.MethodPost, "/dirs/"+dir.String()+"/links", req, out)
	if err != nil {
		return nil, err
	}
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// Remove deletes the entry idx of directory dir: rmdir when isDir (the
// directory must be empty), unlink otherwise.
func (c *Client) Remove(ctx context.Context, dir crypto.ID, idx wire.Index, isDir bool) error {
	typ := "nondir"
	if isDir {
		typ = "dir"
	}
	r, _ := jsonRequest(http.MethodDelete, "/dirs/"+dir.String()+"/entries/"+idx.String(), nil, nil)
	r.query = url.Values{"type": {typ}}
	return c.do(ctx, r)
}

// Rename moves an entry atomically; the names must already be re-sealed for
// their new parents.
func (c *Client) Rename(ctx context.Context, req *wire.RenameRequest) error {
	r, err := jsonRequest(http.MethodPost, "/rename", req, nil)
	if err != nil {
		return err
	}
	return c.do(ctx, r)
}
