package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
)

// RollbackOutcome is what a rollback did.
type RollbackOutcome struct {
	Checkpoint Checkpoint `json:"checkpoint"`
	Reversed   int64      `json:"reversed"`         // reversals created now
	Replayed   int64      `json:"already_reversed"` // reversals that an earlier (interrupted) rollback created
	Rejected   []string   `json:"rejected,omitempty"`
}

// ReversalReference is the reference of the reversal of a ledger's entry seq: one per entry, so
// a rollback run again (after an interruption) replays instead of reversing twice.
func ReversalReference(seq int64) string { return fmt.Sprintf("backfill-reversal:seq-%d", seq) }

// Rollback posts a reversal of every entry the source's run created, newest first, ledger by
// ledger, in batches of batchSize (one transaction each). The entries stay (the ledger deletes
// nothing); each reversal names its entry (reverses_entry_id), swaps debit and credit, and goes
// to the outbox like any posting when it concerns a member bank. It is resumable and idempotent:
// run again, the reversals already made answer replayed. The start is recorded in the operator
// log (backfill.rollback) with the actor and the reason.
func Rollback(ctx context.Context, pool *pgxpool.Pool, sourceType, sourceID, actor, reason string, batchSize int, log *slog.Logger) (RollbackOutcome, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if batchSize < 1 || batchSize > ledger.MaxBatch {
		return RollbackOutcome{}, fmt.Errorf("batch size must be 1 to %d", ledger.MaxBatch)
	}
	if _, err := GetCheckpoint(ctx, pool, sourceType, sourceID); err != nil {
		return RollbackOutcome{}, err
	}
	conn, err := lock(ctx, pool, sourceType, sourceID, 0)
	if err != nil {
		return RollbackOutcome{}, err
	}
	defer func() { unlock(conn, sourceType, sourceID) }()
	bg := context.WithoutCancel(ctx)
	var out RollbackOutcome
	cp, err := scanCheckpoint(conn.QueryRow(bg, `SELECT `+checkpointColumns+` FROM backfill_rollback_begin($1, $2, $3, $4)`,
		actor, sourceType, sourceID, reason))
	if err != nil {
		return out, fmt.Errorf("start the rollback: %w", ledger.FromDB(err))
	}
	out.Checkpoint = cp
	rows, err := conn.Query(bg, `SELECT ledger_id, first_seq, last_seq FROM ledger_backfill_batches
		WHERE source_type = $1 AND source_id = $2 ORDER BY batch_no DESC, ledger_id`, sourceType, sourceID)
	if err != nil {
		return out, fmt.Errorf("read the run's batches: %w", err)
	}
	type rng struct {
		ledger      string
		first, last int64
	}
	var ranges []rng
	for rows.Next() {
		var r rng
		if err := rows.Scan(&r.ledger, &r.first, &r.last); err != nil {
			rows.Close()
			return out, err
		}
		ranges = append(ranges, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	meta, _ := json.Marshal(map[string]string{"backfill_rollback": sourceType + "/" + sourceID})
	for _, r := range ranges {
		for hi := r.last; hi >= r.first; hi -= int64(batchSize) {
			if ctx.Err() != nil {
				return out, finishRollback(bg, conn, &out, sourceType, sourceID, "FAILED", "interrupted by a signal; run the same command to go on")
			}
			lo := max(r.first, hi-int64(batchSize)+1)
			if err := reverseRange(bg, conn, sourceType, sourceID, r.ledger, lo, hi, meta, &out); err != nil {
				_ = finishRollback(bg, conn, &out, sourceType, sourceID, "FAILED", err.Error())
				return out, err
			}
			log.Info("reversed", "ledger", r.ledger, "seq_from", hi, "seq_to", lo)
		}
	}
	status, msg := "COMPLETED", ""
	if len(out.Rejected) > 0 {
		status, msg = "FAILED", fmt.Sprintf("%d reversal(s) refused, first: %s", len(out.Rejected), out.Rejected[0])
	}
	return out, finishRollback(bg, conn, &out, sourceType, sourceID, status, msg)
}

func finishRollback(ctx context.Context, conn *pgxpool.Conn, out *RollbackOutcome, sourceType, sourceID, status, msg string) error {
	var m *string
	if msg != "" {
		m = &msg
	}
	cp, err := scanCheckpoint(conn.QueryRow(ctx, `SELECT `+checkpointColumns+` FROM backfill_rollback_finish($1, $2, $3, $4, $5)`,
		sourceType, sourceID, status, out.Reversed+out.Replayed, m))
	if err != nil {
		return fmt.Errorf("record the rollback's end: %w", err)
	}
	out.Checkpoint = cp
	return nil
}

// reverseRange reverses the entries lo..hi of a ledger, newest first, in one transaction.
func reverseRange(ctx context.Context, conn *pgxpool.Conn, sourceType, sourceID, ledgerID string, lo, hi int64, meta []byte, out *RollbackOutcome) error {
	rows, err := conn.Query(ctx, `SELECT id, seq, debit_account_id, credit_account_id, trim_scale(amount)::text, currency_code, asset_type, reference_id
		FROM ledger_entries WHERE ledger_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq DESC`, ledgerID, lo, hi)
	if err != nil {
		return fmt.Errorf("read entries %d-%d of %s: %w", lo, hi, ledgerID, err)
	}
	var entries []ledger.EntryInput
	var refs []string
	for rows.Next() {
		var id, seq int64
		var debit, credit, amount, currency, asset, ref string
		if err := rows.Scan(&id, &seq, &debit, &credit, &amount, &currency, &asset, &ref); err != nil {
			rows.Close()
			return err
		}
		entries = append(entries, ledger.EntryInput{DebitAccountID: credit, CreditAccountID: debit, Amount: amount,
			CurrencyCode: currency, AssetType: asset, TransactionType: "backfill_reversal", ReferenceID: ReversalReference(seq),
			ReversesEntryID: &id, Metadata: meta})
		refs = append(refs, fmt.Sprintf("%s seq %d (%s)", ledgerID, seq, ref))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	results, err := ledger.PostBatchTx(ctx, tx, ledgerID, entries, false)
	if err != nil {
		return fmt.Errorf("post reversals of %s seq %d-%d: %w", ledgerID, lo, hi, err)
	}
	var created, replayed int64
	var rejected []string
	for _, r := range results {
		switch r.Code {
		case ledger.CodeCreated:
			created++
		case ledger.CodeReplayed:
			replayed++
		default:
			rejected = append(rejected, fmt.Sprintf("%s: %s: %s", refs[r.Index], r.Code, r.Message))
		}
	}
	if created > 0 {
		if _, err := tx.Exec(ctx, `SELECT backfill_rollback_progress($1, $2, $3)`, sourceType, sourceID, created); err != nil {
			return fmt.Errorf("record the rollback's progress: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	out.Reversed += created
	out.Replayed += replayed
	out.Rejected = append(out.Rejected, rejected...)
	return nil
}
