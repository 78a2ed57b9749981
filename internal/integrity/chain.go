// Package integrity proves that the ledger is what it claims to be: the hash chain of every ledger
// recomputed in Go (VerifyChain), and set-based SQL audits of balances, sequences, heads and
// schema (Audit). Both only read, each inside one REPEATABLE READ READ ONLY transaction, so they
// see one consistent snapshot while postings go on and never block a posting.
package integrity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// DB is what the checks need from a database handle; *pgxpool.Pool and *pgx.Conn satisfy it.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// DefaultPageSize is how many entries VerifyChain reads per query. Memory stays flat whatever the
// chain's length: one page of rows is alive at a time.
const DefaultPageSize = 10000

// Kinds of chain problem.
const (
	ProblemGap          = "gap"           // a seq is missing (or the chain does not start at 1)
	ProblemLink         = "link"          // previous_hash is not the block_hash of seq-1 (zero for seq 1)
	ProblemHashMismatch = "hash_mismatch" // block_hash is not sha256(previous_hash || canonical(entry))
	ProblemHead         = "head_mismatch" // ledgers.head_seq/head_hash is not the last entry
)

// The chains of a ledger: its entries, and its hold events (ChainProblem.Chain).
const (
	ChainEntries = "entries"
	ChainHolds   = "hold_events"
)

// VerifyOptions tune VerifyChain; the zero value is fine.
type VerifyOptions struct {
	PageSize int // entries per query; DefaultPageSize when <= 0
	// Progress (may be nil) is called after each page with the ledger and its last verified seq.
	Progress func(ledgerID string, seq int64)
}

// ChainProblem is the first thing wrong with a ledger's chain.
type ChainProblem struct {
	// Chain is ChainEntries or ChainHolds: which of the ledger's two chains is broken. Seq is a
	// seq of that chain (an entry's, or a hold event's).
	Chain       string `json:"chain"`
	Kind        string `json:"kind"`
	Seq         int64  `json:"seq"` // the first broken seq
	EntryID     int64  `json:"entry_id,omitempty"`
	ReferenceID string `json:"reference_id,omitempty"`
	// Stored is what the database holds and Expected what the chain says it must be: block_hash
	// vs the recomputed hash, previous_hash vs the prior block_hash, head_hash vs the last
	// block_hash (hex); for a gap, the seq found vs the seq expected.
	Stored   string `json:"stored,omitempty"`
	Expected string `json:"expected,omitempty"`
	Message  string `json:"message"`
}

