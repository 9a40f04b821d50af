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
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/netbatch"
	"github.com/sealfs/sealfs/remote/wire"
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
	c.user, c.authKey = user, authKey
	c.mu.Unlock()
}

// OnTokenChange registers f to be told of every new session token, so a
// caller can persist the token a transparent re-login obtained.
func (c *Client) OnTokenChange(f func(token string, expiresAt int64)) {
	c.mu.Lock()
	c.onToken = f
	c.mu.Unlock()
}

// request is one API call. body holds segments sent back to back, so a
// caller can frame a chunk without copying it; being plain memory, the body
// can be sent again on every retry.
type request struct {
	method string
	path   string
	query  url.Values
	header http.Header
	ctype  string
	body   [][]byte
	auth   bool
	// out, when set, receives the JSON answer.
	out any
	// raw, when set, receives the answer's body bytes (appended to
	// (*raw)[:0], so a caller can reuse a buffer) and respHeader its
	// headers.
	raw        *[]byte
	rawLimit   int64
	respHeader *http.Header
	// bulk sends the request over the HTTP/1.1 connections of bulk
	// transfers.
	bulk bool
}

// jsonRequest returns a request with v encoded as its JSON body.
func jsonRequest(method, path string, v any, out any) (*request, error) {
	r := &request{method: method, path: path, out: out, auth: true}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		r.body = [][]byte{b}
		r.ctype = wire.ContentTypeJSON
	}
	return r, nil
}

// maxJSONAnswer bounds a JSON answer: a manifest of 2^21 chunks is 96 MiB,
// in base64 128 MiB.
const maxJSONAnswer = 160 << 20

// do sends r with retries and one transparent re-login, and decodes the
// answer.
func (c *Client) do(ctx context.Context, r *request) error {
	relogged := false
	busy, failures := 0, 0
	for {
		token := c.Token()
		status, hdr, err := c.once(ctx, r, token)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if r.auth && IsUnauthorized(err) && !relogged && c.canRelogin() {
			relogged = true
			if lerr := c.relogin(ctx, token); lerr != nil {
				return fmt.Errorf("session expired and logging in again failed: %w", lerr)
			}
			continue
		}
		var wait time.Duration
		switch {
		case status != 0 && !retryableStatus(status), IsCode(err, wire.CodeDamaged):
			return err
		case status == 0 && !retryableNetErr(err):
			return err
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
			wait = retryAfter(hdr, time.Now())
			if wait > c.retry.Max*4 {
				// A long throttle (failed logins) is not worth
				// sleeping through silently; say so.
				return err
			}
		}
		if IsCode(err, wire.CodeTooManyUploads) && busy < maxBusyRetries {
			// The account's upload slots are taken (by this client's
			// other requests or another device): a wait, not a failure.
			busy++
		} else if failures++; failures >= c.retry.Attempts {
			return err
		}
		if wait == 0 {
			wait = c.retry.backoff(max(failures, 1))
		}
		if serr := sleep(ctx, wait); serr != nil {
			return serr
		}
	}
}

// maxBusyRetries bounds the waits for a free upload slot (about a minute
// with the server's Retry-After of one second).
const maxBusyRetries = 60

// retryableNetErr reports whether a transport failure may pass: anything
// but a refused certificate and a malformed request.
func retryableNetErr(err error) bool {
	var fm *FingerprintMismatchError
	var ut *UntrustedCertError
	return !errors.As(err, &fm) && !errors.As(err, &ut) && !errors.Is(err, errBadRequest)
}

var errBadRequest = errors.New("cannot build request")

// once makes one attempt. status is 0 when no answer arrived.
func (c *Client) once(ctx context.Context, r *request, token string) (int, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := c.base + wire.APIPrefix + r.path
	if r.path == "/healthz" {
		u = c.base + r.path
	}
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	var n int64
	if len(r.body) > 0 {
		body = segments(r.body)
		for _, s := range r.body {
			n += int64(len(s))
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if body != nil {
		req.ContentLength = n
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(segments(r.body)), nil }
		req.Header.Set("Content-Type", r.ctype)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set(wire.HeaderClient, c.id.String())
	if r.auth && token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := c.hcs[int(c.next.Add(1))%len(c.hcs)]
	if r.bulk {
		hc = c.bulk
	}
	resp, err := hc.Do(req)
	if err != nil {
		if te := classifyTLSErr(err, c.host); te != nil {
			return 0, nil, te
		}
		return 0, nil, &NetError{URL: c.base, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, resp.Header, c.apiError(r, resp)
	}
	if r.respHeader != nil {
		*r.respHeader = resp.Header
	}
	switch {
	case r.raw != nil:
		b, err := readBody(resp, (*r.raw)[:0], r.rawLimit)
		if err != nil {
			return 0, nil, &NetError{URL: c.base, Err: err}
		}
		*r.raw = b
	case r.out != nil:
		b, err := readBody(resp, nil, maxJSONAnswer)
		if err != nil {
			return 0, nil, &NetError{URL: c.base, Err: err}
		}
		if err := json.Unmarshal(b, r.out); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("%s %s: the server's answer is not valid JSON: %v", r.method, r.path, err)
		}
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	}
	return resp.StatusCode, resp.Header, nil
}

// segments returns a reader over the body segments.
func segments(parts [][]byte) io.Reader {
	if len(parts) == 1 {
		return bytes.NewReader(parts[0])
	}
	rs := make([]io.Reader, len(parts))
	for i, p := range parts {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}

// readBody appends the body to dst, refusing more than limit bytes.
func readBody(resp *http.Response, dst []byte, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("answer of %d bytes exceeds the limit of %d", resp.ContentLength, limit)
	}
	if resp.ContentLength >= 0 {
		n := int(resp.ContentLength)
		if cap(dst) < n {
			dst = make([]byte, 0, n)
		}
		dst = dst[:n]
		if _, err := io.ReadFull(resp.Body, dst); err != nil {
			return nil, err
		}
		return dst, nil
	}
	buf := bytes.NewBuffer(dst)
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("answer exceeds the limit of %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// apiError decodes a non-2xx answer. A body that is not the protocol's
// error object (a proxy's HTML page, say) still yields a typed error whose
// code follows from the status.
func (c *Client) apiError(r *request, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	we := new(wire.Error)
	if err := json.Unmarshal(b, we); err != nil || we.Code == "" {
		we = &wire.Error{Code: codeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(b))}
		if len(we.Message) > 200 || we.Message == "" {
			we.Message = http.StatusText(resp.StatusCode)
		}
	}
	return &APIError{Status: resp.StatusCode, Method: r.method, Path: r.path, Wire: we}
}

// codeForStatus guesses the protocol code of a status without a body.
func codeForStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return wire.CodeUnauthorized
	case status == http.StatusNotFound:
		return wire.CodeNotFound
	case status == http.StatusTooManyRequests:
		return wire.CodeThrottled
	case status == http.StatusRequestEntityTooLarge:
		return wire.CodeTooLarge
	case status == http.StatusServiceUnavailable, status == http.StatusBadGateway, status == http.StatusGatewayTimeout:
		return wire.CodeUnavailable
	case status >= 500:
		return wire.CodeInternal
	}
	return wire.CodeBadRequest
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
	user, key := c.user, c.authKey
	c.mu.Unlock()
	_, err := c.Login(ctx, user, key)
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
