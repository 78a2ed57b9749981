package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Balances as of a point of the ledger (docs/holds.md, "Balances as of a point"), read from
// stored rows, never by replaying the ledger:
//
//   - balance: the account's balance-after in the last entry at or before the seq that touched
//     it (debit_balance_after or credit_balance_after, stored with every entry);
//   - reserved: reserved_after of the account's last hold event whose entry_seq is at or before
//     the seq (ledger_hold_events, indexed by account and entry_seq);
//   - available = balance - reserved.
//
// "As of seq N" is the ledger as it was while entry N was its head: entries 1..N and every hold
// event recorded before entry N+1 (a capture's release and its entry are one point). "As of a
// time T" is as of the last entry recorded at or before T, and only the hold events recorded at
// or before T. recorded_at is the posting transaction's start time, so entries a few
// milliseconds apart around T may fall on either side of it.

// asOfSeqSQL reads the three parts in one statement. The entry look-up walks the primary key
// backwards from the seq to the account's last entry (no per-account index on the entries: it
// would cost every posting two more index insertions), so its cost is the number of entries
// after the account's last one before the seq.
const asOfSeqSQL = `SELECT
  (SELECT CASE WHEN e.debit_account_id = $2 THEN e.debit_balance_after ELSE e.credit_balance_after END::text
     FROM ledger_entries e
    WHERE e.ledger_id = $1 AND e.seq <= $3 AND (e.debit_account_id = $2 OR e.credit_account_id = $2)
    ORDER BY e.seq DESC LIMIT 1),
  (SELECT h.reserved_after::text FROM ledger_hold_events h
    WHERE h.ledger_id = $1 AND h.account_id = $2 AND h.entry_seq <= $3
      AND ($4::timestamptz IS NULL OR h.recorded_at <= $4)
    ORDER BY h.entry_seq DESC, h.seq DESC LIMIT 1)`

// SnapshotBeginner starts a transaction with options (a pool or a connection).
type SnapshotBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// GetAccountAsOf returns the account with its balances as of entry seq *seq, or as of time *at
// (exactly one of them), read in one REPEATABLE READ snapshot. A seq past the ledger's head is
// invalid_request.
func GetAccountAsOf(ctx context.Context, db SnapshotBeginner, ledgerID, id string, seq *int64, at *time.Time) (AccountAsOf, error) {
	if (seq == nil) == (at == nil) {
		return AccountAsOf{}, Errorf(CodeInvalidRequest, "give exactly one of as_of_seq and as_of").WithDetails(map[string]string{"field": "as_of_seq"})
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return AccountAsOf{}, FromDB(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	a, err := GetAccount(ctx, tx, ledgerID, id)
	if err != nil {
		return AccountAsOf{}, err
	}
	l, err := GetLedger(ctx, tx, ledgerID)
	if err != nil {
		return AccountAsOf{}, err
	}
	var n int64
	switch {
	case seq != nil:
		if *seq < 0 || *seq > l.HeadSeq {
			return AccountAsOf{}, Errorf(CodeInvalidRequest, "as_of_seq %d is not a seq of ledger %q: it runs from 0 to its head, %d", *seq, ledgerID, l.HeadSeq).
				WithDetails(map[string]any{"field": "as_of_seq", "head_seq": l.HeadSeq})
		}
		n = *seq
	default:
		// The last entry recorded at or before the time: walked back from the head (recent
		// times are cheap; a time far back reads every entry after it).
		err := tx.QueryRow(ctx, `SELECT coalesce((SELECT e.seq FROM ledger_entries e WHERE e.ledger_id = $1 AND e.recorded_at <= $2
			ORDER BY e.seq DESC LIMIT 1), 0)`, ledgerID, *at).Scan(&n)
		if err != nil {
			return AccountAsOf{}, FromDB(err)
		}
	}
	var bal, res *string
	if err := tx.QueryRow(ctx, asOfSeqSQL, ledgerID, id, n, at).Scan(&bal, &res); err != nil {
		return AccountAsOf{}, FromDB(err)
	}
	zero := "0"
	if bal == nil {
		bal = &zero
	}
	if res == nil {
		res = &zero
	}
	var avail string
	if err := tx.QueryRow(ctx, `SELECT ($1::numeric - $2::numeric)::text`, *bal, *res).Scan(&avail); err != nil {
		return AccountAsOf{}, FromDB(err)
	}
	a.Balance = displayAmount(*bal, a.CurrencyCode)
	a.ReservedBalance = displayAmount(*res, a.CurrencyCode)
	a.AvailableBalance = displayAmount(avail, a.CurrencyCode)
	out := AccountAsOf{Account: a, AsOfSeq: &n}
	if at != nil {
		t := at.UTC()
		out.AsOf = &t
	}
	return out, nil
}

// ParseAsOf reads the as-of parameters as a client writes them (either may be ""): as_of_seq a
// non-negative integer, as_of an RFC 3339 time. Both empty: nil, nil (current balances).
func ParseAsOf(seqText, atText string) (*int64, *time.Time, error) {
	switch {
	case seqText != "" && atText != "":
		return nil, nil, Errorf(CodeInvalidRequest, "give as_of_seq or as_of, not both").WithDetails(map[string]string{"field": "as_of"})
	case seqText != "":
		var n int64
		if _, err := fmt.Sscan(seqText, &n); err != nil || n < 0 || fmt.Sprint(n) != seqText {
			return nil, nil, Errorf(CodeInvalidRequest, "as_of_seq must be a non-negative integer, got %q", seqText).
				WithDetails(map[string]string{"field": "as_of_seq"})
		}
		return &n, nil, nil
	case atText != "":
		t, err := time.Parse(time.RFC3339Nano, atText)
		if err != nil {
			return nil, nil, Errorf(CodeInvalidRequest, "as_of must be an RFC 3339 time such as 2025-01-20T10:00:00Z, got %q", atText).
				WithDetails(map[string]string{"field": "as_of"})
		}
		return nil, &t, nil
	}
	return nil, nil, nil
}
