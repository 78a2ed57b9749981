package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/backfill/source"
	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
)

// VerifyReport is the seed's verification for one source: source rows against posted, skipped and
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
	// Different: rows whose reference is in the ledger with other content (an entry that is not
	// the row: the source edited since, or a row that was not posted and not reported). Up to
	// 100 listed, all counted.
	DifferentCount int64    `json:"different_count"`
	Different      []string `json:"different,omitempty"`
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
	if want := recordedReportSum(cp.Metadata); v.ReportUnreadable == "" && cp.ErrorsFile != nil && want != "" {
		if err := reportSumMatches(*cp.ErrorsFile, cp.ErrorsOffset, want); err != nil {
			problem("the error report %s: %v", *cp.ErrorsFile, err)
		}
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
	ranges, err := runRanges(ctx, pool, sourceType, sourceID)
	if err != nil {
		return v, err
	}
	cov, err := outbox.CoverageOf(ctx, pool, ranges)
	if err != nil {
		return v, err
	}
	v.OutboxRows, v.OutboxMissing = cov.Rows, cov.Missing
	if len(cov.Missing) > 0 {
		problem("%d or more entries concerning a member bank have no outbox row, first: %s", len(cov.Missing), cov.Missing[0])
	}

	// A completed rollback reversed every entry; one that has not completed (FAILED, or under
	// way) has left some of them as they were, which is a finding until it completes.
	if cp.RollbackStatus != nil {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM ledger_backfill_batches b
			JOIN ledger_entries e ON e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq
			WHERE b.source_type = $1 AND b.source_id = $2
			  AND e.amount <> coalesce((SELECT sum(r.amount) FROM ledger_entries r WHERE r.ledger_id = e.ledger_id AND r.reverses_entry_id = e.id), 0)`,
			sourceType, sourceID).Scan(&v.NotReversed); err != nil {
			return v, fmt.Errorf("check the reversals: %w", err)
		}
		switch {
		case *cp.RollbackStatus == "COMPLETED" && v.NotReversed > 0:
			problem("the rollback COMPLETED but %d of the run's entries are not fully reversed", v.NotReversed)
		case *cp.RollbackStatus != "COMPLETED":
			problem("the rollback is %s: %d of the run's entries are not fully reversed; run `dualledger backfill rollback` again (docs/runbooks/failed-backfill.md)", *cp.RollbackStatus, v.NotReversed)
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
	type ref struct {
		ledger, pos string
		row         transform.Row
	}
	var pend []ref
	check := func() error {
		byLedger := map[string][]ref{}
		for _, r := range pend {
			byLedger[r.ledger] = append(byLedger[r.ledger], r)
		}
		for l, rs := range byLedger {
			entries := make([]ledger.EntryInput, len(rs))
			for i, r := range rs {
				entries[i] = r.row.Entry
			}
			body, err := json.Marshal(entries)
			if err != nil {
				return fmt.Errorf("look up references: %w", err)
			}
			rows, err := pool.Query(ctx, compareEntriesSQL, l, body)
			if err != nil {
				return fmt.Errorf("look up references: %w", err)
			}
			var (
				k    int
				id   *int64
				diff []string
			)
			_, err = pgx.ForEachRow(rows, []any{&k, &id, &diff}, func() error {
				r := rs[k-1]
				switch {
				case id == nil:
					v.MissingCount++
					if len(v.Missing) < 100 {
						v.Missing = append(v.Missing, fmt.Sprintf("position %s: %s/%s", r.pos, l, r.row.Entry.ReferenceID))
					}
				case len(diff) > 0 && !transform.OwnDelivery(r.row, *id, diff): // (an SCB's copy of our own entry: the same)
					v.DifferentCount++
					if len(v.Different) < 100 {
						v.Different = append(v.Different, fmt.Sprintf("position %s: %s/%s differs in %s", r.pos, l, r.row.Entry.ReferenceID, strings.Join(diff, ", ")))
					}
				default:
					v.InLedger++
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("compare the rows with the ledger: %w", err)
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
		pend = append(pend, ref{ledger: row.LedgerID, pos: rec.Pos, row: row})
		if len(pend) >= 1000 {
			if err := check(); err != nil {
				return err
			}
		}
	}
	if err := check(); err != nil {
		return err
	}
	// The rows the runs read must be the ones read now (the run checks the same when it resumes).
	if fp, ok := src.(source.Fingerprinter); ok && v.SourceRows == v.Checkpoint.TotalProcessed {
		var meta map[string]any
		_ = json.Unmarshal(v.Checkpoint.Metadata, &meta)
		if want, _ := meta["source_fingerprint"].(string); want != "" && want != fp.Fingerprint() {
			problem("the first %d rows of the source are not the ones the run read (a row was inserted, removed or edited since)", v.SourceRows)
		}
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
	if v.DifferentCount > 0 {
		problem("%d source rows differ from the entry of their reference in the ledger, first: %s", v.DifferentCount, v.Different[0])
	}
	return nil
}

// compareEntriesSQL finds each entry ($2, a JSON array of entries as posted) by its reference in
// ledger $1 and names the fields in which the ledger's entry differs, with the posting function's
// own comparison of a replay (dl_entry_diff): a timestamp counts only when the row gives one,
// metadata that is not an object counts as none. The rows were validated by the transform, so the
// casts hold.
const compareEntriesSQL = `
SELECT u.k::integer, e.id,
       dl_entry_diff(e.debit_account_id, e.credit_account_id, e.amount, e.currency_code, e.asset_type, e.transaction_type,
                     e.fx_rate, e.metadata, e.timestamp_utc, e.reverses_entry_id,
                     u.j ->> 'debit_account_id', u.j ->> 'credit_account_id', (u.j ->> 'amount')::numeric,
                     u.j ->> 'currency_code', u.j ->> 'asset_type', u.j ->> 'transaction_type', (u.j ->> 'fx_rate')::numeric,
                     CASE WHEN jsonb_typeof(u.j -> 'metadata') = 'object' THEN u.j -> 'metadata' END,
                     (u.j ->> 'timestamp_utc')::timestamptz, u.j ->> 'timestamp_utc' IS NOT NULL,
                     (u.j ->> 'reverses_entry_id')::bigint)
FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS u(j, k)
LEFT JOIN ledger_entries e ON e.ledger_id = $1 AND e.reference_id = u.j ->> 'reference_id'
ORDER BY u.k`

// runRanges are the seq ranges of the entries a run created (its batches).
func runRanges(ctx context.Context, pool *pgxpool.Pool, sourceType, sourceID string) ([]outbox.SeqRange, error) {
	rows, err := pool.Query(ctx, `SELECT ledger_id, first_seq, last_seq FROM ledger_backfill_batches
		WHERE source_type = $1 AND source_id = $2 ORDER BY batch_no, ledger_id`, sourceType, sourceID)
	if err != nil {
		return nil, fmt.Errorf("read the run's batches: %w", err)
	}
	var out []outbox.SeqRange
	var r outbox.SeqRange
	if _, err := pgx.ForEachRow(rows, []any{&r.LedgerID, &r.FirstSeq, &r.LastSeq}, func() error { out = append(out, r); return nil }); err != nil {
		return nil, fmt.Errorf("read the run's batches: %w", err)
	}
	return out, nil
}
