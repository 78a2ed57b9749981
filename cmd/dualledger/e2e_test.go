package main

// End-to-end tests of the dual-ledger sync with real processes and real HTTP on loopback: the
// `dualledger worker` binary (built once), simulated SCBs serving the real simulator handler, and a
// real PostgreSQL database per test.

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
	"dualledger/internal/scb/sim"
)

var binary string // the dualledger binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dualledger-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dualledger")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build dualledger: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// scbSim is a simulated SCB on loopback.
type scbSim struct {
	id, key string
	srv     *sim.Server
	http    *httptest.Server
}

func startSim(t *testing.T, id, key string, faults sim.Faults) *scbSim {
	t.Helper()
	s, err := sim.New(sim.Config{ID: id, APIKey: key, DataDir: filepath.Join(t.TempDir(), id), InitialStatus: "ACCEPTED",
		FinalAfter: 200 * time.Millisecond, Faults: faults, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(s.Handler())
	t.Cleanup(func() { h.Close(); s.Close() })
	return &scbSim{id: id, key: key, srv: s, http: h}
}

// env is a migrated database with a MASTER ledger, two registered banks with USD settlement
// accounts, and the environment a worker process needs.
type env struct {
	t  *testing.T
	db *pgtest.DB
}

func newEnv(t *testing.T) *env {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "MASTER")
	must(err)
	for _, b := range []string{"SCB-1", "SCB-2"} {
		_, err = ledger.RegisterBank(ctx, d.Pool, "system:test", b, b)
		must(err)
		id := b
		_, err = ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: b + "-USD", CurrencyCode: "USD", AssetType: "fiat", BankID: &id})
		must(err)
	}
	unlimited := "unlimited"
	_, err = ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "issuance", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited})
	must(err)
	return &env{t: t, db: d}
}

// addLedger creates another ledger with the accounts newEnv gives MASTER (both banks' accounts
// and an issuance account), so that one SCB's outbox rows span ledgers.
func (e *env) addLedger(id string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, e.db.Pool, "system:test", id); err != nil {
		e.t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, in := range []ledger.AccountInput{
		{ID: "SCB-1-USD", BankID: ptr("SCB-1")}, {ID: "SCB-2-USD", BankID: ptr("SCB-2")}, {ID: "issuance", OverdraftLimit: &unlimited},
	} {
		in.CurrencyCode, in.AssetType = "USD", "fiat"
		if _, err := ledger.CreateAccount(ctx, e.db.Pool, "system:test", id, in); err != nil {
			e.t.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// settle posts n settlements alternating SCB-1 -> SCB-2 and back (each gets two outbox rows).
// Funding from the issuance account touches SCB-1 only (one row).
func (e *env) settle(n int, prefix string) { e.settleIn("MASTER", n, prefix) }

// settleIn is settle in another ledger (addLedger).
func (e *env) settleIn(ledgerID string, n int, prefix string) {
	e.t.Helper()
	ctx := context.Background()
	res, err := ledger.PostBatch(ctx, e.db.Pool, ledgerID, []ledger.EntryInput{{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD",
		Amount: "100000000.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: prefix + "-fund"}}, false)
	if err != nil || !res[0].OK() {
		e.t.Fatalf("fund: %v %+v", err, res)
	}
	for start := 0; start < n; start += 1000 {
		var batch []ledger.EntryInput
		for i := start; i < min(n, start+1000); i++ {
			from, to := "SCB-1-USD", "SCB-2-USD"
			if i%2 == 1 {
				from, to = to, from
			}
			batch = append(batch, ledger.EntryInput{DebitAccountID: from, CreditAccountID: to, Amount: "1.00", CurrencyCode: "USD",
				AssetType: "fiat", TransactionType: "GSS_SETTLEMENT", ReferenceID: fmt.Sprintf("%s-%05d", prefix, i)})
		}
		res, err := ledger.PostBatch(ctx, e.db.Pool, ledgerID, batch, true)
		if err != nil || !res[0].OK() {
			e.t.Fatalf("settlements: %v %+v", err, res[0])
		}
	}
}

// worker starts `dualledger worker` against the test database, without its reconciliation
// schedule unless extra turns it on (a run holds its SCB's lock, which tests of `reconcile` would
// otherwise meet).
func (e *env) worker(name string, scbs []*scbSim, keyOverride map[string]string, extra ...string) *exec.Cmd {
	e.t.Helper()
	args := append([]string{"worker", "--worker-id", name, "--lease", "3s", "--scb-timeout", "1s", "--backoff-base", "50ms",
		"--backoff-cap", "1s", "--poll-every", "200ms", "--grace", "2s", "--reconcile-every", "0"}, extra...)
	cmd := exec.Command(binary, args...)
	// As in production: a login role that is a plain member of dualledger_worker.
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.db.LoginRole(e.t, "dualledger_worker"))
	for _, s := range scbs {
		key := s.key
		if k, ok := keyOverride[s.id]; ok {
			key = k
		}
		envID := strings.ReplaceAll(s.id, "-", "_")
		cmd.Env = append(cmd.Env, "SCB_"+envID+"_API_URL="+s.http.URL, "SCB_"+envID+"_API_KEY="+key)
	}
	logf, err := os.Create(filepath.Join(e.t.TempDir(), name+".log"))
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	childOfTest(cmd)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
		logf.Close()
		if e.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			e.t.Logf("%s log:\n%s", name, tail(string(b), 4000))
		}
	})
	return cmd
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// count returns the number of outbox rows with the status ("" = all).
func (e *env) count(status string) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox WHERE $1 = '' OR status = $1`, status).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce: every outbox row is FINALIZED and every SCB posted each key exactly once.
func (e *env) checkExactlyOnce(scbs ...*scbSim) {
	e.t.Helper()
	ctx := context.Background()
	for _, s := range scbs {
		var rows int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox WHERE scb_id = $1`, s.id).Scan(&rows); err != nil {
			e.t.Fatal(err)
		}
		st := s.srv.Stats(true)
		if st.DuplicatePosts != 0 || st.Posts != rows || st.Keys != rows {
			e.t.Errorf("%s: %d outbox rows, simulator posted %d entries under %d keys, %d keys more than once",
				s.id, rows, st.Posts, st.Keys, st.DuplicatePosts)
		}
		for k, n := range st.PerKeyPosts {
			if n != 1 {
				e.t.Errorf("%s: key %s posted %d times", s.id, k, n)
			}
		}
	}
	if n := e.count("FINALIZED"); n != e.count("") {
		e.t.Errorf("%d of %d rows FINALIZED", n, e.count(""))
	}
}

