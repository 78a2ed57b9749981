package outbox

// The Store's SQL directly: leases, their expiry, late results, the report.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestLeaseExpiry: rows claimed by a worker that never finishes them come back to QUEUED once
// the lease expires (recorded as a 'lease_expired' attempt); the late result of the original
// worker is refused with ErrLeaseLost and changes nothing in the row.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(3, "lease", "SCB-1", "SCB-2")
	ctx := context.Background()

	claimStart := time.Now()
	// The lease is long enough that the checks below run before it expires on a loaded machine.
	claimed, err := f.store.Claim(ctx, "SCB-1", "MASTER", "dead-worker", 750*time.Millisecond, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 3 {
		t.Fatalf("claimed %d rows, want 3", len(claimed))
	}
	for _, r := range claimed {
		if r.Status != Processing || r.Attempts != 1 || r.ScbID != "SCB-1" || !strings.HasPrefix(r.Entry.Amount, "125.5") || r.Entry.BlockHash == "" {
			t.Errorf("claimed row %+v", r)
		}
	}
	// Nothing left to claim, and the lease is still good: the reaper leaves the rows alone.
	if again, err := f.store.Claim(ctx, "SCB-1", "MASTER", "other", time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("second claim: %d rows, %v; want none", len(again), err)
	}
	if n, err := f.store.ReapExpiredLeases(ctx, "reaper", 10); err != nil || n != 0 {
		t.Fatalf("reap before expiry: %d, %v", n, err)
	}

	// The lease runs on the database's clock from the claim's transaction: wait until the reaper
	// takes all three (it must take them together, they share one lease), boundedly.
	time.Sleep(time.Until(claimStart.Add(750 * time.Millisecond)))
	var n int64
	for deadline := time.Now().Add(10 * time.Second); n == 0; time.Sleep(20 * time.Millisecond) {
		if n, err = f.store.ReapExpiredLeases(ctx, "reaper", 10); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired leases were not reaped within 10s")
		}
	}
	if n != 3 {
		t.Fatalf("reap: %d; want 3", n)
	}
	before := f.rows("SCB-1")
	for _, r := range before {
		if r.Status != Queued || r.LockedBy != nil || r.LeaseExpires != nil || r.Attempts != 1 ||
			!strings.Contains(deref2(r.LastError), "lease of worker dead-worker expired") || r.NextAttemptAt.After(time.Now()) {
			t.Errorf("reaped row %d: status %s locked_by %v attempts %d last_error %q next %s",
				r.ID, r.Status, deref(r.LockedBy), r.Attempts, deref2(r.LastError), r.NextAttemptAt)
		}
		as := f.attempts(r.ID)
		if len(as) != 1 || as[0].Kind != "lease_expired" || as[0].Worker != "reaper" || as[0].Attempt != 1 {
			t.Errorf("row %d attempts %+v, want one lease_expired by the reaper", r.ID, as)
		}
	}

	// The dead worker wakes up and reports success for its first row: refused, row unchanged.
	err = f.store.Finish(ctx, claimed[0], "dead-worker", Result{Kind: "deliver", Started: time.Now(), NewStatus: Finalized,
		StatusCode: 201, ScbEntryID: "late", ScbStatus: "FINAL", Outcome: "final"})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late Finish: %v, want ErrLeaseLost", err)
	}
	if after := f.rows("SCB-1"); !reflect.DeepEqual(after, before) {
		t.Errorf("a late Finish changed the rows:\nbefore %+v\nafter  %+v", before, after)
	}

	// Another worker claims them again; the dead worker's late results still count for nothing.
	again, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w2", time.Minute, 10)
	if err != nil || len(again) != 3 || again[0].Attempts != 2 {
		t.Fatalf("reclaim: %+v %v", again, err)
	}
	if err := f.store.Finish(ctx, claimed[1], "dead-worker", Result{Kind: "deliver", Started: time.Now(), NewStatus: Queued,
		Outcome: "retry", Error: "late", Delay: time.Hour}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late Finish while another worker holds the row: %v, want ErrLeaseLost", err)
	}
	if n, err := f.store.Release(ctx, "dead-worker", []Row{claimed[2]}); err != nil || n != 0 {
		t.Fatalf("late Release by the dead worker: %d %v; want 0", n, err)
	}
	for _, r := range f.rows("SCB-1") {
		if r.Status != Processing || deref2(r.LockedBy) != "w2" {
			t.Errorf("row %d: %s by %v, want PROCESSING by w2", r.ID, r.Status, deref(r.LockedBy))
		}
	}
}

