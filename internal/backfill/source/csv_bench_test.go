package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkCSVRead reads a file of the seed's columns (one quoted JSON cell in every 13th row),
// as an import does: the reader's CPU is shared with the posting backends.
func BenchmarkCSVRead(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("debitAccountId,creditAccountId,amount,currencyCode,assetType,transactionType,referenceId,fxRate,metadata,timestampUtc\n")
	const rows = 20000
	for i := range rows {
		meta := ""
		if i%13 == 0 {
			meta = `"{""batch"":` + fmt.Sprint(i/1000) + `}"`
		}
		fmt.Fprintf(&sb, "acct-%d,acct-%d,%d.%02d,USD,fiat,transfer,H-%07d,,%s,2024-01-01T00:00:%02dZ\n", i%1000, (i+1)%1000, i%40, i%100, i, meta, i%60)
	}
	path := filepath.Join(b.TempDir(), "bench.csv")
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()
	for b.Loop() {
		c, err := OpenCSV(path, nil, "", CSVOptions{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := c.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		c.Close()
		if n != rows {
			b.Fatalf("%d rows", n)
		}
	}
}
