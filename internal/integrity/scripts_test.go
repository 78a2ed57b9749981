package integrity_test

import (
	"context"
	"errors"
	"maps"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"dualledger/internal/integrity"
	"dualledger/internal/pg/pgtest"
)

// runPsql runs a script of scripts/ with psql against d and returns its exit code and output.
func runPsql(t *testing.T, d *pgtest.DB, script string) (int, string) {
	t.Helper()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql is not installed")
	}
	cmd := exec.CommandContext(context.Background(), psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", d.ConnStr, "-f", "../../scripts/"+script)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("psql: %v", err)
	return 0, ""
}

// TestAuditScriptMatchesAudit runs scripts/audit-balances.sql and `Audit` on the same databases,
// clean and tampered in several ways: the same checks must fail with the same number of findings.
func TestAuditScriptMatchesAudit(t *testing.T) {
	failedChecks := regexp.MustCompile(`([a-z_]+) \(([0-9]+)\)`)
	cases := map[string][]string{
		"clean":          nil,
		"amount changed": {`UPDATE ledger_entries SET amount = amount + 1 WHERE ledger_id = 'L' AND seq = 9`},
		"entry deleted":  {`DELETE FROM ledger_entries WHERE ledger_id = 'L' AND seq = 9`},
		"head moved":     {`UPDATE ledgers SET head_seq = 3 WHERE id = 'L'`},
		"accounts": {
			`ALTER TABLE bank_accounts DROP CONSTRAINT bank_accounts_reserved_balance_nonnegative,
			   DROP CONSTRAINT bank_accounts_available_balance_consistent`,
			`UPDATE bank_accounts SET reserved_balance = -1, balance = balance + 2 WHERE ledger_id = 'L' AND id = 'a1'`,
		},
		"ghost accounts": {`UPDATE ledger_entries SET debit_account_id = 'ghost' WHERE ledger_id = 'L' AND seq > 15`},
		// A function changed in place, and a privilege granted by hand: migrate status said every
		// file applied and the audit passed (the security review of 2026-12-02).
		"function changed": {`CREATE OR REPLACE FUNCTION dl_acting_as_service() RETURNS boolean LANGUAGE sql STABLE RETURN false`},
		"grant added":      {`GRANT EXECUTE ON FUNCTION outbox_requeue(text, text, bigint, text, boolean, text) TO dualledger_api`},
		"function created": {`CREATE FUNCTION backdoor() RETURNS void LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`},
		"owner changed":    {`ALTER FUNCTION create_ledger(text, text) OWNER TO dualledger_readonly`},
		"duplicate reference": {
			`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_unique_ledger_reference`,
			`UPDATE ledger_entries SET reference_id = 'ref-1' WHERE ledger_id = 'L' AND seq = 7`,
		},
	}
	for name, stmts := range cases {
		t.Run(name, func(t *testing.T) {
			d := pgtest.New(t)
			createLedger(t, d.Pool, "L")
			createLedger(t, d.Pool, "M")
			post(t, d.Pool, "L", genEntries(0, 20))
			post(t, d.Pool, "M", genEntries(0, 3))
			if stmts != nil {
				tamper(t, d, stmts...)
			}
			r, err := integrity.Audit(context.Background(), d.Pool, integrity.AuditOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{}
			for _, c := range r.Checks {
				if c.Status == integrity.StatusFail && c.Name != integrity.CheckColumnNames {
					want[c.Name] = int(c.Total)
				}
			}
			if (len(want) == 0) != (stmts == nil) {
				t.Fatalf("audit of %s: %v", name, want)
			}

			code, out := runPsql(t, d, "audit-balances.sql")
			got := map[string]int{}
			if i := strings.Index(out, "audit-balances: checks failed: "); i >= 0 {
				line := out[i:]
				line = line[:strings.IndexByte(line, '\n')]
				for _, m := range failedChecks.FindAllStringSubmatch(line, -1) {
					n, _ := strconv.Atoi(m[2])
					got[m[1]] = n
				}
			}
			wantCode := 0
			if len(want) > 0 {
				wantCode = 3
			}
			if code != wantCode || !maps.Equal(got, want) {
				t.Fatalf("psql exit %d with %v, audit found %v (want exit %d)\n%s", code, got, want, wantCode, out)
			}
			if wantCode == 0 && !strings.Contains(out, "all checks passed") {
				t.Fatalf("clean run does not say so:\n%s", out)
			}
		})
	}
}

func TestColumnNamesScript(t *testing.T) {
	d := pgtest.New(t)
	code, out := runPsql(t, d, "verify-column-names.sql")
	if code != 0 || !strings.Contains(out, "all expected columns exist") {
		t.Fatalf("migrated database: exit %d\n%s", code, out)
	}
	if _, err := d.Pool.Exec(context.Background(),
		`ALTER TABLE ledger_entries RENAME COLUMN debit_account_id TO "debitAccountId"`); err != nil {
		t.Fatal(err)
	}
	code, out = runPsql(t, d, "verify-column-names.sql")
	if code != 3 || !strings.Contains(out, "missing column ledger_entries.debit_account_id") ||
		!strings.Contains(out, `camelCase column ledger_entries."debitAccountId"`) {
		t.Fatalf("renamed column: exit %d\n%s", code, out)
	}
	r, err := integrity.Audit(context.Background(), d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := check(t, r, integrity.CheckColumnNames); c.Total != 2 {
		t.Fatalf("Audit's column_names disagrees with the script: %+v", c)
	}
}
