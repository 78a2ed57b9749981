package httpapi

import (
	"net/http"

	"dualledger/internal/ledger"
)

func (s *Server) registerBank(w http.ResponseWriter, r *http.Request) error {
	var req RegisterBankRequest
	if err := decodeJSON(r.Body, &req); err != nil {
		return err
	}
	b, err := ledger.RegisterBank(r.Context(), s.pool, keyOf(r).Actor(), req.ID, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, b)
	return nil
}

// listBanks pages through the registered banks; a member bank's key sees its own bank only.
func (s *Server) listBanks(w http.ResponseWriter, r *http.Request) error {
	limit, err := pageLimit(r)
	if err != nil {
		return err
	}
	banks, err := ledger.ListBanks(r.Context(), s.pool, r.URL.Query().Get("after"), limit+1, keyOf(r).Bank())
	if err != nil {
		return err
	}
	var out BankList
	out.Banks, out.NextAfter = page(banks, limit, func(b ledger.Bank) string { return b.ID })
	writeJSON(w, http.StatusOK, out)
	return nil
}
