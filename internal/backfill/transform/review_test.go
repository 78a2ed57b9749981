package transform

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"dualledger/internal/backfill/source"
	"dualledger/internal/ledger"
)

// TestRowsPostgreSQLCannotStore: a NUL anywhere PostgreSQL would have to store it (a cell, a
// metadata string, a value read from inside a JSON cell), a lone surrogate, metadata nested past
// the limit or a number out of range is that row's rejection, naming the field: before, it failed
// the batch's statement, so the row took every row of its batch with it and the run stopped
// FAILED on every attempt.
func TestRowsPostgreSQLCannotStore(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	cases := []struct {
		set   map[string]string
		field string
		in    string
	}{
		{map[string]string{"transactionType": "t\x00t"}, "transactionType", "NUL"},
		{map[string]string{"debitAccountId": "a\x00"}, "debitAccountId", "NUL"},
		{map[string]string{"referenceId": "r\x00"}, "referenceId", "NUL"},
		{map[string]string{"note": "x\x00y"}, "note", "NUL"}, // an unmapped column, kept in metadata
		{map[string]string{"metadata": `{"a":"\u0000"}`}, FieldMetadata, "NUL"},
		{map[string]string{"metadata": `{"\u0000":1}`}, FieldMetadata, "NUL"},
		{map[string]string{"metadata": `{"a":"\ud800"}`}, FieldMetadata, "surrogate"},
		{map[string]string{"metadata": deep}, FieldMetadata, "nested 40 levels"},
		{map[string]string{"metadata": `{"a":1e999999}`}, FieldMetadata, "exponent"},
		{map[string]string{"metadata": `{"a":` + strings.Repeat("9", 70) + `}`}, FieldMetadata, "characters"},
		// Decoded, the last of two would be kept silently (review of 2026-12-02).
		{map[string]string{"metadata": `{"a":1,"a":2}`}, FieldMetadata, `duplicate key "a"`},
		{map[string]string{"metadata": `{"a":{"b":1,"\u0062":2}}`}, FieldMetadata, `duplicate key "a.b"`},
	}
	for _, c := range cases {
		f := seedRow()
		for k, v := range c.set {
			f[k] = v
		}
		_, rej := tr.Transform(rec("1", f))
		if rej == nil || rej.Code != ledger.CodeInvalidRequest || !strings.Contains(rej.Message, c.in) || !strings.Contains(string(rej.Details), `"`+c.field+`"`) {
			t.Errorf("%q: %v, want invalid_request on %s containing %q", c.set, rej, c.field, c.in)
		}
	}
	// Read from inside a JSON cell: no NUL byte in any cell, one in the value.
	m := &Mapping{Columns: map[string]string{FieldDebitAccountID: "payload.from"}}
	f := seedRow()
	delete(f, "debitAccountId")
	f["payload"] = `{"from":"a\u0000b"}`
	if _, rej := New(m, "csv", "s1", "MASTER").Transform(rec("1", f)); rej == nil || !strings.Contains(rej.Message, "NUL") {
		t.Errorf("a NUL inside a JSON cell: %v", rej)
	}
	// A column the mapping ignores may hold anything.
	f = seedRow()
	f["note"] = "x\x00y"
	if _, rej := New(&Mapping{Unmapped: "ignore"}, "csv", "s1", "MASTER").Transform(rec("1", f)); rej != nil {
		t.Errorf("an ignored column with a NUL: %v", rej)
	}
	// What stays allowed: nesting up to the limit, plain numbers, paired surrogates.
	f = seedRow()
	f["metadata"] = strings.Repeat(`{"a":`, 32) + `"\ud83d\ude00"` + strings.Repeat("}", 32)
	if _, rej := tr.Transform(rec("1", f)); rej != nil {
		t.Errorf("32 levels and an emoji: %v", rej)
	}
}

