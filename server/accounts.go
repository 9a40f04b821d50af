package server

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/meta"
)

// transferKeyID names the transfer key in its at-rest associated data.
var transferKeyID = []byte("transfer-key")

func checkLen(what string, b []byte, n int) error {
	if len(b) != n {
		return badRequest("%s must be %d bytes, got %d", what, n, len(b))
	}
	return nil
}

// checkKDF accepts only parameters a client will also accept, so no account
// is created that its own clients would refuse.
func checkKDF(p crypto.KDFParams) error {
	if err := p.Check(); err != nil {
		return badRequest("KDF parameters: %v", err)
	}
	return nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	var req wire.RegisterRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkUserName(req.User); err != nil {
		return err
	}
	for _, c := range []struct {
		what string
		b    []byte
		n    int
	}{
		{"auth_key", req.AuthKey, crypto.KeySize},
		{"wrapped_master", req.WrappedMaster, crypto.WrappedMasterKeySize},
		{"account_public", req.AccountPublic, 32},
		{"account_private_sealed", req.AccountPrivateSealed, crypto.SealedPrivateKeySize},
		{"transfer_key", req.TransferKey, crypto.KeySize},
	} {
		if err := checkLen(c.what, c.b, c.n); err != nil {
			return err
		}
	}
	if err := checkKDF(req.KDF); err != nil {
		return err
	}
	if err := req.Layout.Check(); err != nil {
		return badRequest("layout: %v", err)
	}
	if req.Invite == "" || len(req.Invite) > 128 {
		return errf(wire.CodeInviteInvalid, "an invite code is required: ask the server's operator for one ('sealfs server invite')")
	}
	// Guessing invites is throttled like guessing passwords, and checked
	// before the slow hash, so bogus registrations cost the server little.
	addr := remoteHost(r)
	if d := s.limits.waitKeys(registerKeys(addr)); d > 0 {
		s.metrics.throttled()
		return &apiError{code: wire.CodeThrottled, msg: "too many failed registrations; retry in " + fmtDuration(d), retry: int(d/time.Second) + 1}
	}
	kdf, _ := json.Marshal(req.KDF)
	layout, _ := json.Marshal(req.Layout)
	data, wrapped, err := s.store.SealValue([]byte(req.User), transferKeyID, req.TransferKey)
	if err != nil {
		return err
	}
	_, err = s.meta.RedeemInvite(r.Context(), inviteHash(req.Invite), meta.NewAccount{
		Name: req.User, AuthHash: hashAuthKey(req.AuthKey), KDF: string(kdf),
		WrappedMaster: req.WrappedMaster, AccountPub: req.AccountPublic, AccountPrivSealed: req.AccountPrivateSealed,
		TransferKey: meta.Sealed{Data: data, KEKID: wrapped.KEKID, WrappedKey: wrapped.WrappedKey},
		Layout:      string(layout),
	})
	if errors.Is(err, meta.ErrInviteInvalid) {
		s.limits.failKeys(registerKeys(addr))
	}
	if errors.Is(err, meta.ErrExists) {
		return errf(wire.CodeExists, "the user name %q is taken", req.User)
	}
	if err != nil {
		return err
	}
	s.log.Info("account registered", "user", req.User)
	writeJSON(w, http.StatusCreated, struct{}{})
	return nil
}

func (s *Server) prelogin(w http.ResponseWriter, r *http.Request) error {
	var req wire.PreloginRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkUserName(req.User); err != nil {
		return err
	}
	p := crypto.DefaultKDFParams(s.fakeSalt(req.User))
	if acct, err := s.meta.GetAccount(r.Context(), req.User); err == nil {
		if err := json.Unmarshal([]byte(acct.KDF), &p); err != nil {
			return err
		}
	} else if !errors.Is(err, meta.ErrNotFound) {
		return err
	}
	writeJSON(w, http.StatusOK, &wire.PreloginResponse{KDF: p})
	return nil
}

// remoteHost is the client's address for throttling. Forwarded headers are
// not trusted: anyone could set them.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

var errBadCredentials = errf(wire.CodeBadCredentials, "wrong user name or password")