// ChainReport is the result of verifying one ledger.
type ChainReport struct {
	LedgerID string `json:"ledger_id"`
	// Entries is the number of entries verified (up to, not including, a broken one).
	Entries  int64  `json:"entries"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// HoldEvents is the number of hold events verified; HoldHeadSeq and HoldHeadHash the head of
	// the hold-event chain (docs/hash-chain.md, "Hold events").
	HoldEvents   int64         `json:"hold_events"`
	HoldHeadSeq  int64         `json:"hold_head_seq"`
	HoldHeadHash string        `json:"hold_head_hash"`
	Intact       bool          `json:"intact"`
	Problem      *ChainProblem `json:"problem,omitempty"`
	Duration     time.Duration `json:"-"`
	// DurationMS is Duration for JSON readers.
	DurationMS int64 `json:"duration_ms"`
}

// entriesPageSQL reads one page of a chain in seq order, by keyset on the primary key
// (ledger_id, seq): each page is an index range scan, however deep into the chain it is. The
// columns are rendered as ledger_entry_canonical renders them: amount and fx_rate are
// NUMERIC(38,18), whose text has exactly 18 decimals, the same as the reference's round(x, 18)
// (which would cost a fifth of the server's time here); metadata::text is jsonb's own rendering.
// So Go hashes the very bytes SQL hashes.
const entriesPageSQL = `SELECT id, seq, debit_account_id, credit_account_id, amount::text, currency_code,
       asset_type, transaction_type, reference_id, coalesce(fx_rate::text, ''), metadata::text,
       timestamp_utc, coalesce(reverses_entry_id, 0), previous_hash, block_hash
  FROM ledger_entries
 WHERE ledger_id = $1 AND seq > $2
 ORDER BY seq
 LIMIT $3`

// VerifyChain recomputes every block_hash of ledgerID in Go (ledger.BlockHash), checks that seq
// runs 1, 2, 3, ... without gaps, that each previous_hash is the block_hash before it (32 zero
// bytes for seq 1), and that the ledger head is the last entry. It stops at the first problem
// and reports it in ChainReport.Problem; an error means the check itself could not run (or the
// ledger does not exist: a *ledger.Error with code unknown_ledger).
//
// The whole walk runs in one read-only REPEATABLE READ transaction: head and entries come from
// the same snapshot, so postings committed meanwhile neither confuse nor wait for it.
func VerifyChain(ctx context.Context, db DB, ledgerID string, opts VerifyOptions) (ChainReport, error) {
	start := time.Now()
	rep := ChainReport{LedgerID: ledgerID}
	pageSize := opts.PageSize
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, fmt.Errorf("verify chain of %s: begin: %w", ledgerID, err)
	}
	// Read-only: rolling back is how the snapshot ends.
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck

	var headHash, holdHeadHash []byte
	err = tx.QueryRow(ctx, `SELECT head_seq, head_hash, hold_head_seq, hold_head_hash FROM ledgers WHERE id = $1`, ledgerID).
		Scan(&rep.HeadSeq, &headHash, &rep.HoldHeadSeq, &holdHeadHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return rep, ledger.Errorf(ledger.CodeUnknownLedger, "unknown ledger %q", ledgerID).
			WithDetails(map[string]string{"ledger_id": ledgerID})
	}
	if err != nil {
		return rep, fmt.Errorf("verify chain of %s: read head: %w", ledgerID, err)
	}
	rep.HeadHash = hex.EncodeToString(headHash)
	rep.HoldHeadHash = hex.EncodeToString(holdHeadHash)

	w := chainWalker{ledgerID: ledgerID, expected: 1}
	for w.problem == nil {
		n, err := w.page(ctx, tx, pageSize)
		if err != nil {
			return rep, fmt.Errorf("verify chain of %s after seq %d: %w", ledgerID, w.expected-1, err)
		}
		if opts.Progress != nil && n > 0 {
			opts.Progress(ledgerID, w.expected-1)
		}
		if n < pageSize {
			break
		}
	}
	rep.Entries = w.expected - 1
	if w.problem == nil {
		w.checkHead(rep.HeadSeq, headHash)
	}
	if w.problem == nil {
		hw := holdWalker{ledgerID: ledgerID, expected: 1}
		for hw.problem == nil {
			n, err := hw.page(ctx, tx, pageSize)
			if err != nil {
				return rep, fmt.Errorf("verify hold chain of %s after seq %d: %w", ledgerID, hw.expected-1, err)
			}
			if n < pageSize {
				break
			}
		}
		rep.HoldEvents = hw.expected - 1
		if hw.problem == nil {
			hw.checkHead(rep.HoldHeadSeq, holdHeadHash)
		}
		w.problem = hw.problem
	}
	rep.Problem = w.problem
	rep.Intact = w.problem == nil
	rep.Duration = time.Since(start)
	rep.DurationMS = rep.Duration.Milliseconds()
	return rep, nil
}

// VerifyChains verifies the given ledgers, or every ledger (by id) when ledgerIDs is empty, one
// after the other, each in its own snapshot. onReport (may be nil) sees each report as soon as
// it is ready, so a caller can print while the next ledger is verified.
func VerifyChains(ctx context.Context, db DB, ledgerIDs []string, opts VerifyOptions, onReport func(ChainReport)) ([]ChainReport, error) {
	if len(ledgerIDs) == 0 {
		ids, err := listLedgers(ctx, db)
		if err != nil {
			return nil, err
		}
		ledgerIDs = ids
	}
	reports := make([]ChainReport, 0, len(ledgerIDs))
	for _, id := range ledgerIDs {
		rep, err := VerifyChain(ctx, db, id, opts)
		if err != nil {
			return reports, err
		}
		if onReport != nil {
			onReport(rep)
		}
		reports = append(reports, rep)
	}
	return reports, nil
}

func listLedgers(ctx context.Context, db DB) ([]string, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	rows, err := tx.Query(ctx, `SELECT id FROM ledgers ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list ledgers: %w", err)
	}
	return ids, nil
}

// chainWalker carries the state of the walk from one page to the next: the seq the next entry
// must have and the block_hash it must link to.
type chainWalker struct {
	ledgerID string
	expected int64
	prev     [sha256.Size]byte // block_hash of seq expected-1; zero before seq 1
	problem  *ChainProblem
}

