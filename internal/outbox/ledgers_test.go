package outbox

// Claims per (SCB, ledger) (docs/scale-out.md): a claim for one ledger never takes another
// ledger's row, every transition names its row by (ledger_id, id), and the worker delivers every
// ledger's rows, sharing an SCB's slots among the ledgers with due rows.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/ledger"
	"dualledger/internal/scb"
)

// addLedger creates ledger id with accounts <bank>-USD of the given banks (as newFixture does for
// MASTER).
func (f *fixture) addLedger(id string, banks ...string) {
	f.t.Helper()
	ctx := context.Background()
	if _, err := f.db.Pool.Exec(ctx, `INSERT INTO ledgers (id) VALUES ($1)`, id); err != nil {
		f.t.Fatal(err)
	}
	for _, b := range banks {
		if _, err := f.db.Pool.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
			VALUES ($1, $2 || '-USD', $2, 'USD', 'fiat', NULL)`, id, b); err != nil {
			f.t.Fatal(err)
		}
	}
}

// settleIn posts n settlements in a ledger from one bank to another (an outbox row per bank).
func (f *fixture) settleIn(ledgerID string, n int, prefix, from, to string) {
	f.t.Helper()
	var batch []ledger.EntryInput
	for i := range n {
		batch = append(batch, ledger.EntryInput{DebitAccountID: from + "-USD", CreditAccountID: to + "-USD", Amount: "125.50",
			CurrencyCode: "USD", AssetType: "fiat", TransactionType: "GSS_SETTLEMENT", ReferenceID: fmt.Sprintf("%s-%04d", prefix, i)})
	}
	res, err := ledger.PostBatch(context.Background(), f.db.Pool, ledgerID, batch, true)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range res {
		if r.Code != ledger.CodeCreated {
			f.t.Fatalf("settle in %s: %+v", ledgerID, r)
		}
	}
}

// countIn counts a ledger's outbox rows in a status.
func (f *fixture) countIn(ledgerID, status string) int {
	f.t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox WHERE ledger_id = $1 AND status = $2`,
		ledgerID, status).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestClaimPerLedger: with due rows of one SCB in two ledgers, DueLedgers names both; a claim
// (deliver or poll) for (SCB, ledger A) returns only ledger A's rows of that SCB; a transition
// that names the row with another ledger finds no row (DL009) and changes nothing; the reaper
// takes each ledger's expired leases.
func TestClaimPerLedger(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.addLedger("OTHER", "SCB-1", "SCB-2")
	f.settle(5, "m", "SCB-1", "SCB-2")
	f.settleIn("OTHER", 3, "o", "SCB-1", "SCB-2")
	ctx := context.Background()

	due, err := f.store.DueLedgers(ctx, "SCB-1")
	if want := []DueLedger{{"MASTER", true, false}, {"OTHER", true, false}}; err != nil || !slices.Equal(due, want) {
		t.Fatalf("due ledgers of SCB-1: %v %v, want %v", due, err, want)
	}
	if due, err := f.store.DueLedgers(ctx, "SCB-3"); err != nil || len(due) != 0 {
		t.Fatalf("due ledgers of an SCB without rows: %v %v", due, err)
	}

	other, err := f.store.Claim(ctx, "SCB-1", "OTHER", "w", time.Minute, 100)
	if err != nil || len(other) != 3 {
		t.Fatalf("claim (SCB-1, OTHER): %d rows, %v; want 3", len(other), err)
	}
	for _, r := range other {
		if r.LedgerID != "OTHER" || r.ScbID != "SCB-1" {
			t.Errorf("claim (SCB-1, OTHER) returned row %d of (%s, %s)", r.ID, r.ScbID, r.LedgerID)
		}
	}
	if again, err := f.store.Claim(ctx, "SCB-1", "OTHER", "w", time.Minute, 100); err != nil || len(again) != 0 {
		t.Fatalf("second claim (SCB-1, OTHER): %d rows, %v; want none (MASTER's rows are not OTHER's)", len(again), err)
	}
	if due, err := f.store.DueLedgers(ctx, "SCB-1"); err != nil || !slices.Equal(due, []DueLedger{{"MASTER", true, false}}) {
		t.Fatalf("due ledgers of SCB-1 after OTHER's claim: %v %v", due, err)
	}
	master, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 100)
	if err != nil || len(master) != 5 {
		t.Fatalf("claim (SCB-1, MASTER): %d rows, %v; want 5", len(master), err)
	}
	for _, r := range master {
		if r.LedgerID != "MASTER" || r.ScbID != "SCB-1" {
			t.Errorf("claim (SCB-1, MASTER) returned row %d of (%s, %s)", r.ID, r.ScbID, r.LedgerID)
		}
	}

	// A transition names its row by (ledger_id, id): under another ledger there is no such row.
	wrong := other[0]
	wrong.LedgerID = "MASTER"
	res := Result{NewStatus: Sent, StatusCode: 202, ScbEntryID: "e-1", ScbStatus: scb.StatusAccepted, Outcome: "accepted"}
	var pe *pgconn.PgError
	if err := f.store.Finish(ctx, wrong, "w", res); !errors.As(err, &pe) || pe.Code != "DL009" {
		t.Fatalf("finish under another ledger: %v, want DL009", err)
	}
	if n, err := f.store.Release(ctx, "w", []Row{wrong}); err != nil || n != 0 {
		t.Fatalf("release under another ledger: %d %v, want 0", n, err)
	}
	if got := f.countIn("OTHER", Processing); got != 3 {
		t.Fatalf("OTHER's rows PROCESSING: %d, want 3 (nothing changed)", got)
	}

	// Both ledgers' rows SENT: due for a poll, each ledger's poll claim takes its own rows.
	for i, r := range append(slices.Clone(other), master...) {
		res.ScbEntryID = fmt.Sprintf("e-%d", i)
		if err := f.store.Finish(ctx, r, "w", res); err != nil {
			t.Fatal(err)
		}
	}
	due, err = f.store.DueLedgers(ctx, "SCB-1")
	if want := []DueLedger{{"MASTER", false, true}, {"OTHER", false, true}}; err != nil || !slices.Equal(due, want) {
		t.Fatalf("due ledgers of SCB-1 with SENT rows: %v %v, want %v", due, err, want)
	}
	polled, err := f.store.ClaimForPoll(ctx, "SCB-1", "OTHER", time.Hour, 100)
	if err != nil || len(polled) != 3 {
		t.Fatalf("poll claim (SCB-1, OTHER): %d rows, %v; want 3", len(polled), err)
	}
	for _, r := range polled {
		if r.LedgerID != "OTHER" || r.ScbID != "SCB-1" || r.Status != Sent {
			t.Errorf("poll claim (SCB-1, OTHER) returned row %d of (%s, %s) %s", r.ID, r.ScbID, r.LedgerID, r.Status)
		}
	}
	wrong = polled[0]
	wrong.LedgerID = "MASTER"
	final := Result{Kind: "poll", NewStatus: Finalized, StatusCode: 200, ScbEntryID: polled[0].ScbEntryID, ScbStatus: scb.StatusFinal, Outcome: "final"}
	if _, err := f.store.Advance(ctx, wrong, "w", final); !errors.As(err, &pe) || pe.Code != "DL009" {
		t.Fatalf("advance under another ledger: %v, want DL009", err)
	}
	if changed, err := f.store.Advance(ctx, polled[0], "w", final); err != nil || !changed {
		t.Fatalf("advance: %v %v", changed, err)
	}

	// Expired leases in both ledgers (SCB-2's rows): the reaper takes each ledger's.
	for _, l := range []string{"MASTER", "OTHER"} {
		if rows, err := f.store.Claim(ctx, "SCB-2", l, "dead", 10*time.Millisecond, 100); err != nil || len(rows) == 0 {
			t.Fatalf("claim (SCB-2, %s): %d %v", l, len(rows), err)
		}
	}
	var reaped int64
	waitFor(t, "both ledgers' expired leases reaped", 10*time.Second, func() bool {
		n, err := f.store.ReapExpiredLeases(ctx, "reaper", 10)
		if err != nil {
			t.Fatal(err)
		}
		reaped += n
		return reaped == 8
	})
	if f.countIn("MASTER", Processing)+f.countIn("OTHER", Processing) != 0 {
		t.Fatal("rows still PROCESSING after the reap")
	}
}

