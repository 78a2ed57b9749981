package reconcile_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/reconcile"
	"dualledger/internal/scb"
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

	// correct: the SCB holds 11.00 against our 10.00 and its amount is the agreed one: the
	// difference between our entry's accounts, linked; a full reversal (what this test did
	// before corrections stopped being sent to the SCB that holds them) would leave us at 0.00
	// and the SCB at 11.00, and is refused. Resolving again is refused and posts nothing.
	entries := e.count(`SELECT count(*) FROM ledger_entries`)
	// The refusal names the one correction accepted for the command and for the API, with the
	// amounts as the ledger shows them (1.00, not 1).
	if _, err := e.resolve(ds["r2"].ID, reconcile.Resolution{Kind: "correct", Reason: "x", Correction: &reconcile.Correction{Reverse: true}}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable ||
		!strings.Contains(err.Error(), "our 10.00 and the SCB's 11.00: debit issuance, credit SCB-1-USD, amount 1.00 USD fiat") ||
		!strings.Contains(err.Error(), "--amount 1.00 --currency USD") || !strings.Contains(err.Error(), `API: "correction": {"entry": {"debit_account_id"`) {
		t.Errorf("a full reversal for an SCB that holds more: %v", err)
	}
	diff := ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "1.00", CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: "correction"}
	d, err = e.resolve(ds["r2"].ID, reconcile.Resolution{Kind: "correct", Reason: "the SCB's amount is the agreed one",
		Correction: &reconcile.Correction{Entry: &diff}})
	if err != nil || d.CorrectionEntrySeq == nil || *d.CorrectionReferenceID != reconcile.CorrectionReference(d.ID) {
		t.Fatalf("correct r2: %+v %v", d, err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries+1 {
		t.Errorf("entries after the correction: %d, want %d", n, entries+1)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE reference_id = $1 AND amount = 1 AND seq = $2`,
		reconcile.CorrectionReference(d.ID), *d.CorrectionEntrySeq); n != 1 {
		t.Errorf("the correcting entry is not linked")
	}
	if _, err := e.resolve(ds["r2"].ID, reconcile.Resolution{Kind: "correct", Reason: "again", Correction: &reconcile.Correction{Entry: &diff}}); ledger.CodeOf(err) != ledger.CodeDiscrepancyResolved {
		t.Errorf("correcting twice: %v", err)
	}
	// An SCB that holds our entry with another debit account fixes its copy: no correction here.
	if _, err := e.resolve(ds["r4"].ID, reconcile.Resolution{Kind: "correct", Reason: "x", Correction: &reconcile.Correction{Reverse: true}}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable {
		t.Errorf("correct of a field_mismatch: %v", err)
	}
	if _, err := e.resolve(ds["r4"].ID, reconcile.Resolution{Kind: "explained", Reason: "SCB-1 fixes its copy, ticket 8"}); err != nil {
		t.Fatal(err)
	}
	// A correction posted before a crash (the resolve never ran) is replayed, not posted twice:
	// the entry only SCB-1 holds (inv), adopted as it holds it.
	in := ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "99.00", CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: "funding", Metadata: json.RawMessage(`{"ticket": 7}`)}
	first := in
	first.ReferenceID = reconcile.CorrectionReference(ds["inv"].ID)
	if res, err := ledger.PostBatch(e.ctx, e.pool, "MASTER", []ledger.EntryInput{first}, true); err != nil || res[0].Code != ledger.CodeCreated {
		t.Fatalf("%v %+v", err, res)
	}
	entries = e.count(`SELECT count(*) FROM ledger_entries`)
	if _, err := e.resolve(ds["inv"].ID, reconcile.Resolution{Kind: "correct", Reason: "a real funding", Correction: &reconcile.Correction{Entry: &in}}); err != nil {
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
	if n := e.count(`SELECT count(*) FROM operator_actions WHERE action = 'discrepancy.resolve'`); n != 6 {
		t.Errorf("discrepancy.resolve in the operator log: %d, want 6", n)
	}
	if n := e.count(`SELECT count(*) FROM operator_actions WHERE action IN ('discrepancy.acknowledge', 'outbox.redeliver', 'outbox.requeue')`); n != 3 {
		t.Errorf("acknowledge, redeliver, requeue in the operator log: %d, want 3", n)
	}

	// The next run: r1 and r8 are at the SCB again, cleared; r2, r3, r4 and inv remain (the SCB's
	// copy is still different, or ours), resolved; r5 is open.
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
	e.failDeliveries([]string{"SCB-1"}, func() { e.post("SCB-1", "gone", "10.00") })
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

// TestCorrectionsAreNotSentToTheSCBThatHoldsThem (the operators' fire drill): a correction brings
// our ledger to the state the discrepancy's SCB holds already, so delivering it there booked the
// difference twice: an invented entry we adopted appeared twice at the SCB, and an agreed amount
// of 9.00 became 8.00 there. The correction's outbox row for that SCB is closed at once as a
// waived delivery (FAILED, acknowledged, attempt 'waived'); the entry's other SCB, which holds our
// original, gets it; and the next run finds nothing to report about the correction.
func TestCorrectionsAreNotSentToTheSCBThatHoldsThem(t *testing.T) {
	e := newEnv(t, "SCB-1", "SCB-2")
	// A settlement SCB-1 -> SCB-2, delivered to both; SCB-1 then books 9.00 instead of 10.00.
	e.post("SCB-1", "fund", "100.00")
	if res, err := ledger.PostBatch(e.ctx, e.pool, "MASTER", []ledger.EntryInput{{DebitAccountID: "SCB-1-USD", CreditAccountID: "SCB-2-USD",
		Amount: "10.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "GSS_SETTLEMENT", ReferenceID: "stl"}}, true); err != nil || !res[0].OK() {
		t.Fatalf("settle: %v %+v", err, res)
	}
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "stl", Amount: strp("9.00")})
	// And SCB-1 holds an entry we never posted, which turns out to be real.
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "ghost", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "50.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 777, BlockHash: strings.Repeat("cd", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	e.reconcile(reconcile.Options{Full: true})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	if ds["stl"].Kind != "amount_mismatch" || ds["ghost"].Kind != "missing_on_dbis" {
		t.Fatalf("findings: %+v", ds)
	}
	d, err := e.resolve(ds["stl"].ID, reconcile.Resolution{Kind: "correct", Reason: "SCB-1's 9.00 is the agreed amount",
		Correction: &reconcile.Correction{Reverse: true, Amount: "1.00"}})
	if err != nil || d.ResolutionOutboxID == nil {
		t.Fatalf("correct stl: %+v %v", d, err)
	}
	g, err := e.resolve(ds["ghost"].ID, reconcile.Resolution{Kind: "correct", Reason: "a real funding we missed",
		Correction: &reconcile.Correction{Entry: &ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD",
			Amount: "50.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding"}}})
	if err != nil || g.ResolutionOutboxID == nil {
		t.Fatalf("correct ghost: %+v %v", g, err)
	}
	for _, ref := range []string{reconcile.CorrectionReference(d.ID), reconcile.CorrectionReference(g.ID)} {
		if n := e.count(`SELECT count(*) FROM dual_ledger_outbox o JOIN dual_ledger_outbox_attempts a ON a.outbox_id = o.id
			WHERE o.reference_id = $1 AND o.scb_id = 'SCB-1' AND o.status = 'FAILED' AND o.acknowledged_at IS NOT NULL
			  AND a.kind = 'acknowledge' AND a.outcome = 'waived'`, ref); n != 1 {
			t.Errorf("%s's row for SCB-1 is not a waived delivery", ref)
		}
	}
	e.deliver(3)
	// SCB-1 holds no correction; SCB-2, which holds our 10.00, gets the reversal of 1.00.
	for _, ref := range []string{reconcile.CorrectionReference(d.ID), reconcile.CorrectionReference(g.ID)} {
		if _, err := e.clients["SCB-1"].GetInLedger(e.ctx, "MASTER", ref); err == nil {
			t.Errorf("SCB-1 was sent the correction %s", ref)
		}
	}
	if s := e.outboxStatus(reconcile.CorrectionReference(d.ID), "SCB-2"); s != "FINALIZED" {
		t.Errorf("the reversal's delivery to SCB-2: %s, want FINALIZED", s)
	}
	// The next run reports nothing about the corrections (no delivery_failed for a waived row).
	e.reconcile(reconcile.Options{Full: true})
	for _, x := range e.discrepancies(reconcile.Filter{}) {
		if strings.HasPrefix(x.ReferenceID, "recon-") {
			t.Errorf("a finding about a correction: %+v", x)
		}
	}
}

// TestCorrectionsOfEntriesTheSCBDoesNotHold: a correction is not sent to the discrepancy's SCB,
// so it is accepted only where that leaves the two ledgers alike. An SCB that holds our entry
// with another status, or twice, is not corrected by an entry here; one that does not hold it
// (lost, or never delivered) only by the entry's full reversal, and the FAILED delivery of a
// reversed entry is acknowledged with it (sent alone, the entry would stand there unreversed).
func TestCorrectionsOfEntriesTheSCBDoesNotHold(t *testing.T) {
	e := faultyLedger(t)
	e.reconcile(reconcile.Options{})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	reverse := func(amount string) reconcile.Resolution {
		return reconcile.Resolution{Kind: "correct", Reason: "ours was wrong", Correction: &reconcile.Correction{Reverse: true, Amount: amount}}
	}
	entries := e.count(`SELECT count(*) FROM ledger_entries`)
	for _, tc := range []struct{ ref, amount, want string }{
		{"r5", "", "with another status"},
		{"r8", "4.00", "the full reversal of r8, which the SCB does not hold (command: --reverse; API: \"correction\": {\"reverse\": true})"},
		{"r1", "4.00", "the full reversal of r1, which the SCB does not hold (command: --reverse; API: \"correction\": {\"reverse\": true})"},
	} {
		_, err := e.resolve(ds[tc.ref].ID, reverse(tc.amount))
		if ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("correct %s (%s) by %q: %v, want %q", tc.ref, ds[tc.ref].Kind, tc.amount, err, tc.want)
		}
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Fatalf("refused corrections left %d entries, want %d", n, entries)
	}
	// The full reversal of the FAILED delivery: neither it nor the entry goes to SCB-1.
	d, err := e.resolve(ds["r8"].ID, reverse(""))
	if err != nil || d.ResolutionOutboxID == nil {
		t.Fatalf("reverse r8: %+v %v", d, err)
	}
	if n := e.count(`SELECT count(*) FROM dual_ledger_outbox WHERE scb_id = 'SCB-1' AND reference_id IN ('r8', $1)
		AND status = 'FAILED' AND acknowledged_at IS NOT NULL`, reconcile.CorrectionReference(d.ID)); n != 2 {
		t.Errorf("%d of r8 and its reversal are acknowledged FAILED rows, want 2", n)
	}
	e.deliver(3)
	for _, ref := range []string{"r8", reconcile.CorrectionReference(d.ID)} {
		if _, err := e.clients["SCB-1"].GetInLedger(e.ctx, "MASTER", ref); err == nil {
			t.Errorf("SCB-1 was sent %s", ref)
		}
	}
}

// TestCorrectionMustMatchWhatTheSCBHolds (the review of the waived corrections): a correction not
// sent to the SCB must be exactly what that SCB holds, or an admin key could book money here that
// no SCB ever sees and no run reports. One movement that two SCBs hold and we lack is adopted
// once: the second SCB's discrepancy is resolved with the same correction, and neither SCB is
// sent it.
func TestCorrectionMustMatchWhatTheSCBHolds(t *testing.T) {
	e := newEnv(t, "SCB-1", "SCB-2")
	e.post("SCB-1", "fund", "100.00")
	e.deliver(3)
	ghost := scb.Entry{ReferenceID: "ghost", LedgerID: "MASTER", DebitAccountID: "SCB-1-USD", CreditAccountID: "SCB-2-USD",
		Amount: "7.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "GSS_SETTLEMENT", DBISEntryID: 888,
		BlockHash: strings.Repeat("ef", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, b := range []string{"SCB-1", "SCB-2"} {
		g := ghost
		e.tamper(b, sim.Tamper{Action: "invent", Entry: &g})
	}
	// Found at SCB-1 only so far: the correction would reach SCB-2, whose list nobody has read
	// since, and which may hold the same entry (it does): refused until it is read.
	e.reconcile(reconcile.Options{SCBID: "SCB-1", Full: true})
	only := e.discrepancies(reconcile.Filter{Kind: "missing_on_dbis"})
	if len(only) != 1 {
		t.Fatalf("after SCB-1's run: %+v", only)
	}
	if _, err := e.resolve(only[0].ID, reconcile.Resolution{Kind: "correct", Reason: "x", Correction: &reconcile.Correction{Entry: &ledger.EntryInput{
		DebitAccountID: "SCB-1-USD", CreditAccountID: "SCB-2-USD", Amount: "7.00", CurrencyCode: "USD", AssetType: "fiat",
		TransactionType: "GSS_SETTLEMENT"}}}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), "reconcile scb --scb SCB-2") {
		t.Errorf("a correction that would reach an SCB not read since: %v", err)
	}
	e.reconcile(reconcile.Options{SCBID: "SCB-2", Full: true})
	var first, second reconcile.Discrepancy
	for _, d := range e.discrepancies(reconcile.Filter{Kind: "missing_on_dbis"}) {
		switch d.SCBID {
		case "SCB-1":
			first = d
		case "SCB-2":
			second = d
		}
	}
	if first.ID == 0 || second.ID == 0 {
		t.Fatalf("missing_on_dbis at both SCBs: %+v %+v", first, second)
	}
	adopt := func(amount string) reconcile.Resolution {
		return reconcile.Resolution{Kind: "correct", Reason: "a real settlement", Correction: &reconcile.Correction{Entry: &ledger.EntryInput{
			DebitAccountID: "SCB-1-USD", CreditAccountID: "SCB-2-USD", Amount: amount, CurrencyCode: "USD", AssetType: "fiat", TransactionType: "GSS_SETTLEMENT"}}}
	}
	entries := e.count(`SELECT count(*) FROM ledger_entries`)
	if _, err := e.resolve(first.ID, adopt("70.00")); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), "7.00") {
		t.Errorf("a correction other than the SCB's entry: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Fatalf("the refused correction left %d entries, want %d", n, entries)
	}
	d, err := e.resolve(first.ID, adopt("7.00"))
	if err != nil {
		t.Fatal(err)
	}
	ref := reconcile.CorrectionReference(d.ID)
	if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE id = $1 AND status = 'RESOLVED' AND correction_reference_id = $2`,
		second.ID, ref); n != 1 {
		t.Errorf("SCB-2's discrepancy about the same movement is not resolved with the correction")
	}
	if _, err := e.resolve(second.ID, adopt("7.00")); ledger.CodeOf(err) != ledger.CodeDiscrepancyResolved {
		t.Errorf("a second correction of the same movement: %v", err)
	}
	e.deliver(3)
	for _, b := range []string{"SCB-1", "SCB-2"} {
		if _, err := e.clients[b].GetInLedger(e.ctx, "MASTER", ref); err == nil {
			t.Errorf("%s was sent %s, the movement it holds already", b, ref)
		}
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries WHERE amount = 7`); n != 1 {
		t.Errorf("%d entries of 7.00 here, want the one correction", n)
	}
}

// TestCorrectionsAcrossTwoSCBs (the second review of the waived corrections): an entry between two
// banks' accounts is corrected only where both SCBs end up as our ledger. Both lost it: one full
// reversal resolves both and reaches neither. One SCB holds another amount than the other: no
// correction. A finding about a delivery that was requeued and made since: no correction. A
// stray copy of an entry we hold: no correction.
func TestCorrectionsAcrossTwoSCBs(t *testing.T) {
	e := newEnv(t, "SCB-1", "SCB-2")
	e.post("SCB-1", "fund", "100.00")
	e.deliver(3)
	settle := func(ref string) {
		if res, err := ledger.PostBatch(e.ctx, e.pool, "MASTER", []ledger.EntryInput{{DebitAccountID: "SCB-1-USD", CreditAccountID: "SCB-2-USD",
			Amount: "10.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "GSS_SETTLEMENT", ReferenceID: ref}}, true); err != nil || !res[0].OK() {
			t.Fatalf("settle %s: %v %+v", ref, err, res)
		}
	}
	e.failDeliveries([]string{"SCB-1", "SCB-2"}, func() { settle("lost") })
	settle("diff")
	settle("both")
	e.post("SCB-2", "x2", "5.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "both", Amount: strp("9.00"), DebitAccountID: strp("SCB-1-OTHER")})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "diff", Amount: strp("9.00")})
	e.tamper("SCB-2", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "diff", Amount: strp("8.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "x2", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-2-USD", Amount: "5.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 999, BlockHash: strings.Repeat("ab", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	for _, b := range []string{"SCB-1", "SCB-2"} {
		e.reconcile(reconcile.Options{SCBID: b, Full: true})
	}
	at := map[string]reconcile.Discrepancy{}
	for _, d := range e.discrepancies(reconcile.Filter{}) {
		at[d.ReferenceID+"@"+d.SCBID] = d
	}
	reverse := func(amount string) reconcile.Resolution {
		return reconcile.Resolution{Kind: "correct", Reason: "x", Correction: &reconcile.Correction{Reverse: true, Amount: amount}}
	}
	refused := func(what string, id int64, r reconcile.Resolution, want string) {
		t.Helper()
		if _, err := e.resolve(id, r); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", what, err, want)
		}
	}
	refused("SCB-1 and SCB-2 hold different amounts", at["diff@SCB-1"].ID, reverse("1.00"), "SCB-2 has a discrepancy of its own")
	var both reconcile.Discrepancy
	for _, x := range e.discrepancies(reconcile.Filter{Kind: "amount_mismatch"}) {
		if x.ReferenceID == "both" {
			both = x
		}
	}
	refused("another amount on other accounts", both.ID, reverse("1.00"), "differs in its accounts")
	if d := at["x2@SCB-1"]; d.Kind != "missing_on_dbis" {
		t.Fatalf("the stray copy of x2: %+v", d)
	}
	refused("a stray copy of an entry we hold", at["x2@SCB-1"].ID, reconcile.Resolution{Kind: "correct", Reason: "x",
		Correction: &reconcile.Correction{Entry: &ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-2-USD", Amount: "5.00",
			CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding"}}}, "we hold an entry x2 already")
	// Lost at both: one reversal, both resolved, neither SCB sent anything.
	d, err := e.resolve(at["lost@SCB-1"].ID, reverse(""))
	if err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE id = $1 AND status = 'RESOLVED'`, at["lost@SCB-2"].ID); n != 1 {
		t.Errorf("SCB-2's delivery_failed of the same entry is not resolved with the reversal")
	}
	e.deliver(3)
	for _, b := range []string{"SCB-1", "SCB-2"} {
		for _, ref := range []string{"lost", reconcile.CorrectionReference(d.ID)} {
			if _, err := e.clients[b].GetInLedger(e.ctx, "MASTER", ref); err == nil {
				t.Errorf("%s was sent %s", b, ref)
			}
		}
	}
	// A delivery_failed whose row was requeued and delivered since the run: no reversal.
	e.failDeliveries([]string{"SCB-1"}, func() { e.post("SCB-1", "again", "5.00") })
	e.reconcile(reconcile.Options{SCBID: "SCB-1", Full: true})
	var again reconcile.Discrepancy
	for _, x := range e.discrepancies(reconcile.Filter{Kind: "delivery_failed"}) {
		if x.ReferenceID == "again" {
			again = x
		}
	}
	if again.ID == 0 {
		t.Fatal("no delivery_failed for again")
	}
	e.exec(`SELECT outbox_requeue('cli:op', 'MASTER', (SELECT id FROM dual_ledger_outbox WHERE reference_id = 'again'), NULL, true, 'SCB-1 is back')`)
	e.deliver(3)
	refused("a delivery made since the run", again.ID, reverse(""), "changed since the run")
}

// TestWaivedCorrectionsAreWatched: a correction not sent to an SCB rests on what that SCB held
// when the discrepancy was resolved. When the SCB changes its mind (it books our amount after
// all, removes the entry we adopted, books the entry we reversed), the waived correction is a
// difference of its own: a run reports it as missing_on_scb naming the discrepancy it was waived
// for, every later run keeps it (incremental ones too), a requeue resolution sends it, and the
// run after its delivery clears it.
func TestWaivedCorrectionsAreWatched(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "fund", "100.00")
	e.post("SCB-1", "amt", "10.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "amt", Amount: strp("9.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "ghost", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "50.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 777, BlockHash: strings.Repeat("cd", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	var lost ledger.Result
	e.failDeliveries([]string{"SCB-1"}, func() { lost = e.post("SCB-1", "lost", "4.00") })
	e.reconcile(reconcile.Options{Full: true})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	if ds["amt"].Kind != "amount_mismatch" || ds["ghost"].Kind != "missing_on_dbis" || ds["lost"].Kind != "delivery_failed" || len(ds) != 3 {
		t.Fatalf("findings: %+v", ds)
	}
	waivedFor := map[string]reconcile.Discrepancy{} // correction reference -> the discrepancy it corrected
	for ref, c := range map[string]*reconcile.Correction{
		"amt":   {Reverse: true, Amount: "1.00"},
		"ghost": {Entry: &ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "50.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding"}},
		"lost":  {Reverse: true},
	} {
		d, err := e.resolve(ds[ref].ID, reconcile.Resolution{Kind: "correct", Reason: "agreed with SCB-1", Correction: c})
		if err != nil || d.ResolutionOutboxID == nil {
			t.Fatalf("correct %s: %+v %v", ref, d, err)
		}
		waivedFor[reconcile.CorrectionReference(d.ID)] = d
	}
	corrections := func(status string) map[string]reconcile.Discrepancy {
		t.Helper()
		found := map[string]reconcile.Discrepancy{}
		for _, x := range e.discrepancies(reconcile.Filter{Status: status}) {
			if _, ok := waivedFor[x.ReferenceID]; ok && !x.Cleared {
				found[x.ReferenceID] = x
			}
		}
		return found
	}
	// While SCB-1 holds what the corrections were waived for, no run reports them.
	e.reconcile(reconcile.Options{Full: true})
	e.reconcile(reconcile.Options{})
	if found := corrections(""); len(found) != 0 {
		t.Fatalf("findings about corrections SCB-1 holds the state of: %+v", found)
	}

	// Nor may an operator send them by requeueing their rows: SCB-1 would book each difference
	// twice, and no run would notice (the discrepancies stay resolved, the corrections match).
	for _, d := range waivedFor {
		_, err := e.pool.Exec(e.ctx, `SELECT outbox_requeue('cli:test', 'MASTER', $1, NULL, false, 'undo')`, *d.ResolutionOutboxID)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "DL121" || !strings.Contains(pe.Message, "booked there twice") {
			t.Errorf("requeue of the waived correction of %s: %v, want DL121", d.ReferenceID, err)
		}
		// Through the store, as the CLI calls it: a rule's answer (exit 1), not a database failure.
		if _, err := outbox.NewStore(e.pool).RequeueRows(e.ctx, outbox.RequeueRequest{Actor: "cli:test", LedgerID: "MASTER",
			ID: *d.ResolutionOutboxID, Reason: "undo"}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable {
			t.Errorf("RequeueRows of the waived correction of %s: %v (code %s), want resolution_not_applicable", d.ReferenceID, err, ledger.CodeOf(err))
		}
		if n := e.count(fmt.Sprintf(`SELECT count(*) FROM dual_ledger_outbox WHERE id = %d AND status = 'FAILED' AND acknowledged_at IS NOT NULL`,
			*d.ResolutionOutboxID)); n != 1 {
			t.Errorf("the waived row of %s changed", d.ReferenceID)
		}
	}

	// SCB-1 changes its mind on all three.
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "amt", Amount: strp("10.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "ghost"})
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "lost", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "4.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: lost.EntryID, BlockHash: lost.BlockHash, TimestampUTC: lost.TimestampUTC}})
	e.reconcile(reconcile.Options{Full: true})
	found := corrections("")
	if len(found) != 3 {
		t.Fatalf("a run after SCB-1 changed its mind reports %d of the 3 waived corrections: %+v", len(found), found)
	}
	for ref, x := range found {
		d := waivedFor[ref]
		if x.Kind != "missing_on_scb" || x.OutboxID == nil || *x.OutboxID != *d.ResolutionOutboxID {
			t.Errorf("%s (corrects %s): %+v, want missing_on_scb about outbox row %d", ref, d.ReferenceID, x, *d.ResolutionOutboxID)
		}
		if got := field(t, x.DBIS, "waived_for_discrepancy"); got != float64(d.ID) {
			t.Errorf("%s: dbis.waived_for_discrepancy = %v, want %d", ref, got, d.ID)
		}
	}
	// An incremental run keeps them: the discrepancies they rest on are cleared by now, and
	// nothing about them changed since the last run.
	e.reconcile(reconcile.Options{})
	again := corrections("")
	for ref, x := range found {
		if again[ref].ID != x.ID {
			t.Errorf("an incremental run dropped the finding about %s: %+v", ref, again[ref])
		}
	}
	// A requeue resolution sends two of them (an acknowledged row is otherwise refused). The
	// adopted entry that SCB-1 removed is reversed instead (its reversal is not sent to SCB-1
	// either): both ledgers then hold neither.
	var adopted string
	for ref, x := range found {
		if waivedFor[ref].ReferenceID == "ghost" {
			adopted = ref
			if _, err := e.resolve(x.ID, reconcile.Resolution{Kind: "correct", Reason: "SCB-1 was right to remove it",
				Correction: &reconcile.Correction{Reverse: true}}); err != nil {
				t.Fatalf("reverse the adopted %s: %v", ref, err)
			}
			continue
		}
		if _, err := e.resolve(x.ID, reconcile.Resolution{Kind: "requeue", Reason: "SCB-1 holds what it held before"}); err != nil {
			t.Fatalf("requeue %s: %v", ref, err)
		}
	}
	e.deliver(3)
	for ref := range found {
		_, err := e.clients["SCB-1"].GetInLedger(e.ctx, "MASTER", ref)
		if ref == adopted && err == nil {
			t.Errorf("SCB-1 was sent the adopted entry %s, which is reversed", ref)
		} else if ref != adopted && err != nil {
			t.Errorf("SCB-1 does not hold %s after the requeue: %v", ref, err)
		}
	}
	e.reconcile(reconcile.Options{Full: true})
	for ref, x := range corrections("") {
		if ref != adopted || x.Status != "RESOLVED" {
			t.Errorf("after the deliveries: %+v", x)
		}
	}
	for _, x := range e.discrepancies(reconcile.Filter{}) {
		if x.Status != "RESOLVED" {
			t.Errorf("a live finding after the deliveries: %+v", x)
		}
	}
	var balance string
	if err := e.pool.QueryRow(e.ctx, `SELECT trim_scale(balance)::text FROM bank_accounts WHERE ledger_id = 'MASTER' AND id = 'SCB-1-USD'`).Scan(&balance); err != nil {
		t.Fatal(err)
	}
	// ours: fund 100 + amt 10 - its correction 1 + lost 4 - its reversal 4 + ghost 50 - its reversal 50
	if balance != "109" {
		t.Errorf("SCB-1-USD holds %s here, want 109.00", balance)
	}
}

// TestLapsedWaiversOnFreshCopies (the second review of 2026-12-02): whether a waiver lapsed is
// decided on a copy every run reads again, incremental runs too: an SCB that reverted and then
// came back to the agreed amount is no longer reported, and a requeue is refused again (before,
// a stale copy kept the lapse and the requeue booked the correction twice at the SCB). An SCB
// that lists a reversed entry with another amount (a third state) is no lapse either: the run
// reports that entry's amount_mismatch instead.
func TestLapsedWaiversOnFreshCopies(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "fund", "100.00")
	e.post("SCB-1", "amt", "10.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "amt", Amount: strp("9.00")})
	var lost ledger.Result
	e.failDeliveries([]string{"SCB-1"}, func() { lost = e.post("SCB-1", "lost", "4.00") })
	e.reconcile(reconcile.Options{Full: true})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	amt, err := e.resolve(ds["amt"].ID, reconcile.Resolution{Kind: "correct", Reason: "agreed at 9.00", Correction: &reconcile.Correction{Reverse: true, Amount: "1.00"}})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := e.resolve(ds["lost"].ID, reconcile.Resolution{Kind: "correct", Reason: "never delivered", Correction: &reconcile.Correction{Reverse: true}})
	if err != nil {
		t.Fatal(err)
	}
	live := func(ref string) []reconcile.Discrepancy {
		t.Helper()
		var out []reconcile.Discrepancy
		for _, x := range e.discrepancies(reconcile.Filter{}) {
			if x.ReferenceID == ref {
				out = append(out, x)
			}
		}
		return out
	}
	amtFix := reconcile.CorrectionReference(amt.ID)
	e.reconcile(reconcile.Options{})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "amt", Amount: strp("10.00")})
	e.reconcile(reconcile.Options{})
	lapsed := live(amtFix)
	if len(lapsed) != 1 || lapsed[0].Kind != "missing_on_scb" {
		t.Fatalf("after SCB-1 booked 10.00 again, an incremental run: %+v", lapsed)
	}
	// Back at the agreed 9.00: incremental runs, which do not list an altered entry again, must
	// see it all the same.
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "amt", Amount: strp("9.00")})
	e.reconcile(reconcile.Options{})
	if l := live(amtFix); len(l) != 0 {
		t.Errorf("SCB-1 holds the agreed 9.00 again, yet an incremental run reports %+v", l)
	}
	if _, err := e.resolve(lapsed[0].ID, reconcile.Resolution{Kind: "requeue", Reason: "per the runbook"}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable {
		t.Errorf("a requeue of the correction SCB-1 holds the state of again: %v, want refused", err)
	}

	// A third state: SCB-1 lists the reversed entry, with another amount.
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "lost", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "400.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: lost.EntryID, BlockHash: lost.BlockHash, TimestampUTC: lost.TimestampUTC}})
	e.reconcile(reconcile.Options{Full: true})
	if l := live(reconcile.CorrectionReference(rev.ID)); len(l) != 0 {
		t.Errorf("SCB-1 lists lost at 400.00: its reversal reported as a lapsed waiver %+v", l)
	}
	if l := live("lost"); len(l) == 0 || !slices.ContainsFunc(l, func(x reconcile.Discrepancy) bool { return x.Kind == "amount_mismatch" }) {
		t.Errorf("SCB-1 lists lost at 400.00: findings %+v, want its amount_mismatch", l)
	}
}