// page verifies the next page of at most limit entries and returns how many rows it read.
func (w *chainWalker) page(ctx context.Context, tx pgx.Tx, limit int) (int, error) {
	rows, err := tx.Query(ctx, entriesPageSQL, w.ledgerID, w.expected-1, limit)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		f          = ledger.CanonicalFields{LedgerID: w.ledgerID}
		prev, hash []byte
		n          int
	)
	for rows.Next() {
		if err := rows.Scan(&f.ID, &f.Seq, &f.DebitAccountID, &f.CreditAccountID, &f.Amount, &f.CurrencyCode,
			&f.AssetType, &f.TransactionType, &f.ReferenceID, &f.FxRate, &f.Metadata, &f.TimestampUTC,
			&f.ReversesEntryID, &prev, &hash); err != nil {
			return n, err
		}
		n++
		if !w.check(&f, prev, hash) {
			break
		}
	}
	rows.Close()
	return n, rows.Err()
}

// check verifies one entry against the walk so far and advances it; false means a problem was
// recorded and the walk ends. The link is checked before the hash so that a changed
// previous_hash is reported as what it is (the hash recomputed over it then fails too).
func (w *chainWalker) check(f *ledger.CanonicalFields, prev, hash []byte) bool {
	at := func(kind, stored, expected, msg string) bool {
		w.problem = &ChainProblem{Chain: ChainEntries, Kind: kind, Seq: f.Seq, EntryID: f.ID, ReferenceID: f.ReferenceID,
			Stored: stored, Expected: expected, Message: msg}
		return false
	}
	if f.Seq != w.expected {
		w.problem = &ChainProblem{Chain: ChainEntries, Kind: ProblemGap, Seq: w.expected,
			Stored: fmt.Sprint(f.Seq), Expected: fmt.Sprint(w.expected),
			Message: fmt.Sprintf("seq %d is missing: the entry after seq %d is seq %d", w.expected, w.expected-1, f.Seq)}
		return false
	}
	if !bytes.Equal(prev, w.prev[:]) {
		what := fmt.Sprintf("the block_hash of seq %d", f.Seq-1)
		if f.Seq == 1 {
			what = "32 zero bytes"
		}
		return at(ProblemLink, hex.EncodeToString(prev), hex.EncodeToString(w.prev[:]),
			fmt.Sprintf("previous_hash of seq %d is not %s", f.Seq, what))
	}
	got := ledger.BlockHash(prev, *f)
	if !bytes.Equal(got, hash) {
		return at(ProblemHashMismatch, hex.EncodeToString(hash), hex.EncodeToString(got),
			fmt.Sprintf("block_hash of seq %d is not sha256(previous_hash || canonical(entry)): the entry was changed after it was hashed", f.Seq))
	}
	copy(w.prev[:], hash)
	w.expected++
	return true
}

// checkHead compares the ledger head with the last entry of the walk.
func (w *chainWalker) checkHead(headSeq int64, headHash []byte) {
	last := w.expected - 1
	switch {
	case headSeq > last:
		w.problem = &ChainProblem{Chain: ChainEntries, Kind: ProblemHead, Seq: last + 1, Stored: fmt.Sprint(headSeq), Expected: fmt.Sprint(last),
			Message: fmt.Sprintf("ledger head_seq is %d but the last entry is seq %d: entries %d..%d are missing", headSeq, last, last+1, headSeq)}
	case headSeq < last:
		w.problem = &ChainProblem{Chain: ChainEntries, Kind: ProblemHead, Seq: headSeq + 1, Stored: fmt.Sprint(headSeq), Expected: fmt.Sprint(last),
			Message: fmt.Sprintf("ledger head_seq is %d but entries run to seq %d: entries after the head", headSeq, last)}
	case !bytes.Equal(headHash, w.prev[:]):
		w.problem = &ChainProblem{Chain: ChainEntries, Kind: ProblemHead, Seq: last, Stored: hex.EncodeToString(headHash), Expected: hex.EncodeToString(w.prev[:]),
			Message: fmt.Sprintf("ledger head_hash is not the block_hash of the last entry (seq %d)", last)}
	}
}

