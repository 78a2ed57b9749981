package reconcile_test

import (
	"strings"
	"testing"
	"time"

	"dualledger/internal/ledger"
	"dualledger/internal/reconcile"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// TestLedgerRunDoesNotSkipOtherLedgers: a --ledger run reads the SCB's whole list but compares one
// ledger; an entry the SCB invented in another ledger meanwhile must still be found by the next
// run over every ledger (the cursor moves on only with unfiltered runs).
func TestLedgerRunDoesNotSkipOtherLedgers(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	if run := e.reconcile(reconcile.Options{}); run.Found != 0 {
		t.Fatalf("clean run: %+v", run)
	}
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "ghost", LedgerID: "OTHER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "9.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 434343, BlockHash: strings.Repeat("cd", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	if run := e.reconcile(reconcile.Options{LedgerID: "MASTER"}); run.Found != 0 {
		t.Fatalf("a run over MASTER only: %+v", run)
	}
	run := e.reconcile(reconcile.Options{})
	ds := e.discrepancies(reconcile.Filter{})
	if run.Found != 1 || len(ds) != 1 || ds[0].ReferenceID != "ghost" || ds[0].Kind != reconcile.KindMissingOnDBIS {
		t.Fatalf("the invented entry in ledger OTHER after a --ledger MASTER run: %+v %+v", run, ds)
	}
}

// TestResolutionThatDidNotWorkIsRaisedAgain: a requeue resolved while the SCB still does not hold
// the entry is seen again by a later run: that opens a new OPEN discrepancy (the resolved one keeps
// its history), rather than hiding the finding behind a closed one.
func TestResolutionThatDidNotWorkIsRaisedAgain(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "a"})
	e.reconcile(reconcile.Options{Full: true})
	ds := e.discrepancies(reconcile.Filter{})
	if len(ds) != 1 {
		t.Fatalf("%+v", ds)
	}
	if _, err := e.resolve(ds[0].ID, reconcile.Resolution{Kind: "explained", Reason: "sticky"}); err != nil {
		t.Fatal(err)
	}
	// explained stays as it is: the same finding is that discrepancy, seen again.
	e.reconcile(reconcile.Options{Full: true})
	if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE reference_id = 'a'`); n != 1 {
		t.Fatalf("explained finding seen again: %d rows", n)
	}

	e.post("SCB-1", "b", "2.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "b"})
	e.reconcile(reconcile.Options{Full: true})
	var id int64
	for _, d := range e.discrepancies(reconcile.Filter{}) {
		if d.ReferenceID == "b" {
			id = d.ID
		}
	}
	// The SCB is told to take it again, but keeps losing it (its restore is broken).
	if _, err := e.resolve(id, reconcile.Resolution{Kind: "requeue", Reason: "redeliver"}); err != nil {
		t.Fatal(err)
	}
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "b"})
	time.Sleep(10 * time.Millisecond)
	run := e.reconcile(reconcile.Options{Full: true, Grace: 0})
	var open, resolved int
	for _, d := range e.discrepancies(reconcile.Filter{Cleared: true}) {
		if d.ReferenceID != "b" {
			continue
		}
		switch {
		case d.Status == "RESOLVED" && d.ClearedAt != nil:
			resolved++
		case d.Status == "OPEN" && d.ClearedAt == nil:
			open++
		}
	}
	if open != 1 || resolved != 1 || run.NewFound != 1 {
		t.Fatalf("a requeue that did not work: open %d, resolved and cleared %d, run %+v", open, resolved, run)
	}
}

// TestCorrectionLosingTheRaceMovesNoMoney: a `correct` that loses the race to another
// resolution of the same discrepancy leaves no correcting entry behind: the entry and its link
// are one transaction.
func TestCorrectionLosingTheRaceMovesNoMoney(t *testing.T) {
	e := faultyLedger(t)
	e.reconcile(reconcile.Options{})
	id := byRef(e.discrepancies(reconcile.Filter{}))["r2"].ID
	entries := e.count(`SELECT count(*) FROM ledger_entries`)

	// Another operator's resolution holds the discrepancy's row while the correction runs, and
	// commits first.
	other := e.d.Conn(t)
	if _, err := other.Exec(e.ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(e.ctx, `SELECT 1 FROM reconciliation_discrepancies WHERE id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := reconcile.Resolve(e.ctx, e.pool, "cli:a", id, reconcile.Resolution{Kind: "correct", Reason: "reverse it",
			Correction: &reconcile.Correction{Reverse: true}})
		done <- err
	}()
	// Wait until the correction has posted and waits on the row lock, then resolve and commit.
	deadline := time.Now().Add(20 * time.Second)
	for e.count(`SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE NOT l.granted AND a.query LIKE '%discrepancy_resolve%'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the correction never reached the resolution")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := other.Exec(e.ctx, `SELECT id FROM discrepancy_resolve('cli:b', $1, 'explained', 'already fixed by phone', '')`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(e.ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; ledger.CodeOf(err) != ledger.CodeDiscrepancyResolved {
		t.Fatalf("the losing correction: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Errorf("the losing correction left %d entries behind", n-entries)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE reference_id = $1`, reconcile.CorrectionReference(id)); n != 0 {
		t.Errorf("correcting entry of a discrepancy resolved as explained: %d", n)
	}
}
