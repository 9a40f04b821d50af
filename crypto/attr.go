package crypto

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"
)

// Attr is the part of an inode's attributes the server must not read: its
// exact size and times, its owner and mode. It is sealed under the attribute
// key bound to the inode's ID. Generation ties it to the manifest it was
// committed with, so a reader can tell the two belong together.
type Attr struct {
	Mode       uint32 // st_mode permission and type bits
	UID, GID   uint32
	Rdev       uint32
	Size       uint64
	Generation uint64
	Atime      int64 // nanoseconds since the Unix epoch
	Mtime      int64
	Ctime      int64
}

// AttrTime converts t to the nanoseconds an Attr holds. A time that int64
// nanoseconds cannot hold (before 1677-09-21 or after 2262-04-11) is
// clamped to the nearest one, as a local file system clamps times to its
// own range: t.UnixNano would wrap it around to a date centuries away.
func AttrTime(t time.Time) int64 {
	switch {
	case t.Before(minAttrTime):
		return math.MinInt64
	case t.After(maxAttrTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var minAttrTime, maxAttrTime = time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)

// TouchCtime sets Ctime for a change made at now (nanoseconds since the
// Unix epoch), keeping it above the Ctime the change is based on even when
// this writer's clock is behind the last one's. A user cannot set ctime, so
// every sealing of an inode's attributes carries a Ctime no lower than the
// one before it: a reader that has seen a sealing can tell an earlier one
// served in its place (a rollback) by its lower Ctime.
func (a *Attr) TouchCtime(now int64) { a.Ctime = NextStamp(a.Ctime, now) }

// NextStamp returns the stamp of a change made at now (nanoseconds since the
// Unix epoch) to something whose last change was stamped prev: now, or just
// past prev when this writer's clock is behind the last one's. Stamps so
// made never decrease, whatever the writers' clocks.
func NextStamp(prev, now int64) int64 {
	switch {
	case now > prev:
		return now
	case prev < math.MaxInt64:
		return prev + 1
	}
	return prev
}

// attrSize is the encoded size of Attr.
const attrSize = 4*4 + 8*5

// SealedAttrSize is the size of a sealed Attr.
const SealedAttrSize = attrSize + BoxOverhead

func attrAD(file ID) []byte { return newAD(domainAttr, IDSize).bytes(file[:]) }

// MarshalBinary encodes a in the fixed layout of docs/format.md.
func (a *Attr) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, attrSize)
	for _, v := range []uint32{a.Mode, a.UID, a.GID, a.Rdev} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	for _, v := range []uint64{a.Size, a.Generation, uint64(a.Atime), uint64(a.Mtime), uint64(a.Ctime)} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b, nil
}

// UnmarshalBinary decodes the fixed layout.
func (a *Attr) UnmarshalBinary(b []byte) error {
	if len(b) != attrSize {
		return fmt.Errorf("%w: attributes of %d bytes, want %d", ErrCorrupt, len(b), attrSize)
	}
	be := binary.BigEndian
	*a = Attr{
		Mode: be.Uint32(b), UID: be.Uint32(b[4:]), GID: be.Uint32(b[8:]), Rdev: be.Uint32(b[12:]),
		Size: be.Uint64(b[16:]), Generation: be.Uint64(b[24:]),
		Atime: int64(be.Uint64(b[32:])), Mtime: int64(be.Uint64(b[40:])), Ctime: int64(be.Uint64(b[48:])),
	}
	return nil
}

// SealAttr seals the attributes of inode file.
func SealAttr(attrKey []byte, file ID, a *Attr) ([]byte, error) {
	plain, _ := a.MarshalBinary()
	aead, err := newGCM(attrKey)
	if err != nil {
		return nil, err
	}
	return sealBox(make([]byte, 0, SealedAttrSize), aead, plain, attrAD(file)), nil
}

// OpenAttr opens the sealed attributes of inode file.
func OpenAttr(attrKey []byte, file ID, sealed []byte) (*Attr, error) {
	aead, err := newGCM(attrKey)
	if err != nil {
		return nil, err
	}
	plain, err := openBox(nil, aead, sealed, attrAD(file))
	if err != nil {
		return nil, err
	}
	a := new(Attr)
	if err := a.UnmarshalBinary(plain); err != nil {
		return nil, err
	}
	return a, nil
}

// Limits of extended attributes, as Linux sets them for most filesystems.
const (
	MaxXattrNameLen  = 255
	MaxXattrValueLen = 64 << 10
	MaxXattrCount    = 1024
)