// holdEventsPageSQL reads one page of a ledger's hold events in seq order with their holds' terms,
// rendered as ledger_hold_event_canonical renders them (NUMERIC(38,18) text, jsonb text).
const holdEventsPageSQL = `SELECT e.seq, e.hold_id, h.reference_id, e.event, h.debit_account_id, h.credit_account_id,
       h.amount::text, h.currency_code, h.asset_type, h.transaction_type, coalesce(h.fx_rate::text, ''), h.metadata::text,
       h.timestamp_utc, h.expires_at, e.amount::text, coalesce(e.entry_id, 0), e.entry_seq, e.previous_hash, e.hash
  FROM ledger_hold_events e
  JOIN ledger_holds h ON h.ledger_id = e.ledger_id AND h.id = e.hold_id
 WHERE e.ledger_id = $1 AND e.seq > $2
 ORDER BY e.seq
 LIMIT $3`

// holdWalker verifies a ledger's hold-event chain as chainWalker verifies its entries: seq 1, 2,
// 3, ..., each previous_hash the hash before it, each hash recomputed in Go, the hold head last.
type holdWalker struct {
	ledgerID string
	expected int64
	prev     [sha256.Size]byte
	problem  *ChainProblem
}

func (w *holdWalker) page(ctx context.Context, tx pgx.Tx, limit int) (int, error) {
	rows, err := tx.Query(ctx, holdEventsPageSQL, w.ledgerID, w.expected-1, limit)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		f          = ledger.HoldEventFields{LedgerID: w.ledgerID}
		prev, hash []byte
		n          int
	)
	for rows.Next() {
		f.ExpiresAt = nil
		if err := rows.Scan(&f.Seq, &f.HoldID, &f.ReferenceID, &f.Event, &f.DebitAccountID, &f.CreditAccountID,
			&f.HoldAmount, &f.CurrencyCode, &f.AssetType, &f.TransactionType, &f.FxRate, &f.Metadata, &f.TimestampUTC,
			&f.ExpiresAt, &f.Amount, &f.EntryID, &f.EntrySeq, &prev, &hash); err != nil {
			return n, err
		}
		n++
		if !w.check(&f, prev, hash) {
			break
		}
	}
	rows.Close()
	return n, rows.Err()
}

func (w *holdWalker) check(f *ledger.HoldEventFields, prev, hash []byte) bool {
	at := func(kind, stored, expected, msg string) bool {
		w.problem = &ChainProblem{Chain: ChainHolds, Kind: kind, Seq: f.Seq, ReferenceID: f.ReferenceID,
			Stored: stored, Expected: expected, Message: msg}
		return false
	}
	if f.Seq != w.expected {
		w.problem = &ChainProblem{Chain: ChainHolds, Kind: ProblemGap, Seq: w.expected,
			Stored: fmt.Sprint(f.Seq), Expected: fmt.Sprint(w.expected),
			Message: fmt.Sprintf("hold event seq %d is missing: the event after seq %d is seq %d", w.expected, w.expected-1, f.Seq)}
		return false
	}
	if !bytes.Equal(prev, w.prev[:]) {
		return at(ProblemLink, hex.EncodeToString(prev), hex.EncodeToString(w.prev[:]),
			fmt.Sprintf("previous_hash of hold event seq %d is not the hash of the event before it", f.Seq))
	}
	if got := ledger.HoldEventHash(prev, *f); !bytes.Equal(got, hash) {
		return at(ProblemHashMismatch, hex.EncodeToString(hash), hex.EncodeToString(got),
			fmt.Sprintf("hash of hold event seq %d (%s of hold %q) is not sha256(previous_hash || canonical(event)): the event or its hold was changed",
				f.Seq, f.Event, f.ReferenceID))
	}
	copy(w.prev[:], hash)
	w.expected++
	return true
}

func (w *holdWalker) checkHead(headSeq int64, headHash []byte) {
	last := w.expected - 1
	if headSeq == last && bytes.Equal(headHash, w.prev[:]) {
		return
	}
	w.problem = &ChainProblem{Chain: ChainHolds, Kind: ProblemHead, Seq: min(headSeq, last) + 1,
		Stored:   fmt.Sprintf("%d %s", headSeq, hex.EncodeToString(headHash)),
		Expected: fmt.Sprintf("%d %s", last, hex.EncodeToString(w.prev[:])),
		Message:  fmt.Sprintf("ledger hold head is seq %d but the hold events end at seq %d (or with another hash)", headSeq, last)}
}
