package main

// End-to-end tests of what an audit of `dualledger backfill` found: rows swallowed by an
// unbalanced quote or altered by bytes that are not UTF-8, an error report overwritten by a dry
// run or changed by hand, a mapping's default ledger ignored, opening balances without a
// currency, a verification that did not compare content, a signal ignored while the source
// waits, a rollback's progress invisible after a kill.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/backfill"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// TestBackfillBrokenCSVRowsAreTheirOwn: an unbalanced quote, a stray quote and bytes that are
// not UTF-8 each reject their own row; every other row is posted, and verify accounts for all.
func TestBackfillBrokenCSVRowsAreTheirOwn(t *testing.T) {
	d := backfillLedger(t, 2)
	var b strings.Builder
	b.WriteString("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\n")
	b.WriteString("issuance,acct-0,1.00,USD,f,q-1\n")
	b.WriteString("issuance,acct-0,1.00,USD,fund\"ing,q-2\n")
	b.WriteString("issuance,acct-0,\"1.00,USD,f,q-3\n")
	b.WriteString("issuance,acct-0,1.00,USD,f,u8-\xff\n")
	b.WriteString("issuance,acct-0,1.00,USD,f,u8-\xfe\n")
	for i := 6; i <= 20; i++ {
		fmt.Fprintf(&b, "issuance,acct-0,1.00,USD,f,q-%d\n", i)
	}
	path := filepath.Join(t.TempDir(), "q.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "q.jsonl")
	src := []string{"--source-type", "csv", "--source", path, "--source-id", "quotes"}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "run", "--errors", report, "--batch-size", "3"}, src...)...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	got := map[string]string{}
	if err := backfill.ReadReport(report, func(l backfill.ReportLine) error { got[l.Position] = l.Message; return nil }); err != nil {
		t.Fatal(err)
	}
	for pos, want := range map[string]string{"2": "line 3 is not valid CSV", "3": "line 4 is not valid CSV", "4": "not valid UTF-8", "5": "not valid UTF-8"} {
		if !strings.Contains(got[pos], want) {
			t.Errorf("row %s: %q, want %q", pos, got[pos], want)
		}
	}
	if len(got) != 4 {
		t.Errorf("report: %v", got)
	}
	refs := strings1(t, d.Pool, `SELECT reference_id FROM ledger_entries ORDER BY seq`)
	if len(refs) != 16 || refs[0] != "q-1" || refs[1] != "q-6" || refs[15] != "q-20" {
		t.Errorf("posted %q, want q-1 and q-6 to q-20", refs)
	}
	if cp := checkpointOf(t, d, "quotes"); cp.TotalProcessed != 20 || cp.TotalSuccessful != 16 || cp.TotalFailed != 4 {
		t.Errorf("checkpoint %+v", cp)
	}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "verify"}, src...)...); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillReportIsNeverLost: a dry run refuses to write over the source's run report; a
