package integrity_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"dualledger/internal/integrity"
	"dualledger/internal/pg/pgtest"
)

func TestAuditClean(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "MASTER")
	createLedger(t, d.Pool, "EMPTY")
	post(t, d.Pool, "MASTER", genEntries(0, 50))
	post(t, d.Pool, "MASTER", []entry{{
		"debit_account_id": "vault:gold", "credit_account_id": "SCB-2/gold@reserve", "amount": "0.000000000000000001",
		"currency_code": "XAU", "asset_type": "commodity", "transaction_type": "allocation", "reference_id": "gold-1",
	}})

	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || len(r.Failed()) != 0 {
		t.Fatalf("clean database fails the audit:\n%s", describe(r))
	}
	var names []string
	for _, c := range r.Checks {
		names = append(names, c.Name)
		if c.Status != integrity.StatusOK || c.Total != 0 || c.Findings == nil {
			t.Errorf("%s: status %s, %d findings, findings %v", c.Name, c.Status, c.Total, c.Findings)
		}
	}
	want := []string{integrity.CheckColumnNames, integrity.CheckAccountRules, integrity.CheckReservedHolds,
		integrity.CheckDuplicateReferences, integrity.CheckEntryAccounts, integrity.CheckBalancesMatchEntries,
		integrity.CheckZeroSum, integrity.CheckGaplessSeq, integrity.CheckLedgerHead, integrity.CheckHashChain,
		integrity.CheckBalanceAfter, integrity.CheckOperatorLog, integrity.CheckHoldChain, integrity.CheckHoldStates,
		integrity.CheckFunctionDefinitions, integrity.CheckTablePrivileges}
	if !slices.Equal(names, want) {
		t.Fatalf("checks %v, want %v", names, want)
	}
	// JSON: findings is [] (not null) for a passing check, so scripts can iterate without care.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"findings":[]`) || strings.Contains(string(b), `"findings":null`) {
		t.Fatalf("JSON: %s", b)
	}
}

// TestAuditAccountRules breaks the balance rules the way data imported before migration 004
// could (the CHECK constraints dropped, triggers off) and checks which accounts are named. The
// issuance account is negative with overdraft_limit NULL (unlimited): that is allowed.
func TestAuditAccountRules(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "L")
	post(t, d.Pool, "L", genEntries(0, 20))
	tamper(t, d,
		`ALTER TABLE bank_accounts DROP CONSTRAINT bank_accounts_reserved_balance_nonnegative,
		   DROP CONSTRAINT bank_accounts_available_balance_consistent,
		   DROP CONSTRAINT bank_accounts_available_balance_within_overdraft`,
		// reserved < 0 (available consistent with it)
		`UPDATE bank_accounts SET reserved_balance = -1, available_balance = balance + 1 WHERE ledger_id = 'L' AND id = 'a1'`,
		// available <> balance - reserved
		`UPDATE bank_accounts SET available_balance = balance - 5 WHERE ledger_id = 'L' AND id = 'a2'`,
		// consistent, but available below -overdraft_limit (0)
		`UPDATE bank_accounts SET reserved_balance = balance + 10, available_balance = -10 WHERE ledger_id = 'L' AND id = 'a3'`,
	)
	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(r.Failed()), sorted([]string{integrity.CheckAccountRules, integrity.CheckReservedHolds}); !slices.Equal(got, want) {
		t.Fatalf("failed %v, want %v\n%s", got, want, describe(r))
	}
	rules := check(t, r, integrity.CheckAccountRules)
	if rules.Total != 3 || len(rules.Findings) != 3 {
		t.Fatalf("account_rules: %d findings, want 3 (a1, a2, a3)\n%s", rules.Total, describe(r))
	}
	for i, want := range []string{"L/a1: ", "L/a2: ", "L/a3: "} {
		if !strings.HasPrefix(rules.Findings[i].Message, want) {
			t.Errorf("finding %d: %s, want %s...", i, rules.Findings[i].Message, want)
		}
	}
	for i, why := range []string{"reserved_balance < 0", "available_balance <> balance - reserved_balance", "available_balance below -overdraft_limit"} {
		if !strings.Contains(rules.Findings[i].Message, why) {
			t.Errorf("finding %d: %s, want it to say %q", i, rules.Findings[i].Message, why)
		}
	}
	var det map[string]string
	if err := json.Unmarshal(rules.Findings[0].Details, &det); err != nil || det["account_id"] != "a1" || det["reserved_balance"] != "-1" {
		t.Errorf("details %s (%v)", rules.Findings[0].Details, err)
	}
	// No holds: every reserved balance must be 0 and available = balance - reserved.
	if res := check(t, r, integrity.CheckReservedHolds); res.Total != 3 {
		t.Errorf("reserved_holds: %d findings, want 3 (a1, a2, a3)", res.Total)
	}
}

