package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
)

// Discrepancy statuses (the workflow) and resolutions.
const (
	StatusOpen         = "OPEN"
	StatusAcknowledged = "ACKNOWLEDGED"
	StatusResolved     = "RESOLVED"

	ResolutionRequeue   = "requeue"
	ResolutionCorrect   = "correct"
	ResolutionExplained = "explained"
)

// Discrepancy is one finding of reconciliation (reconciliation_discrepancies).
type Discrepancy struct {
	ID          int64  `json:"id"`
	LedgerID    string `json:"ledger_id"`
	SCBID       string `json:"scb_id"`
	ReferenceID string `json:"reference_id"`
	Kind        string `json:"kind"`
	Status      string `json:"status"` // OPEN, ACKNOWLEDGED, RESOLVED
	// Cleared: a later run no longer saw the finding (whatever the status); the row stays.
	Cleared      bool            `json:"cleared"`
	ClearedAt    *time.Time      `json:"cleared_at"`
	ClearedRunID *int64          `json:"cleared_run_id"`
	EntrySeq     *int64          `json:"entry_seq"`
	OutboxID     *int64          `json:"outbox_id"`
	Fields       []string        `json:"fields"`
	DBIS         json.RawMessage `json:"dbis"` // our values when last seen (null: we have no delivery)
	SCB          json.RawMessage `json:"scb"`  // the SCB's values when last seen (null: the SCB does not list it)
	FirstRunID   int64           `json:"first_run_id"`
	LastRunID    int64           `json:"last_run_id"`
	FirstSeenAt  time.Time       `json:"first_seen_at"`
	LastSeenAt   time.Time       `json:"last_seen_at"`
	SeenCount    int             `json:"seen_count"`

	AcknowledgedAt        *time.Time `json:"acknowledged_at"`
	AcknowledgedBy        *string    `json:"acknowledged_by"`
	AcknowledgeReason     *string    `json:"acknowledge_reason"`
	ResolvedAt            *time.Time `json:"resolved_at"`
	ResolvedBy            *string    `json:"resolved_by"`
	Resolution            *string    `json:"resolution"`
	ResolutionReason      *string    `json:"resolution_reason"`
	ResolutionOutboxID    *int64     `json:"resolution_outbox_id"`
	CorrectionEntrySeq    *int64     `json:"correction_entry_seq"`
	CorrectionReferenceID *string    `json:"correction_reference_id"`
}

const discrepancyColumns = `id, ledger_id, scb_id, reference_id, kind, status, cleared_at, cleared_run_id, entry_seq, outbox_id, fields,
       dbis, scb, first_run_id, last_run_id, first_seen_at, last_seen_at, seen_count, acknowledged_at, acknowledged_by,
       acknowledge_reason, resolved_at, resolved_by, resolution, resolution_reason, resolution_outbox_id,
       correction_entry_seq, correction_reference_id`

func scanDiscrepancy(row pgx.Row) (Discrepancy, error) {
	var d Discrepancy
	var dbis, scbv []byte
	err := row.Scan(&d.ID, &d.LedgerID, &d.SCBID, &d.ReferenceID, &d.Kind, &d.Status, &d.ClearedAt, &d.ClearedRunID, &d.EntrySeq,
		&d.OutboxID, &d.Fields, &dbis, &scbv, &d.FirstRunID, &d.LastRunID, &d.FirstSeenAt, &d.LastSeenAt, &d.SeenCount,
		&d.AcknowledgedAt, &d.AcknowledgedBy, &d.AcknowledgeReason, &d.ResolvedAt, &d.ResolvedBy, &d.Resolution,
		&d.ResolutionReason, &d.ResolutionOutboxID, &d.CorrectionEntrySeq, &d.CorrectionReferenceID)
	d.Cleared = d.ClearedAt != nil
	if dbis != nil {
		d.DBIS = dbis
	}
	if scbv != nil {
		d.SCB = scbv
	}
	if d.Fields == nil {
		d.Fields = []string{}
	}
	return d, err
}

// Filter selects discrepancies; the zero value lists the live (not cleared) ones of every SCB.
type Filter struct {
	SCBID    string
	LedgerID string
	Kind     string
	Status   string // OPEN, ACKNOWLEDGED, RESOLVED; "" = any
	// Cleared: include the cleared ones too.
	Cleared bool
	AfterID int64
	Limit   int // default 100
	// Ledgers limits the result to these ledgers (a key limited to ledgers); nil = all.
	Ledgers []string
}

