package httpapi

import (
	"testing"
)

// BenchmarkDecodeEntry is the Go-side cost of reading one posting's body by the strict rules
// (docs/benchmarks.md, "the Go side of the request path").
func BenchmarkDecodeEntry(b *testing.B) {
	body := []byte(`{"debit_account_id":"acct-17","credit_account_id":"acct-942","amount":"0.01","currency_code":"USD",` +
		`"asset_type":"fiat","transaction_type":"bench","reference_id":"h-18ed18e00be0beda-123456","metadata":{"channel":"rtgs","batch":7}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeEntryBytes(body); err != nil {
			b.Fatal(err)
		}
	}
}
