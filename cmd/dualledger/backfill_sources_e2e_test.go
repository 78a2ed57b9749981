package main

// The same history through csv, database (the seed's ledger_entries_legacy) and api (a test
// server on loopback) gives the same ledger; an scb run against the simulator.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"dualledger/internal/backfill"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// cliEnv is cli with extra environment variables.
func cliEnv(t *testing.T, dbURL string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+dbURL), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// legacyRow is one row of history, as the three sources carry it.
type legacyRow struct {
	Ledger, Debit, Credit, Amount, Currency, Asset, Type, Ref, Fx, Meta, TS string
}

func legacyRows() []legacyRow {
	var rows []legacyRow
	for i := range 3 {
		rows = append(rows, legacyRow{"MASTER", "issuance", fmt.Sprintf("acct-%d", i), "500.00", "USD", "fiat", "funding", fmt.Sprintf("L-F%d", i), "", "", "2022-01-01T00:00:00Z"})
	}
	for i := range 297 {
		r := legacyRow{"MASTER", fmt.Sprintf("acct-%d", i%3), fmt.Sprintf("acct-%d", (i+1)%3), fmt.Sprintf("%d.%02d", i%17+1, i%100), "USD", "fiat", "transfer",
			fmt.Sprintf("L-%04d", i), "", "", time.Date(2022, 1, 2, 0, 0, i, 0, time.UTC).Format(time.RFC3339)}
		switch {
		case i%25 == 0:
			r.Meta = fmt.Sprintf(`{"legacy_id": %d, "note": "n%d"}`, i, i)
		case i%31 == 0:
			r.Fx = "1.2345"
		case i%41 == 0:
			r.Credit = "nobody" // rejected: unknown account
		case i%53 == 0:
			r.Amount = "9999.00" // rejected: overdraws
		}
		rows = append(rows, r)
	}
	return rows
}

