package ledger_test

import (
	"context"
	"strings"
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// TestLoweringAnOverdraftInUse: a limit below the overdraft an account already uses is refused
// with a message that says so; before, the answer named the table's constraint
// ("the request breaks a rule of the ledger (bank_accounts_available_balance_within_overdraft)").
func TestLoweringAnOverdraftInUse(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "L"); err != nil {
		t.Fatal(err)
	}
	limit := "100.00"
	for _, a := range []ledger.AccountInput{{ID: "a", OverdraftLimit: &limit}, {ID: "b"}} {
		a.CurrencyCode, a.AssetType = "USD", "fiat"
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "L", a); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := ledger.PostBatch(ctx, d.Pool, "L", []ledger.EntryInput{{DebitAccountID: "a", CreditAccountID: "b", Amount: "60.00",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: "r1"}}, true); err != nil || res[0].Code != "created" {
		t.Fatalf("%v %+v", err, res)
	}
	lower := "50.00"
	_, err := ledger.UpdateAccount(ctx, d.Pool, "cli:test", "L", "a", ledger.AccountUpdate{OverdraftLimit: &lower, Reason: "tighten"})
	if ledger.CodeOf(err) != ledger.CodeInvalidRequest || !strings.Contains(err.Error(), "below the overdraft the account already uses") || strings.Contains(err.Error(), "bank_accounts_") {
		t.Errorf("lowering below the overdraft in use: %v", err)
	}
	enough := "60.00"
	if _, err := ledger.UpdateAccount(ctx, d.Pool, "cli:test", "L", "a", ledger.AccountUpdate{OverdraftLimit: &enough, Reason: "tighten"}); err != nil {
		t.Errorf("lowering to the overdraft in use: %v", err)
	}
}
