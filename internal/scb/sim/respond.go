package sim

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"dualledger/internal/scb"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do about it
}

func writeError(w http.ResponseWriter, code int, errCode, msg string, details any) {
	writeJSON(w, code, scb.ErrorBody{Error: scb.ErrorDetail{Code: errCode, Message: msg, Details: details}})
}

// bearerOK compares the bearer token with key in constant time.
func bearerOK(r *http.Request, key string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(key)) == 1
}

// drop closes the client's connection without an answer: what a crash, a proxy timeout or a
// network cut looks like from the client's side. HTTP/2 connections cannot be hijacked; aborting
// the handler resets the stream, which the client sees the same way.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
