// Package outbox delivers the dual-ledger outbox (DESIGN 4): every committed posting that touches
// an account of a registered member bank has one row per SCB in dual_ledger_outbox, written in the
// posting's transaction; the worker claims due rows with FOR UPDATE SKIP LOCKED and a lease,
// delivers them to the SCB's API with an idempotency key, records every attempt, retries with
// exponential backoff and full jitter, and polls SENT/ACKED rows until the SCB says FINAL.
// The state machine itself is enforced by the database (migration 003); this package only asks
// for legal transitions, each guarded by the lease it holds.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
)

// Statuses (DESIGN 4).
const (
	Queued     = "QUEUED"
	Processing = "PROCESSING"
	Sent       = "SENT"
	Acked      = "ACKED"
	Finalized  = "FINALIZED"
	Failed     = "FAILED"
)

// Statuses in display order.
var Statuses = []string{Queued, Processing, Sent, Acked, Finalized, Failed}

// Row is a claimed outbox row with the entry it carries.
type Row struct {
	ID           int64
	LedgerID     string
	EntrySeq     int64
	ReferenceID  string
	ScbID        string
	Attempts     int // including the current one
	AttemptsBase int
	Status       string
	CreatedAt    time.Time
	PollFailures int // consecutive failed polls (SENT/ACKED rows)
	Entry        EntryData
}

// EntryData is the committed entry an outbox row mirrors (immutable, so every delivery of a row
// sends the same body).
type EntryData struct {
	ID              int64
	DebitAccountID  string
	CreditAccountID string
	Amount          string // as the ledger shows it (ledger.FormatAmount): "125.50" USD
	CurrencyCode    string
	AssetType       string
	TransactionType string
	BlockHash       string // hex
	TimestampUTC    time.Time
}

// Store is the SQL side of the outbox.
type Store struct {
	db *pgxpool.Pool
}

// NewStore returns a store on db.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

const rowColumns = `o.id, o.ledger_id, o.entry_seq, o.reference_id, o.scb_id, o.attempts, o.attempts_base, o.status, o.created_at,
	o.poll_failures, e.id, e.debit_account_id, e.credit_account_id, trim_scale(e.amount)::text, e.currency_code, e.asset_type,
	e.transaction_type, encode(e.block_hash, 'hex'), e.timestamp_utc`

func scanRow(r pgx.CollectableRow) (Row, error) {
	var x Row
	err := r.Scan(&x.ID, &x.LedgerID, &x.EntrySeq, &x.ReferenceID, &x.ScbID, &x.Attempts, &x.AttemptsBase, &x.Status, &x.CreatedAt,
		&x.PollFailures, &x.Entry.ID, &x.Entry.DebitAccountID, &x.Entry.CreditAccountID, &x.Entry.Amount, &x.Entry.CurrencyCode,
		&x.Entry.AssetType, &x.Entry.TransactionType, &x.Entry.BlockHash, &x.Entry.TimestampUTC)
	x.Entry.TimestampUTC = x.Entry.TimestampUTC.UTC()
	x.Entry.Amount = ledger.FormatAmount(x.Entry.Amount, x.Entry.CurrencyCode)
	return x, err
}

// Claim moves up to limit due QUEUED rows of one SCB to PROCESSING under a lease held by worker,
// oldest due first. SKIP LOCKED lets any number of workers claim at once without ever claiming
// the same row twice.
func (s *Store) Claim(ctx context.Context, scbID, worker string, lease time.Duration, limit int) ([]Row, error) {
	rows, err := s.db.Query(ctx, `
		WITH due AS (
			SELECT id FROM dual_ledger_outbox
			 WHERE status = 'QUEUED' AND scb_id = $1 AND next_attempt_at <= now()
			 ORDER BY next_attempt_at, id
			 LIMIT $4
			   FOR UPDATE SKIP LOCKED),
		claimed AS (
			UPDATE dual_ledger_outbox o
			   SET status = 'PROCESSING', locked_by = $2, lease_expires_at = now() + $3::interval,
			       attempts = o.attempts + 1, last_attempt_at = now()
			  FROM due WHERE o.id = due.id
			RETURNING o.*)
		SELECT `+rowColumns+`
		  FROM claimed o JOIN ledger_entries e ON e.ledger_id = o.ledger_id AND e.seq = o.entry_seq
		 ORDER BY o.id`, scbID, worker, lease, limit)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows of %s: %w", scbID, err)
	}
	out, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows of %s: %w", scbID, err)
	}
	return out, nil
}

