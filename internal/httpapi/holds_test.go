package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"dualledger/internal/auth"
)

// TestHoldsHTTP walks a hold's life through the API: create (201, replay 200, other body 409),
// funds reserved against postings, partial capture (201 with the entry, replay 200), capture
// and void of a captured hold (409 hold_not_pending), reads and lists, and the outbox row of the
// capture (member banks' accounts), none for the reservation.
func TestHoldsHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e) // MASTER: SCB-1-USD (1,000,000.00, bank SCB-1), SCB-2-USD (bank SCB-2), issuance
	body := entry("h1", "SCB-1-USD", "SCB-2-USD", "999999.00")
	r := e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds", body), http.StatusCreated)
	if r.str("result") != "created" || r.str("hold", "status") != "PENDING" || r.str("hold", "amount") != "999999.00" {
		t.Fatalf("create: %s", r.raw)
	}
	if loc := r.header.Get("Location"); loc != "/v1/ledgers/MASTER/holds/h1" {
		t.Errorf("Location %q", loc)
	}
	if stlOutboxRows(e, "h1") != 0 {
		t.Errorf("a reservation wrote outbox rows")
	}
	e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds", body), http.StatusOK)
	other := entry("h1", "SCB-1-USD", "SCB-2-USD", "5.00")
	if r := e.do("POST", "/v1/ledgers/MASTER/holds", other); r.status != http.StatusConflict || r.errCode() != "reference_conflict" {
		t.Fatalf("conflicting create: %d %s", r.status, r.raw)
	}
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD", nil), http.StatusOK)
	if r.str("balance") != "1000000.00" || r.str("available_balance") != "1.00" || r.str("reserved_balance") != "999999.00" {
		t.Fatalf("account with a hold: %s", r.raw)
	}
	if r := e.post("MASTER", entry("spend", "SCB-1-USD", "SCB-2-USD", "1.01")); r.status != http.StatusUnprocessableEntity || r.errCode() != "insufficient_funds" {
		t.Fatalf("posting reserved funds: %d %s", r.status, r.raw)
	}
	// Unknown fields and bad amounts are refused before anything happens.
	if r := e.do("POST", "/v1/ledgers/MASTER/holds/h1/capture", map[string]any{"reference_id": "c1", "amont": "1"}); r.status != http.StatusBadRequest {
		t.Fatalf("capture with an unknown field: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/v1/ledgers/MASTER/holds/h1/capture", map[string]any{"reference_id": "c1", "amount": "1000000"}); r.status != http.StatusBadRequest || r.errCode() != "invalid_amount" {
		t.Fatalf("capture over the hold: %d %s", r.status, r.raw)
	}
	cap1 := map[string]any{"reference_id": "c1", "amount": "100.50"}
	r = e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds/h1/capture", cap1), http.StatusCreated)
	if r.str("hold", "status") != "CAPTURED" || r.str("entry", "amount") != "100.50" || r.str("entry", "reference_id") != "c1" ||
		r.str("hold", "captured_amount") != "100.50" {
		t.Fatalf("capture: %s", r.raw)
	}
	if n := stlOutboxRows(e, "c1"); n != 2 {
		t.Errorf("capture between two member banks: %d outbox rows, want 2", n)
	}
	e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds/h1/capture", cap1), http.StatusOK)
	if r := e.do("POST", "/v1/ledgers/MASTER/holds/h1/capture", map[string]any{"reference_id": "c2"}); r.status != http.StatusConflict || r.errCode() != "hold_not_pending" {
		t.Fatalf("second capture: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/v1/ledgers/MASTER/holds/h1/void", nil); r.status != http.StatusConflict || r.errCode() != "hold_not_pending" {
		t.Fatalf("void after capture: %d %s", r.status, r.raw)
	}
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD", nil), http.StatusOK)
	if r.str("balance") != "999899.50" || r.str("available_balance") != "999899.50" || r.str("reserved_balance") != "0.00" {
		t.Fatalf("account after capture: %s", r.raw)
	}
	// Void.
	e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds", entry("h2", "SCB-1-USD", "SCB-2-USD", "7.00")), http.StatusCreated)
	r = e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds/h2/void", nil), http.StatusOK)
	if r.str("result") != "created" || r.str("hold", "status") != "VOIDED" {
		t.Fatalf("void: %s", r.raw)
	}
	r = e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds/h2/void", nil), http.StatusOK)
	if r.str("result") != "replayed" {
		t.Fatalf("void replay: %s", r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/MASTER/holds/nope", nil); r.status != http.StatusNotFound || r.errCode() != "unknown_hold" {
		t.Fatalf("unknown hold: %d %s", r.status, r.raw)
	}
	// Lists.
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/holds?status=VOIDED", nil), http.StatusOK)
	if hs, _ := r.get("holds").([]any); len(hs) != 1 || hs[0].(map[string]any)["reference_id"] != "h2" {
		t.Fatalf("list VOIDED: %s", r.raw)
	}
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/holds?account=SCB-2-USD&limit=1", nil), http.StatusOK)
	if hs, _ := r.get("holds").([]any); len(hs) != 1 || r.get("next_after_id") == nil {
		t.Fatalf("list by account, page 1: %s", r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/MASTER/holds?status=OPEN", nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad status filter: %d %s", r.status, r.raw)
	}
	// Balances as of a point: seq 1 (the funding) had nothing reserved; while the hold was
	// pending (head still 1 then) the latest state at seq 1 counts it until the capture at seq 2.
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD?as_of_seq=2", nil), http.StatusOK)
	if r.str("balance") != "999899.50" || r.str("reserved_balance") != "0.00" || r.get("as_of_seq") != float64(2) {
		t.Fatalf("as of seq 2: %s", r.raw)
	}
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD?as_of_seq=1", nil), http.StatusOK)
	if r.str("balance") != "1000000.00" || r.str("reserved_balance") != "999999.00" || r.str("available_balance") != "1.00" {
		t.Fatalf("as of seq 1 (the hold pending): %s", r.raw)
	}
	r = e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD?as_of=2000-01-01T00:00:00Z", nil), http.StatusOK)
	if r.str("balance") != "0.00" || r.get("as_of_seq") != float64(0) || r.str("as_of") != "2000-01-01T00:00:00Z" {
		t.Fatalf("as of 2000: %s", r.raw)
	}
	for _, q := range []string{"as_of_seq=99", "as_of_seq=-1", "as_of_seq=x", "as_of=yesterday", "as_of_seq=1&as_of=2000-01-01T00:00:00Z"} {
		if r := e.do("GET", "/v1/ledgers/MASTER/accounts/SCB-1-USD?"+q, nil); r.status != http.StatusBadRequest || r.errCode() != "invalid_request" {
			t.Errorf("?%s: %d %s", q, r.status, r.raw)
		}
	}
}

// TestHoldsHTTPMemberBank: a member bank's key holds, captures and voids only holds on its own
// accounts, reads only holds that touch them, and learns nothing of the others.
func TestHoldsHTTPMemberBank(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	e.mustStatus(e.post("MASTER", entry("fund-2", "issuance", "SCB-2-USD", "500.00")), http.StatusCreated)
	bank1 := "SCB-1"
	tok := e.newKey(auth.Spec{Name: "SCB-1 ops", Scopes: []string{auth.ScopeRead, auth.ScopePost}, BankID: &bank1})
	e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds", entry("theirs", "SCB-2-USD", "issuance", "5.00")), http.StatusCreated)

	if r := e.as(tok, "POST", "/v1/ledgers/MASTER/holds", entry("steal", "SCB-2-USD", "SCB-1-USD", "5.00")); r.status != http.StatusForbidden {
		t.Fatalf("hold on another bank's account: %d %s", r.status, r.raw)
	}
	for _, p := range []string{"/v1/ledgers/MASTER/holds/theirs/void", "/v1/ledgers/MASTER/holds/theirs/capture", "/v1/ledgers/MASTER/holds/nope/void"} {
		var body any
		if strings.HasSuffix(p, "capture") {
			body = map[string]any{"reference_id": "x"}
		}
		if r := e.as(tok, "POST", p, body); r.status != http.StatusForbidden {
			t.Fatalf("%s by another bank: %d %s", p, r.status, r.raw)
		}
	}
	if r := e.as(tok, "GET", "/v1/ledgers/MASTER/holds/theirs", nil); r.status != http.StatusForbidden {
		t.Fatalf("reading another bank's hold: %d %s", r.status, r.raw)
	}
	e.mustStatus(e.as(tok, "POST", "/v1/ledgers/MASTER/holds", entry("mine", "SCB-1-USD", "SCB-2-USD", "5.00")), http.StatusCreated)
	r := e.mustStatus(e.as(tok, "GET", "/v1/ledgers/MASTER/holds", nil), http.StatusOK)
	if hs, _ := r.get("holds").([]any); len(hs) != 1 || hs[0].(map[string]any)["reference_id"] != "mine" {
		t.Fatalf("a member bank's list: %s", r.raw)
	}
	r = e.mustStatus(e.as(tok, "POST", "/v1/ledgers/MASTER/holds/mine/capture", map[string]any{"reference_id": "mine-cap"}), http.StatusCreated)
	if r.get("entry", "credit_balance_after") != nil {
		t.Errorf("the capture shows the other bank's balance: %s", r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/MASTER/holds/theirs", nil); r.str("status") != "PENDING" {
		t.Fatalf("the other bank's hold changed: %s", r.raw)
	}
}

// TestHoldsHTTPCaptureVoidRace: many capture/void pairs over HTTP at once; exactly one of each
// pair wins, the other is 409 hold_not_pending.
func TestHoldsHTTPCaptureVoidRace(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	const n = 20
	for i := range n {
		e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds", entry("r"+strconv.Itoa(i), "SCB-1-USD", "SCB-2-USD", "1.00")), http.StatusCreated)
	}
	var wg sync.WaitGroup
	codes := make([][2]int, n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			codes[i][0] = e.do("POST", "/v1/ledgers/MASTER/holds/r"+strconv.Itoa(i)+"/capture", map[string]any{"reference_id": "rc" + strconv.Itoa(i)}).status
		}()
		go func() {
			defer wg.Done()
			codes[i][1] = e.do("POST", "/v1/ledgers/MASTER/holds/r"+strconv.Itoa(i)+"/void", nil).status
		}()
	}
	wg.Wait()
	captured := 0
	for i, c := range codes {
		switch c {
		case [2]int{http.StatusCreated, http.StatusConflict}:
			captured++
		case [2]int{http.StatusConflict, http.StatusOK}:
		default:
			t.Errorf("pair %d: capture %d, void %d: want exactly one winner", i, c[0], c[1])
		}
	}
	var reserved string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT reserved_balance::text FROM bank_accounts WHERE ledger_id = 'MASTER' AND id = 'SCB-1-USD'`).Scan(&reserved); err != nil {
		t.Fatal(err)
	}
	if reserved != "0.000000000000000000" {
		t.Errorf("reserved after the races: %s", reserved)
	}
}
