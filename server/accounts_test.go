package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server"
	"github.com/sealfs/sealfs/server/meta"
)

func TestRegisterInvites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	c := e.anon("")

	// No invite, an unknown one, one for another name.
	_, req := newAccount(t, "alice", "", testLayout)
	c.json("POST", "/v1/register", req).wantErr(t, 403, wire.CodeInviteInvalid)
	req.Invite = "sfi_not-a-real-invite"
	c.json("POST", "/v1/register", req).wantErr(t, 403, wire.CodeInviteInvalid)
	req.Invite = e.invite("bob", 0)
	c.json("POST", "/v1/register", req).wantErr(t, 403, wire.CodeInviteInvalid)

	// An expired invite.
	expired, err := server.NewInvite(ctx, e.meta, "alice", -time.Minute, 0)
	must(t, err)
	req.Invite = expired
	c.json("POST", "/v1/register", req).wantErr(t, 403, wire.CodeInviteInvalid)
	if _, err := e.meta.GetAccount(ctx, "alice"); err == nil {
		t.Fatal("an account exists after refused registrations")
	}

	// The right one works once.
	code := e.invite("alice", 0)
	req.Invite = code
	r := c.json("POST", "/v1/register", req)
	r.want(t, 201, nil)
	if string(bytes.TrimSpace(r.body)) != "{}" {
		t.Fatalf("register answered %q, want {}", r.body)
	}
	c.json("POST", "/v1/register", req).wantErr(t, 403, wire.CodeInviteInvalid)

	// A second invite for a taken name: 409 exists, and the invite stays
	// unused.
	again := e.invite("alice", 0)
	_, req2 := newAccount(t, "alice", again, testLayout)
	c.json("POST", "/v1/register", req2).wantErr(t, 409, wire.CodeExists)
	invs, err := e.meta.ListInvites(ctx)
	must(t, err)
	used := 0
	for _, inv := range invs {
		if !inv.UsedAt.IsZero() {
			used++
		}
	}
	if len(invs) != 4 || used != 1 {
		t.Fatalf("%d invites, %d used; want 4 and 1", len(invs), used)
	}

	// The stored account has what was sent, and the server keeps a hash of
	// the auth key, not the key.
	a := e.acct("alice")
	if !bytes.Equal(a.WrappedMaster, req.WrappedMaster) || !bytes.Equal(a.AccountPub, req.AccountPublic) {
		t.Fatal("stored key material differs from the registration")
	}
	if bytes.Contains(a.AuthHash, req.AuthKey) || bytes.Contains(a.TransferKey.Data, req.TransferKey) {
		t.Fatal("the server stores the auth key or the transfer key in clear")
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.anon("")
	code := e.invite("carol", 0)
	for name, mutate := range map[string]func(r *wire.RegisterRequest){
		"bad user name":    func(r *wire.RegisterRequest) { r.User = "carol/../x" },
		"empty user name":  func(r *wire.RegisterRequest) { r.User = "" },
		"short auth key":   func(r *wire.RegisterRequest) { r.AuthKey = r.AuthKey[:31] },
		"short wrapped":    func(r *wire.RegisterRequest) { r.WrappedMaster = r.WrappedMaster[1:] },
		"no transfer key":  func(r *wire.RegisterRequest) { r.TransferKey = nil },
		"no public key":    func(r *wire.RegisterRequest) { r.AccountPublic = nil },
		"weak kdf":         func(r *wire.RegisterRequest) { r.KDF.MemoryKiB = 1024 },
		"short salt":       func(r *wire.RegisterRequest) { r.KDF.Salt = r.KDF.Salt[:4] },
		"bad layout":       func(r *wire.RegisterRequest) { r.Layout.BlockSize = 3000 },
		"zero layout":      func(r *wire.RegisterRequest) { r.Layout = crypto.Layout{} },
		"sealed priv size": func(r *wire.RegisterRequest) { r.AccountPrivateSealed = append(r.AccountPrivateSealed, 0) },
	} {
		_, req := newAccount(t, "carol", code, testLayout)
		mutate(req)
		if e := c.json("POST", "/v1/register", req).wantErr(t, 400, wire.CodeBadRequest); testing.Verbose() {
			t.Logf("%s: %s", name, e.Message)
		}
	}
	// None of them used the invite.
	_, req := newAccount(t, "carol", code, testLayout)
	c.json("POST", "/v1/register", req).want(t, 201, nil)
}

func TestPrelogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.anon("")
	prelogin := func(user string) (wire.KDFParams, map[string]any) {
		t.Helper()
		r := c.json("POST", "/v1/prelogin", &wire.PreloginRequest{User: user})
		var p wire.PreloginResponse
		r.want(t, 200, &p)
		var shape map[string]any
		must(t, json.Unmarshal(r.body, &shape))
		return p.KDF, shape
	}

	// A real account whose parameters are the defaults, as a real client's
	// are. The server never checks the derivation, so no slow KDF is run.
	kdf := crypto.DefaultKDFParams(crypto.RandomBytes(crypto.SaltSize))
	_, req := newAccount(t, "realuser", e.invite("realuser", 0), testLayout)
	req.KDF = kdf
	c.json("POST", "/v1/register", req).want(t, 201, nil)

	real1, realShape := prelogin("realuser")
	if !reflect.DeepEqual(real1, kdf) {
		t.Fatalf("prelogin of a real user: %+v, want the registered %+v", real1, kdf)
	}
	ghost1, ghostShape := prelogin("ghost")
	ghost2, _ := prelogin("ghost")
	other, _ := prelogin("ghost2")
	if !bytes.Equal(ghost1.Salt, ghost2.Salt) {
		t.Fatal("the fake salt of an unknown user changes between calls")
	}
	if bytes.Equal(ghost1.Salt, other.Salt) || bytes.Equal(ghost1.Salt, real1.Salt) {
		t.Fatal("fake salts repeat across users")
	}
	if len(ghost1.Salt) != crypto.SaltSize || ghost1.Check() != nil {
		t.Fatalf("fake parameters %+v are not valid ones", ghost1)
	}
	// Same shape: identical JSON apart from the salt's value.
	for _, s := range []map[string]any{realShape, ghostShape} {
		s["kdf"].(map[string]any)["salt"] = "SALT"
	}
	if !reflect.DeepEqual(realShape, ghostShape) {
		t.Fatalf("prelogin answers differ in shape:\nreal  %v\nghost %v", realShape, ghostShape)
	}
	// A user with the test's minimum parameters gets those back.
	m := e.register("minuser")
	if p, _ := prelogin("minuser"); !reflect.DeepEqual(p, m.a.kdf) {
		t.Fatalf("prelogin: %+v, want %+v", p, m.a.kdf)
	}

	c.json("POST", "/v1/prelogin", &wire.PreloginRequest{User: "not a name"}).wantErr(t, 400, wire.CodeBadRequest)
	c.raw("POST", "/v1/prelogin", []byte(`{"user":"x","extra":1}`), "Content-Type", wire.ContentTypeJSON).wantErr(t, 400, wire.CodeBadRequest)
}

