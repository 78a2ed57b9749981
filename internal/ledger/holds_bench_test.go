package ledger_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// benchLedger: ledger B with 16 funded USD accounts, so that parallel clients spread over them.
func benchLedger(b *testing.B) *pgxpool.Pool {
	b.Helper()
	d := pgtest.NewWithConfig(b, func(c *pgxpool.Config) { c.MaxConns = 16 })
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:bench", "B"); err != nil {
		b.Fatal(err)
	}
	unlimited := "unlimited"
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:bench", "B", ledger.AccountInput{ID: "issuance", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited}); err != nil {
		b.Fatal(err)
	}
	var fund []ledger.EntryInput
	for i := range 16 {
		id := fmt.Sprintf("a%02d", i)
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:bench", "B", ledger.AccountInput{ID: id, CurrencyCode: "USD", AssetType: "fiat"}); err != nil {
			b.Fatal(err)
		}
		fund = append(fund, ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: id, Amount: "1000000000.00", CurrencyCode: "USD",
			AssetType: "fiat", TransactionType: "funding", ReferenceID: "fund-" + id})
	}
	if _, err := ledger.PostBatch(ctx, d.Pool, "B", fund, true); err != nil {
		b.Fatal(err)
	}
	return d.Pool
}

// BenchmarkPlainPosting: one entry per statement (PostBatch of one), 8 clients in parallel.
// Compare with BenchmarkHoldCapture: a hold and its full capture, two statements.
func BenchmarkPlainPosting(b *testing.B) {
	db := benchLedger(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			rs, err := ledger.PostBatch(ctx, db, "B", []ledger.EntryInput{{DebitAccountID: fmt.Sprintf("a%02d", i%16),
				CreditAccountID: fmt.Sprintf("a%02d", (i+1)%16), Amount: "1.00", CurrencyCode: "USD", AssetType: "fiat",
				TransactionType: "t", ReferenceID: fmt.Sprintf("p%d", i)}}, false)
			if err != nil || rs[0].Code != ledger.CodeCreated {
				b.Fatalf("post: %v %+v", err, rs)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "postings/s")
}

func BenchmarkHoldCapture(b *testing.B) {
	db := benchLedger(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			ref := fmt.Sprintf("h%d", i)
			r, err := ledger.CreateHold(ctx, db, "B", ledger.HoldInput{DebitAccountID: fmt.Sprintf("a%02d", i%16),
				CreditAccountID: fmt.Sprintf("a%02d", (i+1)%16), Amount: "1.00", CurrencyCode: "USD", AssetType: "fiat",
				TransactionType: "t", ReferenceID: ref})
			if err != nil || r.Code != ledger.CodeCreated {
				b.Fatalf("hold: %v %+v", err, r)
			}
			r, err = ledger.CaptureHold(ctx, db, "B", ref, ledger.CaptureInput{ReferenceID: ref + "-c"})
			if err != nil || r.Code != ledger.CodeCreated {
				b.Fatalf("capture: %v %+v", err, r)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
}
