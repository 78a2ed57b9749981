package reconcile_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

// TestResolvedFindingsStandUntilTheyChange (the reconciliation review of 2026-12-02): a RESOLVED
// discrepancy never changes. Seen again with the same values, an `explained` or `correct` one
// stands, run after run (a correction beside the SCB's copy does not make the copy go away, and
// reopening it invited a second correction); seen with other values, it is a new difference: a
// new OPEN discrepancy, while the resolved one keeps the values it was resolved on. A correction
// of a finding no run sees any more is refused and posts nothing.
func TestResolvedFindingsStandUntilTheyChange(t *testing.T) {
	e := faultyLedger(t)
	e.reconcile(reconcile.Options{Full: true})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	if _, err := e.resolve(ds["r3"].ID, reconcile.Resolution{Kind: "explained", Reason: "SCB-1 re-hashed by mistake"}); err != nil {
		t.Fatal(err)
	}
	// The runbook's amount_mismatch step: post the difference (the SCB's 11.00 against our 10.00).
	diff := ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "1.00", CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: "correction"}
	if _, err := e.resolve(ds["r2"].ID, reconcile.Resolution{Kind: "correct", Reason: "post the difference",
		Correction: &reconcile.Correction{Entry: &diff}}); err != nil {
		t.Fatal(err)
	}
	// The invented entry: we post it on our side as well.
	inv := diff
	inv.Amount = "99.00"
	if _, err := e.resolve(ds["inv"].ID, reconcile.Resolution{Kind: "correct", Reason: "book it here too",
		Correction: &reconcile.Correction{Entry: &inv}}); err != nil {
		t.Fatal(err)
	}
	e.deliver(3) // the corrections go to SCB-1 too
	entries := e.count(`SELECT count(*) FROM ledger_entries`)
	for i := range 3 {
		run := e.reconcile(reconcile.Options{Full: i == 0, Grace: 0})
		if run.NewFound != 0 {
			t.Fatalf("run %d after the resolutions opened %d new discrepancies", i, run.NewFound)
		}
	}
	for _, ref := range []string{"r2", "r3", "inv"} {
		if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE reference_id = $1 AND status = 'RESOLVED' AND cleared_at IS NULL`, ref); n != 1 {
			t.Errorf("%s: %d resolved live discrepancies, want 1", ref, n)
		}
		if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE reference_id = $1`, ref); n != 1 {
			t.Errorf("%s: %d discrepancies, want 1", ref, n)
		}
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Errorf("entries posted by the runs: %d, want %d", n, entries)
	}

	// The SCB changes both again: new differences, new discrepancies; the resolved ones keep their values.
	var r3Hash string
	if err := e.pool.QueryRow(e.ctx, `SELECT scb ->> 'block_hash' FROM reconciliation_discrepancies WHERE id = $1`, ds["r3"].ID).Scan(&r3Hash); err != nil {
		t.Fatal(err)
	}
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r2", Amount: strp("5000000.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r3", BlockHash: strp(strings.Repeat("cd", 32))})
	run := e.reconcile(reconcile.Options{Full: true, Grace: 0})
	if run.NewFound != 2 {
		t.Errorf("run after the SCB changed r2 and r3 again: %d new, want 2 (%+v)", run.NewFound, run)
	}
	for ref, old := range map[string]string{"r2": "11.00", "r3": r3Hash} {
		var amount, hash string
		var cleared bool
		if err := e.pool.QueryRow(e.ctx, `SELECT scb ->> 'amount', scb ->> 'block_hash', cleared_at IS NOT NULL FROM reconciliation_discrepancies
			WHERE reference_id = $1 AND status = 'RESOLVED'`, ref).Scan(&amount, &hash, &cleared); err != nil {
			t.Fatal(err)
		}
		if !cleared || (ref == "r2" && amount != old) || (ref == "r3" && hash != old) {
			t.Errorf("%s resolved: amount %s, hash %q, cleared %v; want the values it was resolved on, cleared", ref, amount, hash, cleared)
		}
		if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE reference_id = $1 AND status = 'OPEN' AND cleared_at IS NULL`, ref); n != 1 {
			t.Errorf("%s: %d open discrepancies after the change, want 1", ref, n)
		}
	}

	// r8's FAILED delivery is requeued by hand (not through its discrepancy) and delivered: the
	// next run clears the OPEN discrepancy, and a correction of it now is refused, and undone.
	var outboxID int64
	if err := e.pool.QueryRow(e.ctx, `SELECT id FROM dual_ledger_outbox WHERE reference_id = 'r8'`).Scan(&outboxID); err != nil {
		t.Fatal(err)
	}
	e.exec(`SELECT outbox_requeue('cli:test', 'MASTER', $1, NULL, true, 'SCB-1 is back')`, outboxID)
	e.deliver(3)
	e.reconcile(reconcile.Options{Full: true, Grace: 0})
	if n := e.count(`SELECT count(*) FROM reconciliation_discrepancies WHERE id = $1 AND status = 'OPEN' AND cleared_at IS NOT NULL`, ds["r8"].ID); n != 1 {
		t.Fatalf("r8's discrepancy is not OPEN and cleared")
	}
	entries = e.count(`SELECT count(*) FROM ledger_entries`)
	if _, err := e.resolve(ds["r8"].ID, reconcile.Resolution{Kind: "correct", Reason: "too late",
		Correction: &reconcile.Correction{Reverse: true}}); ledger.CodeOf(err) != ledger.CodeResolutionNotApplicable {
		t.Errorf("a correction of a cleared discrepancy: %v, want resolution_not_applicable", err)
	}
	if n := e.count(`SELECT count(*) FROM ledger_entries`); n != entries {
		t.Errorf("the refused correction posted: %d entries, want %d", n, entries)
	}
	if _, err := e.resolve(ds["r8"].ID, reconcile.Resolution{Kind: "explained", Reason: "delivered after a requeue"}); err != nil {
		t.Errorf("explained of a cleared discrepancy: %v", err)
	}
}

// TestRemovedInventionClearedByTheNextRun: the runbook's fix for an entry the SCB invented is
// that the SCB removes it; the next run, incremental, asks about the entry again, gets 404, and
// clears the discrepancy (before, only a full run did, so it was reported until then).
func TestRemovedInventionClearedByTheNextRun(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "inv", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "5.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 4242, BlockHash: strings.Repeat("ab", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	e.reconcile(reconcile.Options{Full: true})
	ds := e.discrepancies(reconcile.Filter{})
	if len(ds) != 1 || ds[0].Kind != "missing_on_dbis" {
		t.Fatalf("%+v", ds)
	}
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "inv"})
	run := e.reconcile(reconcile.Options{})
	if run.Cleared != 1 || len(e.discrepancies(reconcile.Filter{})) != 0 {
		t.Errorf("incremental run after the SCB removed its invention: %+v, live %+v", run, e.discrepancies(reconcile.Filter{}))
	}
}

// twiceBooked is an SCB whose list shows one entry a second time, under another scb_entry_id and
// amount, on a page of its own after the last (as the reconciliation review's proxy did).
type twiceBooked struct {
	*scb.Client
	ref     string
	pending *scb.EntryView
	shown   bool
}

func (s *twiceBooked) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	if s.pending != nil {
		dup := *s.pending
		s.pending = nil
		return scb.Page{Entries: []scb.EntryView{dup}, NextSince: since}, nil
	}
	p, err := s.Client.List(ctx, since, limit)
	if err != nil || p.HasMore || s.shown {
		return p, err
	}
	for _, v := range p.Entries {
		if v.ReferenceID == s.ref {
			dup := v
			dup.SCBEntryID += "-again"
			dup.Amount = "1000.00"
			dup.PostedAt = v.PostedAt.Add(time.Second)
			s.pending, s.shown = &dup, true
			p.HasMore = true
			return p, nil
		}
	}
	return p, nil
}

// TestDuplicateAtTheSCB: an SCB that books one of our postings twice is a duplicate_on_scb
// discrepancy naming the other copy (before, one copy was kept and the other went unreported).
func TestDuplicateAtTheSCB(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "10.00")
	e.post("SCB-1", "b", "10.00")
	e.deliver(3)
	dup := &twiceBooked{Client: e.clients["SCB-1"], ref: "a"}
	run, err := reconcile.Reconcile(e.ctx, e.pool, dup, reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Full: true})
	if err != nil {
		t.Fatal(err)
	}
	ds := e.discrepancies(reconcile.Filter{Kind: reconcile.KindDuplicateOnSCB})
	if len(ds) != 1 || ds[0].ReferenceID != "a" || !strings.Contains(string(ds[0].SCB), "-again") {
		t.Fatalf("run %+v: duplicate discrepancies %+v", run, ds)
	}
	// The second copy (1000.00, on a page of its own, posted later) is not the one compared: it
	// opens no amount_mismatch (which copy is compared depended on the page size).
	if all := e.discrepancies(reconcile.Filter{}); len(all) != 1 {
		t.Errorf("findings beside the duplicate: %+v", all)
	}
	// The next full run over the SCB as it really is (one copy) clears it.
	e.reconcile(reconcile.Options{Full: true})
	if ds := e.discrepancies(reconcile.Filter{}); len(ds) != 0 {
		t.Errorf("after the SCB shows one copy again: %+v", ds)
	}
}

// TestLossFoundByTheRereadStaysFound: an entry the SCB answers 404 for when asked again (it
// listed it before) is missing_on_scb in that incremental run and the ones after, even when our
// delivery does not change (before, its copy was deleted and nothing made a later incremental run
// compare it).
func TestLossFoundByTheRereadStaysFound(t *testing.T) {
	// Entries stay ACCEPTED at the SCB (and SENT here): not final on either side, no discrepancy,
	// and asked about again by every run.
	e := newEnvWith(t, func(c *sim.Config) { c.FinalAfter = time.Hour }, "SCB-1")
	for _, ref := range []string{"t1", "t2", "t3"} {
		e.post("SCB-1", ref, "1.00")
	}
	e.send()
	// Sent ten minutes ago, so that no run compares them because our side changed lately (the
	// outbox's updated_at moves only by its functions: the triggers are off for this statement).
	e.exec(`BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE dual_ledger_outbox SET updated_at = now() - interval '10 minutes', sent_at = now() - interval '10 minutes'; COMMIT`)
	e.reconcile(reconcile.Options{Grace: 0})
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "t3"})
	for i := range 2 {
		e.reconcile(reconcile.Options{Grace: 0})
		ds := e.discrepancies(reconcile.Filter{})
		if len(ds) != 1 || ds[0].ReferenceID != "t3" || ds[0].Kind != reconcile.KindMissingOnSCB {
			t.Fatalf("incremental run %d after the SCB lost t3: %+v", i, ds)
		}
	}
}

// TestSmallerGraceAfterALargerOne: a delivery the previous run left for later (younger than its
// grace) is compared by the next run even when that one has a smaller grace.
func TestSmallerGraceAfterALargerOne(t *testing.T) {
	e := newEnv(t, "SCB-9")
	e.post("SCB-9", "q1", "1.00") // never delivered: QUEUED
	// Three minutes old (created_at is immutable to every writer: the triggers are off for this
	// one statement of the test's superuser).
	e.exec(`BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE dual_ledger_outbox SET created_at = now() - interval '3 minutes', updated_at = now() - interval '3 minutes'
		 WHERE reference_id = 'q1'; COMMIT`)
	e.reconcile(reconcile.Options{SCBID: "SCB-9", Grace: 5 * time.Minute})
	if ds := e.discrepancies(reconcile.Filter{}); len(ds) != 0 {
		t.Fatalf("a delivery younger than the grace: %+v", ds)
	}
	e.reconcile(reconcile.Options{SCBID: "SCB-9", Grace: time.Second})
	ds := e.discrepancies(reconcile.Filter{})
	if len(ds) != 1 || ds[0].ReferenceID != "q1" || ds[0].Kind != reconcile.KindMissingOnSCB {
		t.Errorf("the next run, with a smaller grace: %+v", ds)
	}
}

// busySCB answers every other question 429 with a short Retry-After.
type busySCB struct {
	*scb.Client
	calls, refused int
}

func (s *busySCB) busy() error {
	s.calls++
	if s.calls%2 == 1 {
		s.refused++
		return &scb.DeliveryError{SCB: "SCB-1", Op: "GET", StatusCode: 429, Class: scb.ClassRateLimited, Retryable: true,
			RetryAfter: 10 * time.Millisecond, Reason: "429 Too Many Requests from SCB-1"}
	}
	return nil
}

func (s *busySCB) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	if err := s.busy(); err != nil {
		return scb.Page{}, err
	}
	return s.Client.List(ctx, since, limit)
}

func (s *busySCB) ReadInLedger(ctx context.Context, ledgerID, referenceID string) (scb.Response, error) {
	if err := s.busy(); err != nil {
		return scb.Response{}, err
	}
	return s.Client.ReadInLedger(ctx, ledgerID, referenceID)
}

// TestTransientSCBErrorsAreAskedAgain: an SCB that is busy now and then (429 with Retry-After)
// does not fail the run: each question is asked again after the wait it asked for.
func TestTransientSCBErrorsAreAskedAgain(t *testing.T) {
	e := newEnvWith(t, func(c *sim.Config) { c.FinalAfter = time.Hour }, "SCB-1")
	for _, ref := range []string{"t1", "t2", "t3"} {
		e.post("SCB-1", ref, "1.00")
	}
	e.send()
	e.reconcile(reconcile.Options{Grace: 0})
	busy := &busySCB{Client: e.clients["SCB-1"]}
	run, err := reconcile.Reconcile(e.ctx, e.pool, busy, reconcile.Options{Actor: "cli:test", SCBID: "SCB-1"})
	if err != nil || run.Status != "ok" || run.SCBEntriesReread != 3 || busy.refused < 4 {
		t.Errorf("run against a busy SCB: %+v, %v (%d of %d questions refused)", run, err, busy.refused, busy.calls)
	}
}

// emptyButMore is an SCB whose list says has_more on an empty page.
type emptyButMore struct{ *scb.Client }

func (s emptyButMore) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	return scb.Page{NextSince: since + "x", HasMore: true}, nil
}

// TestEmptyPageWithMoreFailsTheRun: an empty page that says has_more is not the end of the list
// (what follows would be skipped for good): the run fails, saying so.
func TestEmptyPageWithMoreFailsTheRun(t *testing.T) {
	e := newEnv(t, "SCB-1")
	_, err := reconcile.Reconcile(e.ctx, e.pool, emptyButMore{e.clients["SCB-1"]}, reconcile.Options{Actor: "cli:test", SCBID: "SCB-1"})
	if err == nil || !strings.Contains(err.Error(), "does not advance") {
		t.Errorf("run over an empty page with has_more: %v", err)
	}
}

// secondCopy is an SCB whose next list page also shows a second copy of one of its entries,
// under another scb_entry_id (booked again later, so an incremental read sees it alone).
type secondCopy struct {
	*scb.Client
	dup *scb.EntryView
}

func (s *secondCopy) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	p, err := s.Client.List(ctx, since, limit)
	if err == nil && !p.HasMore && s.dup != nil {
		p.Entries = append(p.Entries, *s.dup)
		s.dup = nil
	}
	return p, err
}

func (e *env) copyOf(ref, suffix string) *scb.EntryView {
	e.t.Helper()
	res, err := e.clients["SCB-1"].GetInLedger(e.ctx, "MASTER", ref)
	if err != nil || res.Entry == nil {
		e.t.Fatalf("get %s: %+v %v", ref, res, err)
	}
	dup := *res.Entry
	dup.SCBEntryID += suffix
	dup.PostedAt = time.Now().UTC()
	return &dup
}

// TestDuplicatesAndResolutionsAfterTheReview (the review of this pass's own changes): a second
// copy posted later is found by an incremental run; an entry the SCB re-posted because we
// redelivered it is not a duplicate; a second copy does not reopen an explained finding of
// another kind; and a run in another time zone reopens nothing.
func TestDuplicatesAndResolutionsAfterTheReview(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "10.00")
	e.post("SCB-1", "r", "10.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "a", Amount: strp("11.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r", Amount: strp("12.00")})
	e.reconcile(reconcile.Options{Grace: 0})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	if ds["a"].Kind != reconcile.KindAmountMismatch || ds["r"].Kind != reconcile.KindAmountMismatch {
		t.Fatalf("%+v", ds)
	}
	if _, err := e.resolve(ds["a"].ID, reconcile.Resolution{Kind: "explained", Reason: "SCB rounds"}); err != nil {
		t.Fatal(err)
	}

	// r is lost (asked again for its live discrepancy: 404, kept as gone) and redelivered: the
	// SCB posts it again under a new id, which the next run lists beside the old one it kept.
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "r"})
	e.reconcile(reconcile.Options{Grace: 0})
	var missing int64
	for _, d := range e.discrepancies(reconcile.Filter{}) {
		if d.ReferenceID == "r" && d.Kind == reconcile.KindMissingOnSCB {
			missing = d.ID
		}
	}
	if _, err := e.resolve(missing, reconcile.Resolution{Kind: "requeue", Reason: "restore"}); err != nil {
		t.Fatal(err)
	}
	e.deliver(3)

	// A second copy of a, posted later. An incremental run sees it alone, as it would see a
	// renumbered entry: no finding from that. A full run lists both copies together: a
	// duplicate, which changes none of a's other findings.
	e.post("SCB-1", "b", "1.00")
	e.deliver(3)
	kinds := func(run reconcile.Run, want map[string][]string) {
		t.Helper()
		got := map[string][]string{}
		for _, d := range e.discrepancies(reconcile.Filter{Cleared: true}) {
			got[d.ReferenceID] = append(got[d.ReferenceID], fmt.Sprintf("%s/%s/cleared=%v", d.Kind, d.Status, d.Cleared))
		}
		for _, ref := range []string{"a", "r", "b"} {
			slices.Sort(got[ref])
			if !slices.Equal(got[ref], want[ref]) {
				t.Errorf("%s: %v, want %v (run %+v)", ref, got[ref], want[ref], run)
			}
		}
	}
	r := []string{"amount_mismatch/OPEN/cleared=true", "missing_on_scb/RESOLVED/cleared=true"}
	run, err := reconcile.Reconcile(e.ctx, e.pool, &secondCopy{Client: e.clients["SCB-1"], dup: e.copyOf("a", "-again")},
		reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	kinds(run, map[string][]string{"a": {"amount_mismatch/RESOLVED/cleared=false"}, "r": r})
	run, err = reconcile.Reconcile(e.ctx, e.pool, &secondCopy{Client: e.clients["SCB-1"], dup: e.copyOf("a", "-again")},
		reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Grace: 0, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	kinds(run, map[string][]string{"a": {"amount_mismatch/RESOLVED/cleared=false", "duplicate_on_scb/OPEN/cleared=false"}, "r": r})
	// Asked again about a (its duplicate is live), the SCB answers one copy: the copies stay copies.
	run = e.reconcile(reconcile.Options{Grace: 0})
	kinds(run, map[string][]string{"a": {"amount_mismatch/RESOLVED/cleared=false", "duplicate_on_scb/OPEN/cleared=false"}, "r": r})
	var others []string
	if err := e.pool.QueryRow(e.ctx, `SELECT other_scb_entry_ids FROM reconciliation_scb_entries WHERE reference_id = 'a'`).Scan(&others); err != nil ||
		len(others) != 1 {
		t.Errorf("a's other copies after the reread: %v %v", others, err)
	}

	// Another session time zone changes how times read in JSON, not the findings.
	cfg, err := pgxpool.ParseConfig(e.d.ConnStr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "Asia/Tokyo"
	tokyo, err := pgxpool.NewWithConfig(e.ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tokyo.Close()
	for _, full := range []bool{false, true} {
		run, err := reconcile.Reconcile(e.ctx, tokyo, e.clients["SCB-1"], reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Full: full, Grace: 0})
		if err != nil || run.NewFound != 0 {
			t.Errorf("run in Asia/Tokyo (full %v): %+v %v", full, run, err)
		}
	}
}

// TestResolvedFindingsDoNotStarveTheRereads: resolved discrepancies that stay live (explained)
// are asked about after the entries on their way to FINAL, so a budget they could fill still
// rereads those (a stale copy made a false status_mismatch).
func TestResolvedFindingsDoNotStarveTheRereads(t *testing.T) {
	e := newEnvWith(t, func(c *sim.Config) { c.FinalAfter = 3 * time.Second }, "SCB-1")
	e.post("SCB-1", "x", "1.00")
	e.post("SCB-1", "y", "1.00")
	e.deliver(3)
	for _, ref := range []string{"x", "y"} {
		e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: ref, Amount: strp("2.00")})
	}
	e.reconcile(reconcile.Options{Grace: 0, RereadLimit: 2})
	for _, d := range e.discrepancies(reconcile.Filter{}) {
		if _, err := e.resolve(d.ID, reconcile.Resolution{Kind: "explained", Reason: "agreed"}); err != nil {
			t.Fatal(err)
		}
	}
	e.post("SCB-1", "c", "1.00")
	e.send() // ACCEPTED there, SENT here
	e.reconcile(reconcile.Options{Grace: 0, RereadLimit: 2})
	e.deliver(3) // FINAL there, FINALIZED here
	run := e.reconcile(reconcile.Options{Grace: 0, RereadLimit: 2})
	if ds := e.discrepancies(reconcile.Filter{Status: "OPEN"}); len(ds) != 0 {
		t.Errorf("open discrepancies after c became FINAL on both sides: %+v (run %+v)", ds, run)
	}
}

// renumbered is an SCB that moved entry ref to a new id (a migration on its side): its list
// shows it once more under that id, and its answers name only that id.
type renumbered struct {
	*scb.Client
	ref, id string
	listed  bool
}

func (s *renumbered) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	p, err := s.Client.List(ctx, since, limit)
	if err != nil || p.HasMore || s.listed {
		return p, err
	}
	res, err := s.Client.GetInLedger(ctx, "MASTER", s.ref)
	if err != nil {
		return p, err
	}
	v := *res.Entry
	v.SCBEntryID = s.id
	p.Entries = append(p.Entries, v)
	s.listed = true
	return p, nil
}

func (s *renumbered) ReadInLedger(ctx context.Context, ledgerID, referenceID string) (scb.Response, error) {
	res, err := s.Client.ReadInLedger(ctx, ledgerID, referenceID)
	if err == nil && referenceID == s.ref && res.Entry != nil {
		e := *res.Entry
		e.SCBEntryID = s.id
		res.Entry, res.SCBEntryID = &e, s.id
	}
	return res, err
}

// TestRenumberedEntryIsNotADuplicate: an entry the SCB lists again under a new id (and answers
// under it) is one copy, not two (the review of this pass's own changes: an incremental run took
// the stored id for a second copy, and the runbook could have had the only one reversed).
func TestRenumberedEntryIsNotADuplicate(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "10.00")
	e.deliver(3)
	e.reconcile(reconcile.Options{Grace: 0})
	scb := &renumbered{Client: e.clients["SCB-1"], ref: "a", id: "MIGRATED-1"}
	for i, full := range []bool{false, false, true} {
		run, err := reconcile.Reconcile(e.ctx, e.pool, scb, reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Grace: 0, Full: full})
		if err != nil {
			t.Fatal(err)
		}
		if ds := e.discrepancies(reconcile.Filter{Kind: reconcile.KindDuplicateOnSCB}); len(ds) != 0 {
			t.Errorf("run %d (full %v) after the SCB renumbered a: %+v (run %+v)", i, full, ds, run)
		}
	}
}

// TestRereadsTakeTurns: with more live discrepancies than the reread budget, each run asks about
// the ones asked about least recently, so a repair at the SCB of any of them is seen within a few
// runs (every run asked about the same lowest ids, and a repaired entry stayed reported until a
// full run).
func TestRereadsTakeTurns(t *testing.T) {
	e := newEnv(t, "SCB-1")
	refs := []string{"a", "b", "c", "d"}
	for _, ref := range refs {
		e.post("SCB-1", ref, "10.00")
	}
	e.deliver(3)
	for _, ref := range refs {
		e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: ref, Amount: strp("11.00")})
	}
	e.reconcile(reconcile.Options{Grace: 0, Full: true, RereadLimit: 2})
	if n := len(e.discrepancies(reconcile.Filter{})); n != 4 {
		t.Fatalf("%d discrepancies, want 4", n)
	}
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "d", Amount: strp("10.00")})
	for range 3 {
		e.reconcile(reconcile.Options{Grace: 0, RereadLimit: 2})
	}
	for _, d := range e.discrepancies(reconcile.Filter{}) {
		if d.ReferenceID == "d" {
			t.Errorf("d was repaired at the SCB three runs ago and is still reported: %+v", d)
		}
	}
}

// TestUnattributableEntryFailsTheRun: an entry in the SCB's list without a reference (or a
// ledger) cannot be matched to anything of ours and may be money we do not know of. The run
// fails, naming the entry, instead of skipping it without a word as it did before.
func TestUnattributableEntryFailsTheRun(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a1", "10.00")
	e.deliver(3)
	stray := e.copyOf("a1", "-stray")
	stray.ReferenceID = ""
	_, err := reconcile.Reconcile(e.ctx, e.pool, &secondCopy{Client: e.clients["SCB-1"], dup: stray},
		reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Full: true})
	if err == nil || !strings.Contains(err.Error(), "has no reference_id") || !strings.Contains(err.Error(), stray.SCBEntryID) {
		t.Fatalf("run over an entry without a reference: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM reconciliation_runs WHERE status = 'failed' AND error LIKE '%has no reference_id%'`); n != 1 {
		t.Errorf("%d failed runs recorded with the reason, want 1", n)
	}
}

