package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
)

// Codes of the access layer (their HTTP status and docs are in ledger.Codes).
const (
	CodeUnauthenticated = ledger.CodeUnauthenticated // 401: no token, or an unknown or revoked one
	CodeForbidden       = ledger.CodeForbidden       // 403: the key may not do this (whether the thing exists is not said)
	CodeRateLimited     = ledger.CodeRateLimited     // 429: the key's own request rate is spent
	CodeOverloaded      = ledger.CodeOverloaded      // 429: the server is at its in-flight limit
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
	if len(r.Header.Values("Authorization")) > 1 {
		// Which one counts would be a guess (a proxy may add its own): neither does.
		return r, ledger.Errorf(CodeUnauthenticated, "the request has more than one Authorization header: send exactly one, Authorization: Bearer <token>")
	}
	k, err := s.keys.Authenticate(r.Context(), bearer(r))
	if err != nil {
		if errors.Is(err, auth.ErrUnavailable) {
			return r, ledger.Errorf(ledger.CodeUnavailable, "the API keys cannot be checked now (the database is unavailable); retry")
		}
		if errors.Is(err, auth.ErrNoToken) {
			return r, ledger.Errorf(CodeUnauthenticated, "this endpoint needs an API key: send Authorization: Bearer <token> (dualledger keys create)")
		}
		var expired *auth.ExpiredError
		if errors.As(err, &expired) {
			return r, ledger.Errorf(CodeUnauthenticated, "%s: ask for a new key (dualledger keys create)", expired.Error())
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

// admit takes one of the server's in-flight slots and one of the key's share of them, without
// waiting: a full server, or one key using more than its share, is answered 429 at once instead
// of queueing requests in front of the database.
func (s *Server) admit(k *auth.Key) (release func(), err error) {
	s.perKeyMu.Lock()
	if s.perKey[k.ID] >= s.cfg.MaxInFlightPerKey {
		s.perKeyMu.Unlock()
		return nil, ledger.Errorf(CodeOverloaded, "this key has %d requests in flight, its share of the server; retry after a second", s.cfg.MaxInFlightPerKey)
	}
	s.perKey[k.ID]++
	s.perKeyMu.Unlock()
	unkey := func() {
		s.perKeyMu.Lock()
		if s.perKey[k.ID]--; s.perKey[k.ID] <= 0 {
			delete(s.perKey, k.ID)
		}
		s.perKeyMu.Unlock()
	}
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots; unkey() }, nil
	default:
		unkey()
		return nil, ledger.Errorf(CodeOverloaded, "the server is at its limit of %d requests in flight; retry after a second", cap(s.slots))
	}
}

// cmpErr returns err if there is one, else fallback.
func cmpErr(err error, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

// redactEntries hides, for a member bank's key, the balance-after of every account that is not
// its bank's: an entry it may see (it touches one of its accounts) must not tell it what another
// bank, or the issuance account, holds.
func (s *Server) redactEntries(r *http.Request, es ...*ledger.Entry) error {
	bank := keyOf(r).Bank()
	if bank == "" || len(es) == 0 {
		return nil
	}
	ids := make([]string, 0, 2*len(es))
	for _, e := range es {
		ids = append(ids, e.DebitAccountID, e.CreditAccountID)
	}
	banks, err := ledger.AccountBanks(r.Context(), s.pool, es[0].LedgerID, ids)
	if err != nil {
		return err
	}
	for _, e := range es {
		redactEntry(banks, bank, e)
	}
	return nil
}

// redactEntry nulls the balances-after of e's accounts that are not bank's (banks: account ->
// its bank).
func redactEntry(banks map[string]string, bank string, e *ledger.Entry) {
	if banks[e.DebitAccountID] != bank {
		e.DebitBalanceAfter = nil
	}
	if banks[e.CreditAccountID] != bank {
		e.CreditBalanceAfter = nil
	}
}

// bankSafe rewrites, for a member bank's key, a reference_conflict into one that names nothing
// of the existing entry (its id, which fields differ): otherwise guessing references and
// amounts would read other banks' entries.
//
// It also rewrites a refusal for a balance out of range (invalid_amount naming the account and
// the balance column) into one that names neither: trying amounts against another bank's
// account would otherwise pin its balance down, which a member bank's key may not read. And an
// ambiguous_settlement_account about another bank loses that bank's account ids.
func bankSafe(r *http.Request, err error) error {
	if keyOf(r).Bank() == "" {
		return err
	}
	switch ledger.CodeOf(err) {
	case ledger.CodeReferenceConflict:
		return ledger.Errorf(ledger.CodeReferenceConflict, "reference_id is already used on this ledger with other content; choose another").
			WithDetails(map[string]string{"field": "reference_id"})
	case ledger.CodeAmbiguousSettlementAccount:
		// About the other bank (the destination): that it cannot take settlements now is the
		// member bank's business, which accounts it has is not.
		var le *ledger.Error
		var d struct {
			Field  string `json:"field"`
			BankID string `json:"bank_id"`
		}
		if errors.As(err, &le) && json.Unmarshal(le.Details, &d) == nil && d.BankID != keyOf(r).Bank() {
			return ledger.Errorf(ledger.CodeAmbiguousSettlementAccount, "bank %q cannot take settlements in this currency and asset type now (its settlement account is ambiguous); the operator fixes it",
				d.BankID).WithDetails(map[string]string{"field": d.Field, "bank_id": d.BankID})
		}
	case ledger.CodeInvalidAmount:
		var le *ledger.Error
		var d struct {
			Balance string `json:"balance"`
		}
		if errors.As(err, &le) && json.Unmarshal(le.Details, &d) == nil && d.Balance != "" {
			return ledger.Errorf(ledger.CodeInvalidAmount, "the amount would take a balance beyond NUMERIC(38,18) (20 integer digits)").
				WithDetails(map[string]string{"field": "amount"})
		}
	}
	return err
}
