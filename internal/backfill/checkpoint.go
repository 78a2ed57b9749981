package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// Statuses of a run (the seed's).
const (
	StatusInProgress = "IN_PROGRESS"
	StatusCompleted  = "COMPLETED"
	StatusFailed     = "FAILED"
	StatusPaused     = "PAUSED"
)

// Source types.
const (
	TypeCSV      = "csv"
	TypeDatabase = "database"
	TypeAPI      = "api"
	TypeSCB      = "scb"
)

// SourceTypes lists the source types.
var SourceTypes = []string{TypeCSV, TypeDatabase, TypeAPI, TypeSCB}

// Checkpoint is a source's row in ledger_backfill_checkpoints.
type Checkpoint struct {
	SourceID               string          `json:"source_id"`
	SourceType             string          `json:"source_type"`
	LedgerID               string          `json:"ledger_id"`
	Status                 string          `json:"status"`
	LastProcessedID        *string         `json:"last_processed_id"`
	LastProcessedTimestamp *time.Time      `json:"last_processed_timestamp"`
	TotalProcessed         int64           `json:"total_processed"`
	TotalSuccessful        int64           `json:"total_successful"`
	TotalFailed            int64           `json:"total_failed"`
	TotalSkipped           int64           `json:"total_skipped"`
	Batches                int64           `json:"batches"`
	Runs                   int             `json:"runs"`
	ErrorMessage           *string         `json:"error_message"`
	ErrorsFile             *string         `json:"errors_file"`
	ErrorsOffset           int64           `json:"errors_offset"`
	Metadata               json.RawMessage `json:"metadata"`
	StartedAt              time.Time       `json:"started_at"`
	LastCheckpointAt       time.Time       `json:"last_checkpoint_at"`
	CompletedAt            *time.Time      `json:"completed_at"`
	RollbackStatus         *string         `json:"rollback_status"`
	RollbackReason         *string         `json:"rollback_reason"`
	RollbackStartedAt      *time.Time      `json:"rollback_started_at"`
	RollbackCompletedAt    *time.Time      `json:"rollback_completed_at"`
	TotalReversed          int64           `json:"total_reversed"`
	// Live says whether a process holds the source's lock now (a run or rollback is going).
	Live bool `json:"live"`
}

const checkpointColumns = `source_id, source_type, ledger_id, status, last_processed_id, last_processed_timestamp,
	total_processed, total_successful, total_failed, total_skipped, batches, runs, error_message, errors_file,
	errors_offset, metadata, started_at, last_checkpoint_at, completed_at, rollback_status, rollback_reason,
	rollback_started_at, rollback_completed_at, total_reversed`

func scanCheckpoint(row pgx.Row, extra ...any) (Checkpoint, error) {
	var c Checkpoint
	var meta []byte
	dest := append([]any{&c.SourceID, &c.SourceType, &c.LedgerID, &c.Status, &c.LastProcessedID, &c.LastProcessedTimestamp,
		&c.TotalProcessed, &c.TotalSuccessful, &c.TotalFailed, &c.TotalSkipped, &c.Batches, &c.Runs, &c.ErrorMessage, &c.ErrorsFile,
		&c.ErrorsOffset, &meta, &c.StartedAt, &c.LastCheckpointAt, &c.CompletedAt, &c.RollbackStatus, &c.RollbackReason,
		&c.RollbackStartedAt, &c.RollbackCompletedAt, &c.TotalReversed}, extra...)
	err := row.Scan(dest...)
	c.Metadata = meta
	c.StartedAt = c.StartedAt.UTC()
	c.LastCheckpointAt = c.LastCheckpointAt.UTC()
	return c, err
}

// lockKey is the advisory lock of a source: session-level, so it goes with the connection that
// holds it, and the connection goes with the process (a run killed with -9 leaves no lock).
const lockKeySQL = `hashtextextended('dualledger.backfill/' || $1 || '/' || $2, 0)`

// ErrNotFound: no checkpoint for the source.
var ErrNotFound = errors.New("no backfill of this source")

// GetCheckpoint returns a source's checkpoint.
func GetCheckpoint(ctx context.Context, db ledger.DBTX, sourceType, sourceID string) (Checkpoint, error) {
	var live bool
	c, err := scanCheckpoint(db.QueryRow(ctx, `SELECT `+checkpointColumns+`, `+liveSQL+` FROM ledger_backfill_checkpoints
		WHERE source_type = $1 AND source_id = $2`, sourceType, sourceID), &live)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, fmt.Errorf("%w %s/%s", ErrNotFound, sourceType, sourceID)
	}
	c.Live = live
	return c, err
}

// ReportOwner returns the source (type/id) whose checkpoint names path as its error report, other
// than sourceType/sourceID ("" when none). Two sources never share a report: each cuts its own
// uncommitted tail on resume. The file is compared, not the name: a symbolic or hard link to
// another source's report is that report.
func ReportOwner(ctx context.Context, db ledger.DBTX, path, sourceType, sourceID string) (string, error) {
	rows, err := db.Query(ctx, `SELECT source_type || '/' || source_id, errors_file FROM ledger_backfill_checkpoints
		WHERE errors_file IS NOT NULL AND (source_type, source_id) <> ($1, $2) ORDER BY 1`, sourceType, sourceID)
	if err != nil {
		return "", fmt.Errorf("look up the error reports of the sources: %w", err)
	}
	type owned struct{ source, file string }
	var reports []owned
	var r owned
	if _, err := pgx.ForEachRow(rows, []any{&r.source, &r.file}, func() error { reports = append(reports, r); return nil }); err != nil {
		return "", fmt.Errorf("look up the error reports of the sources: %w", err)
	}
	st, statErr := os.Stat(path)
	for _, r := range reports {
		if r.file == path {
			return r.source, nil
		}
		if statErr != nil {
			continue // a file that does not exist yet is no other source's
		}
		if other, err := os.Stat(r.file); err == nil && os.SameFile(st, other) {
			return r.source, nil
		}
	}
	return "", nil
}

// liveSQL tells whether some session holds the row's lock: pg_locks shows a bigint advisory key
// as its high and low 32 bits.
const liveSQL = `EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('dualledger.backfill/' || source_type || '/' || source_id, 0))`

// ListCheckpoints returns every source's checkpoint, newest first.
func ListCheckpoints(ctx context.Context, db ledger.DBTX) ([]Checkpoint, error) {
	rows, err := db.Query(ctx, `SELECT `+checkpointColumns+`, `+liveSQL+` FROM ledger_backfill_checkpoints ORDER BY started_at DESC, source_type, source_id`)
	if err != nil {
		return nil, fmt.Errorf("read the checkpoints: %w", err)
	}
	defer rows.Close()
	out := []Checkpoint{}
	for rows.Next() {
		var live bool
		c, err := scanCheckpoint(rows, &live)
		if err != nil {
			return nil, fmt.Errorf("read the checkpoints: %w", err)
		}
		c.Live = live
		out = append(out, c)
	}
	return out, rows.Err()
}