// TestFinalizedAfterTheReadIsNoStatusMismatch (review of 2026-12-02): a run read the SCB's list
// while an entry was POSTED there, and our poller saw it FINAL and FINALIZED the row a moment
// later. That is not the SCB going back on a FINAL answer, and no run reports it; a copy read
// after our row was FINALIZED still is.
func TestFinalizedAfterTheReadIsNoStatusMismatch(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "r5", "10.00")
	e.deliver(3)
	e.tamper("SCB-1", sim.Tamper{Action: "hold", LedgerID: "MASTER", ReferenceID: "r5", Status: "POSTED"})
	run := e.reconcile(reconcile.Options{Full: true})
	found := func() int {
		t.Helper()
		return e.count(`SELECT count(*) FROM reconcile_findings('SCB-1', NULL, interval '0', $1, NULL) WHERE kind = 'status_mismatch'`, run.ID)
	}
	if n := found(); n != 1 {
		t.Fatalf("the SCB's copy, read after our row was FINALIZED, is POSTED: %d status_mismatch findings, want 1", n)
	}
	// The same copy, read before the row was FINALIZED.
	e.exec(`UPDATE reconciliation_scb_entries SET read_at = (SELECT updated_at - interval '1 second' FROM dual_ledger_outbox WHERE reference_id = 'r5')
		WHERE reference_id = 'r5'`)
	if n := found(); n != 0 {
		t.Errorf("a copy read before our row was FINALIZED: %d status_mismatch findings, want 0", n)
	}
}

