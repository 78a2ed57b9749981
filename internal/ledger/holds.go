package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Hold states (docs/holds.md): PENDING -> CAPTURED | VOIDED | EXPIRED, each at most once.
const (
	HoldPending  = "PENDING"
	HoldCaptured = "CAPTURED"
	HoldVoided   = "VOIDED"
	HoldExpired  = "EXPIRED"
)

// HoldStatuses lists the states in order (for validation and docs).
var HoldStatuses = []string{HoldPending, HoldCaptured, HoldVoided, HoldExpired}

// HoldInput reserves Amount on DebitAccountID towards CreditAccountID: an entry as a client
// states it (no reverses_entry_id) plus an optional expiry (RFC 3339, in the future).
type HoldInput struct {
	DebitAccountID  string          `json:"debit_account_id"`
	CreditAccountID string          `json:"credit_account_id"`
	Amount          string          `json:"amount"`
	CurrencyCode    string          `json:"currency_code"`
	AssetType       string          `json:"asset_type"`
	TransactionType string          `json:"transaction_type"`
	ReferenceID     string          `json:"reference_id"`
	FxRate          *string         `json:"fx_rate,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
	TimestampUTC    *string         `json:"timestamp_utc,omitempty"`
	ExpiresAt       *string         `json:"expires_at,omitempty"`
}

// CaptureInput captures a hold: the entry's own reference id, and the amount to post (nil: the
// whole hold). The rest of the reservation goes back to available.
type CaptureInput struct {
	ReferenceID string  `json:"reference_id"`
	Amount      *string `json:"amount,omitempty"`
}

// Hold is a reservation and how it ended.
type Hold struct {
	ID              int64           `json:"id"`
	LedgerID        string          `json:"ledger_id"`
	ReferenceID     string          `json:"reference_id"`
	Status          string          `json:"status"`
	DebitAccountID  string          `json:"debit_account_id"`
	CreditAccountID string          `json:"credit_account_id"`
	Amount          string          `json:"amount"`
	CurrencyCode    string          `json:"currency_code"`
	AssetType       string          `json:"asset_type"`
	TransactionType string          `json:"transaction_type"`
	FxRate          *string         `json:"fx_rate"`
	Metadata        json.RawMessage `json:"metadata"`
	TimestampUTC    time.Time       `json:"timestamp_utc"`
	ExpiresAt       *time.Time      `json:"expires_at"`
	CreatedAt       time.Time       `json:"created_at"`
	// CreatedSeq and ResolvedSeq are the ledger's entry head seq when the hold was made and right
	// after it was captured, voided or expired (balances as of a seq count it from there).
	CreatedSeq         int64      `json:"created_seq"`
	ResolvedAt         *time.Time `json:"resolved_at"`
	ResolvedSeq        *int64     `json:"resolved_seq"`
	CapturedAmount     *string    `json:"captured_amount"`
	CaptureEntryID     *int64     `json:"capture_entry_id"`
	CaptureReferenceID *string    `json:"capture_reference_id"`
}

// HoldResult is the outcome of a hold operation: Code is created (done now), replayed (done
// before, the same request) or a rejection (nothing changed). Hold is set whenever the hold
// exists; Entry for a capture that is created or replayed.
type HoldResult struct {
	Code    string
	Message string
	Details json.RawMessage
	Hold    *Hold
	Entry   *Entry
}

// OK reports whether the operation took effect (now or before).
func (r HoldResult) OK() bool { return r.Code == CodeCreated || r.Code == CodeReplayed }

// Err returns the rejection as an *Error, or nil.
func (r HoldResult) Err() error {
	if r.OK() {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message, Details: r.Details}
}

// TxBeginner starts a transaction and sends batches: a pool, a connection, or a transaction (a
// savepoint).
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// HoldOp is one operation of an atomic group (HoldOps): exactly one of Create, Capture, Void.
type HoldOp struct {
	Create *HoldInput
	// HoldReferenceID names the hold to capture or void.
	HoldReferenceID string
	Capture         *CaptureInput
	Void            bool
}

// CreateHold reserves funds (create_ledger_hold).
func CreateHold(ctx context.Context, db TxBeginner, ledgerID string, in HoldInput) (HoldResult, error) {
	return one(HoldOps(ctx, db, ledgerID, []HoldOp{{Create: &in}}))
}

// CaptureHold posts a hold's entry and releases its reservation (capture_ledger_hold).
func CaptureHold(ctx context.Context, db TxBeginner, ledgerID, holdRef string, c CaptureInput) (HoldResult, error) {
	return one(HoldOps(ctx, db, ledgerID, []HoldOp{{HoldReferenceID: holdRef, Capture: &c}}))
}

// VoidHold releases a hold (void_ledger_hold).
func VoidHold(ctx context.Context, db TxBeginner, ledgerID, holdRef string) (HoldResult, error) {
	return one(HoldOps(ctx, db, ledgerID, []HoldOp{{HoldReferenceID: holdRef, Void: true}}))
}

func one(rs []HoldResult, err error) (HoldResult, error) {
	if err != nil {
		return HoldResult{}, err
	}
	return rs[0], nil
}

// MaxHoldOps bounds an atomic group of hold operations.
const MaxHoldOps = 100

// HoldOps runs ops in one transaction, all or nothing: if any is rejected, none takes effect
// (the results then show the rejection at its position and not_applied for the operations
// that would have been done). This is how the legs of a cross-currency transfer are reserved,
// captured or voided together (docs/holds.md). A group that lost a serialization race is run
// again (as PostBatch does).
func HoldOps(ctx context.Context, db TxBeginner, ledgerID string, ops []HoldOp) ([]HoldResult, error) {
	if len(ops) == 0 || len(ops) > MaxHoldOps {
		return nil, Errorf(CodeInvalidRequest, "a group holds 1 to %d hold operations, got %d", MaxHoldOps, len(ops))
	}
	calls := make([]holdCall, len(ops))
	for i, op := range ops {
		c, err := prepareHoldOp(op)
		if err != nil {
			return nil, err
		}
		calls[i] = c
	}
	run := runHoldOps
	if len(calls) == 1 && calls[0].reject == nil {
		run = runHoldOne
	}
	for attempt := 1; ; attempt++ {
		rs, err := run(ctx, db, ledgerID, calls)
		if err == nil || attempt == maxPostAttempts || !retryable(err) {
			return rs, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// holdCall is one prepared SQL call, or a rejection found before the database.
type holdCall struct {
	sql    string
	args   []any
	reject *Error
	ref    string // the hold's reference (for reading it back)
	capRef string // a capture's entry reference (for reading the entry back)
}

func prepareHoldOp(op HoldOp) (holdCall, error) {
	n := 0
	if op.Create != nil {
		n++
	}
	if op.Capture != nil {
		n++
	}
	if op.Void {
		n++
	}
	if n != 1 {
		return holdCall{}, errors.New("a hold operation is exactly one of create, capture, void")
	}
	switch {
	case op.Create != nil:
		in := *op.Create
		c := holdCall{ref: in.ReferenceID}
		if in.ReferenceID != "" {
			if e := checkReference("reference_id", in.ReferenceID); e != nil {
				c.reject = e
				return c, nil
			}
		}
		body, err := json.Marshal(in)
		if err != nil {
			return c, fmt.Errorf("encode hold: %w", err)
		}
		c.sql = `SELECT result, hold_id, entry_id, message, details FROM create_ledger_hold($1, $2::jsonb)`
		c.args = []any{body}
		return c, nil
	case op.Capture != nil:
		c := holdCall{ref: op.HoldReferenceID, capRef: op.Capture.ReferenceID}
		if e := checkReference("reference_id", op.Capture.ReferenceID); op.Capture.ReferenceID != "" && e != nil {
			c.reject = e
			return c, nil
		}
		body, err := json.Marshal(op.Capture)
		if err != nil {
			return c, fmt.Errorf("encode capture: %w", err)
		}
		c.sql = `SELECT result, hold_id, entry_id, message, details FROM capture_ledger_hold($1, $2, $3::jsonb)`
		c.args = []any{op.HoldReferenceID, body}
		return c, nil
	default:
		return holdCall{ref: op.HoldReferenceID,
			sql:  `SELECT result, hold_id, entry_id, message, details FROM void_ledger_hold($1, $2)`,
			args: []any{op.HoldReferenceID}}, nil
	}
}

// runHoldOne runs a single operation in one round trip: the function call and the reads of the
// hold and of a capture's entry go as one pipelined batch, which PostgreSQL runs as one implicit
// transaction (the reads see the function's writes, and the ledger lock is held no longer than
// the server takes to run them: no round trip to the client in between).
func runHoldOne(ctx context.Context, db TxBeginner, ledgerID string, calls []holdCall) ([]HoldResult, error) {
	c := calls[0]
	b := &pgx.Batch{}
	b.Queue(c.sql, append([]any{ledgerID}, c.args...)...)
	b.Queue(`SELECT `+holdColumns+` FROM ledger_holds WHERE ledger_id = $1 AND reference_id = $2`, ledgerID, c.ref)
	if c.capRef != "" {
		b.Queue(`SELECT `+entryColumns+` FROM ledger_entries WHERE ledger_id = $1 AND reference_id = $2`, ledgerID, c.capRef)
	}
	br := db.SendBatch(ctx, b)
	defer br.Close()
	var (
		r       HoldResult
		holdID  *int64
		entryID *int64
		msg     *string
		details []byte
	)
	if err := br.QueryRow().Scan(&r.Code, &holdID, &entryID, &msg, &details); err != nil {
		return nil, FromDB(err)
	}
	r.Message = deref(msg)
	if len(details) > 0 {
		r.Details = details
	}
	h, err := scanHold(br.QueryRow())
	switch {
	case err == nil:
		if holdID != nil && h.ID == *holdID {
			r.Hold = &h
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, FromDB(err)
	}
	if c.capRef != "" {
		e, err := scanEntry(br.QueryRow())
		switch {
		case err == nil:
			if entryID != nil && e.ID == *entryID && r.OK() {
				r.Entry = &e
			}
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, FromDB(err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, FromDB(err)
	}
	return []HoldResult{r}, nil
}

func runHoldOps(ctx context.Context, db TxBeginner, ledgerID string, calls []holdCall) ([]HoldResult, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, FromDB(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	out := make([]HoldResult, len(calls))
	firstBad := -1
	for i, c := range calls {
		if c.reject != nil {
			out[i] = HoldResult{Code: c.reject.Code, Message: c.reject.Message, Details: c.reject.Details}
			if firstBad < 0 {
				firstBad = i
			}
			continue
		}
		if firstBad >= 0 {
			continue // not run: the group will not be committed
		}
		var (
			r       HoldResult
			holdID  *int64
			entryID *int64
			msg     *string
			details []byte
		)
		args := append([]any{ledgerID}, c.args...)
		if err := tx.QueryRow(ctx, c.sql, args...).Scan(&r.Code, &holdID, &entryID, &msg, &details); err != nil {
			return nil, FromDB(err)
		}
		r.Message = deref(msg)
		if len(details) > 0 {
			r.Details = details
		}
		if holdID != nil {
			h, err := getHold(ctx, tx, ledgerID, "id = $2", *holdID)
			if err != nil {
				return nil, err
			}
			r.Hold = &h
		}
		if entryID != nil && r.OK() {
			e, err := scanEntry(tx.QueryRow(ctx, `SELECT `+entryColumns+` FROM ledger_entries WHERE ledger_id = $1 AND id = $2`, ledgerID, *entryID))
			if err != nil {
				return nil, FromDB(err)
			}
			r.Entry = &e
		}
		out[i] = r
		if !r.OK() {
			firstBad = i
		}
	}
	if firstBad >= 0 {
		if len(calls) > 1 {
			for i := range out {
				if i != firstBad && (out[i].Code == "" || out[i].OK()) {
					out[i] = HoldResult{Code: CodeNotApplied,
						Message: fmt.Sprintf("not applied: operation %d of this group was rejected (%s)", firstBad+1, out[firstBad].Code),
						Details: mustJSON(map[string]any{"rejected_operation": firstBad + 1, "rejected_result": out[firstBad].Code})}
				}
			}
		}
		return out, nil // rolled back by the deferred Rollback
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, FromDB(err)
	}
	return out, nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

const holdColumns = `id, ledger_id, reference_id, status, debit_account_id, credit_account_id, amount::text, currency_code,
	asset_type, transaction_type, fx_rate::text, metadata, timestamp_utc, expires_at, created_at, created_seq, resolved_at,
	resolved_seq, captured_amount::text, capture_entry_id, capture_reference_id`

func scanHold(row pgx.Row) (Hold, error) {
	var h Hold
	var meta []byte
	err := row.Scan(&h.ID, &h.LedgerID, &h.ReferenceID, &h.Status, &h.DebitAccountID, &h.CreditAccountID, &h.Amount,
		&h.CurrencyCode, &h.AssetType, &h.TransactionType, &h.FxRate, &meta, &h.TimestampUTC, &h.ExpiresAt, &h.CreatedAt,
		&h.CreatedSeq, &h.ResolvedAt, &h.ResolvedSeq, &h.CapturedAmount, &h.CaptureEntryID, &h.CaptureReferenceID)
	h.Amount = displayAmount(h.Amount, h.CurrencyCode)
	h.CapturedAmount = displayAmountPtr(h.CapturedAmount, h.CurrencyCode)
	if h.FxRate != nil {
		s := trimDecimal(*h.FxRate)
		h.FxRate = &s
	}
	h.Metadata = meta
	h.TimestampUTC = h.TimestampUTC.UTC()
	h.CreatedAt = h.CreatedAt.UTC()
	for _, t := range []*time.Time{h.ExpiresAt, h.ResolvedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return h, err
}

func getHold(ctx context.Context, db DBTX, ledgerID, where string, arg any) (Hold, error) {
	h, err := scanHold(db.QueryRow(ctx, `SELECT `+holdColumns+` FROM ledger_holds WHERE ledger_id = $1 AND `+where, ledgerID, arg))
	if err != nil {
		return Hold{}, FromDB(err)
	}
	return h, nil
}

// GetHold returns the hold with reference_id ref.
func GetHold(ctx context.Context, db DBTX, ledgerID, ref string) (Hold, error) {
	h, err := scanHold(db.QueryRow(ctx, `SELECT `+holdColumns+` FROM ledger_holds WHERE ledger_id = $1 AND reference_id = $2`, ledgerID, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, lerr := GetLedger(ctx, db, ledgerID); lerr != nil {
			return Hold{}, lerr
		}
		return Hold{}, Errorf(CodeUnknownHold, "no hold with reference_id %q in ledger %q", ref, ledgerID).
			WithDetails(map[string]string{"ledger_id": ledgerID, "hold_reference_id": ref})
	}
	if err != nil {
		return Hold{}, FromDB(err)
	}
	return h, nil
}

// HoldFilter selects holds for ListHolds.
type HoldFilter struct {
	Status  string // one of HoldStatuses, or "" for all
	Account string // debit or credit account, or "" for all
	Bank    string // only holds touching an account of this member bank, or "" for all
	AfterID int64  // keyset: holds with id > AfterID
	Limit   int    // at most this many
}

// ListHolds returns up to f.Limit holds of a ledger by id, after f.AfterID.
func ListHolds(ctx context.Context, db DBTX, ledgerID string, f HoldFilter) ([]Hold, error) {
	if _, err := GetLedger(ctx, db, ledgerID); err != nil {
		return nil, err
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := db.Query(ctx, `SELECT `+holdColumns+` FROM ledger_holds h
		WHERE ledger_id = $1 AND id > $2 AND ($3 = '' OR status = $3)
		  AND ($4 = '' OR debit_account_id = $4 OR credit_account_id = $4)
		  AND ($6 = '' OR EXISTS (SELECT 1 FROM bank_accounts a WHERE a.ledger_id = $1 AND a.bank_id = $6
		                             AND a.id IN (h.debit_account_id, h.credit_account_id)))
		ORDER BY id LIMIT $5`, ledgerID, f.AfterID, f.Status, f.Account, f.Limit, f.Bank)
	if err != nil {
		return nil, FromDB(err)
	}
	defer rows.Close()
	out := []Hold{}
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, FromDB(err)
		}
		out = append(out, h)
	}
	return out, FromDB(rows.Err())
}

// ExpiredHold is a hold the sweeper released.
type ExpiredHold struct {
	LedgerID    string    `json:"ledger_id"`
	HoldID      int64     `json:"hold_id"`
	ReferenceID string    `json:"reference_id"`
	AccountID   string    `json:"account_id"`
	Amount      string    `json:"amount"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// LedgersWithDueHolds returns the ledgers that have PENDING holds whose expires_at has passed.
func LedgersWithDueHolds(ctx context.Context, db DBTX) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT DISTINCT ledger_id FROM ledger_holds
		WHERE status = 'PENDING' AND expires_at <= now() ORDER BY ledger_id`)
	if err != nil {
		return nil, FromDB(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, FromDB(err)
}

// ExpireHolds releases every PENDING hold whose expires_at has passed, in the given ledgers (all
// ledgers with due holds when empty), batch holds per transaction, and returns them. Each batch
// is its own transaction: a long sweep never holds a ledger's lock for long.
func ExpireHolds(ctx context.Context, db DBTX, ledgerIDs []string, batch int) ([]ExpiredHold, error) {
	if batch <= 0 {
		batch = 1000
	}
	if len(ledgerIDs) == 0 {
		ids, err := LedgersWithDueHolds(ctx, db)
		if err != nil {
			return nil, err
		}
		ledgerIDs = ids
	}
	out := []ExpiredHold{}
	for _, l := range ledgerIDs {
		for {
			rows, err := db.Query(ctx, `SELECT hold_id, reference_id, account_id, amount::text, expires_at, c.currency_code
				FROM expire_ledger_holds($1, $2) x
				CROSS JOIN LATERAL (SELECT currency_code FROM ledger_holds h WHERE h.ledger_id = $1 AND h.id = x.hold_id) c`, l, batch)
			if err != nil {
				return out, FromDB(err)
			}
			n := 0
			for rows.Next() {
				var e ExpiredHold
				var ccy string
				if err := rows.Scan(&e.HoldID, &e.ReferenceID, &e.AccountID, &e.Amount, &e.ExpiresAt, &ccy); err != nil {
					rows.Close()
					return out, FromDB(err)
				}
				e.LedgerID = l
				e.Amount = displayAmount(e.Amount, ccy)
				e.ExpiresAt = e.ExpiresAt.UTC()
				out = append(out, e)
				n++
			}
			if err := rows.Err(); err != nil {
				return out, FromDB(err)
			}
			if n < batch {
				break
			}
		}
	}
	return out, nil
}
