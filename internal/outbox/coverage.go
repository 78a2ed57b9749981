package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// SeqRange is a range of a ledger's entries, by seq (both ends included).
type SeqRange struct {
	LedgerID          string
	FirstSeq, LastSeq int64
}

// Coverage is what the outbox holds for a set of entries.
type Coverage struct {
	Rows    int64    // outbox rows of the entries
	Missing []string // entries that concern a member bank without its outbox row (the first 100)
}

// CoverageOf checks that every entry in the ranges that touches a member bank's account has an
// outbox row for that bank (every posting writes them in its transaction, so one missing is a
// fault), and counts the entries' outbox rows. A backfill's verify runs it over the run's ranges.
func CoverageOf(ctx context.Context, db ledger.DBTX, ranges []SeqRange) (Coverage, error) {
	var c Coverage
	ledgers := make([]string, len(ranges))
	firsts := make([]int64, len(ranges))
	lasts := make([]int64, len(ranges))
	for i, r := range ranges {
		ledgers[i], firsts[i], lasts[i] = r.LedgerID, r.FirstSeq, r.LastSeq
	}
	const entries = `SELECT e.* FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS r(ledger_id, first_seq, last_seq)
		JOIN ledger_entries e ON e.ledger_id = r.ledger_id AND e.seq BETWEEN r.first_seq AND r.last_seq`
	rows, err := db.Query(ctx, `SELECT format('%s/%s (seq %s) has no outbox row for bank %s', e.ledger_id, e.reference_id, e.seq, a.bank_id)
		FROM (`+entries+`) e
		JOIN bank_accounts a ON a.ledger_id = e.ledger_id AND a.id IN (e.debit_account_id, e.credit_account_id) AND a.bank_id IS NOT NULL
		WHERE NOT EXISTS (SELECT 1 FROM dual_ledger_outbox o WHERE o.ledger_id = e.ledger_id AND o.reference_id = e.reference_id AND o.scb_id = a.bank_id)
		ORDER BY e.ledger_id, e.seq LIMIT 100`, ledgers, firsts, lasts)
	if err != nil {
		return c, fmt.Errorf("check the outbox: %w", err)
	}
	if c.Missing, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return c, fmt.Errorf("check the outbox: %w", err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM (`+entries+`) e
		JOIN dual_ledger_outbox o ON o.ledger_id = e.ledger_id AND o.reference_id = e.reference_id`, ledgers, firsts, lasts).Scan(&c.Rows); err != nil {
		return c, fmt.Errorf("count outbox rows: %w", err)
	}
	return c, nil
}
