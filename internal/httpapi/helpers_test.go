package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/auth"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one test's API: a real server (httptest) on the real handler, on a fresh migrated
// database reached as the restricted role dualledger_api, like `dualledger serve` does. Requests
// carry an admin key unless the test sends its own Authorization header.
type env struct {
	t      *testing.T
	db     *pgtest.DB
	srv    *Server
	ts     *httptest.Server
	client *http.Client // adds the admin key to requests that carry no Authorization
	raw    *http.Client // sends requests as they are
	doc    *Document
	docMux *http.ServeMux // the document's operations, to find the one a request is for
	logs   *syncBuffer
	token  string // the admin key every request carries by default

	// allowErrorLogs: the test provokes internal errors on purpose.
	allowErrorLogs bool
}

// appRole makes every pooled connection act as dualledger_api (migration 010), the role of
// `dualledger serve`.
func appRole(cfg *pgxpool.Config) {
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE dualledger_api")
		return err
	}
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	d := pgtest.NewWithConfig(t, appRole)
	return newEnvOn(t, d, cfg)
}

func newEnvOn(t *testing.T, d *pgtest.DB, cfg Config) *env {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(d.Pool, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	e := &env{t: t, db: d, srv: srv, ts: ts, logs: logs, raw: &http.Client{Transport: tr}}
	e.client = &http.Client{Transport: authTransport{base: tr, token: &e.token}}
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
		if !e.allowErrorLogs && strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("the server logged errors:\n%s", logs.String())
		}
	})
	e.token = e.newKey(auth.Spec{Name: "test admin", Scopes: []string{auth.ScopeAdmin}})
	var doc Document
	if err := json.Unmarshal(srv.OpenAPI(), &doc); err != nil {
		t.Fatalf("OpenAPI document: %v", err)
	}
	e.doc = &doc
	e.docMux = http.NewServeMux()
	for path, ops := range doc.Paths {
		for method := range ops {
			e.docMux.HandleFunc(strings.ToUpper(method)+" "+path, func(http.ResponseWriter, *http.Request) {})
		}
	}
	return e
}

// resp is an HTTP answer.
type resp struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any // the JSON object, if the body is one
}

func (r *resp) str(path ...string) string {
	v := r.get(path...)
	s, _ := v.(string)
	return s
}

