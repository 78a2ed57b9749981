package httpapi

import (
	"net/http"

	"dualledger/internal/settlement"
)

func (s *Server) postSettlement(w http.ResponseWriter, r *http.Request) error {
	var req settlement.Request
	if err := decodeJSON(r.Body, &req); err != nil {
		return err
	}
	out, err := s.settle.Settle(r.Context(), req)
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if out.Replayed {
		status = http.StatusOK
	}
	writeJSON(w, status, out)
	return nil
}

func (s *Server) getSettlement(w http.ResponseWriter, r *http.Request) error {
	out, err := s.settle.Get(r.Context(), r.PathValue("reference_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
