package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

func TestLedgers(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.mustStatus(e.do("POST", "/v1/ledgers", map[string]any{"id": "MASTER"}), http.StatusCreated)
	if r.str("id") != "MASTER" || r.get("head_seq") != 0.0 || r.str("head_hash") != strings.Repeat("0", 64) {
		t.Errorf("created: %s", r.raw)
	}
	if r.header.Get("Location") != "/v1/ledgers/MASTER" {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	if r := e.do("POST", "/v1/ledgers", map[string]any{"id": "MASTER"}); r.status != 409 || r.errCode() != "ledger_exists" {
		t.Errorf("duplicate: %d %s", r.status, r.raw)
	}
	for _, body := range []string{`{"id":""}`, `{"id":"has space"}`, `{}`, `{"id":7}`} {
		if r := e.do("POST", "/v1/ledgers", body); r.status != 400 || r.errCode() != "invalid_request" {
			t.Errorf("%s: %d %s", body, r.status, r.raw)
		}
	}
	e.createLedger("A")
	r = e.mustStatus(e.do("GET", "/v1/ledgers", nil), http.StatusOK)
	ls := r.get("ledgers").([]any)
	if len(ls) != 2 || ls[0].(map[string]any)["id"] != "A" || ls[1].(map[string]any)["id"] != "MASTER" {
		t.Errorf("list: %s", r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/NOPE", nil); r.status != 404 || r.errCode() != "unknown_ledger" {
		t.Errorf("unknown: %d %s", r.status, r.raw)
	}
}

func TestBanks(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.mustStatus(e.do("GET", "/v1/banks", nil), http.StatusOK)
	if string(r.raw) != "{\"banks\":[],\"next_after\":null}\n" {
		t.Errorf("empty list: %s", r.raw)
	}
	r = e.mustStatus(e.do("POST", "/v1/banks", map[string]any{"id": "SCB-1", "name": "Sovereign Bank One"}), http.StatusCreated)
	if r.str("id") != "SCB-1" || r.str("name") != "Sovereign Bank One" || r.str("created_at") == "" {
		t.Errorf("created: %s", r.raw)
	}
	if r := e.do("POST", "/v1/banks", map[string]any{"id": "SCB-1", "name": "again"}); r.status != 409 || r.errCode() != "bank_exists" {
		t.Errorf("duplicate: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/v1/banks", map[string]any{"id": "SCB-2", "name": " "}); r.status != 400 || r.str("error", "details", "field") != "name" {
		t.Errorf("blank name: %d %s", r.status, r.raw)
	}
	for _, name := range []string{"Bank\nTwo", "Bank\x1b[31mTwo", "Bank\u0085Two", "Bank\u2028SCB-9 Evil", "Bank \u202eowT"} {
		if r := e.do("POST", "/v1/banks", map[string]any{"id": "SCB-2", "name": name}); r.status != 400 || r.str("error", "details", "field") != "name" {
			t.Errorf("name %q: %d %s", name, r.status, r.raw)
		}
	}
	r = e.mustStatus(e.do("GET", "/v1/banks", nil), http.StatusOK)
	if bs := r.get("banks").([]any); len(bs) != 1 {
		t.Errorf("list: %s", r.raw)
	}
}
