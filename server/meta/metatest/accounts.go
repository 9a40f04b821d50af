package metatest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/server/meta"
)

func testAccounts(t *testing.T, s meta.Store) {
	ctx := t.Context()
	spec := accountSpec("alice")
	a := newAccount(t, s, "alice")
	if a.ID == 0 || a.Name != "alice" || a.State != meta.StateActive || a.UsedBytes != 0 || a.CreatedAt.IsZero() {
		t.Fatalf("created account = %+v", a)
	}
	got, err := s.GetAccount(ctx, "alice")
	noErr(t, "GetAccount", err)
	wantEq(t, "ID", got.ID, a.ID)
	wantBytes(t, "AuthHash", got.AuthHash, spec.AuthHash)
	wantEq(t, "KDF", got.KDF, spec.KDF)
	wantBytes(t, "WrappedMaster", got.WrappedMaster, spec.WrappedMaster)
	wantBytes(t, "AccountPub", got.AccountPub, spec.AccountPub)
	wantBytes(t, "AccountPrivSealed", got.AccountPrivSealed, spec.AccountPrivSealed)
	wantSealed(t, "TransferKey", &got.TransferKey, spec.TransferKey)
	wantEq(t, "Layout", got.Layout, spec.Layout)
	wantEq(t, "State", got.State, meta.StateActive)
	wantEq(t, "CreatedAt", got.CreatedAt.Equal(a.CreatedAt), true)
	byID, err := s.GetAccountByID(ctx, a.ID)
	noErr(t, "GetAccountByID", err)
	wantEq(t, "name by ID", byID.Name, "alice")

	rootIn := getInode(t, s, a.ID, root)
	wantEq(t, "root type", rootIn.Type, meta.TypeDir)
	wantEq(t, "root version", rootIn.Version, int64(1))
	wantEq(t, "root nlink", rootIn.Nlink, int64(1))
	wantBytes(t, "root attr", rootIn.Attr, spec.RootAttr)

	_, err = s.CreateAccount(ctx, accountSpec("alice"))
	wantErr(t, "duplicate name", err, meta.ErrExists)
	_, err = s.CreateAccount(ctx, accountSpec(""))
	wantErr(t, "empty name", err, meta.ErrInvalid)
	big := accountSpec("big")
	big.Layout = strings.Repeat("x", meta.MaxKeyFieldSize+1)
	_, err = s.CreateAccount(ctx, big)
	wantErr(t, "oversized layout", err, meta.ErrTooLarge)
	nokek := accountSpec("nokek")
	nokek.TransferKey.KEKID = ""
	_, err = s.CreateAccount(ctx, nokek)
	wantErr(t, "transfer key without KEK", err, meta.ErrInvalid)
	_, err = s.GetAccount(ctx, "big")
	wantErr(t, "rejected account", err, meta.ErrNotFound)
	_, err = s.GetAccount(ctx, "nobody")
	wantErr(t, "unknown name", err, meta.ErrNotFound)
	_, err = s.GetAccountByID(ctx, a.ID+1000)
	wantErr(t, "unknown ID", err, meta.ErrNotFound)

	bob := newAccount(t, s, "bob")
	noErr(t, "SetQuota", s.SetQuota(ctx, "alice", 1000))
	wantErr(t, "SetQuota unknown", s.SetQuota(ctx, "nobody", 1), meta.ErrNotFound)
	wantErr(t, "SetQuota negative", s.SetQuota(ctx, "alice", -1), meta.ErrInvalid)
	noErr(t, "disable bob", s.SetAccountState(ctx, "bob", true))
	wantErr(t, "disable unknown", s.SetAccountState(ctx, "nobody", true), meta.ErrNotFound)
	list, err := s.ListAccounts(ctx)
	noErr(t, "ListAccounts", err)
	if len(list) != 2 || list[0].Name != "alice" || list[1].Name != "bob" {
		t.Fatalf("ListAccounts = %+v", list)
	}
	if list[0].QuotaBytes != 1000 || list[0].State != meta.StateActive || list[0].ID != a.ID {
		t.Fatalf("alice = %+v", list[0])
	}
	if list[1].State != meta.StateDisabled || list[1].QuotaBytes != 0 || list[1].ID != bob.ID {
		t.Fatalf("bob = %+v", list[1])
	}
	noErr(t, "enable bob", s.SetAccountState(ctx, "bob", false))
	got, err = s.GetAccount(ctx, "bob")
	noErr(t, "GetAccount", err)
	wantEq(t, "re-enabled state", got.State, meta.StateActive)

	login := meta.Login{AuthHash: []byte("auth2"), KDF: `{"alg":"argon2id","m":131072}`, WrappedMaster: []byte("master2")}
	noErr(t, "UpdateLogin", s.UpdateLogin(ctx, a.ID, login))
	got, err = s.GetAccount(ctx, "alice")
	noErr(t, "GetAccount", err)
	if !bytes.Equal(got.AuthHash, login.AuthHash) || got.KDF != login.KDF || !bytes.Equal(got.WrappedMaster, login.WrappedMaster) {
		t.Fatalf("after UpdateLogin: %+v", got)
	}
	wantBytes(t, "key material kept", got.AccountPrivSealed, spec.AccountPrivSealed)
	wantErr(t, "UpdateLogin unknown", s.UpdateLogin(ctx, a.ID+1000, login), meta.ErrNotFound)
	wantErr(t, "UpdateLogin empty", s.UpdateLogin(ctx, a.ID, meta.Login{}), meta.ErrInvalid)
}

