package httpapi

import (
	"errors"
	"math"
	"net/http"
	"time"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/oplog"
)

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := auth.List(r.Context(), s.pool)
	if err != nil {
		return ledger.FromDB(err)
	}
	writeJSON(w, http.StatusOK, KeyList{Keys: keys})
	return nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) error {
	var spec auth.Spec
	if err := decodeJSON(r.Body, &spec); err != nil {
		return err
	}
	nk, err := auth.Create(r.Context(), s.pool, keyOf(r).Actor(), spec)
	if err != nil {
		return keyError(err)
	}
	// This server knows the key at once; the others within a refresh.
	if err := s.keys.Reload(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "reloading API keys after a create failed", "err", err)
	}
	w.Header().Set("Location", "/v1/keys")
	writeJSON(w, http.StatusCreated, nk)
	return nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	var req RevokeKeyRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		return err
	}
	k, err := auth.Revoke(r.Context(), s.pool, keyOf(r).Actor(), r.PathValue("key_id"), req.Reason)
	if err != nil {
		return keyError(err)
	}
	if err := s.keys.Reload(r.Context()); err != nil {
		s.log.WarnContext(r.Context(), "reloading API keys after a revoke failed", "err", err)
	}
	writeJSON(w, http.StatusOK, k)
	return nil
}

// keyError maps the key store's errors to the API's codes.
func keyError(err error) error {
	var se *auth.SpecError
	switch {
	case errors.As(err, &se):
		return fieldError(ledger.CodeInvalidRequest, se.Field, "%s", se.Message)
	case errors.Is(err, auth.ErrUnknownKey):
		return ledger.Errorf(ledger.CodeNotFound, "%s", err.Error())
	}
	e := ledger.FromDB(err)
	if c := ledger.CodeOf(e); c == ledger.CodeUnknownBank {
		return ledger.Errorf(ledger.CodeUnknownBank, "bank_id names a bank that is not registered").WithDetails(map[string]string{"field": "bank_id"})
	}
	return e
}

func (s *Server) listOperatorActions(w http.ResponseWriter, r *http.Request) error {
	after, err := queryInt(r, "after_seq", 0, 0, math.MaxInt64)
	if err != nil {
		return err
	}
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	f := oplog.Filter{AfterSeq: after, Limit: limit + 1}
	if v := r.URL.Query().Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fieldError(ledger.CodeInvalidRequest, "since", "since must be an RFC 3339 time such as 2026-12-01T00:00:00Z, got %s", quoteField(clip(v)))
		}
		f.Since = t
	}
	actions, err := oplog.List(r.Context(), s.pool, f)
	if err != nil {
		return ledger.FromDB(err)
	}
	var out OperatorActionList
	out.Actions, out.NextAfterSeq = page(actions, limit, func(a oplog.Action) int64 { return a.Seq })
	writeJSON(w, http.StatusOK, out)
	return nil
}
