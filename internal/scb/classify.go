package scb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Retryable reports whether an HTTP status from an SCB may change if the request is sent again.
// 408 (request timeout), 425 (too early), 429 (rate limited) and 5xx are transient; every other
// 4xx is a fact about the request (bad body, bad key, wrong URL, a different entry under our
// idempotency key) that no retry will change. 3xx means a wrong URL (we do not follow
// redirects). 2xx is not an error and is handled by the caller.
func Retryable(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return true
	case code >= 500:
		return true
	case code >= 300:
		return false
	}
	return true // 1xx or a 2xx the caller could not use: ask again
}

// Classes of a DeliveryError: our own reading of what went wrong, kept with every error next
// to the HTTP status, so that neither an operator nor a program has to interpret the SCB's text.
const (
	ClassRedirect     = "redirect"      // 3xx: the API URL is wrong (redirects are not followed)
	ClassBadRequest   = "bad_request"   // 400, 413, 415: the SCB cannot read our request
	ClassAuth         = "auth"          // 401, 403: the SCB refused our API key
	ClassNotFound     = "not_found"     // 404
	ClassConflict     = "conflict"      // 409
	ClassInvalidEntry = "invalid_entry" // 422: the SCB refused the entry's content
	ClassRejected     = "rejected"      // another 4xx
	ClassRateLimited  = "rate_limited"  // 429
	ClassTimeout      = "timeout"       // 408, 504, or no answer in time
	ClassUnavailable  = "unavailable"   // 502, 503, 425, connection refused or cut
	ClassServerError  = "server_error"  // another 5xx
	ClassBadAnswer    = "bad_answer"    // a 2xx we cannot use (unreadable body, unknown status)
	ClassNetwork      = "network"       // no (complete) answer: DNS, TLS, reset, closed
	ClassCanceled     = "canceled"      // the caller gave up
	ClassClient       = "client"        // the request could not be built or sent by us
)

// classifyStatus is our reading of an HTTP status from an SCB: a class and a short phrase.
func classifyStatus(op string, code int) (class, phrase string) {
	switch {
	case code >= 300 && code < 400:
		return ClassRedirect, "a redirect, which is not followed"
	case code == http.StatusBadRequest, code == http.StatusRequestEntityTooLarge, code == http.StatusUnsupportedMediaType:
		return ClassBadRequest, "the SCB cannot read our request"
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return ClassAuth, "the SCB refused our API key"
	case code == http.StatusNotFound && op == "GET":
		return ClassNotFound, "the SCB does not know this entry"
	case code == http.StatusNotFound:
		return ClassNotFound, "no such endpoint: check the SCB's API URL"
	case code == http.StatusConflict && op == "POST":
		return ClassConflict, "the SCB holds a different entry under this Idempotency-Key"
	case code == http.StatusConflict:
		return ClassConflict, "the SCB reports a conflict"
	case code == http.StatusUnprocessableEntity:
		return ClassInvalidEntry, "the SCB refused the entry"
	case code == http.StatusTooManyRequests:
		return ClassRateLimited, "rate limited by the SCB"
	case code == http.StatusRequestTimeout, code == http.StatusGatewayTimeout:
		return ClassTimeout, "the SCB or its gateway timed out"
	case code == http.StatusTooEarly, code == http.StatusBadGateway, code == http.StatusServiceUnavailable:
		return ClassUnavailable, "the SCB is unavailable"
	case code >= 500:
		return ClassServerError, "the SCB failed"
	case code >= 400:
		return ClassRejected, "the SCB refused the request"
	}
	return ClassBadAnswer, "an answer we cannot use"
}

// statusError turns a non-success answer into a DeliveryError: the status, our class and phrase,
// and an Excerpt of the SCB's own message (never its text verbatim).
func (c *Client) statusError(op string, res *result) *DeliveryError {
	class, phrase := classifyStatus(op, res.code)
	reason := fmt.Sprintf("%d %s from %s (%s)", res.code, http.StatusText(res.code), c.cfg.ID, phrase)
	if res.code >= 300 && res.code < 400 {
		if loc := res.header.Get("Location"); loc != "" {
			reason += "; redirect to " + c.excerpt(loc, 120) + "; fix the SCB's API URL"
		} else {
			reason += "; fix the SCB's API URL"
		}
	}
	if msg := c.serverMessage(res); msg != "" {
		reason += ": " + msg
	}
	de := &DeliveryError{SCB: c.cfg.ID, Op: op, StatusCode: res.code, Class: class, Retryable: Retryable(res.code), Reason: reason}
	if de.Retryable {
		de.RetryAfter = res.retryAfter
	}
	return de
}