// TestFinalThereWhilePolledHere (review of 2026-12-02): the SCB says FINAL, our row stays SENT
// (its polls fail: another scb_entry_id, say) and every poll moves the row's updated_at. The
// finding waits for the grace from the row's last step (sent, acknowledged), not from its last
// poll: before, such a row was never reported. A row merely waiting for its next scheduled poll
// (none failed, none since the copy was read) is not reported: its poll will see FINAL (the
// second review: a batch finalised at a cut-off was reported whole).
func TestFinalThereWhilePolledHere(t *testing.T) {
	e := newEnvWith(t, func(c *sim.Config) { c.FinalAfter = time.Hour }, "SCB-1")
	e.post("SCB-1", "r6", "10.00")
	e.send()
	if s := e.outboxStatus("r6", "SCB-1"); s != "SENT" && s != "ACKED" {
		t.Fatalf("row %s, want SENT or ACKED", s)
	}
	run := e.reconcile(reconcile.Options{Full: true})
	// The copy the run read says FINAL; the row was sent 10 minutes ago and polled just now.
	e.exec(`UPDATE reconciliation_scb_entries SET status = 'FINAL' WHERE reference_id = 'r6'`)
	e.exec(`UPDATE dual_ledger_outbox SET sent_at = now() - interval '10 minutes', last_polled_at = now() - interval '1 hour'
		WHERE reference_id = 'r6'`)
	if n := e.count(`SELECT count(*) FROM dual_ledger_outbox WHERE reference_id = 'r6' AND updated_at > now() - interval '1 minute'`); n != 1 {
		t.Fatalf("the row's updated_at is not recent: %d", n)
	}
	found := func(grace string) int {
		t.Helper()
		return e.count(`SELECT count(*) FROM reconcile_findings('SCB-1', NULL, $2::interval, $1, NULL) WHERE kind = 'status_mismatch'`, run.ID, grace)
	}
	if n := found("5 minutes"); n != 0 {
		t.Errorf("a row waiting for its next scheduled poll: %d status_mismatch findings, want 0", n)
	}
	// Its polls since the read failed.
	e.exec(`UPDATE dual_ledger_outbox SET poll_failures = 3, last_polled_at = now() WHERE reference_id = 'r6'`)
	if n := found("5 minutes"); n != 1 {
		t.Errorf("FINAL at the SCB, our row SENT for 10 minutes and polled since: %d status_mismatch findings, want 1", n)
	}
	if n := found("15 minutes"); n != 0 {
		t.Errorf("within the grace: %d status_mismatch findings, want 0", n)
	}
}

