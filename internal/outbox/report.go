package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ScbStatus is the outbox of one SCB at a glance (`dualledger outbox status`, the seeds'
// monitor-outbox: docs/design.md §10.2).
type ScbStatus struct {
	ScbID              string           `json:"scb_id"`
	ByStatus           map[string]int64 `json:"by_status"`
	OldestQueuedAgeSec float64          `json:"oldest_queued_age_seconds"`      // 0 when nothing is queued
	OldestUnfinalized  float64          `json:"oldest_unfinalized_age_seconds"` // acknowledged FAILED rows left out
	// FailedAcknowledged counts the FAILED rows an operator acknowledged (outbox acknowledge):
	// given up on knowingly, counted in ByStatus["FAILED"] as well, not in the sync lag.
	FailedAcknowledged int64   `json:"failed_acknowledged"`
	AvgDeliverySec     float64 `json:"avg_delivery_seconds"` // created -> FINALIZED, rows finalized in the last hour
	Finalized1h        int64   `json:"finalized_last_hour"`
}

// Report is the whole outbox.
type Report struct {
	At             time.Time   `json:"at"`
	Scbs           []ScbStatus `json:"scbs"`
	Total          ScbStatus   `json:"total"`
	DBISCommitted  int64       `json:"dbis_committed_entries"` // entries with an outbox row not FINALIZED
	Settled        int64       `json:"settled_entries"`        // entries whose rows are all FINALIZED
	SyncLagSeconds float64     `json:"sync_lag_seconds"`       // age of the oldest row not FINALIZED nor acknowledged
}

// Status reads the report (every row: a full scan of the outbox; Pending is the cheap part).
func (s *Store) Status(ctx context.Context) (Report, error) {
	rep, err := s.report(ctx, `
		SELECT scb_id, status, count(*),
		       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'QUEUED')), 0)::float8,
		       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status <> 'FINALIZED' AND acknowledged_at IS NULL)), 0)::float8,
		       coalesce(extract(epoch FROM avg(finalized_at - created_at) FILTER (WHERE finalized_at > now() - interval '1 hour')), 0)::float8,
		       count(*) FILTER (WHERE finalized_at > now() - interval '1 hour'),
		       count(*) FILTER (WHERE acknowledged_at IS NOT NULL)
		  FROM dual_ledger_outbox GROUP BY scb_id, status ORDER BY scb_id, status`)
	if err != nil {
		return rep, err
	}
	err = s.db.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE NOT settled), count(*) FILTER (WHERE settled)
		  FROM (SELECT bool_and(status = 'FINALIZED') AS settled FROM dual_ledger_outbox GROUP BY ledger_id, reference_id) e`).
		Scan(&rep.DBISCommitted, &rep.Settled)
	if err != nil {
		return rep, fmt.Errorf("outbox status: %w", err)
	}
	return rep, nil
}

// Pending is the part of the report that stays cheap however large the outbox grows: rows not
// FINALIZED by SCB and status (through the partial index on unfinalized rows), their ages, and the
// entries still DBIS_COMMITTED. The metrics collector reads it on every scrape.
func (s *Store) Pending(ctx context.Context) (Report, error) {
	rep, err := s.report(ctx, `
		SELECT scb_id, status, count(*),
		       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'QUEUED')), 0)::float8,
		       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE acknowledged_at IS NULL)), 0)::float8,
		       0::float8, 0::bigint, count(*) FILTER (WHERE acknowledged_at IS NOT NULL)
		  FROM dual_ledger_outbox WHERE status <> 'FINALIZED'
		 GROUP BY scb_id, status ORDER BY scb_id, status`)
	if err != nil {
		return rep, err
	}
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM (SELECT DISTINCT ledger_id, reference_id
		FROM dual_ledger_outbox WHERE status <> 'FINALIZED') e`).Scan(&rep.DBISCommitted); err != nil {
		return rep, fmt.Errorf("outbox pending: %w", err)
	}
	return rep, nil
}