// Result is the outcome of one delivery or poll, to be recorded.
type Result struct {
	Kind       string    // deliver, poll, callback
	Started    time.Time // when the attempt began (only time.Since(Started) is recorded: see insertAttempt)
	NewStatus  string    // Queued (retry), Sent, Acked, Finalized, Failed; "" = unchanged (poll)
	StatusCode int       // HTTP status, 0 for network errors
	ScbEntryID string
	ScbStatus  string
	Outcome    string // short machine-readable outcome: accepted, posted, final, retry, failed, ...
	Error      string // why, for retries and failures
	// Delay is how long a row going back to QUEUED waits before its next attempt, counted on
	// the database's clock (now() + Delay) so that workers on hosts with skewed clocks agree.
	Delay time.Duration
}

// ErrLeaseLost means the row was no longer ours (our lease expired and another worker took it):
// the result was not applied, which is safe because every delivery is idempotent.
var ErrLeaseLost = errors.New("lease lost: the row was reclaimed")

// Finish records the outcome of a delivery of a row this worker holds (PROCESSING, locked_by
// worker) and the attempt, in one transaction.
func (s *Store) Finish(ctx context.Context, row Row, worker string, r Result) error {
	lost := false
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// The lease is this worker's claim number `attempts`: a result that comes back after the
		// lease expired and the row was claimed again (even by this same worker) changes nothing.
		tag, err := tx.Exec(ctx, `
			UPDATE dual_ledger_outbox
			   SET status = $3, locked_by = NULL, lease_expires_at = NULL,
			       last_status_code = nullif($4, 0), last_error = nullif($5, ''),
			       next_attempt_at = CASE WHEN $3 = 'QUEUED' THEN now() + $6::interval ELSE next_attempt_at END,
			       scb_entry_id = coalesce(nullif($7, ''), scb_entry_id),
			       scb_status = coalesce(nullif($8, ''), scb_status),
			       sent_at = CASE WHEN $3 IN ('SENT', 'ACKED', 'FINALIZED') THEN coalesce(sent_at, now()) ELSE sent_at END,
			       acked_at = CASE WHEN $3 IN ('ACKED', 'FINALIZED') THEN coalesce(acked_at, now()) ELSE acked_at END,
			       finalized_at = CASE WHEN $3 = 'FINALIZED' THEN now() ELSE finalized_at END,
			       failed_at = CASE WHEN $3 = 'FAILED' THEN now() ELSE failed_at END,
			       failure_reason = CASE WHEN $3 = 'FAILED' THEN $5 ELSE failure_reason END,
			       next_poll_at = CASE WHEN $3 IN ('SENT', 'ACKED') THEN now() ELSE next_poll_at END
			 WHERE id = $1 AND status = 'PROCESSING' AND locked_by = $2 AND attempts = $9`,
			row.ID, worker, r.NewStatus, r.StatusCode, r.Error, r.Delay, r.ScbEntryID, r.ScbStatus, row.Attempts)
		if err != nil {
			return fmt.Errorf("finish outbox row %d: %w", row.ID, err)
		}
		outcome := r.Outcome
		if tag.RowsAffected() == 0 {
			lost = true
			outcome = "lease_lost"
		}
		// The attempt is recorded either way: a lost lease is part of the row's history.
		return insertAttempt(ctx, tx, row.ID, row.Attempts, worker, r.Kind, sinceOrZero(r.Started), r.StatusCode, outcome, r.Error)
	})
	if err != nil {
		return err
	}
	if lost {
		return ErrLeaseLost
	}
	return nil
}

