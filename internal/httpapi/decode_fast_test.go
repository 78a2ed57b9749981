package httpapi

import (
	"testing"
)

// The fast path may only ever skip scanJSON for a body scanJSON accepts: if plainObject says a
// body is fine and scanJSON refuses it, the fast path let through something the strict rules
// forbid (a duplicate key, an unknown field, nesting or a number past the limits).
func FuzzPlainObjectAgreesWithScanJSON(f *testing.F) {
	for _, s := range []string{
		`{"amount":"1.00","reference_id":"r1"}`,
		`{"amount":"1.00","amount":"2.00"}`,
		`{"metadata":{"a":1,"a":2}}`,
		`{"metadata":{"a":[{"b":1},{"b":2}]}}`,
		`{"metadata":{"n":1e400}}`,
		`{"metadata":{"n":12345678901234567890123456789012345678901234567890123456789012345}}`,
		`{"AMOUNT":"1"}`,
		`{"amount":"1"} {}`,
		`[{"amount":"1"}]`,
		`{"metadata":{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}`,
		`{"m\u0065tadata":{}}`,
		`{"metadata":{"k":"a,\"b\":1"}}`,
		`{"metadata":{"":1,"":2}}`,
		` {"fx_rate":"1.5"} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fields := range []map[string]bool{entryFields, batchFields} {
			if plainObject(data, fields, maxJSONDepth) {
				if err := scanJSON(data, fields, maxJSONDepth); err != nil {
					t.Fatalf("plainObject accepted %q, scanJSON refuses it: %v", data, err)
				}
			}
		}
	})
}

// The fast path answers the common body without the token walk; the bodies it sends to the slow
// path are the ones scanJSON has something to say about.
func TestPlainObjectTakesTheCommonBodyAndDefersTheRest(t *testing.T) {
	fast := []string{
		`{"debit_account_id":"a","credit_account_id":"b","amount":"1.00","currency_code":"USD","asset_type":"fiat","transaction_type":"t","reference_id":"r","metadata":{"k":[1,2,{"x":null}],"n":-0.5}}`,
		"\n{ \"amount\" : \"1\" }\n",
	}
	slow := []string{
		`{"amount":"1","amount":"2"}`, `{"metadata":{"a":1,"a":2}}`, `{"nope":1}`, `{"metadata":{"n":1e5}}`,
		`{"amount":"1"} x`, `{"amount":"1"}{}`, `[]`, `{"am\u006fount":"1"}`, `{"amount":"1"`,
	}
	for _, s := range fast {
		if !plainObject([]byte(s), entryFields, maxJSONDepth) {
			t.Errorf("slow path for a plain body: %s", s)
		}
	}
	for _, s := range slow {
		if plainObject([]byte(s), entryFields, maxJSONDepth) {
			t.Errorf("fast path for %s", s)
		}
	}
}