// TestLocalTimesThatAreNotOneInstant: in a time zone with summer time, a wall-clock time the
// clocks skip, or pass twice, is refused with both readings named; Go's parser picked one without
// a word. Times with their own offset, and times in UTC, are as before.
func TestLocalTimesThatAreNotOneInstant(t *testing.T) {
	m := &Mapping{Timestamp: TimestampFormat{Timezone: "Europe/Berlin", Layouts: []string{"02.01.2006 15:04:05"}}}
	tr := New(m, "csv", "s1", "MASTER")
	for in, want := range map[string]string{
		"31.03.2024 02:30:00": "does not exist in Europe/Berlin",
		"27.10.2024 02:30:00": "happens twice in Europe/Berlin (the clocks go back over it): 2024-10-27T02:30:00+02:00 or 2024-10-27T02:30:00+01:00",
		"2024-03-31T02:30:00": "does not exist",
	} {
		f := seedRow()
		f["timestampUtc"] = in
		if _, rej := tr.Transform(rec("1", f)); rej == nil || !strings.Contains(rej.Message, want) {
			t.Errorf("%s: %v, want %q", in, rej, want)
		}
	}
	for in, want := range map[string]string{
		"31.03.2024 01:30:00":       "2024-03-31T00:30:00Z",
		"31.03.2024 03:30:00":       "2024-03-31T01:30:00Z",
		"27.10.2024 03:30:00":       "2024-10-27T02:30:00Z",
		"2024-10-27T02:30:00+01:00": "2024-10-27T01:30:00Z",
		"2024-07-01":                "2024-06-30T22:00:00Z",
	} {
		f := seedRow()
		f["timestampUtc"] = in
		row, rej := tr.Transform(rec("1", f))
		if rej != nil || *row.Entry.TimestampUTC != want {
			t.Errorf("%s: %v %v, want %s", in, row.Entry.TimestampUTC, rej, want)
		}
	}
}

// TestCheckColumns: two names of one field, or no column for a field every row needs, stop the
// source before its first row (source.ErrUnusable), instead of a value silently dropped or every
// row rejected and the import ending "completed".
func TestCheckColumns(t *testing.T) {
	tr := New(nil, "csv", "s1", "MASTER")
	seed := []string{"debitAccountId", "creditAccountId", "amount", "currencyCode", "transactionType", "referenceId"}
	if err := tr.CheckColumns(seed); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cols []string
		want string
	}{
		{append(seed, "reference_id"), `"referenceId" and "reference_id" are both reference_id`},
		{[]string{"Debit_Account_Id", "creditAccountId", "amount", "currencyCode", "transactionType"}, `no column holds debit_account_id`},
		{[]string{"debitAccountId", "creditAccountId", "currencyCode", "transactionType"}, `no column holds amount`},
		{[]string{"debitAccountId", "creditAccountId", "amount", "transactionType"}, `defaults.currency_code`},
	} {
		err := tr.CheckColumns(c.cols)
		if !errors.Is(err, source.ErrUnusable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.cols, err, c.want)
		}
	}
	// Defaults and an explicit column make the columns enough.
	m := &Mapping{Columns: map[string]string{FieldReferenceID: "reference_id"}, Defaults: Defaults{CurrencyCode: "USD", DebitAccountID: "x"}}
	if err := New(m, "csv", "s1", "MASTER").CheckColumns([]string{"creditAccountId", "amount", "transactionType", "referenceId", "reference_id"}); err != nil {
		t.Error(err)
	}
}