// insertAttempt records an attempt that took `took` (measured by the caller on its monotonic
// clock) and ends now. Both timestamps are the database's (started_at = now() - took), so an
// attempt's duration never mixes a worker's clock with the database's.
func insertAttempt(ctx context.Context, tx pgx.Tx, id int64, attempt int, worker, kind string, took time.Duration, code int, outcome, errText string) error {
	_, err := tx.Exec(ctx, `INSERT INTO dual_ledger_outbox_attempts
		(outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, error)
		VALUES ($1, $2, $3, $4, now() - $5::interval, nullif($6, 0), $7, nullif($8, ''))`,
		id, attempt, worker, kind, max(took, 0), code, outcome, errText)
	if err != nil {
		return fmt.Errorf("record attempt of outbox row %d: %w", id, err)
	}
	return nil
}

// sinceOrZero is how long ago t was (0 for the zero time).
func sinceOrZero(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}

// Release returns rows this worker holds (claim numbers as in rows) to QUEUED, due now, and
// records the interrupted attempt (graceful shutdown).
func (s *Store) Release(ctx context.Context, worker string, rows []Row) (int64, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(rows))
	attempts := make([]int32, len(rows))
	for i, r := range rows {
		ids[i], attempts[i] = r.ID, int32(r.Attempts)
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		res, err := tx.Query(ctx, `UPDATE dual_ledger_outbox o
			   SET status = 'QUEUED', locked_by = NULL, lease_expires_at = NULL, next_attempt_at = now(),
			       last_error = 'released by worker ' || $1 || ' on shutdown'
			  FROM unnest($2::bigint[], $3::int[]) AS h(id, attempts)
			 WHERE o.id = h.id AND o.attempts = h.attempts AND o.status = 'PROCESSING' AND o.locked_by = $1
			RETURNING o.id, o.attempts, now() - coalesce(o.last_attempt_at, now())`, worker, ids, attempts)
		if err != nil {
			return err
		}
		type rel struct {
			id       int64
			attempts int
			took     time.Duration
		}
		list, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (rel, error) {
			var x rel
			return x, r.Scan(&x.id, &x.attempts, &x.took)
		})
		if err != nil {
			return err
		}
		for _, x := range list {
			if err := insertAttempt(ctx, tx, x.id, x.attempts, worker, "deliver", x.took, 0, "released",
				"interrupted by the worker's shutdown; returned to QUEUED"); err != nil {
				return err
			}
		}
		n = int64(len(list))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release outbox rows: %w", err)
	}
	return n, nil
}