func testInvites(t *testing.T, s meta.Store) {
	ctx := t.Context()
	hour := time.Now().Add(time.Hour)
	noErr(t, "CreateInvite", s.CreateInvite(ctx, meta.Invite{CodeHash: []byte("code1"), UserName: "carol", QuotaBytes: 5000, ExpiresAt: hour}))
	wantErr(t, "duplicate invite", s.CreateInvite(ctx, meta.Invite{CodeHash: []byte("code1"), ExpiresAt: hour}), meta.ErrExists)
	wantErr(t, "invite without expiry", s.CreateInvite(ctx, meta.Invite{CodeHash: []byte("code9")}), meta.ErrInvalid)

	_, err := s.RedeemInvite(ctx, []byte("code1"), accountSpec("dave"))
	wantErr(t, "invite for another name", err, meta.ErrInviteInvalid)
	_, err = s.GetAccount(ctx, "dave")
	wantErr(t, "account of refused invite", err, meta.ErrNotFound)
	carol, err := s.RedeemInvite(ctx, []byte("code1"), accountSpec("carol"))
	noErr(t, "RedeemInvite", err)
	wantEq(t, "invite quota", carol.QuotaBytes, int64(5000))
	got, err := s.GetAccount(ctx, "carol")
	noErr(t, "GetAccount", err)
	wantEq(t, "stored invite quota", got.QuotaBytes, int64(5000))
	getInode(t, s, carol.ID, root)
	_, err = s.RedeemInvite(ctx, []byte("code1"), accountSpec("carol"))
	wantErr(t, "reused invite", err, meta.ErrInviteInvalid)

	// A taken name fails with ErrExists and leaves the invite usable.
	noErr(t, "CreateInvite", s.CreateInvite(ctx, meta.Invite{CodeHash: []byte("code2"), ExpiresAt: hour}))
	newAccount(t, s, "erin")
	_, err = s.RedeemInvite(ctx, []byte("code2"), accountSpec("erin"))
	wantErr(t, "taken name", err, meta.ErrExists)
	frank, err := s.RedeemInvite(ctx, []byte("code2"), accountSpec("frank"))
	noErr(t, "RedeemInvite after a taken name", err)

	noErr(t, "CreateInvite", s.CreateInvite(ctx, meta.Invite{CodeHash: []byte("code3"), ExpiresAt: time.Now().Add(-time.Minute)}))
	_, err = s.RedeemInvite(ctx, []byte("code3"), accountSpec("gina"))
	wantErr(t, "expired invite", err, meta.ErrInviteInvalid)
	_, err = s.GetAccount(ctx, "gina")
	wantErr(t, "account of expired invite", err, meta.ErrNotFound)
	_, err = s.RedeemInvite(ctx, []byte("nope"), accountSpec("hank"))
	wantErr(t, "unknown invite", err, meta.ErrInviteInvalid)

	noErr(t, "CreateInvite", s.CreateInvite(ctx, meta.Invite{CodeHash: []byte("code4"), ExpiresAt: hour}))
	noErr(t, "DeleteInvite", s.DeleteInvite(ctx, []byte("code4")))
	wantErr(t, "DeleteInvite again", s.DeleteInvite(ctx, []byte("code4")), meta.ErrNotFound)
	_, err = s.RedeemInvite(ctx, []byte("code4"), accountSpec("ivan"))
	wantErr(t, "deleted invite", err, meta.ErrInviteInvalid)

	invites, err := s.ListInvites(ctx)
	noErr(t, "ListInvites", err)
	byCode := map[string]meta.Invite{}
	for _, inv := range invites {
		byCode[string(inv.CodeHash)] = inv
	}
	if len(byCode) != 3 {
		t.Fatalf("ListInvites = %+v, want code1..code3", invites)
	}
	if c := byCode["code1"]; c.UsedAt.IsZero() || c.UsedBy != carol.ID || c.UserName != "carol" || c.QuotaBytes != 5000 {
		t.Fatalf("code1 = %+v", c)
	}
	if c := byCode["code2"]; c.UsedBy != frank.ID {
		t.Fatalf("code2 = %+v, want used by %d", c, frank.ID)
	}
	if c := byCode["code3"]; !c.UsedAt.IsZero() || c.ExpiresAt.After(time.Now()) {
		t.Fatalf("code3 = %+v", c)
	}
}

