package pg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

// VersionTable records which migrations are applied (tern's format: one row, the count).
const VersionTable = "dualledger_schema_version"

// ChecksumTable records the sha256 of each migration file as it was applied: a file changed
// afterwards is refused (migrations are immutable once applied; changes go into new files).
const ChecksumTable = "dualledger_migration_checksums"

// balanceConstraintsMigration is audited before it is applied (the seed's step 2).
const balanceConstraintsMigration = "004_balance_constraints.sql"

var migrationName = regexp.MustCompile(`^([0-9]{3})_[a-z0-9_]+\.sql$`)

// Migration is one file of db/migrations.
type Migration struct {
	Name string // e.g. "001_ledger_idempotency.sql"
	SQL  string
}

// MigrationState is one line of `dualledger migrate status`.
type MigrationState struct {
	Name    string `json:"name"`
	Applied bool   `json:"applied"`
}

// LoadMigrations reads NNN_name.sql files from fsys (sorted by name, numbered without gaps from
// 000). The SQL is used as written: unlike tern.LoadMigrations it is not a text/template, so the
// files mean exactly what `psql -f` makes of them.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for i, name := range names {
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNN_lower_snake.sql", name)
		}
		if want := fmt.Sprintf("%03d", i); m[1] != want {
			return nil, fmt.Errorf("migration file %q: expected number %s (numbers start at 000 without gaps)", name, want)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		out = append(out, Migration{Name: name, SQL: string(body)})
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations found")
	}
	return out, nil
}

// BalanceAuditError is returned when existing accounts break the rules that migration 004 is about
// to enforce. Nothing of 004 or later has been applied.
type BalanceAuditError struct {
	Findings []string
}

func (e *BalanceAuditError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "balance audit before %s failed: %d account(s) break the balance rules:\n", balanceConstraintsMigration, len(e.Findings))
	for _, f := range e.Findings {
		b.WriteString("  ")
		b.WriteString(f)
		b.WriteString("\n")
	}
	b.WriteString("fix: recompute reserved_balance from open holds and set available_balance = balance - reserved_balance;\n" +
		"an account that is legitimately negative needs a higher overdraft_limit (NULL = unlimited, for issuance accounts)\n" +
		"or funds posted from an opening-balance account. Then run `dualledger migrate` again.\n" +
		"(scripts/audit-balances.sql lists the same accounts with psql.)")
	return b.String()
}

// Migrate applies every pending migration under tern's advisory lock. Migration 004 (balance
// constraints) is preceded by an audit of the existing accounts; if the audit finds offenders,
// Migrate stops before 004 and returns a *BalanceAuditError naming them. logf (may be nil) is told
// about each migration it applies.
func Migrate(ctx context.Context, conn *pgx.Conn, migrations []Migration, logf func(format string, args ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	m, err := newMigrator(ctx, conn, migrations)
	if err != nil {
		return err
	}
	m.OnStart = func(_ int32, name, direction, _ string) {
		logf("applying %s", name)
	}
	auditBefore := int32(-1)
	for i, mig := range migrations {
		if mig.Name == balanceConstraintsMigration {
			auditBefore = int32(i) // tern version i means files [0, i) are applied
		}
	}
	current, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if auditBefore >= 0 && current <= auditBefore {
		if err := m.MigrateTo(ctx, auditBefore); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		findings, err := AuditAccountBalances(ctx, conn, 50)
		if err != nil {
			return err
		}
		if len(findings) > 0 {
			return &BalanceAuditError{Findings: findings}
		}
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := recordChecksums(ctx, conn, migrations); err != nil {
		return err
	}
	return CheckChecksums(ctx, conn, migrations)
}

func checksum(m Migration) string {
	sum := sha256.Sum256([]byte(m.SQL))
	return hex.EncodeToString(sum[:])
}

// recordChecksums notes the checksum of every applied migration not noted yet (the first one
// noted stays: it is the content that was applied).
func recordChecksums(ctx context.Context, conn *pgx.Conn, migrations []Migration) error {
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ChecksumTable+` (
		name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("record migration checksums: %w", err)
	}
	for _, m := range migrations {
		if _, err := conn.Exec(ctx, `INSERT INTO `+ChecksumTable+` (name, sha256) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			m.Name, checksum(m)); err != nil {
			return fmt.Errorf("record migration checksums: %w", err)
		}
	}
	// The service roles check the checksums before they run (as 010 grants on the version table;
	// 010 grants this too when the table already exists, so old and new databases end alike).
	if _, err := conn.Exec(ctx, `DO $$ BEGIN
		IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('dualledger_api', 'dualledger_worker', 'dualledger_readonly')) = 3 THEN
			GRANT SELECT ON `+ChecksumTable+` TO dualledger_api, dualledger_worker, dualledger_readonly;
		END IF; END $$`); err != nil {
		return fmt.Errorf("record migration checksums: %w", err)
	}
	return nil
}