// ReapExpiredLeases returns PROCESSING rows whose lease expired (their worker died or hung) to
// QUEUED, due now, and records it. Any worker may do it for all. A row whose attempt budget
// (maxAttempts claims since it was last requeued) is spent becomes FAILED instead: a row that
// kills or hangs every worker that takes it must not do so forever.
func (s *Store) ReapExpiredLeases(ctx context.Context, worker string, maxAttempts int) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH expired AS (
				SELECT id, locked_by, attempts, attempts - attempts_base AS budget, attempts - attempts_base >= $1::int AS spent FROM dual_ledger_outbox
				 WHERE status = 'PROCESSING' AND lease_expires_at < now()
				   FOR UPDATE SKIP LOCKED),
			reaped AS (
				SELECT id, locked_by, attempts, spent,
				       CASE WHEN spent
				            THEN 'gave up after ' || budget || ' attempts; last: the lease of worker ' || locked_by
				                 || ' expired (the worker died or hung while delivering)'
				            ELSE 'lease of worker ' || locked_by || ' expired; returned to QUEUED' END AS why
				  FROM expired)
			UPDATE dual_ledger_outbox o
			   SET status = CASE WHEN reaped.spent THEN 'FAILED' ELSE 'QUEUED' END,
			       locked_by = NULL, lease_expires_at = NULL, next_attempt_at = now(),
			       last_error = reaped.why,
			       failed_at = CASE WHEN reaped.spent THEN now() ELSE o.failed_at END,
			       failure_reason = CASE WHEN reaped.spent THEN reaped.why ELSE o.failure_reason END
			  FROM reaped WHERE o.id = reaped.id
			RETURNING o.id, o.attempts, reaped.spent, reaped.why`, maxAttempts)
		if err != nil {
			return err
		}
		type reaped struct {
			id       int64
			attempts int
			spent    bool
			why      string
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (reaped, error) {
			var x reaped
			return x, r.Scan(&x.id, &x.attempts, &x.spent, &x.why)
		})
		if err != nil {
			return err
		}
		for _, x := range list {
			outcome := "lease_expired"
			if x.spent {
				outcome = "exhausted"
			}
			if err := insertAttempt(ctx, tx, x.id, x.attempts, worker, "lease_expired", 0, 0, outcome, x.why); err != nil {
				return err
			}
		}
		n = int64(len(list))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("reap expired leases: %w", err)
	}
	return n, nil
}

// ClaimForPoll picks up to limit SENT/ACKED rows of one SCB whose next poll is due, and moves
// their next poll to now+every (so that concurrent workers poll different rows, and each row at
// most every `every`).
func (s *Store) ClaimForPoll(ctx context.Context, scbID string, every time.Duration, limit int) ([]Row, error) {
	rows, err := s.db.Query(ctx, `
		WITH due AS (
			SELECT id FROM dual_ledger_outbox
			 WHERE status IN ('SENT', 'ACKED') AND scb_id = $1 AND next_poll_at <= now()
			 ORDER BY next_poll_at, id
			 LIMIT $3
			   FOR UPDATE SKIP LOCKED),
		polled AS (
			UPDATE dual_ledger_outbox o SET last_polled_at = now(), next_poll_at = now() + $2::interval
			  FROM due WHERE o.id = due.id
			RETURNING o.*)
		SELECT `+rowColumns+`
		  FROM polled o JOIN ledger_entries e ON e.ledger_id = o.ledger_id AND e.seq = o.entry_seq
		 ORDER BY o.id`, scbID, every, limit)
	if err != nil {
		return nil, fmt.Errorf("claim rows of %s to poll: %w", scbID, err)
	}
	out, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return nil, fmt.Errorf("claim rows of %s to poll: %w", scbID, err)
	}
	return out, nil
}

// Advance moves a SENT/ACKED row forward after a poll or a callback (SENT -> ACKED | FINALIZED,
// ACKED -> FINALIZED). It reports whether the row changed; an older or equal status is a no-op.
func (s *Store) Advance(ctx context.Context, row Row, worker string, r Result) (bool, error) {
	changed := false
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE dual_ledger_outbox
			   SET status = $2,
			       scb_entry_id = coalesce(nullif($3, ''), scb_entry_id),
			       scb_status = coalesce(nullif($4, ''), scb_status),
			       acked_at = coalesce(acked_at, now()),
			       finalized_at = CASE WHEN $2 = 'FINALIZED' THEN now() ELSE finalized_at END,
			       poll_failures = 0
			 WHERE id = $1 AND (status = 'SENT' AND $2 IN ('ACKED', 'FINALIZED') OR status = 'ACKED' AND $2 = 'FINALIZED')`,
			row.ID, r.NewStatus, r.ScbEntryID, r.ScbStatus)
		if err != nil {
			return fmt.Errorf("advance outbox row %d: %w", row.ID, err)
		}
		changed = tag.RowsAffected() == 1
		if !changed {
			return nil
		}
		return insertAttempt(ctx, tx, row.ID, row.Attempts, worker, r.Kind, sinceOrZero(r.Started), r.StatusCode, r.Outcome, r.Error)
	})
	return changed, err
}

