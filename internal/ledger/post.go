package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
		results, err := postFlushed(ctx, db, ledgerID, entries, body, atomic)
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
	if len(entries) == 0 || len(entries) > MaxBatch {
		return nil, Errorf(CodeInvalidRequest, "a batch holds 1 to %d entries, got %d", MaxBatch, len(entries))
	}
	badRefs := referenceErrors(entries)
	body, err := encodeBatch(entries, badRefs)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	results, err := postOnce(ctx, tx, ledgerID, entries, body, atomic)
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

func postOnce(ctx context.Context, db DBTX, ledgerID string, entries []EntryInput, body []byte, atomic bool) ([]Result, error) {
	rows, err := db.Query(ctx, postSQL, ledgerID, body, atomic)
	if err != nil {
		return nil, FromDB(err)
	}
	return scanResults(rows, entries)
}

// asyncCommitSQL makes the commit of the transaction it runs in return without waiting for the
// WAL flush; transaction-local, so the connection goes back to the pool as it came.
const asyncCommitSQL = `SELECT set_config('synchronous_commit', 'off', true)`

// flushSQL is a transaction whose commit waits for the WAL flush: PostgreSQL flushes at commit
// only for a transaction that has a transaction id and wrote WAL (one that merely takes an id,
// pg_current_xact_id(), commits without waiting), and a transactional logical message does both
// with one small record and no table. With the session's synchronous_commit (on, or the
// operator's remote_write / remote_apply for synchronous standbys) the commit returns once the
// WAL is flushed (and replicated) up to its commit record, so every transaction that committed
// before it is as durable as a synchronous commit would have made it. Logical decoding sees the
// message under the prefix "dualledger.flush" with no content; a physical standby ignores it.
const flushSQL = `SELECT pg_logical_emit_message(true, 'dualledger.flush', '')`

// postFlushed runs the batch as one implicit transaction that commits without waiting for its
// WAL flush, then waits for the flush in a second transaction before returning the results.
//
// Why: the ledger head's row lock is held until commit, and a synchronous commit holds it through
// the fsync, so the next group commit of the ledger waited for this one's disk write on top of its
// work. Committed asynchronously, the lock is released as soon as the commit record is in the
// WAL buffers, and the next batch's work runs while this one's flush is under way (concurrent
// flush waits share one fsync). Nothing is acknowledged before the flush: a result (created,
// replayed or rejected) reaches the caller only once every entry it depends on is durable, since
// those entries committed before the flush transaction did. What changes is visibility: another
// reader can see an entry for the fraction of a millisecond between its commit and its flush, and
// a crash of PostgreSQL or the machine inside that window loses the entry although a reader saw it
// (its poster, never acknowledged, retries with the same reference). The outbox worker and the
// reconciler never act on such an entry: they act only after a commit of their own, whose flush
// covers it. docs/design.md §6 records the decision.
func postFlushed(ctx context.Context, db *pgxpool.Pool, ledgerID string, entries []EntryInput, body []byte, atomic bool) ([]Result, error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return nil, FromDB(err)
	}
	defer conn.Release()
	// One round trip and one implicit transaction: pgx sends a batch's statements with a single
	// Sync, and the setting applies to the commit at that Sync.
	b := &pgx.Batch{}
	b.Queue(asyncCommitSQL)
	b.Queue(postSQL, ledgerID, body, atomic)
	br := conn.SendBatch(ctx, b)
	results, err := readPostBatch(br, entries)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = FromDB(cerr)
	}
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, flushSQL); err != nil {
		// The batch committed but its durability is unknown: the caller learns the outcome by
		// retrying with the same reference ids (replayed), as after a commit that broke off.
		return nil, FromDB(fmt.Errorf("wait for the WAL flush of a committed batch: %w", err))
	}
	return results, nil
}

func readPostBatch(br pgx.BatchResults, entries []EntryInput) ([]Result, error) {
	if _, err := br.Exec(); err != nil {
		return nil, FromDB(err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, FromDB(err)
	}
	return scanResults(rows, entries)
}

// scanResults reads post_ledger_entries' rows: one result per entry, in order.
func scanResults(rows pgx.Rows, entries []EntryInput) ([]Result, error) {
	defer rows.Close()
	results := make([]Result, 0, len(entries))
	for rows.Next() {
		var (
			r               Result
			idx             int
			entryID, seq    *int64
			hash, prev      *string
			ts, rec         *time.Time
			dbal, cbal, msg *string
			details, meta   []byte
		)
		if err := rows.Scan(&idx, &r.Code, &entryID, &seq, &hash, &prev, &ts, &meta, &rec, &dbal, &cbal, &msg, &details); err != nil {
			rows.Close()
			return nil, FromDB(err)
		}
		r.Index = idx - 1
		r.EntryID = deref(entryID)
		r.Seq = deref(seq)
		r.BlockHash = deref(hash)
		r.PreviousHash = deref(prev)
		if ts != nil {
			r.TimestampUTC = ts.UTC()
		}
		if rec != nil {
			r.RecordedAt = rec.UTC()
		}
		if r.Index >= 0 && r.Index < len(entries) {
			r.DebitBalance = displayAmount(deref(dbal), entries[r.Index].CurrencyCode)
			r.CreditBalance = displayAmount(deref(cbal), entries[r.Index].CurrencyCode)
		}
		r.Message = deref(msg)
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
