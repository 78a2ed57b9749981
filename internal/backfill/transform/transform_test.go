package transform

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"dualledger/internal/backfill/source"
	"dualledger/internal/ledger"
	"dualledger/internal/money"
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

// Thousands separators are removed only where they group the integer part in threes; anywhere
// else an amount is refused (invalid_amount, the value quoted, the reason), never read as another
// number: before, every separator was dropped wherever it was, so "1,5" posted 15 and "1.000,00"
// under decimal_separator "." posted 1.
func TestAmountSeparators(t *testing.T) {
	seps := func(s string) *string { return &s }
	point := &Mapping{}
	comma := &Mapping{Amount: AmountFormat{DecimalSeparator: ","}}
	cases := []struct {
		m    *Mapping
		in   string
		want string // the amount, or (when err) a part of the rejection's message
		err  bool
	}{
		// decimal_separator "." (the default): "," "_" "'" spaces and no-break spaces group.
		{point, "1,234,567.89", "1234567.89", false},
		{point, "1,000.50", "1000.5", false},
		{point, " 1 000 ", "1000", false},
		{point, "1_000.00", "1000", false},
		{point, "1'234.00", "1234", false},
		{point, "12'345.00", "12345", false},
		{point, "999,999", "999999", false},
		{point, "123,456.7", "123456.7", false},
		{point, "1\u00a0234.56", "1234.56", false},
		{point, "1\u202f234\u202f567", "1234567", false},
		{point, "\u00a01 234\u00a0", "1234", false}, // whitespace around the cell is trimmed
		{point, "0001.10", "1.1", false},
		{point, "1,5", `amount "1,5" has a "," that is not a thousands separator (a group of 1 digit;`, true},
		{point, "1,5", `set amount.decimal_separator: "," in the mapping`, true},
		{point, "12,34", `"12,34" has a "," that is not a thousands separator (a group of 2 digits`, true},
		{point, "1,2,3", `"1,2,3" has a "," that is not a thousands separator`, true},
		{point, "1 2", `"1 2" has a " " that is not a thousands separator`, true},
		{point, "1\u00a02", `has a "\u00a0" that is not a thousands separator`, true},
		{point, "1,0000", "a group of 4 digits", true},
		{point, "1,,000", "a group of 0 digits", true},
		{point, "1234,567", "the first group has 4 digits", true},
		{point, "0,001", "the first group starts with 0", true},
		{point, ",100", "before the first digit", true},
		{point, "100,", "after the last digit", true},
		{point, "1,000,.5", "after the last digit", true},
		{point, "1.000,00", `amount "1.000,00" has a "," after the decimal separator "."`, true},
		{point, "1,234.5,6", `has a "," after the decimal separator "."`, true},
		{point, "1.234 5", `has a " " after the decimal separator "."`, true},
		{point, "1,234 567.89", `mixes the thousands separators "," and " "`, true},
		{point, "1'234,567", `mixes the thousands separators "'" and ","`, true},
		{point, "-1,000.00", "greater than zero", true},
		{point, "1,000.001", "3 decimals", true},
		{point, "1,2x4", "not a plain decimal", true},
		// decimal_separator ",": "." groups instead of ",".
		{comma, "1.234.567,89", "1234567.89", false},
		{comma, "1 234 567,89", "1234567.89", false},
		{comma, "1,5", "1.5", false},
		{comma, "1.000", "1000", false},
		{comma, "1.000,00", "1000", false},
		{comma, "12'345,00", "12345", false},
		{comma, "1.5", `amount "1.5" has a "." that is not a thousands separator`, true},
		{comma, "1.5", `set amount.decimal_separator: "." in the mapping`, true},
		{comma, "1,2,3", `amount "1,2,3" has more than one decimal separator ","`, true},
		{comma, "1,234.56", `has a "." after the decimal separator ","`, true},
		{comma, "1.234,5.6", `has a "." after the decimal separator ","`, true},
		{comma, "1.234 567,8", `mixes the thousands separators "." and " "`, true},
		// The mapping's own separators replace the defaults.
		{&Mapping{Amount: AmountFormat{DecimalSeparator: ",", ThousandsSeparators: seps(".")}}, "1.234,56", "1234.56", false},
		{&Mapping{Amount: AmountFormat{DecimalSeparator: ",", ThousandsSeparators: seps(".")}}, "1 234,56", "whitespace is not allowed", true},
		{&Mapping{Amount: AmountFormat{DecimalSeparator: ",", ThousandsSeparators: seps(" ")}}, "1.234,56",
			`amount "1.234,56" has a "." but the decimal separator is "," (amount.decimal_separator) and "." is not one of the thousands separators " "`, true},
		{&Mapping{Amount: AmountFormat{DecimalSeparator: ",", ThousandsSeparators: seps("'")}}, "1'234,5", "1234.5", false},
		{&Mapping{Amount: AmountFormat{ThousandsSeparators: seps("_")}}, "1_000_000", "1000000", false},
		{&Mapping{Amount: AmountFormat{ThousandsSeparators: seps("_")}}, "1,000", "not a plain decimal", true},
		{&Mapping{Amount: AmountFormat{ThousandsSeparators: seps("_")}}, "1_00", "a group of 2 digits", true},
		{&Mapping{Amount: AmountFormat{ThousandsSeparators: seps("")}}, "1,000.00", "not a plain decimal", true},
		{&Mapping{Amount: AmountFormat{ThousandsSeparators: seps("")}}, "1000.00", "1000", false},
	}
	for _, c := range cases {
		if err := c.m.check(); err != nil {
			t.Fatal(err)
		}
		tr := New(c.m, "csv", "s1", "MASTER")
		f := seedRow()
		f["amount"] = c.in
		row, rej := tr.Transform(rec("1", f))
		switch {
		case c.err && (rej == nil || rej.Code != ledger.CodeInvalidAmount || !strings.Contains(rej.Message, c.want) ||
			string(rej.Details) != `{"field":"amount"}`):
			t.Errorf("decimal %q %q: %v %v, want invalid_amount containing %s", c.m.decimalSep(), c.in, row.Entry.Amount, rej, c.want)
		case !c.err && (rej != nil || row.Entry.Amount != c.want):
			t.Errorf("decimal %q %q: %v %v, want %s", c.m.decimalSep(), c.in, row.Entry.Amount, rej, c.want)
		}
	}
}

