package pg_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"dualledger/db"
	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestMigrateAuditsBeforeBalanceConstraints: accounts that break the balance rules stop the
// migration before 004, the error names them and the fix, nothing of 004 is applied; after the
// fix the migration completes, and running it again changes nothing.
func TestMigrateAuditsBeforeBalanceConstraints(t *testing.T) {
	d := pgtest.NewEmpty(t)
	ctx := context.Background()
	conn := d.Conn(t)
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		t.Fatal(err)
	}
	// Apply 000-003 by hand, then break an account the way a legacy import could have.
	for _, m := range migs[:4] {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
	}
	for _, q := range []string{
		`INSERT INTO ledgers (id) VALUES ('LEGACY')`,
		`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type) VALUES ('LEGACY', 'overdrawn', 'USD', 'fiat'), ('LEGACY', 'fine', 'USD', 'fiat')`,
		`SELECT set_config('dualledger.posting', 'on', false)`,
		`UPDATE bank_accounts SET balance = -5, available_balance = -5 WHERE id = 'overdrawn'`,
		`SELECT set_config('dualledger.posting', '', false)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	err = pg.Migrate(ctx, conn, migs, nil)
	var audit *pg.BalanceAuditError
	if !errors.As(err, &audit) {
		t.Fatalf("want a balance audit error, got %v", err)
	}
	if len(audit.Findings) != 1 || !strings.Contains(audit.Findings[0], "LEGACY/overdrawn") || !strings.Contains(audit.Error(), "overdraft_limit") {
		t.Fatalf("findings %q / %v", audit.Findings, audit)
	}
	if audit.Phase != "before" || audit.Migration != "004_balance_constraints.sql" || !strings.Contains(audit.Error(), "fix: recompute reserved_balance") {
		t.Fatalf("check error %+v: %v", audit, audit)
	}
	// scripts/run-migrations.sh runs the same check with psql: exit status 1, the same account.
	if _, err := exec.LookPath("psql"); err == nil {
		out, err := exec.Command("../../scripts/run-migrations.sh", d.ConnStr).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "check before 004_balance_constraints.sql failed") ||
			!strings.Contains(string(out), "LEGACY/overdrawn") || !strings.Contains(string(out), "fix: recompute reserved_balance") {
			t.Fatalf("run-migrations.sh on the broken account: %v\n%s", err, out)
		}
	}
	states, err := pg.Status(ctx, conn, migs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if want := s.Name < "004"; s.Applied != want {
			t.Errorf("%s applied=%v after the failed audit", s.Name, s.Applied)
		}
	}
	// The fix the error suggests: allow the overdraft (or fund the account).
	if _, err := conn.Exec(ctx, `UPDATE bank_accounts SET overdraft_limit = 10 WHERE id = 'overdrawn'`); err != nil {
		t.Fatal(err)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("migrate after the fix: %v", err)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	states, _ = pg.Status(ctx, conn, migs)
	for _, s := range states {
		if !s.Applied {
			t.Errorf("%s not applied", s.Name)
		}
	}
}

// TestMigrationsApplyWithPsql: the files apply in order with plain psql (scripts/run-migrations.sh),
// twice, and `dualledger migrate` afterwards accepts the result.
func TestMigrationsApplyWithPsql(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	d := pgtest.NewEmpty(t)
	for i := 0; i < 2; i++ {
		out, err := exec.Command("../../scripts/run-migrations.sh", d.ConnStr).CombinedOutput()
		if err != nil {
			t.Fatalf("run-migrations.sh (run %d): %v\n%s", i+1, err, out)
		}
	}
	ctx := context.Background()
	conn := d.Conn(t)
	migs, _ := pg.LoadMigrations(db.FS())
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("migrate after psql: %v", err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.table_constraints WHERE constraint_name = 'ledger_entries_unique_ledger_reference'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("constraint after psql: %d %v", n, err)
	}
}
