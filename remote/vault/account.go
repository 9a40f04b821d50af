package vault

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote"
	"github.com/sealfs/sealfs/remote/wire"
)

// ErrWrongPassword means the password does not open the account: the
// server refused its auth key, or the master key did not unwrap. A wrong
// user name looks the same, on purpose: the server does not reveal which
// accounts exist.
var ErrWrongPassword = errors.New("wrong password or unknown user")

// RegisterParams describe a new account.
type RegisterParams struct {
	User     string
	Invite   string
	Password []byte
	// KDF are the password KDF parameters; a missing salt is drawn
	// afresh, and parameters below crypto.MinKDFParams are refused.
	KDF crypto.KDFParams
	// Layout is the account's chunk layout for new files.
	Layout crypto.Layout
}

// Register creates an account and its vault: a random master key wrapped
// under the password, an account key pair, and the transfer key, which is
// the one purpose key the server ever receives. It then logs in.
func Register(ctx context.Context, c *remote.Client, p RegisterParams) (*Vault, *wire.Account, error) {
	kdf := p.KDF
	if len(kdf.Salt) == 0 {
		kdf.Salt = crypto.RandomBytes(crypto.SaltSize)
	}
	if err := checkLayout(p.Layout); err != nil {
		return nil, nil, err
	}
	lk, err := crypto.DeriveLoginKeys(p.Password, kdf)
	if err != nil {
		return nil, nil, fmt.Errorf("password KDF: %w", err)
	}
	master := crypto.NewMasterKey()
	wrapped, err := crypto.WrapMasterKey(lk.WrapKey, master)
	if err != nil {
		return nil, nil, err
	}
	keys, err := crypto.DeriveKeys(master)
	if err != nil {
		return nil, nil, err
	}
	pair, err := crypto.NewAccountKeyPair(keys)
	if err != nil {
		return nil, nil, err
	}
	err = c.Register(ctx, &wire.RegisterRequest{
		User:                 p.User,
		Invite:               p.Invite,
		AuthKey:              lk.AuthKey,
		KDF:                  kdf,
		WrappedMaster:        wrapped,
		AccountPublic:        pair.Public,
		AccountPrivateSealed: pair.SealedPrivate,
		TransferKey:          keys.Transfer,
		Layout:               p.Layout,
	})
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Login(ctx, p.User, lk.AuthKey)
	if err != nil {
		return nil, nil, err
	}
	c.SetCredentials(p.User, lk.AuthKey)
	v, err := New(c, p.User, master, resp.Account.Layout)
	return v, &resp.Account, err
}

// Login opens a session with nothing but the password (pre-login, KDF,
// login, unwrap), as a new device does.
func Login(ctx context.Context, c *remote.Client, user string, password []byte) (*Vault, *wire.Account, error) {
	kdf, err := c.Prelogin(ctx, user)
	if err != nil {
		return nil, nil, err
	}
	lk, err := crypto.DeriveLoginKeys(password, kdf)
	if err != nil {
		return nil, nil, kdfError(err)
	}
	resp, err := c.Login(ctx, user, lk.AuthKey)
	if remote.IsBadCredentials(err) {
		return nil, nil, fmt.Errorf("%w (%v)", ErrWrongPassword, err)
	}
	if err != nil {
		return nil, nil, err
	}
	c.SetCredentials(user, lk.AuthKey)
	return open(c, user, lk, &resp.Account)
}

// Unlock opens the vault of a device that holds a session token: the
// wrapped master key comes from the account, and the password unwraps it.
// When the session has expired or was revoked it logs in again with the
// same password, so a caller persisting the token should register
// Client.OnTokenChange first. Afterwards the client can re-login by itself.
func Unlock(ctx context.Context, c *remote.Client, user string, password []byte) (*Vault, *wire.Account, error) {
	if c.Token() == "" {
		return Login(ctx, c, user, password)
	}
	acct, err := c.Account(ctx)
	if remote.IsUnauthorized(err) {
		return Login(ctx, c, user, password)
	}
	if err != nil {
		return nil, nil, err
	}
	lk, err := crypto.DeriveLoginKeys(password, acct.KDF)
	if err != nil {
		return nil, nil, kdfError(err)
	}
	v, acct2, err := open(c, user, lk, acct)
	if err != nil {
		return nil, nil, err
	}
	c.SetCredentials(user, lk.AuthKey)
	return v, acct2, nil
}

// open unwraps the master key of acct and builds the vault.
func open(c *remote.Client, user string, lk crypto.LoginKeys, acct *wire.Account) (*Vault, *wire.Account, error) {
	master, err := crypto.UnwrapMasterKey(lk.WrapKey, acct.WrappedMaster)
	if errors.Is(err, crypto.ErrAuthentication) {
		return nil, nil, ErrWrongPassword
	}
	if err != nil {
		return nil, nil, fmt.Errorf("the account's wrapped master key is damaged: %w", err)
	}
	v, err := New(c, user, master, acct.Layout)
	if err != nil {
		return nil, nil, err
	}
	if _, err := crypto.OpenAccountKeyPair(v.keys, crypto.AccountKeyPair{Public: acct.AccountPublic, SealedPrivate: acct.AccountPrivateSealed}); err != nil {
		return nil, nil, fmt.Errorf("the account's key pair does not open with its master key (tampered or corrupt data on the server): %w", err)
	}
	return v, acct, nil
}

// kdfError explains KDF parameters the client refuses to run.
func kdfError(err error) error {
	if errors.Is(err, crypto.ErrWeakParameters) {
		return fmt.Errorf("the server offered password KDF parameters below the accepted minimum; refusing to send a key derived with them (%w)", err)
	}
	return fmt.Errorf("the server's password KDF parameters are unusable: %w", err)
}

// ChangePassword re-wraps the master key under a new password with a fresh
// salt. newKDF's salt is ignored; zero-valued newKDF keeps the current
// parameters. Sessions stay valid, so other devices keep working; the old
// password stops working at once.
func ChangePassword(ctx context.Context, c *remote.Client, user string, oldPassword, newPassword []byte, newKDF crypto.KDFParams) error {
	acct, err := c.Account(ctx)
	if err != nil {
		return err
	}
	oldKeys, err := crypto.DeriveLoginKeys(oldPassword, acct.KDF)
	if err != nil {
		return kdfError(err)
	}
	master, err := crypto.UnwrapMasterKey(oldKeys.WrapKey, acct.WrappedMaster)
	if errors.Is(err, crypto.ErrAuthentication) {
		return ErrWrongPassword
	}
	if err != nil {
		return fmt.Errorf("the account's wrapped master key is damaged: %w", err)
	}
	if newKDF.Algorithm == 0 {
		newKDF = acct.KDF
	}
	newKDF.Salt = crypto.RandomBytes(crypto.SaltSize)
	newKeys, err := crypto.DeriveLoginKeys(newPassword, newKDF)
	if err != nil {
		return fmt.Errorf("new password KDF: %w", err)
	}
	wrapped, err := crypto.WrapMasterKey(newKeys.WrapKey, master)
	if err != nil {
		return err
	}
	err = c.Passwd(ctx, &wire.PasswdRequest{
		AuthKey:          oldKeys.AuthKey,
		NewAuthKey:       newKeys.AuthKey,
		NewKDF:           newKDF,
		NewWrappedMaster: wrapped,
	})
	if remote.IsBadCredentials(err) {
		return ErrWrongPassword
	}
	if err != nil {
		return err
	}
	c.SetCredentials(user, newKeys.AuthKey)
	return nil
}