// TestReaperSpendsTheBudget: a row whose worker dies (or hangs) on every claim must not kill
// workers forever. Each expired lease counts as an attempt; once the budget is spent the reaper
// makes the row FAILED, with the reason, instead of queueing it again. A requeue gives a fresh
// budget.
func TestReaperSpendsTheBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(1, "poison", "SCB-1", "SCB-2")
	ctx := context.Background()
	const budget = 3
	die := func(worker string) {
		t.Helper()
		rows, err := f.store.Claim(ctx, "SCB-1", "MASTER", worker, 10*time.Millisecond, 1)
		if err != nil || len(rows) != 1 {
			t.Fatalf("claim by %s: %v %v", worker, rows, err)
		}
		time.Sleep(30 * time.Millisecond)
		if n, err := f.store.ReapExpiredLeases(ctx, "reaper", budget); err != nil || n != 1 {
			t.Fatalf("reap: %d %v", n, err)
		}
	}
	for i := 1; i < budget; i++ {
		die(fmt.Sprintf("w%d", i))
		if r := f.rows("SCB-1")[0]; r.Status != Queued {
			t.Fatalf("after %d deaths the row is %s, want QUEUED", i, r.Status)
		}
	}
	die("w3")
	r := f.rows("SCB-1")[0]
	if r.Status != Failed || r.Attempts != budget || !strings.Contains(deref2(r.FailureReason), "gave up after 3 attempts") ||
		!strings.Contains(deref2(r.FailureReason), "worker w3 expired") {
		t.Fatalf("after %d deaths: status %s attempts %d reason %q; want FAILED with the reason", budget, r.Status, r.Attempts, deref2(r.FailureReason))
	}
	got := kinds(f.attempts(r.ID))
	if want := []string{"lease_expired/lease_expired", "lease_expired/lease_expired", "lease_expired/exhausted"}; !reflect.DeepEqual(got, want) {
		t.Errorf("attempts %v, want %v", got, want)
	}
	// An operator requeues it: a fresh budget, so the next death queues it again.
	if n, err := f.owner.Requeue(ctx, "cli:op", r.ID, false, "", false); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	die("w4")
	if r := f.rows("SCB-1")[0]; r.Status != Queued || r.Attempts != budget+1 {
		t.Fatalf("after a requeue and one death: %s, attempts %d; want QUEUED, %d", r.Status, r.Attempts, budget+1)
	}
}

