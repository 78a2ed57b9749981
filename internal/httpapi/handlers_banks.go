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
	b, err := ledger.RegisterBank(r.Context(), s.pool, req.ID, req.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *Server) listBanks(w http.ResponseWriter, r *http.Request) error {
	banks, err := ledger.ListBanks(r.Context(), s.pool)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, BankList{Banks: banks})
	return nil
}
