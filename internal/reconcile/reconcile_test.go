package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"dualledger/internal/ledger"
	"dualledger/internal/reconcile"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// faultyLedger delivers nine entries to SCB-1, then makes the SCB wrong in every way at once:
// lost (r1), amount altered (r2), hash altered (r3), debit account altered (r4), held at POSTED
// (r5), an entry we never sent (inv), and a delivery that FAILED (r8); r6, r7 stay right.
func faultyLedger(t *testing.T) *env {
	e := newEnv(t, "SCB-1")
	for _, ref := range []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"} {
		e.post("SCB-1", ref, "10.00")
	}
	e.deliver(3)
	e.failDeliveries([]string{"SCB-1"}, func() { e.post("SCB-1", "r8", "10.00") })
	if s := e.outboxStatus("r8", "SCB-1"); s != "FAILED" {
		t.Fatalf("r8 is %s, want FAILED", s)
	}
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "r1"})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r2", Amount: strp("11.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r3", BlockHash: strp("")})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r4", DebitAccountID: strp("SCB-1-OTHER")})
	e.tamper("SCB-1", sim.Tamper{Action: "hold", LedgerID: "MASTER", ReferenceID: "r5", Status: "POSTED"})
	e.tamper("SCB-1", sim.Tamper{Action: "invent", Entry: &scb.Entry{ReferenceID: "inv", LedgerID: "MASTER", DebitAccountID: "issuance",
		CreditAccountID: "SCB-1-USD", Amount: "99.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
		DBISEntryID: 424242, BlockHash: strings.Repeat("ab", 32), TimestampUTC: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}})
	return e
}

func ptr[T any](v T) *T { return &v }

func (e *env) reconcile(opts reconcile.Options) reconcile.Run {
	e.t.Helper()
	if opts.SCBID == "" {
		opts.SCBID = "SCB-1"
	}
	opts.Actor = "cli:test"
	run, err := reconcile.Reconcile(e.ctx, e.pool, e.clients[opts.SCBID], opts)
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return run
}