// report cut, replaced or deleted since the checkpoint stops the resume (exit 1) instead of being
// appended to or cut; restored, the run resumes.
func TestBackfillReportIsNeverLost(t *testing.T) {
	d := backfillLedger(t, 2)
	dir := t.TempDir()
	path := filepath.Join(dir, "h.csv")
	_ = os.WriteFile(path, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\n"+
		"issuance,acct-0,1.00,USD,f,r-1\nissuance,acct-0,1.00,ZZZ,f,r-2\nissuance,acct-0,1.00,USD,f,r-3\nissuance,acct-0,1.00,ZZZ,f,r-4\n"+
		"issuance,acct-0,1.00,USD,f,r-5\n"), 0o600)
	report := filepath.Join(dir, "r.jsonl")
	run := []string{"backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "rep", "--errors", report, "--batch-size", "2"}
	// The first rejected row exceeds --max-errors 0: FAILED after the first batch, one line.
	if out, errOut, code := cli(t, d.ConnStr, append(run, "--max-errors", "0")...); code != 1 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	committed, err := os.ReadFile(report)
	if err != nil || strings.Count(string(committed), "\n") != 1 {
		t.Fatalf("report after the failed run: %q %v", committed, err)
	}
	if out, errOut, code := cli(t, d.ConnStr, append(run, "--dry-run")...); code != 2 || !strings.Contains(errOut, "run report") {
		t.Errorf("dry run onto the run report: exit %d\n%s\n%s", code, out, errOut)
	}
	if now, _ := os.ReadFile(report); string(now) != string(committed) {
		t.Errorf("the dry run changed the run report: %q", now)
	}
	// Another source may not take this report as its own (its first run would cut it), nor may
	// another source's dry run write over it.
	other := []string{"backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "rep-2", "--errors", report}
	for _, args := range [][]string{other, append(other, "--dry-run")} {
		if out, errOut, code := cli(t, d.ConnStr, args...); code != 2 || !strings.Contains(errOut, "is the error report of source csv/rep") {
			t.Errorf("%v: exit %d\n%s\n%s", args[len(args)-1], code, out, errOut)
		}
	}
	// Nor through a link to it.
	link := filepath.Join(dir, "link.jsonl")
	if err := os.Symlink(report, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.jsonl")
	if err := os.Link(report, hard); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{link, hard} {
		for _, args := range [][]string{
			{"backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "rep-2", "--errors", name},
			{"backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "rep", "--errors", name, "--dry-run"},
		} {
			if out, errOut, code := cli(t, d.ConnStr, args...); code != 2 || !strings.Contains(errOut, "csv/rep") {
				t.Errorf("%v: exit %d\n%s\n%s", args[6:], code, out, errOut)
			}
		}
	}
	_ = os.Remove(link)
	_ = os.Remove(hard)
	if now, _ := os.ReadFile(report); string(now) != string(committed) {
		t.Errorf("another source changed the report: %q", now)
	}
	for _, change := range []struct {
		name  string
		apply func()
	}{
		{"cut", func() { _ = os.WriteFile(report, committed[:len(committed)-10], 0o600) }},
		{"replaced by a longer file", func() { _ = os.WriteFile(report, []byte(strings.Repeat("x", len(committed)+40)+"\n"), 0o600) }},
		{"deleted", func() { _ = os.Remove(report) }},
	} {
		change.apply()
		out, errOut, code := cli(t, d.ConnStr, run...)
		if code != 1 || !strings.Contains(errOut, "does not match the checkpoint") {
			t.Errorf("report %s: exit %d\n%s\n%s", change.name, code, out, errOut)
		}
	}
	if e, _ := ledgerState(t, d); len(e) != 1 {
		t.Errorf("%d entries after the refused resumes, want 1", len(e))
	}
	_ = os.WriteFile(report, committed, 0o600)
	if out, errOut, code := cli(t, d.ConnStr, run...); code != 0 {
		t.Fatalf("resume with the report restored: exit %d\n%s\n%s", code, out, errOut)
	}
	if lines := reportLines(t, report); len(lines) != 2 {
		t.Errorf("report after the resume: %q", lines)
	}
	if e, _ := ledgerState(t, d); len(e) != 3 {
		t.Errorf("%d entries, want 3", len(e))
	}
	// A committed line edited to the same length: verify finds it by the recorded SHA-256.
	final, _ := os.ReadFile(report)
	_ = os.WriteFile(report, []byte(strings.Replace(string(final), "ZZZ", "ZZY", 1)), 0o600)
	verify := []string{"backfill", "verify", "--source-id", "rep", "--source-type", "csv", "--source", path}
	if out, errOut, code := cli(t, d.ConnStr, verify...); code != 1 || !strings.Contains(out, "a committed line was edited") {
		t.Errorf("verify of an edited report: exit %d\n%s\n%s", code, out, errOut)
	}
	_ = os.WriteFile(report, final, 0o600)
	if out, errOut, code := cli(t, d.ConnStr, verify...); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillMappingLedgerAndVerifyContent: the mapping's default ledger is used unless --ledger
// is given; verify finds a source row whose content differs from its entry.
func TestBackfillMappingLedgerAndVerifyContent(t *testing.T) {
	d := backfillLedger(t, 1)
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "BOOKS"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, id := range []string{"ob", "x"} {
		in := ledger.AccountInput{ID: id, CurrencyCode: "USD", AssetType: "fiat"}
		if id == "ob" {
			in.OverdraftLimit = &unlimited
		}
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "BOOKS", in); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	mapping := filepath.Join(dir, "m.yaml")
	_ = os.WriteFile(mapping, []byte("defaults: {ledger_id: BOOKS}\n"), 0o600)
	path := filepath.Join(dir, "m.csv")
	_ = os.WriteFile(path, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nob,x,7.00,USD,f,m-1\nob,x,2470.10,USD,f,m-2\n"), 0o600)
	src := []string{"--source-type", "csv", "--source", path, "--source-id", "m", "--mapping", mapping}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "run", "--errors", filepath.Join(dir, "m.jsonl")}, src...)...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := strings1(t, d.Pool, `SELECT ledger_id || '/' || reference_id FROM ledger_entries ORDER BY seq`); strings.Join(got, " ") != "BOOKS/m-1 BOOKS/m-2" {
		t.Errorf("entries %q, want them in the mapping's ledger BOOKS", got)
	}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "verify"}, src...)...); code != 0 {
		t.Errorf("verify: exit %d\n%s\n%s", code, out, errOut)
	}
	edited := filepath.Join(dir, "edited.csv")
	_ = os.WriteFile(edited, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nob,x,7.00,USD,f,m-1\nob,x,9470.10,USD,f,m-2\n"), 0o600)
	out, errOut, code := cli(t, d.ConnStr, "backfill", "verify", "--source-type", "csv", "--source", edited, "--source-id", "m", "--mapping", mapping)
	if code != 1 || !strings.Contains(out, "BOOKS/m-2 differs in amount") || !strings.Contains(out, "not the ones the run read") {
		t.Errorf("verify of an edited source: exit %d\n%s\n%s", code, out, errOut)
	}
	// --ledger given wins over the mapping.
	_ = os.WriteFile(path, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nissuance,acct-0,3.00,USD,f,m-3\n"), 0o600)
	if out, errOut, code := cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "m-master",
		"--mapping", mapping, "--ledger", "MASTER", "--errors", filepath.Join(dir, "mm.jsonl")); code != 0 {
		t.Fatalf("run with --ledger: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := strings1(t, d.Pool, `SELECT ledger_id FROM ledger_entries WHERE reference_id = 'm-3'`); len(got) != 1 || got[0] != "MASTER" {
		t.Errorf("m-3 in %q, want MASTER", got)
	}
}

// TestBackfillOpeningBalancesOfTheDocumentedForm: a file of account_id and amount takes the
// opening account's currency; a file with a row that would be rejected posts nothing and the
// history does not start.
func TestBackfillOpeningBalancesOfTheDocumentedForm(t *testing.T) {
	d := backfillLedger(t, 2)
	ctx := context.Background()
	addOpeningAccount(t, d)
	dir := t.TempDir()
	hist := filepath.Join(dir, "h.csv")
	_ = os.WriteFile(hist, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nacct-0,acct-1,60.00,USD,t,h-1\n"), 0o600)
	bad := filepath.Join(dir, "bad.csv")
	_ = os.WriteFile(bad, []byte("account_id,amount\nacct-0,100.00\nnobody,5.00\n"), 0o600)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "obm", "--errors", filepath.Join(dir, "e.jsonl")}
	out, errOut, code := cli(t, d.ConnStr, append(args, "--opening-balances", bad)...)
	if code != 1 || !strings.Contains(errOut, "1 of the 2 opening balances would be rejected") {
		t.Errorf("opening balances with an unknown account: exit %d\n%s\n%s", code, out, errOut)
	}
	if e, _ := ledgerState(t, d); len(e) != 0 {
		t.Errorf("%d entries posted, want none", len(e))
	}
	if _, err := backfill.GetCheckpoint(ctx, d.Pool, "csv", "obm"); err == nil {
		t.Error("the history started")
	}
	// An account twice (review of 2026-12-02: the second row doubled acct-0's opening balance).
	twice := filepath.Join(dir, "twice.csv")
	_ = os.WriteFile(twice, []byte("account_id,amount\nacct-0,100.00\nacct-1,20.00\nacct-0,100.00\n"), 0o600)
	out, errOut, code = cli(t, d.ConnStr, append(args, "--opening-balances", twice)...)
	if code != 1 || !strings.Contains(errOut, "name account acct-0 (USD, ledger MASTER) twice, on lines 2 and 4") {
		t.Errorf("opening balances naming an account twice: exit %d\n%s\n%s", code, out, errOut)
	}
	if e, _ := ledgerState(t, d); len(e) != 0 {
		t.Errorf("%d entries posted, want none", len(e))
	}
	good := filepath.Join(dir, "good.csv")
	_ = os.WriteFile(good, []byte("account_id,amount\nacct-0,100.00\nacct-1,20.00\n"), 0o600)
	if out, errOut, code := cli(t, d.ConnStr, append(args, "--opening-balances", good)...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	got := strings1(t, d.Pool, `SELECT debit_account_id || '>' || credit_account_id || ' ' || trim_scale(amount) || ' ' || currency_code FROM ledger_entries ORDER BY seq`)
	if strings.Join(got, "; ") != "opening-balance>acct-0 100 USD; opening-balance>acct-1 20 USD; acct-0>acct-1 60 USD" {
		t.Errorf("entries %q", got)
	}
	// The opening balances verify against their file, read in its own form (account_id, amount),
	// as the run read it; before, verify read it as history and found every row "missing".
	out, errOut, code = cli(t, d.ConnStr, "backfill", "verify", "--source-id", "obm.opening", "--source-type", "csv", "--source", good)
	if code != 0 || !strings.Contains(out, "source read again: 2 rows, 2 in the ledger") {
		t.Errorf("verify the opening balances: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillSignalWhileTheSourceWaits: SIGINT pauses a run whose source (a pipe) has no rows
// for it yet.
func TestBackfillSignalWhileTheSourceWaits(t *testing.T) {
	d := backfillLedger(t, 1)
	cmd := exec.Command(binary, "backfill", "run", "--source-type", "csv", "--source", "-", "--source-id", "pipe",
		"--errors", filepath.Join(t.TempDir(), "e.jsonl"), "--batch-size", "100")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+d.ConnStr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	childOfTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(stdin, "debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nissuance,acct-0,1.00,USD,f,p-1\n")
	waitFor(t, "the run to start", 60*time.Second, func() bool {
		_, err := backfill.GetCheckpoint(context.Background(), d.Pool, "csv", "pipe")
		return err == nil
	})
	time.Sleep(500 * time.Millisecond) // the run is waiting for its first batch's rows
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("after SIGINT: %v, want exit 1\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the run did not stop within 30 s of SIGINT while its source waited\n%s", logs.String())
	}
	if cp := checkpointOf(t, d, "pipe"); cp.Status != backfill.StatusPaused || cp.TotalProcessed != 0 {
		t.Errorf("checkpoint %+v, want PAUSED before any row", cp)
	}
}

// TestBackfillRollbackProgressSurvivesAKill: total_reversed counts the reversals committed so
// far, in their transactions, so that a rollback killed with -9 shows how far it got.
func TestBackfillRollbackProgressSurvivesAKill(t *testing.T) {
	d := backfillLedger(t, 2)
	var b strings.Builder
	b.WriteString("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "issuance,acct-%d,1.00,USD,f,k-%d\n", i%2, i)
	}
	path := filepath.Join(t.TempDir(), "k.csv")
	_ = os.WriteFile(path, []byte(b.String()), 0o600)
	if out, errOut, code := cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", path, "--source-id", "k",
		"--errors", filepath.Join(t.TempDir(), "e.jsonl")); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	cmd := exec.Command(binary, "backfill", "rollback", "--source-id", "k", "--reason", "test", "--batch-size", "1")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+d.ConnStr)
	childOfTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a committed batch of reversals while the rollback runs", 60*time.Second, func() bool {
		cp := checkpointOf(t, d, "k")
		return cp.RollbackStatus != nil && *cp.RollbackStatus == "IN_PROGRESS" && cp.TotalReversed > 0
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// Both in one statement, so in one snapshot: the killed process's backend may still commit
	// the batch it was given (its reversals and its count together), and two reads apart once
	// saw the count of that batch and not its reversals.
	var reversals, reversed int64
	if err := d.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM ledger_entries WHERE transaction_type = 'backfill_reversal'),
		(SELECT total_reversed FROM ledger_backfill_checkpoints WHERE source_id = 'k' AND source_type = 'csv')`).Scan(&reversals, &reversed); err != nil {
		t.Fatal(err)
	}
	if reversed != reversals {
		t.Errorf("after kill -9: total_reversed %d, %d reversals in the ledger", reversed, reversals)
	}
}

// TestBackfillVerifyUsesTheRunsLedger (the operators' fire drill): an import into another ledger
// than MASTER, verified as the runbook writes it (no --ledger), read every source row against
// MASTER and reported all of them missing, inviting a second import. verify now reads the ledger
// from the run's checkpoint, and refuses another one as a resume does.
func TestBackfillVerifyUsesTheRunsLedger(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "LEGACY"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, a := range []ledger.AccountInput{{ID: "issuance", OverdraftLimit: &unlimited}, {ID: "acct-0"}} {
		a.CurrencyCode, a.AssetType = "USD", "fiat"
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "LEGACY", a); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "l.csv")
	if err := os.WriteFile(path, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\n"+
		"issuance,acct-0,1.00,USD,f,l-1\nissuance,acct-0,2.00,USD,f,l-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := []string{"--source-type", "csv", "--source", path, "--source-id", "legacy"}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "run", "--ledger", "LEGACY", "--errors", filepath.Join(t.TempDir(), "l.jsonl")}, src...)...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "verify"}, src...)...); code != 0 || !strings.Contains(out, "2 in the ledger") {
		t.Errorf("verify without --ledger: exit %d\n%s\n%s", code, out, errOut)
	}
	if out, errOut, code := cli(t, d.ConnStr, append([]string{"backfill", "verify", "--ledger", "MASTER"}, src...)...); code != 2 || !strings.Contains(errOut, "was imported into (LEGACY") {
		t.Errorf("verify with another ledger: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestBackfillUnknownLedgerRefusedUpFront (review of 2026-12-02): a --ledger that does not exist
// used to reject every row and end COMPLETED with nothing posted, and the source id could not be
// used again with the right ledger. It is refused before anything is read; the same source id
// then runs into the right ledger.
func TestBackfillUnknownLedgerRefusedUpFront(t *testing.T) {
	d := backfillLedger(t, 2)
	dir := t.TempDir()
	hist := filepath.Join(dir, "h.csv")
	_ = os.WriteFile(hist, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nissuance,acct-1,60.00,USD,t,u-1\n"), 0o600)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "typo", "--errors", filepath.Join(dir, "e.jsonl")}
	out, errOut, code := cli(t, d.ConnStr, append(args, "--ledger", "MASTRE")...)
	if code != 1 || !strings.Contains(errOut, "ledger MASTRE does not exist") {
		t.Errorf("--ledger MASTRE: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := backfill.GetCheckpoint(context.Background(), d.Pool, "csv", "typo"); err == nil {
		t.Error("a checkpoint was made for a ledger that does not exist")
	}
	if out, errOut, code := cli(t, d.ConnStr, append(args, "--ledger", "MASTER")...); code != 0 {
		t.Fatalf("the same source id into MASTER: exit %d\n%s\n%s", code, out, errOut)
	}
	if e, _ := ledgerState(t, d); len(e) != 1 {
		t.Errorf("%d entries, want 1", len(e))
	}
}
