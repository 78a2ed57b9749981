package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/backfill/transform"
)

// VerifyReport is the seed's §6 for one source: source rows against posted, skipped and
// rejected; source references missing from the ledger; balances of the touched accounts
// against their entries; outbox coverage of entries that concern a member bank.
type VerifyReport struct {
	Checkpoint Checkpoint `json:"checkpoint"`
	// SourceRows is how many rows of the source were read again (the checkpoint's
	// total_processed: the rows the run got to).
	SourceRows int64 `json:"source_rows"`
	// InLedger: rows whose reference is in the ledger (created or skipped duplicates).
	InLedger int64 `json:"in_ledger"`
	// Rejected: rows in the error report.
	Rejected int64 `json:"rejected"`
	// Missing: rows neither in the ledger nor in the report (up to 100 listed, all counted).
	MissingCount int64    `json:"missing_count"`
	Missing      []string `json:"missing,omitempty"`
	// EntriesInRanges: entries found in the run's recorded seq ranges (= total_successful).
	EntriesInRanges  int64    `json:"entries_in_ranges"`
	TouchedAccounts  int      `json:"touched_accounts"`
	BalanceProblems  []string `json:"balance_problems,omitempty"`
	OutboxRows       int64    `json:"outbox_rows"`
	OutboxMissing    []string `json:"outbox_missing,omitempty"`
	NotReversed      int64    `json:"not_reversed,omitempty"`
	Problems         []string `json:"problems,omitempty"`
	SourceHasMore    bool     `json:"source_has_more_rows,omitempty"`
	ReportUnreadable string   `json:"report_unreadable,omitempty"`
}

// OK reports whether nothing was found.
func (v VerifyReport) OK() bool { return len(v.Problems) == 0 }

