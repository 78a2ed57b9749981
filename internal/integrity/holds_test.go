package integrity_test

import (
	"context"
	"strings"
	"testing"

	"dualledger/internal/integrity"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// holdsLedger is ledger L (createLedger) funded, with a captured, a voided and a pending hold.
func holdsLedger(t *testing.T) *pgtest.DB {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "L")
	post(t, d.Pool, "L", genEntries(0, 8))
	in := func(ref, amount string) ledger.HoldInput {
		return ledger.HoldInput{DebitAccountID: "a1", CreditAccountID: "a2", Amount: amount, CurrencyCode: "USD",
			AssetType: "fiat", TransactionType: "payment", ReferenceID: ref, Metadata: []byte(`{"memo": "für"}`)}
	}
	for _, ref := range []string{"h-cap", "h-void", "h-open"} {
		if r, err := ledger.CreateHold(ctx, d.Pool, "L", in(ref, "3.00")); err != nil || r.Code != ledger.CodeCreated {
			t.Fatalf("hold %s: %+v %v", ref, r, err)
		}
	}
	two := "2.00"
	if r, err := ledger.CaptureHold(ctx, d.Pool, "L", "h-cap", ledger.CaptureInput{ReferenceID: "h-cap-entry", Amount: &two}); err != nil || r.Code != ledger.CodeCreated {
		t.Fatalf("capture: %+v %v", r, err)
	}
	if r, err := ledger.VoidHold(ctx, d.Pool, "L", "h-void"); err != nil || r.Code != ledger.CodeCreated {
		t.Fatalf("void: %+v %v", r, err)
	}
	return d
}

func TestHoldChainAndAuditClean(t *testing.T) {
	d := holdsLedger(t)
	ctx := context.Background()
	rep, err := integrity.VerifyChain(ctx, d.Pool, "L", integrity.VerifyOptions{PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Intact || rep.HoldEvents != 5 || rep.HoldHeadSeq != 5 || rep.Entries != 9 {
		t.Fatalf("verify: %+v (problem %+v)", rep, rep.Problem)
	}
	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		t.Fatalf("audit of a ledger with holds:\n%s", describe(r))
	}
}

// TestHoldTamperingDetected changes hold data behind the functions' back (triggers off, as an
// owner could) and checks that verify-chain and the audit name what was changed.
func TestHoldTamperingDetected(t *testing.T) {
	cases := []struct {
		name   string
		stmts  []string
		kind   string // verify-chain's problem kind ("" = chain intact)
		seq    int64
		checks []string // failed audit checks
	}{
		{"hold amount changed", []string{`UPDATE ledger_holds SET amount = 30 WHERE reference_id = 'h-open'`},
			integrity.ProblemHashMismatch, 3, []string{integrity.CheckReservedHolds, integrity.CheckHoldChain, integrity.CheckHoldStates}},
		{"reserved balance changed", []string{`UPDATE bank_accounts SET reserved_balance = 0, available_balance = balance WHERE ledger_id = 'L' AND id = 'a1'`},
			"", 0, []string{integrity.CheckReservedHolds}},
		{"pending hold marked voided", []string{`UPDATE ledger_holds SET status = 'VOIDED', resolved_at = now(), resolved_seq = 9 WHERE reference_id = 'h-open'`},
			"", 0, []string{integrity.CheckReservedHolds, integrity.CheckHoldStates}},
		{"last hold event deleted", []string{`DELETE FROM ledger_hold_events WHERE ledger_id = 'L' AND seq = 5`},
			integrity.ProblemHead, 5, []string{integrity.CheckHoldChain, integrity.CheckHoldStates}},
		{"middle hold event deleted", []string{`DELETE FROM ledger_hold_events WHERE ledger_id = 'L' AND seq = 2`},
			integrity.ProblemGap, 2, []string{integrity.CheckHoldChain, integrity.CheckHoldStates}},
		{"capture event amount changed", []string{`UPDATE ledger_hold_events SET amount = 3 WHERE ledger_id = 'L' AND event = 'captured'`},
			integrity.ProblemHashMismatch, 4, []string{integrity.CheckHoldChain, integrity.CheckHoldStates}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := holdsLedger(t)
			ctx := context.Background()
			tamper(t, d, tc.stmts...)
			rep, err := integrity.VerifyChain(ctx, d.Pool, "L", integrity.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.kind == "" && !rep.Intact:
				t.Errorf("verify-chain: %+v, want intact", rep.Problem)
			case tc.kind != "" && (rep.Intact || rep.Problem.Chain != integrity.ChainHolds || rep.Problem.Kind != tc.kind || rep.Problem.Seq != tc.seq):
				t.Errorf("verify-chain: %+v, want %s at hold event seq %d", rep.Problem, tc.kind, tc.seq)
			}
			r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sorted(r.Failed()), sorted(tc.checks); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("audit failed %v, want %v\n%s", got, want, describe(r))
			}
		})
	}
}