// badBody is the error for a 2xx answer we cannot use: the SCB may or may not have done the work,
// so the request is retried (the idempotency key makes that safe) rather than trusted.
func (c *Client) badBody(op string, res *result, what string) *DeliveryError {
	reason := fmt.Sprintf("%d %s from %s with %s", res.code, http.StatusText(res.code), c.cfg.ID, what)
	return &DeliveryError{SCB: c.cfg.ID, Op: op, StatusCode: res.code, Class: ClassBadAnswer, Retryable: true, RetryAfter: res.retryAfter, Reason: reason}
}

// unknownStatus is badBody's what for a status field we do not know: an excerpt of it, quoted.
func (c *Client) unknownStatus(status string) string {
	return `an unknown status "` + c.excerpt(status, 40) + `"`
}

// serverMessage is an Excerpt of the message in an error body: our {"error": {"code",
// "message"}} shape, {"error": "..."}, {"message": "..."}, an RFC 9457 problem's detail or
// title, or the start of a text body. "" if there is none.
func (c *Client) serverMessage(res *result) string {
	var shaped struct {
		Error  json.RawMessage `json:"error"`
		Msg    string          `json:"message"`
		Detail string          `json:"detail"`
		Title  string          `json:"title"`
	}
	var msg string
	if json.Unmarshal(res.body, &shaped) == nil {
		var d ErrorDetail
		var s string
		switch {
		case json.Unmarshal(shaped.Error, &d) == nil && (d.Message != "" || d.Code != ""):
			msg = d.Message
			if msg == "" {
				msg = d.Code
			}
		case json.Unmarshal(shaped.Error, &s) == nil && s != "":
			msg = s
		case shaped.Msg != "":
			msg = shaped.Msg
		case shaped.Detail != "":
			msg = shaped.Detail
		default:
			msg = shaped.Title
		}
	} else if ct := res.header.Get("Content-Type"); ct == "" || strings.HasPrefix(ct, "text/") {
		msg = string(res.body)
	}
	if msg = c.excerpt(msg, MaxExcerpt); msg == "" {
		return ""
	}
	return `the SCB said "` + msg + `"`
}

// networkError classifies a failure without a (complete) response. All are retryable: the SCB
// may be back, and the idempotency key makes a resend harmless even if it did commit.
func (c *Client) networkError(ctx context.Context, op string, err error) *DeliveryError {
	de := &DeliveryError{SCB: c.cfg.ID, Op: op, Retryable: true, Class: ClassNetwork, cause: safeCause(err)}
	what := ""
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var ue *url.Error
	switch {
	case ctx.Err() != nil:
		// The caller gave up (shutdown, its own deadline): retryable, and the cause says why.
		what = "canceled by the caller (" + ctx.Err().Error() + ")"
		de.cause, de.Class = ctx.Err(), ClassCanceled
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		what = "timeout after " + c.cfg.Timeout.String()
		de.Class = ClassTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		what = "connection refused"
		de.Class = ClassUnavailable
	case errors.Is(err, syscall.ECONNRESET):
		what = "connection reset by the SCB (it may have committed; retried with the same Idempotency-Key)"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		what = "connection closed without a complete answer (the SCB may have committed; retried with the same Idempotency-Key)"
	case errors.As(err, &dnsErr):
		what = "cannot resolve " + dnsErr.Name
		if dnsErr.IsNotFound {
			what += ": no such host"
		}
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		what = "host unreachable"
	case errors.As(err, &opErr) && opErr.Err != nil:
		what = opErr.Op + ": " + opErr.Err.Error()
	case errors.As(err, &ue):
		// url.Error quotes the URL; ours holds no secret, but its inner error is what matters.
		what = ue.Err.Error()
	default:
		what = err.Error()
	}
	// Even a failure without an answer can quote the SCB (a malformed status line, a TLS
	// certificate's names): the text goes through Excerpt like any answer.
	de.Reason = fmt.Sprintf("%s to %s: %s", op, c.cfg.ID, c.excerpt(what, 240))
	return de
}

// safeCause is what a DeliveryError keeps of a transport error for errors.Is and errors.As: the
// context error, the errno, io.EOF, or that it was a timeout, all with our own text. The
// transport's error itself may quote what the SCB sent (a malformed status line, say), and a
// cause is printed by whoever unwraps it.
func safeCause(err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errors.As(err, &errno):
		return errno
	case isTimeout(err):
		return errTimeout{}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return io.ErrUnexpectedEOF
	case errors.Is(err, io.EOF):
		return io.EOF
	}
	return errTransport
}

// errTransport is the cause of a transport failure without a more telling one.
var errTransport = errors.New("transport error")

// errTimeout is the cause of a timeout: a net.Error whose Timeout is true.
type errTimeout struct{}

func (errTimeout) Error() string   { return "timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP-date (RFC 9110 §10.2.3); 0 if
// absent, invalid or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) && isDigits(v) {
		return 24 * time.Hour // more digits than int64 holds: as absurd as any value above the cap
	}
	if err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) { // an absurd value; the worker's cap applies anyway
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d.Round(time.Second), 24*time.Hour)
		}
	}
	return 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
