package meta

import (
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Validation is backend-neutral and runs before a request reaches the
// database, so a malformed request never occupies a slot in a write batch.

// defaultPage is the page size when the caller does not choose one.
const defaultPage = 1000

func pageLimit(limit int) int {
	if limit <= 0 {
		return defaultPage
	}
	return min(limit, MaxPage)
}

func checkSize(what string, b []byte, limit int) error {
	if len(b) > limit {
		return fmt.Errorf("%w: %s of %d bytes, limit %d", ErrTooLarge, what, len(b), limit)
	}
	return nil
}

func checkSealed(what string, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	return checkSize(what, b, MaxSealedSize)
}

func checkNameIndex(b []byte) error {
	if len(b) != NameIndexSize {
		return fmt.Errorf("%w: name index of %d bytes", ErrInvalid, len(b))
	}
	return nil
}

func checkName(index, sealedName []byte) error {
	if err := checkNameIndex(index); err != nil {
		return err
	}
	return checkSealed("sealed name", sealedName)
}

func checkAccountName(name string) error {
	if name == "" || len(name) > MaxAccountName || !utf8.ValidString(name) {
		return fmt.Errorf("%w: account name of %d bytes", ErrInvalid, len(name))
	}
	return nil
}

// checkSealedValue checks a value to be stored at rest. Chunk keys carry no
// Data; every other kind must.
func checkSealedValue(what string, v Sealed, withData bool, maxData int) error {
	if v.KEKID == "" || len(v.WrappedKey) == 0 {
		return fmt.Errorf("%w: %s without KEK ID or wrapped key", ErrInvalid, what)
	}
	if withData != (len(v.Data) > 0) {
		return fmt.Errorf("%w: %s data of %d bytes", ErrInvalid, what, len(v.Data))
	}
	if err := checkSize(what+" KEK ID", []byte(v.KEKID), MaxSealedSize); err != nil {
		return err
	}
	if err := checkSize(what+" wrapped key", v.WrappedKey, MaxSealedSize); err != nil {
		return err
	}
	return checkSize(what, v.Data, maxData)
}

func checkNewAccount(a NewAccount) error {
	if err := checkAccountName(a.Name); err != nil {
		return err
	}
	if len(a.AuthHash) == 0 || len(a.WrappedMaster) == 0 || len(a.AccountPub) == 0 || len(a.AccountPrivSealed) == 0 {
		return fmt.Errorf("%w: account key material missing", ErrInvalid)
	}
	if a.QuotaBytes < 0 {
		return fmt.Errorf("%w: negative quota", ErrInvalid)
	}
	for _, f := range []struct {
		what string
		b    []byte
	}{
		{"auth hash", a.AuthHash},
		{"KDF parameters", []byte(a.KDF)},
		{"wrapped master key", a.WrappedMaster},
		{"account public key", a.AccountPub},
		{"sealed account private key", a.AccountPrivSealed},
		{"layout", []byte(a.Layout)},
	} {
		if err := checkSize(f.what, f.b, MaxKeyFieldSize); err != nil {
			return err
		}
	}
	if err := checkSize("root attributes", a.RootAttr, MaxSealedSize); err != nil {
		return err
	}
	return checkSealedValue("transfer key", a.TransferKey, true, MaxKeyFieldSize)
}

func checkLogin(l Login) error {
	if len(l.AuthHash) == 0 || len(l.WrappedMaster) == 0 {
		return fmt.Errorf("%w: login secrets missing", ErrInvalid)
	}
	if err := checkSize("auth hash", l.AuthHash, MaxKeyFieldSize); err != nil {
		return err
	}
	if err := checkSize("KDF parameters", []byte(l.KDF), MaxKeyFieldSize); err != nil {
		return err
	}
	return checkSize("wrapped master key", l.WrappedMaster, MaxKeyFieldSize)
}

func checkSecretHash(what string, b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty %s", ErrInvalid, what)
	}
	return checkSize(what, b, MaxSealedSize)
}

func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%w: %s not set", ErrInvalid, what)
	}
	return nil
}

func checkNewInode(n NewInode) error {
	if n.ID == (ID{}) {
		return fmt.Errorf("%w: the zero ID is the root's", ErrInvalid)
	}
	if !n.Type.valid() {
		return fmt.Errorf("%w: inode type %d", ErrInvalid, n.Type)
	}
	if err := checkSize("attributes", n.Attr, MaxSealedSize); err != nil {
		return err
	}
	if n.Type == TypeSymlink {
		return checkSealed("symlink target", n.Symlink)
	}
	if len(n.Symlink) != 0 {
		return fmt.Errorf("%w: symlink target for a %s", ErrInvalid, n.Type)
	}
	return nil
}

// checkContent validates a file version and returns its distinct chunk IDs
// in first-use order.
func checkContent(manifest Sealed, chunks []ChunkPos) ([]ID, error) {
	if err := checkSealedValue("manifest", manifest, true, MaxManifestSize); err != nil {
		return nil, err
	}
	seen := make(map[uint64]struct{}, len(chunks))
	ids := make(map[ID]struct{}, len(chunks))
	var distinct []ID
	for _, c := range chunks {
		if c.Index > math.MaxInt64 {
			return nil, fmt.Errorf("%w: chunk index %d", ErrInvalid, c.Index)
		}
		if _, dup := seen[c.Index]; dup {
			return nil, fmt.Errorf("%w: chunk index %d given twice", ErrInvalid, c.Index)
		}
		seen[c.Index] = struct{}{}
		if _, dup := ids[c.ID]; !dup {
			ids[c.ID] = struct{}{}
			distinct = append(distinct, c.ID)
		}
	}
	return distinct, nil
}

func checkChunkRecord(c ChunkRecord) error {
	if c.Index > math.MaxInt64 {
		return fmt.Errorf("%w: chunk index %d", ErrInvalid, c.Index)
	}
	if c.Size < 0 {
		return fmt.Errorf("%w: chunk size %d", ErrInvalid, c.Size)
	}
	if (c.BlobKey == "") == (len(c.Inline) == 0) {
		return fmt.Errorf("%w: chunk with a blob key of %d bytes and an inline value of %d: exactly one is needed",
			ErrInvalid, len(c.BlobKey), len(c.Inline))
	}
	if err := checkSize("blob key", []byte(c.BlobKey), MaxSealedSize); err != nil {
		return err
	}
	if err := checkSize("inline chunk", c.Inline, MaxInlineSize); err != nil {
		return err
	}
	if err := checkSize("chunk MAC", c.MAC, 64); err != nil {
		return err
	}
	return checkSealedValue("chunk key", Sealed{KEKID: c.KEKID, WrappedKey: c.WrappedKey}, false, 0)
}

func checkRename(r RenameRequest) error {
	if err := checkName(r.DstIndex, r.NewSrcSealedName); err != nil {
		return err
	}
	if err := checkNameIndex(r.SrcIndex); err != nil {
		return err
	}
	switch r.Flag {
	case RenameReplace, RenameNoReplace:
		if len(r.NewDstSealedName) != 0 {
			return fmt.Errorf("%w: destination sealed name outside an exchange", ErrInvalid)
		}
	case RenameExchange:
		return checkSealed("sealed name", r.NewDstSealedName)
	default:
		return fmt.Errorf("%w: rename flag %d", ErrInvalid, r.Flag)
	}
	return nil
}
