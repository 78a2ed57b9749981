package httpapi

import (
	"encoding/json"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/oplog"
)

// The request and response bodies of the API. The OpenAPI document's schemas are derived from
// these types (and from internal/ledger's EntryInput, AccountInput, Entry, Account, Ledger and
// Bank) by reflection, so the document cannot drift from what the handlers encode and decode.
// A field without omitempty is documented as required (requests) or always present (responses).

// ErrorResponse is the envelope of every error.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is a stable error: code (docs/error-codes.md), a message for humans, and details
// (a JSON object, {} when there are none) such as the offending field or account.
type ErrorBody struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details"`
}

// CreateLedgerRequest creates a ledger.
type CreateLedgerRequest struct {
	ID string `json:"id"`
}

// LedgerList lists all ledgers.
type LedgerList struct {
	Ledgers   []ledger.Ledger `json:"ledgers"`
	NextAfter *string         `json:"next_after"`
}

// AccountList is one page of a ledger's accounts, by id.
type AccountList struct {
	Accounts  []ledger.Account `json:"accounts"`
	NextAfter *string          `json:"next_after"`
}

// PostingResponse answers a single posting: created (201) or replayed (200, with the original
// entry).
type PostingResponse struct {
	Result   string       `json:"result"`
	Replayed bool         `json:"replayed"`
	Entry    ledger.Entry `json:"entry"`
}

// BatchRequest posts several entries to one ledger in one transaction.
type BatchRequest struct {
	Atomic  bool                `json:"atomic,omitempty"`
	Entries []ledger.EntryInput `json:"entries"`
}

// batchWire is how BatchRequest is decoded: each entry is decoded on its own by DecodeEntry's
// rules, so that an error can name the entry. TestBatchWireMatchesBatchRequest keeps the two
// field sets equal.
type batchWire struct {
	Atomic  bool              `json:"atomic,omitempty"`
	Entries []json.RawMessage `json:"entries"`
}

// BatchResponse answers a batch: one result per entry, in request order.
type BatchResponse struct {
	Atomic   bool          `json:"atomic"`
	Applied  bool          `json:"applied"`
	Created  int           `json:"created"`
	Replayed int           `json:"replayed"`
	Rejected int           `json:"rejected"`
	Results  []BatchResult `json:"results"`
}

// BatchRejectedResponse answers an atomic batch of which nothing was applied (422): the
// results say which entries were rejected and why (the others answer not_applied).
type BatchRejectedResponse struct {
	BatchResponse
	Error ErrorBody `json:"error"`
}

// BatchResult is the outcome of one entry of a batch: entry for created and replayed, error for
// every other result.
type BatchResult struct {
	Index  int           `json:"index"`
	Result string        `json:"result"`
	Entry  *ledger.Entry `json:"entry,omitempty"`
	Error  *ErrorBody    `json:"error,omitempty"`
}

// EntryList is one page of a ledger's entries, in seq order.
type EntryList struct {
	Entries      []ledger.Entry `json:"entries"`
	NextAfterSeq *int64         `json:"next_after_seq"`
}

// RegisterBankRequest registers a member bank (SCB).
type RegisterBankRequest struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// BankList lists the registered banks.
type BankList struct {
	Banks     []ledger.Bank `json:"banks"`
	NextAfter *string       `json:"next_after"`
}

// KeyList is every API key (never their tokens), oldest first.
type KeyList struct {
	Keys []auth.Key `json:"keys"`
}

// RevokeKeyRequest revokes an API key.
type RevokeKeyRequest struct {
	Reason string `json:"reason"`
}

// OperatorActionList is one page of the operator log, in seq order.
type OperatorActionList struct {
	Actions      []oplog.Action `json:"actions"`
	NextAfterSeq *int64         `json:"next_after_seq"`
}

// Status answers /healthz and /readyz.
type Status struct {
	Status string `json:"status"`
}
