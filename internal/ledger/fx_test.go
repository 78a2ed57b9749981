package ledger_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// fxFixture: ledger FX with SCB-1 (USD, 5000.00), SCB-2 (EUR), and the FX desk's liquidity
// accounts in both currencies (EUR funded with 1000.00).
func fxFixture(t *testing.T) (*pgxpool.Pool, context.Context) {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	db := d.Pool
	if _, err := ledger.CreateLedger(ctx, db, "system:test", "FX"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, a := range []ledger.AccountInput{
		{ID: "issuance-usd", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "issuance-eur", CurrencyCode: "EUR", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "SCB-1-USD", CurrencyCode: "USD", AssetType: "fiat"},
		{ID: "SCB-2-EUR", CurrencyCode: "EUR", AssetType: "fiat"},
		{ID: "fx-liquidity-usd", CurrencyCode: "USD", AssetType: "fiat"},
		{ID: "fx-liquidity-eur", CurrencyCode: "EUR", AssetType: "fiat"},
	} {
		if _, err := ledger.CreateAccount(ctx, db, "system:test", "FX", a); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := ledger.PostBatch(ctx, db, "FX", []ledger.EntryInput{
		{DebitAccountID: "issuance-usd", CreditAccountID: "SCB-1-USD", Amount: "5000.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: "fund-usd"},
		{DebitAccountID: "issuance-eur", CreditAccountID: "fx-liquidity-eur", Amount: "1000.00", CurrencyCode: "EUR", AssetType: "fiat", TransactionType: "funding", ReferenceID: "fund-eur"},
	}, true)
	if err != nil || !rs[0].OK() || !rs[1].OK() {
		t.Fatalf("funding: %v %+v", err, rs)
	}
	return db, ctx
}

// fxLegs: USD 1000.00 from SCB-1 to the FX desk, EUR 1000 × rate from the desk to SCB-2.
func fxLegs(ref, usd, eur string) []ledger.EntryInput {
	rate := "0.92"
	return []ledger.EntryInput{
		{DebitAccountID: "SCB-1-USD", CreditAccountID: "fx-liquidity-usd", Amount: usd, CurrencyCode: "USD", AssetType: "fiat",
			TransactionType: "fx_transfer", ReferenceID: ref + "-usd", FxRate: &rate},
		{DebitAccountID: "fx-liquidity-eur", CreditAccountID: "SCB-2-EUR", Amount: eur, CurrencyCode: "EUR", AssetType: "fiat",
			TransactionType: "fx_transfer", ReferenceID: ref + "-eur", FxRate: &rate},
	}
}

// zeroSum checks that every currency of the ledger sums to zero.
func zeroSum(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	var bad int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT currency_code FROM bank_accounts WHERE ledger_id = 'FX'
		GROUP BY currency_code HAVING sum(balance) <> 0) x`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	if bad != 0 {
		t.Fatalf("%d currencies do not sum to zero", bad)
	}
}

// TestFXTransferAtomic: a cross-currency transfer is one atomic batch, USD out of SCB-1 into the
// FX desk, EUR out of the desk into SCB-2, the rate in fx_rate: both legs or neither, each
// currency zero-sum.
func TestFXTransferAtomic(t *testing.T) {
	db, ctx := fxFixture(t)
	rs, err := ledger.PostBatch(ctx, db, "FX", fxLegs("fx1", "1000.00", "920.00"), true)
	if err != nil || rs[0].Code != ledger.CodeCreated || rs[1].Code != ledger.CodeCreated {
		t.Fatalf("fx transfer: %v %+v", err, rs)
	}
	want := map[string][3]string{"SCB-1-USD": {"4000.00", "4000.00", "0.00"}, "SCB-2-EUR": {"920.00", "920.00", "0.00"},
		"fx-liquidity-usd": {"1000.00", "1000.00", "0.00"}, "fx-liquidity-eur": {"80.00", "80.00", "0.00"}}
	for acct, w := range want {
		if got := balances(t, db, "FX", acct); got != w {
			t.Errorf("%s: %v, want %v", acct, got, w)
		}
	}
	// The desk has 80.00 EUR left: a second transfer's EUR leg fails, so its USD leg is not
	// written either.
	rs, err = ledger.PostBatch(ctx, db, "FX", fxLegs("fx2", "1000.00", "920.00"), true)
	if err != nil || rs[0].Code != ledger.CodeNotApplied || rs[1].Code != ledger.CodeInsufficientFunds {
		t.Fatalf("fx transfer without EUR liquidity: %v %+v", err, rs)
	}
	if got := balances(t, db, "FX", "SCB-1-USD"); got[0] != "4000.00" {
		t.Fatalf("USD leg written without its EUR leg: %v", got)
	}
	zeroSum(t, db)
}

// TestFXTransferWithHolds: both legs reserved together (all or nothing), then captured together
// or voided together.
func TestFXTransferWithHolds(t *testing.T) {
	db, ctx := fxFixture(t)
	holdsOf := func(ref, usd, eur string) []ledger.HoldOp {
		var ops []ledger.HoldOp
		for _, e := range fxLegs(ref, usd, eur) {
			in := ledger.HoldInput{DebitAccountID: e.DebitAccountID, CreditAccountID: e.CreditAccountID, Amount: e.Amount,
				CurrencyCode: e.CurrencyCode, AssetType: e.AssetType, TransactionType: e.TransactionType, ReferenceID: e.ReferenceID,
				FxRate: e.FxRate}
			ops = append(ops, ledger.HoldOp{Create: &in})
		}
		return ops
	}
	ends := func(ref string, capture bool) []ledger.HoldOp {
		var ops []ledger.HoldOp
		for _, leg := range []string{ref + "-usd", ref + "-eur"} {
			op := ledger.HoldOp{HoldReferenceID: leg, Void: !capture}
			if capture {
				op.Capture = &ledger.CaptureInput{ReferenceID: leg + "-cap"}
			}
			ops = append(ops, op)
		}
		return ops
	}
	run := func(what string, ops []ledger.HoldOp, want ...string) {
		t.Helper()
		rs, err := ledger.HoldOps(ctx, db, "FX", ops)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for i, r := range rs {
			if r.Code != want[i] {
				t.Fatalf("%s: operation %d answered %s (%s), want %s", what, i, r.Code, r.Message, want[i])
			}
		}
	}
	// Reserve both legs of A (600 EUR of the desk's 1000), then B cannot get its EUR leg: neither
	// of B's legs is reserved.
	run("reserve A", holdsOf("A", "652.17", "600.00"), ledger.CodeCreated, ledger.CodeCreated)
	run("reserve B", holdsOf("B", "652.17", "600.00"), ledger.CodeNotApplied, ledger.CodeInsufficientFunds)
	if got := balances(t, db, "FX", "SCB-1-USD"); got != [3]string{"5000.00", "4347.83", "652.17"} {
		t.Fatalf("SCB-1 after A reserved and B refused: %v", got)
	}
	// Capture A's legs together; a replay of the pair answers replayed for both.
	run("capture A", ends("A", true), ledger.CodeCreated, ledger.CodeCreated)
	run("capture A again", ends("A", true), ledger.CodeReplayed, ledger.CodeReplayed)
	if got := balances(t, db, "FX", "SCB-2-EUR"); got != [3]string{"600.00", "600.00", "0.00"} {
		t.Fatalf("SCB-2 after A captured: %v", got)
	}
	// Reserve C, then void both legs together; voiding a pair of which one leg is captured
	// changes neither.
	run("reserve C", holdsOf("C", "100.00", "92.00"), ledger.CodeCreated, ledger.CodeCreated)
	run("void C", ends("C", false), ledger.CodeCreated, ledger.CodeCreated)
	run("reserve D", holdsOf("D", "100.00", "92.00"), ledger.CodeCreated, ledger.CodeCreated)
	run("capture D's USD leg", ends("D", true)[:1], ledger.CodeCreated)
	run("void D", ends("D", false), ledger.CodeHoldNotPending, ledger.CodeNotApplied)
	if h, err := ledger.GetHold(ctx, db, "FX", "D-eur"); err != nil || h.Status != ledger.HoldPending {
		t.Fatalf("D's EUR leg after the refused pair: %+v %v", h, err)
	}
	for acct, w := range map[string][3]string{"fx-liquidity-eur": {"400.00", "308.00", "92.00"}, "SCB-1-USD": {"4247.83", "4247.83", "0.00"}} {
		if got := balances(t, db, "FX", acct); got != w {
			t.Errorf("%s: %v, want %v", acct, got, w)
		}
	}
	zeroSum(t, db)
	checkHoldAudit(t, db)
}
