package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, Config{})
	if r := e.mustStatus(e.do("GET", "/healthz", nil), 200); r.str("status") != "ok" {
		t.Errorf("healthz %s", r.raw)
	}
	if r := e.mustStatus(e.do("GET", "/readyz", nil), 200); r.str("status") != "ready" {
		t.Errorf("readyz %s", r.raw)
	}
	e.srv.draining.Store(true)
	if r := e.do("GET", "/readyz", nil); r.status != 503 || r.errCode() != "unavailable" {
		t.Errorf("readyz while draining: %d %s", r.status, r.raw)
	}
}

func TestReadyzWithoutDatabase(t *testing.T) {
	d := pgtest.NewWithConfig(t, appRole)
	// A pool on a port where no server listens: the database is down.
	cfg, err := pgxpool.ParseConfig("host=127.0.0.1 port=1 user=nobody dbname=nothing sslmode=disable connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	down := *d
	down.Pool = pool
	e := newEnvOn(t, &down, Config{})
	r := e.do("GET", "/readyz", nil)
	if r.status != 503 || r.errCode() != "unavailable" {
		t.Errorf("readyz with the database down: %d %s", r.status, r.raw)
	}
	if r := e.mustStatus(e.do("GET", "/healthz", nil), 200); r.str("status") != "ok" {
		t.Errorf("healthz %s", r.raw)
	}
	// Other endpoints answer 503 unavailable (retry later), never SQL or network text.
	for _, path := range []string{"/v1/ledgers", "/v1/ledgers/L/entries"} {
		r = e.do("GET", path, nil)
		if r.status != 503 || r.errCode() != "unavailable" {
			t.Errorf("GET %s with the database down: %d %s", path, r.status, r.raw)
		}
	}
	r = e.post("L", entry("x", "a", "b", "1"))
	if r.status != 503 || r.errCode() != "unavailable" {
		t.Errorf("posting with the database down: %d %s", r.status, r.raw)
	}
}

// The server works as dualledger_api, the role without direct write privileges (migration 010).
func TestServerRunsAsAppRole(t *testing.T) {
	e := newEnv(t, Config{})
	var user string
	if err := e.db.Pool.QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil || user != "dualledger_api" {
		t.Fatalf("current_user %q %v", user, err)
	}
	if _, err := e.db.Pool.Exec(t.Context(), "INSERT INTO ledgers (id, head_seq) VALUES ('X', 5)"); err == nil {
		t.Fatal("dualledger_api could write head_seq directly")
	}
	e.setupUSD()
	for _, stmt := range []string{
		"UPDATE bank_accounts SET overdraft_limit = 1000000 WHERE id = 'alice'",
		"UPDATE bank_accounts SET status = 'FROZEN' WHERE id = 'alice'",
		"UPDATE bank_accounts SET balance = 1 WHERE id = 'alice'",
		"DELETE FROM ledger_entries",
	} {
		if _, err := e.db.Pool.Exec(t.Context(), stmt); err == nil {
			t.Errorf("dualledger_api could run %q", stmt)
		}
	}
	// PUBLIC may not call the SECURITY DEFINER posting functions.
	var public bool
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT has_function_privilege('public', 'post_ledger_entries(text, jsonb, boolean)', 'EXECUTE')`).Scan(&public); err != nil || public {
		t.Errorf("PUBLIC may execute post_ledger_entries: %v %v", public, err)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	e.mustStatus(e.post("L", entry("m1", "issuance", "alice", "1")), 201)
	e.mustStatus(e.post("L", entry("m1", "issuance", "alice", "1")), 200)
	e.mustStatus(e.post("L", entry("m2", "alice", "bob", "9")), 422)
	e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"entries": []any{entry("m3", "issuance", "bob", "2")}}), 200)

	// Metrics are not on the API's port (serve --metrics-addr gives them a listener of their own).
	if r := e.do("GET", "/metrics", nil); r.status != 404 {
		t.Errorf("/metrics on the API port: %d", r.status)
	}
	rec := httptest.NewRecorder()
	e.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	text := rec.Body.String()
	for _, want := range []string{
		`dualledger_postings_total{result="created"} 2`,
		`dualledger_postings_total{result="replayed"} 1`,
		`dualledger_postings_total{result="insufficient_funds"} 1`,
		`dualledger_posting_duration_seconds_count{mode="single"} 3`,
		`dualledger_posting_duration_seconds_count{mode="batch"} 1`,
		`dualledger_group_commit_batch_size_count 3`,
		`dualledger_group_commit_duration_seconds_count 3`,
		`dualledger_http_requests_total{method="POST",route="/v1/ledgers/{ledger_id}/entries",status="201"} 1`,
		`dualledger_http_requests_total{method="POST",route="/v1/ledgers/{ledger_id}/entries",status="422"} 1`,
		`dualledger_db_pool_max_connections`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.do("GET", "/v1/nothing", nil)
	if r.status != 404 || r.errCode() != "not_found" {
		t.Errorf("unknown path: %d %s", r.status, r.raw)
	}
	r = e.do("DELETE", "/v1/ledgers", nil)
	if r.status != 405 || r.errCode() != "method_not_allowed" {
		t.Errorf("wrong method: %d %s", r.status, r.raw)
	}
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow %q", allow)
	}
	r = e.do("PUT", "/v1/ledgers/L/entries/batch", "{}")
	if r.status != 405 || r.header.Get("Allow") == "" {
		t.Errorf("PUT batch: %d %s %v", r.status, r.raw, r.header)
	}
	r = e.do("GET", "/v1/ledgers/", nil)
	if r.status != 404 || r.errCode() != "not_found" {
		t.Errorf("trailing slash: %d %s", r.status, r.raw)
	}
	// A path that is not canonical is not redirected (an HTML body; a client following it would
	// send its body and key again): a 404 in the envelope that names the canonical path, and
	// nothing posted.
	e.setupUSD()
	for _, p := range []string{"//v1/ledgers/L/entries", "/v1/./ledgers/L/entries", "/v1/x/../ledgers/L/entries"} {
		r = e.do("POST", p, entry("noncanonical", "issuance", "alice", "1.00"))
		if r.status != 404 || r.errCode() != "not_found" || r.str("error", "details", "canonical_path") != "/v1/ledgers/L/entries" {
			t.Errorf("POST %s: %d %s", p, r.status, r.raw)
		}
	}
	// An account id may hold "/../" (its format allows it): escaped, its path is canonical.
	e.createAccount("L", "a/../b", "USD", "fiat", "")
	if r := e.do("GET", "/v1/ledgers/L/accounts/a%2F..%2Fb", nil); r.status != 200 || r.str("id") != "a/../b" {
		t.Errorf("account a/../b: %d %s", r.status, r.raw)
	}
	if seq := e.headSeq("L"); seq != 0 {
		t.Errorf("a posting through a non-canonical path was written: head seq %v", seq)
	}
	// HEAD is GET without a body.
	req, _ := http.NewRequest(http.MethodHead, e.ts.URL+"/healthz", nil)
	if r := e.send(req); r.status != 200 || len(r.raw) != 0 {
		t.Errorf("HEAD: %d %q", r.status, r.raw)
	}
	// Query parameters on an endpoint that takes none.
	if r := e.do("GET", "/v1/ledgers/L?limit=5", nil); r.status != 400 || r.str("error", "details", "field") != "limit" {
		t.Errorf("unknown query parameter: %d %s", r.status, r.raw)
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.do("GET", "/healthz", nil, "X-Request-Id", "abc-123")
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("echo: %q", r.header.Get("X-Request-Id"))
	}
	r = e.do("GET", "/healthz", nil, "X-Request-Id", "bad id\twith spaces")
	if id := r.header.Get("X-Request-Id"); id == "" || strings.Contains(id, " ") {
		t.Errorf("replaced: %q", id)
	}
	if !strings.Contains(e.logs.String(), "request_id=abc-123") {
		t.Errorf("request not logged at debug level:\n%s", e.logs.String())
	}
}

// NewServer takes its services from the caller: an injected Poster and Keyring are used, and
// stay the caller's after Close.
func TestNewServerWithInjectedDeps(t *testing.T) {
	d := pgtest.NewWithConfig(t, appRole)
	poster := ledger.NewPoster(d.Pool, ledger.PosterConfig{})
	defer poster.Close()
	keys := auth.NewKeyring(d.Pool, 0, nil)
	srv, err := NewServer(Deps{Pool: d.Pool, Poster: poster, Keys: keys}, Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	token := newKeyOn(t, d, auth.Spec{Name: "deps", Scopes: []string{auth.ScopeAdmin}})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := &http.Client{Transport: authTransport{base: http.DefaultTransport, token: &token}}
	for _, step := range []struct {
		path string
		body any
	}{
		{"/v1/ledgers", map[string]any{"id": "D"}},
		{"/v1/ledgers/D/accounts", map[string]any{"id": "i", "currency_code": "USD", "asset_type": "fiat", "overdraft_limit": "unlimited"}},
		{"/v1/ledgers/D/accounts", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "fiat"}},
		{"/v1/ledgers/D/entries", entry("d1", "i", "a", "1.00")},
	} {
		if st, body, err := postJSON(c, ts.URL+step.path, step.body); err != nil || st != http.StatusCreated {
			t.Fatalf("%s: %d %v %v", step.path, st, body, err)
		}
	}
	srv.Close()
	// The injected Poster still posts after the server closed.
	if res, err := poster.Post(context.Background(), "D", ledger.EntryInput{DebitAccountID: "i", CreditAccountID: "a", Amount: "1",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: "d2"}); err != nil || res.Code != ledger.CodeCreated {
		t.Fatalf("injected poster after Close: %v %+v", err, res)
	}
	if _, err := NewServer(Deps{}, Config{}); err == nil {
		t.Error("NewServer without a pool")
	}
}
