package remote

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/sealfs/sealfs/remote/wire"
)

// APIError is a non-2xx answer of the server. It unwraps to the *wire.Error
// the server sent, so callers switch on stable codes with errors.As or with
// the Is… helpers below instead of parsing messages.
type APIError struct {
	Status int    // HTTP status
	Method string // request method
	Path   string // request path, without the query
	Wire   *wire.Error
}

// Error implements error with a message meant for people.
func (e *APIError) Error() string {
	msg := e.Wire.Message
	if msg == "" {
		msg = strings.ReplaceAll(e.Wire.Code, "_", " ")
	}
	return fmt.Sprintf("%s (%s, HTTP %d)", msg, e.Wire.Code, e.Status)
}

// Unwrap exposes the server's error body.
func (e *APIError) Unwrap() error { return e.Wire }

// Code returns the protocol error code of err, or "" when err is not an
// answer of the server.
func Code(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}

// IsCode reports whether err is a server answer with the given code.
func IsCode(err error, code string) bool { return err != nil && Code(err) == code }

// IsNotFound reports whether the server said the object does not exist (or
// belongs to another account, which the protocol makes indistinguishable).
func IsNotFound(err error) bool { return IsCode(err, wire.CodeNotFound) }

// IsExists reports whether a name, inode ID or chunk ID is already taken.
func IsExists(err error) bool { return IsCode(err, wire.CodeExists) }

// IsUnauthorized reports whether the session is missing, expired or revoked.
func IsUnauthorized(err error) bool { return IsCode(err, wire.CodeUnauthorized) }

// IsBadCredentials reports a wrong user or password; the server gives the
// same answer for both, and so must every message built on it.
func IsBadCredentials(err error) bool { return IsCode(err, wire.CodeBadCredentials) }

// IsVersionMismatch reports a failed If-Match / if_version condition.
func IsVersionMismatch(err error) bool { return IsCode(err, wire.CodeVersionMismatch) }

// MissingChunks returns the chunk IDs a missing_chunks answer lists.
func MissingChunks(err error) []wire.HexID {
	var we *wire.Error
	if errors.As(err, &we) && we.Code == wire.CodeMissingChunks {
		return we.Missing
	}
	return nil
}

// NetError means the server could not be reached or the connection broke;
// it carries the server's URL so a message can say which server is down.
type NetError struct {
	URL string
	Err error
}

// Error implements error with a message meant for people.
func (e *NetError) Error() string {
	return fmt.Sprintf("cannot reach %s: %s", e.URL, describeNetErr(e.Err))
}

// Unwrap exposes the underlying network error.
func (e *NetError) Unwrap() error { return e.Err }

// Refused reports whether nothing listens at the server's address, the usual
// sign that the server is not running.
func (e *NetError) Refused() bool { return errors.Is(e.Err, syscall.ECONNREFUSED) }

// describeNetErr strips Go's layered "Get https://…: dial tcp …:" prefixes
// down to the cause a person can act on.
func describeNetErr(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot resolve host " + dnsErr.Name
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
