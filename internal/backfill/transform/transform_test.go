package transform

import (
	"encoding/json"
	"strings"
	"testing"

	"dualledger/internal/backfill/source"
	"dualledger/internal/ledger"
)

func rec(pos string, fields map[string]string) source.Record {
	raw, _ := json.Marshal(fields)
	return source.Record{Pos: pos, Fields: fields, Raw: raw}
}

func seedRow() map[string]string {
	return map[string]string{"debitAccountId": "a", "creditAccountId": "b", "amount": "10.00", "currencyCode": "USD",
		"transactionType": "transfer", "referenceId": "r-1"}
}

func TestTransformSeedColumnsAndSnakeCase(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	row, rej := tr.Transform(rec("1", seedRow()))
	if rej != nil {
		t.Fatal(rej)
	}
	e := row.Entry
	if row.LedgerID != "MASTER" || e.DebitAccountID != "a" || e.CreditAccountID != "b" || e.Amount != "10" || e.AssetType != "fiat" ||
		e.ReferenceID != "r-1" || e.TimestampUTC != nil || e.Metadata != nil {
		t.Errorf("%+v", row)
	}
	snake := map[string]string{"ledger_id": "L2", "debit_account_id": "a", "credit_account_id": "b", "amount": "1", "currency_code": "JPY",
		"asset_type": "fiat", "transaction_type": "t", "reference_id": "r", "timestamp_utc": "2024-02-03T04:05:06+01:00", "fx_rate": "1.50"}
	row, rej = tr.Transform(rec("2", snake))
	if rej != nil {
		t.Fatal(rej)
	}
	if row.LedgerID != "L2" || *row.Entry.TimestampUTC != "2024-02-03T03:05:06Z" || *row.Entry.FxRate != "1.5" {
		t.Errorf("%+v", row)
	}
	for in, want := range map[string]string{"2024-02-03T04:05:06": "2024-02-03T04:05:06Z", "2024-02-03 04:05:06.5": "2024-02-03T04:05:06.5Z",
		"2024-02-03": "2024-02-03T00:00:00Z", "2024-02-03 04:05:06+00": "2024-02-03T04:05:06Z"} {
		snake["timestamp_utc"] = in
		row, rej = tr.Transform(rec("3", snake))
		if rej != nil || *row.Entry.TimestampUTC != want {
			t.Errorf("%s: %v %v, want %s", in, row.Entry.TimestampUTC, rej, want)
		}
	}
}

func TestTransformRejections(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	cases := []struct {
		set  map[string]string
		code string
		in   string
	}{
		{map[string]string{"amount": "0"}, ledger.CodeInvalidAmount, "greater than zero"},
		{map[string]string{"amount": "-5.00"}, ledger.CodeInvalidAmount, "greater than zero"},
		{map[string]string{"amount": "1.001"}, ledger.CodeInvalidAmount, "3 decimals"},
		{map[string]string{"amount": "1e5"}, ledger.CodeInvalidAmount, "plain decimal"},
		{map[string]string{"amount": ""}, ledger.CodeInvalidAmount, "missing"},
		{map[string]string{"currencyCode": "usd"}, ledger.CodeUnknownCurrency, ""},
		{map[string]string{"currencyCode": "XYZ"}, ledger.CodeUnknownCurrency, ""},
		{map[string]string{"assetType": "gold"}, ledger.CodeInvalidAssetType, ""},
		{map[string]string{"timestampUtc": "2024-02-30T00:00:00Z"}, ledger.CodeInvalidRequest, "timestamp_utc"},
		{map[string]string{"timestampUtc": "1800-01-01T00:00:00Z"}, ledger.CodeInvalidRequest, "timestamp_utc"},
		{map[string]string{"metadata": "[1]"}, ledger.CodeInvalidRequest, "metadata"},
		{map[string]string{"metadata": "{"}, ledger.CodeInvalidRequest, "metadata"},
		{map[string]string{"fxRate": "0"}, ledger.CodeInvalidRequest, "fx_rate"},
		{map[string]string{"debitAccountId": ""}, ledger.CodeInvalidRequest, "debit_account_id"},
		{map[string]string{"transactionType": ""}, ledger.CodeInvalidRequest, "transaction_type"},
		{map[string]string{"ledgerId": "bad:ledger"}, ledger.CodeUnknownLedger, ""},
	}
	for _, c := range cases {
		f := seedRow()
		for k, v := range c.set {
			f[k] = v
		}
		_, rej := tr.Transform(rec("1", f))
		if rej == nil || rej.Code != c.code || !strings.Contains(rej.Message, c.in) {
			t.Errorf("%v: %v, want %s containing %q", c.set, rej, c.code, c.in)
		}
	}
}

func TestTransformAmountsNormalisedNeverRounded(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	for in, want := range map[string]string{"1,000.50": "1000.5", " 1 000 ": "1000", "1_000.00": "1000", "0001.10": "1.1", "1'234.00": "1234"} {
		f := seedRow()
		f["amount"] = in
		row, rej := tr.Transform(rec("1", f))
		if rej != nil || row.Entry.Amount != want {
			t.Errorf("%q: %v %v, want %s", in, row.Entry.Amount, rej, want)
		}
	}
	comma := ","
	m := &Mapping{Amount: AmountFormat{DecimalSeparator: ",", ThousandsSeparators: new(string)}}
	*m.Amount.ThousandsSeparators = "."
	_ = comma
	tr = New(m, "csv", "s1", "MASTER")
	f := seedRow()
	f["amount"] = "1.234,56"
	if row, rej := tr.Transform(rec("1", f)); rej != nil || row.Entry.Amount != "1234.56" {
		t.Errorf("decimal comma: %v %v", row.Entry.Amount, rej)
	}
}

