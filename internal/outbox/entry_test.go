package outbox

import (
	"context"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"
)

// finalize moves a row QUEUED -> PROCESSING -> FINALIZED by the legal transitions, as the worker
// would (the owner's connection, so that the test needs no SCB).
func finalize(t *testing.T, conn *pgx.Conn, id int64) {
	t.Helper()
	ctx := context.Background()
	for _, sql := range []string{
		`UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'w', lease_expires_at = now() + interval '1 minute', attempts = attempts + 1 WHERE id = $1`,
		`UPDATE dual_ledger_outbox SET status = 'FINALIZED', locked_by = NULL, lease_expires_at = NULL, finalized_at = now(),
			scb_entry_id = 'scb-' || id, scb_status = 'FINAL' WHERE id = $1`,
	} {
		if _, err := conn.Exec(ctx, sql, id); err != nil {
			t.Fatalf("row %d: %v", id, err)
		}
	}
}

// TestRowsOfEntryOnePerSCBInOrder: an entry between two registered banks has one row per SCB,
// ordered by SCB id; the next attempt time shows only while a row is QUEUED; an entry that does
// not exist has no rows; and the entry is settled exactly when every row is FINALIZED.
func TestRowsOfEntryOnePerSCBInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-2", "SCB-1")
	refs := f.settle(2, "ent", "SCB-2", "SCB-1")
	ctx := context.Background()

	rows, err := RowsOfEntry(ctx, f.db.Pool, "MASTER", refs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].ScbID != "SCB-1" || rows[1].ScbID != "SCB-2" {
		t.Fatalf("rows of %s: %+v, want SCB-1 then SCB-2", refs[0], rows)
	}
	for _, r := range rows {
		if r.Status != Queued || r.Attempts != 0 || r.NextAttemptAt == nil || r.FinalizedAt != nil || r.ScbEntryID != nil {
			t.Errorf("fresh row %+v: want QUEUED, no attempt, a next attempt time, not finalized", r)
		}
	}
	if AllFinalized(rows) {
		t.Error("QUEUED rows reported settled")
	}

	conn := f.db.Conn(t)
	finalize(t, conn, rows[0].ID)
	rows, err = RowsOfEntry(ctx, f.db.Pool, "MASTER", refs[0])
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Status != Finalized || rows[0].NextAttemptAt != nil || rows[0].FinalizedAt == nil ||
		rows[0].ScbEntryID == nil || *rows[0].ScbEntryID == "" || rows[0].Attempts != 1 {
		t.Errorf("finalized row %+v: want FINALIZED with its time, the SCB's id, one attempt and no next attempt", rows[0])
	}
	if AllFinalized(rows) {
		t.Error("settled with one row of two FINALIZED")
	}
	finalize(t, conn, rows[1].ID)
	if rows, err = RowsOfEntry(ctx, f.db.Pool, "MASTER", refs[0]); err != nil || !AllFinalized(rows) {
		t.Errorf("both rows FINALIZED: settled = %v, err %v (%+v)", AllFinalized(rows), err, rows)
	}

	// The other entry's rows are untouched, and an unknown reference has none.
	if other, err := RowsOfEntry(ctx, f.db.Pool, "MASTER", refs[1]); err != nil || len(other) != 2 || AllFinalized(other) {
		t.Errorf("rows of %s: %+v, %v", refs[1], other, err)
	}
	if none, err := RowsOfEntry(ctx, f.db.Pool, "MASTER", "no-such-ref"); err != nil || len(none) != 0 {
		t.Errorf("rows of an unknown reference: %+v, %v", none, err)
	}
}

// TestRowsOfEntrySeesItsOwnTransaction: the queries take a ledger.DBTX, so a caller that posts
// and reads in one transaction sees the outbox rows its posting wrote, and nobody else does
// until it commits.
func TestRowsOfEntrySeesItsOwnTransaction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	ctx := context.Background()
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT * FROM post_ledger_entry('MASTER', 'SCB-1-USD', 'SCB-2-USD', 10, 'USD', 'fiat',
		'GSS_SETTLEMENT', 'in-tx-1', NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	inside, err := RowsOfEntry(ctx, tx, "MASTER", "in-tx-1")
	if err != nil || len(inside) != 2 {
		t.Fatalf("inside the posting's transaction: %+v, %v; want 2 rows", inside, err)
	}
	pending, err := UnfinalizedReferences(ctx, tx, "MASTER", "in-tx-")
	if err != nil || !reflect.DeepEqual(pending, []string{"in-tx-1"}) {
		t.Fatalf("unfinalized inside the transaction: %v, %v", pending, err)
	}
	outside, err := RowsOfEntry(ctx, f.db.Pool, "MASTER", "in-tx-1")
	if err != nil || len(outside) != 0 {
		t.Fatalf("outside the uncommitted transaction: %+v, %v; want none", outside, err)
	}
}

// TestUnfinalizedReferencesMatchesPrefixLiterally: the references still DBIS_COMMITTED under a
// prefix, in order, once each; a reference drops out when its last row is FINALIZED; the
// prefix's LIKE metacharacters match only themselves, and other ledgers do not count.
func TestUnfinalizedReferencesMatchesPrefixLiterally(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	ctx := context.Background()
	refs := f.settle(3, "run_a", "SCB-1", "SCB-2") // run_a-0000 .. run_a-0002, two rows each
	f.settle(1, "runXa", "SCB-1", "SCB-2")         // would match "run_a" if _ were a wildcard
	f.settle(1, "run%b", "SCB-1", "SCB-2")

	got, err := UnfinalizedReferences(ctx, f.db.Pool, "MASTER", "run_a-")
	if err != nil || !reflect.DeepEqual(got, refs) {
		t.Fatalf("unfinalized run_a-: %v, %v; want %v", got, err, refs)
	}
	if got, err := UnfinalizedReferences(ctx, f.db.Pool, "MASTER", "run%"); err != nil || !reflect.DeepEqual(got, []string{"run%b-0000"}) {
		t.Errorf("unfinalized run%%: %v, %v; want only run%%b-0000", got, err)
	}
	if got, err := UnfinalizedReferences(ctx, f.db.Pool, "OTHER", "run_a-"); err != nil || len(got) != 0 {
		t.Errorf("another ledger: %v, %v; want none", got, err)
	}

	conn := f.db.Conn(t)
	rows, err := RowsOfEntry(ctx, f.db.Pool, "MASTER", refs[1])
	if err != nil {
		t.Fatal(err)
	}
	finalize(t, conn, rows[0].ID)
	if got, _ := UnfinalizedReferences(ctx, f.db.Pool, "MASTER", "run_a-"); !reflect.DeepEqual(got, refs) {
		t.Errorf("one row of %s FINALIZED: %v; want it still listed", refs[1], got)
	}
	finalize(t, conn, rows[1].ID)
	want := []string{refs[0], refs[2]}
	if got, _ := UnfinalizedReferences(ctx, f.db.Pool, "MASTER", "run_a-"); !reflect.DeepEqual(got, want) {
		t.Errorf("both rows of %s FINALIZED: %v; want %v", refs[1], got, want)
	}
}