// report runs a per-(SCB, status) query (count, oldest queued age, oldest unfinalized age,
// average delivery time, rows finalized in the last hour and rows acknowledged) and sums it per
// SCB and in total.
func (s *Store) report(ctx context.Context, sql string) (Report, error) {
	rep := Report{At: time.Now().UTC(), Total: ScbStatus{ScbID: "all", ByStatus: map[string]int64{}}}
	rows, err := s.db.Query(ctx, sql)
	if err != nil {
		return rep, fmt.Errorf("outbox status: %w", err)
	}
	byScb := map[string]*ScbStatus{}
	var order []string
	var weighted float64
	for rows.Next() {
		var (
			scb, status                string
			n, fin, acked              int64
			queuedAge, unfinAge, avgDl float64
		)
		if err := rows.Scan(&scb, &status, &n, &queuedAge, &unfinAge, &avgDl, &fin, &acked); err != nil {
			rows.Close()
			return rep, fmt.Errorf("outbox status: %w", err)
		}
		st, ok := byScb[scb]
		if !ok {
			st = &ScbStatus{ScbID: scb, ByStatus: map[string]int64{}}
			byScb[scb] = st
			order = append(order, scb)
		}
		st.ByStatus[status] = n
		rep.Total.ByStatus[status] += n
		st.FailedAcknowledged += acked
		rep.Total.FailedAcknowledged += acked
		st.OldestQueuedAgeSec = max(st.OldestQueuedAgeSec, queuedAge)
		st.OldestUnfinalized = max(st.OldestUnfinalized, unfinAge)
		if fin > 0 {
			st.AvgDeliverySec = (st.AvgDeliverySec*float64(st.Finalized1h) + avgDl*float64(fin)) / float64(st.Finalized1h+fin)
			st.Finalized1h += fin
			weighted += avgDl * float64(fin)
			rep.Total.Finalized1h += fin
		}
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("outbox status: %w", err)
	}
	fill := func(m map[string]int64) {
		for _, s := range Statuses {
			if _, ok := m[s]; !ok {
				m[s] = 0
			}
		}
	}
	for _, id := range order {
		st := byScb[id]
		fill(st.ByStatus)
		rep.Scbs = append(rep.Scbs, *st)
		rep.Total.OldestQueuedAgeSec = max(rep.Total.OldestQueuedAgeSec, st.OldestQueuedAgeSec)
		rep.Total.OldestUnfinalized = max(rep.Total.OldestUnfinalized, st.OldestUnfinalized)
	}
	fill(rep.Total.ByStatus)
	if rep.Total.Finalized1h > 0 {
		rep.Total.AvgDeliverySec = weighted / float64(rep.Total.Finalized1h)
	}
	rep.SyncLagSeconds = rep.Total.OldestUnfinalized
	return rep, nil
}

// ListedRow is a row for `outbox list`.
type ListedRow struct {
	ID            int64     `json:"id"`
	LedgerID      string    `json:"ledger_id"`
	ReferenceID   string    `json:"reference_id"`
	EntrySeq      int64     `json:"entry_seq"`
	ScbID         string    `json:"scb_id"`
	Status        string    `json:"status"`
	Attempts      int       `json:"attempts"`
	RequeueCount  int       `json:"requeue_count"`
	LastStatus    *int      `json:"last_status_code"`
	LastError     *string   `json:"last_error"`
	FailureReason *string   `json:"failure_reason"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
	// NextAttemptIn is next_attempt_at minus the database's now() in seconds (negative: overdue),
	// so that a client with a skewed clock still tells a row in backoff from a due one. It
	// matters for QUEUED rows only.
	NextAttemptIn float64 `json:"next_attempt_in_seconds"`
	// NextPollIn is, for a SENT or ACKED row, next_poll_at minus the database's now() in seconds
	// (negative: due): when the worker next asks the SCB whether it is FINAL (nil otherwise).
	NextPollAt    *time.Time `json:"next_poll_at"`
	NextPollIn    *float64   `json:"next_poll_in_seconds"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	LockedBy      *string    `json:"locked_by"`
	// The acknowledgement of a FAILED row (outbox acknowledge), or nil.
	AcknowledgedAt     *time.Time `json:"acknowledged_at"`
	AcknowledgedBy     *string    `json:"acknowledged_by"`
	AcknowledgedReason *string    `json:"acknowledged_reason"`
}

// ListFilter selects outbox rows; an empty field selects any.
type ListFilter struct {
	Status   string
	ScbID    string
	LedgerID string
	Limit    int
}

// List returns up to f.Limit rows that match f, newest attempt first for FAILED, oldest first
// otherwise.
func (s *Store) List(ctx context.Context, f ListFilter) ([]ListedRow, error) {
	rows, err := s.db.Query(ctx, `
		SELECT id, ledger_id, reference_id, entry_seq, scb_id, status, attempts, requeue_count, last_status_code,
		       last_error, failure_reason, next_attempt_at, extract(epoch FROM next_attempt_at - now())::float8,
		       CASE WHEN status IN ('SENT', 'ACKED') THEN next_poll_at END,
		       CASE WHEN status IN ('SENT', 'ACKED') THEN extract(epoch FROM next_poll_at - now())::float8 END,
		       last_attempt_at, created_at, locked_by, acknowledged_at, acknowledged_by, acknowledged_reason
		  FROM dual_ledger_outbox
		 WHERE ($1 = '' OR status = $1) AND ($2 = '' OR scb_id = $2) AND ($3 = '' OR ledger_id = $3)
		 ORDER BY CASE WHEN $1 = 'FAILED' THEN last_attempt_at END DESC NULLS LAST, id
		 LIMIT $4`, f.Status, f.ScbID, f.LedgerID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ListedRow, error) {
		var x ListedRow
		err := r.Scan(&x.ID, &x.LedgerID, &x.ReferenceID, &x.EntrySeq, &x.ScbID, &x.Status, &x.Attempts, &x.RequeueCount,
			&x.LastStatus, &x.LastError, &x.FailureReason, &x.NextAttemptAt, &x.NextAttemptIn, &x.NextPollAt, &x.NextPollIn, &x.LastAttemptAt, &x.CreatedAt, &x.LockedBy,
			&x.AcknowledgedAt, &x.AcknowledgedBy, &x.AcknowledgedReason)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	return out, nil
}