// fx_rate goes through the same normalisation (with its own code, invalid_request, as before).
func TestFxRateSeparators(t *testing.T) {
	comma := &Mapping{Amount: AmountFormat{DecimalSeparator: ","}}
	for _, c := range []struct {
		m        *Mapping
		in, want string
		err      bool
	}{
		{nil, "1,234.5", "1234.5", false},
		{nil, "1.5", "1.5", false},
		{nil, "1,5", `fx_rate "1,5" has a "," that is not a thousands separator`, true},
		{nil, "1.000,5", `fx_rate "1.000,5" has a "," after the decimal separator "."`, true},
		{nil, "-1,5", `fx_rate "-1,5" has a ","`, true},
		{nil, "0", `fx_rate "0" is not a positive decimal`, true},
		{comma, "1,5", "1.5", false},
		{comma, "1.5", `fx_rate "1.5" has a "." that is not a thousands separator`, true},
	} {
		tr := New(c.m, "csv", "s1", "MASTER")
		f := seedRow()
		f["fxRate"] = c.in
		if c.m == comma {
			f["amount"] = "10,00"
		}
		row, rej := tr.Transform(rec("1", f))
		switch {
		case c.err && (rej == nil || rej.Code != ledger.CodeInvalidRequest || !strings.Contains(rej.Message, c.want) ||
			string(rej.Details) != `{"field":"fx_rate"}`):
			t.Errorf("%q: %v, want invalid_request containing %s", c.in, rej, c.want)
		case !c.err && (rej != nil || row.Entry.FxRate == nil || *row.Entry.FxRate != c.want):
			t.Errorf("%q: %v %v, want %s", c.in, row.Entry.FxRate, rej, c.want)
		}
	}
}