// TestPreloginSecretStable checks that the fake salt is keyed by the server
// secret: the same secret gives the same salt (restarts), another does not.
func TestPreloginSecretStable(t *testing.T) {
	t.Parallel()
	secret := crypto.RandomBytes(32)
	salt := func(secret []byte) []byte {
		e := newEnv(t, server.Config{Secret: secret})
		var p wire.PreloginResponse
		e.anon("").json("POST", "/v1/prelogin", &wire.PreloginRequest{User: "ghost"}).want(t, 200, &p)
		return p.KDF.Salt
	}
	a, b, other := salt(secret), salt(secret), salt(crypto.RandomBytes(32))
	if !bytes.Equal(a, b) || bytes.Equal(a, other) {
		t.Fatal("fake salts do not follow the server secret")
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	anon := e.anon("")

	// The login response carries what the client needs to open its vault.
	lr := c.login(t)
	lk, err := crypto.DeriveLoginKeys(c.a.pass, lr.Account.KDF)
	must(t, err)
	master, err := crypto.UnwrapMasterKey(lk.WrapKey, lr.Account.WrappedMaster)
	must(t, err)
	if !bytes.Equal(master, c.a.master) || lr.Account.User != "alice" || lr.Account.Layout != testLayout {
		t.Fatal("the login response does not open the vault")
	}
	if d := time.Until(time.Unix(lr.ExpiresAt, 0)); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Fatalf("session expires in %v, want the 30-day default", d)
	}

	wrong := append([]byte(nil), c.a.authKey...)
	wrong[0] ^= 1
	e1 := anon.json("POST", "/v1/login", &wire.LoginRequest{User: "alice", AuthKey: wrong}).wantErr(t, 401, wire.CodeBadCredentials)
	e2 := anon.json("POST", "/v1/login", &wire.LoginRequest{User: "nobody", AuthKey: c.a.authKey}).wantErr(t, 401, wire.CodeBadCredentials)
	if !reflect.DeepEqual(e1, e2) {
		t.Fatalf("wrong password and unknown user answer differently: %+v vs %+v", e1, e2)
	}
	anon.json("POST", "/v1/login", &wire.LoginRequest{User: "alice"}).wantErr(t, 401, wire.CodeBadCredentials)
	anon.json("POST", "/v1/login", &wire.LoginRequest{User: "bad user", AuthKey: c.a.authKey}).wantErr(t, 401, wire.CodeBadCredentials)

	// Sessions: GET /account works with a token and not without one.
	var acct wire.Account
	c.do("GET", "/v1/account", nil).want(t, 200, &acct)
	if acct.User != "alice" || acct.QuotaBytes != 0 || !bytes.Equal(acct.AccountPublic, lr.Account.AccountPublic) {
		t.Fatalf("account %+v", acct)
	}
	anon.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	bad := *c
	bad.token = "AAAA" + c.token[4:]
	bad.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	bad.token = string(bytes.Repeat([]byte("A"), 200))
	bad.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	anon.do("GET", "/v1/account", nil, "Authorization", "Basic "+c.token).wantErr(t, 401, wire.CodeUnauthorized)
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	other := c.session(t, e.fp)
	c.do("POST", "/v1/logout", nil).want(t, 204, nil)
	c.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	c.do("POST", "/v1/logout", nil).wantErr(t, 401, wire.CodeUnauthorized)
	c.getInode(rootID).wantErr(t, 401, wire.CodeUnauthorized)
	other.do("GET", "/v1/account", nil).want(t, 200, nil)
	c.login(t)
	c.do("GET", "/v1/account", nil).want(t, 200, nil)
}

func TestPasswd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	other := c.session(t, e.fp)

	newPass := []byte("a new password")
	newKDF := crypto.MinKDFParams
	newKDF.Salt = crypto.RandomBytes(crypto.SaltSize)
	lk, err := crypto.DeriveLoginKeys(newPass, newKDF)
	must(t, err)
	wrapped, err := crypto.WrapMasterKey(lk.WrapKey, c.a.master)
	must(t, err)
	req := &wire.PasswdRequest{AuthKey: c.a.authKey, NewAuthKey: lk.AuthKey, NewKDF: newKDF, NewWrappedMaster: wrapped}

	// The current password is required.
	bad := *req
	bad.AuthKey = lk.AuthKey
	c.json("POST", "/v1/passwd", &bad).wantErr(t, 401, wire.CodeBadCredentials)
	weak := *req
	weak.NewKDF.MemoryKiB = 16
	c.json("POST", "/v1/passwd", &weak).wantErr(t, 400, wire.CodeBadRequest)
	short := *req
	short.NewWrappedMaster = wrapped[:10]
	c.json("POST", "/v1/passwd", &short).wantErr(t, 400, wire.CodeBadRequest)
	e.anon("").json("POST", "/v1/passwd", req).wantErr(t, 401, wire.CodeUnauthorized)

	c.json("POST", "/v1/passwd", req).want(t, 204, nil)

	// Sessions survive: this one and the other device's.
	c.do("GET", "/v1/account", nil).want(t, 200, nil)
	other.do("GET", "/v1/account", nil).want(t, 200, nil)

	// The old password fails at once; the new one works and opens the
	// same master key.
	anon := e.anon("")
	anon.json("POST", "/v1/login", &wire.LoginRequest{User: "alice", AuthKey: c.a.authKey}).wantErr(t, 401, wire.CodeBadCredentials)
	var lr wire.LoginResponse
	anon.json("POST", "/v1/login", &wire.LoginRequest{User: "alice", AuthKey: lk.AuthKey}).want(t, 200, &lr)
	if !reflect.DeepEqual(lr.Account.KDF, newKDF) {
		t.Fatalf("login after passwd returns KDF %+v, want %+v", lr.Account.KDF, newKDF)
	}
	master, err := crypto.UnwrapMasterKey(lk.WrapKey, lr.Account.WrappedMaster)
	must(t, err)
	if !bytes.Equal(master, c.a.master) {
		t.Fatal("the new wrapped master key does not open the old master key")
	}
	var p wire.PreloginResponse
	anon.json("POST", "/v1/prelogin", &wire.PreloginRequest{User: "alice"}).want(t, 200, &p)
	if !bytes.Equal(p.KDF.Salt, newKDF.Salt) {
		t.Fatal("prelogin still returns the old salt")
	}
}

func TestDisabledAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, server.Config{})
	c := e.register("alice")
	must(t, e.meta.SetAccountState(context.Background(), "alice", true))
	// Disabling deletes the sessions.
	c.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	anon := e.anon("")
	anon.json("POST", "/v1/login", &wire.LoginRequest{User: "alice", AuthKey: c.a.authKey}).wantErr(t, 403, wire.CodeAccountDisabled)
	// Only correct credentials learn that the account is disabled.
	anon.json("POST", "/v1/login", &wire.LoginRequest{User: "alice", AuthKey: make([]byte, 32)}).wantErr(t, 401, wire.CodeBadCredentials)
	must(t, e.meta.SetAccountState(context.Background(), "alice", false))
	c.login(t)
	c.do("GET", "/v1/account", nil).want(t, 200, nil)
}

// TestSessionExpiry: docs/protocol.md says a token expires a fixed time
// after its login, used or not, and a fresh login works afterwards.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	const ttl = 1500 * time.Millisecond
	e := newEnv(t, server.Config{SessionTTL: ttl})
	c := e.register("alice")
	busy := c.session(t, e.fp)
	idle := c.session(t, e.fp)
	busy.do("GET", "/v1/account", nil).want(t, 200, nil)
	time.Sleep(ttl + 200*time.Millisecond)
	busy.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	idle.do("GET", "/v1/account", nil).wantErr(t, 401, wire.CodeUnauthorized)
	c.session(t, e.fp).do("GET", "/v1/account", nil).want(t, 200, nil)
}

// TestSessionCache checks what a server with a session stamp believes: it
// remembers a session for a few seconds, so a revocation by another
// process shows only once that process replaced the stamp (as sealfs
// server disable does), while a logout or password change through the
// server itself shows at once.
func TestSessionCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	stamp := filepath.Join(dir, server.SessionStampName)
	e := newEnvAt(t, dir, server.Config{SessionStamp: stamp})
	c := e.register("alice")
	root := "/v1/inodes/" + rootID.String()
	c.do("GET", root, nil).want(t, 200, nil)

	must(t, e.meta.SetAccountState(ctx, "alice", true))
	c.do("GET", root, nil).want(t, 200, nil) // remembered: the stamp did not change
	must(t, server.TouchSessionStamp(stamp))
	c.do("GET", root, nil).wantErr(t, 401, wire.CodeUnauthorized)

	must(t, e.meta.SetAccountState(ctx, "alice", false))
	must(t, server.TouchSessionStamp(stamp))
	c.login(t)
	c.do("GET", root, nil).want(t, 200, nil)
	must(t, server.TouchSessionStamp(stamp)) // twice within one clock tick: a new inode each time
	must(t, server.TouchSessionStamp(stamp))
	c.do("GET", root, nil).want(t, 200, nil)

	other := e.anon("")
	other.a = c.a
	other.login(t)
	other.do("GET", root, nil).want(t, 200, nil)
	c.do("POST", "/v1/logout", nil).want(t, 204, nil)
	c.do("GET", root, nil).wantErr(t, 401, wire.CodeUnauthorized)
	other.do("GET", root, nil).want(t, 200, nil)
	// The account view is read afresh, not from the remembered session:
	// after a password change it carries the new wrapped key.
	kdf, err := json.Marshal(c.a.kdf)
	must(t, err)
	newWrapped := bytes.Repeat([]byte{7}, crypto.WrappedMasterKeySize)
	acct, err := e.meta.GetAccount(ctx, "alice")
	must(t, err)
	must(t, e.meta.UpdateLogin(ctx, acct.ID, meta.Login{AuthHash: acct.AuthHash, KDF: string(kdf), WrappedMaster: newWrapped}))
	var view wire.Account
	other.do("GET", "/v1/account", nil).want(t, 200, &view)
	if !bytes.Equal(view.WrappedMaster, newWrapped) {
		t.Fatal("GET /v1/account answered from the remembered session")
	}
}