// EncodeXattrs encodes an inode's extended attributes canonically: a count,
// then each name and value in ascending name order. Canonical encoding means
// one set has one encoding, which the fuzz tests check.
func EncodeXattrs(x map[string][]byte) ([]byte, error) {
	if len(x) > MaxXattrCount {
		return nil, fmt.Errorf("%w: %d extended attributes", ErrCorrupt, len(x))
	}
	names := make([]string, 0, len(x))
	size := 2
	for n, v := range x {
		if len(n) == 0 || len(n) > MaxXattrNameLen || len(v) > MaxXattrValueLen {
			return nil, fmt.Errorf("%w: extended attribute %q does not fit", ErrCorrupt, n)
		}
		names = append(names, n)
		size += 1 + len(n) + 4 + len(v)
	}
	sort.Strings(names)
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint16(b, uint16(len(names)))
	for _, n := range names {
		b = append(b, byte(len(n)))
		b = append(b, n...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(x[n])))
		b = append(b, x[n]...)
	}
	return b, nil
}

// DecodeXattrs decodes what EncodeXattrs made, rejecting any other encoding.
func DecodeXattrs(b []byte) (map[string][]byte, error) {
	bad := func(why string) error { return fmt.Errorf("%w: extended attributes: %s", ErrCorrupt, why) }
	if len(b) < 2 {
		return nil, bad("short")
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > MaxXattrCount {
		return nil, bad("too many")
	}
	b = b[2:]
	out := make(map[string][]byte, n)
	prev := ""
	for i := 0; i < n; i++ {
		if len(b) < 1 || len(b) < 1+int(b[0])+4 || b[0] == 0 {
			return nil, bad("short name")
		}
		name := string(b[1 : 1+int(b[0])])
		b = b[1+int(b[0]):]
		vlen := binary.BigEndian.Uint32(b)
		if vlen > MaxXattrValueLen || uint64(len(b)-4) < uint64(vlen) {
			return nil, bad("short value")
		}
		if i > 0 && name <= prev {
			return nil, bad("names not in ascending order")
		}
		out[name] = append([]byte{}, b[4:4+vlen]...)
		b = b[4+vlen:]
		prev = name
	}
	if len(b) != 0 {
		return nil, bad("trailing bytes")
	}
	return out, nil
}

func xattrAD(file ID) []byte { return newAD(domainXattr, IDSize).bytes(file[:]) }

// xattrStamped starts the plaintext of a stamped xattr set. An unstamped
// one, sealed before stamps existed, starts with its 2-byte count, which is
// at most MaxXattrCount, so its first byte is never this.
const xattrStamped = 0xff

// SealXattrs seals an inode's whole extended attribute set, stamped with
// the time of its change (NextStamp of the set it replaces). Every change
// raises the stamp, so a reader that has seen a set can tell an earlier one
// served in its place (a rollback). An empty set is sealed too: it keeps the
// stamp of the removal of the last attribute.
func SealXattrs(attrKey []byte, file ID, x map[string][]byte, stamp int64) ([]byte, error) {
	set, err := EncodeXattrs(x)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, 0, 9+len(set))
	plain = append(plain, xattrStamped)
	plain = binary.BigEndian.AppendUint64(plain, uint64(stamp))
	plain = append(plain, set...)
	aead, err := newGCM(attrKey)
	if err != nil {
		return nil, err
	}
	return sealBox(make([]byte, 0, len(plain)+BoxOverhead), aead, plain, xattrAD(file)), nil
}

// OpenXattrs opens a sealed extended attribute set of inode file and
// returns it with its stamp; a set sealed before stamps existed has stamp 0.
func OpenXattrs(attrKey []byte, file ID, sealed []byte) (map[string][]byte, int64, error) {
	aead, err := newGCM(attrKey)
	if err != nil {
		return nil, 0, err
	}
	plain, err := openBox(nil, aead, sealed, xattrAD(file))
	if err != nil {
		return nil, 0, err
	}
	var stamp int64
	if len(plain) > 0 && plain[0] == xattrStamped {
		if len(plain) < 9 {
			return nil, 0, fmt.Errorf("%w: extended attributes: short stamp", ErrCorrupt)
		}
		stamp = int64(binary.BigEndian.Uint64(plain[1:]))
		plain = plain[9:]
	}
	x, err := DecodeXattrs(plain)
	if err != nil {
		return nil, 0, err
	}
	return x, stamp, nil
}
