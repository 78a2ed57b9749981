package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/money"
)

// MaxBatch is the largest batch post_ledger_entries accepts.
const MaxBatch = 10000

// postSQL calls the batch function. The one statement is its own transaction (autocommit), so
// the entries, balances, chain head and outbox rows of the batch commit together or not at all.
const postSQL = `SELECT idx, result, entry_id, seq, block_hash, previous_hash, timestamp_utc, metadata, recorded_at,
       debit_balance::text, credit_balance::text, message, details
  FROM post_ledger_entries($1, $2::jsonb, $3)`

// postOutcomesSQL is postSQL without the columns that only describe a created entry (hashes,
// times, metadata, balances after), for a caller that counts outcomes (PostBatchOutcomesTx). The
// function computes them either way; what is saved is their conversion to the wire and back, which
// happens while the batch's transaction holds its ledger's head lock.
const postOutcomesSQL = `SELECT idx, result, entry_id, seq, NULL::text, NULL::text, NULL::timestamptz, NULL::jsonb,
       NULL::timestamptz, NULL::text, NULL::text, message, details
  FROM post_ledger_entries($1, $2::jsonb, $3)`

// PostBatch posts entries to ledgerID in one transaction and returns one result per entry, in
// order. With atomic, a single rejection means nothing was written (the others answer
// not_applied). An error is returned only when the batch could not be run at all (invalid batch
// size, database unavailable); then nothing was written, or, if the connection broke during
// commit, the outcome is unknown and a retry with the same reference ids is answered replayed.
func PostBatch(ctx context.Context, db *pgxpool.Pool, ledgerID string, entries []EntryInput, atomic bool) ([]Result, error) {
	if len(entries) == 0 || len(entries) > MaxBatch {
		return nil, Errorf(CodeInvalidRequest, "a batch holds 1 to %d entries, got %d", MaxBatch, len(entries))
	}
	// Reference ids are checked here so that every Go path (HTTP, CLI, settlements, group
	// commit) applies the same rule; an entry with a bad one gets its own invalid_request result.
	badRefs := referenceErrors(entries)
	body, err := encodeBatch(entries, badRefs)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	// A serialization failure or deadlock rolled the whole statement back, so running it again
	// is safe; it happens when an account changed between the function's read and its update
	// (migration 005), which is rare and short-lived.
	for attempt := 1; ; attempt++ {
		results, err := postOnce(ctx, db, postSQL, ledgerID, entries, body, atomic)
		if err == nil || attempt == maxPostAttempts || !retryable(err) {
			return withReferenceErrors(results, badRefs), err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// PostBatchTx is PostBatch inside the caller's transaction (tx: a pgx.Tx, or a connection in a
// transaction the caller began), so that the caller's own writes commit with the batch or not at
// all (the backfill importer commits its checkpoint this way). It does not retry: a serialization
// failure or deadlock aborted the caller's transaction, which the caller must run again whole.
func PostBatchTx(ctx context.Context, tx DBTX, ledgerID string, entries []EntryInput, atomic bool) ([]Result, error) {
	return postBatchTx(ctx, tx, postSQL, ledgerID, entries, atomic)
}

// PostBatchOutcomesTx is PostBatchTx for a caller that needs only each entry's outcome: its
// results carry Index, Code, EntryID, Seq, Message and Details, and nothing else (the backfill,
// which posts a million rows and keeps counts and seq ranges).
func PostBatchOutcomesTx(ctx context.Context, tx DBTX, ledgerID string, entries []EntryInput, atomic bool) ([]Result, error) {
	return postBatchTx(ctx, tx, postOutcomesSQL, ledgerID, entries, atomic)
}

func postBatchTx(ctx context.Context, tx DBTX, sql, ledgerID string, entries []EntryInput, atomic bool) ([]Result, error) {
	if len(entries) == 0 || len(entries) > MaxBatch {
		return nil, Errorf(CodeInvalidRequest, "a batch holds 1 to %d entries, got %d", MaxBatch, len(entries))
	}
	badRefs := referenceErrors(entries)
	body, err := encodeBatch(entries, badRefs)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	results, err := postOnce(ctx, tx, sql, ledgerID, entries, body, atomic)
	return withReferenceErrors(results, badRefs), err
}

// Retryable reports whether err is a serialization failure or deadlock: the statement (and its
// transaction) was rolled back and running it again is safe.
func Retryable(err error) bool { return retryable(err) }

// maxPostAttempts bounds the retries of a batch that lost a serialization race.
const maxPostAttempts = 3

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) &&
		(pgErr.Code == pgerrcode.SerializationFailure || pgErr.Code == pgerrcode.DeadlockDetected)
}

func postOnce(ctx context.Context, db DBTX, sql, ledgerID string, entries []EntryInput, body []byte, atomic bool) ([]Result, error) {
	rows, err := db.Query(ctx, sql, ledgerID, body, atomic)
	if err != nil {
		return nil, FromDB(err)
	}
	results := make([]Result, 0, len(entries))
	// Value types, not pointers, declared once: a pointer target, or a variable declared in the
	// loop (Scan makes each escape), costs an allocation per column and row on the path every
	// posting takes. Scan sets each of them, NULL included, for every row.
	var (
		idx                    int
		code                   string
		entryID, seq           pgtype.Int8
		hash, prev, dbal, cbal pgtype.Text
		msg                    pgtype.Text
		ts, rec                pgtype.Timestamptz
		details, meta          []byte
	)
	for rows.Next() {
		details, meta = nil, nil // never share a buffer with the previous row's result
		if err := rows.Scan(&idx, &code, &entryID, &seq, &hash, &prev, &ts, &meta, &rec, &dbal, &cbal, &msg, &details); err != nil {
			rows.Close()
			return nil, FromDB(err)
		}
		r := Result{Code: code}
		r.Index = idx - 1
		r.EntryID = entryID.Int64
		r.Seq = seq.Int64
		r.BlockHash = hash.String
		r.PreviousHash = prev.String
		if ts.Valid {
			r.TimestampUTC = ts.Time.UTC()
		}
		if rec.Valid {
			r.RecordedAt = rec.Time.UTC()
		}
		if r.Index >= 0 && r.Index < len(entries) {
			r.DebitBalance = displayAmount(dbal.String, entries[r.Index].CurrencyCode)
			r.CreditBalance = displayAmount(cbal.String, entries[r.Index].CurrencyCode)
		}
		r.Message = msg.String
		if len(details) > 0 {
			r.Details = details
		}
		if len(meta) > 0 {
			r.Metadata = meta
		}
		results = append(results, r)
	}
	if err := rows.Err(); err != nil {
		return nil, FromDB(err)
	}
	if len(results) != len(entries) {
		return nil, fmt.Errorf("post_ledger_entries returned %d results for %d entries", len(results), len(entries))
	}
	return results, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// trimDecimal drops the trailing fractional zeros of NUMERIC(38,18) text ("12.500000" -> "12.5").
func trimDecimal(s string) string {
	dot := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return s
	}
	end := len(s)
	for end > dot+1 && s[end-1] == '0' {
		end--
	}
	if end == dot+1 {
		end = dot
	}
	return s[:end]
}

// FormatAmount renders a decimal (NUMERIC text) the way the ledger shows it to clients and
// SCBs; see displayAmount.
func FormatAmount(s, currency string) string { return displayAmount(s, currency) }

// displayAmount renders a NUMERIC text for clients: trailing zeros dropped, but at least the
// currency's minor unit of decimals for the currencies that have a small one ("1259999.50" USD,
// "1000" JPY, "12.345" BHD); codes with 18 decimals (metals, SDR) are shown trimmed.
func displayAmount(s, currency string) string {
	s = trimDecimal(s)
	if s == "" {
		return s
	}
	c, ok := money.LookupCurrency(currency)
	if !ok || c.MinorUnit == 0 || c.MinorUnit > 4 {
		return s
	}
	dot := strings.IndexByte(s, '.')
	have := 0
	if dot < 0 {
		s += "."
	} else {
		have = len(s) - dot - 1
	}
	if have < c.MinorUnit {
		s += strings.Repeat("0", c.MinorUnit-have)
	}
	return s
}
