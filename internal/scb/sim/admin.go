package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// admin wraps an admin handler: admin key, no faults.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !bearerOK(r, s.cfg.AdminKey) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scb-admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "invalid admin key", nil)
			return
		}
		h(w, r)
	}
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	per := r.URL.Query().Get("per_key")
	writeJSON(w, http.StatusOK, s.Stats(per == "1" || per == "true"))
}

func (s *Server) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var u FaultsUpdate
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		writeError(w, http.StatusBadRequest, "bad_json", "faults: "+err.Error(), nil)
		return
	}
	f, err := s.SetFaults(u)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_faults", err.Error(), nil)
		return
	}
	s.log.Info("scb-sim: faults changed", "faults", fmt.Sprintf("%+v", f))
	writeJSON(w, http.StatusOK, f)
}