// TestLateFinishIsAudited: a delivery whose result arrives after the lease was lost did reach the
// SCB, so it belongs in the attempts log (the issue: "records every attempt"). Finish means to
// record it with outcome "lease_lost", but inserts it in the transaction it then rolls back by
// returning ErrLeaseLost from the pgx.BeginFunc callback, so the record is lost.
func TestLateFinishIsAudited(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(1, "audit", "SCB-1", "SCB-2")
	ctx := context.Background()
	claimed, err := f.store.Claim(ctx, "SCB-1", "MASTER", "slow-worker", 20*time.Millisecond, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatal(claimed, err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := f.store.ReapExpiredLeases(ctx, "reaper", 10); err != nil || n != 1 {
		t.Fatalf("reap: %d %v", n, err)
	}
	err = f.store.Finish(ctx, claimed[0], "slow-worker", Result{Kind: "deliver", Started: time.Now(), NewStatus: Sent,
		StatusCode: 201, ScbStatus: "ACCEPTED", Outcome: "accepted"})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late Finish: %v, want ErrLeaseLost", err)
	}
	got := kinds(f.attempts(claimed[0].ID))
	if !reflect.DeepEqual(got, []string{"lease_expired/lease_expired", "deliver/lease_lost"}) {
		t.Errorf("attempts %v: the late delivery (201 from the SCB) is not in the audit log, want a deliver/lease_lost record", got)
	}
	if r := f.rows("SCB-1")[0]; r.Status != Queued {
		t.Errorf("row %s after a late Finish, want QUEUED", r.Status)
	}
}

// TestLateFinishOfEarlierClaimBySameWorker: the lease guard of Finish/Release is "PROCESSING and
// locked_by = worker". When a worker's lease on a row expires (a delivery that outlived the lease)
// and the same worker claims the row again, the stale result of the first delivery is applied to
// the second claim: the row leaves PROCESSING while the second delivery is still in flight, so a
// third claim can deliver it concurrently with the second. A claim must be identified by more
// than the worker id (e.g. Finish and Release also require attempts = row.Attempts).
func TestLateFinishOfEarlierClaimBySameWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(1, "same", "SCB-1", "SCB-2")
	ctx := context.Background()
	first, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w1", 20*time.Millisecond, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %v %v", first, err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := f.store.ReapExpiredLeases(ctx, "w1", 10); err != nil || n != 1 {
		t.Fatalf("reap: %d %v", n, err)
	}
	second, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w1", time.Minute, 1)
	if err != nil || len(second) != 1 || second[0].Attempts != 2 {
		t.Fatalf("reclaim: %v %v", second, err)
	}
	// The first delivery (attempt 1) now reports a retryable failure.
	err = f.store.Finish(ctx, first[0], "w1", Result{Kind: "deliver", Started: time.Now(), NewStatus: Queued, StatusCode: 503,
		Outcome: "retry", Error: "503 from attempt 1", Delay: 0})
	r := f.rows("SCB-1")[0]
	if !errors.Is(err, ErrLeaseLost) || r.Status != Processing {
		t.Errorf("stale Finish of attempt 1 while attempt 2 holds the row: err %v, row now %s (last_error %q); "+
			"want ErrLeaseLost and the row still PROCESSING under attempt 2", err, r.Status, deref2(r.LastError))
	}
}

