package httpapi

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"dualledger/internal/backfill"
	"dualledger/internal/ledger"
	"dualledger/internal/reconcile"
)

// The references the operator's tools compute in advance are reserved: a reconciliation
// correction, a backfill rollback's reversal and a generated backfill id all carry a reserved
// prefix (so the API's refusal below covers every one of them).
func TestOperatorToolsUseReservedReferences(t *testing.T) {
	for _, ref := range []string{reconcile.CorrectionReference(57), backfill.ReversalReference(12), "BACKFILL-0123456789abcdef0123456789abcdef"} {
		if _, ok := ledger.ReservedReference(ref); !ok {
			t.Errorf("%s is not reserved", ref)
		}
	}
	if _, ok := ledger.ReservedReference("reconcile-me"); ok {
		t.Error("reconcile-me is not one of the tools' references")
	}
}

// TestAPIRefusesReservedReferences: no API client, a member bank's key included, can take a
// reference that a reconciliation correction, a backfill rollback or import will post later (it
// would block them): single entries, batches, hold captures and settlements are refused with
// invalid_request naming the field, and nothing is written.
func TestAPIRefusesReservedReferences(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	count := func() int {
		var n int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	for _, ref := range []string{"recon-1", "backfill-reversal:seq-3", "BACKFILL-00"} {
		r := e.do("POST", "/v1/ledgers/MASTER/entries", entry(ref, "SCB-1-USD", "SCB-2-USD", "1.00"))
		if r.status != http.StatusBadRequest || r.errCode() != ledger.CodeInvalidRequest || !strings.Contains(string(r.raw), "reserved") {
			t.Errorf("entry %s: %d %s", ref, r.status, r.raw)
		}
		r = e.do("POST", "/v1/ledgers/MASTER/entries/batch", map[string]any{"entries": []any{entry(ref, "SCB-1-USD", "SCB-2-USD", "1.00")}})
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.raw), "entries[0].reference_id") {
			t.Errorf("batch %s: %d %s", ref, r.status, r.raw)
		}
		r = e.do("POST", "/v1/settlements", map[string]any{"node_id": "n1", "source_bank_id": "SCB-1", "destination_bank_id": "SCB-2",
			"amount": "1.00", "currency_code": "USD", "asset_type": "fiat", "reference_id": ref})
		if r.status != http.StatusBadRequest || r.errCode() != ledger.CodeInvalidRequest {
			t.Errorf("settlement %s: %d %s", ref, r.status, r.raw)
		}
	}
	e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/holds", entry("hold-r", "SCB-1-USD", "SCB-2-USD", "1.00")), http.StatusCreated)
	r := e.do("POST", "/v1/ledgers/MASTER/holds/hold-r/capture", map[string]any{"reference_id": "recon-9"})
	if r.status != http.StatusBadRequest || r.errCode() != ledger.CodeInvalidRequest {
		t.Errorf("capture as recon-9: %d %s", r.status, r.raw)
	}
	if n := count(); n != before {
		t.Errorf("%d entries written", n-before)
	}
}