func TestTransformMapping(t *testing.T) {
	m, err := ParseMapping([]byte(`
columns:
  debit_account_id: from
  credit_account_id: to
  amount: value
  reference_id: "-"
  timestamp_utc: booked
accounts: {OLD-1: a, OLD-2: b}
transaction_types: {TRF: transfer}
defaults: {currency_code: EUR, transaction_type: misc}
timestamp: {layouts: ["02/01/2006 15:04"], timezone: Europe/Berlin}
`), false)
	if err != nil {
		t.Fatal(err)
	}
	tr := New(m, "csv", "s1", "MASTER")
	f := map[string]string{"from": "OLD-1", "to": "OLD-2", "value": "5", "txn": "TRF", "booked": "15/01/2024 10:00", "referenceId": "ignored", "branch": "7"}
	row, rej := tr.Transform(rec("9", f))
	if rej != nil {
		t.Fatal(rej)
	}
	e := row.Entry
	if e.DebitAccountID != "a" || e.CreditAccountID != "b" || e.CurrencyCode != "EUR" || e.TransactionType != "misc" ||
		*e.TimestampUTC != "2024-01-15T09:00:00Z" || !strings.HasPrefix(e.ReferenceID, "BACKFILL-") {
		t.Errorf("%+v", e)
	}
	var meta map[string]any
	if err := json.Unmarshal(e.Metadata, &meta); err != nil || meta["source_columns"].(map[string]any)["branch"] != "7" {
		t.Errorf("metadata %s", e.Metadata)
	}
	for _, bad := range []string{`columns: {debit: x}`, `unmapped: keep`, `nope: 1`, `timestamp: {timezone: Mars/Base}`, `timestamp: {layouts: ["15:04"]}`, `csv: {delimiter: ";;"}`} {
		if _, err := ParseMapping([]byte(bad), false); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if _, err := ParseMapping([]byte(`{"accounts": {"x": "y"}, "unknown": 1}`), true); err == nil {
		t.Error("JSON with an unknown key accepted")
	}
}

// Generated references: the same row of the same source always gets the same id, other rows and
// other sources other ids; an invalid source reference is replaced and kept in metadata.
func TestGeneratedReferences(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	f := seedRow()
	delete(f, "referenceId")
	a, _ := tr.Transform(rec("1", f))
	b, _ := tr.Transform(rec("1", f))
	c, _ := tr.Transform(rec("2", f))
	d, _ := New(nil, "csv", "s2", "MASTER").Transform(rec("1", f))
	if a.Entry.ReferenceID != b.Entry.ReferenceID || a.Entry.ReferenceID == c.Entry.ReferenceID || a.Entry.ReferenceID == d.Entry.ReferenceID ||
		len(a.Entry.ReferenceID) != len("BACKFILL-")+32 {
		t.Errorf("%s %s %s %s", a.Entry.ReferenceID, b.Entry.ReferenceID, c.Entry.ReferenceID, d.Entry.ReferenceID)
	}
	f["referenceId"] = "bad\u200bref"
	e, rej := tr.Transform(rec("3", f))
	if rej != nil || !strings.HasPrefix(e.Entry.ReferenceID, "BACKFILL-") || !strings.Contains(string(e.Entry.Metadata), `"source_reference_id"`) {
		t.Errorf("%+v %v", e.Entry, rej)
	}
	if err := ledger.ValidateReference("reference_id", e.Entry.ReferenceID); err != nil {
		t.Error(err)
	}
}

// FuzzTransform: any row transforms or is rejected with a code; an accepted row has a valid
// reference, a positive amount and a UTC timestamp.
func FuzzTransform(f *testing.F) {
	f.Add("a", "b", "10.00", "USD", "fiat", "t", "r", "", "", "")
	f.Add("a", "b", "1,000.5", "JPY", "", "t", "", "2024-01-01T00:00:00Z", "{}", "1.2")
	f.Add("", "b", "x", "usd", "gold", "", "\x00", "yesterday", "[", "-1")
	tr := New(nil, "csv", "fuzz", "MASTER")
	f.Fuzz(func(t *testing.T, debit, credit, amount, cur, asset, tt, ref, ts, meta, fx string) {
		fields := map[string]string{"debitAccountId": debit, "creditAccountId": credit, "amount": amount, "currencyCode": cur,
			"assetType": asset, "transactionType": tt, "referenceId": ref, "timestampUtc": ts, "metadata": meta, "fxRate": fx}
		row, rej := tr.Transform(rec("1", fields))
		if rej != nil {
			if rej.Code == "" || rej.Message == "" {
				t.Fatalf("rejection without code or message: %+v", rej)
			}
			return
		}
		if err := ledger.ValidateReference("reference_id", row.Entry.ReferenceID); err != nil {
			t.Fatalf("accepted an invalid reference %q: %v", row.Entry.ReferenceID, err)
		}
		if row.Time != nil && row.Time.Location().String() != "UTC" {
			t.Fatalf("timestamp not UTC: %v", row.Time)
		}
		if strings.HasPrefix(row.Entry.Amount, "-") || row.Entry.Amount == "0" {
			t.Fatalf("accepted amount %q", row.Entry.Amount)
		}
	})
}

// FuzzParseMapping: any mapping file parses or is refused; none panics.
func FuzzParseMapping(f *testing.F) {
	f.Add([]byte(`{"columns": {"amount": "value"}, "defaults": {"currency_code": "EUR"}}`), true)
	f.Add([]byte("columns:\n  amount: v\naccounts: {a: b}\n"), false)
	f.Add([]byte("csv: {delimiter: ';'}"), false)
	f.Fuzz(func(t *testing.T, b []byte, isJSON bool) {
		m, err := ParseMapping(b, isJSON)
		if err == nil {
			New(m, "csv", "x", "MASTER")
		}
	})
}
