package httpapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
)

// Codes of the access layer.
const (
	CodeUnauthenticated = "unauthenticated" // 401: no token, or an unknown or revoked one
	CodeForbidden       = "forbidden"       // 403: the key may not do this (whether the thing exists is not said)
	CodeRateLimited     = "rate_limited"    // 429: the key's own request rate is spent
	CodeOverloaded      = "overloaded"      // 429: the server is at its in-flight limit
)

// access is how a route is protected: public (no key) or the scope a key needs.
type access struct {
	public bool
	scope  string
}

var public = access{public: true}

func needs(scope string) access { return access{scope: scope} }

// reqInfo carries what the access log needs from deep inside a request.
type reqInfo struct {
	keyID string
	shed  bool // refused by the in-flight limit
}

type reqInfoKey struct{}
type keyCtxKey struct{}

func withReqInfo(ctx context.Context, ri *reqInfo) context.Context {
	return context.WithValue(ctx, reqInfoKey{}, ri)
}

// keyOf is the authenticated key of a request (nil on public routes).
func keyOf(r *http.Request) *auth.Key {
	k, _ := r.Context().Value(keyCtxKey{}).(*auth.Key)
	return k
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authorize authenticates the request's key and checks the route's scope, the ledger in the path
// and the key's rate limit. It returns the request with the key in its context.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rt route) (*http.Request, error) {
	k, err := s.keys.Authenticate(r.Context(), bearer(r))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="dualledger"`)
		if errors.Is(err, auth.ErrUnavailable) {
			w.Header().Del("WWW-Authenticate")
			return r, ledger.Errorf(ledger.CodeUnavailable, "the API keys cannot be checked now (the database is unavailable); retry")
		}
		if errors.Is(err, auth.ErrNoToken) {
			return r, ledger.Errorf(CodeUnauthenticated, "this endpoint needs an API key: send Authorization: Bearer <token> (dualledger keys create)")
		}
		if !errors.Is(err, auth.ErrBadToken) {
			return r, err
		}
		return r, ledger.Errorf(CodeUnauthenticated, "the API key is unknown or revoked")
	}
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		ri.keyID = k.ID
	}
	if !k.Has(rt.access.scope) {
		return r, forbidden("this key lacks the %s scope", rt.access.scope)
	}
	if id := r.PathValue("ledger_id"); id != "" && !k.AllowsLedger(id) {
		return r, forbidden("this key may not use ledger %s", clip(id))
	}
	if ok, wait := s.keys.Allow(k); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
		return r, ledger.Errorf(CodeRateLimited, "this key's rate limit (%g requests/s) is spent; retry after %s",
			*k.RateLimit, wait.Round(time.Millisecond))
	}
	return r.WithContext(context.WithValue(r.Context(), keyCtxKey{}, k)), nil
}

func forbidden(format string, args ...any) *ledger.Error {
	return ledger.Errorf(CodeForbidden, format, args...)
}

// admitted takes one of the server's in-flight slots without waiting; a full server answers 429
// at once instead of queueing requests in front of the database.
func (s *Server) admitted() (release func(), ok bool) {
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, true
	default:
		return nil, false
	}
}

// cmpErr returns err if there is one, else fallback.
func cmpErr(err error, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}