// CheckChecksums refuses a database whose applied migrations differ from the files of this
// binary (a file edited after it was applied: the schema is not what the code expects).
// Databases migrated with plain psql have no checksums and are not checked.
func CheckChecksums(ctx context.Context, conn *pgx.Conn, migrations []Migration) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ChecksumTable).Scan(&exists); err != nil || !exists {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT name, sha256 FROM `+ChecksumTable)
	if err != nil {
		return fmt.Errorf("read migration checksums: %w", err)
	}
	applied := map[string]string{}
	for rows.Next() {
		var name, sum string
		if err := rows.Scan(&name, &sum); err != nil {
			rows.Close()
			return fmt.Errorf("read migration checksums: %w", err)
		}
		applied[name] = sum
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read migration checksums: %w", err)
	}
	for _, m := range migrations {
		if sum, ok := applied[m.Name]; ok && sum != checksum(m) {
			return fmt.Errorf("migration %s was applied with other content than this binary's: the database's schema "+
				"is not the one the code expects. Migrations are immutable once applied; for a development database, "+
				"recreate it (or its data dir)", m.Name)
		}
	}
	return nil
}

// Status lists every migration and whether it is applied.
func Status(ctx context.Context, conn *pgx.Conn, migrations []Migration) ([]MigrationState, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read schema version: %w", err)
	}
	var version int32
	if exists {
		if err := conn.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&version); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("read schema version: %w", err)
		}
	}
	out := make([]MigrationState, len(migrations))
	for i, mig := range migrations {
		out[i] = MigrationState{Name: mig.Name, Applied: int32(i) < version}
	}
	return out, nil
}

// AuditAccountBalances returns one line per account (at most limit) that breaks a rule of migration
// 004: reserved_balance >= 0, available_balance = balance - reserved_balance, available_balance >=
// -overdraft_limit.
func AuditAccountBalances(ctx context.Context, conn *pgx.Conn, limit int) ([]string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('bank_accounts') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("balance audit: %w", err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `
		SELECT format('%s/%s: balance %s, available %s, reserved %s, overdraft_limit %s: %s',
		              ledger_id, id, trim_scale(balance), trim_scale(available_balance), trim_scale(reserved_balance),
		              coalesce(trim_scale(overdraft_limit)::text, 'unlimited'),
		              concat_ws('; ',
		                  CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
		                  CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
		                  CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END))
		  FROM bank_accounts
		 WHERE reserved_balance < 0
		    OR available_balance <> balance - reserved_balance
		    OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)
		 ORDER BY ledger_id, id
		 LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("balance audit: %w", err)
	}
	findings, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("balance audit: %w", err)
	}
	return findings, nil
}

func newMigrator(ctx context.Context, conn *pgx.Conn, migrations []Migration) (*migrate.Migrator, error) {
	m, err := migrate.NewMigratorEx(ctx, conn, VersionTable, &migrate.MigratorOptions{})
	if err != nil {
		return nil, fmt.Errorf("create migrator: %w", err)
	}
	for _, mig := range migrations {
		m.AppendMigration(mig.Name, mig.SQL, "")
	}
	return m, nil
}
