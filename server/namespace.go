package server

import (
	"net/http"
	"strconv"

	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/meta"
)

// inodeView converts a stored inode to its wire form; the manifest is added
// only on request, opened from its at-rest layer.
func inodeView(in meta.Inode) wire.Inode {
	return wire.Inode{ID: wire.HexID(in.ID), Type: int(in.Type), Version: in.Version, Nlink: in.Nlink,
		Attr: in.Attr, Symlink: in.Symlink, Stored: in.Size, Xattrs: in.Xattrs, ParentVersion: in.ParentVersion}
}

// writeInode answers with an inode's wire form.
func writeInode(w http.ResponseWriter, status int, in meta.Inode) error {
	v := inodeView(in)
	writeJSON(w, status, &v)
	return nil
}

// pathEntry parses the directory ID and name index of an entry's URL.
func pathEntry(r *http.Request) (meta.ID, []byte, error) {
	parent, err := pathID(r, "id")
	if err != nil {
		return meta.ID{}, nil, err
	}
	idx, err := pathIndex(r)
	return parent, idx, err
}

// manifestID binds a manifest's at-rest sealing to its inode.
func manifestID(id meta.ID) []byte { return append([]byte("manifest:"), id[:]...) }

func (s *Server) getInode(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	p := principalOf(r)
	in, err := s.meta.GetInode(r.Context(), p.account.ID, id)
	if err != nil {
		return err
	}
	v := inodeView(in)
	if r.URL.Query().Get("manifest") == "1" && in.Manifest != nil {
		v.Manifest, err = s.store.OpenValue([]byte(p.account.Name), manifestID(id), in.Manifest.Data, wrappedOf(*in.Manifest))
		if err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, &v)
	return nil
}

func (s *Server) setAttr(w http.ResponseWriter, r *http.Request) error {
	var req wire.SetAttrRequest
	return s.setInode(w, r, &req, func(id meta.ID, ver int64) (meta.Inode, error) {
		if err := checkSealedLen("sealed attributes", req.Attr, wire.MaxSealedAttr); err != nil {
			return meta.Inode{}, err
		}
		return s.meta.SetAttr(r.Context(), principalOf(r).account.ID, id, ver, req.Attr)
	})
}

func (s *Server) setXattrs(w http.ResponseWriter, r *http.Request) error {
	var req wire.SetXattrsRequest
	return s.setInode(w, r, &req, func(id meta.ID, ver int64) (meta.Inode, error) {
		if len(req.Xattrs) > wire.MaxSealedXattrs {
			return meta.Inode{}, errf(wire.CodeTooLarge, "sealed extended attributes of %d bytes exceed %d", len(req.Xattrs), wire.MaxSealedXattrs)
		}
		return s.meta.SetXattrs(r.Context(), principalOf(r).account.ID, id, ver, req.Xattrs)
	})
}

// setInode answers a conditional change of one of an inode's sealed
// values: it parses the inode ID, If-Match and the JSON body into req,
// then lets set apply it.
func (s *Server) setInode(w http.ResponseWriter, r *http.Request, req any, set func(id meta.ID, ver int64) (meta.Inode, error)) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	ver, err := ifMatch(r)
	if err != nil {
		return err
	}
	if err := decodeJSON(w, r, wire.MaxJSONBody, req); err != nil {
		return err
	}
	in, err := set(id, ver)
	if err != nil {
		return err
	}
	return writeInode(w, http.StatusOK, in)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	parent, idx, err := pathEntry(r)
	if err != nil {
		return err
	}
	e, in, err := s.meta.Lookup(r.Context(), principalOf(r).account.ID, parent, idx)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, entryView(e, in))
	return nil
}

func entryView(e meta.Entry, in meta.Inode) *wire.Entry {
	var x wire.Index
	copy(x[:], e.NameIndex)
	return &wire.Entry{Index: x, SealedName: e.SealedName, Inode: inodeView(in)}
}

func (s *Server) readDir(w http.ResponseWriter, r *http.Request) error {
	parent, err := pathID(r, "id")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var after []byte
	if a := q.Get("after"); a != "" {
		x, err := wire.ParseIndex(a)
		if err != nil {
			return badRequest("after is not a name index")
		}
		after = x[:]
	}
	limit := wire.MaxReadDirLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 || n > wire.MaxReadDirLimit {
			return badRequest("limit must be 1 to %d", wire.MaxReadDirLimit)
		}
		limit = n
	}
	acct := principalOf(r).account.ID
	dir, err := s.meta.GetInode(r.Context(), acct, parent)
	if err != nil {
		return err
	}
	if dir.Type != meta.TypeDir {
		return errf(wire.CodeNotDir, "not a directory")
	}
	ents, more, err := s.meta.ReadDir(r.Context(), acct, parent, after, limit)
	if err != nil {
		return err
	}
	resp := wire.ReadDirResponse{Dir: inodeView(dir), Entries: make([]wire.Entry, len(ents)), More: more}
	for i, e := range ents {
		resp.Entries[i] = *entryView(e.Entry, e.Inode)
	}
	writeJSON(w, http.StatusOK, &resp)
	return nil
}

