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
	"unicode"
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

// statusError turns a non-success answer into a DeliveryError with the SCB's own message.
func (c *Client) statusError(op string, res *result) *DeliveryError {
	reason := fmt.Sprintf("%d %s from %s", res.code, http.StatusText(res.code), c.cfg.ID)
	if msg := c.serverMessage(res); msg != "" {
		reason += ": " + msg
	} else if res.code == http.StatusConflict && op == "POST" {
		reason += ": the SCB holds a different entry under this Idempotency-Key"
	}
	if res.code >= 300 && res.code < 400 {
		if loc := res.header.Get("Location"); loc != "" {
			reason += " (redirect to " + clip(c.scrub(loc), 120) + "; fix the SCB's API URL)"
		}
	}
	de := &DeliveryError{SCB: c.cfg.ID, Op: op, StatusCode: res.code, Retryable: Retryable(res.code), Reason: reason}
	if de.Retryable {
		de.RetryAfter = res.retryAfter
	}
	return de
}

// badBody is the error for a 2xx answer we cannot use: the SCB may or may not have done the work,
// so the request is retried (the idempotency key makes that safe) rather than trusted.
func (c *Client) badBody(op string, res *result, what string) *DeliveryError {
	reason := fmt.Sprintf("%d %s from %s with an %s", res.code, http.StatusText(res.code), c.cfg.ID, what)
	if strings.HasPrefix(what, "unknown") {
		reason = fmt.Sprintf("%d %s from %s with %s", res.code, http.StatusText(res.code), c.cfg.ID, what)
	}
	return &DeliveryError{SCB: c.cfg.ID, Op: op, StatusCode: res.code, Retryable: true, RetryAfter: res.retryAfter, Reason: reason}
}

// serverMessage extracts a short message from an error body: our {"error": {"code", "message"}}
// shape, {"error": "..."}, {"message": "..."}, or the start of a text body.
func (c *Client) serverMessage(res *result) string {
	var shaped struct {
		Error json.RawMessage `json:"error"`
		Msg   string          `json:"message"`
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
		case json.Unmarshal(shaped.Error, &s) == nil:
			msg = s
		default:
			msg = shaped.Msg
		}
	} else if ct := res.header.Get("Content-Type"); ct == "" || strings.HasPrefix(ct, "text/") {
		msg = string(res.body)
	}
	return clip(c.scrub(msg), 200)
}

// networkError classifies a failure without a (complete) response. All are retryable: the SCB
// may be back, and the idempotency key makes a resend harmless even if it did commit.
func (c *Client) networkError(ctx context.Context, op string, err error) *DeliveryError {
	de := &DeliveryError{SCB: c.cfg.ID, Op: op, Retryable: true, cause: err}
	what := ""
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var ue *url.Error
	switch {
	case ctx.Err() != nil:
		// The caller gave up (shutdown, its own deadline): retryable, and the cause says why.
		what = "canceled by the caller (" + ctx.Err().Error() + ")"
		de.cause = ctx.Err()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		what = "timeout after " + c.cfg.Timeout.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		what = "connection refused"
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
	de.Reason = fmt.Sprintf("%s to %s: %s", op, c.cfg.ID, clip(c.scrub(what), 240))
	return de
}

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

// scrub removes the API key from text that came from outside (an SCB could echo our
// Authorization header back in an error page).
func (c *Client) scrub(s string) string {
	if *c.key != "" {
		s = strings.ReplaceAll(s, *c.key, "[redacted]")
	}
	return s
}

// clip shortens s to at most n runes on one line, for error messages.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
