package main

import (
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
