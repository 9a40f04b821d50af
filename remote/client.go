// Package remote is the client of the sealfs HTTPS API (docs/protocol.md):
// one typed method per endpoint over a shared HTTP/2 connection, with the
// transport policy every caller needs and none should re-implement: server
// authentication by system roots, CA file or pinned fingerprint; a deadline
// on every request; retries with backoff and jitter on network errors, 5xx
// and 429 (never on other 4xx); and a transparent re-login when a session
// expires while the client holds the account's auth key.
//
// It knows nothing about plaintext. Sealing and opening is the job of
// remote/vault, which the CLI and the mount build on; this package only
// checks what it can check without the account's content keys (the transfer
// HMAC of downloaded chunks, given the transfer MAC).
package remote

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/netbatch"
)

// Options configure a Client.
type Options struct {
	// URL is the server's base URL, https://host[:port].
	URL string
	// Trust selects how the server's certificate is verified.
	Trust Trust
	// Timeout bounds one attempt of one request, body included (default 2
	// minutes: a full chunk on a slow link still fits).
	Timeout time.Duration
	// Retry is the retry policy (default DefaultRetry).
	Retry RetryPolicy
	// Connections is how many HTTP/2 connections requests are spread
	// over (default DefaultConnections).
	Connections int
	// UserAgent identifies the client in server logs.
	UserAgent string
	// ClientID is sent as the Sealfs-Client header on every request; the
	// server records it as the origin of the changes the client makes
	// (see Changes). The zero ID picks a random one, which is what a
	// client process should use: one ID per process, never shared.
	ClientID crypto.ID
}

// Client talks to one sealfs server as one account. It is safe for
// concurrent use; all requests share one connection pool (one HTTP/2
// connection in practice).
type Client struct {
	base    string // URL without trailing slash
	host    string
	hcs     []*http.Client // one HTTP/2 connection each, used in turn
	bulk    *http.Client   // HTTP/1.1 connections for chunk transfers
	next    atomic.Uint32
	timeout time.Duration
	retry   RetryPolicy
	ua      string
	id      crypto.ID

	mu      sync.Mutex
	token   string
	user    string
	authKey []byte
	refused error // the server's refusal of authKey; no login is tried again
	onToken func(token string, expiresAt int64)
	relogMu sync.Mutex // serialises re-logins so one expiry causes one login
}

// New returns a client for opts.URL. It does not contact the server.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(opts.URL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server URL %q is not of the form https://host[:port]", opts.URL)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q must use https:// (sealfs never talks in clear)", opts.URL)
	}
	if u.Path != "" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("server URL %q must be just https://host[:port]", opts.URL)
	}
	tc, err := tlsConfig(opts.Trust, u.Host)
	if err != nil {
		return nil, err
	}
	conns := opts.Connections
	if conns <= 0 {
		conns = DefaultConnections
	}
	hcs := make([]*http.Client, conns)
	for i := range hcs {
		hcs[i] = &http.Client{Transport: newTransport(tc), CheckRedirect: noRedirects}
	}
	c := &Client{
		base:    u.Scheme + "://" + u.Host,
		host:    u.Host,
		hcs:     hcs,
		bulk:    &http.Client{Transport: newBulkTransport(tc), CheckRedirect: noRedirects},
		timeout: opts.Timeout,
		retry:   opts.Retry,
		ua:      opts.UserAgent,
		id:      opts.ClientID,
	}
	if c.id.IsZero() {
		c.id = crypto.NewID()
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Minute
	}
	if c.retry.Attempts <= 0 {
		c.retry = DefaultRetry
	}
	if c.ua == "" {
		c.ua = "sealfs"
	}
	return c, nil
}

// DefaultConnections is how many HTTP/2 connections a client spreads its
// requests over. One connection serialises all TLS work of a direction on
// one goroutine per side; on a small machine that shares its cores between
// client and server, four connections let encryption use every core
// (measured: large downloads about 1.5-2x faster than over one).
const DefaultConnections = 4

// dialer opens the TCP connections of every transport.
var dialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}

