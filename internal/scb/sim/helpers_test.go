package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dualledger/internal/scb"
)

const (
	apiKey   = "sim-api-key-123"
	adminKey = "sim-admin-key-456"
)

// simEnv is a simulator behind a real loopback HTTP server, and a client of it.
type simEnv struct {
	t      testing.TB
	cfg    Config
	srv    *Server
	ts     *httptest.Server
	client *scb.Client
}

// startSim starts a simulator on dir; cfg's ID, keys and DataDir are filled in if empty.
func startSim(t testing.TB, dir string, cfg Config) *simEnv {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "SCB-1"
	}
	if cfg.APIKey == "" {
		cfg.APIKey = apiKey
	}
	if cfg.AdminKey == "" {
		cfg.AdminKey = adminKey
	}
	cfg.DataDir = dir
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	env := &simEnv{t: t, cfg: cfg, srv: srv, ts: ts, client: env0client(t, ts.URL, time.Second)}
	// Cleanups run last-registered first: release held requests, then close the listener.
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = srv.Close() })
	return env
}

func env0client(t testing.TB, url string, timeout time.Duration) *scb.Client {
	t.Helper()
	c, err := scb.NewClient(scb.Config{ID: "SCB-1", BaseURL: url, APIKey: apiKey, Timeout: timeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stop closes the simulator (as a restart would), keeping its data dir.
func (e *simEnv) stop() {
	e.t.Helper()
	if err := e.srv.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.ts.Close()
}

func entry(ref string) scb.Entry {
	return scb.Entry{
		ReferenceID: ref, LedgerID: "MASTER", DebitAccountID: "scb1-usd", CreditAccountID: "scb2-usd",
		Amount: "250.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "settlement",
		DBISEntryID: 7, BlockHash: strings.Repeat("0f", 32),
		TimestampUTC: time.Date(2025, 6, 1, 8, 30, 0, 0, time.UTC),
	}
}

// raw sends a request and returns status, headers and body.
func (e *simEnv) raw(method, path, key string, hdr map[string]string, body []byte) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// postRaw posts ent's canonical body under its key.
func (e *simEnv) postRaw(ent scb.Entry) (int, http.Header, []byte) {
	e.t.Helper()
	b, err := ent.Body()
	if err != nil {
		e.t.Fatal(err)
	}
	return e.raw("POST", "/v1/entries", apiKey, map[string]string{"Idempotency-Key": ent.IdempotencyKey()}, b)
}

func (e *simEnv) setFaults(body string) {
	e.t.Helper()
	code, _, b := e.raw("POST", "/v1/admin/faults", adminKey, nil, []byte(body))
	if code != 200 {
		e.t.Fatalf("set faults %s: %d %s", body, code, b)
	}
}

func (e *simEnv) stats() Stats {
	e.t.Helper()
	code, _, b := e.raw("GET", "/v1/admin/stats?per_key=1", adminKey, nil, nil)
	if code != 200 {
		e.t.Fatalf("stats: %d %s", code, b)
	}
	var st Stats
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb scb.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	return eb.Error.Code
}
