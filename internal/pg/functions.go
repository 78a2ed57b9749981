package pg

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// functionDefinition finds the functions a file defines.
var functionDefinition = regexp.MustCompile(`(?i)\bcreate\s+(?:or\s+replace\s+)?function\s+(?:public\.)?([a-z_][a-z0-9_]*)\s*\(`)

// definedFunctions lists the names of the functions sql defines.
func definedFunctions(sql string) []string {
	var names []string
	for _, m := range functionDefinition.FindAllStringSubmatch(sql, -1) {
		names = append(names, strings.ToLower(m[1]))
	}
	return names
}

// revokeGrants takes every privilege on the functions named (every overload) from everyone but
// their owner, before their file is applied again: the file then grants exactly what it says.
// "REVOKE ALL ... FROM PUBLIC" in the files leaves grants to named roles alone, so without this a
// grant made by hand (EXECUTE on outbox_requeue to dualledger_api, say) survived every re-apply,
// and an upgraded database could differ from a fresh one in its privileges.
func revokeGrants(ctx context.Context, tx pgx.Tx, names []string) error {
	if len(names) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT format('REVOKE ALL ON FUNCTION %s FROM %s', p.oid::regprocedure,
	                                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END) || ' CASCADE'
		  FROM pg_proc p CROSS JOIN LATERAL aclexplode(p.proacl) a
		 WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY ($1) AND a.grantee <> p.proowner`, names)
	if err != nil {
		return fmt.Errorf("list the grants on the file's functions: %w", err)
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list the grants on the file's functions: %w", err)
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return nil
}

// applyRepeatable applies each repeatable file (db/functions) whose checksum differs from the one
// recorded in FunctionChecksumTable, or every one of them when all is set (a versioned migration
// ran), each in its own transaction with its new checksum. The caller holds the migration lock.
func applyRepeatable(ctx context.Context, conn *pgx.Conn, files []Migration, all bool, logf func(string, ...any)) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+FunctionChecksumTable+` (
		name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("record function checksums: %w", err)
	}
	// Every service role reads it (the schema check before a command runs). PUBLIC rather than the
	// three roles: re-running 010 with psql revokes what those roles hold and grants its own list,
	// which predates this table; a PUBLIC grant survives it. The rows are file names and hashes of
	// function bodies that any role can read from pg_proc anyway.
	if _, err := conn.Exec(ctx, `GRANT SELECT ON `+FunctionChecksumTable+` TO PUBLIC`); err != nil {
		return fmt.Errorf("record function checksums: %w", err)
	}
	applied, err := readChecksums(ctx, conn, FunctionChecksumTable)
	if err != nil {
		return fmt.Errorf("read function checksums: %w", err)
	}
	for _, f := range files {
		sum := checksum(f)
		if !all && applied[f.Name] == sum {
			continue
		}
		logf("applying %s", f.Name)
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if err := revokeGrants(ctx, tx, definedFunctions(f.SQL)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, f.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO `+FunctionChecksumTable+` (name, sha256) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()`, f.Name, sum)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", f.Name, err)
		}
	}
	return nil
}
