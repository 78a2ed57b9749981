package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"dualledger/internal/ledger"
)

// TestSettleChecksReference: a settlement's reference_id follows the ledger's rule, checked
// before any lookup (so a bad one is invalid_request even for banks that do not exist) and
// nothing is written; an odd but valid one settles and reads back.
func TestSettleChecksReference(t *testing.T) {
	t.Parallel()
	s, d := newService(t)
	ctx := context.Background()
	count := func() int {
		t.Helper()
		var n int
		if err := d.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ledger_entries) + (SELECT count(*) FROM dual_ledger_outbox)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	for _, ref := range []string{" stl", "stl ", "stl\u200b1", "stl\u202e1", "cafe\u0301", "..", "a\tb", strings.Repeat("s", 129)} {
		for _, r := range []Request{req(ref, "1.00"), {NodeID: "n", SourceBankID: "NOPE", DestinationBankID: "NOPE2", Amount: "1", CurrencyCode: "USD", ReferenceID: ref}} {
			_, err := s.Settle(ctx, r)
			var le *ledger.Error
			if !errors.As(err, &le) || le.Code != ledger.CodeInvalidRequest {
				t.Errorf("%q: %v, want invalid_request", ref, err)
				continue
			}
			var det map[string]any
			if json.Unmarshal(le.Details, &det) != nil || det["field"] != "reference_id" || det["rule"] == nil {
				t.Errorf("%q: details %s", ref, le.Details)
			}
		}
	}
	if n := count() - before; n != 0 {
		t.Fatalf("bad references wrote %d rows", n)
	}
	for _, ref := range []string{`stl "quoted" (1) 100% ?#/`, "stl-ünï-✓", "a..b", strings.Repeat("é", 128)} {
		out, err := s.Settle(ctx, req(ref, "1.00"))
		if err != nil || out.ReferenceID != ref || out.Entry.ReferenceID != ref || len(out.Sync) != 2 {
			t.Errorf("%q: %v %+v", ref, err, out)
			continue
		}
		if got, err := s.Get(ctx, ref); err != nil || got.Entry.ID != out.Entry.ID {
			t.Errorf("Get %q: %v %+v", ref, err, got)
		}
	}
}