func TestAuditDuplicateReferences(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "L")
	post(t, d.Pool, "L", genEntries(0, 5))
	tamper(t, d,
		`ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_unique_ledger_reference`,
		`INSERT INTO ledger_entries (id, ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code, asset_type,
		        transaction_type, reference_id, fx_rate, metadata, timestamp_utc, previous_hash, block_hash,
		        debit_balance_after, credit_balance_after)
		 SELECT 999999, ledger_id, 6, debit_account_id, credit_account_id, amount, currency_code, asset_type,
		        transaction_type, reference_id, fx_rate, metadata, timestamp_utc, block_hash, block_hash,
		        debit_balance_after, credit_balance_after
		   FROM ledger_entries WHERE ledger_id = 'L' AND seq = 2`,
	)
	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dup := check(t, r, integrity.CheckDuplicateReferences)
	if dup.Status != integrity.StatusFail || dup.Total != 1 || !strings.Contains(dup.Findings[0].Message, `"ref-1" is used by 2 entries (seq {2,6})`) {
		t.Fatalf("duplicate_references: %+v", dup)
	}
	// The seeds' schema check (docs/design.md §10.2) sees the constraint gone too.
	cols := check(t, r, integrity.CheckColumnNames)
	if cols.Status != integrity.StatusFail || !strings.Contains(cols.Findings[0].Message, "ledger_entries_unique_ledger_reference") {
		t.Fatalf("column_names: %+v", cols)
	}
}

// TestAuditLimit: a check lists at most Limit findings but counts all of them.
func TestAuditLimit(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "L")
	post(t, d.Pool, "L", genEntries(0, 30))
	tamper(t, d, `UPDATE ledger_entries SET debit_account_id = 'ghost' WHERE ledger_id = 'L' AND debit_account_id = 'issuance'`)
	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	c := check(t, r, integrity.CheckEntryAccounts)
	if c.Total != 24 || len(c.Findings) != 5 {
		t.Fatalf("entry_accounts: total %d, listed %d; want 24 and 5", c.Total, len(c.Findings))
	}
	if !strings.Contains(c.Findings[0].Message, `L seq 1: debit account "ghost" does not exist`) {
		t.Fatalf("first finding: %s", c.Findings[0].Message)
	}
}

// TestAuditColumnNames renames a column the code relies on to camelCase: the schema check names
// both the missing snake_case column and the camelCase one, and the other checks are skipped
// instead of failing with SQL errors.
func TestAuditColumnNames(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "L")
	if _, err := d.Pool.Exec(ctx, `ALTER TABLE bank_accounts RENAME COLUMN reserved_balance TO "reservedBalance"`); err != nil {
		t.Fatal(err)
	}
	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := check(t, r, integrity.CheckColumnNames)
	if c.Status != integrity.StatusFail || c.Total != 2 ||
		c.Findings[0].Message != "missing column bank_accounts.reserved_balance" ||
		!strings.Contains(c.Findings[1].Message, `camelCase column bank_accounts."reservedBalance"`) {
		t.Fatalf("column_names: %+v", c)
	}
	for _, c := range r.Checks[1:] {
		if c.Status != integrity.StatusSkipped {
			t.Errorf("%s: %s, want skipped", c.Name, c.Status)
		}
	}
}

func check(t *testing.T, r integrity.AuditReport, name string) integrity.CheckResult {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %s", name)
	return integrity.CheckResult{}
}

