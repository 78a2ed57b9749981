package db_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"dualledger/db"
	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

// stateBefore007 migrates an empty database to 006 and leaves one outbox row FAILED the way the
// worker of that time did (last_error and last_status_code; failure_reason did not exist yet).
func stateBefore007(t *testing.T) (*pgtest.DB, *pgx.Conn, []pg.Migration) {
	t.Helper()
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		t.Fatal(err)
	}
	if migs[7].Name != "007_outbox_operations.sql" {
		t.Fatalf("migration 7 is %s", migs[7].Name)
	}
	if err := pg.Migrate(ctx, conn, migs[:7], nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`INSERT INTO ledgers (id) VALUES ('MASTER')`,
		`INSERT INTO banks (id, name) VALUES ('SCB-1', 'One'), ('SCB-2', 'Two')`,
		`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
		 VALUES ('MASTER', 'issuance', NULL, 'USD', 'fiat', NULL), ('MASTER', 'scb1', 'SCB-1', 'USD', 'fiat', 0), ('MASTER', 'scb2', 'SCB-2', 'USD', 'fiat', 0)`,
		`SELECT * FROM post_ledger_entry('MASTER', 'issuance', 'scb1', 1000, 'USD', 'fiat', 'funding', 'fund-1', NULL, NULL)`,
		`SELECT * FROM post_ledger_entry('MASTER', 'scb1', 'scb2', 100, 'USD', 'fiat', 'GSS_SETTLEMENT', 'stl-1', NULL, NULL)`,
		`UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'old-worker', lease_expires_at = now() + interval '1 minute',
		        attempts = attempts + 1, last_attempt_at = now() WHERE reference_id = 'stl-1' AND scb_id = 'SCB-2'`,
		`UPDATE dual_ledger_outbox SET status = 'FAILED', locked_by = NULL, lease_expires_at = NULL, last_error = '401 Unauthorized',
		        last_status_code = 401, failed_at = now() WHERE reference_id = 'stl-1' AND scb_id = 'SCB-2'`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("state before 007: %s: %v", s, err)
		}
	}
	return d, conn, migs
}

// fixStatements returns the SQL of one of the check's fixes: its indented "-- fix:" lines, the
// first block (keep FAILED, record the reason) or the second (requeue).
func fixStatements(t *testing.T, fix string, block int) string {
	t.Helper()
	var blocks [][]string
	var cur []string
	for _, line := range strings.Split(fix, "\n") {
		if strings.HasPrefix(line, "  ") {
			cur = append(cur, line)
			continue
		}
		if len(cur) > 0 {
			blocks = append(blocks, cur)
			cur = nil
		}
	}
	if len(cur) > 0 {
		blocks = append(blocks, cur)
	}
	if block >= len(blocks) {
		t.Fatalf("the fix has %d blocks of SQL, not %d:\n%s", len(blocks), block+1, fix)
	}
	return strings.Join(blocks[block], "\n")
}

