// Package settlement is the GSS master-ledger service (DBIS-first): a settlement between two
// member banks is posted on the master ledger from the source bank's settlement account to the
// destination's, and answered at once; the outbox rows that mirror it to both SCBs are written by
// the posting function in the same transaction, and the worker delivers them later.
package settlement

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
	"dualledger/internal/money"
	"dualledger/internal/outbox"
)

// Statuses of a settlement (and of any entry that has outbox rows).
const (
	StatusDBISCommitted = "DBIS_COMMITTED" // on the master ledger; not yet FINALIZED by every SCB
	StatusSettled       = "SETTLED"        // every outbox row FINALIZED
)

// Codes of settlement errors (in addition to the posting codes).
const (
	CodeUnknownBank                = ledger.CodeUnknownBank
	CodeSettlementAccountNotFound  = ledger.CodeSettlementAccountNotFound
	CodeAmbiguousSettlementAccount = ledger.CodeAmbiguousSettlementAccount
)

// TransactionType of a settlement entry.
const TransactionType = "GSS_SETTLEMENT"

// Request is POST /v1/settlements.
type Request struct {
	NodeID            string `json:"node_id"`
	SourceBankID      string `json:"source_bank_id"`
	DestinationBankID string `json:"destination_bank_id"`
	Amount            string `json:"amount"`
	CurrencyCode      string `json:"currency_code"`
	AssetType         string `json:"asset_type"`
	ReferenceID       string `json:"reference_id"`
}

// Sync is one SCB's view of the mirroring of an entry (one outbox row).
type Sync struct {
	ScbID        string     `json:"scb_id"`
	Status       string     `json:"status"` // QUEUED, PROCESSING, SENT, ACKED, FINALIZED, FAILED
	Attempts     int        `json:"attempts"`
	LastError    *string    `json:"last_error"`
	ScbEntryID   *string    `json:"scb_entry_id"`
	NextAttempt  *time.Time `json:"next_attempt_at"`
	CreatedAt    time.Time  `json:"created_at"`
	FinalizedAt  *time.Time `json:"finalized_at"`
	OutboxID     int64      `json:"outbox_id"`
	LastAttempt  *time.Time `json:"last_attempt_at"`
	LastHTTPCode *int       `json:"last_status_code"`
	// Set on a FAILED row an operator acknowledged as not to be delivered, or on a correction's
	// delivery waived because the SCB held its state (docs/state-machine.md, "Acknowledged
	// failures"): the entry stays DBIS_COMMITTED, knowingly.
	AcknowledgedBy     *string `json:"acknowledged_by,omitempty"`
	AcknowledgedReason *string `json:"acknowledged_reason,omitempty"`
}

// Settlement is a settlement (or any master-ledger entry) with its sync status.
type Settlement struct {
	ReferenceID string       `json:"reference_id"`
	LedgerID    string       `json:"ledger_id"`
	Status      string       `json:"status"`
	Replayed    bool         `json:"replayed"`
	Entry       ledger.Entry `json:"entry"`
	Sync        []Sync       `json:"sync"`
}

// Service posts and reads settlements on one master ledger.
type Service struct {
	db       ledger.DBTX
	post     func(ctx context.Context, ledgerID string, e ledger.EntryInput) (ledger.Result, error)
	ledgerID string
}

// New returns a service on the master ledger ledgerID that posts through post (the server's
// group-commit poster, or a direct batch of one).
func New(db ledger.DBTX, ledgerID string, post func(ctx context.Context, ledgerID string, e ledger.EntryInput) (ledger.Result, error)) *Service {
	return &Service{db: db, post: post, ledgerID: ledgerID}
}

// LedgerID is the master ledger.
func (s *Service) LedgerID() string { return s.ledgerID }

// Settle posts a settlement DBIS-first: it returns as soon as the master ledger has committed the
// entry and its outbox rows, without waiting for any SCB.
func (s *Service) Settle(ctx context.Context, req Request) (Settlement, error) {
	if err := validate(req); err != nil {
		return Settlement{}, err
	}
	asset := req.AssetType
	if asset == "" {
		asset = "fiat"
	}
	if _, err := money.CheckCurrency(req.CurrencyCode); err != nil {
		return Settlement{}, ledger.Errorf(ledger.CodeUnknownCurrency, "%s", err.Error()).WithDetails(map[string]string{"field": "currency_code"})
	}
	if _, err := money.ParseAssetType(asset); err != nil {
		return Settlement{}, ledger.Errorf(ledger.CodeInvalidAssetType, "%s", err.Error()).WithDetails(map[string]string{"field": "asset_type"})
	}
	var src, dst string
	// A retry of a settlement that is already on the ledger goes to the same two accounts, so
	// the database answers replayed (or reference_conflict if the request differs) even if the
	// banks' accounts changed since. The metadata names both banks: a retry that names other
	// banks still conflicts.
	prior, err := ledger.GetEntryByReference(ctx, s.db, s.ledgerID, req.ReferenceID)
	switch {
	case err == nil:
		src, dst = prior.DebitAccountID, prior.CreditAccountID
	case ledger.CodeOf(err) == ledger.CodeNotFound:
		if src, err = s.settlementAccount(ctx, req.SourceBankID, req.CurrencyCode, asset, "source_bank_id"); err != nil {
			return Settlement{}, err
		}
		if dst, err = s.settlementAccount(ctx, req.DestinationBankID, req.CurrencyCode, asset, "destination_bank_id"); err != nil {
			return Settlement{}, err
		}
	default:
		return Settlement{}, err
	}
	meta, _ := json.Marshal(map[string]string{
		"kind": "gss_settlement", "node_id": req.NodeID,
		"source_bank_id": req.SourceBankID, "destination_bank_id": req.DestinationBankID,
	})
	in := ledger.EntryInput{
		DebitAccountID: src, CreditAccountID: dst, Amount: req.Amount, CurrencyCode: req.CurrencyCode,
		AssetType: asset, TransactionType: TransactionType, ReferenceID: req.ReferenceID, Metadata: meta,
	}
	res, err := s.post(ctx, s.ledgerID, in)
	if err != nil {
		return Settlement{}, err
	}
	if !res.OK() {
		return Settlement{}, res.Err()
	}
	out, err := s.Get(ctx, req.ReferenceID)
	if err != nil {
		return Settlement{}, err
	}
	out.Replayed = res.Code == ledger.CodeReplayed
	return out, nil
}

