package pg

import (
	"context"
	"fmt"
	"regexp"
	"slices"
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
	drifted, err := driftedFunctions(ctx, conn)
	if err != nil {
		return err
	}
	for _, f := range files {
		sum := checksum(f)
		changed := changedIn(f, drifted)
		if !all && applied[f.Name] == sum && len(changed) == 0 {
			continue
		}
		if len(changed) > 0 && applied[f.Name] == sum {
			logf(WarnPrefix+"%s changed since the last migrate (by hand: find out who); applying %s again",
				strings.Join(changed, ", "), f.Name)
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

// DriftedFunctions is driftedFunctions for a caller outside the migration (a service starting
// against a database it does not migrate): the names of the functions changed by hand since the
// last migrate.
func DriftedFunctions(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	drifted, err := driftedFunctions(ctx, conn)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(drifted))
	for n := range drifted {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// driftedFunctions names the functions whose definition or privileges differ from what the last
// migrate recorded (dualledger_function_digests, migration 017), or that it recorded and are gone:
// changed by hand since. Nothing when nothing was recorded (a database migrated with psql, or
// before 017's first run).
func driftedFunctions(ctx context.Context, conn *pgx.Conn) (map[string]bool, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('dualledger_function_digests') IS NOT NULL
		AND to_regprocedure('dl_function_digests()') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := conn.Query(ctx, `SELECT DISTINCT split_part(coalesce(c.signature, d.signature), '(', 1)
		  FROM dl_function_digests() c
		  FULL JOIN dualledger_function_digests d ON d.signature = c.signature
		 WHERE EXISTS (SELECT 1 FROM dualledger_function_digests) AND c.digest IS DISTINCT FROM d.digest`)
	if err != nil {
		return nil, fmt.Errorf("compare the functions with the last migrate: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("compare the functions with the last migrate: %w", err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[strings.TrimPrefix(n, "public.")] = true
	}
	return out, nil
}

// qualified prefixes names with the schema, as dl_function_digests prints signatures.
func qualified(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = "public." + n
	}
	return out
}

// definedByFiles lists the functions the files define.
func definedByFiles(files []Migration) []string {
	var names []string
	for _, f := range files {
		names = append(names, definedFunctions(f.SQL)...)
	}
	return names
}

// changedIn lists the functions of file f among drifted.
func changedIn(f Migration, drifted map[string]bool) []string {
	var out []string
	for _, n := range definedFunctions(f.SQL) {
		if drifted[n] {
			out = append(out, n)
		}
	}
	return out
}

// WarnPrefix starts a message of Migrate's logf that needs the operator's attention (a function
// changed by hand, a wait for another session's lock): callers log it as a warning.
const WarnPrefix = "warning: "

// recordFunctionDigests notes the functions the files define (names), as this migrate leaves
// them, in dualledger_function_digests. A function no file defines is never recorded: one created
// by hand stays an audit finding until it is dropped, instead of becoming the new baseline.
func recordFunctionDigests(ctx context.Context, conn *pgx.Conn, names []string) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('dualledger_function_digests') IS NOT NULL
		AND to_regprocedure('dl_function_digests()') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return err // migrated to a version before 017 (tests do)
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM dualledger_function_digests d
			WHERE NOT EXISTS (SELECT 1 FROM dl_function_digests() c WHERE c.signature = d.signature)
			   OR NOT split_part(d.signature, '(', 1) = ANY ($1)`, qualified(names)); err != nil {
			return fmt.Errorf("record function digests: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dualledger_function_digests (signature, digest)
			SELECT c.signature, c.digest FROM dl_function_digests() c WHERE split_part(c.signature, '(', 1) = ANY ($1)
			ON CONFLICT (signature) DO UPDATE SET digest = excluded.digest, recorded_at = now()
			WHERE dualledger_function_digests.digest IS DISTINCT FROM excluded.digest`, qualified(names)); err != nil {
			return fmt.Errorf("record function digests: %w", err)
		}
		return nil
	})
}
