package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/sealfs/sealfs/remote/wire"
	"github.com/sealfs/sealfs/server/blob"
	"github.com/sealfs/sealfs/server/meta"
)

// apiError is an error with a stable wire code; handlers return it and
// writeError turns it into the JSON body of docs/protocol.md.
type apiError struct {
	code    string
	msg     string
	missing []wire.HexID
	version int64
	retry   int // seconds, for 429
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func errf(code, format string, a ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, a...)}
}

func badRequest(format string, a ...any) *apiError {
	return errf(wire.CodeBadRequest, format, a...)
}

// storeErrors maps the stores' sentinel errors to wire codes. The message
// stays generic: store errors may carry details the client must not see.
var storeErrors = []struct {
	err  error
	code string
	msg  string
}{
	{meta.ErrNotFound, wire.CodeNotFound, "no such object"},
	{meta.ErrExists, wire.CodeExists, "already exists"},
	{meta.ErrNotEmpty, wire.CodeNotEmpty, "directory not empty"},
	{meta.ErrNotDir, wire.CodeNotDir, "not a directory"},
	{meta.ErrIsDir, wire.CodeIsDir, "is a directory"},
	{meta.ErrInvalid, wire.CodeInvalid, "invalid operation"},
	{meta.ErrNotPermitted, wire.CodeNotPermitted, "operation not permitted"},
	{meta.ErrVersionMismatch, wire.CodeVersionMismatch, "the object changed since the given version"},
	{meta.ErrQuota, wire.CodeQuotaExceeded, "the account's quota would be exceeded"},
	{meta.ErrInviteInvalid, wire.CodeInviteInvalid, "the invite is unknown, used or expired"},
	{meta.ErrTooLarge, wire.CodeTooLarge, "a value is too large"},
	{blob.ErrNoSpace, wire.CodeInsufficientStorage, "the server's disk is full"},
	{meta.ErrNoSpace, wire.CodeInsufficientStorage, "the server's disk is full"},
	{meta.ErrClosed, wire.CodeUnavailable, "the server is shutting down"},
	{context.Canceled, wire.CodeUnavailable, "the request was cancelled"},
	{context.DeadlineExceeded, wire.CodeUnavailable, "the request timed out"},
}

// toAPIError classifies any error a handler returns.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errf(wire.CodeTooLarge, "request body exceeds %d bytes", mbe.Limit)
	}
	var mce *meta.MissingChunksError
	if errors.As(err, &mce) {
		e := errf(wire.CodeMissingChunks, "%d referenced chunks are not stored", len(mce.IDs))
		for _, id := range mce.IDs {
			e.missing = append(e.missing, wire.HexID(id))
		}
		return e
	}
	for _, m := range storeErrors {
		if errors.Is(err, m.err) {
			return errf(m.code, "%s", m.msg)
		}
	}
	return nil
}

// writeError sends the JSON error body. Unclassified errors are logged and
// answered as 500 without details.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae == nil {
		s.log.Error("request failed", "method", r.Method, "route", r.Pattern, "err", err)
		ae = errf(wire.CodeInternal, "internal server error")
	}
	status := wire.Status[ae.code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if ae.retry > 0 {
		w.Header().Set(wire.HeaderRetryAfter, fmt.Sprint(ae.retry))
	}
	if ae.code == wire.CodeVersionMismatch && ae.version == 0 {
		ae.version = currentVersion(err)
	}
	writeJSON(w, status, &wire.Error{Code: ae.code, Message: ae.msg, Missing: ae.missing, Version: ae.version})
	if status >= 500 {
		s.log.Warn("request answered with server error", "route", r.Pattern, "code", ae.code)
	}
}

// currentVersion digs a current version out of a version-mismatch error,
// when the store supplied one.
func currentVersion(err error) int64 {
	var vm interface{ CurrentVersion() int64 }
	if errors.As(err, &vm) {
		return vm.CurrentVersion()
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", wire.ContentTypeJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("writing response", "err", err)
	}
}