// groupedInThrees is the fuzz test's own reading of where a thousands separator may be: every
// sep in s is in the integer part (before dec), follows a group of 1 to 3 digits not starting
// with 0 (the first, after an optional '-') or of exactly 3 (after another sep), and is followed
// by exactly 3 digits and then another sep, dec or the end.
func groupedInThrees(s string, sep, dec rune) bool {
	r := []rune(s)
	end := len(r)
	for i, c := range r {
		if c == dec {
			end = i
			break
		}
	}
	digit := func(i int) bool { return i >= 0 && i < len(r) && r[i] >= '0' && r[i] <= '9' }
	for i, c := range r {
		if c != sep {
			continue
		}
		if i > end || !digit(i+1) || !digit(i+2) || !digit(i+3) || (i+4 != end && r[i+4] != sep) {
			return false
		}
		k := 0
		for digit(i - 1 - k) {
			k++
		}
		first := i-1-k < 0 || (i-1-k == 0 && r[0] == '-')
		switch {
		case first && (k < 1 || k > 3 || r[i-k] == '0'):
			return false
		case !first && (k != 3 || r[i-1-k] != sep):
			return false
		}
	}
	return true
}

// The fuzz test's property can fail: it refuses what the old normalisation accepted.
func TestGroupedInThrees(t *testing.T) {
	for s, want := range map[string]bool{"1,234,567.89": true, "-12,345": true, "1,234": true, "100": true,
		"1,5": false, "12,34": false, "1,2,3": false, "1.000,00": false, "0,001": false, ",100": false, "100,": false,
		"1,234.5,6": false, "1234,567": false, "1,2345": false, "x,123": false} {
		if got := groupedInThrees(s, ',', '.'); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

var plainDecimal = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$`)

// FuzzAmountSeparators: an accepted amount (1) is a plain decimal; (2) is what the cell reads
// with only the separator normalise removed taken out and the decimal separator made a point,
// and no other separator was in it; (3) that separator sits only between groups of three digits
// of the integer part. A refused one is invalid_amount with the value quoted.
func FuzzAmountSeparators(f *testing.F) {
	for _, s := range []string{"1,234,567.89", "1,5", "1.000,00", "12,34", "1,2,3", "1 2", "0,001", ",100", "1'234,567",
		"12'345.00", " 1 000 ", "1\u00a0234,5", "-1,000", "1,234.5,6", "1_000_000", "1,2x4"} {
		f.Add(s, false, "", false)
		f.Add(s, true, "", false)
	}
	f.Add("1.234,56", true, ".", true)
	f.Add("1-234", false, "-", true)
	f.Add("1x234", false, "x", true)
	f.Fuzz(func(t *testing.T, raw string, decComma bool, seps string, custom bool) {
		var m Mapping
		if decComma {
			m.Amount.DecimalSeparator = ","
		}
		if custom {
			m.Amount.ThousandsSeparators = &seps
		}
		if m.check() != nil {
			return
		}
		tr := New(&m, "csv", "fuzz", "MASTER")
		got, rej := tr.amount(raw, "USD", "security") // security: up to 18 decimals
		if rej != nil {
			if rej.Code != ledger.CodeInvalidAmount || (strings.TrimSpace(raw) != "" && !strings.Contains(rej.Message, quote(raw))) {
				t.Fatalf("%q refused with %v", raw, rej)
			}
			return
		}
		if !plainDecimal.MatchString(got) || got == "0" {
			t.Fatalf("%q accepted as %q, not a plain positive decimal", raw, got)
		}
		_, sep, _ := tr.normalise(raw)
		s := strings.TrimSpace(raw)
		bare := s
		if sep != 0 {
			if !strings.ContainsRune(tr.thousands, sep) {
				t.Fatalf("%q: removed %q, not a thousands separator %q", raw, sep, tr.thousands)
			}
			bare = strings.ReplaceAll(bare, string(sep), "")
		}
		if strings.ContainsAny(bare, tr.thousands) {
			t.Fatalf("%q accepted as %q with another separator in it", raw, got)
		}
		bare = strings.Replace(bare, string(tr.decimal), ".", 1)
		if a, err := money.ParseAmount(bare); err != nil || a.String() != got {
			t.Fatalf("%q accepted as %q, but without its separators it reads %q (%v)", raw, got, bare, err)
		}
		if sep != 0 && !groupedInThrees(s, sep, tr.decimal) {
			t.Fatalf("%q accepted as %q with a %q that does not group in threes", raw, got, sep)
		}
	})
}

// Timestamps finer than a microsecond are refused with that reason (the ledger keeps
// microseconds and never rounds; before, they passed here and the posting function called them
// not RFC 3339); the range 1900-9999 is the posting function's, in UTC.
func TestTimestampEdges(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	for _, c := range []struct{ in, want string }{
		{"2024-01-01T10:00:00.123456Z", "2024-01-01T10:00:00.123456Z"},
		{"2024-01-01T10:00:00.1234560Z", "2024-01-01T10:00:00.123456Z"}, // .NET's 7 digits: nothing lost
		{"2024-01-01 10:00:00.000000000+00", "2024-01-01T10:00:00Z"},
		{"2024-01-01T10:00:00,5+01:00", "2024-01-01T09:00:00.5Z"},
		{"1900-01-01T00:00:00Z", "1900-01-01T00:00:00Z"},
		{"1900-01-01T00:30:00-01:00", "1900-01-01T01:30:00Z"},
		{"9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"},
		{"2024-01-01T10:00:00.123456789Z", "more than 6 fractional digits of a second (9)"},
		{"2024-01-01T10:00:00.1234567Z", "more than 6 fractional digits of a second (7)"},
		{"2024-01-01T10:00:00.0000000001Z", "more than 6 fractional digits of a second (10)"}, // Go alone would read 10:00:00
		{"2024-01-01 10:00:00.1234567", "more than 6 fractional digits"},
		{"2024-01-01T10:00:00,1234567+02:00", "more than 6 fractional digits"},
		{"1900-01-01T00:30:00+01:00", `"1900-01-01T00:30:00+01:00" is 1899-12-31T23:30:00Z in UTC, outside the years 1900 to 9999`},
		{"9999-12-31T23:30:00-01:00", "outside the years 1900 to 9999"},
		{"1800-01-01T00:00:00Z", "outside the years 1900 to 9999"},
		{"2024-02-30T00:00:00Z", "is not an ISO 8601 / RFC 3339 date-time"},
	} {
		f := seedRow()
		f["timestampUtc"] = c.in
		row, rej := tr.Transform(rec("1", f))
		if strings.HasPrefix(c.want, "1") || strings.HasPrefix(c.want, "2") || strings.HasPrefix(c.want, "9") {
			if rej != nil || *row.Entry.TimestampUTC != c.want {
				t.Errorf("%s: %v %v, want %s", c.in, row.Entry.TimestampUTC, rej, c.want)
			}
			continue
		}
		if rej == nil || rej.Code != ledger.CodeInvalidRequest || !strings.Contains(rej.Message, c.want) ||
			!strings.Contains(rej.Message, quote(c.in)) || string(rej.Details) != `{"field":"timestamp_utc"}` {
			t.Errorf("%s: %v, want invalid_request containing %s", c.in, rej, c.want)
		}
	}
	// A mapping's layout reads a fraction after its seconds too (Go's parser does): the same rule.
	m := &Mapping{Timestamp: TimestampFormat{Layouts: []string{"02.01.2006 15:04:05"}}}
	tr = New(m, "csv", "s1", "MASTER")
	for in, bad := range map[string]bool{"15.01.2024 10:00:00": false, "15.01.2024 10:00:00.5": false, "15.01.2024 10:00:00.1234567": true} {
		f := seedRow()
		f["timestampUtc"] = in
		_, rej := tr.Transform(rec("1", f))
		if (rej != nil) != bad || (bad && !strings.Contains(rej.Message, "more than 6 fractional digits")) {
			t.Errorf("%s: %v", in, rej)
		}
	}
}
