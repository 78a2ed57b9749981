// Package db holds the SQL migrations, embedded in the binary. The same files apply in order with
// plain `psql -f` (scripts/run-migrations.sh); `dualledger migrate` applies them with tern under an
// advisory lock and records them in dualledger_schema_version.
package db

import (
	"embed"
	"io/fs"
)

// Migrations holds migrations/NNN_name.sql.
//
//go:embed migrations/*.sql
var Migrations embed.FS

// FS returns the migrations directory itself (file names without the "migrations/" prefix).
func FS() fs.FS {
	sub, err := fs.Sub(Migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory always exists
	}
	return sub
}
