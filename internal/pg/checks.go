package pg

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// checkSQLState is raised by an after check's DO block (AfterCheckSQL): the class DL9xx is the
// migration runner's own, never a posting result.
const checkSQLState = "DL900"

// checkRowsShown is how many offending rows a failed check lists (it counts all of them).
const checkRowsShown = 50

// CheckError is returned when a migration's before or after check (db/checks) finds rows. Before:
// nothing of that migration or later is applied. After: its transaction was rolled back.
type CheckError struct {
	Migration string // e.g. "004_balance_constraints.sql"
	Phase     string // "before" or "after"
	Check     *Check
	Findings  []string // the first checkRowsShown rows
	Total     int      // every row the check returned
}

// BalanceAuditError is the name the callers know for a failed check: the first one was the
// balance audit before 004 (now db/checks/004_balance_constraints.before.sql).
type BalanceAuditError = CheckError

func (e *CheckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "check %s %s failed (db/%s): %d row(s), %s:\n", e.Phase, e.Migration, e.Check.File, e.Total, e.Check.Title)
	for _, f := range e.Findings {
		b.WriteString("  ")
		b.WriteString(f)
		b.WriteString("\n")
	}
	if more := e.Total - len(e.Findings); more > 0 {
		fmt.Fprintf(&b, "  ... and %d more\n", more)
	}
	if e.Check.Fix != "" {
		b.WriteString("fix: ")
		b.WriteString(e.Check.Fix)
		b.WriteString("\n")
	}
	b.WriteString("Then run `dualledger migrate` again.")
	return b.String()
}

// runBeforeCheck runs mig's before check (the migrations before mig are applied, mig is not).
func runBeforeCheck(ctx context.Context, conn *pgx.Conn, mig Migration) error {
	rows, err := conn.Query(ctx, mig.Before.SQL)
	if err != nil {
		return fmt.Errorf("check before %s (db/%s): %w", mig.Name, mig.Before.File, err)
	}
	e := &CheckError{Migration: mig.Name, Phase: "before", Check: mig.Before}
	var row string
	if _, err := pgx.ForEachRow(rows, []any{&row}, func() error {
		e.Total++
		if len(e.Findings) < checkRowsShown {
			e.Findings = append(e.Findings, row)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("check before %s (db/%s): %w", mig.Name, mig.Before.File, err)
	}
	if e.Total > 0 {
		return e
	}
	return nil
}

// AfterCheckSQL wraps an after check in a DO block that raises SQLSTATE DL900 when the query
// returns rows (the message counts them, the DETAIL lists the first 50, one per line). Appended to
// the migration, it runs in the migration's transaction; scripts/run-migrations.sh builds the same
// block for psql.
func AfterCheckSQL(migration string, c *Check) string {
	q := strings.TrimRight(c.SQL, " \t\r\n")
	q = strings.TrimSuffix(q, ";")
	return fmt.Sprintf(`DO $dualledger_check$
DECLARE
    found text[];
BEGIN
    SELECT array_agg(r) INTO found FROM (
%s
    ) AS c(r);
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'check after %s failed: %% row(s)', cardinality(found)
            USING ERRCODE = '%s', DETAIL = array_to_string(found[1:%d], E'\n');
    END IF;
END
$dualledger_check$;
`, q, migration, checkSQLState, checkRowsShown)
}

// checkTotal reads the row count back from the message of AfterCheckSQL's exception.
func checkTotal(message string) int {
	i := strings.LastIndex(message, ": ")
	var n int
	if i < 0 {
		return 0
	}
	if _, err := fmt.Sscanf(message[i+2:], "%d row(s)", &n); err != nil {
		return 0
	}
	return n
}
