package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/remote/wire"
)

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
	if r.auth && r.method != http.MethodGet && r.method != http.MethodHead {
		// Every attempt of this change carries the same key, so that a
		// retry after a lost answer gets the first attempt's answer
		// instead of applying the change again (protocol.md).
		if r.header == nil {
			r.header = http.Header{}
		}
		r.header.Set(wire.HeaderIdempotencyKey, crypto.NewID().String())
	}
	relogged := false
	busy, failures := 0, 0
	var retried error // the failure the loop is retrying, if any
	for {
		token := c.Token()
		status, hdr, err := c.once(ctx, r, token)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return gaveUp(ctx, retried)
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
		case status != 0 && !retryableStatus(status), IsCode(err, wire.CodeDamaged),
			IsCode(err, wire.CodeInsufficientStorage):
			// A full disk does not empty itself within a retry's
			// backoff: the caller gets the answer (ENOSPC on the
			// mount) instead of a timeout.
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
		retried = err
		if sleep(ctx, wait) != nil {
			return gaveUp(ctx, retried)
		}
	}
}

// gaveUp is the error of a request whose caller's deadline or cancellation
// ended it between retries: the caller's reason, which errors.Is finds, and
// the failure that was being retried, which says why the time ran out (a
// server that refuses connections, say). The failure is text only, so an
// errno inside it cannot become the caller's.
func gaveUp(ctx context.Context, retried error) error {
	cause := context.Cause(ctx)
	if retried == nil || isContextErr(retried) {
		return cause
	}
	return fmt.Errorf("%w while retrying after: %v", cause, retried)
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