// Get returns the entry with reference_id on the master ledger and each SCB's sync status.
func (s *Service) Get(ctx context.Context, referenceID string) (Settlement, error) {
	e, err := ledger.GetEntryByReference(ctx, s.db, s.ledgerID, referenceID)
	if err != nil {
		return Settlement{}, err
	}
	rows, err := outbox.RowsOfEntry(ctx, s.db, s.ledgerID, referenceID)
	if err != nil {
		return Settlement{}, ledger.FromDB(err)
	}
	syncs := make([]Sync, len(rows))
	for i, r := range rows {
		syncs[i] = Sync{ScbID: r.ScbID, Status: r.Status, Attempts: r.Attempts, LastError: r.LastError, ScbEntryID: r.ScbEntryID,
			NextAttempt: r.NextAttemptAt, CreatedAt: r.CreatedAt, FinalizedAt: r.FinalizedAt, OutboxID: r.ID,
			LastAttempt: r.LastAttemptAt, LastHTTPCode: r.LastStatusCode, AcknowledgedBy: r.AcknowledgedBy, AcknowledgedReason: r.AcknowledgedReason}
	}
	status := StatusDBISCommitted
	if outbox.AllFinalized(rows) {
		status = StatusSettled
	}
	return Settlement{ReferenceID: referenceID, LedgerID: s.ledgerID, Status: status, Entry: e, Sync: syncs}, nil
}

// settlementAccount is the bank's account on the master ledger for the currency and asset type.
func (s *Service) settlementAccount(ctx context.Context, bankID, currency, asset, field string) (string, error) {
	var registered bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM banks WHERE id = $1)`, bankID).Scan(&registered); err != nil {
		return "", ledger.FromDB(err)
	}
	if !registered {
		return "", ledger.Errorf(CodeUnknownBank, "bank %q is not registered (POST /v1/banks)", bankID).
			WithDetails(map[string]string{"field": field, "bank_id": bankID})
	}
	// A closed account is history, not a settlement account (a frozen one is still the bank's:
	// the posting then answers account_inactive).
	rows, err := s.db.Query(ctx, `SELECT id FROM bank_accounts
		WHERE ledger_id = $1 AND bank_id = $2 AND currency_code = $3 AND asset_type = $4 AND status <> 'closed' ORDER BY id`,
		s.ledgerID, bankID, currency, asset)
	if err != nil {
		return "", ledger.FromDB(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", ledger.FromDB(err)
	}
	switch len(ids) {
	case 1:
		return ids[0], nil
	case 0:
		return "", ledger.Errorf(CodeSettlementAccountNotFound, "bank %q has no %s %s account on ledger %q", bankID, currency, asset, s.ledgerID).
			WithDetails(map[string]string{"field": field, "bank_id": bankID, "currency_code": currency, "asset_type": asset, "ledger_id": s.ledgerID})
	default:
		return "", ledger.Errorf(CodeAmbiguousSettlementAccount, "bank %q has %d %s %s accounts on ledger %q (%v): keep exactly one settlement account per currency and asset type",
			bankID, len(ids), currency, asset, s.ledgerID, ids).
			WithDetails(map[string]any{"field": field, "bank_id": bankID, "account_ids": ids})
	}
}

func validate(req Request) error {
	missing := func(f string) error {
		return ledger.Errorf(ledger.CodeInvalidRequest, "%s is required", f).WithDetails(map[string]string{"field": f})
	}
	switch {
	case req.NodeID == "":
		return missing("node_id")
	case req.SourceBankID == "":
		return missing("source_bank_id")
	case req.DestinationBankID == "":
		return missing("destination_bank_id")
	case req.CurrencyCode == "":
		return missing("currency_code")
	case req.ReferenceID == "":
		return missing("reference_id")
	case req.Amount == "":
		return ledger.Errorf(ledger.CodeInvalidAmount, "amount is required (a decimal string such as \"1000.00\")").
			WithDetails(map[string]string{"field": "amount"})
	case req.SourceBankID == req.DestinationBankID:
		return ledger.Errorf(ledger.CodeSameAccount, "source and destination bank are the same (%s)", req.SourceBankID).
			WithDetails(map[string]string{"field": "destination_bank_id"})
	case len(req.NodeID) > 64:
		return ledger.Errorf(ledger.CodeInvalidRequest, "node_id is at most 64 characters").WithDetails(map[string]string{"field": "node_id"})
	case !utf8.ValidString(req.NodeID) || strings.ContainsFunc(req.NodeID, ledger.UnsafeRune):
		// It goes into the entry's metadata, which statements and terminals show.
		return ledger.Errorf(ledger.CodeInvalidRequest, "node_id %q must be UTF-8 text without control characters, line separators or bidirectional overrides", req.NodeID).
			WithDetails(map[string]string{"field": "node_id"})
	}
	// Before any lookup, so the answer does not depend on the banks' accounts (PostBatch checks
	// it again, as for every posting).
	return ledger.ValidateReference("reference_id", req.ReferenceID)
}