// TestAuditOperatorLog tampers with the operator log the ways a superuser could (a row's reason
// changed, a row deleted, the head moved) and checks that audit names the seq.
func TestAuditOperatorLog(t *testing.T) {
	cases := map[string]struct {
		stmt string
		seq  float64
	}{
		"reason rewritten": {`UPDATE operator_actions SET reason = 'nothing to see' WHERE seq = 2`, 2},
		"actor rewritten":  {`UPDATE operator_actions SET actor = 'cli:someone-else' WHERE seq = 3`, 3},
		"row deleted":      {`DELETE FROM operator_actions WHERE seq = 2`, 3},
		"head moved back":  {`UPDATE operator_actions_head SET seq = 1`, 1},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := pgtest.New(t)
			ctx := context.Background()
			// Three acts through the administrative functions: seq 1, 2, 3.
			for _, q := range []string{
				`SELECT create_ledger('cli:alice', 'L')`,
				`SELECT register_bank('cli:alice', 'SCB-1', 'Bank one')`,
				`SELECT create_account('cli:bob', 'L', 'a', 'USD', 'fiat', 'SCB-1', 0, false, NULL)`,
			} {
				if _, err := d.Pool.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{}); err != nil || !r.OK {
				t.Fatalf("before tampering: %v\n%s", err, describe(r))
			}
			// The guards refuse the tamper; a superuser turns them off first.
			if _, err := d.Pool.Exec(ctx, c.stmt); err == nil {
				t.Fatalf("%s was allowed with the guards on", c.stmt)
			}
			if _, err := d.Pool.Exec(ctx, `SET session_replication_role = replica; `+c.stmt+`; SET session_replication_role = origin`); err != nil {
				t.Fatal(err)
			}
			r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.OK || !slices.Equal(r.Failed(), []string{integrity.CheckOperatorLog}) {
				t.Fatalf("failed checks %v, want only operator_log:\n%s", r.Failed(), describe(r))
			}
			for _, ch := range r.Checks {
				if ch.Name != integrity.CheckOperatorLog {
					continue
				}
				var det map[string]any
				if err := json.Unmarshal(ch.Findings[0].Details, &det); err != nil || det["seq"] != c.seq {
					t.Errorf("first finding %s, want seq %v", ch.Findings[0].Details, c.seq)
				}
			}
		})
	}
}

// TestAuditTablePrivileges: a write privilege on the ledger's tables granted by hand (to a
// service role, on a column, to PUBLIC), a sequence's setval, and a disabled trigger are
// findings; before, a login given UPDATE on bank_accounts could set balances, and no check saw it
// until the balances did (the schema review of 2026-12-02). Revoked and re-enabled, the check
// passes.
func TestAuditTablePrivileges(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "MASTER")
	tamper := []string{
		`GRANT INSERT, UPDATE ON bank_accounts TO dualledger_api`,
		`GRANT UPDATE (balance) ON bank_accounts TO dualledger_worker`,
		`GRANT DELETE ON ledger_entries TO PUBLIC`,
		`GRANT UPDATE ON SEQUENCE ledger_entries_id_seq TO dualledger_api`,
		`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_chain_check`,
	}
	for _, q := range tamper {
		if _, err := d.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var c integrity.CheckResult
	for _, x := range r.Checks {
		if x.Name == integrity.CheckTablePrivileges {
			c = x
		}
	}
	var msgs []string
	for _, f := range c.Findings {
		msgs = append(msgs, f.Message)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"dualledger_api has INSERT on bank_accounts", "dualledger_api has UPDATE on bank_accounts",
		"dualledger_worker has UPDATE on bank_accounts (column balance)", "PUBLIC has DELETE on ledger_entries",
		"dualledger_api has UPDATE on ledger_entries_id_seq", "trigger ledger_entries_chain_check on ledger_entries is disabled"} {
		if !strings.Contains(all, want) {
			t.Errorf("no finding %q in:\n%s", want, all)
		}
	}
	if c.Status != integrity.StatusFail || c.Total != 6 || r.OK {
		t.Errorf("table_privileges: status %s, %d findings, audit ok %v:\n%s", c.Status, c.Total, r.OK, all)
	}
	for _, q := range []string{`REVOKE INSERT, UPDATE ON bank_accounts FROM dualledger_api`, `REVOKE UPDATE (balance) ON bank_accounts FROM dualledger_worker`,
		`REVOKE DELETE ON ledger_entries FROM PUBLIC`, `REVOKE UPDATE ON SEQUENCE ledger_entries_id_seq FROM dualledger_api`,
		`ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_chain_check`} {
		if _, err := d.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if r, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{}); err != nil || !r.OK {
		t.Errorf("after the repair: %v\n%s", err, describe(r))
	}
}
