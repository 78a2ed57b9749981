package outbox

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAcknowledgedFailures: a FAILED row that will never be delivered (a 409: the SCB holds
// another entry under our key, settled another way) is acknowledged by the owner with a reason.
// It stays FAILED and counted, leaves the sync lag and the FAILED alerts' count, a bulk requeue
// leaves it alone, and a requeue by id sends it again and clears the acknowledgement. Before
// migration 020 such a row kept the FAILED alerts firing and the sync lag growing for ever.
func TestAcknowledgedFailures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(2, "ack", "SCB-1", "SCB-2")
	ctx := context.Background()
	claimed, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 2)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	for i, code := range []int{409, 400} {
		if err := f.store.Finish(ctx, claimed[i], "w", Result{Kind: "deliver", Started: time.Now(), NewStatus: Failed,
			StatusCode: code, Outcome: "permanent", Error: "refused by SCB-1"}); err != nil {
			t.Fatal(err)
		}
	}
	conflict, refused := claimed[0].ID, claimed[1].ID
	before, err := f.owner.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := scbOf(before, "SCB-1"); s.OldestUnfinalized <= 0 || s.FailedAcknowledged != 0 {
		t.Fatalf("SCB-1 before: %+v", s)
	}

	// Only the owner acknowledges; a reason is required; only a FAILED row, once.
	if err := f.store.Acknowledge(ctx, "cli:op", "", conflict, "INC-1"); sqlstate(err) != "42501" {
		t.Errorf("acknowledge as the worker's role: %v, want 42501", err)
	}
	for _, tc := range []struct {
		ledger, reason, want string
		id                   int64
	}{
		{"", "  ", "needs a reason", conflict},
		{"", "INC-1", "no outbox row", 999999},
		{"", "INC-1", "by its id (positive)", 0},
		{"OTHER", "INC-1", "no outbox row", conflict},
		{"", "INC-1", "only a FAILED row", scbRow(t, f, "SCB-2")},
	} {
		err := f.owner.Acknowledge(ctx, "cli:op", tc.ledger, tc.id, tc.reason)
		if sqlstate(err) != "DL009" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("acknowledge %+v: %v, want DL009 %q", tc, err, tc.want)
		}
	}
	if err := f.owner.Acknowledge(ctx, "cli:alice", "MASTER", conflict, "INC-1: reversed here, reposted as ack-0000b"); err != nil {
		t.Fatal(err)
	}
	if err := f.owner.Acknowledge(ctx, "cli:bob", "", conflict, "again"); sqlstate(err) != "DL009" || !strings.Contains(err.Error(), "already") {
		t.Errorf("acknowledged twice: %v", err)
	}
	// The database keeps the acknowledgement as it was given, and on FAILED rows only.
	if _, err := f.db.Pool.Exec(ctx, `UPDATE dual_ledger_outbox SET acknowledged_reason = 'rewritten' WHERE id = $1`, conflict); sqlstate(err) != "DL110" {
		t.Errorf("rewriting the reason: %v, want DL110", err)
	}
	if _, err := f.db.Pool.Exec(ctx, `UPDATE dual_ledger_outbox SET acknowledged_at = now(), acknowledged_by = 'cli:x',
		acknowledged_reason = 'x' WHERE id = $1`, scbRow(t, f, "SCB-2")); sqlstate(err) != "23514" {
		t.Errorf("acknowledging a QUEUED row by hand: %v, want 23514", err)
	}

	// Counted as FAILED and as acknowledged; the other FAILED row still sets SCB-1's lag.
	rep, err := f.owner.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s := scbOf(rep, "SCB-1"); s.ByStatus[Failed] != 2 || s.FailedAcknowledged != 1 || s.OldestUnfinalized <= 0 {
		t.Errorf("SCB-1 with one acknowledged: %+v", s)
	}
	if err := f.owner.Acknowledge(ctx, "cli:alice", "", refused, "INC-2: the SCB closed the account; paid out by cheque"); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(context.Context) (Report, error){"status": f.owner.Status, "pending": f.owner.Pending} {
		rep, err := read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := scbOf(rep, "SCB-1"); s.ByStatus[Failed] != 2 || s.FailedAcknowledged != 2 || s.OldestUnfinalized != 0 {
			t.Errorf("%s, SCB-1 with both acknowledged (no lag left): %+v", name, s)
		}
		if rep.Total.FailedAcknowledged != 2 || rep.SyncLagSeconds <= 0 {
			t.Errorf("%s, total (SCB-2's QUEUED rows still lag): %+v, lag %v", name, rep.Total, rep.SyncLagSeconds)
		}
	}
	c := NewCollector(f.db.Pool)
	if got := testutil.CollectAndCount(c, "dualledger_outbox_failed_acknowledged_rows"); got != 2 {
		t.Errorf("%d acknowledged-rows series, want one per SCB", got)
	}

	// A bulk requeue leaves both alone, conflicts included; by id one goes again, unacknowledged.
	if n, err := f.owner.Requeue(ctx, "cli:op", 0, true, "", true); err != nil || n != 0 {
		t.Errorf("requeue --all-failed --include-conflicts: %d %v, want 0", n, err)
	}
	if n, err := f.owner.CountAcknowledged(ctx, "", "SCB-1"); err != nil || n != 2 {
		t.Errorf("acknowledged: %d %v", n, err)
	}
	if n, err := f.owner.Requeue(ctx, "cli:op", refused, false, "", false); err != nil || n != 1 {
		t.Fatalf("requeue by id: %d %v", n, err)
	}
	var status string
	var acked bool
	if err := f.db.Pool.QueryRow(ctx, `SELECT status, acknowledged_at IS NOT NULL OR acknowledged_by IS NOT NULL OR acknowledged_reason IS NOT NULL
		FROM dual_ledger_outbox WHERE id = $1`, refused).Scan(&status, &acked); err != nil || status != Queued || acked {
		t.Errorf("requeued row: %s, acknowledged %v, %v", status, acked, err)
	}
	if got := kinds(f.attempts(refused)); strings.Join(got, " ") != "deliver/permanent acknowledge/acknowledged requeue/requeued" {
		t.Errorf("attempts of the requeued row: %v", got)
	}
	var n int
	var reasons string
	if err := f.db.Pool.QueryRow(ctx, `SELECT count(*), string_agg(actor || ': ' || reason, ' | ' ORDER BY seq) FROM operator_actions
		WHERE action = 'outbox.acknowledge'`).Scan(&n, &reasons); err != nil || n != 2 || !strings.Contains(reasons, "cli:alice: INC-1") {
		t.Errorf("operator log: %d %q %v", n, reasons, err)
	}
}

func scbOf(rep Report, scbID string) ScbStatus {
	for _, s := range rep.Scbs {
		if s.ScbID == scbID {
			return s
		}
	}
	return ScbStatus{}
}

// scbRow is the id of one of the SCB's rows.
func scbRow(t *testing.T, f *fixture, scbID string) int64 {
	t.Helper()
	var id int64
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT min(id) FROM dual_ledger_outbox WHERE scb_id = $1`, scbID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}