// TestFailedWithoutReasonStopsBefore007: a database before 007 with a FAILED outbox row (it has
// no failure_reason: the column comes with 007) stops before 007 with the row named and the fix,
// instead of failing inside 007 on dual_ledger_outbox_failed_has_reason; nothing of 007 is
// applied, and scripts/run-migrations.sh stops the same way. Each of the two fixes the check
// prints, run as printed, lets the upgrade complete; the first ends with the same schema and
// privileges as a new database (the columns it adds come in 007's order).
func TestFailedWithoutReasonStopsBefore007(t *testing.T) {
	ctx := context.Background()
	d, conn, migs := stateBefore007(t)
	err := pg.Migrate(ctx, conn, migs, nil)
	var ce *pg.CheckError
	if !errors.As(err, &ce) || ce.Phase != "before" || ce.Migration != "007_outbox_operations.sql" || ce.Total != 1 {
		t.Fatalf("upgrade with a FAILED row: %v, want the check before 007", err)
	}
	if !strings.HasPrefix(ce.Findings[0], "MASTER/stl-1 to SCB-2: outbox row ") ||
		!strings.Contains(ce.Findings[0], "FAILED at ") || !strings.Contains(ce.Findings[0], "without a failure_reason (last error: 401 Unauthorized, last status code: 401)") {
		t.Errorf("finding %q", ce.Findings[0])
	}
	msg := ce.Error()
	for _, want := range []string{
		"check before 007_outbox_operations.sql failed (db/checks/007_outbox_operations.before.sql): 1 row(s), FAILED outbox rows without a failure_reason:",
		"fix: keep them FAILED and give each its reason",
		"UPDATE dual_ledger_outbox SET failure_reason = coalesce(last_error,",
		"or, to have them delivered again, requeue them",
		"Then run `dualledger migrate` again.",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message lacks %q:\n%s", want, msg)
		}
	}
	if got := strings1(t, conn, `SELECT attname::text FROM pg_attribute WHERE attrelid = 'dual_ledger_outbox'::regclass
		AND attname IN ('attempts_base', 'failure_reason') AND NOT attisdropped`); len(got) > 0 {
		t.Errorf("part of 007 was applied: %v", got)
	}
	states, err := pg.Status(ctx, conn, migs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if want := s.Name < "007"; s.Applied != want {
			t.Errorf("%s applied=%v after the failed check", s.Name, s.Applied)
		}
	}
	// scripts/run-migrations.sh runs the same check with psql: exit status 1, the same row.
	if _, err := exec.LookPath("psql"); err == nil {
		out, err := exec.Command("../scripts/run-migrations.sh", d.ConnStr).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "check before 007_outbox_operations.sql failed") ||
			!strings.Contains(string(out), "MASTER/stl-1 to SCB-2: outbox row ") || !strings.Contains(string(out), "fix: keep them FAILED") {
			t.Fatalf("run-migrations.sh on the FAILED row: %v\n%s", err, out)
		}
	}

	// The first fix, as printed: the row keeps FAILED with its last error as the reason.
	keep := fixStatements(t, ce.Check.Fix, 0)
	if _, err := conn.Exec(ctx, "BEGIN;\n"+keep+"\nCOMMIT;"); err != nil {
		t.Fatalf("the fix %s: %v", keep, err)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("upgrade after the fix: %v", err)
	}
	if got := strings1(t, conn, `SELECT reference_id || ' ' || scb_id || ' ' || status || ' ' || failure_reason FROM dual_ledger_outbox
		WHERE failure_reason IS NOT NULL`); !slices.Equal(got, []string{"stl-1 SCB-2 FAILED 401 Unauthorized"}) {
		t.Errorf("rows with a reason after the fix: %v", got)
	}
	freshConn := pgtest.New(t).Conn(t)
	if d := diff(schemaDump(t, conn), schemaDump(t, freshConn)); len(d) > 0 {
		t.Errorf("schema after the fix and the upgrade differs from a new database's:\n%s", strings.Join(d, "\n"))
	}
	if d := diff(aclDump(t, conn), aclDump(t, freshConn)); len(d) > 0 {
		t.Errorf("privileges after the fix and the upgrade differ from a new database's:\n%s", strings.Join(d, "\n"))
	}
	// The check runs again on every later run (scripts/run-migrations.sh re-runs all files): it
	// finds nothing once 007 is applied.
	if got := strings1(t, conn, ce.Check.SQL); len(got) > 0 {
		t.Errorf("the check after 007: %v", got)
	}

	// The second fix, as printed: the row goes back to QUEUED.
	_, conn, migs = stateBefore007(t)
	requeue := fixStatements(t, ce.Check.Fix, 1)
	if _, err := conn.Exec(ctx, requeue); err != nil {
		t.Fatalf("the fix %s: %v", requeue, err)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("upgrade after the requeue: %v", err)
	}
	if got := strings1(t, conn, `SELECT reference_id || ' ' || scb_id || ' ' || status FROM dual_ledger_outbox WHERE reference_id = 'stl-1' ORDER BY scb_id`); !slices.Equal(got,
		[]string{"stl-1 SCB-1 QUEUED", "stl-1 SCB-2 QUEUED"}) {
		t.Errorf("rows after the requeue: %v", got)
	}
}