// orderedSCB answers every delivery FINAL at once and records the ledger of each, in order.
type orderedSCB struct {
	mu      sync.Mutex
	ledgers []string
	delay   time.Duration
}

func (s *orderedSCB) Post(ctx context.Context, e scb.Entry) (scb.Response, error) {
	s.mu.Lock()
	s.ledgers = append(s.ledgers, e.LedgerID)
	s.mu.Unlock()
	time.Sleep(s.delay)
	return scb.Response{StatusCode: 201, SCBEntryID: "scb-" + e.LedgerID + "-" + e.ReferenceID, Status: scb.StatusFinal}, nil
}

func (s *orderedSCB) GetInLedger(ctx context.Context, ledgerID, referenceID string) (scb.Response, error) {
	return scb.Response{StatusCode: 200, SCBEntryID: "scb-" + ledgerID + "-" + referenceID, Status: scb.StatusFinal}, nil
}

func (s *orderedSCB) order() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ledgers)
}

// TestWorkerDeliversEveryLedger: one SCB's due rows in two ledgers are all delivered, each once,
// by a worker whose slots are fewer than either ledger's backlog; and the ledger with a large
// backlog (posted first, so older) does not starve the other: the small ledger's rows are among
// the first deliveries, because each round shares the SCB's free slots between the ledgers.
func TestWorkerDeliversEveryLedger(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.addLedger("BUSY", "SCB-1", "SCB-2")
	f.addLedger("SMALL", "SCB-1", "SCB-2")
	f.settleIn("BUSY", 60, "b", "SCB-1", "SCB-2")
	f.settleIn("SMALL", 4, "s", "SCB-1", "SCB-2")
	s1, s2 := &orderedSCB{delay: 2 * time.Millisecond}, &orderedSCB{}
	cfg := testConfig("w-ledgers")
	cfg.Concurrency = 2
	f.startWorker(cfg, newResolver(map[string]SCB{"SCB-1": s1, "SCB-2": s2}).resolve)

	waitFor(t, "every row of both ledgers FINALIZED", 30*time.Second, func() bool {
		return f.countIn("BUSY", Finalized) == 120 && f.countIn("SMALL", Finalized) == 8
	})
	order := s1.order()
	if len(order) != 64 {
		t.Fatalf("SCB-1 got %d deliveries, want 64 (one per row)", len(order))
	}
	// With 2 slots and both ledgers due, each round shares them: SMALL's 4 rows are delivered
	// among the first few (about the first 8), not after BUSY's 60 older ones.
	last := 0
	for i, l := range order {
		if l == "SMALL" {
			last = i
		}
	}
	if last >= 16 {
		t.Errorf("SMALL's last delivery was number %d of %d (order %v): the busy ledger starved it", last+1, len(order), order)
	}
	var twice int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT outbox_id FROM dual_ledger_outbox_attempts
		WHERE kind = 'deliver' GROUP BY ledger_id, outbox_id HAVING count(*) > 1) x`).Scan(&twice); err != nil || twice != 0 {
		t.Fatalf("rows delivered twice: %d %v", twice, err)
	}
}
