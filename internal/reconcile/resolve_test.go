package reconcile_test

import (
	"encoding/json"
	"strings"
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/reconcile"
	"dualledger/internal/scb/sim"
)

func (e *env) resolve(id int64, r reconcile.Resolution) (reconcile.Discrepancy, error) {
	e.t.Helper()
	d, _, err := reconcile.Resolve(e.ctx, e.pool, "cli:test", id, r)
	return d, err
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestResolutions: requeue redelivers (a FAILED row, and a FINALIZED row whose entry the SCB
// lost: the recorded redelivery), correct posts one entry through the posting function and is
// idempotent, explained records why; resolving twice is refused; every act is in the operator
// log; the next run clears what was fixed.
func TestResolutions(t *testing.T) {
	e := faultyLedger(t)
	e.reconcile(reconcile.Options{})
	ds := byRef(e.discrepancies(reconcile.Filter{}))

	// requeue is only for deliveries.
	for _, ref := range []string{"r2", "r3", "r4", "inv"} {
		if _, err := e.resolve(ds[ref].ID, reconcile.Resolution{Kind: "requeue", Reason: "try"}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable {
			t.Errorf("requeue of %s (%s): %v", ref, ds[ref].Kind, err)
		}
	}
	if _, err := e.resolve(ds["r1"].ID, reconcile.Resolution{Kind: "requeue"}); ledger.CodeOf(err) != ledger.CodeInvalidRequest {
		t.Errorf("requeue without a reason: %v", err)
	}
	if _, err := e.resolve(999999, reconcile.Resolution{Kind: "explained", Reason: "x"}); ledger.CodeOf(err) != ledger.CodeUnknownDiscrepancy {
		t.Errorf("unknown discrepancy: %v", err)
	}

	// Acknowledge, then requeue the lost FINALIZED entry: redelivered, recorded.
	if _, err := reconcile.Acknowledge(e.ctx, e.pool, "cli:test", ds["r1"].ID, "looking"); err != nil {
		t.Fatal(err)
	}
	if _, err := reconcile.Acknowledge(e.ctx, e.pool, "cli:test", ds["r1"].ID, "again"); ledger.CodeOf(err) != ledger.CodeDiscrepancyResolved {
		t.Errorf("second acknowledgement: %v", err)
	}
	d, err := e.resolve(ds["r1"].ID, reconcile.Resolution{Kind: "requeue", Reason: "SCB-1 lost it in their restore"})
	if err != nil || d.Status != "RESOLVED" || d.ResolutionOutboxID == nil || *d.AcknowledgedBy != "cli:test" {
		t.Fatalf("requeue r1: %+v %v", d, err)
	}
	if s := e.outboxStatus("r1", "SCB-1"); s != "QUEUED" {
		t.Fatalf("r1 after requeue: %s", s)
	}
	if n := e.count(`SELECT count(*) FROM dual_ledger_outbox_attempts a JOIN dual_ledger_outbox o ON o.id = a.outbox_id
		WHERE o.reference_id = 'r1' AND a.kind = 'redeliver' AND a.outcome = 'redelivered' AND a.scb_entry_id IS NOT NULL`); n != 1 {
		t.Errorf("redeliver attempts of r1: %d", n)
	}
	if _, err := e.resolve(ds["r1"].ID, reconcile.Resolution{Kind: "explained", Reason: "twice"}); ledger.CodeOf(err) != ledger.CodeDiscrepancyResolved {
		t.Errorf("resolving twice: %v", err)
	}

	// requeue the FAILED delivery.
	if _, err := e.resolve(ds["r8"].ID, reconcile.Resolution{Kind: "requeue", Reason: "SCB-1 is back"}); err != nil {
		t.Fatal(err)
	}
	e.deliver(3)
	for _, ref := range []string{"r1", "r8"} {
		if s := e.outboxStatus(ref, "SCB-1"); s != "FINALIZED" {
			t.Errorf("%s after delivery: %s", ref, s)
		}
	}
	if st := e.sims["SCB-1"].Stats(false); st.DuplicatePosts != 0 {
		t.Errorf("duplicate posts at the SCB: %+v", st)
	}

	// correct: a reversal of our entry, linked; resolving again is refused and posts nothing.
	entries := e.count(`SELECT count(*) FROM ledger_entries`)
	d, err = e.resolve(ds["r2"].ID, reconcile.Resolution{Kind: "correct", Reason: "the SCB's amount is the agreed one",
		Correction: &reconcile.Correction{Reverse: true}})
	if err != nil || d.CorrectionEntrySeq == nil || *d.CorrectionReferenceID != reconcile.CorrectionReference(d.ID) {
		t.Fatalf("correct r2: %+v %v", d, err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries+1 {
		t.Errorf("entries after the correction: %d, want %d", n, entries+1)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE reference_id = $1 AND reverses_entry_id IS NOT NULL AND seq = $2`,
		reconcile.CorrectionReference(d.ID), *d.CorrectionEntrySeq); n != 1 {
		t.Errorf("the correcting reversal is not linked")
	}
	if _, err := e.resolve(ds["r2"].ID, reconcile.Resolution{Kind: "correct", Reason: "again", Correction: &reconcile.Correction{Reverse: true}}); ledger.CodeOf(err) != ledger.CodeDiscrepancyResolved {
		t.Errorf("correcting twice: %v", err)
	}
	// A correction posted before a crash (the resolve never ran) is replayed, not posted twice.
	in := ledger.EntryInput{DebitAccountID: "SCB-1-USD", CreditAccountID: "issuance", Amount: "1.00", CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: "correction", Metadata: json.RawMessage(`{"ticket": 7}`)}
	first := in
	first.ReferenceID = reconcile.CorrectionReference(ds["r4"].ID)
	if res, err := ledger.PostBatch(e.ctx, e.pool, "MASTER", []ledger.EntryInput{first}, true); err != nil || res[0].Code != ledger.CodeCreated {
		t.Fatalf("%v %+v", err, res)
	}
	entries = e.count(`SELECT count(*) FROM ledger_entries`)
	if _, err := e.resolve(ds["r4"].ID, reconcile.Resolution{Kind: "correct", Reason: "fee", Correction: &reconcile.Correction{Entry: &in}}); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Errorf("the retried correction posted again: %d entries, want %d", n, entries)
	}

	// explained.
	if d, err := e.resolve(ds["r3"].ID, reconcile.Resolution{Kind: "explained", Reason: "SCB-1 re-hashed by mistake, ticket 42"}); err != nil || *d.Resolution != "explained" {
		t.Fatalf("explained: %+v %v", d, err)
	}

	// The operator log has every act.
	if n := e.count(`SELECT count(*) FROM operator_actions WHERE action = 'discrepancy.resolve'`); n != 5 {
		t.Errorf("discrepancy.resolve in the operator log: %d, want 5", n)
	}
	if n := e.count(`SELECT count(*) FROM operator_actions WHERE action IN ('discrepancy.acknowledge', 'outbox.redeliver', 'outbox.requeue')`); n != 3 {
		t.Errorf("acknowledge, redeliver, requeue in the operator log: %d, want 3", n)
	}

	// The next run: r1 and r8 are at the SCB again, cleared; r2, r3, r4 remain (the SCB's copy is
	// still different), resolved; r5 and inv are open.
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r3", BlockHash: strp("")})
	run := e.reconcile(reconcile.Options{})
	all := byRef(e.discrepancies(reconcile.Filter{Cleared: true}))
	for ref, wantCleared := range map[string]bool{"r1": true, "r8": true, "r2": false, "r3": false, "r4": false, "r5": false, "inv": false} {
		if all[ref].Cleared != wantCleared {
			t.Errorf("%s cleared %v, want %v (run %+v)", ref, all[ref].Cleared, wantCleared, run)
		}
	}
}

// TestRedeliveryOnlyThroughTheFunction: the state machine refuses SENT/ACKED/FINALIZED -> QUEUED
// to a plain UPDATE, even the owner's.
func TestRedeliveryOnlyThroughTheFunction(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	_, err := e.pool.Exec(e.ctx, `UPDATE dual_ledger_outbox SET status = 'QUEUED', scb_entry_id = NULL, scb_status = NULL WHERE reference_id = 'a'`)
	if err == nil {
		t.Fatal("a FINALIZED row went back to QUEUED by a plain UPDATE")
	}
	var n bool
	if err := e.pool.QueryRow(e.ctx, `SELECT outbox_redeliver('cli:test', ledger_id, id, 'lost') FROM dual_ledger_outbox WHERE reference_id = 'a'`).Scan(&n); err != nil || !n {
		t.Fatalf("outbox_redeliver: %v", err)
	}
	if _, err := e.pool.Exec(e.ctx, `SELECT outbox_redeliver('cli:test', ledger_id, id, 'again') FROM dual_ledger_outbox WHERE reference_id = 'a'`); err == nil {
		t.Error("a QUEUED row was redelivered")
	}
	for _, role := range []string{"dualledger_api", "dualledger_worker"} {
		if _, err := e.d.PoolAs(t, role).Exec(e.ctx, `SELECT outbox_redeliver('cli:x', 'MASTER', 1, 'x')`); err == nil {
			t.Errorf("%s may call outbox_redeliver", role)
		}
	}
}

// TestAcknowledgedDeliveryIsNotResentByAResolution: an outbox row an operator acknowledged as not
// to be delivered (the difference was settled another way) is not sent again by resolving its
// delivery_failed discrepancy with requeue, which an admin API key may do: that could book the
// movement twice at the SCB. The resolution is refused (DL121, naming the acknowledgement), the
// row stays FAILED and acknowledged, and explained resolves the finding.
func TestAcknowledgedDeliveryIsNotResentByAResolution(t *testing.T) {
	e := newEnv(t, "SCB-1")
	if _, err := e.sims["SCB-1"].SetFaults(sim.FaultsUpdate{ErrorRate: ptr(1.0)}); err != nil {
		t.Fatal(err)
	}
	e.post("SCB-1", "gone", "10.00")
	e.deliver(1)
	if _, err := e.sims["SCB-1"].SetFaults(sim.FaultsUpdate{Reset: true}); err != nil {
		t.Fatal(err)
	}
	if s := e.outboxStatus("gone", "SCB-1"); s != "FAILED" {
		t.Fatalf("gone is %s, want FAILED", s)
	}
	e.reconcile(reconcile.Options{Full: true})
	d := byRef(e.discrepancies(reconcile.Filter{}))["gone"]
	if d.Kind != "delivery_failed" || d.OutboxID == nil {
		t.Fatalf("discrepancy of the FAILED delivery: %+v", d)
	}
	e.exec(`SELECT outbox_acknowledge('cli:op', 'MASTER', $1, 'INC-9: paid out of band, SCB-1 booked it by hand')`, *d.OutboxID)
	_, err := e.resolve(d.ID, reconcile.Resolution{Kind: "requeue", Reason: "looks stuck"})
	if ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), "INC-9") {
		t.Fatalf("requeue of an acknowledged delivery: %v, want resolution_not_applicable naming the acknowledgement", err)
	}
	if n := e.count(`SELECT count(*) FROM dual_ledger_outbox WHERE id = $1 AND status = 'FAILED' AND acknowledged_at IS NOT NULL`, *d.OutboxID); n != 1 {
		t.Fatal("the refused resolution changed the outbox row")
	}
	if r, err := e.resolve(d.ID, reconcile.Resolution{Kind: "explained", Reason: "INC-9"}); err != nil || r.Status != "RESOLVED" {
		t.Fatalf("explained: %+v %v", r, err)
	}
}
