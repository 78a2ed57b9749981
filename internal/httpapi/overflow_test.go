package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"dualledger/internal/auth"
)

// TestBalanceOverflowHTTP is the black-box tester's reproduction: on ledger OTHER, U (unlimited
// overdraft) has 99999999999999999999.99 reserved by hold r1 and a balance of 0, so its
// available_balance is -99999999999999999999.99 and one more cent out of U is -10^20, beyond
// NUMERIC(38,18). A hold, an entry and a batch entry that would do it are each answered
// invalid_amount naming U's available_balance (they were 400 invalid_request "the request breaks
// a rule of the ledger ()"), and the good entry of a non-atomic batch is posted.
func TestBalanceOverflowHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	e.createLedger("OTHER")
	e.createAccount("OTHER", "U", "USD", "fiat", "unlimited")
	e.createAccount("OTHER", "X", "USD", "fiat", "")
	e.createAccount("OTHER", "Z", "USD", "fiat", "")
	e.createAccount("OTHER", "V", "USD", "fiat", "unlimited")

	wantOverflow := func(what string, r *resp) {
		t.Helper()
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_amount" ||
			!strings.Contains(r.str("error", "message"), `would take the available_balance of account "U" beyond NUMERIC(38,18)`) ||
			r.str("error", "details", "account_id") != "U" || r.str("error", "details", "balance") != "available_balance" ||
			r.str("error", "details", "field") != "amount" {
			t.Errorf("%s: %d %s, want 400 invalid_amount naming U's available_balance", what, r.status, r.raw)
		}
	}

	e.mustStatus(e.do("POST", "/v1/ledgers/OTHER/holds", entry("r1", "U", "X", "99999999999999999999.99")), http.StatusCreated)
	wantOverflow("hold r2", e.do("POST", "/v1/ledgers/OTHER/holds", entry("r2", "U", "X", "0.01")))
	wantOverflow("entry r3", e.post("OTHER", entry("r3", "U", "X", "0.01")))

	r := e.mustStatus(e.do("POST", "/v1/ledgers/OTHER/entries/batch", map[string]any{"atomic": false, "entries": []any{
		entry("r6", "V", "Z", "1.00"), entry("r7", "U", "X", "0.01"),
	}}), http.StatusOK)
	if got := strings.Join(batchCodes(r), ","); got != "created,invalid_amount" {
		t.Fatalf("non-atomic batch: %s", r.raw)
	}
	if r.str("results", "1", "error", "details", "balance") != "available_balance" || r.str("results", "1", "error", "details", "account_id") != "U" {
		t.Errorf("r7: %v", r.get("results", "1"))
	}
	if b := e.balance("OTHER", "Z"); b != "1.00" {
		t.Errorf("Z after the non-atomic batch: %s, want 1.00 (r6 written)", b)
	}

	r = e.do("POST", "/v1/ledgers/OTHER/entries/batch", map[string]any{"atomic": true, "entries": []any{
		entry("r8", "V", "Z", "1.00"), entry("r9", "U", "X", "0.01"),
	}})
	if r.status != http.StatusUnprocessableEntity || r.errCode() != "batch_rejected" ||
		strings.Join(batchCodes(r), ",") != "not_applied,invalid_amount" {
		t.Fatalf("atomic batch: %d %s", r.status, r.raw)
	}
	if b := e.balance("OTHER", "Z"); b != "1.00" {
		t.Errorf("Z after the atomic batch: %s, want 1.00 (nothing written)", b)
	}
	a := e.mustStatus(e.do("GET", "/v1/ledgers/OTHER/accounts/U", nil), http.StatusOK)
	if a.str("balance") != "0.00" || a.str("available_balance") != "-99999999999999999999.99" || a.str("reserved_balance") != "99999999999999999999.99" {
		t.Errorf("U: %s", a.raw)
	}
}

// TestOverflowTellsAMemberBankNothing: a member bank's posting or settlement refused because it
// would take another bank's balance out of range must not name that account or balance: trying
// amounts would otherwise pin the other bank's balance down, which its key may not read.
func TestOverflowTellsAMemberBankNothing(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	e.createAccount("MASTER", "issuance-2", "USD", "fiat", "unlimited")
	e.mustStatus(e.post("MASTER", entry("fill-2", "issuance-2", "SCB-2-USD", "99999999999999999999.00")), http.StatusCreated)
	bank1 := "SCB-1"
	member := e.newKey(auth.Spec{Name: "SCB-1", Scopes: []string{auth.ScopeRead, auth.ScopePost, auth.ScopeSettle}, BankID: &bank1})
	for what, r := range map[string]*resp{
		"entry":      e.as(member, "POST", "/v1/ledgers/MASTER/entries", entry("m-1", "SCB-1-USD", "SCB-2-USD", "1.00")),
		"settlement": e.as(member, "POST", "/v1/settlements", stlBody("m-2", "SCB-1", "SCB-2", "1.00")),
	} {
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_amount" || strings.Contains(string(r.raw), "SCB-2-USD") ||
			strings.Contains(string(r.raw), "balance\":") || r.str("error", "details", "field") != "amount" {
			t.Errorf("%s: %d %s", what, r.status, r.raw)
		}
	}
	// The operator's key is told which account and balance.
	r := e.post("MASTER", entry("m-3", "SCB-1-USD", "SCB-2-USD", "1.00"))
	if r.errCode() != "invalid_amount" || r.str("error", "details", "account_id") != "SCB-2-USD" {
		t.Errorf("admin: %d %s", r.status, r.raw)
	}
}
