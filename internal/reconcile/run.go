// Package reconcile compares our ledger with each member bank's (SCB's) copy of it: every entry we
// delivered to an SCB against what the SCB lists (GET /v1/entries?since=&limit=), matched by
// (ledger, reference). What differs becomes a discrepancy, recorded once, never deleted, worked
// through OPEN -> ACKNOWLEDGED -> RESOLVED (requeue, correct or explained), and marked cleared by
// the run that no longer sees it. docs/reconciliation.md.
//
// A run reads the SCB from the cursor the last good run reached (--full: from the start) into
// reconciliation_scb_entries (the SCB's copy as last read), asks again one by one about the
// entries not FINAL there and those with a live discrepancy, then compares in SQL
// (db/functions/reconciliation.sql). Memory stays flat: one page of the SCB's list at a time.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
	"dualledger/internal/pg"
	"dualledger/internal/scb"
)

// Kinds of discrepancy.
const (
	KindMissingOnSCB   = "missing_on_scb"  // we delivered it (FINALIZED or not), the SCB does not list it
	KindMissingOnDBIS  = "missing_on_dbis" // the SCB lists an entry we never sent it
	KindAmountMismatch = "amount_mismatch"
	KindFieldMismatch  = "field_mismatch" // accounts, currency, asset or transaction type, timestamp, dbis_entry_id
	KindHashMismatch   = "hash_mismatch"  // the SCB's block_hash differs from ours: one copy was rewritten
	KindStatusMismatch = "status_mismatch"
	KindDeliveryFailed = "delivery_failed"  // our outbox row is FAILED
	KindDuplicateOnSCB = "duplicate_on_scb" // the SCB lists the entry more than once: booked twice there
)

// Kinds lists every kind, in the docs' order.
func Kinds() []string {
	return []string{KindMissingOnSCB, KindMissingOnDBIS, KindAmountMismatch, KindFieldMismatch, KindHashMismatch,
		KindStatusMismatch, KindDeliveryFailed, KindDuplicateOnSCB}
}

// SCB is what a run needs of a member bank's API (*scb.Client).
type SCB interface {
	List(ctx context.Context, since string, limit int) (scb.Page, error)
	// ReadInLedger reads one entry's copy; a status outside the contract is returned, not refused
	// (scb.Client.ReadInLedger).
	ReadInLedger(ctx context.Context, ledgerID, referenceID string) (scb.Response, error)
}

// Options of one run.
type Options struct {
	Actor    string // who runs it: cli:<user>, worker:<id>, system:<what>
	SCBID    string
	LedgerID string // compare only this ledger ("" = all); the SCB's list is read whole either way
	Full     bool   // read the SCB's list from the start (and forget what it no longer lists)
	// Grace: deliveries younger than this are not yet expected at the SCB (missing_on_scb) nor
	// FINALIZED here (status_mismatch). Default 0.
	Grace       time.Duration
	PageSize    int // entries per list request (default 1000, the SCB's maximum)
	RereadLimit int // entries asked about again one by one per run (default 1000)
	// Recheck, if set, is asked once the SCB's lock is held whether the run is still due and
	// whether it is a full one (replacing Full); not due: Reconcile returns ErrNotDue and records
	// nothing. The schedule uses it so that a run another process finished meanwhile is not
	// repeated.
	Recheck func(ctx context.Context, conn *pgx.Conn) (due, full bool, err error)
}

// ErrNotDue is returned by Reconcile when Options.Recheck says the run is no longer due.
var ErrNotDue = errors.New("reconciliation no longer due")

// Run is one run, as reconciliation_runs records it.
type Run struct {
	ID               int64      `json:"id"`
	SCBID            string     `json:"scb_id"`
	LedgerFilter     *string    `json:"ledger_filter"`
	Full             bool       `json:"full"`
	Actor            string     `json:"actor"`
	Status           string     `json:"status"`
	StartedAt        time.Time  `json:"started_at"`
	FinishedAt       *time.Time `json:"finished_at"`
	CursorFrom       *string    `json:"cursor_from"`
	CursorTo         *string    `json:"cursor_to"`
	SCBEntriesRead   int64      `json:"scb_entries_read"`
	SCBEntriesReread int64      `json:"scb_entries_reread"`
	DBISRowsCompared int64      `json:"dbis_rows_compared"`
	Found            int        `json:"found"`
	NewFound         int        `json:"new"`
	Cleared          int        `json:"cleared"`
	Error            *string    `json:"error"`
}

const runColumns = `id, scb_id, ledger_filter, full_read, actor, status, started_at, finished_at, cursor_from, cursor_to,
       scb_entries_read, scb_entries_reread, dbis_rows_compared, found, new_found, cleared, error`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.SCBID, &r.LedgerFilter, &r.Full, &r.Actor, &r.Status, &r.StartedAt, &r.FinishedAt, &r.CursorFrom,
		&r.CursorTo, &r.SCBEntriesRead, &r.SCBEntriesReread, &r.DBISRowsCompared, &r.Found, &r.NewFound, &r.Cleared, &r.Error)
	return r, err
}

