package outbox

// The outbox as other packages read it: the settlement service shows each SCB's view of an
// entry, and the demo waits for its postings to settle. They run these queries rather than SQL of
// their own so that every query on dual_ledger_outbox lives in this package, beside the state
// machine that gives its columns their meaning. Each takes a ledger.DBTX, so a caller can read
// inside the transaction that posted the entry.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// EntryRow is one outbox row of an entry: one SCB's side of mirroring that entry.
type EntryRow struct {
	ID             int64
	ScbID          string
	Status         string // QUEUED, PROCESSING, SENT, ACKED, FINALIZED, FAILED
	Attempts       int
	LastError      *string
	ScbEntryID     *string    // the SCB's id of the entry, once it accepted it
	NextAttemptAt  *time.Time // only while QUEUED: other rows are not waiting for a delivery
	CreatedAt      time.Time
	FinalizedAt    *time.Time
	LastAttemptAt  *time.Time
	LastStatusCode *int // HTTP status of the last delivery attempt
	// A FAILED row an operator acknowledged, or a correction's waived delivery: who and why.
	AcknowledgedBy     *string
	AcknowledgedReason *string
}

// RowsOfEntry returns the outbox rows of the entry referenceID on ledgerID, one per SCB, ordered
// by SCB id; none when the entry touches no registered bank (or does not exist).
func RowsOfEntry(ctx context.Context, db ledger.DBTX, ledgerID, referenceID string) ([]EntryRow, error) {
	rows, err := db.Query(ctx, `
		SELECT id, scb_id, status, attempts, last_error, scb_entry_id,
		       CASE WHEN status = 'QUEUED' THEN next_attempt_at END,
		       created_at, finalized_at, last_attempt_at, last_status_code, acknowledged_by, acknowledged_reason
		  FROM dual_ledger_outbox
		 WHERE ledger_id = $1 AND reference_id = $2
		 ORDER BY scb_id`, ledgerID, referenceID)
	if err != nil {
		return nil, fmt.Errorf("outbox rows of %s/%s: %w", ledgerID, referenceID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EntryRow, error) {
		var x EntryRow
		err := r.Scan(&x.ID, &x.ScbID, &x.Status, &x.Attempts, &x.LastError, &x.ScbEntryID, &x.NextAttemptAt,
			&x.CreatedAt, &x.FinalizedAt, &x.LastAttemptAt, &x.LastStatusCode, &x.AcknowledgedBy, &x.AcknowledgedReason)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("outbox rows of %s/%s: %w", ledgerID, referenceID, err)
	}
	return out, nil
}

// AllFinalized reports whether every row is FINALIZED: an entry whose rows all are is SETTLED,
// otherwise it is still DBIS_COMMITTED (docs/state-machine.md). An entry without rows (it touches
// no registered bank) has nothing left to mirror, so it is settled too.
func AllFinalized(rows []EntryRow) bool {
	for _, r := range rows {
		if r.Status != Finalized {
			return false
		}
	}
	return true
}

// UnfinalizedReferences returns the distinct reference ids on ledgerID that start with prefix
// and still have an outbox row that is not FINALIZED, in order. The prefix is matched literally
// (LIKE's % and _ in it are escaped).
func UnfinalizedReferences(ctx context.Context, db ledger.DBTX, ledgerID, prefix string) ([]string, error) {
	pattern := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	rows, err := db.Query(ctx, `
		SELECT DISTINCT reference_id FROM dual_ledger_outbox
		 WHERE ledger_id = $1 AND reference_id LIKE $2 AND status <> 'FINALIZED'
		 ORDER BY 1`, ledgerID, pattern)
	if err != nil {
		return nil, fmt.Errorf("unfinalized outbox references on %s: %w", ledgerID, err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("unfinalized outbox references on %s: %w", ledgerID, err)
	}
	return refs, nil
}