func testSessions(t *testing.T, s meta.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "alice")
	hour := time.Now().Add(time.Hour).Truncate(time.Second)
	newSession := func(tok string, expires time.Time) error {
		return s.CreateSession(ctx, meta.Session{TokenHash: []byte(tok), AccountID: a.ID, ExpiresAt: expires})
	}
	noErr(t, "CreateSession", newSession("tok1", hour))
	sess, err := s.GetSession(ctx, []byte("tok1"))
	noErr(t, "GetSession", err)
	if sess.AccountID != a.ID || !sess.ExpiresAt.Equal(hour) || sess.CreatedAt.IsZero() ||
		sess.Account.ID != a.ID || sess.Account.Name != "alice" || sess.Account.State != meta.StateActive {
		t.Fatalf("session = %+v", sess)
	}
	wantErr(t, "duplicate token", newSession("tok1", hour), meta.ErrExists)
	wantErr(t, "unknown account", s.CreateSession(ctx, meta.Session{TokenHash: []byte("x"), AccountID: a.ID + 1000, ExpiresAt: hour}), meta.ErrNotFound)

	// An expired session is refused and deleted by the lookup itself.
	noErr(t, "CreateSession", newSession("tok2", time.Now().Add(-time.Second)))
	_, err = s.GetSession(ctx, []byte("tok2"))
	wantErr(t, "expired session", err, meta.ErrNotFound)
	n, err := s.PurgeExpiredSessions(ctx)
	noErr(t, "PurgeExpiredSessions", err)
	wantEq(t, "purged after lookup", n, int64(0))
	noErr(t, "CreateSession", newSession("tok3", time.Now().Add(-time.Second)))
	n, err = s.PurgeExpiredSessions(ctx)
	noErr(t, "PurgeExpiredSessions", err)
	wantEq(t, "purged", n, int64(1))

	noErr(t, "DeleteSession", s.DeleteSession(ctx, []byte("tok1")))
	_, err = s.GetSession(ctx, []byte("tok1"))
	wantErr(t, "deleted session", err, meta.ErrNotFound)
	noErr(t, "DeleteSession again", s.DeleteSession(ctx, []byte("tok1")))

	noErr(t, "CreateSession", newSession("tokA", hour))
	noErr(t, "CreateSession", newSession("tokB", hour))
	n, err = s.DeleteSessions(ctx, a.ID)
	noErr(t, "DeleteSessions", err)
	wantEq(t, "deleted sessions", n, int64(2))
	_, err = s.GetSession(ctx, []byte("tokA"))
	wantErr(t, "revoked session", err, meta.ErrNotFound)

	// A password change keeps sessions; disabling the account revokes them
	// and refuses new ones until it is enabled again.
	noErr(t, "CreateSession", newSession("tokC", hour))
	noErr(t, "UpdateLogin", s.UpdateLogin(ctx, a.ID, meta.Login{AuthHash: []byte("h"), WrappedMaster: []byte("m")}))
	_, err = s.GetSession(ctx, []byte("tokC"))
	noErr(t, "session after UpdateLogin", err)
	noErr(t, "disable", s.SetAccountState(ctx, "alice", true))
	_, err = s.GetSession(ctx, []byte("tokC"))
	wantErr(t, "session of disabled account", err, meta.ErrNotFound)
	wantErr(t, "login to disabled account", newSession("tokD", hour), meta.ErrNotPermitted)
	noErr(t, "enable", s.SetAccountState(ctx, "alice", false))
	noErr(t, "login after enabling", newSession("tokD", hour))
	_, err = s.GetSession(ctx, []byte("tokC"))
	wantErr(t, "revoked session stays revoked", err, meta.ErrNotFound)
}