// Verify checks a source's import. open and tr read the source again as the run did (the same
// --source, --mapping and --ledger).
func Verify(ctx context.Context, pool *pgxpool.Pool, sourceType, sourceID string, open Opener, tr *transform.Transformer) (VerifyReport, error) {
	var v VerifyReport
	cp, err := GetCheckpoint(ctx, pool, sourceType, sourceID)
	if err != nil {
		return v, err
	}
	v.Checkpoint = cp
	problem := func(format string, args ...any) { v.Problems = append(v.Problems, fmt.Sprintf(format, args...)) }

	// The run's ranges against the ledger and the checkpoint.
	var inRanges, recorded int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(sum(created), 0),
			coalesce(sum((SELECT count(*) FROM ledger_entries e WHERE e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq)), 0)
		FROM ledger_backfill_batches b WHERE source_type = $1 AND source_id = $2`, sourceType, sourceID).Scan(&recorded, &inRanges); err != nil {
		return v, fmt.Errorf("count the run's entries: %w", err)
	}
	v.EntriesInRanges = inRanges
	if recorded != cp.TotalSuccessful || inRanges != cp.TotalSuccessful {
		problem("the checkpoint counts %d created entries, its batches record %d, the ledger holds %d in their ranges", cp.TotalSuccessful, recorded, inRanges)
	}

	// The error report.
	rejected := map[string]bool{}
	if cp.ErrorsFile != nil {
		err := ReadReport(*cp.ErrorsFile, func(l ReportLine) error {
			if l.SourceType == sourceType && l.SourceID == sourceID {
				rejected[l.Position] = true
			}
			return nil
		})
		if err != nil && !(errors.Is(err, os.ErrNotExist) && cp.TotalFailed == 0) {
			v.ReportUnreadable = err.Error()
			problem("the error report cannot be read: %v", err)
		}
	}
	v.Rejected = int64(len(rejected))
	if v.ReportUnreadable == "" && v.Rejected != cp.TotalFailed {
		problem("the error report holds %d rejected rows, the checkpoint counts %d", v.Rejected, cp.TotalFailed)
	}

	// The source again: each row the run got to is in the ledger or in the report.
	if open != nil {
		if err := v.readSource(ctx, pool, open, tr, rejected, problem); err != nil {
			return v, err
		}
	}

	// Balances of the touched accounts, and outbox coverage.
	rows, err := pool.Query(ctx, `SELECT DISTINCT e.ledger_id, x.account_id
		FROM ledger_backfill_batches b
		JOIN ledger_entries e ON e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq
		CROSS JOIN LATERAL (VALUES (e.debit_account_id), (e.credit_account_id)) AS x(account_id)
		WHERE b.source_type = $1 AND b.source_id = $2 ORDER BY 1, 2`, sourceType, sourceID)
	if err != nil {
		return v, fmt.Errorf("read the touched accounts: %w", err)
	}
	touched := map[string][]string{}
	var l, a string
	if _, err := pgx.ForEachRow(rows, []any{&l, &a}, func() error { touched[l] = append(touched[l], a); v.TouchedAccounts++; return nil }); err != nil {
		return v, fmt.Errorf("read the touched accounts: %w", err)
	}
	for l, ids := range touched {
		p, err := AuditAccounts(ctx, pool, l, ids)
		if err != nil {
			return v, fmt.Errorf("audit the touched accounts: %w", err)
		}
		v.BalanceProblems = append(v.BalanceProblems, p...)
	}
	for _, p := range v.BalanceProblems {
		problem("balance: %s", p)
	}
	missing, err := collect(ctx, pool, `SELECT format('%s/%s (seq %s) has no outbox row for bank %s', e.ledger_id, e.reference_id, e.seq, a.bank_id)
		FROM ledger_backfill_batches b
		JOIN ledger_entries e ON e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq
		JOIN bank_accounts a ON a.ledger_id = e.ledger_id AND a.id IN (e.debit_account_id, e.credit_account_id) AND a.bank_id IS NOT NULL
		WHERE b.source_type = $1 AND b.source_id = $2
		  AND NOT EXISTS (SELECT 1 FROM dual_ledger_outbox o WHERE o.ledger_id = e.ledger_id AND o.reference_id = e.reference_id AND o.scb_id = a.bank_id)
		ORDER BY e.ledger_id, e.seq LIMIT 100`, sourceType, sourceID)
	if err != nil {
		return v, fmt.Errorf("check the outbox: %w", err)
	}
	v.OutboxMissing = missing
	if len(missing) > 0 {
		problem("%d or more entries concerning a member bank have no outbox row, first: %s", len(missing), missing[0])
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM ledger_backfill_batches b
		JOIN ledger_entries e ON e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq
		JOIN dual_ledger_outbox o ON o.ledger_id = e.ledger_id AND o.reference_id = e.reference_id
		WHERE b.source_type = $1 AND b.source_id = $2`, sourceType, sourceID).Scan(&v.OutboxRows); err != nil {
		return v, fmt.Errorf("count outbox rows: %w", err)
	}

	// A completed rollback reversed every entry.
	if cp.RollbackStatus != nil && *cp.RollbackStatus == "COMPLETED" {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM ledger_backfill_batches b
			JOIN ledger_entries e ON e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq
			WHERE b.source_type = $1 AND b.source_id = $2
			  AND e.amount <> coalesce((SELECT sum(r.amount) FROM ledger_entries r WHERE r.ledger_id = e.ledger_id AND r.reverses_entry_id = e.id), 0)`,
			sourceType, sourceID).Scan(&v.NotReversed); err != nil {
			return v, fmt.Errorf("check the reversals: %w", err)
		}
		if v.NotReversed > 0 {
			problem("the rollback COMPLETED but %d of the run's entries are not fully reversed", v.NotReversed)
		}
	}
	if cp.Status != StatusCompleted {
		problem("the run is %s, not COMPLETED", cp.Status)
	}
	return v, nil
}

func (v *VerifyReport) readSource(ctx context.Context, pool *pgxpool.Pool, open Opener, tr *transform.Transformer,
	rejected map[string]bool, problem func(string, ...any)) error {
	src, err := open(ctx, "")
	if err != nil {
		return fmt.Errorf("open the source: %w", err)
	}
	defer src.Close()
	type ref struct{ ledger, ref, pos string }
	var pend []ref
	check := func() error {
		byLedger := map[string][]ref{}
		for _, r := range pend {
			byLedger[r.ledger] = append(byLedger[r.ledger], r)
		}
		for l, rs := range byLedger {
			refs := make([]string, len(rs))
			for i, r := range rs {
				refs[i] = r.ref
			}
			found, err := collect(ctx, pool, `SELECT reference_id FROM ledger_entries WHERE ledger_id = $1 AND reference_id = ANY($2)`, l, refs)
			if err != nil {
				return fmt.Errorf("look up references: %w", err)
			}
			in := make(map[string]bool, len(found))
			for _, f := range found {
				in[f] = true
			}
			for _, r := range rs {
				if in[r.ref] {
					v.InLedger++
					continue
				}
				v.MissingCount++
				if len(v.Missing) < 100 {
					v.Missing = append(v.Missing, fmt.Sprintf("position %s: %s/%s", r.pos, l, r.ref))
				}
			}
		}
		pend = pend[:0]
		return nil
	}
	for v.SourceRows < v.Checkpoint.TotalProcessed {
		rec, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			problem("the source has %d rows, the checkpoint says %d were read: it changed since", v.SourceRows, v.Checkpoint.TotalProcessed)
			break
		}
		if err != nil {
			return fmt.Errorf("read the source: %w", err)
		}
		v.SourceRows++
		if rejected[rec.Pos] {
			continue
		}
		row, rej := tr.Transform(rec)
		if rej != nil {
			v.MissingCount++
			if len(v.Missing) < 100 {
				v.Missing = append(v.Missing, fmt.Sprintf("position %s: not in the error report, but %s: %s", rec.Pos, rej.Code, rej.Message))
			}
			continue
		}
		pend = append(pend, ref{row.LedgerID, row.Entry.ReferenceID, rec.Pos})
		if len(pend) >= 1000 {
			if err := check(); err != nil {
				return err
			}
		}
	}
	if err := check(); err != nil {
		return err
	}
	if v.Checkpoint.Status == StatusCompleted {
		if _, err := src.Next(ctx); err == nil {
			v.SourceHasMore = true
			problem("the source has more rows than the completed run read: it grew since (import the rest under a new --source-id)")
		}
	}
	if v.MissingCount > 0 {
		problem("%d source rows are neither in the ledger nor in the error report, first: %s", v.MissingCount, v.Missing[0])
	}
	return nil
}

func collect(ctx context.Context, db *pgxpool.Pool, sql string, args ...any) ([]string, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
