package reconcile_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"dualledger/internal/reconcile"
)

// TestCollector: the gauges read through the API's role: open discrepancies by SCB and kind (not
// the resolved or cleared ones), the oldest's age, the last good run, a failed latest run.
func TestCollector(t *testing.T) {
	e := faultyLedger(t)
	e.reconcile(reconcile.Options{})
	ds := byRef(e.discrepancies(reconcile.Filter{}))
	if _, err := e.resolve(ds["r3"].ID, reconcile.Resolution{Kind: "explained", Reason: "known"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(reconcile.NewCollector(e.d.PoolAs(t, "dualledger_api"), nil))
	want := `
# HELP dualledger_reconcile_open_discrepancies Discrepancies with the member banks that are live (not cleared) and not RESOLVED.
# TYPE dualledger_reconcile_open_discrepancies gauge
dualledger_reconcile_open_discrepancies{kind="amount_mismatch",scb="SCB-1"} 1
dualledger_reconcile_open_discrepancies{kind="delivery_failed",scb="SCB-1"} 1
dualledger_reconcile_open_discrepancies{kind="field_mismatch",scb="SCB-1"} 1
dualledger_reconcile_open_discrepancies{kind="missing_on_dbis",scb="SCB-1"} 1
dualledger_reconcile_open_discrepancies{kind="missing_on_scb",scb="SCB-1"} 1
dualledger_reconcile_open_discrepancies{kind="status_mismatch",scb="SCB-1"} 1
# HELP dualledger_reconcile_last_run_failed 1 when the SCB's latest reconciliation run failed or was abandoned.
# TYPE dualledger_reconcile_last_run_failed gauge
dualledger_reconcile_last_run_failed{scb="SCB-1"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dualledger_reconcile_open_discrepancies", "dualledger_reconcile_last_run_failed"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reconcile.NewCollector(e.d.PoolAs(t, "dualledger_api"), nil),
		"dualledger_reconcile_last_success_timestamp_seconds", "dualledger_reconcile_oldest_open_discrepancy_seconds"); n != 2 {
		t.Errorf("last success and oldest: %d series, want 2", n)
	}
}
