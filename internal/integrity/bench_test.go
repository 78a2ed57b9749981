package integrity_test

import (
	"context"
	"testing"

	"dualledger/internal/integrity"
	"dualledger/internal/pg/pgtest"
)

// BenchmarkVerifyChain measures the Go walk over 50000 entries (b.N walks); entries/s is the
// figure to compare (docs/hash-chain.md has the 1M-entry measurement of the CLI).
func BenchmarkVerifyChain(b *testing.B) {
	d := pgtest.New(b)
	createLedger(b, d.Pool, "B")
	const n = 50000
	post(b, d.Pool, "B", genEntries(0, n))
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		r, err := integrity.VerifyChain(ctx, d.Pool, "B", integrity.VerifyOptions{})
		if err != nil || !r.Intact {
			b.Fatalf("%+v %v", r.Problem, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
}
