package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/scb/sim"
)

// cliWith runs the binary with DATABASE_URL=dbURL and the SCBs' API settings in the environment.
func cliWith(t *testing.T, dbURL string, scbs []*scbSim, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	for _, s := range scbs {
		envID := strings.ReplaceAll(s.id, "-", "_")
		cmd.Env = append(cmd.Env, "SCB_"+envID+"_API_URL="+s.http.URL, "SCB_"+envID+"_API_KEY="+s.key)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestReconcileCLI: the operator's path. SCB-1 loses an entry after it was FINALIZED; `reconcile
// all` finds it (exit 1), `discrepancies list/show` show it, `resolve --resolution requeue`
// redelivers it, the worker delivers it, and the next `reconcile scb` clears it (exit 0).
func TestReconcileCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(6, "rc")
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", sim.Faults{}), startSim(t, "SCB-2", "k2", sim.Faults{})}
	total := e.count("")
	w := e.worker("w1", scbs, nil)
	waitFor(t, "every row FINALIZED", 60*time.Second, func() bool { return e.count("FINALIZED") == total })
	owner := e.db.ConnStr

	if _, stderr, code := cliWith(t, owner, scbs, "reconcile", "all", "--grace", "0"); code != 0 {
		t.Fatalf("clean reconcile: exit %d: %s", code, stderr)
	}
	if _, err := scbs[0].srv.Tamper(sim.Tamper{Action: "lose", LedgerID: "MASTER", ReferenceID: "rc-00002"}); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := cliWith(t, owner, scbs, "reconcile", "all", "--full", "--grace", "0", "--json")
	if code != 1 {
		t.Fatalf("reconcile after the loss: exit %d, want 1: %s %s", code, out, stderr)
	}
	var res struct {
		Results []struct {
			SCB        string `json:"scb_id"`
			Unresolved int    `json:"unresolved"`
			Run        struct {
				Found int `json:"found"`
			} `json:"run"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != 2 || res.Results[0].Unresolved != 1 || res.Results[1].Unresolved != 0 {
		t.Fatalf("%v: %s", err, out)
	}

	// An SCB that cannot be asked: the error has the documented shape, and what is unresolved is
	// still counted; a --ledger that names no ledger is refused, not "ok".
	out, _, code = cliWith(t, owner, nil, "reconcile", "scb", "--scb", "SCB-1", "--json")
	var failed struct {
		Results []struct {
			Unresolved int `json:"unresolved"`
			Error      struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &failed); err != nil || code != 3 || len(failed.Results) != 1 ||
		failed.Results[0].Unresolved != 1 || failed.Results[0].Error.Code == "" || failed.Results[0].Error.Message == "" {
		t.Errorf("reconcile of an unconfigured SCB: exit %d, %v: %s", code, err, out)
	}
	if _, stderr, code := cliWith(t, owner, scbs, "reconcile", "scb", "--scb", "SCB-1", "--ledger", "MASTR"); code != 1 ||
		!strings.Contains(stderr, "unknown_ledger") {
		t.Errorf("reconcile --ledger MASTR: exit %d: %s", code, stderr)
	}

	out, _, code = cliWith(t, owner, nil, "discrepancies", "list", "--json")
	var list struct {
		Discrepancies []struct {
			ID          int64  `json:"id"`
			Kind        string `json:"kind"`
			ReferenceID string `json:"reference_id"`
		} `json:"discrepancies"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list.Discrepancies) != 1 ||
		list.Discrepancies[0].Kind != "missing_on_scb" || list.Discrepancies[0].ReferenceID != "rc-00002" {
		t.Fatalf("list: %v %s", err, out)
	}
	id := strconv.FormatInt(list.Discrepancies[0].ID, 10)
	if out, _, code := cliWith(t, owner, nil, "discrepancies", "show", id); code != 0 || !strings.Contains(out, "missing_on_scb") {
		t.Fatalf("show: %d %s", code, out)
	}
	for _, bad := range [][]string{
		{"discrepancies", "resolve", id, "--resolution", "requeue"},                    // no reason
		{"discrepancies", "resolve", id, "--resolution", "undo", "--reason", "x"},      // unknown resolution
		{"discrepancies", "resolve", "x1", "--resolution", "requeue", "--reason", "x"}, // bad id
		{"discrepancies", "resolve", id, "--resolution", "correct", "--reason", "x"},   // no correction
		{"discrepancies", "list", "--kind", "missing"},                                 // unknown kind
		{"reconcile", "scb"}, // no --scb
	} {
		if _, stderr, code := cliWith(t, owner, scbs, bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", bad, code, stderr)
		}
	}
	if _, stderr, code := cliWith(t, owner, nil, "discrepancies", "resolve", "999999", "--resolution", "explained", "--reason", "x"); code != 1 ||
		!strings.Contains(stderr, "unknown_discrepancy") {
		t.Errorf("unknown id: exit %d: %s", code, stderr)
	}
	if out, stderr, code := cliWith(t, owner, nil, "discrepancies", "resolve", id, "--resolution", "requeue", "--reason", "SCB-1 restored a backup"); code != 0 ||
		!strings.Contains(out, "RESOLVED") {
		t.Fatalf("resolve: exit %d: %s %s", code, out, stderr)
	}
	if _, stderr, code := cliWith(t, owner, nil, "discrepancies", "resolve", id, "--resolution", "explained", "--reason", "again"); code != 1 ||
		!strings.Contains(stderr, "discrepancy_resolved") {
		t.Errorf("second resolve: exit %d: %s", code, stderr)
	}
	waitFor(t, "the redelivered row FINALIZED", 60*time.Second, func() bool { return e.count("FINALIZED") == total })
	_ = w.Process.Signal(syscall.SIGTERM)
	_ = w.Wait()
	out, stderr, code = cliWith(t, owner, scbs, "reconcile", "scb", "--scb", "SCB-1", "--grace", "0")
	if code != 0 {
		t.Fatalf("reconcile after the redelivery: exit %d: %s %s", code, out, stderr)
	}
	out, _, _ = cliWith(t, owner, nil, "discrepancies", "list", "--cleared", "--json")
	if !strings.Contains(out, `"cleared": true`) || !strings.Contains(out, `"resolution": "requeue"`) {
		t.Errorf("after the fix: %s", out)
	}
	if out, _, _ := cliWith(t, owner, nil, "operator-log", "--json"); !strings.Contains(out, "discrepancy.resolve") || !strings.Contains(out, "outbox.redeliver") {
		t.Errorf("operator log: %s", out)
	}
	e.checkExactlyOnce(scbs...)

	// The runs, newest first: SCB-1's last one incremental, the one before it full (with --json),
	// and the table the operator reads.
	out, _, code = cliWith(t, owner, nil, "reconcile", "runs", "--scb", "SCB-1", "--json")
	var runs struct {
		Runs []struct {
			SCB    string `json:"scb_id"`
			Full   bool   `json:"full"`
			Status string `json:"status"`
			Actor  string `json:"actor"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil || code != 0 || len(runs.Runs) != 3 || runs.Runs[0].Full || !runs.Runs[1].Full ||
		runs.Runs[0].SCB != "SCB-1" || runs.Runs[0].Status != "ok" || !strings.HasPrefix(runs.Runs[0].Actor, "cli:") {
		t.Errorf("reconcile runs --scb SCB-1: exit %d, %v: %s", code, err, out)
	}
	if out, _, code := cliWith(t, owner, nil, "reconcile", "runs", "--limit", "2"); code != 0 || !strings.Contains(out, "KIND") ||
		strings.Count(strings.TrimSpace(out), "\n") != 2 || !strings.Contains(out, "incremental") {
		t.Errorf("reconcile runs --limit 2: exit %d:\n%s", code, out)
	}
	if _, stderr, code := cliWith(t, owner, nil, "reconcile", "runs", "--limit", "0"); code != 2 {
		t.Errorf("reconcile runs --limit 0: exit %d: %s", code, stderr)
	}

	// The statement the member bank reconciles with.
	today := time.Now().UTC().Format(time.DateOnly)
	if out, stderr, code := cliWith(t, owner, nil, "statement", "--ledger", "MASTER", "--account", "SCB-1-USD", "--from", today, "--to", today,
		"--format", "camt053"); code != 0 || !strings.Contains(out, "<Cd>CLBD</Cd>") {
		t.Errorf("statement: exit %d: %s %s", code, out, stderr)
	}
	if _, stderr, code := cliWith(t, owner, nil, "statement", "--ledger", "MASTER", "--account", "SCB-1-USD", "--from", "2026-02-30", "--to", today); code != 2 {
		t.Errorf("statement with a bad date: exit %d: %s", code, stderr)
	}
}

// TestWorkerReconcilesOnSchedule: `dualledger worker` runs the reconciliation schedule as its own
// role (serve's API login need not be able to): at start it reconciles each SCB that has no good
// run yet, with a full read, records the runs as the worker, and finds nothing amiss; on SIGTERM
// it stops cleanly.
func TestWorkerReconcilesOnSchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(6, "sch")
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", sim.Faults{}), startSim(t, "SCB-2", "k2", sim.Faults{})}
	total := e.count("")
	e.worker("w1", scbs, nil)
	waitFor(t, "every row FINALIZED", 60*time.Second, func() bool { return e.count("FINALIZED") == total })

	ctx := context.Background()
	w2 := e.worker("w2", scbs, nil, "--reconcile-every", "1m", "--reconcile-grace", "0")
	waitFor(t, "a good run of each SCB by w2's schedule", 60*time.Second, func() bool {
		var n int
		// The first run of an SCB is a full one (no full run yet, --reconcile-full-every).
		err := e.db.Pool.QueryRow(ctx, `SELECT count(DISTINCT scb_id) FROM reconciliation_runs
			WHERE actor = 'system:worker-reconcile@w2' AND status = 'ok' AND full_read`).Scan(&n)
		return err == nil && n == 2
	})
	var open, failed int
	if err := e.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM reconciliation_discrepancies WHERE status <> 'RESOLVED' AND cleared_at IS NULL),
		(SELECT count(*) FROM reconciliation_runs WHERE status <> 'ok')`).Scan(&open, &failed); err != nil {
		t.Fatal(err)
	}
	if open != 0 || failed != 0 {
		t.Errorf("after the scheduled runs: %d live discrepancies and %d runs not ok, want none", open, failed)
	}
	stop(t, w2)
}