// newTransport returns one pooled HTTP/2 transport.
func newTransport(tc *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tc.Clone(),
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 90 * time.Second,
		HTTP2: &http.HTTP2Config{
			// Large windows keep parallel 1 MiB chunk transfers streaming
			// instead of stalling on flow control.
			MaxReceiveBufferPerConnection: 64 << 20,
			MaxReceiveBufferPerStream:     8 << 20,
		},
	}
}

// newBulkTransport returns the HTTP/1.1 transport chunk transfers use.
// A 1 MiB answer over HTTP/2 is framed, copied through the stream's pipe
// and flow-controlled on both sides, and each frame hops between the
// server's goroutines; over HTTP/1.1 it is one TLS stream read straight
// into the caller's buffer. For a cold 1 GiB read on loopback that saved
// about 0.6 s of the mount's CPU and 0.5 s of the server's, an eighth of
// the total; uploads are framed the same way in the other direction. Each
// transfer in flight takes a connection of its own; up to 16 stay open
// between transfers.
func newBulkTransport(tc *tls.Config) *http.Transport {
	t := newTransport(tc)
	t.ForceAttemptHTTP2 = false
	t.HTTP2 = nil
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no HTTP/2
	t.TLSClientConfig.NextProtos = []string{"http/1.1"}
	t.MaxIdleConnsPerHost = 16
	// The request's headers and a small file's whole body then leave in
	// one TLS record and one write; with the default 4 KiB buffer a 10 KB
	// upload took three of each.
	t.WriteBufferSize = 64 << 10
	// A chunk's records leave in batches of netbatch.BufferSize, not one
	// socket write per 16 KiB record.
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := t.TLSClientConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		hctx, cancel := context.WithTimeout(ctx, t.TLSHandshakeTimeout)
		defer cancel()
		return netbatch.Client(hctx, raw, cfg)
	}
	return t
}

// noRedirects keeps the bearer token from following a redirect elsewhere;
// the protocol has none.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// URL returns the server's base URL.
func (c *Client) URL() string { return c.base }

// ClientID returns the ID the client sends as Sealfs-Client on every
// request, which the change feed names as the origin of its changes: a
// caller that caches recognizes its own changes there by it.
func (c *Client) ClientID() crypto.ID { return c.id }

// Close releases idle connections.
func (c *Client) Close() {
	for _, hc := range c.hcs {
		hc.CloseIdleConnections()
	}
	c.bulk.CloseIdleConnections()
}

// SetToken sets the session token sent as the bearer credential.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
}

// Token returns the current session token (it changes after a re-login).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// SetCredentials lets the client log in again by itself when the server
// answers 401 unauthorized (an expired or revoked session). The auth key is
// held in memory only.
func (c *Client) SetCredentials(user string, authKey []byte) {
	c.mu.Lock()
	c.user, c.authKey, c.refused = user, authKey, nil
	c.mu.Unlock()
}

// OnTokenChange registers f to be told of every new session token, so a
// caller can persist the token a transparent re-login obtained.
func (c *Client) OnTokenChange(f func(token string, expiresAt int64)) {
	c.mu.Lock()
	c.onToken = f
	c.mu.Unlock()
}

func (c *Client) canRelogin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user != "" && len(c.authKey) > 0
}

// relogin replaces the session that answered 401, unless another request
// already did.
func (c *Client) relogin(ctx context.Context, stale string) error {
	c.relogMu.Lock()
	defer c.relogMu.Unlock()
	if c.Token() != stale {
		return nil
	}
	c.mu.Lock()
	user, key, refused := c.user, c.authKey, c.refused
	c.mu.Unlock()
	if refused != nil {
		return refused
	}
	_, err := c.Login(ctx, user, key)
	if IsBadCredentials(err) {
		// The password was changed (sealfs passwd on another device):
		// the key will never work again, and every further attempt
		// would count against the account's failed logins, which
		// throttle the logins of all its devices.
		err = fmt.Errorf("%w; the password was probably changed on another device: start again with the new one", err)
		c.mu.Lock()
		c.refused = err
		c.mu.Unlock()
	}
	return err
}

// setSession installs a new token and tells the registered listener.
func (c *Client) setSession(token string, expiresAt int64) {
	c.mu.Lock()
	c.token = token
	f := c.onToken
	c.mu.Unlock()
	if f != nil {
		f(token, expiresAt)
	}
}