// verifyLogin checks user and auth key under the throttle. Unknown users get
// the same answer after the same work as a wrong password.
func (s *Server) verifyLogin(r *http.Request, user string, authKey []byte) (meta.Account, error) {
	addr := remoteHost(r)
	if d := s.limits.wait(user, addr); d > 0 {
		s.metrics.throttled()
		secs := int(d/time.Second) + 1
		return meta.Account{}, &apiError{code: wire.CodeThrottled, msg: "too many failed logins; retry in " + fmtDuration(d), retry: secs}
	}
	acct, err := s.meta.GetAccount(r.Context(), user)
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return meta.Account{}, err
	}
	if !checkAuthKey(acct.AuthHash, authKey) || err != nil {
		s.limits.fail(user, addr)
		return meta.Account{}, errBadCredentials
	}
	s.limits.succeed(user, addr)
	if acct.State != meta.StateActive {
		return meta.Account{}, errf(wire.CodeAccountDisabled, "the account is disabled; ask the server's operator")
	}
	return acct, nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req wire.LoginRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	if err := checkUserName(req.User); err != nil {
		return errBadCredentials
	}
	acct, err := s.verifyLogin(r, req.User, req.AuthKey)
	if err != nil {
		return err
	}
	token, hash := newToken()
	now := time.Now()
	exp := now.Add(s.cfg.SessionTTL)
	if err := s.meta.CreateSession(r.Context(), meta.Session{TokenHash: hash, AccountID: acct.ID, CreatedAt: now, ExpiresAt: exp}); err != nil {
		if errors.Is(err, meta.ErrNotPermitted) {
			return errf(wire.CodeAccountDisabled, "the account is disabled; ask the server's operator")
		}
		return err
	}
	view, err := accountView(acct)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, &wire.LoginResponse{Token: token, ExpiresAt: exp.Unix(), Account: view})
	return nil
}

func accountView(a meta.Account) (wire.Account, error) {
	v := wire.Account{User: a.Name, WrappedMaster: a.WrappedMaster, AccountPublic: a.AccountPub,
		AccountPrivateSealed: a.AccountPrivSealed, QuotaBytes: a.QuotaBytes, UsedBytes: a.UsedBytes}
	if err := json.Unmarshal([]byte(a.KDF), &v.KDF); err != nil {
		return v, err
	}
	if err := json.Unmarshal([]byte(a.Layout), &v.Layout); err != nil {
		return v, err
	}
	return v, nil
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	err := s.meta.DeleteSession(r.Context(), principalOf(r).token)
	s.sessions.revoked()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	// Read afresh: the request's account may come from the session
	// cache, and this answer carries the usage statfs shows and the
	// wrapped key a password change replaced.
	acct, err := s.meta.GetAccountByID(r.Context(), principalOf(r).account.ID)
	if err != nil {
		return err
	}
	view, err := accountView(acct)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, &view)
	return nil
}

func (s *Server) passwd(w http.ResponseWriter, r *http.Request) error {
	var req wire.PasswdRequest
	if err := decodeJSON(w, r, wire.MaxJSONBody, &req); err != nil {
		return err
	}
	p := principalOf(r)
	if _, err := s.verifyLogin(r, p.account.Name, req.AuthKey); err != nil {
		return err
	}
	if err := checkLen("new_auth_key", req.NewAuthKey, crypto.KeySize); err != nil {
		return err
	}
	if err := checkLen("new_wrapped_master", req.NewWrappedMaster, crypto.WrappedMasterKeySize); err != nil {
		return err
	}
	if err := checkKDF(req.NewKDF); err != nil {
		return err
	}
	kdf, _ := json.Marshal(req.NewKDF)
	err := s.meta.UpdateLogin(r.Context(), p.account.ID, meta.Login{AuthHash: hashAuthKey(req.NewAuthKey), KDF: string(kdf), WrappedMaster: req.NewWrappedMaster})
	s.sessions.revoked() // the remembered accounts hold the old login
	if err != nil {
		return err
	}
	s.log.Info("password changed", "user", p.account.Name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
