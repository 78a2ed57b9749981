package main

// End-to-end tests of `dualledger backfill` with the real binary: kill -9 at random instants and
// resume, SIGTERM, two runs of one source, every kind of bad row.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/backfill"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// backfillLedger creates MASTER with an unlimited issuance account and n USD accounts acct-0...
func backfillLedger(t *testing.T, n int) *pgtest.DB {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "MASTER"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "issuance", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: fmt.Sprintf("acct-%d", i), CurrencyCode: "USD", AssetType: "fiat"}); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// addOpeningAccount creates MASTER's opening-balance account (USD, unlimited overdraft), where
// --opening-balances takes its money from.
func addOpeningAccount(t *testing.T, d *pgtest.DB) {
	t.Helper()
	unlimited := "unlimited"
	if _, err := ledger.CreateAccount(context.Background(), d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "opening-balance",
		CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited}); err != nil {
		t.Fatal(err)
	}
}

// historyCSV writes rows of history in the seed's columns: funding of each account, then
// transfers between the accounts (some of which overdraw, so order matters), some without a
// reference (generated ids), each with a timestamp.
func historyCSV(t *testing.T, rows, accounts int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "history.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "debitAccountId,creditAccountId,amount,currencyCode,assetType,transactionType,referenceId,fxRate,metadata,timestampUtc")
	rnd := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		ts := base.Add(time.Duration(i) * time.Second).Format(time.RFC3339)
		if i < accounts {
			fmt.Fprintf(w, "issuance,acct-%d,100.00,USD,fiat,funding,H-%07d,,,%s\n", i, i, ts)
			continue
		}
		from, to := rnd.IntN(accounts), rnd.IntN(accounts-1)
		if to >= from {
			to++
		}
		amount := fmt.Sprintf("%d.%02d", rnd.IntN(40), rnd.IntN(100))
		if amount == "0.00" {
			amount = "0.01"
		}
		ref := fmt.Sprintf("H-%07d", i)
		if i%97 == 0 {
			ref = "" // a BACKFILL-... id, the same on every run
		}
		meta := ""
		if i%13 == 0 {
			meta = `"{""batch"":` + strconv.Itoa(i/1000) + `}"`
		}
		fmt.Fprintf(w, "acct-%d,acct-%d,%s,USD,fiat,transfer,%s,,%s,%s\n", from, to, amount, ref, meta, ts)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// ledgerState is what must be equal between two imports: every entry in seq order (its
// reference and content), every balance.
func ledgerState(t *testing.T, d *pgtest.DB) (entries, balances []string) {
	t.Helper()
	return strings1(t, d.Pool, `SELECT seq || ' ' || reference_id || ' ' || debit_account_id || '>' || credit_account_id || ' ' || amount::text
			|| ' ' || transaction_type || ' ' || timestamp_utc::text || ' ' || metadata::text FROM ledger_entries ORDER BY seq`),
		strings1(t, d.Pool, `SELECT id || ' ' || balance::text FROM bank_accounts ORDER BY id`)
}

func strings1(t *testing.T, db ledger.DBTX, sql string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkpointOf(t *testing.T, d *pgtest.DB, sourceID string) backfill.Checkpoint {
	t.Helper()
	cp, err := backfill.GetCheckpoint(context.Background(), d.Pool, "csv", sourceID)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// reportLines returns the error report's lines without the run number (which differs between a
// single run and a resumed one).
func reportLines(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	err := backfill.ReadReport(path, func(l backfill.ReportLine) error {
		l.Run = 0
		b, _ := json.Marshal(l)
		out = append(out, string(b))
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestBackfillKill9Resume: kill -9 at random instants of a CSV import, three times, resuming
// each time; the ledger ends equal to a clean single run's, with no duplicate, no gap, the
// checkpoint COMPLETED with the same totals and the same error report.
func TestBackfillKill9Resume(t *testing.T) {
	rows := 200000
	if testing.Short() {
		rows = 20000
	}
	if s := os.Getenv("DUALLEDGER_BACKFILL_KILL_ROWS"); s != "" {
		rows, _ = strconv.Atoi(s)
	}
	const accounts = 40
	csvPath := historyCSV(t, rows, accounts)
	dir := t.TempDir()
	args := func(errs string) []string {
		return []string{"backfill", "run", "--source-type", "csv", "--source", csvPath, "--source-id", "history", "--errors", errs,
			"--batch-size", "500", "--checkpoint-interval", "50"}
	}

	clean := backfillLedger(t, accounts)
	cleanReport := filepath.Join(dir, "clean.jsonl")
	if out, errOut, code := cli(t, clean.ConnStr, args(cleanReport)...); code != 0 {
		t.Fatalf("clean run: exit %d\n%s\n%s", code, out, errOut)
	}
	wantEntries, wantBalances := ledgerState(t, clean)
	want := checkpointOf(t, clean, "history")
	if want.Status != backfill.StatusCompleted || want.TotalProcessed != int64(rows) ||
		want.TotalSuccessful != int64(len(wantEntries)) || want.TotalFailed == 0 {
		t.Fatalf("clean run's checkpoint: %+v (entries %d)", want, len(wantEntries))
	}

	d := backfillLedger(t, accounts)
	report := filepath.Join(dir, "killed.jsonl")
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for kill := 1; kill <= 3; kill++ {
		cmd := exec.Command(binary, args(report)...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+d.ConnStr)
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		before := checkpointOrZero(t, d)
		childOfTest(cmd)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until this run has committed a random share of the rest, then kill it at a random
		// instant.
		target := before.Batches + 1 + int64(rnd.IntN(max(1, (rows/500-int(before.Batches))/4)))
		waitFor(t, "committed batches", 120*time.Second, func() bool {
			cp := checkpointOrZero(t, d)
			return cp.Batches >= target || cp.Status == backfill.StatusCompleted
		})
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cp := checkpointOrZero(t, d)
		t.Logf("kill %d: after %d rows (%s)", kill, cp.TotalProcessed, cp.Status)
		if cp.Status == backfill.StatusCompleted {
			t.Logf("the run completed before the kill; a smaller share of the file is killed")
			break
		}
	}
	// The last run resumes (the killed runs' locks died with them) and completes.
	if out, errOut, code := cli(t, d.ConnStr, args(report)...); code != 0 {
		t.Fatalf("resumed run: exit %d\n%s\n%s", code, out, errOut)
	}
	gotEntries, gotBalances := ledgerState(t, d)
	if !slices.Equal(gotEntries, wantEntries) {
		t.Errorf("entries differ from the clean run's: %d vs %d entries; first difference %s", len(gotEntries), len(wantEntries), firstDiff(gotEntries, wantEntries))
	}
	if !slices.Equal(gotBalances, wantBalances) {
		t.Errorf("balances differ: %s", firstDiff(gotBalances, wantBalances))
	}
	got := checkpointOf(t, d, "history")
	if got.Status != backfill.StatusCompleted || got.TotalProcessed != want.TotalProcessed || got.TotalSuccessful != want.TotalSuccessful ||
		got.TotalFailed != want.TotalFailed || got.TotalSkipped != want.TotalSkipped || got.Runs < 2 {
		t.Errorf("checkpoint %+v, want the clean run's totals %+v", got, want)
	}
	if g, w := reportLines(t, report), reportLines(t, cleanReport); !slices.Equal(g, w) {
		t.Errorf("error report differs from the clean run's (%d vs %d lines): %s", len(g), len(w), firstDiff(g, w))
	}
	// Every created entry is in exactly one recorded batch range.
	var inRanges int64
	if err := d.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(created), 0) FROM ledger_backfill_batches`).Scan(&inRanges); err != nil {
		t.Fatal(err)
	}
	if inRanges != got.TotalSuccessful {
		t.Errorf("batch ranges hold %d entries, checkpoint says %d created", inRanges, got.TotalSuccessful)
	}
	// Completed: running again posts nothing and says so.
	out, errOut, code := cli(t, d.ConnStr, args(report)...)
	if code != 0 || !strings.Contains(out, "already COMPLETED") {
		t.Errorf("run after completion: exit %d\n%s\n%s", code, out, errOut)
	}
	if e, _ := ledgerState(t, d); len(e) != len(wantEntries) {
		t.Errorf("a completed run posted again: %d entries", len(e))
	}
}

func checkpointOrZero(t *testing.T, d *pgtest.DB) backfill.Checkpoint {
	t.Helper()
	cp, err := backfill.GetCheckpoint(context.Background(), d.Pool, "csv", "history")
	if err != nil {
		return backfill.Checkpoint{}
	}
	return cp
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d:\n  got  %s\n  want %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// TestBackfillSigtermPausesAndOneRunAtATime: a second run of a source that is running exits 1;
// SIGTERM stops the first at a batch boundary with PAUSED; the next run resumes and completes.
func TestBackfillSigtermPausesAndOneRunAtATime(t *testing.T) {
	const accounts = 10
	d := backfillLedger(t, accounts)
	csvPath := historyCSV(t, 30000, accounts)
	data, err := os.ReadFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n") // header, 30000 rows, ""
	args := []string{"backfill", "run", "--source-type", "csv", "--source", "-", "--source-id", "history",
		"--errors", filepath.Join(t.TempDir(), "e.jsonl"), "--batch-size", "100"}
	// The rows come through a pipe the test feeds: the run is certainly in the middle of the
	// source (waiting for rows) when the second run and the signal come.
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+d.ConnStr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	childOfTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	feed := func(from, to int) {
		t.Helper()
		if _, err := io.WriteString(stdin, strings.Join(lines[from:to], "")); err != nil {
			t.Fatal(err)
		}
	}
	feed(0, 1+1050) // the header and 10.5 batches: the 11th waits for rows
	waitFor(t, "ten committed batches", 60*time.Second, func() bool { return checkpointOrZero(t, d).Batches >= 10 })

	out, errOut, code := cli(t, d.ConnStr, args...)
	if code != 1 || !strings.Contains(errOut, "another backfill of this source is running") {
		t.Errorf("second run: exit %d, want 1 saying another run holds it\n%s\n%s", code, out, errOut)
	}
	// The 11th batch waits for rows that do not come: the run stops at the boundary before it
	// (the rows it had read of it are read again on resume).
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	stdin.Close()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("SIGTERM: %v, want exit 1\n%s", err, logs.String())
	}
	cp := checkpointOf(t, d, "history")
	if cp.Status != backfill.StatusPaused || cp.TotalProcessed != 1000 {
		t.Fatalf("after SIGTERM: %+v, want PAUSED after 1000 rows (10 batches)\n%s", cp, logs.String())
	}
	out, errOut, code = cli(t, d.ConnStr, "backfill", "status")
	if code != 0 || !strings.Contains(out, "PAUSED") {
		t.Errorf("status: exit %d\n%s\n%s", code, out, errOut)
	}
	// Resume: the whole source again on stdin; the first 1100 rows are skipped by position.
	resume := exec.Command(binary, args...)
	resume.Env = append(os.Environ(), "DATABASE_URL="+d.ConnStr)
	resume.Stdin = bytes.NewReader(data)
	if b, err := resume.CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	cp = checkpointOf(t, d, "history")
	var n int64
	if err := d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if cp.Status != backfill.StatusCompleted || cp.TotalProcessed != 30000 || cp.TotalSuccessful != n || cp.Runs != 2 {
		t.Errorf("after resume: %+v, %d entries", cp, n)
	}
}

// TestBackfillBadRows: every kind of bad row lands in the report with its code; every good row
// is posted.
func TestBackfillBadRows(t *testing.T) {
	d := backfillLedger(t, 2)
	ctx := context.Background()
	// An entry that is already in the ledger: the same row again is a skipped duplicate, with
	// another amount a conflict.
	res, err := ledger.PostBatch(ctx, d.Pool, "MASTER", []ledger.EntryInput{{DebitAccountID: "issuance", CreditAccountID: "acct-1",
		Amount: "5.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: "pre-1"}}, false)
	if err != nil || !res[0].OK() {
		t.Fatal(err, res)
	}
	csv := `debitAccountId,creditAccountId,amount,currencyCode,assetType,transactionType,referenceId,timestampUtc
issuance,acct-0,"1,000.00",USD,fiat,funding,ok-1,2024-01-01T00:00:00Z
acct-0,acct-1,12.x,USD,fiat,transfer,bad-amount,
acct-0,acct-1,12.00,ZZZ,fiat,transfer,bad-currency,
acct-0,acct-1,12.001,USD,fiat,transfer,bad-decimals,
acct-0,nobody,12.00,USD,fiat,transfer,bad-account,
acct-0,acct-1,12.00,USD,fiat,transfer,bad-time,2024-13-45T99:00:00Z
acct-0,acct-1,12.00,USD
issuance,acct-1,6.00,USD,fiat,funding,pre-1,
issuance,acct-1,5.00,USD,fiat,funding,pre-1,
acct-1,acct-0,5000.00,USD,fiat,transfer,overdraw,
acct-0,acct-1,-3.00,USD,fiat,transfer,negative,
acct-0,acct-1,0.00,USD,fiat,transfer,zero,
acct-0,acct-1,10.00,USD,fiat,transfer,ok-2,2024-01-02T10:00:00+02:00
issuance,acct-1,1 000.00,USD,fiat,funding,ok-3,
`
	path := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(path, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "bad.jsonl")
	out, errOut, code := cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "bad",
		"--errors", report, "--batch-size", "4")
	if code != 0 {
		t.Fatalf("exit %d (rejected rows are not a failure)\n%s\n%s", code, out, errOut)
	}
	got := map[string]string{}
	if err := backfill.ReadReport(report, func(l backfill.ReportLine) error {
		got[l.Position] = l.Code
		if len(l.Raw) == 0 || l.Message == "" {
			t.Errorf("line without raw row or message: %+v", l)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"2": "invalid_amount", "3": "unknown_currency", "4": "invalid_amount", "5": "unknown_account",
		"6": "invalid_request", "7": "invalid_request", "8": "reference_conflict", "10": "insufficient_funds",
		"11": "invalid_amount", "12": "invalid_amount"}
	for pos, code := range want {
		if got[pos] != code {
			t.Errorf("row %s: code %q, want %q", pos, got[pos], code)
		}
	}
	if len(got) != len(want) {
		t.Errorf("report has rows %v, want %v", got, want)
	}
	refs := strings1(t, d.Pool, `SELECT reference_id || ' ' || amount::text || ' ' || timestamp_utc::text FROM ledger_entries WHERE reference_id LIKE 'ok-%' ORDER BY seq`)
	wantRefs := []string{"ok-1 1000.000000000000000000 2024-01-01 00:00:00+00"}
	if len(refs) != 3 || refs[0] != wantRefs[0] || !strings.HasPrefix(refs[1], "ok-2 10.0") || !strings.Contains(refs[1], "2024-01-02 08:00:00+00") ||
		!strings.HasPrefix(refs[2], "ok-3 1000.0") {
		t.Errorf("good rows posted: %q", refs)
	}
	cp := checkpointOf(t, d, "bad")
	if cp.Status != backfill.StatusCompleted || cp.TotalProcessed != 14 || cp.TotalSuccessful != 3 || cp.TotalSkipped != 1 || cp.TotalFailed != 10 {
		t.Errorf("checkpoint %+v", cp)
	}

	// --max-errors: a source with more rejected rows than allowed fails with exit 1.
	out, errOut, code = cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "bad-2",
		"--errors", filepath.Join(t.TempDir(), "b2.jsonl"), "--batch-size", "4", "--max-errors", "2")
	if code != 1 || !strings.Contains(errOut, "max-errors") {
		t.Errorf("--max-errors 2: exit %d\n%s\n%s", code, out, errOut)
	}
	if cp := checkpointOf(t, d, "bad-2"); cp.Status != backfill.StatusFailed {
		t.Errorf("after --max-errors: %s", cp.Status)
	}
}

// TestBackfillVerifyRollback: verify a completed import (outbox rows for a member bank's
// entries included), roll it back, and find the balances as before the run, the chain and the
// audit clean, the rollback in the operator log; a second rollback reverses nothing twice; the
// rolled-back source cannot run again.
func TestBackfillVerifyRollback(t *testing.T) {
	d := backfillLedger(t, 3)
	ctx := context.Background()
	if _, err := ledger.RegisterBank(ctx, d.Pool, "system:test", "SCB-1", "SCB one"); err != nil {
		t.Fatal(err)
	}
	bank := "SCB-1"
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "SCB-1-USD", CurrencyCode: "USD", AssetType: "fiat", BankID: &bank}); err != nil {
		t.Fatal(err)
	}
	res, err := ledger.PostBatch(ctx, d.Pool, "MASTER", []ledger.EntryInput{{DebitAccountID: "issuance", CreditAccountID: "acct-0",
		Amount: "50.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: "live-1"}}, false)
	if err != nil || !res[0].OK() {
		t.Fatal(err, res)
	}
	_, before := ledgerState(t, d)
	var rows strings.Builder
	rows.WriteString("reference_id,debit_account_id,credit_account_id,amount,currency_code,transaction_type,timestamp_utc\n")
	rows.WriteString("live-1,issuance,acct-0,50.00,USD,funding,\n") // already there: skipped, never reversed
	for i := range 250 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&rows, "R-%03d,issuance,acct-1,10.00,USD,funding,2023-05-01T10:00:00Z\n", i)
		case 1:
			fmt.Fprintf(&rows, "R-%03d,acct-1,SCB-1-USD,4.00,USD,transfer,2023-05-01T11:00:00Z\n", i)
		default:
			fmt.Fprintf(&rows, "R-%03d,SCB-1-USD,acct-2,1.50,USD,transfer,2023-05-01T12:00:00Z\n", i)
		}
	}
	path := filepath.Join(t.TempDir(), "h.csv")
	if err := os.WriteFile(path, []byte(rows.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	src := []string{"--source-type", "csv", "--source", path, "--source-id", "vr"}
	run := append([]string{"backfill", "run", "--batch-size", "40", "--errors", filepath.Join(t.TempDir(), "vr.jsonl")}, src...)
	if out, errOut, code := cli(t, d.ConnStr, run...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "verify", "--json"}, src...)...)
	var v struct {
		OK           bool                  `json:"ok"`
		Verification backfill.VerifyReport `json:"verification"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || !v.OK || v.Verification.InLedger != 251 ||
		v.Verification.EntriesInRanges != 250 || v.Verification.OutboxRows != 166 {
		t.Fatalf("verify: exit %d %+v\n%s\n%s", code, v, out, errOut)
	}

	// An entry of the run without its outbox row is found (the row is removed as the owner
	// would have to, with the guard trigger off).
	conn := d.Conn(t)
	if _, err := conn.Exec(ctx, `BEGIN; ALTER TABLE dual_ledger_outbox DISABLE TRIGGER USER;
		DELETE FROM dual_ledger_outbox WHERE reference_id = 'R-001'; ALTER TABLE dual_ledger_outbox ENABLE TRIGGER USER; COMMIT`); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli(t, d.ConnStr, "backfill", "verify", "--source-id", "vr"); code != 1 || !strings.Contains(out, "no outbox row") {
		t.Errorf("verify with a missing outbox row: exit %d\n%s\n%s", code, out, errOut)
	}

	if out, errOut, code := cli(t, d.ConnStr, "backfill", "rollback", "--source-id", "vr"); code != 2 {
		t.Errorf("rollback without --reason: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cli(t, d.ConnStr, "backfill", "rollback", "--source-id", "vr", "--reason", "test: wrong export", "--batch-size", "33")
	if code != 0 || !strings.Contains(out, "250 reversed now") {
		t.Fatalf("rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, after := ledgerState(t, d); !slices.Equal(after, before) {
		t.Errorf("balances after the rollback %v, before the run %v", after, before)
	}
	for _, c := range [][]string{{"verify-chain"}, {"audit"}} {
		if out, errOut, code := cli(t, d.ConnStr, c...); code != 0 {
			t.Errorf("%v after the rollback: exit %d\n%s\n%s", c, code, out, errOut)
		}
	}
	if out, _, _ := cli(t, d.ConnStr, "operator-log", "--json"); !strings.Contains(out, "backfill.rollback") || !strings.Contains(out, "test: wrong export") {
		t.Errorf("operator log has no backfill.rollback:\n%s", out)
	}
	out, errOut, code = cli(t, d.ConnStr, "backfill", "rollback", "--source-id", "vr", "--reason", "again")
	if code != 0 || !strings.Contains(out, "0 reversed now, 250 already reversed") {
		t.Errorf("second rollback: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, after := ledgerState(t, d); !slices.Equal(after, before) {
		t.Errorf("balances after the second rollback %v", after)
	}
	if out, errOut, code := cli(t, d.ConnStr, run...); code != 1 || !strings.Contains(errOut, "rolled back") {
		t.Errorf("run after rollback: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillOpeningBalancesAndDryRun: a dry run posts nothing and names the rows that would be
// rejected; --opening-balances funds history that starts mid-stream, from the opening-balance
// account, before the rows.
func TestBackfillOpeningBalancesAndDryRun(t *testing.T) {
	d := backfillLedger(t, 2)
	addOpeningAccount(t, d)
	dir := t.TempDir()
	hist := filepath.Join(dir, "h.csv")
	ob := filepath.Join(dir, "ob.csv")
	_ = os.WriteFile(hist, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\n"+
		"acct-0,acct-1,60.00,USD,t,h-1\nacct-1,acct-0,70.00,USD,t,h-2\nacct-0,nobody,1.00,USD,t,h-3\n"), 0o600)
	_ = os.WriteFile(ob, []byte("account_id,amount,currency_code,timestamp_utc\nacct-0,100.00,USD,2019-12-31T23:59:59Z\nacct-1,20.00,USD,2019-12-31T23:59:59Z\n"), 0o600)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "mid", "--errors", filepath.Join(dir, "e.jsonl")}
	out, errOut, code := cli(t, d.ConnStr, append(args, "--dry-run", "--errors", filepath.Join(dir, "dry.jsonl"))...)
	if code != 1 || !strings.Contains(out, "1 would be rejected") {
		t.Errorf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	// With --opening-balances the dry run checks the opening file too (it once ignored it): a bad
	// opening row stops it as it would stop the run, and nothing is posted.
	badOB := filepath.Join(dir, "bad-ob.csv")
	_ = os.WriteFile(badOB, []byte("account_id,amount,currency_code\nacct-0,100.00,USD\nnobody,1.00,USD\n"), 0o600)
	out, errOut, code = cli(t, d.ConnStr, append(args, "--dry-run", "--errors", filepath.Join(dir, "dry2.jsonl"), "--opening-balances", badOB)...)
	if code != 1 || !strings.Contains(errOut, "1 of the 2 opening balances would be rejected") {
		t.Errorf("dry run with bad opening balances: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cli(t, d.ConnStr, append(args, "--dry-run", "--errors", filepath.Join(dir, "dry3.jsonl"), "--opening-balances", ob)...)
	if code != 1 || !strings.Contains(out, "dry run of the opening balances: 2 rows, all would post") || !strings.Contains(out, "1 would be rejected") {
		t.Errorf("dry run with opening balances: exit %d\n%s\n%s", code, out, errOut)
	}
	if e, _ := ledgerState(t, d); len(e) != 0 {
		t.Errorf("the dry run posted %d entries", len(e))
	}
	if out, errOut, code := cli(t, d.ConnStr, append(args, "--opening-balances", ob)...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	got := strings1(t, d.Pool, `SELECT debit_account_id || '>' || credit_account_id || ' ' || trim_scale(amount) || ' ' || transaction_type FROM ledger_entries ORDER BY seq`)
	want := []string{"opening-balance>acct-0 100 opening_balance", "opening-balance>acct-1 20 opening_balance", "acct-0>acct-1 60 t", "acct-1>acct-0 70 t"}
	if !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
	if cp := checkpointOf(t, d, "mid.opening"); cp.Status != backfill.StatusCompleted || cp.TotalSuccessful != 2 {
		t.Errorf("opening balances checkpoint %+v", cp)
	}
}

// TestBackfillRoles: the import is the owner's (a service login is refused, saying so, and
// nothing is written); the reporting role reads the status.
func TestBackfillRoles(t *testing.T) {
	d := backfillLedger(t, 1)
	path := filepath.Join(t.TempDir(), "h.csv")
	_ = os.WriteFile(path, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nissuance,acct-0,1.00,USD,t,r1\n"), 0o600)
	out, errOut, code := cli(t, d.LoginRole(t, "dualledger_api"), "backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "roles",
		"--errors", filepath.Join(t.TempDir(), "e.jsonl"))
	if code != 3 || !strings.Contains(errOut, "schema owner") {
		t.Errorf("as dualledger_api: exit %d\n%s\n%s", code, out, errOut)
	}
	if e, _ := ledgerState(t, d); len(e) != 0 {
		t.Errorf("%d entries written", len(e))
	}
	if _, err := backfill.GetCheckpoint(context.Background(), d.Pool, "csv", "roles"); err == nil {
		t.Error("a checkpoint was written")
	}
	if out, errOut, code := cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "roles",
		"--errors", filepath.Join(t.TempDir(), "e.jsonl")); code != 0 {
		t.Fatalf("as the owner: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, d.LoginRole(t, "dualledger_readonly"), "backfill", "status", "--json"); code != 0 || !strings.Contains(out, `"source_id": "roles"`) {
		t.Errorf("status as dualledger_readonly: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillSourceChangedUnderItsCheckpoint: a CSV edited before the checkpoint (a row
// inserted) is refused on resume instead of being resumed by position (which would skip a row).
func TestBackfillSourceChangedUnderItsCheckpoint(t *testing.T) {
	d := backfillLedger(t, 1)
	var b strings.Builder
	b.WriteString("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\n")
	for i := range 30 {
		amount := "1.00"
		if i == 14 {
			amount = "oops"
		}
		fmt.Fprintf(&b, "issuance,acct-0,%s,USD,t,c-%02d\n", amount, i)
	}
	path := filepath.Join(t.TempDir(), "c.csv")
	_ = os.WriteFile(path, []byte(b.String()), 0o600)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "changed", "--batch-size", "10",
		"--errors", filepath.Join(t.TempDir(), "e.jsonl")}
	if _, errOut, code := cli(t, d.ConnStr, append(args, "--max-errors", "0")...); code != 1 {
		t.Fatalf("exit %d, want 1 (max errors)\n%s", code, errOut)
	}
	if cp := checkpointOf(t, d, "changed"); cp.Status != backfill.StatusFailed || cp.TotalProcessed != 20 {
		t.Fatalf("%+v", cp)
	}
	lines := strings.SplitAfter(b.String(), "\n")
	edited := lines[0] + "issuance,acct-0,2.00,USD,t,inserted\n" + strings.Join(lines[1:], "")
	_ = os.WriteFile(path, []byte(edited), 0o600)
	out, errOut, code := cli(t, d.ConnStr, args...)
	if code != 1 || !strings.Contains(errOut, "are not the ones the run read") {
		t.Errorf("resume over an edited source: exit %d\n%s\n%s", code, out, errOut)
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o600)
	if out, errOut, code := cli(t, d.ConnStr, args...); code != 0 {
		t.Fatalf("resume over the original: exit %d\n%s\n%s", code, out, errOut)
	}
	if cp := checkpointOf(t, d, "changed"); cp.Status != backfill.StatusCompleted || cp.TotalSuccessful != 29 || cp.TotalFailed != 1 {
		t.Errorf("%+v", cp)
	}
}

// TestBackfillResumeRefusesAnotherInput: a source stopped part-way resumes only with the input it
// was started with: another --ledger, another file or another mapping would count the checkpoint's
// position in rows of a different input (rows skipped, or posted twice), so each is refused with
// exit 2 and changes nothing; the same input resumes and completes.
func TestBackfillResumeRefusesAnotherInput(t *testing.T) {
	d := backfillLedger(t, 4)
	if _, err := ledger.CreateLedger(context.Background(), d.Pool, "system:test", "OTHER"); err != nil {
		t.Fatal(err)
	}
	path := historyCSV(t, 60, 4)
	dir := t.TempDir()
	mapping := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(mapping, []byte("defaults:\n  asset_type: fiat\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "r.jsonl")
	args := func(extra ...string) []string {
		return append([]string{"backfill", "run", "--source-type", "csv", "--source-id", "hist", "--errors", report,
			"--batch-size", "5", "--validate-balances=false"}, extra...)
	}
	// Stopped part-way: the rows that overdraw exceed --max-errors 0 (FAILED, resumable).
	if _, errOut, code := cli(t, d.ConnStr, args("--source", path, "--mapping", mapping, "--max-errors", "0")...); code != 1 {
		t.Fatalf("first run: exit %d %s", code, errOut)
	}
	before := checkpointOf(t, d, "hist")
	if before.Status == backfill.StatusCompleted || before.TotalProcessed == 0 {
		t.Fatalf("first run did not stop part-way: %+v", before)
	}
	other := filepath.Join(dir, "other.csv")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o644); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(dir, "m2.yaml")
	if err := os.WriteFile(changed, []byte("defaults:\n  asset_type: fiat\n  currency_code: USD\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, extra := range map[string][]string{
		"another ledger":  {"--source", path, "--mapping", mapping, "--ledger", "OTHER"},
		"another file":    {"--source", other, "--mapping", mapping},
		"another mapping": {"--source", path, "--mapping", changed},
	} {
		_, errOut, code := cli(t, d.ConnStr, args(extra...)...)
		if code != 2 || !strings.Contains(errOut, "differs from what source csv/hist was started with") {
			t.Errorf("%s: exit %d %s", name, code, errOut)
		}
		if cp := checkpointOf(t, d, "hist"); cp.Runs != before.Runs || cp.TotalProcessed != before.TotalProcessed {
			t.Errorf("%s changed the checkpoint: %+v", name, cp)
		}
	}
	// The same file by another name (a link; a relative path from elsewhere) is the same input:
	// this resume stops again on --max-errors 0, before reading a row, not on "differs".
	link := filepath.Join(dir, "link.csv")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli(t, d.ConnStr, args("--source", link, "--mapping", mapping, "--max-errors", "0")...); code != 1 || strings.Contains(errOut, "differs") || !strings.Contains(errOut, "--max-errors") {
		t.Errorf("the same file by a link: exit %d %s", code, errOut)
	}
	if cp := checkpointOf(t, d, "hist"); cp.TotalProcessed != before.TotalProcessed {
		t.Errorf("a source over --max-errors read rows: %+v", cp)
	}
	if _, errOut, code := cli(t, d.ConnStr, args("--source", path, "--mapping", mapping)...); code != 0 {
		t.Fatalf("resume with the same input: exit %d %s", code, errOut)
	}
	if cp := checkpointOf(t, d, "hist"); cp.Status != backfill.StatusCompleted || cp.TotalProcessed != 60 {
		t.Errorf("after the resume: %+v", cp)
	}
}

// TestBackfillDryRunSeesReferenceConflicts: a reference used twice, in the ledger or by an earlier
// row of the source (in the same batch or an earlier one), is a duplicate the run skips when the
// content is the same and a reference_conflict when it is not: the dry run reports exactly the
// rows the run rejects (it once counted every row valid, and "existing" whatever the content).
func TestBackfillDryRunSeesReferenceConflicts(t *testing.T) {
	d := backfillLedger(t, 1)
	dir := t.TempDir()
	head := "debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id,timestamp_utc\n"
	pre := filepath.Join(dir, "pre.csv")
	_ = os.WriteFile(pre, []byte(head+"issuance,acct-0,1.00,USD,t,pre-1,2020-01-01T00:00:00Z\nissuance,acct-0,2.00,USD,t,pre-2,2020-01-01T00:00:00Z\n"), 0o600)
	if out, errOut, code := cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", pre, "--source-id", "pre",
		"--errors", filepath.Join(dir, "pre.jsonl")); code != 0 {
		t.Fatalf("pre: exit %d\n%s\n%s", code, out, errOut)
	}
	hist := filepath.Join(dir, "h.csv")
	_ = os.WriteFile(hist, []byte(head+
		"issuance,acct-0,10.00,USD,t,d-1,2020-01-02T00:00:00Z\n"+ // 1 posted
		"issuance,acct-0,10.0,USD,t,d-1,2020-01-02T00:00:00Z\n"+ // 2 the same: skipped
		"issuance,acct-0,11.00,USD,t,d-1,2020-01-02T00:00:00Z\n"+ // 3 conflict with row 1 (another batch)
		"issuance,acct-0,1.00,USD,t,pre-1,2020-01-01T00:00:00Z\n"+ // 4 the ledger's: skipped
		"issuance,acct-0,3.00,USD,t,pre-2,2020-01-01T00:00:00Z\n"+ // 5 conflict with the ledger
		"issuance,acct-0,4.00,USD,t,d-2,2020-01-03T00:00:00Z\n"+ // 6 posted
		"issuance,acct-0,4.00,USD,u,d-2,2020-01-03T00:00:00Z\n"), 0o600) // 7 conflict in the same batch (transaction_type)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "dups", "--batch-size", "2"}
	out, errOut, code := cli(t, d.ConnStr, append(args, "--dry-run", "--errors", filepath.Join(dir, "dry.jsonl"), "--json")...)
	var dry backfill.DryRunOutcome
	if err := json.Unmarshal([]byte(out), &dry); err != nil || code != 1 || dry.Rows != 7 || dry.Valid != 4 || dry.Existing != 2 || dry.Rejected != 3 {
		t.Errorf("dry run: exit %d %+v %v\n%s\n%s", code, dry, err, out, errOut)
	}
	if out, errOut, code := cli(t, d.ConnStr, append(args, "--errors", filepath.Join(dir, "run.jsonl"))...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	rejected := func(name string) []string {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var l backfill.ReportLine
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, l.Position+" "+l.Code)
		}
		return got
	}
	want := []string{"3 reference_conflict", "5 reference_conflict", "7 reference_conflict"}
	if got := rejected("dry.jsonl"); !slices.Equal(got, want) {
		t.Errorf("dry run's report %q, want %q", got, want)
	}
	if got := rejected("run.jsonl"); !slices.Equal(got, want) {
		t.Errorf("run's report %q, want %q", got, want)
	}
	// --skip-duplicates=false: the duplicates are refused too, in the dry run as in the run (the
	// file again, as another source: every row's reference is now in the ledger).
	strict := []string{"backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "dups-strict", "--batch-size", "2",
		"--skip-duplicates=false"}
	if _, errOut, code := cli(t, d.ConnStr, append(strict, "--dry-run", "--errors", filepath.Join(dir, "dry-strict.jsonl"))...); code != 1 {
		t.Errorf("strict dry run: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := cli(t, d.ConnStr, append(strict, "--errors", filepath.Join(dir, "run-strict.jsonl"))...); code != 0 {
		t.Errorf("strict run: exit %d\n%s", code, errOut)
	}
	want = []string{"1 replayed", "2 replayed", "3 reference_conflict", "4 replayed", "5 reference_conflict", "6 replayed", "7 reference_conflict"}
	if got := rejected("dry-strict.jsonl"); !slices.Equal(got, want) {
		t.Errorf("strict dry run's report %q, want %q", got, want)
	}
	if got := rejected("run-strict.jsonl"); !slices.Equal(got, want) {
		t.Errorf("strict run's report %q, want %q", got, want)
	}
}