// lockKey is the advisory lock of one SCB's runs (session level, held for the whole run).
const lockSQL = `SELECT pg_try_advisory_lock(hashtextextended('dualledger.reconcile:' || $1, 0))`
const unlockSQL = `SELECT pg_advisory_unlock(hashtextextended('dualledger.reconcile:' || $1, 0))`

// Reconcile runs one reconciliation of opts.SCBID against client. Only one run per SCB runs at a
// time across processes: a second one gets a *ledger.Error with code reconciliation_in_progress.
// A run that fails is recorded as failed (its cursor is not reused) and its error returned.
func Reconcile(ctx context.Context, pool *pgxpool.Pool, client SCB, opts Options) (Run, error) {
	if opts.PageSize <= 0 || opts.PageSize > 1000 {
		opts.PageSize = 1000
	}
	if opts.RereadLimit <= 0 {
		opts.RereadLimit = 1000
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return Run{}, ledger.FromDB(err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, lockSQL, opts.SCBID).Scan(&locked); err != nil {
		return Run{}, ledger.FromDB(err)
	}
	if !locked {
		// Named, because any login may take an advisory lock: a session that is not a
		// reconciliation holding it must be found and ended, or the SCB is never reconciled.
		var key int64
		holder := "unknown"
		if err := conn.QueryRow(ctx, `SELECT hashtextextended('dualledger.reconcile:' || $1, 0)`, opts.SCBID).Scan(&key); err == nil {
			if h, err := pg.AdvisoryLockHolder(ctx, conn, key); err == nil {
				holder = h
			}
		}
		return Run{}, ledger.Errorf(ledger.CodeReconciliationInProgress, "a reconciliation of %s is running (one run per SCB at a time; the lock is held by %s); try again when it ends", opts.SCBID, holder).
			WithDetails(map[string]string{"scb_id": opts.SCBID, "held_by": holder})
	}
	defer func() {
		// A failed unlock means a broken connection; the lock went with the session. Bounded: a
		// stopping process must not wait on a database it cannot reach.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(uctx, unlockSQL, opts.SCBID)
	}()
	if opts.Recheck != nil {
		due, full, err := opts.Recheck(ctx, conn.Conn())
		if err != nil {
			return Run{}, ledger.FromDB(err)
		}
		if !due {
			return Run{}, ErrNotDue
		}
		opts.Full = full
	}

	var (
		runID  int64
		cursor *string
	)
	if err := conn.QueryRow(ctx, `SELECT run_id, cursor_from FROM reconcile_begin($1, $2, $3, $4)`,
		opts.Actor, opts.SCBID, opts.LedgerID, opts.Full).Scan(&runID, &cursor); err != nil {
		return Run{}, ledger.FromDB(err)
	}
	r := &runner{conn: conn.Conn(), client: client, opts: opts, id: runID, listWait: scb.AskBudget, rereadWait: scb.AskBudget}
	if cursor != nil {
		r.cursor = *cursor
	}
	if err := r.read(ctx); err != nil {
		return r.fail(ctx, err)
	}
	if err := r.reread(ctx); err != nil {
		return r.fail(ctx, err)
	}
	run, err := scanRun(conn.QueryRow(ctx, `SELECT `+runColumns+` FROM reconcile_finish($1, $2)`, runID, opts.Grace))
	if err != nil {
		return r.fail(ctx, ledger.FromDB(err))
	}
	return run, nil
}

// runner is one run in progress, on the connection that holds the SCB's lock.
type runner struct {
	conn   *pgx.Conn
	client SCB
	opts   Options
	id     int64
	cursor string
	// what is left of the run's time to wait for a busy SCB (scb.Ask): the list is read by a
	// goroutine of its own while the rereads wait in the run's, so each has its budget
	listWait, rereadWait time.Duration
}

// read pages through the SCB's list from the cursor to its end, storing every page. The next page
// is fetched while the previous one is stored (at most two pages in memory), so the SCB's answer
// time and the database's overlap.
func (r *runner) read(ctx context.Context) error {
	type fetched struct {
		page  scb.Page
		after string
		err   error
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan fetched, 1)
	go func() {
		defer close(pages)
		cursor := r.cursor
		for {
			page, err := scb.Ask(fctx, &r.listWait, func() (scb.Page, error) { return r.client.List(fctx, cursor, r.opts.PageSize) })
			select {
			case pages <- fetched{page: page, after: cursor, err: err}:
			case <-fctx.Done():
				return
			}
			if err != nil || !page.HasMore || len(page.Entries) == 0 || page.NextSince == "" || page.NextSince == cursor {
				return
			}
			cursor = page.NextSince
		}
	}()
	for f := range pages {
		if f.err != nil {
			return fmt.Errorf("read %s's entries after %q: %w", r.opts.SCBID, f.after, f.err)
		}
		if err := r.attributable(f.page.Entries, f.after); err != nil {
			return err
		}
		if len(f.page.Entries) > 0 {
			if err := r.store(ctx, f.page.Entries, f.page.NextSince, false); err != nil {
				return err
			}
		}
		if !f.page.HasMore {
			return nil
		}
		// has_more with nothing on the page: taking it as the end would skip whatever follows.
		if len(f.page.Entries) == 0 || f.page.NextSince == "" || f.page.NextSince == f.after {
			return fmt.Errorf("%s's list does not advance: %d entries and next_since %q after %q with has_more", r.opts.SCBID,
				len(f.page.Entries), f.page.NextSince, f.after)
		}
		r.cursor = f.page.NextSince
	}
	return ctx.Err()
}

// reread asks the SCB again about the entries that may have changed since they were read.
func (r *runner) reread(ctx context.Context) error {
	rows, err := r.conn.Query(ctx, `SELECT ledger_id, reference_id FROM reconcile_reread_keys($1, $2)`, r.id, r.opts.RereadLimit)
	if err != nil {
		return ledger.FromDB(err)
	}
	type key struct{ ledger, ref string }
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (key, error) {
		var k key
		return k, row.Scan(&k.ledger, &k.ref)
	})
	if err != nil {
		return ledger.FromDB(err)
	}
	var batch []scb.EntryView
	for _, k := range keys {
		res, err := scb.Ask(ctx, &r.rereadWait, func() (scb.Response, error) { return r.client.ReadInLedger(ctx, k.ledger, k.ref) })
		switch {
		case errors.Is(err, scb.ErrNotFound):
			if _, err := r.conn.Exec(ctx, `SELECT reconcile_forget_scb($1, $2, $3)`, r.id, k.ledger, k.ref); err != nil {
				return ledger.FromDB(err)
			}
			continue
		case err != nil:
			return fmt.Errorf("ask %s about %s/%s again: %w", r.opts.SCBID, k.ledger, k.ref, err)
		case res.Entry == nil || res.Entry.LedgerID != k.ledger || res.Entry.ReferenceID != k.ref:
			return fmt.Errorf("%s answered for %s/%s with another entry", r.opts.SCBID, k.ledger, k.ref)
		}
		batch = append(batch, *res.Entry)
		if len(batch) == 500 {
			if err := r.store(ctx, batch, "", true); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		return r.store(ctx, batch, "", true)
	}
	return nil
}

// attributable refuses a list page with an entry that names no ledger or no reference: it cannot
// be matched to anything of ours, and it may be money at the SCB that we do not know of, so the
// run cannot vouch for the SCB's ledger. Before, such entries were skipped without a word.
func (r *runner) attributable(entries []scb.EntryView, after string) error {
	for i, e := range entries {
		var missing []string
		if e.LedgerID == "" {
			missing = append(missing, "ledger_id")
		}
		if e.ReferenceID == "" {
			missing = append(missing, "reference_id")
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s's list after %q: entry %d of the page (scb_entry_id %q) has no %s: every entry the SCB lists must "+
				"name the ledger and the reference we posted it under; one that does not may be money we do not know of (ask the SCB's operator)",
				r.opts.SCBID, after, i+1, e.SCBEntryID, strings.Join(missing, " and no "))
		}
	}
	return nil
}

