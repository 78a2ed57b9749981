// Package statement builds account statements, what member banks reconcile with: for an account
// and a range of booking dates, the opening balance, every entry with the running balance after
// it, and the closing balance; written as JSON, CSV or ISO 20022 camt.053.001.08
// (BankToCustomerStatement), and camt.053 read back (ParseCamt053). Balances are the stored
// balances-after of the entries (ledger_entries.debit_balance_after / credit_balance_after,
// checked by audit), never a rescan of the account's history.
package statement

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// Directions of an entry for the account: credit raises its balance (balance = Σ credits − Σ debits).
const (
	Credit = "credit"
	Debit  = "debit"
)

// Line is one entry of the statement.
type Line struct {
	Seq             int64     `json:"seq"`
	EntryID         int64     `json:"entry_id"`
	ReferenceID     string    `json:"reference_id"`
	TransactionType string    `json:"transaction_type"`
	Direction       string    `json:"direction"`    // credit or debit, for this account
	Counterparty    string    `json:"counterparty"` // the entry's other account
	Amount          string    `json:"amount"`
	Balance         string    `json:"balance"`   // the account's balance right after the entry
	BookedAt        time.Time `json:"booked_at"` // recorded_at: when the ledger booked it
	ValueAt         time.Time `json:"value_at"`  // timestamp_utc: the business time
	ReversesEntryID *int64    `json:"reverses_entry_id"`
}

// Statement of one account for [From, To] (booking dates, UTC, both inclusive).
type Statement struct {
	LedgerID       string    `json:"ledger_id"`
	AccountID      string    `json:"account_id"`
	BankID         *string   `json:"bank_id"`
	CurrencyCode   string    `json:"currency_code"`
	AssetType      string    `json:"asset_type"`
	From           string    `json:"from"` // YYYY-MM-DD
	To             string    `json:"to"`
	OpeningBalance string    `json:"opening_balance"`
	ClosingBalance string    `json:"closing_balance"`
	TotalCredits   string    `json:"total_credits"`
	TotalDebits    string    `json:"total_debits"`
	Count          int       `json:"count"`
	GeneratedAt    time.Time `json:"generated_at"`
	// AsOfSeq is the ledger's head when the statement was read (one snapshot).
	AsOfSeq int64  `json:"as_of_seq"`
	Entries []Line `json:"entries"`
}

// MaxEntries bounds one statement (a busier range is split by date).
const MaxEntries = 100000

// Dates parses the range: YYYY-MM-DD each, from <= to, at most 366 days.
func Dates(from, to string) (time.Time, time.Time, error) {
	f, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return time.Time{}, time.Time{}, ledger.Errorf(ledger.CodeInvalidRequest, "from must be a date YYYY-MM-DD, got %q", clip(from)).
			WithDetails(map[string]string{"field": "from"})
	}
	t, err := time.Parse(time.DateOnly, to)
	if err != nil {
		return time.Time{}, time.Time{}, ledger.Errorf(ledger.CodeInvalidRequest, "to must be a date YYYY-MM-DD, got %q", clip(to)).
			WithDetails(map[string]string{"field": "to"})
	}
	if t.Before(f) {
		return time.Time{}, time.Time{}, ledger.Errorf(ledger.CodeInvalidRequest, "to (%s) is before from (%s)", to, from).
			WithDetails(map[string]string{"field": "to"})
	}
	if t.Sub(f) > 366*24*time.Hour {
		return time.Time{}, time.Time{}, ledger.Errorf(ledger.CodeInvalidRequest, "a statement covers at most 366 days").
			WithDetails(map[string]string{"field": "to"})
	}
	return f, t, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// DB begins the snapshot a statement is read in (*pgxpool.Pool, *pgx.Conn).
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// accountEntriesSQL is the account's entries from seq $3 on, in seq order, on either side: two
// index range scans (ledger_entries_debit/credit_account_idx, account id first since migration 015) merged by seq.
const accountEntriesSQL = `SELECT seq, id, reference_id, transaction_type, debit_account_id, credit_account_id, amount::text,
       debit_balance_after::text, credit_balance_after::text, recorded_at, timestamp_utc, reverses_entry_id
  FROM (SELECT * FROM ledger_entries WHERE ledger_id = $1 AND debit_account_id = $2 AND seq >= $3
        UNION ALL
        SELECT * FROM ledger_entries WHERE ledger_id = $1 AND credit_account_id = $2 AND seq >= $3) x
 ORDER BY seq`

