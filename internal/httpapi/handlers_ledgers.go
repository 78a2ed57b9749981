package httpapi

import (
	"context"
	"net/http"
	"net/url"

	"dualledger/internal/ledger"
)

func (s *Server) createLedger(w http.ResponseWriter, r *http.Request) error {
	var req CreateLedgerRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		return err
	}
	l, err := ledger.CreateLedger(r.Context(), s.pool, keyOf(r).Actor(), req.ID)
	if err != nil {
		return err
	}
	s.ledgers.Store(l.ID, struct{}{})
	w.Header().Set("Location", "/v1/ledgers/"+url.PathEscape(l.ID))
	writeJSON(w, http.StatusCreated, l)
	return nil
}

// listLedgers pages through the ledgers the key may see (all, or those it is limited to).
func (s *Server) listLedgers(w http.ResponseWriter, r *http.Request) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	ledgers, err := ledger.ListLedgers(r.Context(), s.pool, r.URL.Query().Get("after"), limit+1, keyOf(r).Ledgers)
	if err != nil {
		return err
	}
	var out LedgerList
	out.Ledgers, out.NextAfter = page(ledgers, limit, func(l ledger.Ledger) string { return l.ID })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getLedger(w http.ResponseWriter, r *http.Request) error {
	l, err := ledger.GetLedger(r.Context(), s.pool, r.PathValue("ledger_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

// checkLedger refuses postings to a ledger that does not exist before they reach the Poster,
// which keeps one queue (and its flushers) per ledger id it has seen: made-up ids must not
// create any. Known ids are cached; ledgers are never deleted (a trigger refuses it).
func (s *Server) checkLedger(ctx context.Context, id string) error {
	if _, ok := s.ledgers.Load(id); ok {
		return nil
	}
	if _, err := ledger.GetLedger(ctx, s.pool, id); err != nil {
		return err
	}
	s.ledgers.Store(id, struct{}{})
	return nil
}
