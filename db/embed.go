// Package db holds the schema, embedded in the binary (docs/architecture.md, "Schema evolution"):
//
//   - migrations/NNN_name.sql: versioned migrations, applied once each in number order and never
//     edited afterwards (migrations.sum holds their sha256; TestMigrationSums fails on an edit,
//     TestMigrationSumsMatchHistory on an edit of a migration and its line together);
//   - functions/name.sql: repeatable files (function bodies), applied in name order after the
//     migrations and again whenever their content changes;
//   - checks/NNN_name.before.sql, .after.sql: queries whose rows stop a migration (before it, or
//     rolling it back).
//
// The same files apply with plain psql (scripts/run-migrations.sh); `dualledger migrate` applies
// them under an advisory lock and records them in dualledger_schema_version,
// dualledger_migration_checksums and dualledger_function_checksums.
package db

import (
	"embed"
	"io/fs"
)

// files holds migrations/, functions/ and checks/ (each directory's README.md included).
//
//go:embed migrations/*.sql functions checks
var files embed.FS

// FS returns the db directory: migrations/, functions/ and checks/ (pg.LoadMigrations reads it).
func FS() fs.FS { return files }
