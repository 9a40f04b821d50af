package remote

import (
	"context"
	"net/http"

	"github.com/sealfs/sealfs/remote/wire"
)

// Health asks GET /healthz. It needs no account, so it is how a client
// checks that a URL is a reachable sealfs server with a certificate it
// trusts before it spends a password on it.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, &request{method: http.MethodGet, path: "/healthz"})
}

// Register creates an account with an invite code.
func (c *Client) Register(ctx context.Context, req *wire.RegisterRequest) error {
	r, err := jsonRequest(http.MethodPost, "/register", req, nil)
	if err != nil {
		return err
	}
	r.auth = false
	return c.do(ctx, r)
}

// Prelogin returns the KDF parameters of user. For an unknown user they are
// fake but stable, so a wrong user name shows only at login, as
// bad_credentials.
func (c *Client) Prelogin(ctx context.Context, user string) (wire.KDFParams, error) {
	var out wire.PreloginResponse
	r, err := jsonRequest(http.MethodPost, "/prelogin", &wire.PreloginRequest{User: user}, &out)
	if err != nil {
		return out.KDF, err
	}
	r.auth = false
	return out.KDF, c.do(ctx, r)
}

// Login opens a session with the auth key derived from the password and
// installs its token in the client.
func (c *Client) Login(ctx context.Context, user string, authKey []byte) (*wire.LoginResponse, error) {
	out := new(wire.LoginResponse)
	r, err := jsonRequest(http.MethodPost, "/login", &wire.LoginRequest{User: user, AuthKey: authKey}, out)
	if err != nil {
		return nil, err
	}
	r.auth = false
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	c.setSession(out.Token, out.ExpiresAt)
	return out, nil
}

// Logout revokes the client's session token on the server. The client
// forgets its credentials too, so it cannot log itself back in.
func (c *Client) Logout(ctx context.Context) error {
	c.mu.Lock()
	c.authKey = nil
	c.mu.Unlock()
	r, _ := jsonRequest(http.MethodPost, "/logout", nil, nil)
	if err := c.do(ctx, r); err != nil {
		return err
	}
	c.SetToken("")
	return nil
}

// Account returns the account's sealed key material, layout, quota and
// usage.
func (c *Client) Account(ctx context.Context) (*wire.Account, error) {
	out := new(wire.Account)
	r, _ := jsonRequest(http.MethodGet, "/account", nil, out)
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	return out, nil
}

// Passwd replaces the password's auth key, KDF parameters and wrapped
// master key in one step. Sessions stay valid. On success the client's
// re-login credentials switch to the new auth key.
func (c *Client) Passwd(ctx context.Context, req *wire.PasswdRequest) error {
	r, err := jsonRequest(http.MethodPost, "/passwd", req, nil)
	if err != nil {
		return err
	}
	if err := c.do(ctx, r); err != nil {
		return err
	}
	c.mu.Lock()
	if c.authKey != nil {
		c.authKey = req.NewAuthKey
	}
	c.mu.Unlock()
	return nil
}
