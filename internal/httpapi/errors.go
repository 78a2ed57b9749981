package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/ledger"
)

// Codes that only the HTTP layer produces. They are declared, with their HTTP status and docs,
// in internal/ledger's code table (ledger.Codes), the one source of every code.
const (
	CodeMethodNotAllowed     = ledger.CodeMethodNotAllowed
	CodeUnsupportedMediaType = ledger.CodeUnsupportedMediaType
	CodeBodyTooLarge         = ledger.CodeBodyTooLarge
	CodeBatchRejected        = ledger.CodeBatchRejected
)

// statusOf maps a stable error code to its HTTP status, from ledger.Codes, whose rows also
// generate docs/error-codes.md (docs/design.md §9): 400 for input that can never succeed, 404 for
// missing things, 409 for clashes with what exists, 422 for business rules that depend on the
// ledger's state.
func statusOf(code string) int { return ledger.HTTPStatus(code) }

// errorBodyOf converts err into the client-facing error object. Anything that is not a
// *ledger.Error is an internal error whose text is never shown to clients.
func errorBodyOf(err error) ErrorBody {
	var le *ledger.Error
	if !errors.As(err, &le) {
		return ErrorBody{Code: ledger.CodeInternal, Message: "internal error", Details: json.RawMessage(`{}`)}
	}
	details := le.Details
	if len(details) == 0 || string(details) == "null" {
		details = json.RawMessage(`{}`)
	}
	return ErrorBody{Code: le.Code, Message: le.Message, Details: details}
}

// writeError answers err in the error envelope. Internal errors are logged with their cause
// (which may name SQL or internals) at error level; the client sees only the stable code.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body := errorBodyOf(clientError(err))
	status := statusOf(body.Code)
	if status >= 500 {
		level := slog.LevelWarn // unavailable: the database or the client's patience ran out
		if body.Code == ledger.CodeInternal {
			level = slog.LevelError
		}
		cause := errors.Unwrap(err)
		if cause == nil {
			cause = err
		}
		s.log.LogAttrs(r.Context(), level, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("code", body.Code),
			slog.String("cause", cause.Error()))
	}
	if status == http.StatusUnauthorized {
		// Every 401 names the scheme (RFC 9110 §11.6.1), the database's refusal of a key revoked
		// after its request was authenticated included.
		w.Header().Set("WWW-Authenticate", `Bearer realm="dualledger"`)
	}
	writeJSON(w, status, ErrorResponse{Error: body})
}

// clientError normalises errors for the client: a cancelled or timed-out request context, a
// Poster shut down under us, an unreachable database (which ledger.FromDB reports as internal)
// and anything unexpected.
func clientError(err error) error {
	var le *ledger.Error
	switch {
	case errors.As(err, &le) && le.Code == ledger.CodeInternal && unreachable(err):
		return &ledger.Error{Code: ledger.CodeUnavailable, Message: "the database is unavailable; retry (postings with the same reference_id)"}
	case errors.As(err, &le) && le.Code == ledger.CodeInternal && errors.Is(err, context.Canceled):
		// The client went away during a query: nothing is wrong with the server.
		return &ledger.Error{Code: ledger.CodeUnavailable, Message: "the request was cancelled"}
	case errors.As(err, &le):
		return err
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &ledger.Error{Code: ledger.CodeUnavailable,
			Message: "the request timed out or was cancelled; if it was a posting, retry with the same reference_id to learn its outcome"}
	case errors.Is(err, ledger.ErrPosterClosed):
		return &ledger.Error{Code: ledger.CodeUnavailable, Message: "the server is shutting down; retry with the same reference_id"}
	default:
		return &wrappedInternal{err: err}
	}
}

// unreachable reports a failure to connect to the database. ledger.FromDB classifies it as
// internal; for a client it is a 503 (retry later). Remove once FromDB maps it to unavailable.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

// wrappedInternal is an unexpected error: the client gets code internal, the log gets err.
type wrappedInternal struct{ err error }

func (e *wrappedInternal) Error() string { return "internal: " + e.err.Error() }
func (e *wrappedInternal) Unwrap() error { return e.err }

// writeJSON writes v with status. v is encoded before anything is written, so that the
// (practically impossible) failure to encode our own types still gets a proper 500.
func writeJSON(w http.ResponseWriter, status int, v any) {
	// Not HTML-escaped: the API answers JSON, never HTML, and a message that says
	// "Bearer <token>" should read so (nosniff keeps browsers from guessing otherwise).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error","details":{}}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// fieldError is a shorthand for a *ledger.Error with a field in its details.
func fieldError(code, field, format string, args ...any) *ledger.Error {
	return ledger.Errorf(code, format, args...).WithDetails(map[string]string{"field": field})
}