// TestIllegalTransitionsRefused: the database refuses every status change outside docs/state-machine.md,
// whoever sends it: here the owner, who has the privilege to UPDATE the table (the trigger
// refuses with DL110), and the worker's role, which has none (42501) and moves rows only through
// the outbox functions.
func TestIllegalTransitionsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(1, "sm", "SCB-1", "SCB-2")
	ctx := context.Background()
	var id int64
	if err := f.db.Pool.QueryRow(ctx, `SELECT id FROM dual_ledger_outbox WHERE scb_id = 'SCB-1'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	refused := func(sql string) {
		t.Helper()
		_, err := f.db.Pool.Exec(ctx, sql, id)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "DL110" {
			t.Errorf("%s: %v, want DL110", sql, err)
		}
		_, err = f.store.db.Exec(ctx, sql, id)
		if !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as the worker's role: %v, want 42501 (no UPDATE privilege)", sql, err)
		}
	}
	for _, to := range []string{Sent, Acked, Finalized} {
		refused(`UPDATE dual_ledger_outbox SET status = '` + to + `' WHERE id = $1`) // QUEUED -> ...
	}
	refused(`UPDATE dual_ledger_outbox SET status = 'FAILED', failure_reason = 'x' WHERE id = $1`)
	if _, err := f.db.Pool.Exec(ctx, `UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'w', lease_expires_at = now() + interval '1 minute', attempts = 1 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, `UPDATE dual_ledger_outbox SET status = 'FINALIZED', locked_by = NULL, lease_expires_at = NULL,
		scb_entry_id = 'SCB-1-1', scb_status = 'FINAL' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{Queued, Processing, Sent, Acked} {
		refused(`UPDATE dual_ledger_outbox SET status = '` + to + `' WHERE id = $1`)
	}
}

// TestStatusReport: `outbox status` numbers on a known fixture.
func TestStatusReport(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(4, "rep", "SCB-1", "SCB-2") // 4 entries, 8 rows
	ctx := context.Background()
	conn := f.db.Conn(t)
	ids := map[string]map[string]int64{} // ref -> scb -> id
	for _, r := range f.rows("") {
		if ids[r.Ref] == nil {
			ids[r.Ref] = map[string]int64{}
		}
		ids[r.Ref][r.ScbID] = r.ID
	}
	// Legal transitions only, as the worker would make them.
	to := func(id int64, path ...string) {
		t.Helper()
		for _, st := range path {
			var sql string
			switch st {
			case Processing:
				sql = `UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'w', lease_expires_at = now() + interval '1 minute', attempts = attempts + 1 WHERE id = $1`
			case Failed:
				sql = `UPDATE dual_ledger_outbox SET status = 'FAILED', locked_by = NULL, lease_expires_at = NULL, failure_reason = 'x', failed_at = now() WHERE id = $1`
			case Finalized:
				sql = `UPDATE dual_ledger_outbox SET status = 'FINALIZED', locked_by = NULL, lease_expires_at = NULL, finalized_at = created_at + interval '2 seconds',
					scb_entry_id = 'scb-' || id, scb_status = 'FINAL' WHERE id = $1`
			default:
				sql = `UPDATE dual_ledger_outbox SET status = '` + st + `', locked_by = NULL, lease_expires_at = NULL, next_poll_at = now() WHERE id = $1`
			}
			if _, err := conn.Exec(ctx, sql, id); err != nil {
				t.Fatalf("row %d -> %s: %v", id, st, err)
			}
		}
	}
	// rep-0000: both FINALIZED (SETTLED). rep-0001: SCB-1 FINALIZED, SCB-2 SENT. rep-0002: SCB-1
	// FAILED, SCB-2 ACKED. rep-0003: SCB-1 PROCESSING, SCB-2 QUEUED.
	to(ids["rep-0000"]["SCB-1"], Processing, Finalized)
	to(ids["rep-0000"]["SCB-2"], Processing, Finalized)
	to(ids["rep-0001"]["SCB-1"], Processing, Finalized)
	to(ids["rep-0001"]["SCB-2"], Processing, Sent)
	to(ids["rep-0002"]["SCB-1"], Processing, Failed)
	to(ids["rep-0002"]["SCB-2"], Processing, Acked)
	to(ids["rep-0003"]["SCB-1"], Processing)
	if _, err := conn.Exec(ctx, `UPDATE dual_ledger_outbox SET next_attempt_at = now() WHERE id = $1`, ids["rep-0003"]["SCB-2"]); err != nil {
		t.Fatal(err)
	}

	rep, err := f.store.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.DBISCommitted != 3 || rep.Settled != 1 {
		t.Errorf("DBIS_COMMITTED %d, SETTLED %d; want 3 and 1", rep.DBISCommitted, rep.Settled)
	}
	want := map[string]map[string]int64{
		"SCB-1": {Queued: 0, Processing: 1, Sent: 0, Acked: 0, Finalized: 2, Failed: 1},
		"SCB-2": {Queued: 1, Processing: 0, Sent: 1, Acked: 1, Finalized: 1, Failed: 0},
	}
	if len(rep.Scbs) != 2 || rep.Scbs[0].ScbID != "SCB-1" || rep.Scbs[1].ScbID != "SCB-2" {
		t.Fatalf("report SCBs %+v", rep.Scbs)
	}
	for _, s := range rep.Scbs {
		if !reflect.DeepEqual(s.ByStatus, want[s.ScbID]) {
			t.Errorf("%s by status %v, want %v", s.ScbID, s.ByStatus, want[s.ScbID])
		}
		if s.Finalized1h != want[s.ScbID][Finalized] || math.Abs(s.AvgDeliverySec-2) > 0.01 {
			t.Errorf("%s: %d finalized in the last hour, avg delivery %.3fs; want %d and 2s", s.ScbID, s.Finalized1h, s.AvgDeliverySec, want[s.ScbID][Finalized])
		}
		if s.OldestUnfinalized <= 0 {
			t.Errorf("%s: oldest unfinalized age %v", s.ScbID, s.OldestUnfinalized)
		}
	}
	if rep.Scbs[0].OldestQueuedAgeSec != 0 || rep.Scbs[1].OldestQueuedAgeSec <= 0 {
		t.Errorf("oldest queued age: SCB-1 %v (none queued), SCB-2 %v", rep.Scbs[0].OldestQueuedAgeSec, rep.Scbs[1].OldestQueuedAgeSec)
	}
	wantTotal := map[string]int64{Queued: 1, Processing: 1, Sent: 1, Acked: 1, Finalized: 3, Failed: 1}
	if !reflect.DeepEqual(rep.Total.ByStatus, wantTotal) || rep.Total.Finalized1h != 3 || math.Abs(rep.Total.AvgDeliverySec-2) > 0.01 {
		t.Errorf("total %+v, want by status %v, 3 finalized, avg 2s", rep.Total, wantTotal)
	}
	if rep.SyncLagSeconds <= 0 || rep.SyncLagSeconds != rep.Total.OldestUnfinalized {
		t.Errorf("sync lag %v, oldest unfinalized %v", rep.SyncLagSeconds, rep.Total.OldestUnfinalized)
	}

	failed, err := f.store.List(ctx, ListFilter{Status: Failed, Limit: 10})
	if err != nil || len(failed) != 1 || failed[0].ID != ids["rep-0002"]["SCB-1"] || deref2(failed[0].FailureReason) != "x" {
		t.Errorf("list FAILED: %+v %v", failed, err)
	}
	all, err := f.store.List(ctx, ListFilter{ScbID: "SCB-2", Limit: 100})
	if err != nil || len(all) != 4 {
		t.Errorf("list SCB-2: %d rows, %v", len(all), err)
	}
}

// TestAdvanceNeverGoesBack: a poll answer older than the row's status (a stale or reordered
// answer) changes nothing, and FINALIZED is final.
func TestAdvanceNeverGoesBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(1, "adv", "SCB-1", "SCB-2")
	ctx := context.Background()
	rows, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 1)
	if err != nil || len(rows) != 1 {
		t.Fatal(rows, err)
	}
	if err := f.store.Finish(ctx, rows[0], "w", Result{Kind: "deliver", Started: time.Now(), NewStatus: Acked, StatusCode: 201, ScbStatus: "POSTED", Outcome: "posted"}); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{Sent, Acked, Queued, Failed} {
		if changed, err := f.store.Advance(ctx, rows[0], "w", Result{Kind: "poll", Started: time.Now(), NewStatus: st, Outcome: "x"}); err != nil || changed {
			t.Errorf("advance ACKED -> %s: changed %v, %v", st, changed, err)
		}
	}
	if changed, err := f.store.Advance(ctx, rows[0], "w", Result{Kind: "poll", Started: time.Now(), NewStatus: Finalized, ScbEntryID: "SCB-1-1", ScbStatus: "FINAL", Outcome: "final"}); err != nil || !changed {
		t.Fatalf("advance ACKED -> FINALIZED: %v %v", changed, err)
	}
	if changed, err := f.store.Advance(ctx, rows[0], "w", Result{Kind: "poll", Started: time.Now(), NewStatus: Finalized, Outcome: "final"}); err != nil || changed {
		t.Errorf("advance FINALIZED -> FINALIZED: %v %v", changed, err)
	}
	if got := kinds(f.attempts(rows[0].ID)); !reflect.DeepEqual(got, []string{"deliver/posted", "poll/final"}) {
		t.Errorf("attempts %v", got)
	}
}

// TestRequeueAllSkipsConflicts: --all-failed leaves rows that failed on 409 (the SCB holds another
// body under our key) unless asked; by id they are requeued.
func TestRequeueAllSkipsConflicts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(2, "rq", "SCB-1", "SCB-2")
	ctx := context.Background()
	claimed, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 2)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	for i, code := range []int{409, 401} {
		if err := f.store.Finish(ctx, claimed[i], "w", Result{Kind: "deliver", Started: time.Now(), NewStatus: Failed,
			StatusCode: code, Outcome: "permanent", Error: fmt.Sprintf("%d from SCB-1", code)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := f.owner.Requeue(ctx, "cli:op", 0, true, "", false); err != nil || n != 1 {
		t.Fatalf("requeue all: %d %v, want only the 401 row", n, err)
	}
	if n, err := f.owner.Requeue(ctx, "cli:op", 0, true, "", true); err != nil || n != 1 {
		t.Fatalf("requeue all including conflicts: %d %v, want the 409 row", n, err)
	}
	if got := f.count(Queued, "SCB-1"); got != 2 {
		t.Fatalf("%d rows QUEUED, want 2", got)
	}
}
