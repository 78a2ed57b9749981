// Package transform turns a source row into a posting: column names, account and
// transaction type maps, defaults, amount normalisation, currency and timestamp checks,
// deterministic reference ids, metadata. It decides only what can be decided from the row
// itself; whatever depends on the ledger (accounts, funds, duplicates) the posting function
// decides, in order, in the batch.
package transform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Fields are the posting's fields, by their canonical (snake_case) names.
const (
	FieldLedgerID        = "ledger_id"
	FieldDebitAccountID  = "debit_account_id"
	FieldCreditAccountID = "credit_account_id"
	FieldAmount          = "amount"
	FieldCurrencyCode    = "currency_code"
	FieldAssetType       = "asset_type"
	FieldTransactionType = "transaction_type"
	FieldReferenceID     = "reference_id"
	FieldTimestampUTC    = "timestamp_utc"
	FieldFxRate          = "fx_rate"
	FieldMetadata        = "metadata"
	// FieldReversesEntryID is not imported: a row that names a reversed entry is refused unless
	// the mapping turns the column off ("-"), which imports the row as an ordinary entry.
	FieldReversesEntryID = "reverses_entry_id"
)

// Fields lists the canonical fields in a fixed order.
var Fields = []string{FieldLedgerID, FieldDebitAccountID, FieldCreditAccountID, FieldAmount, FieldCurrencyCode, FieldAssetType,
	FieldTransactionType, FieldReferenceID, FieldTimestampUTC, FieldFxRate, FieldMetadata}

// defaultColumns are the column names read without a mapping: the seed script's camelCase
// names (LedgerEntrySource) and their snake_case forms.
var defaultColumns = map[string][]string{
	FieldLedgerID:        {"ledgerId", "ledger_id"},
	FieldDebitAccountID:  {"debitAccountId", "debit_account_id"},
	FieldCreditAccountID: {"creditAccountId", "credit_account_id"},
	FieldAmount:          {"amount"},
	FieldCurrencyCode:    {"currencyCode", "currency_code"},
	FieldAssetType:       {"assetType", "asset_type"},
	FieldTransactionType: {"transactionType", "transaction_type"},
	FieldReferenceID:     {"referenceId", "reference_id"},
	FieldTimestampUTC:    {"timestampUtc", "timestamp_utc"},
	FieldFxRate:          {"fxRate", "fx_rate"},
	FieldMetadata:        {"metadata"},
	FieldReversesEntryID: {"reversesEntryId", "reverses_entry_id"},
}

// Mapping is the mapping file (YAML or JSON). Every part is optional.
type Mapping struct {
	// Columns names the source column (a JSON key for JSON sources; a dotted path reaches into
	// nested objects) of each field, e.g. {"debit_account_id": "from_acct"}.
	Columns map[string]string `json:"columns" yaml:"columns"`
	// Accounts maps source account ids to ledger account ids; an account not in the map keeps its
	// id, unless AccountsStrict.
	Accounts       map[string]string `json:"accounts" yaml:"accounts"`
	AccountsStrict bool              `json:"accounts_strict" yaml:"accounts_strict"`
	// TransactionTypes maps source transaction types; others are kept.
	TransactionTypes map[string]string `json:"transaction_types" yaml:"transaction_types"`
	Defaults         Defaults          `json:"defaults" yaml:"defaults"`
	Amount           AmountFormat      `json:"amount" yaml:"amount"`
	Timestamp        TimestampFormat   `json:"timestamp" yaml:"timestamp"`
	// Unmapped says what becomes of the other columns: "metadata" (the default: they go into the
	// entry's metadata under "source_columns") or "ignore".
	Unmapped string `json:"unmapped" yaml:"unmapped"`
	// CSV, Database and API configure the readers.
	CSV      CSVFormat      `json:"csv" yaml:"csv"`
	Database DatabaseSource `json:"database" yaml:"database"`
	API      APISource      `json:"api" yaml:"api"`
}

// Defaults fill fields the row leaves empty.
type Defaults struct {
	LedgerID        string `json:"ledger_id" yaml:"ledger_id"`
	DebitAccountID  string `json:"debit_account_id" yaml:"debit_account_id"`
	CreditAccountID string `json:"credit_account_id" yaml:"credit_account_id"`
	CurrencyCode    string `json:"currency_code" yaml:"currency_code"`
	AssetType       string `json:"asset_type" yaml:"asset_type"`
	TransactionType string `json:"transaction_type" yaml:"transaction_type"`
}

// AmountFormat describes how the source writes amounts.
type AmountFormat struct {
	// DecimalSeparator is "." (the default) or ",".
	DecimalSeparator string `json:"decimal_separator" yaml:"decimal_separator"`
	// ThousandsSeparators are the characters that may group the integer part's digits in threes
	// ("1,234,567.89"); they are removed only there, and an amount with one anywhere else is
	// refused (transform.normalise). By default "," (when the decimal separator is "."; "." when
	// it is ","), "_", "'", the space, the no-break space and the narrow no-break space.
	ThousandsSeparators *string `json:"thousands_separators" yaml:"thousands_separators"`
}