func (e *env) discrepancies(f reconcile.Filter) []reconcile.Discrepancy {
	e.t.Helper()
	f.Limit = 1000
	ds, err := reconcile.List(e.ctx, e.pool, f)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

func byRef(ds []reconcile.Discrepancy) map[string]reconcile.Discrepancy {
	m := map[string]reconcile.Discrepancy{}
	for _, d := range ds {
		m[d.ReferenceID] = d
	}
	return m
}

func field(t *testing.T, raw json.RawMessage, name string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m[name]
}

// TestEveryKindFoundOnce: every kind at once, each found exactly once with the right kind and
// both sides' values, nothing else; a second run adds nothing; a fixed one is cleared, not deleted.
func TestEveryKindFoundOnce(t *testing.T) {
	e := faultyLedger(t)
	run := e.reconcile(reconcile.Options{})
	if run.Status != "ok" || run.Found != 7 || run.NewFound != 7 || run.Cleared != 0 || run.SCBEntriesRead != 7 || run.DBISRowsCompared != 8 {
		t.Fatalf("first run: %+v", run)
	}
	ds := e.discrepancies(reconcile.Filter{})
	want := map[string]string{"r1": "missing_on_scb", "r2": "amount_mismatch", "r3": "hash_mismatch", "r4": "field_mismatch",
		"r5": "status_mismatch", "inv": "missing_on_dbis", "r8": "delivery_failed"}
	got := map[string]string{}
	for _, d := range ds {
		if _, dup := got[d.ReferenceID]; dup {
			t.Errorf("%s found twice: %+v", d.ReferenceID, ds)
		}
		got[d.ReferenceID] = d.Kind
		if d.Status != "OPEN" || d.Cleared || d.SCBID != "SCB-1" || d.LedgerID != "MASTER" || d.SeenCount != 1 {
			t.Errorf("%s: %+v", d.ReferenceID, d)
		}
	}
	if len(ds) != len(want) || !mapsEqual(got, want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	m := byRef(ds)
	if a, b := field(t, m["r2"].DBIS, "amount"), field(t, m["r2"].SCB, "amount"); a != "10" || b != "11.00" {
		t.Errorf("amount_mismatch values: ours %v, SCB's %v", a, b)
	}
	if a, b := field(t, m["r3"].DBIS, "block_hash"), field(t, m["r3"].SCB, "block_hash"); a == b || a == nil || b == nil {
		t.Errorf("hash_mismatch values: %v %v", a, b)
	}
	if !slices.Equal(m["r4"].Fields, []string{"debit_account_id"}) || field(t, m["r4"].SCB, "debit_account_id") != "SCB-1-OTHER" ||
		field(t, m["r4"].DBIS, "debit_account_id") != "issuance" {
		t.Errorf("field_mismatch: %+v", m["r4"])
	}
	if field(t, m["r5"].SCB, "status") != "POSTED" || field(t, m["r5"].DBIS, "outbox_status") != "FINALIZED" {
		t.Errorf("status_mismatch: %s %s", m["r5"].SCB, m["r5"].DBIS)
	}
	if m["r1"].SCB != nil || field(t, m["r1"].DBIS, "outbox_status") != "FINALIZED" {
		t.Errorf("missing_on_scb: %s %s", m["r1"].SCB, m["r1"].DBIS)
	}
	if m["inv"].DBIS != nil || field(t, m["inv"].SCB, "amount") != "99.00" || m["inv"].EntrySeq != nil {
		t.Errorf("missing_on_dbis: %+v", m["inv"])
	}
	if m["r8"].OutboxID == nil || field(t, m["r8"].DBIS, "outbox_status") != "FAILED" || m["r8"].SCB != nil {
		t.Errorf("delivery_failed: %+v", m["r8"])
	}

	// A second run, a day later (incremental: nothing new at the SCB) finds the same, adds nothing.
	e.yesterday()
	run2 := e.reconcile(reconcile.Options{})
	// It compares only what changed and what is open: the six deliveries with a discrepancy, not r6, r7.
	if run2.Found != 7 || run2.NewFound != 0 || run2.Cleared != 0 || run2.SCBEntriesRead != 0 || run2.CursorFrom == nil || run2.DBISRowsCompared != 6 {
		t.Fatalf("second run: %+v", run2)
	}
	ds2 := e.discrepancies(reconcile.Filter{Cleared: true})
	if len(ds2) != 7 {
		t.Fatalf("after the second run %d discrepancies, want 7", len(ds2))
	}
	for _, d := range ds2 {
		if d.SeenCount != 2 || d.LastRunID != run2.ID || d.FirstRunID != run.ID {
			t.Errorf("%s: seen %d, runs %d..%d", d.ReferenceID, d.SeenCount, d.FirstRunID, d.LastRunID)
		}
	}

	// The SCB repairs r2 and r4: the next run clears them (asked again one by one), and keeps them.
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r2", Amount: strp("10.00")})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r4", DebitAccountID: strp("issuance")})
	run3 := e.reconcile(reconcile.Options{})
	if run3.Found != 5 || run3.NewFound != 0 || run3.Cleared != 2 {
		t.Fatalf("third run: %+v", run3)
	}
	all := byRef(e.discrepancies(reconcile.Filter{Cleared: true}))
	if len(all) != 7 {
		t.Fatalf("discrepancies after clearing: %d, want 7 (never deleted)", len(all))
	}
	for _, ref := range []string{"r2", "r4"} {
		if d := all[ref]; !d.Cleared || d.ClearedRunID == nil || *d.ClearedRunID != run3.ID || d.Status != "OPEN" {
			t.Errorf("%s after the repair: %+v", ref, d)
		}
	}
	if live := e.discrepancies(reconcile.Filter{}); len(live) != 5 {
		t.Errorf("live discrepancies: %d, want 5", len(live))
	}
	if _, err := e.pool.Exec(e.ctx, `DELETE FROM reconciliation_discrepancies`); err == nil {
		t.Error("the owner deleted discrepancies")
	}

	// The same finding again after it cleared is a new incident.
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r2", Amount: strp("12.00")})
	run4 := e.reconcile(reconcile.Options{Full: true})
	if run4.Found != 6 || run4.NewFound != 1 || run4.SCBEntriesRead != 7 {
		t.Fatalf("fourth run: %+v", run4)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestLossFoundByFullRun: an incremental run does not reread history, so an entry lost after
// an earlier run is found by --full; a later incremental run keeps it.
func TestLossFoundByFullRun(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.post("SCB-1", "b", "2.00")
	e.deliver(3)
	if run := e.reconcile(reconcile.Options{}); run.Found != 0 || run.SCBEntriesRead != 2 {
		t.Fatalf("clean run: %+v", run)
	}
	e.tamper("SCB-1", sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "a"})
	if run := e.reconcile(reconcile.Options{}); run.Found != 0 || run.SCBEntriesRead != 0 {
		t.Fatalf("incremental run after the loss: %+v", run)
	}
	// Found with the default grace too: an entry the SCB acknowledged is expected there at any age.
	if run := e.reconcile(reconcile.Options{Full: true, Grace: 5 * time.Minute}); run.Found != 1 || run.SCBEntriesRead != 1 {
		t.Fatalf("full run after the loss: %+v", run)
	}
	// A delivery not made yet is expected only once older than the grace.
	e.post("SCB-1", "late", "4.00")
	if run := e.reconcile(reconcile.Options{Grace: 5 * time.Minute}); run.Found != 1 {
		t.Fatalf("a queued row within the grace: %+v", run)
	}
	if run := e.reconcile(reconcile.Options{}); run.Found != 2 || run.NewFound != 1 {
		t.Fatalf("a queued row past the grace: %+v", run)
	}
	e.post("SCB-1", "c", "3.00")
	e.deliver(3)
	if run := e.reconcile(reconcile.Options{}); run.Found != 1 || run.SCBEntriesRead != 2 || run.Cleared != 1 {
		t.Fatalf("incremental run after the full one (late and c delivered): %+v", run)
	}
	ds := e.discrepancies(reconcile.Filter{})
	if len(ds) != 1 || ds[0].ReferenceID != "a" || ds[0].Kind != reconcile.KindMissingOnSCB {
		t.Fatalf("%+v", ds)
	}
}

// TestOneRunPerSCB: a run holds its SCB's lock; a second is refused with
// reconciliation_in_progress, and a run left 'running' by a dead process is abandoned.
func TestOneRunPerSCB(t *testing.T) {
	e := newEnv(t, "SCB-1")
	conn := e.d.Conn(t)
	var ok bool
	if err := conn.QueryRow(e.ctx, `SELECT pg_try_advisory_lock(hashtextextended('dualledger.reconcile:SCB-1', 0))`).Scan(&ok); err != nil || !ok {
		t.Fatal(ok, err)
	}
	_, err := reconcile.Reconcile(e.ctx, e.pool, e.clients["SCB-1"], reconcile.Options{Actor: "cli:test", SCBID: "SCB-1"})
	if ledger.CodeOf(err) != ledger.CodeReconciliationInProgress {
		t.Fatalf("second run: %v", err)
	}
	// The holder is named (any login may take the lock; one that is not a run must be ended).
	var pid int
	if err := conn.QueryRow(e.ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("held by pid %d (role ", pid)) {
		t.Errorf("second run: %v, want the holder's pid %d", err, pid)
	}
	e.exec(`INSERT INTO reconciliation_runs (scb_id, full_read, actor) VALUES ('SCB-1', false, 'cli:dead')`)
	if _, err := conn.Exec(e.ctx, `SELECT pg_advisory_unlock(hashtextextended('dualledger.reconcile:SCB-1', 0))`); err != nil {
		t.Fatal(err)
	}
	run := e.reconcile(reconcile.Options{})
	runs, err := reconcile.LastRuns(e.ctx, e.pool, "SCB-1", 10)
	if err != nil || len(runs) != 2 || runs[0].ID != run.ID || runs[1].Status != "abandoned" {
		t.Fatalf("runs: %+v %v", runs, err)
	}
}

// TestScheduleRunsDueSCBs: the schedule (as dualledger_worker) reconciles each SCB whose last good
// run is older than Every, skips one without a client, and does not run again while it is fresh.
func TestScheduleRunsDueSCBs(t *testing.T) {
	e := newEnv(t, "SCB-1", "SCB-2")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	s := &reconcile.Schedule{Pool: e.d.PoolAs(t, "dualledger_worker"), Every: time.Hour, Actor: "system:test",
		Clients: func(id string) (reconcile.SCB, bool) {
			if id == "SCB-2" {
				return nil, false
			}
			return e.clients[id], true
		}}
	runs := s.RunDue(e.ctx)
	if len(runs) != 1 || runs[0].SCBID != "SCB-1" || runs[0].Status != "ok" || runs[0].Actor != "system:test" {
		t.Fatalf("first: %+v", runs)
	}
	if runs := s.RunDue(e.ctx); len(runs) != 0 {
		t.Fatalf("again while fresh: %+v", runs)
	}
	s.Every = time.Millisecond
	time.Sleep(5 * time.Millisecond)
	if runs := s.RunDue(e.ctx); len(runs) != 1 {
		t.Fatalf("after Every: %+v", runs)
	}
}

// TestScheduleMakesFullRunsWhenDue: a scheduled run is a full one when the SCB's last good full
// run is older than FullEvery (or there is none), even if an incremental run is not yet due; with
// FullEvery 0 it never is.
func TestScheduleMakesFullRunsWhenDue(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	s := &reconcile.Schedule{Pool: e.d.PoolAs(t, "dualledger_worker"), Every: time.Hour, FullEvery: time.Hour, Actor: "system:test",
		Clients: func(id string) (reconcile.SCB, bool) { return e.clients[id], true }}
	step := func(what string, every, fullEvery time.Duration, want ...bool) {
		t.Helper()
		s.Every, s.FullEvery = every, fullEvery
		time.Sleep(5 * time.Millisecond)
		runs := s.RunDue(e.ctx)
		var got []bool
		for _, r := range runs {
			if r.Status != "ok" {
				t.Fatalf("%s: run %+v", what, r)
			}
			got = append(got, r.Full)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: runs full=%v, want %v", what, got, want)
		}
	}
	step("first, no full run yet", time.Hour, time.Hour, true)
	step("both fresh", time.Hour, time.Hour)
	step("incremental due, full fresh", time.Millisecond, time.Hour, false)
	step("full due, incremental fresh", time.Hour, time.Millisecond, true)
	step("full runs off", time.Millisecond, 0, false)
	step("full runs off, incremental fresh", time.Hour, 0)

	// A full run that fails does not keep the SCB from its incremental runs: the next full
	// attempt waits Every after it.
	time.Sleep(300 * time.Millisecond)
	good := s.Clients
	s.Clients = func(id string) (reconcile.SCB, bool) { return downSCB{e.clients[id]}, true }
	step("a full attempt that fails", time.Hour, time.Millisecond)
	var lastFull bool
	if err := e.pool.QueryRow(e.ctx, `SELECT full_read FROM reconciliation_runs WHERE status = 'failed' ORDER BY id DESC LIMIT 1`).Scan(&lastFull); err != nil || !lastFull {
		t.Fatalf("the failed run: full_read %v, %v", lastFull, err)
	}
	s.Clients = good
	step("incremental due, full failed within Every", 200*time.Millisecond, time.Millisecond, false)
	time.Sleep(250 * time.Millisecond)
	step("Every after the failed full attempt", 200*time.Millisecond, time.Millisecond, true)
}

// TestScheduleDoesNotRepeatARunAnotherProcessFinished: two schedules (two worker processes) see the
// same SCB due; the one that gets its lock second finds it reconciled and runs nothing.
func TestScheduleDoesNotRepeatARunAnotherProcessFinished(t *testing.T) {
	e := newEnv(t, "SCB-1")
	e.post("SCB-1", "a", "1.00")
	e.deliver(3)
	pool := e.d.PoolAs(t, "dualledger_worker")
	b := &reconcile.Schedule{Pool: pool, Every: time.Hour, FullEvery: 7 * 24 * time.Hour, Actor: "system:test-b",
		Clients: func(id string) (reconcile.SCB, bool) { return e.clients[id], true }}
	var bRuns []reconcile.Run
	a := &reconcile.Schedule{Pool: pool, Every: time.Hour, FullEvery: 7 * 24 * time.Hour, Actor: "system:test-a",
		Clients: func(id string) (reconcile.SCB, bool) {
			// A has listed SCB-1 as due; B reconciles it before A takes the lock.
			if bRuns == nil {
				bRuns = b.RunDue(e.ctx)
			}
			return e.clients[id], true
		}}
	aRuns := a.RunDue(e.ctx)
	if len(bRuns) != 1 || !bRuns[0].Full || len(aRuns) != 0 {
		t.Fatalf("B ran %+v, A ran %+v; want one full run by B and none by A", bRuns, aRuns)
	}
	runs, err := reconcile.LastRuns(e.ctx, e.pool, "SCB-1", 10)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs recorded: %+v %v, want 1", runs, err)
	}
}

