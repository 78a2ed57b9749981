package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

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