// TimestampFormat describes the source's timestamps.
type TimestampFormat struct {
	// Layouts are Go time layouts tried in order after RFC 3339 (e.g. "2006-01-02 15:04:05").
	Layouts []string `json:"layouts" yaml:"layouts"`
	// Timezone is the IANA zone of timestamps without an offset (default UTC).
	Timezone string `json:"timezone" yaml:"timezone"`
}

// CSVFormat configures the CSV reader.
type CSVFormat struct {
	Delimiter string `json:"delimiter" yaml:"delimiter"` // one character, default ","
	Comment   string `json:"comment" yaml:"comment"`     // one character, lines starting with it are skipped
}

// DatabaseSource configures the database reader.
type DatabaseSource struct {
	// Table (optionally schema-qualified) or Query; the seed's ledger_entries_legacy by default.
	Table string `json:"table" yaml:"table"`
	Query string `json:"query" yaml:"query"`
	// Key is the ordered, unique column rows are read by (keyset pagination); default "id".
	Key string `json:"key" yaml:"key"`
}

// APISource configures the HTTP JSON reader.
type APISource struct {
	// Items is the dotted path of the array of items in a page (default: "entries", else "data",
	// else "items", else the page itself when it is an array).
	Items string `json:"items" yaml:"items"`
	// Cursor is the dotted path of the next page's cursor in a page (default "next_cursor").
	Cursor string `json:"cursor" yaml:"cursor"`
	// CursorParam and LimitParam are the query parameters (defaults "after" and "limit").
	CursorParam string `json:"cursor_param" yaml:"cursor_param"`
	LimitParam  string `json:"limit_param" yaml:"limit_param"`
	// Limit is the page size asked for (default 500).
	Limit int `json:"limit" yaml:"limit"`
}

// LoadMapping reads a mapping file; YAML unless the name ends in .json. Unknown keys are
// errors (a misspelt key would silently do nothing).
func LoadMapping(path string) (*Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the mapping file: %w", err)
	}
	m, err := ParseMapping(b, strings.EqualFold(filepath.Ext(path), ".json"))
	if err != nil {
		return nil, fmt.Errorf("mapping file %s: %w", path, err)
	}
	return m, nil
}

// ParseMapping parses a mapping (JSON when isJSON, else YAML, of which JSON is a subset) and
// checks it.
func ParseMapping(b []byte, isJSON bool) (*Mapping, error) {
	var m Mapping
	if isJSON {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&m); err != nil && err.Error() != "EOF" {
			return nil, err
		}
	}
	return &m, m.check()
}

func (m *Mapping) check() error {
	for f := range m.Columns {
		if !slices.Contains(Fields, f) && f != FieldReversesEntryID {
			return fmt.Errorf("columns: %q is not a field (one of %s)", f, strings.Join(Fields, ", "))
		}
		if strings.TrimSpace(m.Columns[f]) == "" {
			return fmt.Errorf("columns: %s names no column", f)
		}
	}
	switch m.Unmapped {
	case "", "metadata", "ignore":
	default:
		return fmt.Errorf(`unmapped must be "metadata" or "ignore", got %q`, m.Unmapped)
	}
	switch m.Amount.DecimalSeparator {
	case "", ".", ",":
	default:
		return fmt.Errorf(`amount.decimal_separator must be "." or ",", got %q`, m.Amount.DecimalSeparator)
	}
	if m.Amount.ThousandsSeparators != nil && strings.ContainsAny(*m.Amount.ThousandsSeparators, "0123456789"+m.decimalSep()) {
		return fmt.Errorf("amount.thousands_separators may not contain digits or the decimal separator")
	}
	if m.Timestamp.Timezone != "" {
		if _, err := time.LoadLocation(m.Timestamp.Timezone); err != nil {
			return fmt.Errorf("timestamp.timezone: %w", err)
		}
	}
	for _, l := range m.Timestamp.Layouts {
		if !strings.Contains(l, "2006") {
			return fmt.Errorf("timestamp.layouts: %q has no year (Go layouts write the reference time Mon Jan 2 15:04:05 MST 2006)", l)
		}
	}
	for name, v := range map[string]string{"csv.delimiter": m.CSV.Delimiter, "csv.comment": m.CSV.Comment} {
		if len([]rune(v)) > 1 || v == "\n" || v == "\r" || v == `"` {
			return fmt.Errorf("%s must be one character other than a quote or a line break, got %q", name, v)
		}
	}
	if m.CSV.Delimiter != "" && m.CSV.Delimiter == m.CSV.Comment {
		return fmt.Errorf("csv.delimiter and csv.comment must differ")
	}
	if m.API.Limit < 0 || m.API.Limit > 10000 {
		return fmt.Errorf("api.limit must be between 1 and 10000")
	}
	return nil
}

func (m *Mapping) decimalSep() string {
	if m.Amount.DecimalSeparator == "" {
		return "."
	}
	return m.Amount.DecimalSeparator
}

// Rune returns the first rune of s, 0 for "".
func Rune(s string) rune {
	for _, r := range s {
		return r
	}
	return 0
}