// checkSealedLen bounds a client-sealed value by the largest sealing of the
// largest plaintext the format allows; anything longer cannot be genuine.
func checkSealedLen(what string, b []byte, max int) error {
	if len(b) > max {
		return badRequest("%s of %d bytes exceeds %d", what, len(b), max)
	}
	return nil
}

// checkEntry bounds what a new directory entry carries.
func checkEntry(name, attr, symlink []byte) error {
	if err := checkSealedLen("sealed name", name, wire.MaxSealedName); err != nil {
		return err
	}
	if err := checkSealedLen("sealed attributes", attr, wire.MaxSealedAttr); err != nil {
		return err
	}
	return checkSealedLen("sealed symlink target", symlink, wire.MaxSealedSymlink)
}

func checkType(t int) (meta.InodeType, error) {
	switch t {
	case wire.TypeFile, wire.TypeDir, wire.TypeSymlink:
		return meta.InodeType(t), nil
	}
	return 0, badRequest("inode type must be 1 (file), 2 (directory) or 3 (symlink)")
}

// createRequest converts and checks a wire create request; content, when
// not nil, is committed in the same transaction.
func (s *Server) createRequest(r *http.Request, parent meta.ID, req *wire.CreateRequest, content *meta.FileContent) (meta.CreateRequest, error) {
	t, err := checkType(req.Inode.Type)
	if err != nil {
		return meta.CreateRequest{}, err
	}
	if content != nil && t != meta.TypeFile {
		return meta.CreateRequest{}, badRequest("only files have content")
	}
	if err := checkEntry(req.SealedName, req.Inode.Attr, req.Inode.Symlink); err != nil {
		return meta.CreateRequest{}, err
	}
	return meta.CreateRequest{
		Parent: parent, NameIndex: req.Index[:], SealedName: req.SealedName,
		Inode:   meta.NewInode{ID: meta.ID(req.Inode.ID), Type: t, Attr: req.Inode.Attr, Symlink: req.Inode.Symlink},
		Content: content,
	}, nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) error {
	parent, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req wire.CreateRequest
	if err := decodeJSON(w, r, wire.MaxCommitBody, &req); err != nil {
		return err
	}
	p := principalOf(r)
	var content *meta.FileContent
	if req.Commit != nil {
		if req.Commit.Attr != nil {
			// The commit's attributes describe the content it commits.
			req.Inode.Attr = req.Commit.Attr
		}
		c, err := s.fileContent(p, meta.ID(req.Inode.ID), req.Commit)
		if err != nil {
			return err
		}
		content = &c
	}
	cr, err := s.createRequest(r, parent, &req, content)
	if err != nil {
		return err
	}
	in, err := s.meta.Create(r.Context(), p.account.ID, cr)
	if err != nil {
		return err
	}
	return writeInode(w, http.StatusCreated, in)
}

func (s *Server) link(w http.ResponseWriter, r *http.Request) error {
	parent, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var req wire.LinkRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkSealedLen("sealed name", req.SealedName, wire.MaxSealedName); err != nil {
		return err
	}
	in, err := s.meta.Link(r.Context(), principalOf(r).account.ID, meta.LinkRequest{
		Parent: parent, NameIndex: req.Index[:], SealedName: req.SealedName, Target: meta.ID(req.Target)})
	if err != nil {
		return err
	}
	return writeInode(w, http.StatusCreated, in)
}

func (s *Server) unlink(w http.ResponseWriter, r *http.Request) error {
	parent, idx, err := pathEntry(r)
	if err != nil {
		return err
	}
	var mode meta.UnlinkMode
	switch r.URL.Query().Get("type") {
	case "dir":
		mode = meta.UnlinkDir
	case "nondir", "":
		mode = meta.UnlinkFile
	default:
		return badRequest("type must be dir or nondir")
	}
	if err := s.meta.Unlink(r.Context(), principalOf(r).account.ID, parent, idx, mode); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) rename(w http.ResponseWriter, r *http.Request) error {
	var req wire.RenameRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkSealedLen("sealed name", req.SrcSealedName, wire.MaxSealedName); err != nil {
		return err
	}
	if err := checkSealedLen("sealed name", req.DstSealedName, wire.MaxSealedName); err != nil {
		return err
	}
	var flag meta.RenameFlag
	switch req.Mode {
	case wire.RenameReplace, "":
		flag = meta.RenameReplace
	case wire.RenameNoReplace:
		flag = meta.RenameNoReplace
	case wire.RenameExchange:
		flag = meta.RenameExchange
	default:
		return badRequest("mode must be replace, noreplace or exchange")
	}
	mr := meta.RenameRequest{
		SrcParent: meta.ID(req.SrcParent), SrcIndex: req.SrcIndex[:],
		DstParent: meta.ID(req.DstParent), DstIndex: req.DstIndex[:],
		NewSrcSealedName: req.SrcSealedName, NewDstSealedName: req.DstSealedName, Flag: flag,
	}
	if req.SrcChild != nil {
		mr.SrcChild = meta.ID(*req.SrcChild)
	}
	if req.DstChild != nil {
		mr.DstChild = meta.ID(*req.DstChild)
	}
	err := s.meta.Rename(r.Context(), principalOf(r).account.ID, mr)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}