// downSCB answers every list request with an error, as an SCB in an outage.
type downSCB struct{ reconcile.SCB }

func (downSCB) List(context.Context, string, int) (scb.Page, error) {
	return scb.Page{}, errors.New("503 from the SCB (outage)")
}

// TestFailedRunChangesNothing: a run whose SCB is down is recorded failed with its error; it
// clears nothing and its cursor is not used by the next run.
func TestFailedRunChangesNothing(t *testing.T) {
	e := faultyLedger(t)
	good := e.reconcile(reconcile.Options{})
	e.tamper("SCB-1", sim.Tamper{Action: "alter", LedgerID: "MASTER", ReferenceID: "r2", Amount: strp("10.00")})
	run, err := reconcile.Reconcile(e.ctx, e.pool, downSCB{e.clients["SCB-1"]}, reconcile.Options{Actor: "cli:test", SCBID: "SCB-1"})
	if err == nil || run.Status != "failed" || run.Error == nil || !strings.Contains(*run.Error, "outage") {
		t.Fatalf("run against a down SCB: %+v %v", run, err)
	}
	if live := e.discrepancies(reconcile.Filter{}); len(live) != 7 {
		t.Errorf("the failed run cleared something: %d live", len(live))
	}
	next := e.reconcile(reconcile.Options{})
	if next.CursorFrom == nil || good.CursorTo == nil || *next.CursorFrom != *good.CursorTo || next.Cleared != 1 {
		t.Errorf("the run after the failed one: %+v (cursor from %v, the good run's %v)", next, next.CursorFrom, good.CursorTo)
	}
}