// get walks the decoded body along keys (and array indexes as decimal strings).
func (r *resp) get(path ...string) any {
	var v any = r.body
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func (r *resp) errCode() string { return r.str("error", "code") }

// do sends a request. body: nil, a string or []byte (sent as is), or a value sent as JSON.
// Content-Type is application/json when there is a body, unless headers say otherwise.
// Every answer is checked against the OpenAPI document (see checkDocumented).
func (e *env) do(method, path string, body any, headers ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatalf("request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) *resp {
	e.t.Helper()
	return e.sendWith(e.client, req)
}

func (e *env) sendWith(c *http.Client, req *http.Request) *resp {
	e.t.Helper()
	hr, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer hr.Body.Close()
	raw, err := io.ReadAll(hr.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	r := &resp{status: hr.StatusCode, header: hr.Header, raw: raw}
	if strings.HasPrefix(hr.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: answer is not a JSON object: %v\n%s", req.Method, req.URL.Path, err, raw)
		}
	}
	e.checkDocumented(req, r)
	return r
}

// checkDocumented checks an answer against the OpenAPI document: its status is documented for
// the operation, its top-level JSON fields are exactly the documented schema's properties, and
// an error's code is among the codes documented for the status. So every request of every test
// also tests the document.
func (e *env) checkDocumented(req *http.Request, r *resp) {
	e.t.Helper()
	for _, p := range e.undocumented(req, r) {
		e.t.Errorf("%s %s: %s", req.Method, req.URL.Path, p)
	}
}

// undocumented lists how an answer departs from the document.
func (e *env) undocumented(req *http.Request, r *resp) []string {
	var problems []string
	_, pattern := e.docMux.Handler(req)
	if cleanPath(req.URL.EscapedPath()) != req.URL.EscapedPath() {
		pattern = "" // the mux names the route it would redirect to; the server serves no such path
	}
	if pattern == "" {
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed {
			problems = append(problems, fmt.Sprintf("not in the document but answered %d", r.status))
		}
		if c := r.errCode(); c != "not_found" && c != "method_not_allowed" {
			problems = append(problems, fmt.Sprintf("undocumented route answered code %q", c))
		}
		return append(problems, e.fieldProblems(r, "#/components/schemas/ErrorResponse")...)
	}
	method, path, _ := strings.Cut(pattern, " ")
	if method == http.MethodHead {
		method = http.MethodGet
	}
	op := e.doc.Paths[path][strings.ToLower(method)]
	doc, ok := op.Responses[strconv.Itoa(r.status)]
	if !ok {
		return append(problems, fmt.Sprintf("status %d is not documented for %s (body %s)", r.status, op.OperationID, r.raw))
	}
	if code := r.errCode(); code != "" && !slices.Contains(doc.ErrorCodes, code) {
		problems = append(problems, fmt.Sprintf("code %q with status %d is not documented for %s (documented: %v)",
			code, r.status, op.OperationID, doc.ErrorCodes))
	}
	if mt, ok := doc.Content["application/json"]; ok && r.body != nil {
		problems = append(problems, e.fieldProblems(r, mt.Schema.Ref)...)
	}
	return problems
}

func (e *env) fieldProblems(r *resp, ref string) []string {
	if ref == "" {
		return nil // an inline schema (the document itself)
	}
	s := e.doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
	if s == nil {
		return []string{"unresolved schema " + ref}
	}
	got := slices.Sorted(maps.Keys(r.body))
	want := slices.Sorted(maps.Keys(s.Properties))
	if !slices.Equal(got, want) {
		return []string{fmt.Sprintf("status %d: top-level fields %v, documented (%s) %v", r.status, got, ref, want)}
	}
	return nil
}

// Fixtures.

// newKey creates an API key as the operator would (CLI, owner connection) and returns its token;
// the server knows it on its first request.
func (e *env) newKey(spec auth.Spec) string {
	e.t.Helper()
	return newKeyOn(e.t, e.db, spec)
}

func newKeyOn(t *testing.T, d *pgtest.DB, spec auth.Spec) string {
	t.Helper()
	nk, err := auth.Create(context.Background(), d.Conn(t), "cli:test", spec)
	if err != nil {
		t.Fatalf("create key %+v: %v", spec, err)
	}
	return nk.Token
}

// metricsText is what the server's metrics listener would answer.
func (e *env) metricsText() []byte {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		e.t.Fatalf("metrics: %d", rec.Code)
	}
	return rec.Body.Bytes()
}

// workerPool is a pool on d acting as dualledger_worker, the role of `dualledger worker`.
func workerPool(t *testing.T, d *pgtest.DB) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(d.ConnStr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE dualledger_worker")
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// keyedClient is an HTTP client that sends an admin key of d with every request.
func keyedClient(t *testing.T, d *pgtest.DB, timeout time.Duration) *http.Client {
	t.Helper()
	token := newKeyOn(t, d, auth.Spec{Name: "test admin", Scopes: []string{auth.ScopeAdmin}})
	return &http.Client{Timeout: timeout, Transport: authTransport{base: http.DefaultTransport, token: &token}}
}

// as sends a request with token instead of the admin key ("" sends none).
func (e *env) as(token, method, path string, body any) *resp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			e.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatalf("request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.sendWith(e.raw, req)
}

// authTransport gives every request without an Authorization header the test's admin key.
type authTransport struct {
	base  http.RoundTripper
	token *string
}

func (t authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+*t.token)
	}
	return t.base.RoundTrip(req)
}

func (e *env) mustStatus(r *resp, status int) *resp {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func (e *env) createLedger(id string) {
	e.t.Helper()
	e.mustStatus(e.do("POST", "/v1/ledgers", map[string]any{"id": id}), http.StatusCreated)
}

func (e *env) createAccount(ledgerID, id, currency, asset, overdraft string) {
	e.t.Helper()
	body := map[string]any{"id": id, "currency_code": currency, "asset_type": asset}
	if overdraft != "" {
		body["overdraft_limit"] = overdraft
	}
	e.mustStatus(e.do("POST", "/v1/ledgers/"+ledgerID+"/accounts", body), http.StatusCreated)
}

// setupUSD creates ledger L with accounts issuance (unlimited overdraft), alice and bob (USD fiat).
func (e *env) setupUSD() {
	e.t.Helper()
	e.createLedger("L")
	e.createAccount("L", "issuance", "USD", "fiat", "unlimited")
	e.createAccount("L", "alice", "USD", "fiat", "")
	e.createAccount("L", "bob", "USD", "fiat", "")
}

func entry(ref, debit, credit, amount string) map[string]any {
	return map[string]any{
		"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
		"currency_code": "USD", "asset_type": "fiat", "transaction_type": "transfer", "reference_id": ref,
	}
}

func (e *env) post(ledgerID string, body any) *resp {
	e.t.Helper()
	return e.do("POST", "/v1/ledgers/"+ledgerID+"/entries", body)
}

func (e *env) balance(ledgerID, account string) string {
	e.t.Helper()
	return e.mustStatus(e.do("GET", "/v1/ledgers/"+ledgerID+"/accounts/"+account, nil), http.StatusOK).str("balance")
}

func (e *env) headSeq(ledgerID string) float64 {
	e.t.Helper()
	v, _ := e.mustStatus(e.do("GET", "/v1/ledgers/"+ledgerID, nil), http.StatusOK).get("head_seq").(float64)
	return v
}

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