// TestWorkerKilledMidBacklog: kill -9 the worker while it delivers 2,000 settlements of MASTER
// and 600 of a second ledger (the worker claims per SCB and ledger) to SCBs that drop a fifth of
// their answers after committing; a new worker finishes the job: every row FINALIZED, every key
// posted exactly once by each SCB.
func TestWorkerKilledMidBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(2000, "stl")
	e.addLedger("SECOND")
	e.settleIn("SECOND", 600, "stl")
	// Answers take 20-40 ms, so that the kill finds deliveries in flight (rows held, PROCESSING).
	faults := sim.Faults{DropAfterCommitRate: 0.2, Latency: sim.Duration(20 * time.Millisecond), Jitter: sim.Duration(20 * time.Millisecond)}
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", faults), startSim(t, "SCB-2", "k2", faults)}
	total := e.count("")

	w1 := e.worker("w1", scbs, nil)
	waitFor(t, "a third of the backlog delivered, deliveries in flight", 90*time.Second, func() bool {
		return total-e.count("QUEUED")-e.count("PROCESSING") >= total/3 && e.count("PROCESSING") > 0
	})
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = w1.Process.Wait()
	held := e.count("PROCESSING")
	t.Logf("killed w1 with %d of %d rows FINALIZED, %d SENT and %d held (PROCESSING)", e.count("FINALIZED"), total, e.count("SENT"), held)
	if e.count("FINALIZED") == total {
		t.Fatal("the backlog drained before the kill; the test proved nothing")
	}

	w2 := e.worker("w2", scbs, nil)
	waitFor(t, "every row FINALIZED", 120*time.Second, func() bool { return e.count("FINALIZED") == total })
	_ = w2.Process.Signal(syscall.SIGTERM)
	if err := w2.Wait(); err != nil {
		t.Errorf("w2 after SIGTERM: %v", err)
	}
	e.checkExactlyOnce(scbs...)
	drops := scbs[0].srv.Stats(false).Faults["drop_after_commit"] + scbs[1].srv.Stats(false).Faults["drop_after_commit"]
	if drops == 0 {
		t.Error("no answer was dropped after commit: the fault was not exercised")
	}
	var reaped int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox_attempts WHERE kind = 'lease_expired'`).Scan(&reaped); err != nil {
		t.Fatal(err)
	}
	if held == 0 || reaped == 0 {
		t.Errorf("%d rows were held by the killed worker and %d expired leases recorded: the kill must strand rows and the lease must bring them back", held, reaped)
	}
	t.Logf("%d answers dropped after commit, %d rows reclaimed from the dead worker", drops, reaped)
}

// TestOutageBacksOff: both SCBs answer every request with a 5xx (no Retry-After) for 30 s. The
// backlog waits with exponential backoff and full jitter (counted: no hot loop) and drains once
// the SCBs are back.
func TestOutageBacksOff(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(100, "out")
	down := sim.Faults{ErrorRate: 1}
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", down), startSim(t, "SCB-2", "k2", down)}
	rows := e.count("")

	// A 20s cap keeps the drain after the outage within the test's patience (with 5m a row may
	// legitimately wait minutes more).
	e.worker("w1", scbs, nil, "--backoff-base", "1s", "--backoff-cap", "20s", "--max-attempts", "20")
	time.Sleep(30 * time.Second)
	zero := 0.0
	for _, s := range scbs {
		if _, err := s.srv.SetFaults(sim.FaultsUpdate{ErrorRate: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	during := scbs[0].srv.Stats(false).Requests + scbs[1].srv.Stats(false).Requests
	waitFor(t, "the backlog drained after the outage", 90*time.Second, func() bool { return e.count("FINALIZED") == rows })

	// Exponential backoff with full jitter from 1s: about log2(30)+2 attempts per row in 30s. A
	// hot loop would make thousands.
	perRow := float64(during) / float64(rows)
	t.Logf("%d rows, %d requests during the 30s outage (%.1f per row)", rows, during, perRow)
	if perRow > 10 {
		t.Errorf("%.1f requests per row during a 30s outage: the worker does not back off", perRow)
	}
	if perRow < 3 {
		t.Errorf("%.1f requests per row during the outage: the worker did not keep retrying", perRow)
	}
	var retried int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox_attempts WHERE outcome = 'retry' AND status_code >= 500`).Scan(&retried); err != nil {
		t.Fatal(err)
	}
	if retried == 0 {
		t.Error("no 5xx retry was recorded in the attempts")
	}
	e.checkExactlyOnce(scbs...)
}

