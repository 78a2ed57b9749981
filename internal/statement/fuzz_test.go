package statement_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"dualledger/internal/statement"
)

func sampleCamt(t testing.TB) []byte {
	st := statement.Statement{LedgerID: "L", AccountID: "a1", CurrencyCode: "USD", From: "2026-03-01", To: "2026-03-02",
		OpeningBalance: "-10.50", ClosingBalance: "89.50", GeneratedAt: time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC),
		Entries: []statement.Line{{Seq: 7, EntryID: 7, ReferenceID: "r7", TransactionType: "t", Direction: statement.Credit,
			Counterparty: "a0", Amount: "100.00", Balance: "89.50", BookedAt: time.Date(2026, 3, 1, 1, 0, 0, 0, time.UTC),
			ValueAt: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}}}
	var b bytes.Buffer
	if err := statement.WriteCamt053(&b, st); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// FuzzParseCamt053: any input is read or refused with an error, never a panic; what is read has
// an account, both balances and well-formed amounts, and reads the same when written again.
func FuzzParseCamt053(f *testing.F) {
	good := sampleCamt(f)
	f.Add(good)
	f.Add([]byte(strings.Replace(string(good), "CRDT", "CRDX", 1)))
	f.Add([]byte(strings.Replace(string(good), "100.00", "1e3", 1)))
	f.Add([]byte(strings.Replace(string(good), "camt.053.001.08", "camt.053.001.02", 1)))
	f.Add([]byte(strings.Replace(string(good), "<Cd>CLBD</Cd>", "<Cd>XXXX</Cd>", 1)))
	f.Add([]byte(`<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt></BkToCstmrStmt></Document>`))
	f.Add([]byte("<"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sts, err := statement.ParseCamt053(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, st := range sts {
			if st.AccountID == "" || st.OpeningBalance == "" || st.ClosingBalance == "" || st.Count != len(st.Entries) {
				t.Fatalf("read an incomplete statement: %+v", st)
			}
			for _, l := range st.Entries {
				if l.Direction != statement.Credit && l.Direction != statement.Debit {
					t.Fatalf("direction %q", l.Direction)
				}
			}
		}
	})
}

func TestParseCamt053Refusals(t *testing.T) {
	good := string(sampleCamt(t))
	if sts, err := statement.ParseCamt053(strings.NewReader(good)); err != nil || len(sts) != 1 || statement.Check(sts[0]) != nil {
		t.Fatalf("%v %+v", err, sts)
	}
	for name, doc := range map[string]string{
		"indicator":  strings.Replace(good, "<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>", "<CdtDbtInd>UP</CdtDbtInd>\n        <Sts>", 1),
		"amount":     strings.Replace(good, ">100.00<", ">1e3<", 1),
		"namespace":  strings.Replace(good, "camt.053.001.08", "camt.053.001.02", 1),
		"no closing": strings.Replace(good, "<Cd>CLBD</Cd>", "<Cd>PRCD</Cd>", 1),
		"not xml":    "{}",
	} {
		if _, err := statement.ParseCamt053(strings.NewReader(doc)); err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}