// TestSecondReview: what a second look found. A lone surrogate inside a JSON cell read by a
// dotted column became U+FFFD (two rows, one reference); a zone abbreviation the time zone does
// not know was read at offset 0; the row's own metadata keys source_reference_id and
// source_columns were overwritten by the import's; a NUL in a column the mapping turns off
// rejected the row.
func TestSecondReview(t *testing.T) {
	m := &Mapping{Columns: map[string]string{FieldReferenceID: "p.r"}}
	tr := New(m, "csv", "s1", "MASTER")
	for _, cell := range []string{`{"r":"sg\ud800"}`, `{"r":"sg\udc00"}`, `{"r":"\u0000"}`} {
		f := seedRow()
		delete(f, "referenceId")
		f["p"] = cell
		if _, rej := tr.Transform(rec("1", f)); rej == nil || !strings.Contains(string(rej.Details), `"p"`) {
			t.Errorf("%s: %v, want a rejection naming column p", cell, rej)
		}
	}
	f := seedRow()
	delete(f, "referenceId")
	f["p"] = `{"r":"sg\ud83d\ude00"}`
	if row, rej := tr.Transform(rec("1", f)); rej != nil || row.Entry.ReferenceID != "sg\U0001F600" {
		t.Errorf("a paired surrogate: %v %q", rej, row.Entry.ReferenceID)
	}

	zm := &Mapping{Timestamp: TimestampFormat{Timezone: "Europe/Berlin", Layouts: []string{"2006-01-02 15:04 MST"}}}
	ztr := New(zm, "csv", "s1", "MASTER")
	for in, want := range map[string]string{"2024-10-27 02:30 PST": `names the zone "PST"`, "2024-07-27 02:30 CEST": "", "2024-07-27 02:30 UTC": "", "2024-01-27 02:30 CET": ""} {
		f := seedRow()
		f["timestampUtc"] = in
		_, rej := ztr.Transform(rec("1", f))
		if (want == "") != (rej == nil) || (rej != nil && !strings.Contains(rej.Message, want)) {
			t.Errorf("%s: %v, want %q", in, rej, want)
		}
	}

	f = seedRow()
	f["referenceId"] = "bad\x01ref"
	f["metadata"] = `{"source_reference_id":"KEEP-ME"}`
	if _, rej := New(nil, "csv", "s1", "MASTER").Transform(rec("1", f)); rej == nil || !strings.Contains(rej.Message, "source_reference_id") {
		t.Errorf("source_reference_id taken: %v", rej)
	}
	f = seedRow()
	f["metadata"] = `{"source_columns":1}`
	f["note"] = "n"
	if _, rej := New(nil, "csv", "s1", "MASTER").Transform(rec("1", f)); rej == nil || !strings.Contains(rej.Message, "source_columns") {
		t.Errorf("source_columns taken: %v", rej)
	}
	f = seedRow()
	f["metadata"] = `{"source_columns":1}` // no other column: nothing is overwritten
	if _, rej := New(nil, "csv", "s1", "MASTER").Transform(rec("1", f)); rej != nil {
		t.Errorf("source_columns in metadata alone: %v", rej)
	}

	off := &Mapping{Unmapped: "ignore", Columns: map[string]string{FieldFxRate: "-"}}
	f = seedRow()
	f["fxRate"] = "1\x00"
	if _, rej := New(off, "csv", "s1", "MASTER").Transform(rec("1", f)); rej != nil {
		t.Errorf("a NUL in a column turned off: %v", rej)
	}
}

// TestReversalLinksAreNotDropped: a row that reverses an entry of its source (another
// dualledger's items carry reverses_entry_id) is refused, naming the field and the way out: the
// link names the entry's id in the source, and dropping it silently imported the reversal as an
// ordinary entry, after which the reversed entry could be reversed again in full. Turning the
// column off in the mapping imports such rows as ordinary entries, knowingly.
func TestReversalLinksAreNotDropped(t *testing.T) {
	for _, tc := range []struct {
		name, source string
		fields       map[string]string
	}{
		{"another dualledger's item", "api", map[string]string{"reverses_entry_id": "19"}},
		{"a CSV column in the seed's spelling", "csv", map[string]string{"reversesEntryId": "7"}},
	} {
		f := seedRow()
		maps.Copy(f, tc.fields)
		_, rej := New(nil, tc.source, "s1", "MASTER").Transform(rec("1", f))
		if rej == nil || rej.Code != ledger.CodeInvalidRequest || !strings.Contains(string(rej.Details), `"field":"reverses_entry_id"`) ||
			!strings.Contains(rej.Message, "reverses_entry_id: \"-\"") {
			t.Errorf("%s: %v, want the row refused", tc.name, rej)
		}
		off := &Mapping{Columns: map[string]string{FieldReversesEntryID: "-"}}
		row, rej := New(off, tc.source, "s1", "MASTER").Transform(rec("1", f))
		if rej != nil || row.Entry.ReversesEntryID != nil || strings.Contains(string(row.Entry.Metadata), "source_columns") {
			t.Errorf("%s with the link turned off: %+v %v", tc.name, row.Entry, rej)
		}
	}
	// An empty cell or a JSON null is no link.
	for _, v := range []string{"", " "} {
		f := seedRow()
		f["reverses_entry_id"] = v
		if _, rej := New(nil, "csv", "s1", "MASTER").Transform(rec("1", f)); rej != nil {
			t.Errorf("reverses_entry_id %q: %v", v, rej)
		}
	}
	if _, err := ParseMapping([]byte(`columns: {reverses_entry_id: old_id}`), false); err != nil {
		t.Errorf("a mapping naming the reversal column: %v", err)
	}
}