// TestOutageRetryAfterHonoured: an SCB that says how long it will be down (503 with Retry-After)
// is asked again only after that.
func TestOutageRetryAfterHonoured(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(50, "ra")
	until := time.Now().Add(6 * time.Second)
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", sim.Faults{OutageUntil: until}), startSim(t, "SCB-2", "k2", sim.Faults{OutageUntil: until})}
	rows := e.count("")
	e.worker("w1", scbs, nil, "--backoff-base", "100ms")
	time.Sleep(time.Until(until))
	during := scbs[0].srv.Stats(false).Requests + scbs[1].srv.Stats(false).Requests
	waitFor(t, "the backlog drained after the outage", 60*time.Second, func() bool { return e.count("FINALIZED") == rows })
	// With a 100ms base and no Retry-After this would be ~6 requests per row; honouring the
	// Retry-After (the outage's remaining seconds) it is one, or two for rows first tried in the
	// last second.
	if perRow := float64(during) / float64(rows); perRow > 2 {
		t.Errorf("%.1f requests per row while the SCB said Retry-After: not honoured", perRow)
	}
	e.checkExactlyOnce(scbs...)
}

// TestWrongAPIKeyFailsThenRequeue: with a wrong key every row ends FAILED after one attempt (401
// is permanent) with a clear reason; after the key is fixed, `outbox requeue --all-failed`
// delivers them.
func TestWrongAPIKeyFailsThenRequeue(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(50, "key")
	scbs := []*scbSim{startSim(t, "SCB-1", "right-1", sim.Faults{}), startSim(t, "SCB-2", "right-2", sim.Faults{})}
	rows := e.count("")
	scb1Rows := 0
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox WHERE scb_id = 'SCB-1'`).Scan(&scb1Rows); err != nil {
		t.Fatal(err)
	}

	// A lease long enough that no row outlives it on a loaded machine: the 3 s of the other tests
	// once expired under CI load (the race detector, every package's clusters at once) while a
	// row's 401 was being recorded, and the reaper's reclaim counted a second attempt. What is
	// tested here is the 401, not the lease.
	w1 := e.worker("w1", scbs, map[string]string{"SCB-1": "wrong-key"}, "--lease", "20s")
	waitFor(t, "SCB-1's rows FAILED and SCB-2's FINALIZED", 60*time.Second, func() bool {
		return e.count("FAILED") == scb1Rows && e.count("FINALIZED") == rows-scb1Rows
	})
	var maxAttempts int
	var reason string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT max(attempts), min(failure_reason) FROM dual_ledger_outbox WHERE status = 'FAILED'`).Scan(&maxAttempts, &reason); err != nil {
		t.Fatal(err)
	}
	if maxAttempts != 1 {
		t.Errorf("a 401 is permanent: rows took up to %d attempts", maxAttempts)
	}
	if !strings.Contains(reason, "401") || strings.Contains(reason, "wrong-key") {
		t.Errorf("failure reason %q: want the 401 named and never the key", reason)
	}
	_ = w1.Process.Signal(syscall.SIGTERM)
	_ = w1.Wait()

	// A typo in --scb or --ledger is an error that requeues nothing, not "0 row(s) requeued".
	for _, args := range [][]string{{"outbox", "requeue", "--all-failed", "--scb", "SCB1"},
		{"outbox", "requeue", "--all-failed", "--ledger", "NOPE"}, {"outbox", "retry-now", "--all", "--scb", "SCB1"},
		{"outbox", "list", "--status", "FAILED", "--ledger", "NOPE"},
		// and in the reconciliation's reading commands, where a typo read as "no discrepancies"
		{"discrepancies", "list", "--scb", "SCB1"}, {"discrepancies", "list", "--ledger", "NOPE"}, {"reconcile", "runs", "--scb", "SCB1"}} {
		if _, stderr, code := cli(t, e.db.ConnStr, args...); code != 1 || !strings.Contains(stderr, "unknown_") {
			t.Errorf("%v: exit %d, %s; want 1 and unknown_bank or unknown_ledger", args, code, stderr)
		}
	}
	if e.count("FAILED") != scb1Rows {
		t.Fatalf("a refused requeue changed rows: %d FAILED, want %d", e.count("FAILED"), scb1Rows)
	}
	if out, _, code := cli(t, e.db.ConnStr, "outbox", "list", "--status", "FAILED", "--scb", "SCB-1", "--ledger", "MASTER", "--limit", "1000"); code != 0 ||
		strings.Count(strings.TrimSpace(out), "\n") != scb1Rows || !strings.Contains(out, "NEXT ATTEMPT") {
		t.Errorf("outbox list: exit %d\n%s", code, out)
	}

	// Fix the key, requeue through the CLI, and the rows go through.
	e.worker("w2", scbs, nil)
	cmd := exec.Command(binary, "outbox", "requeue", "--all-failed", "--scb", "SCB-1")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.db.ConnStr)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d row(s) requeued", scb1Rows)) {
		t.Fatalf("requeue: %v %s", err, out)
	}
	waitFor(t, "every row FINALIZED after the requeue", 60*time.Second, func() bool { return e.count("FINALIZED") == rows })
	e.checkExactlyOnce(scbs...)
}

