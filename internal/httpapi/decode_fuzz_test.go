package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/settlement"
)

// checkDecodeError: err is a *ledger.Error with one of codes, a message, and details that are
// a JSON object (or none). It returns the error and its details.
func checkDecodeError(t *testing.T, err error, codes ...string) (*ledger.Error, map[string]any) {
	t.Helper()
	var le *ledger.Error
	if !errors.As(err, &le) || !slices.Contains(codes, le.Code) {
		t.Fatalf("error %T %v is not a *ledger.Error with a code of %v", err, err, codes)
	}
	if le.Message == "" {
		t.Fatalf("error without a message: %#v", le)
	}
	details := map[string]any{}
	if len(le.Details) > 0 {
		if err := json.Unmarshal(le.Details, &details); err != nil {
			t.Fatalf("details %s are not a JSON object: %v", le.Details, err)
		}
	}
	return le, details
}

// marshalPlain is json.Marshal without the HTML escaping of <, >, & (and U+2028, U+2029) to
// \uXXXX: re-encoded metadata is then never larger than the compacted original, so what was
// within the metadata size cap stays within it.
func marshalPlain(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// entryBodies are seeds shared by the batch fuzzer: valid entries and each way to break one.
var entryBodies = []string{
	validEntry,
	`{"debit_account_id":"issuance","credit_account_id":"SCB-1/settlement","amount":"1000.00","currency_code":"USD","asset_type":"fiat","transaction_type":"funding","reference_id":"fund-1","fx_rate":"1.0850","metadata":{"k":[1,{"z":null}],"h":"<&>"},"timestamp_utc":"2025-01-20T10:00:00+02:00","reverses_entry_id":42}`,
	`{"amount":100}`, `{"amount":true}`, `{"fx_rate":1.5}`, `{"reverses_entry_id":"7"}`, `{"reverses_entry_id":7.5}`,
	`{"amount":"1","amount":"2"}`, `{"metadata":{"k":1,"k":2}}`, `{"memo":"x"}`, `{"AMOUNT":"1"}`,
	`{"reference_id":"\u0000"}`, `{"reference_id":"\ud800"}`, `{"metadata":{"n":1e301}}`, `{}`, `null`, `[]`, `"x"`, `1`,
}

// FuzzDecodeBatch: decodeBatch refuses only with a documented *ledger.Error (an entry's error
// names the entry and is that entry's own error; a count error names the limit); what it
// accepts has 1 to maxBatch entries, each what DecodeEntry makes of it alone, and encodes to a
// body that decodes to the same batch. The input as one entry: valid alone, valid in a batch.
func FuzzDecodeBatch(f *testing.F) {
	batch := func(atomic string, entries ...string) string {
		s := `{`
		if atomic != "" {
			s += `"atomic":` + atomic + `,`
		}
		return s + `"entries":[` + strings.Join(entries, ",") + `]}`
	}
	for _, e := range append(entryBodies,
		`{"metadata":`+strings.Repeat(`[`, 31)+strings.Repeat(`]`, 31)+`}`, // the deepest entry
		`{"metadata":`+strings.Repeat(`[`, 32)+strings.Repeat(`]`, 32)+`}`) {
		f.Add([]byte(e), uint8(3)) // as an entry on its own
		f.Add([]byte(batch("", e)), uint8(3))
		f.Add([]byte(batch("true", validEntry, e)), uint8(3))
	}
	for _, s := range []string{
		batch("false", validEntry, validEntry, validEntry),
		batch("true", validEntry, validEntry, validEntry, validEntry), // over a limit of 3
		batch("true"), // empty
		batch("null", validEntry),
		batch(`"yes"`, validEntry), batch("1", validEntry),
		`{"atomic":true}`, `{"entries":null}`, `{"entries":{}}`, `{"entries":"x"}`, `{"entries":[1,2]}`,
		`{"entries":[null]}`, `{"entries":[[]]}`, `{"Entries":[` + validEntry + `]}`,
		`{"entries":[` + validEntry + `],"entries":[` + validEntry + `]}`,
		`{"atomic":true,"atomic":false,"entries":[` + validEntry + `]}`,
		`{"entries":[` + validEntry + `]} x`, `{"entries":[` + validEntry + `]}{}`, `{"entries":[`, ``, `   `,
		`{"entries":[{"metadata":` + strings.Repeat(`[`, 29) + strings.Repeat(`]`, 29) + `}]}`,
		`{"entries":[{"metadata":` + strings.Repeat(`[`, 30) + strings.Repeat(`]`, 30) + `}]}`,
		`{"entries":[{"amount":"1"},{"amount":2}]}`,
		`{"entries":[{},{"x":1}]}`,
		"{\"entries\":[{\"reference_id\":\"\xff\"}]}",
		`{"entries":[{"reference_id":"\udc00"}]}`,
	} {
		f.Add([]byte(s), uint8(3))
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, m uint8) {
		limit := int(m) % 17 // 1..16, or the default
		if limit == 0 {
			limit = DefaultMaxBatch
		}
		// An entry that is valid alone is valid in a batch, and the same entry.
		if alone, err := decodeEntryBytes(data); err == nil {
			_, in, err := decodeBatch(append(append([]byte(`{"entries":[`), data...), "]}"...), limit)
			if err != nil || len(in) != 1 || !reflect.DeepEqual(in[0], alone) {
				t.Fatalf("valid alone as %#v, in a batch %#v (%v)", alone, in, err)
			}
		}

		atomic, entries, err := decodeBatch(data, limit)

		// What encoding/json makes of the body, leniently: where the strict rules passed, the
		// same thing.
		var wire struct {
			Atomic  bool              `json:"atomic"`
			Entries []json.RawMessage `json:"entries"`
		}
		lenientErr := json.Unmarshal(data, &wire)

		if err != nil {
			le, details := checkDecodeError(t, err, ledger.CodeInvalidRequest, ledger.CodeInvalidAmount)
			field, _ := details["field"].(string)
			if le.Code == ledger.CodeInvalidAmount && field != "amount" && !strings.HasSuffix(field, "].amount") {
				t.Fatalf("invalid_amount for field %q: %v", field, err)
			}
			if n, ok := details["max_entries"]; ok {
				if n != float64(limit) || field != "entries" || lenientErr != nil {
					t.Fatalf("count error %v with details %s for limit %d (lenient: %v)", err, le.Details, limit, lenientErr)
				}
				if got := len(wire.Entries); got != 0 && got <= limit || details["entries"] != float64(got) {
					t.Fatalf("count error for %d entries, limit %d: %v", got, limit, err)
				}
			}
			idx, ok := details["index"].(float64)
			if !ok {
				return
			}
			// An entry's error: the entries before it are fine, and it is the entry's own error
			// with the path in front.
			i := int(idx)
			path := fmt.Sprintf("entries[%d]", i)
			if lenientErr != nil || float64(i) != idx || i < 0 || i >= len(wire.Entries) || len(wire.Entries) > limit {
				t.Fatalf("error for entry %v of %d (limit %d, lenient: %v): %v", idx, len(wire.Entries), limit, lenientErr, err)
			}
			if field != path && !strings.HasPrefix(field, path+".") {
				t.Fatalf("entry %d's error names field %q", i, field)
			}
			for j := range i {
				if _, err := decodeEntryBytes(wire.Entries[j]); err != nil {
					t.Fatalf("entry %d was refused (%v) but decodes alone: %v", i, le, err)
				}
			}
			_, alone := decodeEntryBytes(wire.Entries[i])
			if alone == nil {
				t.Fatalf("entry %d was refused (%v) but decodes alone", i, le)
			}
			ae, ad := checkDecodeError(t, alone, ledger.CodeInvalidRequest, ledger.CodeInvalidAmount)
			want := path
			if f, _ := ad["field"].(string); f != "" {
				want += "." + f
			}
			if ae.Code != le.Code || le.Message != want+": "+ae.Message {
				t.Fatalf("batch error %v, the entry alone: %v", le, ae)
			}
			return
		}

		if len(entries) == 0 || len(entries) > limit {
			t.Fatalf("accepted %d entries with a limit of %d", len(entries), limit)
		}
		if lenientErr != nil || wire.Atomic != atomic || len(wire.Entries) != len(entries) {
			t.Fatalf("accepted (atomic %v, %d entries) what encoding/json reads as (atomic %v, %d entries, %v)",
				atomic, len(entries), wire.Atomic, len(wire.Entries), lenientErr)
		}
		for i, raw := range wire.Entries {
			alone, err := decodeEntryBytes(raw)
			if err != nil || !reflect.DeepEqual(alone, entries[i]) {
				t.Fatalf("entry %d: in the batch %#v, alone %#v (%v)", i, entries[i], alone, err)
			}
		}

		out, err := marshalPlain(BatchRequest{Atomic: atomic, Entries: entries})
		if err != nil {
			t.Fatalf("accepted batch does not encode: %v", err)
		}
		if bytes.Contains(out, []byte(`\u0000`)) || !json.Valid(out) {
			t.Fatalf("accepted batch is not jsonb-safe: %s", out)
		}
		atomic2, again, err := decodeBatch(out, limit)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if atomic2 != atomic || len(again) != len(entries) {
			t.Fatalf("round trip: atomic %v -> %v, %d -> %d entries", atomic, atomic2, len(entries), len(again))
		}
		for i := range entries {
			a, b := entries[i], again[i]
			if !sameJSON(a.Metadata, b.Metadata) {
				t.Fatalf("round trip changed entry %d's metadata: %s -> %s", i, a.Metadata, b.Metadata)
			}
			a.Metadata, b.Metadata = nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("round trip changed entry %d:\n%#v\n%#v", i, a, b)
			}
		}
	})
}