func TestBackfillSourcesGiveTheSameLedger(t *testing.T) {
	rows := legacyRows()
	ctx := context.Background()

	// csv
	var b strings.Builder
	b.WriteString("ledgerId,debitAccountId,creditAccountId,amount,currencyCode,assetType,transactionType,referenceId,fxRate,metadata,timestampUtc\n")
	for _, r := range rows {
		meta := ""
		if r.Meta != "" {
			meta = `"` + strings.ReplaceAll(r.Meta, `"`, `""`) + `"`
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", r.Ledger, r.Debit, r.Credit, r.Amount, r.Currency, r.Asset, r.Type, r.Ref, r.Fx, meta, r.TS)
	}
	csvPath := filepath.Join(t.TempDir(), "legacy.csv")
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	viaCSV := backfillLedger(t, 3)
	run := func(d *pgtest.DB, env []string, args ...string) {
		t.Helper()
		args = append([]string{"backfill", "run", "--errors", filepath.Join(t.TempDir(), "e.jsonl"), "--batch-size", "64"}, args...)
		if out, errOut, code := cliEnv(t, d.ConnStr, env, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
	run(viaCSV, nil, "--source-type", "csv", "--source", csvPath, "--source-id", "legacy")
	wantEntries, wantBalances := ledgerState(t, viaCSV)
	if len(wantEntries) < 280 || len(wantEntries) == len(rows) {
		t.Fatalf("csv import: %d entries of %d rows (some must be rejected)", len(wantEntries), len(rows))
	}

	// database: the seed's ledger_entries_legacy, read by keyset on id.
	legacy := pgtest.New(t)
	if _, err := legacy.Pool.Exec(ctx, `CREATE TABLE ledger_entries_legacy (
		id bigint PRIMARY KEY, ledger_id text, debit_account_id text, credit_account_id text, amount numeric(38,18),
		currency_code text, asset_type text, transaction_type text, reference_id text, fx_rate numeric, metadata jsonb,
		timestamp_utc timestamptz)`); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		var fx, meta *string
		if r.Fx != "" {
			fx = &r.Fx
		}
		if r.Meta != "" {
			meta = &r.Meta
		}
		// ids with gaps and out of insertion order: the key orders, not the insertion.
		if _, err := legacy.Pool.Exec(ctx, `INSERT INTO ledger_entries_legacy VALUES ($1, $2, $3, $4, $5::numeric, $6, $7, $8, $9, $10::numeric, $11::jsonb, $12::timestamptz)`,
			(i+1)*10, r.Ledger, r.Debit, r.Credit, r.Amount, r.Currency, r.Asset, r.Type, r.Ref, fx, meta, r.TS); err != nil {
			t.Fatal(err)
		}
	}
	viaDB := backfillLedger(t, 3)
	run(viaDB, nil, "--source-type", "database", "--source", legacy.ConnStr, "--source-id", "legacy")
	if e, bal := ledgerState(t, viaDB); !slices.Equal(e, wantEntries) || !slices.Equal(bal, wantBalances) {
		t.Errorf("database source: %s / %s", firstDiff(e, wantEntries), firstDiff(bal, wantBalances))
	}

	// api: pages of {"entries": [...], "next_after_seq": n} as another dualledger answers, behind
	// a bearer token.
	const token = "test-token-123"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":{"code":"unauthenticated"}}`, http.StatusUnauthorized)
			return
		}
		after, _ := strconv.Atoi(r.URL.Query().Get("after_seq"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		limit = min(limit, 37) // pages smaller than asked for, as a server may answer
		var page struct {
			Entries []map[string]any `json:"entries"`
			Next    *int             `json:"next_after_seq"`
		}
		page.Entries = []map[string]any{}
		for i := after; i < len(rows) && len(page.Entries) < limit; i++ {
			r := rows[i]
			e := map[string]any{"id": i + 1000, "seq": i + 1, "ledger_id": r.Ledger, "debit_account_id": r.Debit, "credit_account_id": r.Credit,
				"amount": r.Amount, "currency_code": r.Currency, "asset_type": r.Asset, "transaction_type": r.Type, "reference_id": r.Ref,
				"timestamp_utc": r.TS, "block_hash": "ab", "fx_rate": nil, "metadata": map[string]any{}}
			if r.Fx != "" {
				e["fx_rate"] = r.Fx
			}
			if r.Meta != "" {
				var m map[string]any
				_ = json.Unmarshal([]byte(r.Meta), &m)
				e["metadata"] = m
			}
			page.Entries = append(page.Entries, e)
		}
		if n := after + len(page.Entries); n < len(rows) {
			page.Next = &n
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	viaAPI := backfillLedger(t, 3)
	if _, errOut, code := cliEnv(t, viaAPI.ConnStr, nil, "backfill", "run", "--source-type", "api", "--source", srv.URL+"/v1/ledgers/MASTER/entries",
		"--source-id", "legacy-api", "--errors", filepath.Join(t.TempDir(), "x.jsonl")); code != 3 || !strings.Contains(errOut, "401") {
		t.Errorf("api without a token: exit %d, want 3 naming the 401\n%s", code, errOut)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(viaAPI, nil, "--source-type", "api", "--source", srv.URL+"/v1/ledgers/MASTER/entries", "--source-id", "legacy-api2", "--api-token-file", tokenFile)
	if e, bal := ledgerState(t, viaAPI); !slices.Equal(e, wantEntries) || !slices.Equal(bal, wantBalances) {
		t.Errorf("api source: %s / %s", firstDiff(e, wantEntries), firstDiff(bal, wantBalances))
	}
	// The token also comes from the environment; each source verifies.
	out, errOut, code := cliEnv(t, viaAPI.ConnStr, []string{"DUALLEDGER_BACKFILL_API_TOKEN=" + token}, "backfill", "verify", "--source-type", "api",
		"--source", srv.URL+"/v1/ledgers/MASTER/entries", "--source-id", "legacy-api2")
	if code != 0 {
		t.Errorf("verify the api import: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, viaDB.ConnStr, "backfill", "verify", "--source-type", "database", "--source", legacy.ConnStr, "--source-id", "legacy"); code != 0 {
		t.Errorf("verify the database import: exit %d\n%s\n%s", code, out, errOut)
	}
}

// scbBackfillLedger is backfillLedger's MASTER with member bank SCB-1 and its account SCB-1-USD.
func scbBackfillLedger(t *testing.T) *pgtest.DB {
	t.Helper()
	ctx := context.Background()
	d := backfillLedger(t, 0)
	if _, err := ledger.RegisterBank(ctx, d.Pool, "system:test", "SCB-1", "SCB one"); err != nil {
		t.Fatal(err)
	}
	bank := "SCB-1"
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "SCB-1-USD", CurrencyCode: "USD", AssetType: "fiat", BankID: &bank}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBackfillFromSCB: scenario 4, an SCB's history imported from the simulator's
// GET /v1/entries; the entries get their outbox rows like any posting and verify passes.
func TestBackfillFromSCB(t *testing.T) {
	s := startSim(t, "SCB-1", "scb-key-1", sim.Faults{})
	ctx := context.Background()
	client, err := scb.NewClient(scb.Config{ID: "SCB-1", BaseURL: s.http.URL, APIKey: "scb-key-1", Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 120 {
		e := scb.Entry{ReferenceID: fmt.Sprintf("S-%03d", i), LedgerID: "MASTER", DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD",
			Amount: "2.50", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "scb_history", DBISEntryID: int64(i + 1), BlockHash: strings.Repeat("ab", 32),
			TimestampUTC: time.Date(2021, 6, 1, 0, 0, i, 0, time.UTC)}
		if _, err := client.Post(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	d := scbBackfillLedger(t)
	env := []string{"SCB_SCB_1_API_URL=" + s.http.URL, "SCB_SCB_1_API_KEY=scb-key-1"}
	out, errOut, code := cliEnv(t, d.ConnStr, env, "backfill", "run", "--source-type", "scb", "--source", "SCB-1", "--source-id", "scb1-history",
		"--errors", filepath.Join(t.TempDir(), "s.jsonl"), "--batch-size", "50")
	if code != 0 {
		t.Fatalf("scb run: exit %d\n%s\n%s", code, out, errOut)
	}
	cp, err := backfill.GetCheckpoint(ctx, d.Pool, "scb", "scb1-history")
	if err != nil || cp.Status != backfill.StatusCompleted || cp.TotalSuccessful != 120 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	var outbox int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox WHERE scb_id = 'SCB-1' AND reference_id LIKE 'S-%'`).Scan(&outbox); err != nil || outbox != 120 {
		t.Errorf("outbox rows: %d %v", outbox, err)
	}
	if ts := strings1(t, d.Pool, `SELECT timestamp_utc::text FROM ledger_entries WHERE reference_id = 'S-005'`); len(ts) != 1 || ts[0] != "2021-06-01 00:00:05+00" {
		t.Errorf("business time not kept: %v", ts)
	}
	if out, errOut, code := cliEnv(t, d.ConnStr, env, "backfill", "verify", "--source-type", "scb", "--source", "SCB-1", "--source-id", "scb1-history"); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillFromSCBSkipsOurOwnDeliveries: an SCB's history holds the entries DBIS delivered to
// it, as the delivery carried them: without metadata or fx_rate. Such an entry (the SCB names it
// by our entry id) is a duplicate, skipped by the run, the dry run and verify alike; before, each
// was a reference_conflict (every settlement, whose metadata names the node). A copy that differs
// in a field the delivery carries (the amount) is still a conflict, and so is a copy that names
// another entry id.
func TestBackfillFromSCBSkipsOurOwnDeliveries(t *testing.T) {
	s := startSim(t, "SCB-1", "scb-key-1", sim.Faults{})
	ctx := context.Background()
	client, err := scb.NewClient(scb.Config{ID: "SCB-1", BaseURL: s.http.URL, APIKey: "scb-key-1", Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := scbBackfillLedger(t)
	fx := "1.25"
	ours := []ledger.EntryInput{
		{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "10.00", CurrencyCode: "USD", AssetType: "fiat",
			TransactionType: "GSS_SETTLEMENT", ReferenceID: "OWN-meta", Metadata: json.RawMessage(`{"node_id":"n1"}`)},
		{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "20.00", CurrencyCode: "USD", AssetType: "fiat",
			TransactionType: "fx", ReferenceID: "OWN-fx", FxRate: &fx},
		{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "30.00", CurrencyCode: "USD", AssetType: "fiat",
			TransactionType: "GSS_SETTLEMENT", ReferenceID: "OWN-altered", Metadata: json.RawMessage(`{"node_id":"n1"}`)},
		{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "40.00", CurrencyCode: "USD", AssetType: "fiat",
			TransactionType: "GSS_SETTLEMENT", ReferenceID: "OWN-other-id", Metadata: json.RawMessage(`{"node_id":"n1"}`)},
	}
	res, err := ledger.PostBatch(ctx, d.Pool, "MASTER", ours, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Code != ledger.CodeCreated {
			t.Fatalf("entry %d: %+v", i, r)
		}
		// What the worker sends (docs/design.md §5), altered for two of them.
		e := scb.Entry{ReferenceID: ours[i].ReferenceID, LedgerID: "MASTER", DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD",
			Amount: ours[i].Amount, CurrencyCode: "USD", AssetType: "fiat", TransactionType: ours[i].TransactionType,
			DBISEntryID: r.EntryID, BlockHash: r.BlockHash, TimestampUTC: r.TimestampUTC}
		switch ours[i].ReferenceID {
		case "OWN-altered":
			e.Amount = "31.00"
		case "OWN-other-id":
			e.DBISEntryID = r.EntryID + 1000
		}
		if _, err := client.Post(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"SCB_SCB_1_API_URL=" + s.http.URL, "SCB_SCB_1_API_KEY=scb-key-1"}
	dir := t.TempDir()
	args := []string{"backfill", "run", "--source-type", "scb", "--source", "SCB-1", "--source-id", "scb1-own"}
	out, errOut, code := cliEnv(t, d.ConnStr, env, append(args, "--dry-run", "--errors", filepath.Join(dir, "dry.jsonl"))...)
	if code != 1 || !strings.Contains(out, "2 would be rejected") {
		t.Errorf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cliEnv(t, d.ConnStr, env, append(args, "--errors", filepath.Join(dir, "e.jsonl"))...)
	if code != 0 {
		t.Fatalf("scb run: exit %d\n%s\n%s", code, out, errOut)
	}
	cp, err := backfill.GetCheckpoint(ctx, d.Pool, "scb", "scb1-own")
	if err != nil || cp.Status != backfill.StatusCompleted || cp.TotalSuccessful != 0 || cp.TotalSkipped != 2 || cp.TotalFailed != 2 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}
	report, err := os.ReadFile(filepath.Join(dir, "e.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(report), `"code":"reference_conflict"`); n != 2 || !strings.Contains(string(report), "OWN-altered") ||
		!strings.Contains(string(report), "OWN-other-id") {
		t.Errorf("report:\n%s", report)
	}
	if out, errOut, code := cliEnv(t, d.ConnStr, env, "backfill", "verify", "--source-type", "scb", "--source", "SCB-1", "--source-id", "scb1-own"); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
}