// TestTwoWorkersTwoSCBs: two workers at once never deliver one row both, and leave nothing behind.
func TestTwoWorkersTwoSCBs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	e.settle(1000, "two")
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}),
		startSim(t, "SCB-2", "k2", sim.Faults{Latency: sim.Duration(2 * time.Millisecond)})}
	rows := e.count("")
	// Leases no delivery outlives on a loaded machine (see TestWrongAPIKeyFailsThenRequeue): with
	// no faults, a second attempt would only come from a reclaimed lease, which is not what this
	// test is about.
	e.worker("wa", scbs, nil, "--lease", "20s")
	e.worker("wb", scbs, nil, "--lease", "20s")
	waitFor(t, "every row FINALIZED", 120*time.Second, func() bool { return e.count("FINALIZED") == rows })

	ctx := context.Background()
	// With no faults every row is delivered once: exactly one deliver attempt per row, by one worker.
	var twice, workers int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE n > 1), (SELECT count(DISTINCT worker_id) FROM dual_ledger_outbox_attempts WHERE kind = 'deliver')
		FROM (SELECT outbox_id, count(*) AS n FROM dual_ledger_outbox_attempts WHERE kind = 'deliver' GROUP BY outbox_id) x`).Scan(&twice, &workers); err != nil {
		t.Fatal(err)
	}
	if twice != 0 {
		t.Errorf("%d rows were delivered more than once", twice)
	}
	if workers != 2 {
		t.Errorf("deliveries came from %d workers, want both", workers)
	}
	requests := scbs[0].srv.Stats(false).Requests + scbs[1].srv.Stats(false).Requests
	polls := 0
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox_attempts WHERE kind = 'deliver'`).Scan(&polls); err != nil {
		t.Fatal(err)
	}
	if polls != rows {
		t.Errorf("%d deliver attempts for %d rows", polls, rows)
	}
	t.Logf("%d rows, %d SCB requests (deliveries and polls)", rows, requests)
	e.checkExactlyOnce(scbs...)
}

// Usage errors are refused before anything connects: exit status 2 and a message that names the
// flag and the rule.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"worker", "--lease", "2s", "--scb-timeout", "2s"}, "--scb-timeout must be at most half of --lease (1s)"},
		{[]string{"worker", "--lease", "500ms"}, "--lease must be at least 1s"},
		{[]string{"worker", "--max-attempts", "0"}, "--max-attempts must be at least 1"},
		{[]string{"worker", "--backoff-base", "2s", "--backoff-cap", "1s"}, "--backoff-cap at least as large"},
		{[]string{"serve", "--bogus"}, "unknown flag: --bogus"},
	} {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL=host=/nonexistent dbname=none")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v, output %q; want exit status 2 and %q", c.args, err, out, c.want)
		}
	}
}
