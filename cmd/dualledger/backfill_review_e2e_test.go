package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackfillSourceThatCannotBeRead: a CSV whose lines end with a carriage return alone (one
// line, read before as a header naming every row, and imported as nothing, "completed") stops
// the run with exit 1 and what to do, not exit 3 and "run the same command again"; under --json
// the error is the JSON envelope on stderr, as every command's is.
func TestBackfillSourceThatCannotBeRead(t *testing.T) {
	d := backfillLedger(t, 1)
	dir := t.TempDir()
	src := filepath.Join(dir, "cr.csv")
	_ = os.WriteFile(src, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\rissuance,acct-0,1,USD,f,cr1\r"), 0o600)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", src, "--source-id", "cr", "--errors", filepath.Join(dir, "e.jsonl")}
	out, errOut, code := cli(t, d.ConnStr, args...)
	if code != 1 || !strings.Contains(errOut, "carriage return") || !strings.Contains(errOut, "fix the source") || strings.Contains(errOut, "to resume") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
	// Fixed, the same command imports it.
	_ = os.WriteFile(src, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nissuance,acct-0,1,USD,f,cr1\n"), 0o600)
	if out, errOut, code := cli(t, d.ConnStr, args...); code != 0 || !strings.Contains(out, "COMPLETED") {
		t.Errorf("after the fix: exit %d\n%s\n%s", code, out, errOut)
	}

	for _, c := range []struct {
		args []string
		code int
		name string
	}{
		{[]string{"--json", "backfill", "verify", "--source-id", "no/such:source"}, 1, "failed"},
		{[]string{"--json", "backfill", "run", "--source-type", "csv", "--source", src}, 2, "usage"},
		{[]string{"--json", "backfill", "rollback", "--source-id", "-bad", "--reason", "x"}, 2, "usage"},
	} {
		out, errOut, code := cli(t, d.ConnStr, c.args...)
		var env struct {
			Error struct {
				Code    string         `json:"code"`
				Message string         `json:"message"`
				Details map[string]int `json:"details"`
			} `json:"error"`
		}
		if code != c.code || json.Unmarshal([]byte(errOut), &env) != nil || env.Error.Code != c.name || env.Error.Message == "" || env.Error.Details["exit_code"] != c.code {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", c.args, code, out, errOut)
		}
	}
}

// TestBackfillReservedNames: an import may not take the name of another's opening balances
// (<id>.opening: one checkpoint and report for two sources), nor resume its opening balances from
// another file or account; an unknown backfill subcommand is a usage error, not help and exit 0.
func TestBackfillReservedNames(t *testing.T) {
	d := backfillLedger(t, 1)
	addOpeningAccount(t, d)
	dir := t.TempDir()
	hist := filepath.Join(dir, "h.csv")
	_ = os.WriteFile(hist, []byte("debit_account_id,credit_account_id,amount,currency_code,transaction_type,reference_id\nacct-0,issuance,1.00,USD,t,h-1\n"), 0o600)
	if _, errOut, code := cli(t, d.ConnStr, "backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "p10.opening"); code != 2 || !strings.Contains(errOut, "ends in .opening") {
		t.Errorf(".opening: exit %d %s", code, errOut)
	}
	if out, errOut, code := cli(t, d.ConnStr, "backfill", "nonsense"); code != 2 {
		t.Errorf("backfill nonsense: exit %d\n%s\n%s", code, out, errOut)
	}
	// Opening balances stopped part-way (a row over --max-errors 0), then resumed with another file.
	ob := filepath.Join(dir, "ob.csv")
	_ = os.WriteFile(ob, []byte("account_id,amount\nacct-0,5.00\n"), 0o600)
	other := filepath.Join(dir, "ob2.csv")
	_ = os.WriteFile(other, []byte("account_id,amount\nacct-0,7.00\n"), 0o600)
	args := []string{"backfill", "run", "--source-type", "csv", "--source", hist, "--source-id", "p11", "--errors", filepath.Join(dir, "e.jsonl")}
	if out, errOut, code := cli(t, d.ConnStr, append(args, "--opening-balances", ob)...); code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := d.Pool.Exec(context.Background(), `UPDATE ledger_backfill_checkpoints SET status = 'PAUSED', completed_at = NULL WHERE source_id = 'p11.opening'`); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli(t, d.ConnStr, append(args, "--opening-balances", other)...); code != 2 || !strings.Contains(errOut, "--opening-balances differs") {
		t.Errorf("another opening file on resume: exit %d %s", code, errOut)
	}
}