// Build reads the statement of ledgerID/accountID for the booking dates from..to (inclusive),
// in one read-only snapshot. The range is the account's entries from the first one booked on or
// after from, up to (not including) the first booked after to: contiguous in the account's
// seq order, so opening + Σ entries = closing exactly.
func Build(ctx context.Context, db DB, ledgerID, accountID string, from, to time.Time) (Statement, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Statement{}, ledger.FromDB(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	a, err := ledger.GetAccount(ctx, tx, ledgerID, accountID)
	if err != nil {
		return Statement{}, err
	}
	end := to.AddDate(0, 0, 1)
	st := Statement{LedgerID: ledgerID, AccountID: accountID, BankID: a.BankID, CurrencyCode: a.CurrencyCode, AssetType: a.AssetType,
		From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), GeneratedAt: time.Now().UTC(), Entries: []Line{}}
	if err := tx.QueryRow(ctx, `SELECT head_seq FROM ledgers WHERE id = $1`, ledgerID).Scan(&st.AsOfSeq); err != nil {
		return Statement{}, ledger.FromDB(err)
	}
	// The first entry booked on or after from; the opening balance is the balance after the
	// account's entry before it (0 before its first entry).
	var first *int64
	err = tx.QueryRow(ctx, `SELECT seq FROM (
		SELECT seq, recorded_at FROM ledger_entries WHERE ledger_id = $1 AND debit_account_id = $2
		UNION ALL SELECT seq, recorded_at FROM ledger_entries WHERE ledger_id = $1 AND credit_account_id = $2) x
		WHERE recorded_at >= $3 ORDER BY seq LIMIT 1`, ledgerID, accountID, from).Scan(&first)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Statement{}, ledger.FromDB(err)
	}
	before := int64(1) << 62
	if first != nil {
		before = *first
	}
	opening := "0"
	err = tx.QueryRow(ctx, `SELECT CASE WHEN debit_account_id = $2 THEN debit_balance_after ELSE credit_balance_after END::text FROM (
		SELECT * FROM ledger_entries WHERE ledger_id = $1 AND debit_account_id = $2 AND seq < $3
		UNION ALL SELECT * FROM ledger_entries WHERE ledger_id = $1 AND credit_account_id = $2 AND seq < $3) x
		ORDER BY seq DESC LIMIT 1`, ledgerID, accountID, before).Scan(&opening)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Statement{}, ledger.FromDB(err)
	}
	st.OpeningBalance, st.ClosingBalance = ledger.FormatAmount(opening, a.CurrencyCode), ledger.FormatAmount(opening, a.CurrencyCode)
	credits, debits := newSum(), newSum()
	if first != nil {
		rows, err := tx.Query(ctx, accountEntriesSQL, ledgerID, accountID, *first)
		if err != nil {
			return Statement{}, ledger.FromDB(err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				l                           Line
				debit, credit, amount, dbal string
				cbal                        string
			)
			if err := rows.Scan(&l.Seq, &l.EntryID, &l.ReferenceID, &l.TransactionType, &debit, &credit, &amount, &dbal, &cbal,
				&l.BookedAt, &l.ValueAt, &l.ReversesEntryID); err != nil {
				return Statement{}, ledger.FromDB(err)
			}
			if !l.BookedAt.Before(end) {
				break
			}
			if len(st.Entries) == MaxEntries {
				return Statement{}, ledger.Errorf(ledger.CodeInvalidRequest, "more than %d entries in the range: ask for fewer days", MaxEntries).
					WithDetails(map[string]string{"field": "to"})
			}
			l.Amount = ledger.FormatAmount(amount, a.CurrencyCode)
			if credit == accountID {
				l.Direction, l.Counterparty, l.Balance = Credit, debit, ledger.FormatAmount(cbal, a.CurrencyCode)
				credits.add(amount)
			} else {
				l.Direction, l.Counterparty, l.Balance = Debit, credit, ledger.FormatAmount(dbal, a.CurrencyCode)
				debits.add(amount)
			}
			l.BookedAt, l.ValueAt = l.BookedAt.UTC(), l.ValueAt.UTC()
			st.Entries = append(st.Entries, l)
			st.ClosingBalance = l.Balance
		}
		if err := rows.Err(); err != nil {
			return Statement{}, ledger.FromDB(err)
		}
	}
	st.Count = len(st.Entries)
	st.TotalCredits, st.TotalDebits = ledger.FormatAmount(credits.String(), a.CurrencyCode), ledger.FormatAmount(debits.String(), a.CurrencyCode)
	return st, nil
}

// Format names an output format.
type Format string

// The formats.
const (
	JSON    Format = "json"
	CSV     Format = "csv"
	Camt053 Format = "camt053"
)

// ParseFormat checks a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case JSON, CSV, Camt053:
		return f, nil
	}
	return "", ledger.Errorf(ledger.CodeInvalidRequest, "format must be json, csv or camt053, not %q", clip(s)).
		WithDetails(map[string]string{"field": "format"})
}

// ContentType is the media type of f.
func (f Format) ContentType() string {
	switch f {
	case CSV:
		return "text/csv; charset=utf-8"
	case Camt053:
		return "application/xml; charset=utf-8"
	}
	return "application/json"
}

var errTooPrecise = fmt.Errorf("camt.053 amounts carry at most 5 decimals")
