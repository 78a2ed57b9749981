package ledger_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"dualledger/internal/integrity"
	"dualledger/internal/ledger"
)

// TestCanonicalVectors checks the Go encoding against the specification's vectors
// (docs/hash-chain.md). The SQL reference is checked against the same table in
// internal/integrity (TestHashVectorsSQL), so Go and SQL agree byte for byte.
func TestCanonicalVectors(t *testing.T) {
	vs := integrity.HashVectors()
	if len(vs) < 3 {
		t.Fatalf("only %d vectors", len(vs))
	}
	for i, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			got := ledger.Canonical(v.Fields)
			if want := mustHex(t, v.Canonical); !bytes.Equal(got, want) {
				t.Fatalf("canonical:\n got  %q\n want %q", got, want)
			}
			prev := mustHex(t, v.PreviousHash)
			if h := hex.EncodeToString(ledger.BlockHash(prev, v.Fields)); h != v.BlockHash {
				t.Fatalf("block_hash %s, want %s", h, v.BlockHash)
			}
			// Chained vectors: seq > 1 links to the vector before it.
			if v.Fields.Seq > 1 {
				if i == 0 || vs[i-1].Fields.LedgerID != v.Fields.LedgerID || vs[i-1].Fields.Seq != v.Fields.Seq-1 {
					t.Fatalf("vector with seq %d does not follow seq %d of its ledger", v.Fields.Seq, v.Fields.Seq-1)
				}
				if v.PreviousHash != vs[i-1].BlockHash {
					t.Fatalf("previous_hash %s is not the block_hash of the vector before (%s)", v.PreviousHash, vs[i-1].BlockHash)
				}
			} else if v.PreviousHash != hex.EncodeToString(ledger.ZeroHash) {
				t.Fatalf("seq 1 must chain to 32 zero bytes, has %s", v.PreviousHash)
			}
		})
	}
}

// TestCanonicalTimestampZone: the encoding is of the instant, whatever zone the time.Time
// carries (pgx returns timestamptz in the local zone).
func TestCanonicalTimestampZone(t *testing.T) {
	v := integrity.HashVectors()[1]
	f := v.Fields
	f.TimestampUTC = f.TimestampUTC.In(time.FixedZone("UTC+2", 2*3600))
	if !bytes.Equal(ledger.Canonical(f), ledger.Canonical(v.Fields)) {
		t.Fatal("the canonical encoding depends on the time zone of TimestampUTC")
	}
}

// TestCanonicalFieldsSeparated: changing any one field changes the encoding, and a value moved
// from one field into its neighbour (the classic ambiguity of concatenation) does too.
func TestCanonicalFieldsSeparated(t *testing.T) {
	base := integrity.HashVectors()[0].Fields
	enc := ledger.Canonical(base)
	mutants := map[string]func(*ledger.CanonicalFields){
		"id":                func(f *ledger.CanonicalFields) { f.ID++ },
		"ledger_id":         func(f *ledger.CanonicalFields) { f.LedgerID += "X" },
		"seq":               func(f *ledger.CanonicalFields) { f.Seq++ },
		"debit_account_id":  func(f *ledger.CanonicalFields) { f.DebitAccountID += "X" },
		"credit_account_id": func(f *ledger.CanonicalFields) { f.CreditAccountID += "X" },
		"amount":            func(f *ledger.CanonicalFields) { f.Amount = "1000.000000000000000001" },
		"currency_code":     func(f *ledger.CanonicalFields) { f.CurrencyCode = "EUR" },
		"asset_type":        func(f *ledger.CanonicalFields) { f.AssetType = "cbdc" },
		"transaction_type":  func(f *ledger.CanonicalFields) { f.TransactionType += "X" },
		"reference_id":      func(f *ledger.CanonicalFields) { f.ReferenceID += "X" },
		"fx_rate":           func(f *ledger.CanonicalFields) { f.FxRate = "1.000000000000000000" },
		"metadata":          func(f *ledger.CanonicalFields) { f.Metadata = `{"a": 1}` },
		"timestamp_utc":     func(f *ledger.CanonicalFields) { f.TimestampUTC = f.TimestampUTC.Add(time.Microsecond) },
		"reverses_entry_id": func(f *ledger.CanonicalFields) { f.ReversesEntryID = 1 },
		"debit/credit boundary": func(f *ledger.CanonicalFields) {
			f.DebitAccountID, f.CreditAccountID = "issuanceS", "CB-1-settlement"
		},
	}
	for name, mutate := range mutants {
		f := base
		mutate(&f)
		if bytes.Equal(ledger.Canonical(f), enc) {
			t.Errorf("changing %s does not change the canonical encoding", name)
		}
	}
	if n := strings.Count(string(enc), "\x1f"); n != 14 {
		t.Fatalf("%d separators, want 14 (15 fields)", n)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}
