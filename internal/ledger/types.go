// Package ledger is the posting module: ledgers, accounts, entries and the only Go code that
// writes entries (through the database's post_ledger_entries function). Everything that can make
// the ledger wrong is decided in PostgreSQL; this package adds group commit, typed results and
// the queries the API, CLI and tools need.
package ledger

import (
	"encoding/json"
	"time"
)

// EntryInput is one posting as a client states it. Values travel to the database as written
// (amounts as decimal strings, the timestamp as RFC 3339 text), and the database validates them:
// one set of rules for the API, the CLI, the Go module and psql.
type EntryInput struct {
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
	ReversesEntryID *int64          `json:"reverses_entry_id,omitempty"`
}

// Result is the outcome of one posting.
type Result struct {
	Index   int    // 0-based position in the batch
	Code    string // CodeCreated, CodeReplayed, or a rejection
	Message string
	Details json.RawMessage

	// Set for created and replayed (the original entry for a replay).
	EntryID       int64
	Seq           int64
	BlockHash     string // hex
	PreviousHash  string // hex
	TimestampUTC  time.Time
	Metadata      json.RawMessage // as stored (jsonb's rendering); a replay's is the original's
	RecordedAt    time.Time
	DebitBalance  string // decimal, the debit account's balance right after the entry
	CreditBalance string
}

// OK reports whether the posting is in the ledger (created now or earlier).
func (r Result) OK() bool { return r.Code == CodeCreated || r.Code == CodeReplayed }

// Err returns the rejection as an *Error, or nil for created and replayed.
func (r Result) Err() error {
	if r.OK() {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message, Details: r.Details}
}

// Entry is a committed entry.
type Entry struct {
	ID              int64           `json:"id"`
	LedgerID        string          `json:"ledger_id"`
	Seq             int64           `json:"seq"`
	DebitAccountID  string          `json:"debit_account_id"`
	CreditAccountID string          `json:"credit_account_id"`
	Amount          string          `json:"amount"`
	CurrencyCode    string          `json:"currency_code"`
	AssetType       string          `json:"asset_type"`
	TransactionType string          `json:"transaction_type"`
	ReferenceID     string          `json:"reference_id"`
	FxRate          *string         `json:"fx_rate"`
	Metadata        json.RawMessage `json:"metadata"`
	TimestampUTC    time.Time       `json:"timestamp_utc"`
	RecordedAt      time.Time       `json:"recorded_at"`
	PreviousHash    string          `json:"previous_hash"`
	BlockHash       string          `json:"block_hash"`
	ReversesEntryID *int64          `json:"reverses_entry_id"`
	// The accounts' balances right after the entry; null when the reader may not see that
	// account (a member bank's key sees only its own bank's balances).
	DebitBalanceAfter  *string `json:"debit_balance_after"`
	CreditBalanceAfter *string `json:"credit_balance_after"`
}

// Ledger is a hash-chained sequence of entries.
type Ledger struct {
	ID        string    `json:"id"`
	HeadSeq   int64     `json:"head_seq"`
	HeadHash  string    `json:"head_hash"`
	CreatedAt time.Time `json:"created_at"`
}

// Account is a balance holder in one ledger.
type Account struct {
	LedgerID         string          `json:"ledger_id"`
	ID               string          `json:"id"`
	BankID           *string         `json:"bank_id"`
	CurrencyCode     string          `json:"currency_code"`
	AssetType        string          `json:"asset_type"`
	Balance          string          `json:"balance"`
	AvailableBalance string          `json:"available_balance"`
	ReservedBalance  string          `json:"reserved_balance"`
	OverdraftLimit   string          `json:"overdraft_limit"` // decimal, or "unlimited"
	Status           string          `json:"status"`
	Metadata         json.RawMessage `json:"metadata"`
	CreatedAt        time.Time       `json:"created_at"`
	UpdatedAt        time.Time       `json:"updated_at"`
}

// AccountAsOf is an account with its balances as of a point of the ledger (GetAccountAsOf): after
// entry AsOfSeq and every hold event recorded while it was the ledger's head. AsOf is the time
// asked for, when the point was given as a time. Both are null for the current balances.
type AccountAsOf struct {
	Account
	AsOfSeq *int64     `json:"as_of_seq"`
	AsOf    *time.Time `json:"as_of"`
}

// AccountInput creates an account.
type AccountInput struct {
	ID             string          `json:"id"`
	CurrencyCode   string          `json:"currency_code"`
	AssetType      string          `json:"asset_type"`
	BankID         *string         `json:"bank_id,omitempty"`
	OverdraftLimit *string         `json:"overdraft_limit,omitempty"` // decimal string, default "0"; "unlimited"
	Metadata       json.RawMessage `json:"metadata,omitempty"`
}

// Bank is a member bank (SCB) whose own ledger we mirror.
type Bank struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}