// offContract is an SCB that gives entry ref a status outside the contract (REVERSED), in its
// list and in its answers about the entry.
type offContract struct {
	*scb.Client
	ref string
}

func (s *offContract) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	p, err := s.Client.List(ctx, since, limit)
	for i := range p.Entries {
		if p.Entries[i].ReferenceID == s.ref {
			p.Entries[i].Status = "REVERSED"
		}
	}
	return p, err
}

func (s *offContract) ReadInLedger(ctx context.Context, ledgerID, referenceID string) (scb.Response, error) {
	res, err := s.Client.ReadInLedger(ctx, ledgerID, referenceID)
	if err == nil && referenceID == s.ref && res.Entry != nil {
		e := *res.Entry
		e.Status = "REVERSED"
		res.Entry, res.Status = &e, "REVERSED"
	}
	return res, err
}

// TestOffContractStatusIsAFinding (review of 2026-12-02): an SCB that calls our entry REVERSED, a
// status outside ACCEPTED, POSTED and FINAL, is reported (status_mismatch, its status shown),
// by full and incremental runs alike; before, full runs stored it and said nothing, and every
// incremental run failed on the one entry, for the whole SCB.
func TestOffContractStatusIsAFinding(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "ok", "10.00")
	e.post("SCB-1", "odd", "10.00")
	e.deliver(3)
	client := &offContract{Client: e.clients["SCB-1"], ref: "odd"}
	for i, full := range []bool{true, false, false} {
		run, err := reconcile.Reconcile(e.ctx, e.pool, client, reconcile.Options{Actor: "cli:test", SCBID: "SCB-1", Grace: 0, Full: full})
		if err != nil || run.Status != "ok" {
			t.Fatalf("run %d (full %v): %+v %v", i, full, run, err)
		}
		ds := e.discrepancies(reconcile.Filter{})
		if len(ds) != 1 || ds[0].ReferenceID != "odd" || ds[0].Kind != reconcile.KindStatusMismatch || field(t, ds[0].SCB, "status") != "REVERSED" {
			t.Errorf("run %d (full %v): %+v", i, full, ds)
		}
	}
}
