package scb

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"dualledger/internal/money"
)

// Entry statuses an SCB reports, in the order an entry goes through them. The outbox maps
// ACCEPTED to SENT, POSTED to ACKED and FINAL to FINALIZED (docs/design.md §4, docs/state-machine.md).
const (
	StatusAccepted = "ACCEPTED" // received and durably recorded, not yet in the SCB's ledger
	StatusPosted   = "POSTED"   // in the SCB's ledger, may still be reversed by the SCB
	StatusFinal    = "FINAL"    // irrevocable
)

// ValidStatus reports whether s is one of the statuses above.
func ValidStatus(s string) bool {
	return s == StatusAccepted || s == StatusPosted || s == StatusFinal
}

// Entry is the JSON body of POST /v1/entries: one committed ledger entry as the SCB receives it.
//
// The SCB compares a retried body with the one it stored under the idempotency key and answers
// 409 if they differ, so the same outbox row must always produce the same bytes. That is why
// this is a struct (fixed field order) of plain values copied from the immutable ledger entry,
// why Body normalises the timestamp to UTC, and why Amount is text: the worker must pass the
// amount exactly as the ledger renders it, never a re-formatted number.
type Entry struct {
	ReferenceID     string    `json:"reference_id"`
	LedgerID        string    `json:"ledger_id"`
	DebitAccountID  string    `json:"debit_account_id"`
	CreditAccountID string    `json:"credit_account_id"`
	Amount          string    `json:"amount"` // decimal string, e.g. "1000.00"
	CurrencyCode    string    `json:"currency_code"`
	AssetType       string    `json:"asset_type"`
	TransactionType string    `json:"transaction_type"`
	DBISEntryID     int64     `json:"dbis_entry_id"` // the entry's id in our (DBIS) ledger
	BlockHash       string    `json:"block_hash"`    // hex, the entry's hash-chain link
	TimestampUTC    time.Time `json:"timestamp_utc"` // business time, sent as RFC 3339 in UTC
}

// IdempotencyKey is the key the SCB deduplicates by: "<ledger_id>:<reference_id>".
func (e Entry) IdempotencyKey() string { return e.LedgerID + ":" + e.ReferenceID }

// Body is the canonical JSON of e: the bytes the client sends. Equal entries give equal bytes
// whatever time zone TimestampUTC was read in.
func (e Entry) Body() ([]byte, error) {
	e.TimestampUTC = e.TimestampUTC.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode entry %s: %w", e.IdempotencyKey(), err)
	}
	return b, nil
}

var (
	amountRE = regexp.MustCompile(`^[0-9]{1,20}(\.[0-9]{1,18})?$`)
	// currencyRE is the shape of a currency code only (internal/money's pattern, the schema's
	// currencies_code_format): whether an SCB knows the code is its business.
	currencyRE  = regexp.MustCompile(money.CurrencyCodePattern)
	blockHashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate checks what an SCB requires of an entry and returns every problem found, joined, or
// nil. The simulator answers 422 with these; the client does not call it, so that an SCB with
// other rules, not our guess of them, decides what it accepts.
func (e Entry) Validate() error {
	var errs []error
	required := func(name, v string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	required("reference_id", e.ReferenceID)
	required("ledger_id", e.LedgerID)
	required("debit_account_id", e.DebitAccountID)
	required("credit_account_id", e.CreditAccountID)
	required("transaction_type", e.TransactionType)
	if e.DebitAccountID != "" && e.DebitAccountID == e.CreditAccountID {
		errs = append(errs, errors.New("debit_account_id and credit_account_id must differ"))
	}
	switch {
	case !amountRE.MatchString(e.Amount):
		errs = append(errs, fmt.Errorf("amount %q is not a positive decimal string", e.Amount))
	case strings.Trim(e.Amount, "0.") == "":
		errs = append(errs, errors.New("amount must be positive"))
	}
	if !currencyRE.MatchString(e.CurrencyCode) {
		errs = append(errs, fmt.Errorf("currency_code %q is not an ISO 4217 code", e.CurrencyCode))
	}
	// The asset types of docs/design.md §3: internal/money's list, the one the schema and the
	// posting function are held to (internal/money/schema_test.go).
	if _, err := money.ParseAssetType(e.AssetType); err != nil {
		errs = append(errs, err)
	}
	if e.DBISEntryID <= 0 {
		errs = append(errs, errors.New("dbis_entry_id must be a positive integer"))
	}
	if !blockHashRE.MatchString(e.BlockHash) {
		errs = append(errs, errors.New("block_hash must be 64 lowercase hex digits"))
	}
	if e.TimestampUTC.IsZero() {
		errs = append(errs, errors.New("timestamp_utc is required"))
	} else if y := e.TimestampUTC.UTC().Year(); y < 0 || y > 9999 {
		errs = append(errs, errors.New("timestamp_utc must be within the years 0000 to 9999 in UTC"))
	}
	return errors.Join(errs...)
}

// EntryView is the SCB's view of one entry: GET /v1/entries/{reference_id} and the items of
// GET /v1/entries.
type EntryView struct {
	SCBEntryID string `json:"scb_entry_id"`
	Entry
	Status   string    `json:"status"`
	PostedAt time.Time `json:"posted_at"`
}

// Page is one page of GET /v1/entries?since=&limit=, in the SCB's post order. NextSince is the
// cursor to pass as since for the following page (it is the since that was passed when the page
// is empty, so a caller can poll for new entries with it); HasMore says whether entries after
// this page existed when it was read.
type Page struct {
	Entries   []EntryView `json:"entries"`
	NextSince string      `json:"next_since"`
	HasMore   bool        `json:"has_more"`
}

// PostResult is the JSON body of a successful POST /v1/entries.
type PostResult struct {
	SCBEntryID string `json:"scb_entry_id"`
	Status     string `json:"status"`
}

// ErrorBody is the JSON error body of the SCB API (the same shape as ours, docs/design.md §9).
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of an ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}