// TestFailedDeliveryTheSCBHolds: a delivery that failed on our side only (the SCB booked it, its
// answer was lost until the budget was spent) is a delivery_failed finding whose SCB copy is our
// entry. Its reversal, which would not be sent to that SCB, is refused: the SCB would keep the
// movement we reversed. requeue sends it again, answered as a replay.
func TestFailedDeliveryTheSCBHolds(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "fund", "100.00")
	e.deliver(2)
	if _, err := e.sims["SCB-1"].SetFaults(sim.FaultsUpdate{DropAfterCommitRate: ptr(1.0)}); err != nil {
		t.Fatal(err)
	}
	e.post("SCB-1", "held", "4.00")
	e.deliver(1)
	if _, err := e.sims["SCB-1"].SetFaults(sim.FaultsUpdate{Reset: true}); err != nil {
		t.Fatal(err)
	}
	if s := e.outboxStatus("held", "SCB-1"); s != "FAILED" {
		t.Fatalf("a delivery whose answers were all lost: %s", s)
	}
	e.reconcile(reconcile.Options{Full: true})
	d := byRef(e.discrepancies(reconcile.Filter{}))["held"]
	if d.Kind != "delivery_failed" || len(d.SCB) == 0 || string(d.SCB) == "null" {
		t.Fatalf("finding: %+v", d)
	}
	entries := e.count(`SELECT count(*) FROM ledger_entries`)
	_, err := e.resolve(d.ID, reconcile.Resolution{Kind: "correct", Reason: "x", Correction: &reconcile.Correction{Reverse: true}})
	if ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), "SCB-1 holds held although our delivery failed") ||
		!strings.Contains(err.Error(), "requeue") {
		t.Fatalf("reverse a failed delivery the SCB holds: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Errorf("the refused correction posted %d entries", n-entries)
	}
	if _, err := e.resolve(d.ID, reconcile.Resolution{Kind: "requeue", Reason: "SCB-1 booked it"}); err != nil {
		t.Fatal(err)
	}
	e.deliver(1)
	if s := e.outboxStatus("held", "SCB-1"); s != "FINALIZED" {
		var why string
		_ = e.pool.QueryRow(e.ctx, `SELECT coalesce(failure_reason, '') FROM dual_ledger_outbox WHERE reference_id = 'held'`).Scan(&why)
		t.Errorf("after the requeue: %s (%v)", s, why)
	}
	if st := e.sims["SCB-1"].Stats(false); st.DuplicatePosts != 0 {
		t.Errorf("the SCB booked it twice: %+v", st)
	}

	// The SCB holds another entry under our reference (its answer was 409): a requeue would be
	// refused again, so the refusal points at the companion finding instead (the second review).
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "other", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "9.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 999, BlockHash: strings.Repeat("ab", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	e.post("SCB-1", "other", "3.00")
	e.deliver(1)
	if s := e.outboxStatus("other", "SCB-1"); s != "FAILED" {
		t.Fatalf("a delivery the SCB holds another entry for: %s", s)
	}
	e.reconcile(reconcile.Options{Full: true})
	var failed reconcile.Discrepancy
	for _, x := range e.discrepancies(reconcile.Filter{Kind: "delivery_failed"}) {
		if x.ReferenceID == "other" {
			failed = x
		}
	}
	_, err = e.resolve(failed.ID, reconcile.Resolution{Kind: "correct", Reason: "x", Correction: &reconcile.Correction{Reverse: true}})
	if ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable || !strings.Contains(err.Error(), "holds another entry under other") ||
		!strings.Contains(err.Error(), "amount_mismatch or field_mismatch") {
		t.Errorf("reverse a delivery refused with 409: %v", err)
	}
}