// RecordPollError notes a failed poll on the row (the row stays SENT/ACKED) and when to ask
// again: r.Delay from now on the database's clock (the caller's backoff, at least the SCB's
// Retry-After).
func (s *Store) RecordPollError(ctx context.Context, row Row, worker string, r Result) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE dual_ledger_outbox
			   SET last_error = $2, last_status_code = nullif($3, 0), poll_failures = poll_failures + 1,
			       next_poll_at = greatest(next_poll_at, now() + $4::interval)
			 WHERE id = $1 AND status IN ('SENT', 'ACKED')`, row.ID, r.Error, r.StatusCode, r.Delay); err != nil {
			return fmt.Errorf("record poll error of outbox row %d: %w", row.ID, err)
		}
		return insertAttempt(ctx, tx, row.ID, row.Attempts, worker, "poll", sinceOrZero(r.Started), r.StatusCode, r.Outcome, r.Error)
	})
}

// PollSucceeded resets the row's poll backoff after an answer that changed nothing.
func (s *Store) PollSucceeded(ctx context.Context, row Row) error {
	if row.PollFailures == 0 {
		return nil
	}
	_, err := s.db.Exec(ctx, `UPDATE dual_ledger_outbox SET poll_failures = 0 WHERE id = $1 AND status IN ('SENT', 'ACKED')`, row.ID)
	if err != nil {
		return fmt.Errorf("reset poll backoff of outbox row %d: %w", row.ID, err)
	}
	return nil
}

// ScbsWithWork lists the SCBs that have rows to deliver or poll. It asks per bank (a handful)
// with EXISTS on the partial indexes that lead with scb_id, instead of a DISTINCT over every
// unfinished row, which would cost in proportion to the backlog on every worker loop.
func (s *Store) ScbsWithWork(ctx context.Context) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT b.id FROM banks b
		 WHERE EXISTS (SELECT 1 FROM dual_ledger_outbox o WHERE o.scb_id = b.id AND o.status = 'QUEUED')
		    OR EXISTS (SELECT 1 FROM dual_ledger_outbox o WHERE o.scb_id = b.id AND o.status IN ('SENT', 'ACKED'))
		 ORDER BY b.id`)
	if err != nil {
		return nil, fmt.Errorf("list SCBs with work: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list SCBs with work: %w", err)
	}
	return ids, nil
}

// CountFailedConflicts counts FAILED rows that failed on 409 ("" = every SCB).
func (s *Store) CountFailedConflicts(ctx context.Context, scbID string) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox
		WHERE status = 'FAILED' AND last_status_code = 409 AND ($1 = '' OR scb_id = $1)`, scbID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count conflicts: %w", err)
	}
	return n, nil
}

// Requeue moves FAILED rows back to QUEUED (operator action) with a fresh attempt budget, and
// records it. Select by id, or all FAILED rows (optionally of one SCB). With allFailed, rows that
// failed on a 409 (the SCB holds another body under our idempotency key) are left alone unless
// includeConflicts: requeueing them cannot help, they need an investigation
// (docs/runbooks/stuck-outbox.md); by id they are requeued.
func (s *Store) Requeue(ctx context.Context, operator string, id int64, allFailed bool, scbID string, includeConflicts bool) (int64, error) {
	if id == 0 && !allFailed {
		return 0, errors.New("requeue needs an id or all failed rows")
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE dual_ledger_outbox
			   SET status = 'QUEUED', next_attempt_at = now(), attempts_base = attempts,
			       requeue_count = requeue_count + 1, failure_reason = NULL
			 WHERE status = 'FAILED'
			   AND ($1 = 0 OR id = $1)
			   AND ($2 = '' OR scb_id = $2)
			   AND ($1 <> 0 OR $3 OR last_status_code IS DISTINCT FROM 409)
			RETURNING id, attempts`, id, scbID, includeConflicts)
		if err != nil {
			return err
		}
		type rq struct {
			id       int64
			attempts int
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rq, error) {
			var x rq
			return x, r.Scan(&x.id, &x.attempts)
		})
		if err != nil {
			return err
		}
		for _, x := range list {
			if err := insertAttempt(ctx, tx, x.id, x.attempts, operator, "requeue", 0, 0, "requeued", ""); err != nil {
				return err
			}
		}
		n = int64(len(list))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	return n, nil
}