// jsonBodyKinds are the request bodies the handlers decode with decodeJSON.
var jsonBodyKinds = []struct {
	name string
	new  func() any
}{
	{"settlement", func() any { return new(settlement.Request) }}, // POST /v1/settlements
	{"account", func() any { return new(ledger.AccountInput) }},   // POST /v1/ledgers/{id}/accounts
	{"bank", func() any { return new(RegisterBankRequest) }},      // POST /v1/banks
	{"ledger", func() any { return new(CreateLedgerRequest) }},    // POST /v1/ledgers
}

// FuzzDecodeJSONBodies: the strict decoding of the settlement, account, bank and ledger bodies.
// Errors are documented *ledger.Errors (invalid_amount only for the settlement's amount,
// body_too_large from a MaxBytesReader); what is accepted is what encoding/json reads, encodes
// and decodes again to the same value; and each way of breaking an accepted body (trailing
// data, an unknown field, a field in other case, a duplicate field, a number for a decimal
// string or a string field) is refused with its code and field.
func FuzzDecodeJSONBodies(f *testing.F) {
	seeds := map[string][]string{
		"settlement": {
			`{"node_id":"n1","source_bank_id":"SCB-1","destination_bank_id":"SCB-2","amount":"250.00","currency_code":"USD","asset_type":"fiat","reference_id":"stl-1"}`,
			`{"source_bank_id":"SCB-1","destination_bank_id":"SCB-2","amount":250,"currency_code":"USD","reference_id":"stl-2"}`,
			`{"amount":"1","amount":"2"}`, `{"amount":null}`, `{"amount":1e400}`, `{"Amount":"1"}`, `{"fx_rate":"1"}`,
		},
		"account": {
			`{"id":"alice","currency_code":"USD","asset_type":"fiat"}`,
			`{"id":"SCB-1/settlement","currency_code":"USD","asset_type":"fiat","bank_id":"SCB-1","overdraft_limit":"unlimited","metadata":{"owner":"x","tags":["a"],"h":"<&>"}}`,
			`{"id":"a","overdraft_limit":500}`, `{"id":"a","metadata":{"k":1,"k":2}}`, `{"id":"a","metadata":[1]}`,
			`{"id":"a","bank_id":null,"overdraft_limit":null,"metadata":null}`,
		},
		"bank": {
			`{"id":"SCB-1","name":"Member bank 1"}`, `{"id":"SCB-1","name":"x","name":"y"}`, `{"id":1,"name":"x"}`,
			`{"id":"SCB-1","name":"ü €𝄞 \u00e9 \ud834\udd1e"}`, `{"id":"SCB-1","name":"\ud834"}`,
		},
		"ledger": {
			`{"id":"MASTER"}`, `{"id":"L"} `, `{"id":"L"}x`, `{"id":"L"}{}`, `{"ID":"L"}`, `{"id":["L"]}`, `{"id":"L","extra":true}`,
			`{"id":"a\u0000"}`, "{\"id\":\"\xc3\x28\"}", `{}`, `[]`, `null`, ``, `{"id"`,
		},
	}
	for k, kind := range jsonBodyKinds {
		for _, s := range seeds[kind.name] {
			f.Add(uint8(k), []byte(s))
		}
	}
	documented := []string{ledger.CodeInvalidRequest, ledger.CodeInvalidAmount}
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		kind := jsonBodyKinds[int(k)%len(jsonBodyKinds)]
		v := kind.new()
		err := decodeJSON(bytes.NewReader(data), v)

		// Through an http.MaxBytesReader, as the router wraps every body: a limit of the body's
		// size changes nothing, one byte less is body_too_large.
		v2 := kind.new()
		err2 := decodeJSON(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), int64(len(data))), v2)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(v, v2) {
			t.Fatalf("a limit of the body's size changed the result: %v / %v", err, err2)
		}
		if len(data) > 0 {
			err := decodeJSON(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), int64(len(data)-1)), kind.new())
			le, d := checkDecodeError(t, err, CodeBodyTooLarge)
			if d["max_bytes"] != float64(len(data)-1) {
				t.Fatalf("body_too_large details %s", le.Details)
			}
		}

		if err != nil {
			le, d := checkDecodeError(t, err, documented...)
			if le.Code == ledger.CodeInvalidAmount && (kind.name != "settlement" || d["field"] != "amount") {
				t.Fatalf("invalid_amount for a %s body: %v (%s)", kind.name, err, le.Details)
			}
			return
		}

		// Accepted: encoding/json reads the same.
		lenient := kind.new()
		if err := json.Unmarshal(data, lenient); err != nil || !reflect.DeepEqual(v, lenient) {
			t.Fatalf("accepted %#v, encoding/json reads %#v (%v)", v, lenient, err)
		}
		// Encodes, and decodes again to the same value.
		out, err := marshalPlain(v)
		if err != nil {
			t.Fatalf("accepted %s body does not encode: %v", kind.name, err)
		}
		if bytes.Contains(out, []byte(`\u0000`)) || !json.Valid(out) || !bytes.HasPrefix(out, []byte(`{"`)) {
			t.Fatalf("accepted %s body encodes to %s", kind.name, out)
		}
		again := kind.new()
		if err := decodeJSON(bytes.NewReader(out), again); err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if a, ok := v.(*ledger.AccountInput); ok {
			b := again.(*ledger.AccountInput)
			if !sameJSON(a.Metadata, b.Metadata) {
				t.Fatalf("round trip changed the metadata: %s -> %s", a.Metadata, b.Metadata)
			}
			ac, bc := *a, *b
			ac.Metadata, bc.Metadata = nil, nil
			v, again = &ac, &bc
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip changed the %s body:\n%#v\n%#v", kind.name, v, again)
		}

		// Each way of breaking the accepted body is refused with its code and field.
		refused := func(what string, body []byte, code, field, msg string) {
			t.Helper()
			err := decodeJSON(bytes.NewReader(body), kind.new())
			if err == nil {
				t.Fatalf("%s: accepted %s", what, body)
			}
			le, d := checkDecodeError(t, err, documented...)
			if le.Code != code || (field != "" && d["field"] != field) || !strings.Contains(le.Message, msg) {
				t.Fatalf("%s: %s refused with %v (%s), want %s for field %q containing %q", what, body, err, le.Details, code, field, msg)
			}
		}
		if err := decodeJSON(bytes.NewReader(append(bytes.Clone(data), " \n\t"...)), kind.new()); err != nil {
			t.Fatalf("trailing white space refused: %v", err)
		}
		refused("trailing data", append(bytes.Clone(data), 'x'), ledger.CodeInvalidRequest, "", "after the JSON object")
		refused("a second object", append(bytes.Clone(data), "{}"...), ledger.CodeInvalidRequest, "", "after the JSON object")
		refused("unknown field", append([]byte(`{"zz_unknown":1,`), out[1:]...), ledger.CodeInvalidRequest, "zz_unknown", "unknown field")

		var fields map[string]json.RawMessage
		if err := json.Unmarshal(out, &fields); err != nil || len(fields) == 0 {
			t.Fatalf("encoded body %s: %v", out, err)
		}
		first := slices.Sorted(func(yield func(string) bool) {
			for k := range fields {
				if !yield(k) {
					return
				}
			}
		})[0]
		refused("duplicate field", []byte(`{"`+first+`":`+string(fields[first])+`,`+string(out[1:])), ledger.CodeInvalidRequest, first, "duplicate field")
		rest := map[string]json.RawMessage{}
		for k, val := range fields {
			if k != first {
				rest[k] = val
			}
		}
		tail, _ := json.Marshal(rest)
		upper := `{"` + strings.ToUpper(first) + `":` + string(fields[first])
		if len(rest) > 0 {
			upper += "," + string(tail[1:])
		} else {
			upper += "}"
		}
		refused("field in other case", []byte(upper), ledger.CodeInvalidRequest, strings.ToUpper(first), "unknown field")

		number := func(field, code, msg string) {
			t.Helper()
			m := map[string]json.RawMessage{}
			for k, val := range fields {
				m[k] = val
			}
			m[field] = json.RawMessage(`100.00`)
			b, _ := json.Marshal(m)
			refused("number for "+field, b, code, field, msg)
		}
		switch kind.name {
		case "settlement":
			number("amount", ledger.CodeInvalidAmount, "decimal string")
			number("reference_id", ledger.CodeInvalidRequest, "must be a JSON string")
		case "account":
			number("overdraft_limit", ledger.CodeInvalidRequest, "decimal string")
			number("id", ledger.CodeInvalidRequest, "must be a JSON string")
		default:
			number("id", ledger.CodeInvalidRequest, "must be a JSON string")
		}
	})
}
