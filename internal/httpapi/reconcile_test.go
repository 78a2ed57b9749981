package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"dualledger/internal/auth"
)

// seedDiscrepancy records, as reconciliation would, a run of scbID and one OPEN discrepancy of
// kind for reference ref of MASTER; it returns the discrepancy's id.
func seedDiscrepancy(e *env, scbID, ref, kind string) int64 {
	e.t.Helper()
	ctx := context.Background()
	owner := e.db.Conn(e.t)
	var run, id int64
	if err := owner.QueryRow(ctx, `INSERT INTO reconciliation_runs (scb_id, full_read, actor, status, finished_at)
		VALUES ($1, true, 'cli:test', 'ok', now()) RETURNING id`, scbID).Scan(&run); err != nil {
		e.t.Fatal(err)
	}
	if err := owner.QueryRow(ctx, `INSERT INTO reconciliation_discrepancies (ledger_id, scb_id, reference_id, kind, entry_seq, first_run_id, last_run_id,
		dbis, scb) VALUES ('MASTER', $1, $2, $3, (SELECT seq FROM ledger_entries WHERE ledger_id = 'MASTER' AND reference_id = $2), $4, $4,
		'{"block_hash": "aa"}', '{"block_hash": "bb"}'::jsonb || CASE WHEN $3 = 'amount_mismatch' THEN (SELECT jsonb_build_object(
		'amount', trim_scale(amount - 1)::text, 'debit_account_id', debit_account_id, 'credit_account_id', credit_account_id,
		'currency_code', currency_code, 'asset_type', asset_type) FROM ledger_entries WHERE ledger_id = 'MASTER' AND reference_id = $2) ELSE '{}' END)
		RETURNING id`, scbID, ref, kind, run).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// TestDiscrepanciesAPI: a member bank's key lists only its bank's discrepancies and cannot
// resolve another bank's (404, as if it did not exist); an operator resolves with a reversal
// once (the correcting entry is returned), a second time is 409, a wrong resolution 422.
func TestDiscrepanciesAPI(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	d1 := seedDiscrepancy(e, "SCB-1", "fund-1", "amount_mismatch")
	d2 := seedDiscrepancy(e, "SCB-2", "fund-1", "hash_mismatch")
	bank := "SCB-2"
	scb2 := e.newKey(auth.Spec{Name: "scb2", Scopes: []string{auth.ScopeRead}, BankID: &bank})
	admin := e.newKey(auth.Spec{Name: "ops", Scopes: []string{auth.ScopeAdmin}})

	r := e.as(scb2, "GET", "/v1/discrepancies", nil)
	list, _ := r.get("discrepancies").([]any)
	if r.status != 200 || len(list) != 1 || list[0].(map[string]any)["scb_id"] != "SCB-2" {
		t.Fatalf("bank key list: %d %s", r.status, r.raw)
	}
	if r := e.as(scb2, "GET", "/v1/discrepancies?scb_id=SCB-1", nil); r.status != http.StatusForbidden {
		t.Errorf("bank key asking for another bank: %d %s", r.status, r.raw)
	}
	if r := e.as(admin, "GET", "/v1/discrepancies?kind=bogus", nil); r.status != http.StatusBadRequest {
		t.Errorf("unknown kind: %d %s", r.status, r.raw)
	}
	if r := e.as(admin, "GET", "/v1/discrepancies?limit=1", nil); r.status != 200 || r.get("next_after") == nil {
		t.Errorf("paging: %d %s", r.status, r.raw)
	}
	body := map[string]any{"resolution": "correct", "reason": "reverse it", "correction": map[string]any{"reverse": true, "amount": "1.00"}}
	if r := e.as(scb2, "POST", "/v1/discrepancies/"+itoa(d1)+"/resolve", body); r.status != http.StatusForbidden {
		t.Errorf("a member bank's key resolving: %d %s (resolving needs admin, which a bank's key never has)", r.status, r.raw)
	}
	if r := e.as(admin, "POST", "/v1/discrepancies/999999/resolve", body); r.status != http.StatusNotFound || r.errCode() != "unknown_discrepancy" {
		t.Errorf("unknown discrepancy: %d %s", r.status, r.raw)
	}
	if r := e.as(admin, "POST", "/v1/discrepancies/"+itoa(d2)+"/resolve", map[string]any{"resolution": "requeue", "reason": "x"}); r.status != http.StatusUnprocessableEntity ||
		r.errCode() != "resolution_not_applicable" {
		t.Errorf("requeue of a hash mismatch: %d %s", r.status, r.raw)
	}
	r = e.as(admin, "POST", "/v1/discrepancies/"+itoa(d1)+"/resolve", body)
	if r.status != 200 || r.get("correction") == nil {
		t.Fatalf("resolve: %d %s", r.status, r.raw)
	}
	if c := r.get("correction").(map[string]any); c["reference_id"] != "recon-"+itoa(d1) || c["reverses_entry_id"] == nil || c["amount"] != "1.00" {
		t.Errorf("correction: %v", c)
	}
	if r := e.as(admin, "POST", "/v1/discrepancies/"+itoa(d1)+"/resolve", body); r.status != http.StatusConflict || r.errCode() != "discrepancy_resolved" {
		t.Errorf("second resolve: %d %s", r.status, r.raw)
	}
	if r := e.as(admin, "POST", "/v1/discrepancies/x/resolve", body); r.status != http.StatusBadRequest {
		t.Errorf("bad id: %d %s", r.status, r.raw)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestStatementAPI: JSON, CSV and camt.053 of an account; a member bank's key gets its own
// accounts' statements only; bad ranges and formats are 400 with the field.
func TestStatementAPI(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	bank := "SCB-1"
	scb1 := e.newKey(auth.Spec{Name: "scb1", Scopes: []string{auth.ScopeRead}, BankID: &bank})
	reader := e.newKey(auth.Spec{Name: "reader", Scopes: []string{auth.ScopeRead}})
	today := time.Now().UTC().Format(time.DateOnly)
	path := "/v1/ledgers/MASTER/accounts/SCB-1-USD/statement?from=" + today + "&to=" + today
	r := e.as(scb1, "GET", path, nil)
	if r.status != 200 || r.get("opening_balance") != "0.00" || r.get("closing_balance") != "1000000.00" || r.get("count") != float64(1) {
		t.Fatalf("json: %d %s", r.status, r.raw)
	}
	if r := e.as(scb1, "GET", "/v1/ledgers/MASTER/accounts/SCB-2-USD/statement?from="+today+"&to="+today, nil); r.status != http.StatusForbidden {
		t.Errorf("another bank's account: %d %s", r.status, r.raw)
	}
	r = e.as(reader, "GET", path+"&format=csv", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") || !strings.Contains(string(r.raw), "closing,MASTER,SCB-1-USD") {
		t.Errorf("csv: %d %s %s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	r = e.as(reader, "GET", path+"&format=camt053", nil)
	if r.status != 200 || !strings.Contains(string(r.raw), "camt.053.001.08") || !strings.Contains(string(r.raw), "<Cd>CLBD</Cd>") {
		t.Errorf("camt053: %d %s", r.status, r.raw)
	}
	for q, field := range map[string]string{"from=2026-13-01&to=2026-12-01": "from", "from=2026-12-02&to=2026-12-01": "to",
		"from=" + today + "&to=" + today + "&format=pdf": "format", "to=2026-01-01": "from"} {
		if r := e.as(reader, "GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD/statement?"+q, nil); r.status != 400 || !strings.Contains(string(r.raw), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s", q, r.status, r.raw)
		}
	}
	if r := e.as(reader, "GET", "/v1/ledgers/MASTER/accounts/nope/statement?from="+today+"&to="+today, nil); r.status != 404 {
		t.Errorf("unknown account: %d %s", r.status, r.raw)
	}
}

// TestDiscrepancyNotesAreAdminOnly (review of 2026-12-02): the SCB's error text that our side of
// a discrepancy carries (dbis.failure_reason, the outbox's last_error) and the operators' who and
// why are shown to admin keys only, as a settlement's last_error is; what was found is not.
func TestDiscrepancyNotesAreAdminOnly(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	id := seedDiscrepancy(e, "SCB-1", "fund-1", "delivery_failed")
	owner := e.db.Conn(t)
	if _, err := owner.Exec(context.Background(), `UPDATE reconciliation_discrepancies
		SET dbis = dbis || '{"failure_reason": "401 from SCB-1: invalid API key", "outbox_status": "FAILED"}'
		WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(context.Background(), `SELECT discrepancy_acknowledge('cli:ops', $1, 'incident INC-42: credentials rotated')`, id); err != nil {
		t.Fatal(err)
	}
	bank := "SCB-1"
	for name, tok := range map[string]string{
		"reader":   e.newKey(auth.Spec{Name: "reader", Scopes: []string{auth.ScopeRead}}),
		"SCB-1":    e.newKey(auth.Spec{Name: "scb1", Scopes: []string{auth.ScopeRead}, BankID: &bank}),
		"an admin": e.newKey(auth.Spec{Name: "ops", Scopes: []string{auth.ScopeAdmin}}),
	} {
		r := e.mustStatus(e.as(tok, "GET", "/v1/discrepancies", nil), http.StatusOK)
		list, _ := r.get("discrepancies").([]any)
		if len(list) != 1 {
			t.Fatalf("%s: %s", name, r.raw)
		}
		d := list[0].(map[string]any)
		dbis, _ := d["dbis"].(map[string]any)
		secret := strings.Contains(string(r.raw), "invalid API key") || strings.Contains(string(r.raw), "INC-42") || d["acknowledged_by"] != nil
		if admin := name == "an admin"; secret != admin || dbis["outbox_status"] != "FAILED" || d["status"] != "ACKNOWLEDGED" {
			t.Errorf("%s sees %s", name, r.raw)
		}
	}
}
