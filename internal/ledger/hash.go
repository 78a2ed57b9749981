package ledger

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"time"
)

// ZeroHash is the previous_hash of seq 1.
var ZeroHash = make([]byte, sha256.Size)

// unitSeparator joins the fields of the canonical encoding (docs/hash-chain.md). No field can
// contain it (the database's CHECK constraints and jsonb's escaping guarantee it).
const unitSeparator = "\x1f"

// CanonicalFields are an entry's fields as the hash chain sees them: exactly the text PostgreSQL
// prints for them (amounts with 18 decimals, metadata as jsonb renders it).
type CanonicalFields struct {
	ID              int64
	LedgerID        string
	Seq             int64
	DebitAccountID  string
	CreditAccountID string
	Amount          string // NUMERIC(38,18) text, e.g. "100.000000000000000000"
	CurrencyCode    string
	AssetType       string
	TransactionType string
	ReferenceID     string
	FxRate          string // NUMERIC(38,18) text, or "" for none
	Metadata        string // jsonb text, e.g. `{"a": 1}`
	TimestampUTC    time.Time
	ReversesEntryID int64 // 0 for none
}

// Canonical returns the canonical encoding of an entry (without previous_hash).
func Canonical(f CanonicalFields) []byte {
	rev := ""
	if f.ReversesEntryID != 0 {
		rev = strconv.FormatInt(f.ReversesEntryID, 10)
	}
	parts := []string{
		"DLE1",
		strconv.FormatInt(f.ID, 10),
		f.LedgerID,
		strconv.FormatInt(f.Seq, 10),
		f.DebitAccountID,
		f.CreditAccountID,
		f.Amount,
		f.CurrencyCode,
		f.AssetType,
		f.TransactionType,
		f.ReferenceID,
		f.FxRate,
		f.Metadata,
		f.TimestampUTC.UTC().Format("2006-01-02T15:04:05.000000Z"),
		rev,
	}
	return []byte(strings.Join(parts, unitSeparator))
}

// BlockHash is sha256(previous_hash || canonical).
func BlockHash(previous []byte, f CanonicalFields) []byte {
	h := sha256.New()
	h.Write(previous)
	h.Write(Canonical(f))
	return h.Sum(nil)
}

// HoldEventFields are a hold event's fields as the hold chain sees them (docs/hash-chain.md,
// "Hold events"): the event's own and its hold's terms, each as PostgreSQL prints it.
type HoldEventFields struct {
	LedgerID        string
	Seq             int64
	HoldID          int64
	ReferenceID     string // the hold's
	Event           string // created, captured, voided, expired
	DebitAccountID  string
	CreditAccountID string
	HoldAmount      string // NUMERIC(38,18) text
	CurrencyCode    string
	AssetType       string
	TransactionType string
	FxRate          string // NUMERIC(38,18) text, or "" for none
	Metadata        string // jsonb text
	TimestampUTC    time.Time
	ExpiresAt       *time.Time // nil for none
	Amount          string     // the event's amount, NUMERIC(38,18) text
	EntryID         int64      // the capture's entry; 0 for none
	EntrySeq        int64
}

// HoldEventCanonical returns the canonical encoding of a hold event (without previous_hash); the
// SQL reference is ledger_hold_event_canonical (migration 014).
func HoldEventCanonical(f HoldEventFields) []byte {
	const ts = "2006-01-02T15:04:05.000000Z"
	exp, entry := "", ""
	if f.ExpiresAt != nil {
		exp = f.ExpiresAt.UTC().Format(ts)
	}
	if f.EntryID != 0 {
		entry = strconv.FormatInt(f.EntryID, 10)
	}
	parts := []string{
		"DLH1", f.LedgerID, strconv.FormatInt(f.Seq, 10), strconv.FormatInt(f.HoldID, 10), f.ReferenceID, f.Event,
		f.DebitAccountID, f.CreditAccountID, f.HoldAmount, f.CurrencyCode, f.AssetType, f.TransactionType, f.FxRate,
		f.Metadata, f.TimestampUTC.UTC().Format(ts), exp, f.Amount, entry, strconv.FormatInt(f.EntrySeq, 10),
	}
	return []byte(strings.Join(parts, unitSeparator))
}

// HoldEventHash is sha256(previous_hash || canonical).
func HoldEventHash(previous []byte, f HoldEventFields) []byte {
	h := sha256.New()
	h.Write(previous)
	h.Write(HoldEventCanonical(f))
	return h.Sum(nil)
}
