// Package outbox delivers the dual-ledger outbox (docs/design.md §4, docs/state-machine.md):
// every committed posting that touches an account of a registered member bank has one row per SCB
// in dual_ledger_outbox, written in the posting's transaction; the worker claims due rows with
// FOR UPDATE SKIP LOCKED and a lease, delivers them to the SCB's API with an idempotency key,
// records every attempt, retries with exponential backoff and full jitter, and polls SENT/ACKED
// rows until the SCB says FINAL. The state machine itself is enforced by the database (migration
// 003), and every transition is a SECURITY DEFINER function of db/functions/outbox.sql
// (outbox_claim, outbox_finish, ...): the worker's role, dualledger_worker, has no write privilege
// on any table, and the functions check the lease, record each attempt and refuse FINALIZED
// without the SCB's FINAL answer. The worker claims per (SCB, ledger) and names each row by
// (ledger_id, id), so that every call touches one ledger's rows (docs/scale-out.md). All of the outbox's SQL is in this package: other packages read the outbox
// through it (entry.go: an entry's rows for the settlement service, the references still
// DBIS_COMMITTED for the demo; report.go: status and list), never with SQL of their own. The one
// exception is the read-only consistency checks of internal/integrity's audit.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// Statuses (docs/state-machine.md).
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
	PollFailures int    // consecutive failed polls (SENT/ACKED rows)
	ScbEntryID   string // the SCB's id of the entry, once it accepted it ("" before)
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

// Store is the SQL side of the outbox. Every change of a row goes through the outbox_* functions
// of db/functions/outbox.sql (SECURITY DEFINER), each given the row's ledger: the worker's role has no write privilege on any table, and
// the functions check the lease, refuse FINALIZED without the SCB's FINAL answer and record each
// attempt in the same transaction.
type Store struct {
	db ledger.DBTX
}

// NewStore returns a store on db.
func NewStore(db ledger.DBTX) *Store { return &Store{db: db} }

// scanRow reads a row of outbox_claim / outbox_claim_for_poll, whose columns are the outbox row's
// followed by its entry's.
func scanRow(r pgx.CollectableRow) (Row, error) {
	var x Row
	var scbEntryID *string
	err := r.Scan(&x.ID, &x.LedgerID, &x.EntrySeq, &x.ReferenceID, &x.ScbID, &x.Attempts, &x.AttemptsBase, &x.Status, &x.CreatedAt,
		&x.PollFailures, &scbEntryID, &x.Entry.ID, &x.Entry.DebitAccountID, &x.Entry.CreditAccountID, &x.Entry.Amount, &x.Entry.CurrencyCode,
		&x.Entry.AssetType, &x.Entry.TransactionType, &x.Entry.BlockHash, &x.Entry.TimestampUTC)
	if scbEntryID != nil {
		x.ScbEntryID = *scbEntryID
	}
	x.Entry.TimestampUTC = x.Entry.TimestampUTC.UTC()
	x.Entry.Amount = ledger.FormatAmount(x.Entry.Amount, x.Entry.CurrencyCode)
	return x, err
}

// Claim moves up to limit due QUEUED rows of one SCB in one ledger to PROCESSING under a lease
// held by worker, oldest due first. SKIP LOCKED lets any number of workers claim at once without
// ever claiming the same row twice. Per (SCB, ledger), so that each claim touches one ledger's
// rows (docs/scale-out.md); DueLedgers says which ledgers to ask.
func (s *Store) Claim(ctx context.Context, scbID, ledgerID, worker string, lease time.Duration, limit int) ([]Row, error) {
	rows, err := s.db.Query(ctx, `SELECT * FROM outbox_claim($1, $2, $3, $4, $5)`, scbID, ledgerID, worker, lease, limit)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows of %s in ledger %s: %w", scbID, ledgerID, err)
	}
	out, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows of %s in ledger %s: %w", scbID, ledgerID, err)
	}
	return out, nil
}

