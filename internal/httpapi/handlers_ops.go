package httpapi

import (
	"context"
	"net/http"

	"dualledger/internal/ledger"
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, Status{Status: "ok"})
	return nil
}

// readyz answers 200 when the database answers SELECT 1 within 2 s. It turns 503 as soon as a
// shutdown starts, so that a load balancer stops sending requests while in-flight ones finish.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.draining.Load() {
		return ledger.Errorf(ledger.CodeUnavailable, "the server is shutting down")
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	var one int
	if err := s.pool.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		s.log.WarnContext(ctx, "readiness check failed", "err", err)
		return ledger.Errorf(ledger.CodeUnavailable, "the database did not answer within %s", readyTimeout)
	}
	writeJSON(w, http.StatusOK, Status{Status: "ready"})
	return nil
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openapi)
	return nil
}
