// Package e2e holds the SCB tests that need the whole path: ledger, outbox worker and database.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/pg/pgtest"
	"dualledger/internal/scb"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// keyForms: the key as the issue says it must never be stored or shown: plain, URL-encoded,
// HTML-escaped, base64 (standard, URL, raw; of the key and of "Bearer <key>"), hex.
func keyForms(key string) []string {
	out := []string{key, url.QueryEscape(key), url.PathEscape(key), html.EscapeString(key), hex.EncodeToString([]byte(key))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(key)), enc.EncodeToString([]byte("Bearer "+key)))
	}
	return out
}

func leaks(s, key string) string {
	low := strings.ToLower(s)
	for _, f := range keyForms(key) {
		if strings.Contains(low, strings.ToLower(f)) {
			return f
		}
	}
	return ""
}

// echoSCB answers with status code (or, for a POST when acceptPost, 201 ACCEPTED) and a body
// that echoes the request's Authorization header and key in every form, as a careless SCB's error
// page might.
func echoSCB(t *testing.T, code int, acceptPost bool) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if acceptPost && r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"scb_entry_id":"E-1","status":"ACCEPTED"}`))
			return
		}
		auth := r.Header.Get("Authorization")
		key := strings.TrimPrefix(auth, "Bearer ")
		msg := fmt.Sprintf("bad credentials %q (key %s; %s) %s", auth, key, strings.Join(keyForms(key), " "), strings.ToUpper(key))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": "echo", "message": msg}})
	}))
	t.Cleanup(ts.Close)
	return ts
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestEchoedKeyNeverStored: SCBs that echo our Authorization header and key (in every form) in
// their error bodies, on a permanent refusal (401), a retryable failure until the budget is
// spent (503) and a failed poll (500). The worker stores last_error, failure_reason and each
// attempt's error, and logs: none of them holds the key in any form, and each keeps the status
// and our classification.
func TestEchoedKeyNeverStored(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := d.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO ledgers (id) VALUES ('MASTER')`)
	exec(`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit) VALUES ('MASTER', 'issuance', 'USD', 'fiat', NULL)`)
	banks := []struct {
		id, key string
		srv     *httptest.Server
		final   string // the row's status at the end
	}{
		{"SCB-1", "sk_live_ONE_" + strings.Repeat("a1B2", 6), echoSCB(t, http.StatusUnauthorized, false), "FAILED"},
		{"SCB-2", "sk_live_TWO_" + strings.Repeat("c3D4", 6), echoSCB(t, http.StatusServiceUnavailable, false), "FAILED"},
		{"SCB-3", "sk_live_THREE_" + strings.Repeat("e5F6", 6), echoSCB(t, http.StatusInternalServerError, true), "SENT"},
	}
	clients := map[string]outbox.SCB{}
	for _, b := range banks {
		exec(`INSERT INTO banks (id, name) VALUES ($1, $1)`, b.id)
		exec(`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit) VALUES ('MASTER', $1 || '-USD', $1, 'USD', 'fiat', NULL)`, b.id)
		c, err := scb.NewClient(scb.Config{ID: b.id, BaseURL: b.srv.URL, APIKey: b.key, Timeout: 2 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		clients[b.id] = c
	}
	res, err := ledger.PostBatch(ctx, d.Pool, "MASTER", []ledger.EntryInput{
		{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "1.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: "echo-1"},
		{DebitAccountID: "issuance", CreditAccountID: "SCB-2-USD", Amount: "1.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: "echo-2"},
		{DebitAccountID: "issuance", CreditAccountID: "SCB-3-USD", Amount: "1.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: "echo-3"},
	}, true)
	if err != nil || len(res) != 3 || !res[0].OK() {
		t.Fatalf("post: %v %+v", err, res)
	}

	logs := &syncBuf{}
	w := outbox.NewWorker(outbox.NewStore(d.PoolAs(t, "dualledger_worker")), func(id string) (outbox.SCB, bool) {
		c, ok := clients[id]
		return c, ok
	}, outbox.Config{WorkerID: "echo-test", MaxAttempts: 2, Backoff: outbox.Backoff{Base: 10 * time.Millisecond, Cap: 20 * time.Millisecond},
		Idle: 20 * time.Millisecond, PollEvery: 50 * time.Millisecond, Lease: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()

	type row struct {
		scb, status   string
		lastError     *string
		failure       *string
		code          *int
		attemptErrors []string
	}
	read := func() map[string]row {
		out := map[string]row{}
		rows, err := d.Pool.Query(ctx, `SELECT o.scb_id, o.status, o.last_error, o.failure_reason, o.last_status_code,
			       coalesce(array_agg(a.error) FILTER (WHERE a.error IS NOT NULL), '{}')
			  FROM dual_ledger_outbox o LEFT JOIN dual_ledger_outbox_attempts a ON a.ledger_id = o.ledger_id AND a.outbox_id = o.id
			 GROUP BY o.id, o.ledger_id ORDER BY o.scb_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.scb, &r.status, &r.lastError, &r.failure, &r.code, &r.attemptErrors); err != nil {
				t.Fatal(err)
			}
			out[r.scb] = r
		}
		return out
	}
	deadline := time.Now().Add(30 * time.Second)
	var got map[string]row
	for {
		got = read()
		ready := len(got) == 3
		for _, b := range banks {
			r := got[b.id]
			ready = ready && r.status == b.final && r.lastError != nil
		}
		if ready || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("worker: %v", err)
	}

	for _, b := range banks {
		r := got[b.id]
		if r.status != b.final || r.lastError == nil {
			t.Errorf("%s: status %s last_error %v, want %s with an error", b.id, r.status, r.lastError, b.final)
			continue
		}
		t.Logf("%s %s last_error: %s", b.id, r.status, *r.lastError)
		texts := append([]string{*r.lastError}, r.attemptErrors...)
		if r.failure != nil {
			texts = append(texts, *r.failure)
		}
		for _, s := range texts {
			if f := leaks(s, b.key); f != "" {
				t.Errorf("%s: stored text holds the key as %q: %s", b.id, f, s)
			}
			if strings.ContainsAny(s, "\r\n") {
				t.Errorf("%s: stored text is not one line: %q", b.id, s)
			}
		}
		// What is kept: the status and our classification, and the SCB's words, redacted.
		want := map[string]string{"SCB-1": "401 Unauthorized from SCB-1 (the SCB refused our API key)",
			"SCB-2": "503 Service Unavailable from SCB-2 (the SCB is unavailable)", "SCB-3": "500 Internal Server Error from SCB-3 (the SCB failed)"}[b.id]
		if !strings.Contains(*r.lastError, want) || !strings.Contains(*r.lastError, "[redacted]") {
			t.Errorf("%s: last_error %q, want it to contain %q and [redacted]", b.id, *r.lastError, want)
		}
		if len(*r.lastError) > 600 {
			t.Errorf("%s: last_error is %d bytes", b.id, len(*r.lastError))
		}
	}
	if s := got["SCB-2"].lastError; s != nil && !strings.Contains(*s, "gave up after 2 attempts") {
		t.Errorf("SCB-2: %q, want the exhausted budget", *s)
	}
	for _, b := range banks {
		if f := leaks(logs.String(), b.key); f != "" {
			t.Errorf("the worker's log holds %s's key as %q", b.id, f)
		}
	}
}

// TestLedgerIDWithColonRefused: the SCB Idempotency-Key is "<ledger_id>:<reference_id>".
// Reference ids may contain ':', ledger ids may not (migration 009 and ledger.CreateLedger), so
// a key splits at its first ':' into one (ledger, reference) pair: ledger "L:X" with reference
// "1" cannot exist next to ledger "L" with reference "X:1".
func TestLedgerIDWithColonRefused(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "cli:test", "L:X"); ledger.CodeOf(err) != ledger.CodeInvalidRequest {
		t.Errorf("CreateLedger L:X: %v, want invalid_request", err)
	}
	_, err := d.Pool.Exec(ctx, `INSERT INTO ledgers (id) VALUES ('L:X')`)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.ConstraintName != "ledgers_id_no_colon" {
		t.Errorf("insert of ledger L:X as the owner: %v, want the ledgers_id_no_colon check", err)
	}
	if _, err := ledger.CreateLedger(ctx, d.Pool, "cli:test", "L"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Pool.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit) VALUES ('L', 'a', 'USD', 'fiat', NULL), ('L', 'b', 'USD', 'fiat', 0)`); err != nil {
		t.Fatal(err)
	}
	res, err := ledger.PostBatch(ctx, d.Pool, "L", []ledger.EntryInput{{DebitAccountID: "a", CreditAccountID: "b", Amount: "1.00",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: "X:1"}}, false)
	if err != nil || res[0].Code != ledger.CodeCreated {
		t.Fatalf("reference X:1 in ledger L: %v %+v", err, res)
	}
	key := scb.Entry{LedgerID: "L", ReferenceID: "X:1"}.IdempotencyKey()
	ledgerID, ref, _ := strings.Cut(key, ":")
	if key != "L:X:1" || ledgerID != "L" || ref != "X:1" {
		t.Errorf("key %q splits into %q, %q", key, ledgerID, ref)
	}
}