// DueLedgers lists the ledgers in which an SCB has rows due now: to deliver (QUEUED,
// next_attempt_at passed) or to poll (SENT/ACKED, next_poll_at passed), in byte order of the
// ledger ids. It walks the claims' indexes (scb_id, ledger_id, due time, id) of migration 016 one
// ledger at a time (a loose index scan: each step reads the first row of the next ledger, which
// is that ledger's earliest due time), so it costs one index probe per ledger with rows waiting
// at the SCB, not one read per waiting row: a backlog of a million rows in one ledger is one
// probe. (On Citus, where a recursive query over a distributed table is not pushed down to the
// shards, this becomes a plain SELECT DISTINCT ledger_id over the due rows, which every shard
// answers from its own index: docs/scale-out.md.)
func (s *Store) DueLedgers(ctx context.Context, scbID string) ([]DueLedger, error) {
	rows, err := s.db.Query(ctx, `WITH RECURSIVE
		deliver AS (
			(SELECT o.ledger_id, o.next_attempt_at AS due FROM dual_ledger_outbox o
			  WHERE o.scb_id = $1 AND o.status = 'QUEUED' ORDER BY o.ledger_id, o.next_attempt_at LIMIT 1)
			UNION ALL
			SELECT n.ledger_id, n.due FROM deliver d CROSS JOIN LATERAL (
				SELECT o.ledger_id, o.next_attempt_at AS due FROM dual_ledger_outbox o
				 WHERE o.scb_id = $1 AND o.status = 'QUEUED' AND o.ledger_id > d.ledger_id
				 ORDER BY o.ledger_id, o.next_attempt_at LIMIT 1) n),
		poll AS (
			(SELECT o.ledger_id, o.next_poll_at AS due FROM dual_ledger_outbox o
			  WHERE o.scb_id = $1 AND o.status IN ('SENT', 'ACKED') ORDER BY o.ledger_id, o.next_poll_at LIMIT 1)
			UNION ALL
			SELECT n.ledger_id, n.due FROM poll p CROSS JOIN LATERAL (
				SELECT o.ledger_id, o.next_poll_at AS due FROM dual_ledger_outbox o
				 WHERE o.scb_id = $1 AND o.status IN ('SENT', 'ACKED') AND o.ledger_id > p.ledger_id
				 ORDER BY o.ledger_id, o.next_poll_at LIMIT 1) n)
		SELECT coalesce(d.ledger_id, p.ledger_id), d.ledger_id IS NOT NULL, p.ledger_id IS NOT NULL
		  FROM (SELECT ledger_id FROM deliver WHERE due <= now()) d
		  FULL JOIN (SELECT ledger_id FROM poll WHERE due <= now()) p ON p.ledger_id = d.ledger_id
		 ORDER BY 1`, scbID)
	if err != nil {
		return nil, fmt.Errorf("list ledgers with due rows of %s: %w", scbID, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[DueLedger])
	if err != nil {
		return nil, fmt.Errorf("list ledgers with due rows of %s: %w", scbID, err)
	}
	// In byte order, whatever the database's collation (the worker's round-robin searches it).
	slices.SortFunc(out, func(a, b DueLedger) int { return strings.Compare(a.LedgerID, b.LedgerID) })
	return out, nil
}

// DueLedger is a ledger in which an SCB has rows due (Store.DueLedgers).
type DueLedger struct {
	LedgerID string
	Deliver  bool // QUEUED rows due for delivery
	Poll     bool // SENT/ACKED rows due for a poll
}

// Result is the outcome of one delivery or poll, to be recorded.
type Result struct {
	Kind       string    // poll or callback (Advance); Finish records a delivery ("deliver") whatever it says
	Started    time.Time // when the attempt began (only time.Since(Started) is recorded, on the database's clock)
	NewStatus  string    // Queued (retry), Sent, Acked, Finalized, Failed; "" = unchanged (poll)
	StatusCode int       // HTTP status, 0 for network errors
	ScbEntryID string
	ScbStatus  string // the SCB's answer: ACCEPTED for Sent, POSTED for Acked, FINAL (with ScbEntryID) for Finalized
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
// worker, claim number row.Attempts) and the attempt, in one transaction (outbox_finish). The
// lease is this worker's claim number: a result that comes back after the lease expired and the
// row was claimed again (even by this same worker) changes nothing, is recorded as 'lease_lost'
// and returns ErrLeaseLost. The database refuses (DL111) a status the SCB's answer does not
// support: FINALIZED needs ScbStatus FINAL and the SCB's ScbEntryID.
func (s *Store) Finish(ctx context.Context, row Row, worker string, r Result) error {
	var held bool
	err := s.db.QueryRow(ctx, `SELECT outbox_finish($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		row.LedgerID, row.ID, worker, row.Attempts, r.NewStatus, r.StatusCode, r.Error, max(r.Delay, 0), r.ScbEntryID, r.ScbStatus, r.Outcome,
		sinceOrZero(r.Started)).Scan(&held)
	if err != nil {
		return fmt.Errorf("finish outbox row %d: %w", row.ID, err)
	}
	if !held {
		return ErrLeaseLost
	}
	return nil
}

// sinceOrZero is how long ago t was (0 for the zero time), measured on this process's monotonic
// clock; the functions record started_at = now() - it, so an attempt's duration never mixes a
// worker's clock with the database's.
func sinceOrZero(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return max(time.Since(t), 0)
}

// Release returns rows this worker holds (claim numbers as in rows) to QUEUED, due now, and
// records the interrupted attempts (graceful shutdown): one outbox_release per ledger, in ledger
// order. On an error it returns how many were released before it; the rest come back when their
// lease expires.
func (s *Store) Release(ctx context.Context, worker string, rows []Row) (int64, error) {
	type claims struct {
		ids      []int64
		attempts []int32
	}
	byLedger := map[string]*claims{}
	for _, r := range rows {
		c := byLedger[r.LedgerID]
		if c == nil {
			c = &claims{}
			byLedger[r.LedgerID] = c
		}
		c.ids, c.attempts = append(c.ids, r.ID), append(c.attempts, int32(r.Attempts))
	}
	var total int64
	for _, ledgerID := range slices.Sorted(maps.Keys(byLedger)) {
		c := byLedger[ledgerID]
		var n int64
		if err := s.db.QueryRow(ctx, `SELECT outbox_release($1, $2, $3, $4)`, ledgerID, worker, c.ids, c.attempts).Scan(&n); err != nil {
			return total, fmt.Errorf("release outbox rows of ledger %s: %w", ledgerID, err)
		}
		total += n
	}
	return total, nil
}

// ReapExpiredLeases returns PROCESSING rows whose lease expired (their worker died or hung) to
// QUEUED, due now, and records it. Any worker may do it for all. A row whose attempt budget
// (maxAttempts claims since it was last requeued) is spent becomes FAILED instead: a row that
// kills or hangs every worker that takes it must not do so forever. It asks which ledgers have
// expired leases (few rows, on the partial index of PROCESSING rows by lease_expires_at) and
// reaps each with outbox_reap, one ledger per call; on an error it returns how many rows were
// reaped before it (the rest are reaped on the next round).
func (s *Store) ReapExpiredLeases(ctx context.Context, worker string, maxAttempts int) (int64, error) {
	rows, err := s.db.Query(ctx, `SELECT DISTINCT ledger_id FROM dual_ledger_outbox
		WHERE status = 'PROCESSING' AND lease_expires_at < now() ORDER BY 1`)
	if err != nil {
		return 0, fmt.Errorf("reap expired leases: list ledgers: %w", err)
	}
	ledgers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("reap expired leases: list ledgers: %w", err)
	}
	var total int64
	for _, ledgerID := range ledgers {
		var n int64
		if err := s.db.QueryRow(ctx, `SELECT outbox_reap($1, $2, $3)`, ledgerID, worker, maxAttempts).Scan(&n); err != nil {
			return total, fmt.Errorf("reap expired leases of ledger %s: %w", ledgerID, err)
		}
		total += n
	}
	return total, nil
}

// ClaimForPoll picks up to limit SENT/ACKED rows of one SCB in one ledger whose next poll is due,
// and moves their next poll to now+every (so that concurrent workers poll different rows, and each
// row at most every `every`).
func (s *Store) ClaimForPoll(ctx context.Context, scbID, ledgerID string, every time.Duration, limit int) ([]Row, error) {
	rows, err := s.db.Query(ctx, `SELECT * FROM outbox_claim_for_poll($1, $2, $3, $4)`, scbID, ledgerID, every, limit)
	if err != nil {
		return nil, fmt.Errorf("claim rows of %s in ledger %s to poll: %w", scbID, ledgerID, err)
	}
	out, err := pgx.CollectRows(rows, scanRow)
	if err != nil {
		return nil, fmt.Errorf("claim rows of %s in ledger %s to poll: %w", scbID, ledgerID, err)
	}
	return out, nil
}

// Advance moves a SENT/ACKED row forward after a poll or a callback (SENT -> ACKED | FINALIZED,
// ACKED -> FINALIZED) and records the attempt. It reports whether the row changed; an older or
// equal status is a no-op. FINALIZED needs ScbStatus FINAL and the SCB's ScbEntryID, and an
// ScbEntryID other than the one the SCB gave when it accepted the entry is refused (DL111).
func (s *Store) Advance(ctx context.Context, row Row, worker string, r Result) (bool, error) {
	kind := r.Kind
	if kind == "" {
		kind = "poll"
	}
	var changed bool
	err := s.db.QueryRow(ctx, `SELECT outbox_advance($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		row.LedgerID, row.ID, worker, r.NewStatus, r.StatusCode, r.ScbEntryID, r.ScbStatus, kind, r.Outcome, sinceOrZero(r.Started)).Scan(&changed)
	if err != nil {
		return false, fmt.Errorf("advance outbox row %d: %w", row.ID, err)
	}
	return changed, nil
}

// ErrStalePoll: a failed poll's answer was not recorded, because the row was delivered again
// after the poll was claimed.
var ErrStalePoll = errors.New("the row was delivered again since this poll was claimed: its answer is not recorded")

// RecordPollError notes a failed poll on the row (the row stays SENT/ACKED) and when to ask
// again: r.Delay from now on the database's clock (the caller's backoff, at least the SCB's
// Retry-After). The attempt is recorded.
func (s *Store) RecordPollError(ctx context.Context, row Row, worker string, r Result) error {
	// A poll answers about the row as it was claimed. If the row was delivered again since (an
	// operator's redelivery: another attempt, another scb_entry_id to come), the failure is about
	// a delivery that no longer stands, and recorded it read as a false alarm against the new one
	// (an scb_entry_id "mismatch" with the entry the SCB accepted afresh).
	var attempts int
	var scbEntryID string
	if err := s.db.QueryRow(ctx, `SELECT attempts, coalesce(scb_entry_id, '') FROM dual_ledger_outbox WHERE ledger_id = $1 AND id = $2`,
		row.LedgerID, row.ID).Scan(&attempts, &scbEntryID); err != nil {
		return fmt.Errorf("read outbox row %d before recording its poll: %w", row.ID, err)
	}
	if attempts != row.Attempts || scbEntryID != row.ScbEntryID {
		return ErrStalePoll
	}
	var changed bool
	if err := s.db.QueryRow(ctx, `SELECT outbox_record_poll_error($1, $2, $3, $4, $5, $6, $7, $8)`,
		row.LedgerID, row.ID, worker, r.StatusCode, r.Error, max(r.Delay, 0), r.Outcome, sinceOrZero(r.Started)).Scan(&changed); err != nil {
		return fmt.Errorf("record poll error of outbox row %d: %w", row.ID, err)
	}
	return nil
}

// PollSucceeded resets the row's poll backoff after an answer that changed nothing, and records
// that answer when it ends a run of failed polls (nothing is written when there were none).
func (s *Store) PollSucceeded(ctx context.Context, row Row, worker string, r Result) error {
	if row.PollFailures == 0 {
		return nil
	}
	var reset bool
	if err := s.db.QueryRow(ctx, `SELECT outbox_poll_succeeded($1, $2, $3, $4, $5, $6)`,
		row.LedgerID, row.ID, worker, r.StatusCode, r.ScbStatus, sinceOrZero(r.Started)).Scan(&reset); err != nil {
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

// Acknowledge marks one FAILED row as given up on knowingly (outbox_acknowledge, which only the
// schema owner may call): it stays FAILED, leaves the FAILED alerts and the sync lag, and a bulk
// requeue leaves it alone; a requeue by its id undoes it. ledgerID "" finds the row in any
// ledger. The reason is required.
func (s *Store) Acknowledge(ctx context.Context, actor, ledgerID string, id int64, reason string) error {
	if _, err := s.db.Exec(ctx, `SELECT outbox_acknowledge($1, $2, $3, $4)`, actor, ledgerID, id, reason); err != nil {
		return fmt.Errorf("acknowledge: %w", ledger.FromDB(err))
	}
	return nil
}

// Acknowledgement returns row id (of ledgerID, or any ledger when "") with its acknowledgement if
// it is an acknowledged FAILED row, else nil: what a requeue by id is about to clear.
func (s *Store) Acknowledgement(ctx context.Context, ledgerID string, id int64) (*ListedRow, error) {
	var r ListedRow
	err := s.db.QueryRow(ctx, `SELECT id, acknowledged_at, acknowledged_by, acknowledged_reason FROM dual_ledger_outbox
		WHERE id = $1 AND ($2 = '' OR ledger_id = $2) AND status = 'FAILED' AND acknowledged_at IS NOT NULL`, id, ledgerID).
		Scan(&r.ID, &r.AcknowledgedAt, &r.AcknowledgedBy, &r.AcknowledgedReason)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the acknowledgement: %w", err)
	}
	return &r, nil
}

// CountAcknowledged counts the acknowledged FAILED rows of a ledger and an SCB ("" = every
// ledger, every SCB): the ones a bulk requeue leaves alone.
func (s *Store) CountAcknowledged(ctx context.Context, ledgerID, scbID string) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox
		WHERE status = 'FAILED' AND acknowledged_at IS NOT NULL AND ($1 = '' OR ledger_id = $1) AND ($2 = '' OR scb_id = $2)`,
		ledgerID, scbID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count acknowledged: %w", err)
	}
	return n, nil
}

// CountFailedConflicts counts the FAILED rows, not acknowledged, that failed on 409 of a ledger
// and an SCB ("" = every ledger, every SCB).
func (s *Store) CountFailedConflicts(ctx context.Context, ledgerID, scbID string) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox
		WHERE status = 'FAILED' AND last_status_code = 409 AND acknowledged_at IS NULL
		  AND ($1 = '' OR ledger_id = $1) AND ($2 = '' OR scb_id = $2)`,
		ledgerID, scbID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count conflicts: %w", err)
	}
	return n, nil
}

// RequeueRequest is an operator's requeue: which FAILED rows, who asks and why.
type RequeueRequest struct {
	Actor            string // who asks: cli:<user>, key:<api key id>, system:<what>
	LedgerID         string // only this ledger's rows ("" = every ledger); with ID, the row's ledger
	ID               int64  // one row; 0 with AllFailed
	AllFailed        bool   // every FAILED row (of ScbID if set)
	ScbID            string // with AllFailed: only this SCB's rows
	IncludeConflicts bool   // with AllFailed: also rows that failed on 409
	Reason           string // recorded in the operator log (optional)
}

// Requeue is RequeueRows without a reason.
func (s *Store) Requeue(ctx context.Context, operator string, id int64, allFailed bool, scbID string, includeConflicts bool) (int64, error) {
	return s.RequeueRows(ctx, RequeueRequest{Actor: operator, ID: id, AllFailed: allFailed, ScbID: scbID, IncludeConflicts: includeConflicts})
}

// RetryNow makes QUEUED rows that wait for their next attempt, and SENT/ACKED rows that wait for
// their next poll after failed polls, due now (outbox_retry_now): one by q.ID, or every waiting
// row (q.ScbID, q.LedgerID narrow it). AllFailed and IncludeConflicts are not used.
func (s *Store) RetryNow(ctx context.Context, q RequeueRequest) (int64, error) {
	if q.ID != 0 && q.ScbID != "" {
		return 0, errors.New("retry now: an SCB selects among all waiting rows, not with an id")
	}
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT outbox_retry_now($1, $2, $3, $4, $5)`,
		q.Actor, q.LedgerID, q.ID, q.ScbID, q.Reason).Scan(&n); err != nil {
		return 0, fmt.Errorf("retry now: %w", ledger.FromDB(err))
	}
	return n, nil
}

// RequeueRows moves FAILED rows back to QUEUED (operator action) with a fresh attempt budget,
// records an attempt 'requeue' by the actor on each and the act in the operator log, in one
// transaction (outbox_requeue, which only the schema owner may call: the CLI, not a service).
// Select by id, or all FAILED rows (optionally of one SCB). With AllFailed, rows that failed on a
// 409 (the SCB holds another body under our idempotency key) are left alone unless
// IncludeConflicts: requeueing them cannot help, they need an investigation
// (docs/runbooks/stuck-outbox.md); by id they are requeued.
func (s *Store) RequeueRows(ctx context.Context, q RequeueRequest) (int64, error) {
	if (q.ID == 0) != q.AllFailed {
		return 0, errors.New("requeue needs an id or all failed rows")
	}
	if q.ScbID != "" && !q.AllFailed {
		return 0, errors.New("requeue: an SCB selects among all failed rows, not with an id")
	}
	var n int64
	if err := s.db.QueryRow(ctx, `SELECT outbox_requeue($1, $2, $3, $4, $5, $6)`,
		q.Actor, q.LedgerID, q.ID, q.ScbID, q.IncludeConflicts, q.Reason).Scan(&n); err != nil {
		// A refusal (DL121: a waived correction) is a rule saying no, with its code, not a failure
		// of the database.
		return 0, fmt.Errorf("requeue: %w", ledger.FromDB(err))
	}
	return n, nil
}
