package httpapi

import (
	"net/http"
	"net/url"

	"dualledger/internal/ledger"
)

func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) error {
	ledgerID := r.PathValue("ledger_id")
	var in ledger.AccountInput
	if err := decodeJSON(r.Body, &in); err != nil {
		return err
	}
	a, err := ledger.CreateAccount(r.Context(), s.pool, ledgerID, in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/ledgers/"+url.PathEscape(ledgerID)+"/accounts/"+url.PathEscape(a.ID))
	writeJSON(w, http.StatusCreated, a)
	return nil
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	// One more than asked tells whether another page exists, so the last page says so
	// (next_after null) instead of sending the client for an empty one.
	page, err := ledger.ListAccounts(r.Context(), s.pool, r.PathValue("ledger_id"), r.URL.Query().Get("after"), limit+1)
	if err != nil {
		return err
	}
	out := AccountList{Accounts: page}
	if len(page) > limit {
		out.Accounts = page[:limit]
		next := page[limit-1].ID
		out.NextAfter = &next
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) error {
	a, err := ledger.GetAccount(r.Context(), s.pool, r.PathValue("ledger_id"), r.PathValue("account_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}
