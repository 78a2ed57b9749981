package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"dualledger/internal/pg/pgtest"
)

// The CLI's holds commands end to end: create (replay, conflict), list, capture (partial),
// void, exit codes, and expiry by `holds expire` and by serve's sweeper.
func TestHoldsCLI(t *testing.T) {
	d := pgtest.New(t)
	db := d.ConnStr
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, db, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}
	must("ledgers", "create", "MASTER")
	must("accounts", "create", "--currency", "USD", "issuance", "--overdraft", "unlimited")
	must("accounts", "create", "--currency", "USD", "payer")
	must("accounts", "create", "--currency", "USD", "payee")
	must("post", "--debit", "issuance", "--credit", "payer", "--amount", "100.00", "--currency", "USD", "--type", "funding", "--ref", "fund")

	create := []string{"holds", "create", "--debit", "payer", "--credit", "payee", "--amount", "60.00", "--currency", "USD",
		"--type", "payment", "--ref", "h1"}
	if out := must(create...); !strings.Contains(out, "created: hold h1 is PENDING") {
		t.Fatalf("create: %s", out)
	}
	if out := must(create...); !strings.HasPrefix(out, "replayed") {
		t.Fatalf("replay: %s", out)
	}
	bigger := append([]string{}, create...)
	bigger[7] = "61.00"
	if _, errOut, code := cli(t, db, bigger...); code != 1 || !strings.Contains(errOut, "reference_conflict") {
		t.Fatalf("conflict: %d %s", code, errOut)
	}
	if _, errOut, code := cli(t, db, "holds", "create", "--debit", "payer", "--credit", "payee", "--amount", "40.01",
		"--currency", "USD", "--type", "payment", "--ref", "h2"); code != 1 || !strings.Contains(errOut, "insufficient_funds") {
		t.Fatalf("hold over available: %d %s", code, errOut)
	}
	var acct struct {
		Balance          string
		AvailableBalance string `json:"available_balance"`
		ReservedBalance  string `json:"reserved_balance"`
	}
	if err := json.Unmarshal([]byte(must("accounts", "get", "payer", "--json")), &acct); err != nil ||
		acct.Balance != "100.00" || acct.AvailableBalance != "40.00" || acct.ReservedBalance != "60.00" {
		t.Fatalf("payer with a hold: %+v %v", acct, err)
	}
	out := must("holds", "capture", "h1", "--ref", "h1-cap", "--amount", "25.00", "--json")
	var cap struct {
		Result string
		Hold   struct{ Status string }
		Entry  struct {
			Amount      string
			ReferenceID string `json:"reference_id"`
		}
	}
	if err := json.Unmarshal([]byte(out), &cap); err != nil || cap.Result != "created" || cap.Hold.Status != "CAPTURED" || cap.Entry.Amount != "25.00" {
		t.Fatalf("capture: %s %v", out, err)
	}
	if _, errOut, code := cli(t, db, "holds", "void", "h1"); code != 1 || !strings.Contains(errOut, "hold_not_pending") {
		t.Fatalf("void after capture: %d %s", code, errOut)
	}
	must("holds", "create", "--debit", "payer", "--credit", "payee", "--amount", "5", "--currency", "USD", "--type", "payment", "--ref", "h3")
	if out := must("holds", "void", "h3"); !strings.Contains(out, "VOIDED") {
		t.Fatalf("void: %s", out)
	}
	if out := must("holds", "--status", "VOIDED"); !strings.Contains(out, "h3") || strings.Contains(out, "h1 ") {
		t.Fatalf("list VOIDED: %s", out)
	}
	if _, _, code := cli(t, db, "holds", "--status", "OPEN"); code != 2 {
		t.Fatalf("bad --status: exit %d, want 2", code)
	}

	// Expiry: by the CLI sweep, then by serve's sweeper.
	// (The database and this test share the machine's clock.)
	var due time.Time
	soon := func() string {
		due = time.Now().Add(3 * time.Second)
		return due.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	must("holds", "create", "--debit", "payer", "--credit", "payee", "--amount", "1", "--currency", "USD", "--type", "payment",
		"--ref", "e1", "--expires-at", soon())
	if out := must("holds", "expire", "--all"); !strings.Contains(out, "0 hold(s) expired") {
		t.Fatalf("expire before due: %s", out)
	}
	time.Sleep(time.Until(due) + 200*time.Millisecond)
	if _, errOut, code := cli(t, db, "holds", "capture", "e1", "--ref", "e1-cap"); code != 1 || !strings.Contains(errOut, "hold_expired") {
		t.Fatalf("capture after expiry: %d %s", code, errOut)
	}
	if out := must("holds", "expire", "--all"); !strings.Contains(out, "expired MASTER/e1") {
		t.Fatalf("expire: %s", out)
	}
	must("holds", "create", "--debit", "payer", "--credit", "payee", "--amount", "1", "--currency", "USD", "--type", "payment",
		"--ref", "e2", "--expires-at", soon())
	startServe(t, d, "--hold-sweep", "200ms")
	waitFor(t, "the serve sweeper to expire e2", 20*time.Second, func() bool {
		out, _, _ := cli(t, db, "holds", "get", "e2", "--json")
		return strings.Contains(out, `"EXPIRED"`)
	})
	// Balances as of a seq: before the capture (seq 1, the funding, with h1's 60.00 reserved),
	// after it (seq 2), and a bad --as-of.
	if out := must("accounts", "get", "payer", "--as-of", "1"); !strings.Contains(out, "40.00") || !strings.Contains(out, "as of seq 1") {
		t.Fatalf("accounts get --as-of 1: %s", out)
	}
	if out := must("accounts", "get", "payer", "--as-of", "2000-01-01T00:00:00Z", "--json"); !strings.Contains(out, `"as_of_seq": 0`) {
		t.Fatalf("accounts get --as-of 2000: %s", out)
	}
	if _, _, code := cli(t, db, "accounts", "get", "payer", "--as-of", "soon"); code != 2 {
		t.Fatalf("--as-of soon: exit %d, want 2", code)
	}
	if out := must("audit"); strings.Contains(out, "FAIL") {
		t.Fatalf("audit after the holds: %s", out)
	}
	if out := must("verify-chain"); !strings.Contains(out, "hold events") {
		t.Fatalf("verify-chain: %s", out)
	}
}