// List returns discrepancies in id order after f.AfterID.
func List(ctx context.Context, db ledger.DBTX, f Filter) ([]Discrepancy, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := db.Query(ctx, `SELECT `+discrepancyColumns+` FROM reconciliation_discrepancies
		WHERE id > $1 AND ($2 = '' OR scb_id = $2) AND ($3 = '' OR ledger_id = $3) AND ($4 = '' OR kind = $4)
		  AND ($5 = '' OR status = $5) AND ($6 OR cleared_at IS NULL) AND ($7::text[] IS NULL OR ledger_id = ANY($7))
		ORDER BY id LIMIT $8`, f.AfterID, f.SCBID, f.LedgerID, f.Kind, f.Status, f.Cleared, f.Ledgers, f.Limit)
	if err != nil {
		return nil, ledger.FromDB(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Discrepancy, error) { return scanDiscrepancy(row) })
	if err != nil {
		return nil, ledger.FromDB(err)
	}
	return out, nil
}

// Get returns discrepancy id (unknown_discrepancy if there is none).
func Get(ctx context.Context, db ledger.DBTX, id int64) (Discrepancy, error) {
	d, err := scanDiscrepancy(db.QueryRow(ctx, `SELECT `+discrepancyColumns+` FROM reconciliation_discrepancies WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Discrepancy{}, unknown(id)
	}
	if err != nil {
		return Discrepancy{}, ledger.FromDB(err)
	}
	return d, nil
}

func unknown(id int64) *ledger.Error {
	return ledger.Errorf(ledger.CodeUnknownDiscrepancy, "no discrepancy %d", id)
}

// Acknowledge moves discrepancy id from OPEN to ACKNOWLEDGED (recorded in the operator log).
func Acknowledge(ctx context.Context, db ledger.DBTX, actor string, id int64, reason string) (Discrepancy, error) {
	d, err := scanDiscrepancy(db.QueryRow(ctx, `SELECT `+discrepancyColumns+` FROM discrepancy_acknowledge($1, $2, $3)`, actor, id, reason))
	if err != nil {
		return Discrepancy{}, ledger.FromDB(err)
	}
	return d, nil
}

// Correction is the correcting entry of a `correct` resolution: either Reverse (a reversal of
// our entry of the discrepancy, for its whole amount unless Amount is set) or Entry (any entry
// of the discrepancy's ledger). Its reference_id is always "recon-<discrepancy id>", so that
// resolving again posts nothing twice (the posting is replayed).
type Correction struct {
	Reverse bool
	Amount  string // with Reverse: a partial reversal
	Entry   *ledger.EntryInput
}

// Resolution is how a discrepancy is resolved.
type Resolution struct {
	Kind       string // requeue, correct, explained
	Reason     string
	Correction *Correction // correct only
}

// CorrectionReference is the reference_id of the correcting entry of discrepancy id.
func CorrectionReference(id int64) string { return "recon-" + strconv.FormatInt(id, 10) }

// Resolve resolves discrepancy id. A `correct` resolution posts its correcting entry through the
// posting function and links it in one transaction: if another resolution wins the race, or the
// process dies in between, the correcting entry is rolled back with the link, so money never
// moves for a discrepancy that does not say so. Requeue redelivers through the outbox. The
// database refuses a second resolution (discrepancy_resolved) and records the act in the
// operator log. Returns the resolved discrepancy and, for correct, the posting's result.
func Resolve(ctx context.Context, pool *pgxpool.Pool, actor string, id int64, res Resolution) (Discrepancy, *ledger.Result, error) {
	switch res.Kind {
	case ResolutionRequeue, ResolutionExplained:
		if res.Correction != nil {
			return Discrepancy{}, nil, ledger.Errorf(ledger.CodeInvalidRequest, "a correction goes only with the resolution correct").
				WithDetails(map[string]string{"field": "correction"})
		}
		d, err := resolveIn(ctx, pool, actor, id, res, "")
		return d, nil, err
	case ResolutionCorrect:
		d, err := Get(ctx, pool, id)
		if err != nil {
			return Discrepancy{}, nil, err
		}
		if d.Status == StatusResolved {
			return Discrepancy{}, nil, ledger.Errorf(ledger.CodeDiscrepancyResolved, "discrepancy %d was already resolved (%s)", id, deref(d.Resolution))
		}
		in, err := correctionEntry(ctx, pool, d, res.Correction)
		if err != nil {
			return Discrepancy{}, nil, err
		}
		// A serialization failure or deadlock of the posting rolled everything back: run it again.
		for attempt := 1; ; attempt++ {
			out, posted, err := correctIn(ctx, pool, actor, d, in, res)
			if err == nil || attempt == 3 || !ledger.Retryable(err) {
				return out, posted, err
			}
		}
	default:
		return Discrepancy{}, nil, ledger.Errorf(ledger.CodeInvalidRequest, "resolution must be requeue, correct or explained, not %q", res.Kind).
			WithDetails(map[string]string{"field": "resolution"})
	}
}

// correctIn posts the correcting entry in and resolves d with it, in one transaction.
func correctIn(ctx context.Context, pool *pgxpool.Pool, actor string, d Discrepancy, in ledger.EntryInput, res Resolution) (Discrepancy, *ledger.Result, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return Discrepancy{}, nil, ledger.FromDB(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	results, err := ledger.PostBatchTx(ctx, tx, d.LedgerID, []ledger.EntryInput{in}, true)
	if err != nil {
		return Discrepancy{}, nil, err
	}
	if err := results[0].Err(); err != nil {
		return Discrepancy{}, &results[0], err
	}
	out, err := resolveIn(ctx, tx, actor, d.ID, res, in.ReferenceID)
	if err != nil {
		return Discrepancy{}, nil, err // the correcting entry is rolled back with it
	}
	if err := tx.Commit(ctx); err != nil {
		return Discrepancy{}, nil, ledger.FromDB(err)
	}
	return out, &results[0], nil
}

// resolveIn records the resolution of discrepancy id (with the correcting entry's reference).
func resolveIn(ctx context.Context, db ledger.DBTX, actor string, id int64, res Resolution, ref string) (Discrepancy, error) {
	d, err := scanDiscrepancy(db.QueryRow(ctx, `SELECT `+discrepancyColumns+` FROM discrepancy_resolve($1, $2, $3, $4, $5)`,
		actor, id, res.Kind, res.Reason, ref))
	if err != nil {
		return Discrepancy{}, ledger.FromDB(err)
	}
	return d, nil
}

// correctionEntry builds the correcting entry of d.
func correctionEntry(ctx context.Context, db ledger.DBTX, d Discrepancy, c *Correction) (ledger.EntryInput, error) {
	if c == nil || (c.Reverse == (c.Entry != nil)) {
		return ledger.EntryInput{}, ledger.Errorf(ledger.CodeInvalidRequest,
			"the resolution correct needs either a reversal of the discrepancy's entry or a correcting entry").
			WithDetails(map[string]string{"field": "correction"})
	}
	meta, _ := json.Marshal(map[string]any{"discrepancy_id": d.ID, "kind": d.Kind, "scb_id": d.SCBID, "reference_id": d.ReferenceID})
	if c.Entry != nil {
		in := *c.Entry
		if in.ReferenceID != "" && in.ReferenceID != CorrectionReference(d.ID) {
			return ledger.EntryInput{}, ledger.Errorf(ledger.CodeInvalidRequest, "a correcting entry's reference_id is %s (or empty)", CorrectionReference(d.ID)).
				WithDetails(map[string]string{"field": "correction.reference_id"})
		}
		in.ReferenceID = CorrectionReference(d.ID)
		if len(in.Metadata) == 0 {
			in.Metadata = meta
		}
		return in, nil
	}
	if d.EntrySeq == nil {
		return ledger.EntryInput{}, ledger.Errorf(ledger.CodeResolutionNotApplicable,
			"discrepancy %d (%s) has no entry of ours to reverse; post a correcting entry instead", d.ID, d.Kind)
	}
	var (
		entryID                                          int64
		debit, credit, amount, currency, asset, typ, ref string
	)
	err := db.QueryRow(ctx, `SELECT id, debit_account_id, credit_account_id, trim_scale(amount)::text, currency_code, asset_type,
		transaction_type, reference_id FROM ledger_entries WHERE ledger_id = $1 AND seq = $2`, d.LedgerID, *d.EntrySeq).
		Scan(&entryID, &debit, &credit, &amount, &currency, &asset, &typ, &ref)
	if err != nil {
		return ledger.EntryInput{}, ledger.FromDB(fmt.Errorf("read entry %s/%d: %w", d.LedgerID, *d.EntrySeq, err))
	}
	if c.Amount != "" {
		amount = c.Amount
	}
	return ledger.EntryInput{DebitAccountID: credit, CreditAccountID: debit, Amount: amount, CurrencyCode: currency, AssetType: asset,
		TransactionType: "reversal", ReferenceID: CorrectionReference(d.ID), ReversesEntryID: &entryID, Metadata: meta}, nil
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}
