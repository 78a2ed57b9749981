package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"dualledger/internal/ledger"
)

// FuzzDecodeEntry: the decoder never panics, refuses only with a documented *ledger.Error, and
// what it accepts is safe to send to PostgreSQL as jsonb and decodes again to the same value.
func FuzzDecodeEntry(f *testing.F) {
	for _, seed := range []string{
		validEntry,
		`{"debit_account_id":"issuance","credit_account_id":"SCB-1/settlement","amount":"1000.00","currency_code":"USD","asset_type":"fiat","transaction_type":"funding","reference_id":"fund-1","fx_rate":"1.0850","metadata":{"batch":"2025-01","tags":["a","b"],"n":1.5e10},"timestamp_utc":"2025-01-20T10:00:00+02:00","reverses_entry_id":42}`,
		`{"amount":100}`,
		`{"amount":100.50}`,
		`{"amount":-1e400}`,
		`{"amount":123456789012345678901234567890123456789012345678901234567890}`,
		`{"fx_rate":0.000000000000000000001}`,
		`{"reverses_entry_id":99999999999999999999999}`,
		`{"reference_id":"ü €𝄞 \u00e9 \ud834\udd1e \u2028"}`,
		`{"reference_id":"\ud800"}`,
		`{"reference_id":"\u0000"}`,
		"{\"reference_id\":\"\xc3\x28\"}",
		`{"metadata":{"a":{"b":{"c":[[[[{"d":null}]]]]}}}}`,
		`{"metadata":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`,
		`{"metadata":[1,2,3]}`,
		`{"metadata":"x"}`,
		`{"amount":"1","amount":"2"}`,
		`{"metadata":{"k":1,"k":2}}`,
		`{"AMOUNT":"1"}`,
		`{}`, `[]`, `null`, `""`, `{} {}`, `{}x`, `{"a"`, ``, ` `,
		`{"amount":"1"}` + "\n",
		`{"metadata":{"n":1e300,"m":-1E-300,"o":0.1e+5}}`,
	} {
		f.Add([]byte(seed))
	}
	documented := map[string]bool{ledger.CodeInvalidRequest: true, ledger.CodeInvalidAmount: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := DecodeEntry(bytes.NewReader(data))
		if err != nil {
			var le *ledger.Error
			if !errors.As(err, &le) || !documented[le.Code] {
				t.Fatalf("error %T %v is not a documented *ledger.Error", err, err)
			}
			if le.Message == "" || (len(le.Details) > 0 && !json.Valid(le.Details)) {
				t.Fatalf("error without message or with invalid details: %#v", le)
			}
			return
		}
		out, err := marshalPlain(in)
		if err != nil {
			t.Fatalf("accepted entry does not encode: %v", err)
		}
		// What PostgreSQL's jsonb refuses must never get through (it would fail a whole
		// group-commit transaction): \u0000 and invalid UTF-8.
		if bytes.Contains(out, []byte(`\u0000`)) || !json.Valid(out) {
			t.Fatalf("accepted entry is not jsonb-safe: %s", out)
		}
		again, err := DecodeEntry(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		// Metadata compares as JSON: json.Marshal escapes <, > and & in it (\u0026), which is
		// the same JSON text for jsonb.
		if !sameJSON(in.Metadata, again.Metadata) {
			t.Fatalf("round trip changed the metadata: %s -> %s", in.Metadata, again.Metadata)
		}
		in.Metadata, again.Metadata = nil, nil
		if !reflect.DeepEqual(in, again) {
			t.Fatalf("round trip changed the entry:\n%#v\n%#v", in, again)
		}
	})
}

func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	return da.Decode(&x) == nil && db.Decode(&y) == nil && reflect.DeepEqual(x, y)
}
