package integrity

import (
	"fmt"
	"strings"
)

// auditScriptHeader opens scripts/audit-balances.sql; auditScript appends the list of checks.
const auditScriptHeader = `-- scripts/audit-balances.sql: audit balances, sequences, ledger heads and the hash chain with psql.
--
-- GENERATED from internal/integrity/checks/*.sql, the queries ` + "`dualledger audit`" + ` runs; do not edit.
-- Change those files, then: go test ./internal/integrity -run TestAuditScriptGenerated -update
-- (the test fails while this file differs from what they generate).
--
--   psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f scripts/audit-balances.sql [-v limit=100]
--
-- Exit status: 0 when every check passes; 3 when any check has findings (the final DO block
-- raises, and ON_ERROR_STOP turns that into psql's exit status 3 - the script also sets
-- ON_ERROR_STOP itself, so a plain ` + "`psql -f`" + ` exits 3 too); 1 or 2 when psql itself or the
-- connection fails. Each check prints its offending rows (message, details; at most :limit,
-- default 100, per check; the summary counts all of them).
--
-- Run scripts/verify-column-names.sql first (the column_names check of ` + "`dualledger audit`" + `): with
-- a column missing, this script stops at the first query that names it. Everything runs in one
-- REPEATABLE READ snapshot and is rolled back (the temp tables that hold the findings included);
-- the script changes nothing.
--
-- The checks, in order, under the same names as ` + "`dualledger audit`" + `:
--
`

// auditScript returns scripts/audit-balances.sql: every check of Audit but column_names (which
// scripts/verify-column-names.sql runs), each the query of its checks/ file, in Audit's order,
// under Audit's names, in one REPEATABLE READ snapshot, followed by a summary and a DO block
// that raises (psql exit status 3) when any check has findings.
func auditScript() string {
	var checks []auditCheck
	for _, c := range auditChecks() {
		if c.name != CheckColumnNames {
			checks = append(checks, c)
		}
	}
	var b strings.Builder
	b.WriteString(auditScriptHeader)
	for _, c := range checks {
		fmt.Fprintf(&b, "--   %-24s %s\n", c.name, c.description)
	}
	b.WriteString(`
\set ON_ERROR_STOP on
\set QUIET on
\pset pager off
\if :{?limit}
\else
\set limit 100
\endif

BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL work_mem = '64MB';
`)
	for _, c := range checks {
		where := ""
		fmt.Fprintf(&b, "\n-- %s (%s)\nCREATE TEMP TABLE audit_%s ON COMMIT DROP AS\nSELECT row_number() OVER () AS n, c.message, c.details FROM (\n%s\n) AS c(message, details)%s;\n",
			c.name, "internal/integrity/checks/"+c.file, c.name, c.query(), where)
		fmt.Fprintf(&b, "\\echo '== %s: %s'\nSELECT message, details FROM audit_%s ORDER BY n LIMIT :limit;\n",
			c.name, strings.ReplaceAll(c.description, "'", "''"), c.name)
	}
	b.WriteString("\nCREATE TEMP TABLE audit_summary ON COMMIT DROP AS\nSELECT * FROM (VALUES\n")
	for i, c := range checks {
		sep := ","
		if i == len(checks)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "    (%d, '%s', (SELECT count(*) FROM audit_%s))%s\n", i+1, c.name, c.name, sep)
	}
	fmt.Fprintf(&b, `) AS s(ord, check_name, findings);

\echo '== summary'
SELECT check_name, findings,
       CASE WHEN findings > 0 THEN 'FAIL' ELSE 'ok' END AS status
  FROM audit_summary ORDER BY ord;

DO $$
DECLARE
    failed text;
BEGIN
    SELECT string_agg(format('%%s (%%s)', check_name, findings), ', ' ORDER BY ord)
      INTO failed
      FROM audit_summary
     WHERE findings > 0;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'audit-balances: checks failed: %%', failed
            USING HINT = 'the sections above list the offending rows. A wrong entry (the chain checks pass) is corrected with a reversal entry, never by editing rows; '
                      || 'balance columns that disagree with intact entries (balances_match_entries or zero_sum alone) are restored from the entries: docs/runbooks/audit-findings.md';
    END IF;
    RAISE NOTICE 'audit-balances: all checks passed';
END $$;

ROLLBACK;
`)
	return b.String()
}

// columnScript returns scripts/verify-column-names.sql: Audit's column_names check (the query of
// its checks/ file, one copy) as a psql script that lists what is missing and exits 3 when
// anything is (deployment step 1 of the seeds, docs/design.md §10.2).
func columnScript() string {
	var check auditCheck
	for _, c := range auditChecks() {
		if c.name == CheckColumnNames {
			check = c
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `-- scripts/verify-column-names.sql: check that the database uses the snake_case column names the
-- code relies on (deployment step 1 of the seeds, docs/design.md §10.2), before auditing or migrating.
--
-- GENERATED from internal/integrity/checks/%s, the column_names check of `+"`dualledger audit`"+`;
-- do not edit. Change that file, then: go test ./internal/integrity -run TestAuditScriptGenerated -update
--
--   psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f scripts/verify-column-names.sql
--
-- Exit status: 0 when every expected column, the idempotency constraint and the seeds' posting
-- function exist and no camelCase column sits beside them; 3 otherwise (the final DO block
-- raises, and ON_ERROR_STOP - which the script also sets itself - makes psql exit 3); 1 or 2
-- when psql itself or the connection fails. It changes nothing (everything is rolled back).

\set ON_ERROR_STOP on
\set QUIET on
\pset pager off

BEGIN;

CREATE TEMP TABLE column_findings ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
%s
) AS c(message, details);

\echo '== findings (missing columns, camelCase columns, missing constraint or function)'
SELECT message FROM column_findings ORDER BY n;

DO $$
DECLARE
    k    bigint;
    list text;
BEGIN
    SELECT count(*), string_agg(message, '; ' ORDER BY n) INTO k, list FROM column_findings;
    IF k > 0 THEN
        RAISE EXCEPTION 'verify-column-names: %% finding(s): %%', k, list
            USING HINT = 'the code expects snake_case columns (e.g. ledger_id, debit_account_id); apply the migrations (dualledger migrate) or map the names';
    END IF;
    RAISE NOTICE 'verify-column-names: all expected columns exist (snake_case)';
END $$;

ROLLBACK;
`, check.file, check.query())
	return b.String()
}