// store records entries the SCB showed (every one names its ledger and reference: attributable).
func (r *runner) store(ctx context.Context, entries []scb.EntryView, cursor string, reread bool) error {
	body, err := json.Marshal(entries)
	if err != nil {
		return fmt.Errorf("encode %s's entries: %w", r.opts.SCBID, err)
	}
	if _, err := r.conn.Exec(ctx, `SELECT reconcile_record_scb($1, $2::jsonb, $3, $4)`, r.id, string(body), cursor, reread); err != nil {
		return ledger.FromDB(err)
	}
	return nil
}

// fail records the run as failed and returns it with err.
func (r *runner) fail(ctx context.Context, err error) (Run, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, ferr := r.conn.Exec(cctx, `SELECT reconcile_fail($1, $2)`, r.id, err.Error()); ferr != nil {
		return Run{ID: r.id, SCBID: r.opts.SCBID, Status: "failed"}, errors.Join(err, fmt.Errorf("record the failed run: %w", ledger.FromDB(ferr)))
	}
	run, gerr := scanRun(r.conn.QueryRow(cctx, `SELECT `+runColumns+` FROM reconciliation_runs WHERE id = $1`, r.id))
	if gerr != nil {
		run = Run{ID: r.id, SCBID: r.opts.SCBID, Status: "failed"}
	}
	return run, err
}

// LastRuns returns the latest runs, newest first (of one SCB when scbID is set).
func LastRuns(ctx context.Context, db ledger.DBTX, scbID string, limit int) ([]Run, error) {
	rows, err := db.Query(ctx, `SELECT `+runColumns+` FROM reconciliation_runs WHERE ($1 = '' OR scb_id = $1) ORDER BY id DESC LIMIT $2`,
		scbID, limit)
	if err != nil {
		return nil, ledger.FromDB(err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	return runs, ledger.FromDB(err)
}
