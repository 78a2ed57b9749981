package scb

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotFound matches (errors.Is) the error of Get when the SCB does not know the entry (404):
// for the worker, a sign that the POST never reached the SCB and must be sent again.
var ErrNotFound = errors.New("the SCB does not know this entry")

// DeliveryError is every failure of a Client call. Retryable says whether sending the same
// request again may succeed: it is false for answers that will not change (400, 401, 403, 404 on
// POST, 409, 422, other 4xx) and true for everything that may be transient (408, 425, 429, 5xx,
// network errors, timeouts, a 2xx whose body we cannot read). A retry is safe in all retryable
// cases because the SCB deduplicates by the Idempotency-Key.
type DeliveryError struct {
	SCB        string        // the SCB's id
	Op         string        // "POST", "GET" or "LIST"
	Retryable  bool          // a retry may succeed
	StatusCode int           // the HTTP status, 0 if no response arrived
	Class      string        // our reading of the failure: ClassAuth, ClassRateLimited, ClassNetwork, ...
	RetryAfter time.Duration // the SCB's Retry-After, 0 if none
	NotFound   bool          // Get: the SCB does not know the entry (errors.Is(err, ErrNotFound))
	// Reason is short, one line and self-contained: the status, our class's phrase and an
	// Excerpt of the SCB's message, e.g. `401 Unauthorized from SCB-1 (the SCB refused our API
	// key): the SCB said "invalid API key"`. Whatever the SCB sent reaches it only through
	// Excerpt, so it never holds the API key in any form; the outbox stores it as last_error.
	Reason string
	cause  error // for errors.Is/As (context errors, network errors); never holds the key
}

// Error is Reason with the retry classification. It never contains the API key.
func (e *DeliveryError) Error() string {
	kind := "permanent"
	if e.Retryable {
		kind = "retryable"
	}
	if e.RetryAfter > 0 {
		return fmt.Sprintf("%s (%s, retry after %s)", e.Reason, kind, e.RetryAfter)
	}
	return fmt.Sprintf("%s (%s)", e.Reason, kind)
}

// Unwrap returns the underlying error: context.Canceled, context.DeadlineExceeded, a net error.
func (e *DeliveryError) Unwrap() error { return e.cause }

// Is makes errors.Is(err, ErrNotFound) true for a 404 of Get.
func (e *DeliveryError) Is(target error) bool { return target == ErrNotFound && e.NotFound }

// IsRetryable reports whether err is a *DeliveryError a retry may cure.
func IsRetryable(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Retryable
}

// Reason is the text to store or show for an error of an SCB client call (the outbox's
// last_error): a *DeliveryError's Reason, which holds the SCB's words only through Excerpt; for
// any other error (a client that is not this package's), an Excerpt of its text under a
// "not classified" prefix, so that it is at least one short, printable line.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.Reason
	}
	return "error not classified by the SCB client: " + Excerpt([]byte(err.Error()))
}
