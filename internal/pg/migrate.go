package pg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

// VersionTable records which migrations are applied (tern's format: one row, the count).
const VersionTable = "dualledger_schema_version"

// ChecksumTable records the sha256 of each migration file as it was applied: a file changed
// afterwards is refused (migrations are immutable once applied; changes go into new files).
const ChecksumTable = "dualledger_migration_checksums"

// FunctionChecksumTable records the sha256 of each repeatable file (db/functions) as it was last
// applied: a file whose content differs is applied again by the next `dualledger migrate`.
const FunctionChecksumTable = "dualledger_function_checksums"

// BookkeepingVersion changes whenever Migrate records something new in the database besides what
// the files do (3: dualledger_function_checksums, readable by PUBLIC). pgtest names its template
// database after it as well as after the files, so a cached template from an older runner is not
// reused.
const BookkeepingVersion = 3

// migrateLockKey is tern's own advisory lock key. Migrate holds it for the whole run (checks,
// versioned migrations, repeatable files): advisory locks nest within a session, so tern taking it
// again inside is fine, and an older binary migrating at the same time waits for it too.
const migrateLockKey = int64(9628173550095224)

var (
	migrationName = regexp.MustCompile(`^([0-9]{3})_[a-z0-9_]+\.sql$`)
	functionName  = regexp.MustCompile(`^[a-z0-9_]+\.sql$`)
	checkName     = regexp.MustCompile(`^([0-9]{3}_[a-z0-9_]+)\.(before|after)\.sql$`)
	plainCreate   = regexp.MustCompile(`(?i)\bcreate\s+(function|procedure|trigger|view)\b`)
	hasRevoke     = regexp.MustCompile(`(?i)\brevoke\b`)
)

// functionPrefix starts the Name of a repeatable file, so that status output says what it is.
const functionPrefix = "functions/"

// Migration is one file of db/migrations (versioned: applied once, in number order, never edited
// afterwards) or of db/functions (repeatable: applied after every versioned migration, and again
// whenever its content changes).
type Migration struct {
	Name       string // e.g. "001_ledger_idempotency.sql"; a repeatable file is "functions/<file>.sql"
	SQL        string
	Repeatable bool
	Before     *Check // db/checks/<name>.before.sql, run before the migration; nil if none
	After      *Check // db/checks/<name>.after.sql, run in the migration's transaction; nil if none
}

// Check is a query returning one text row per offending row (db/checks/NNN_name.before.sql or
// .after.sql). Any row stops the migration: before it (nothing of it applied) or after it (its
// transaction rolled back).
type Check struct {
	File  string // e.g. "checks/004_balance_constraints.before.sql"
	SQL   string
	Title string // the "-- check:" line: what the rows are
	Fix   string // the "-- fix:" lines: what the operator does about them
}

// MigrationState is one line of `dualledger migrate status`.
type MigrationState struct {
	Name    string `json:"name"`
	Applied bool   `json:"applied"` // applied and current: false for a pending or changed file
	State   string `json:"state"`   // "applied", "pending", or (repeatable files) "changed"
}

// States of MigrationState.State.
const (
	StateApplied = "applied"
	StatePending = "pending"
	StateChanged = "changed" // a repeatable file whose content differs from the one applied
)

// LoadMigrations reads the db directory's layout from fsys:
//
//   - migrations/NNN_name.sql, numbered without gaps from 000 (versioned);
//   - functions/name.sql, in name order (repeatable, after the versioned ones; optional);
//   - checks/NNN_name.before.sql and .after.sql, attached to their migration (optional).
//
// The SQL is used as written: unlike tern.LoadMigrations it is not a text/template, so the
// files mean exactly what `psql -f` makes of them (scripts/run-migrations.sh).
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	byName := map[string]int{}
	for i, p := range names {
		name := path.Base(p)
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNN_lower_snake.sql", name)
		}
		if want := fmt.Sprintf("%03d", i); m[1] != want {
			return nil, fmt.Errorf("migration file %q: expected number %s (numbers start at 000 without gaps)", name, want)
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		byName[strings.TrimSuffix(name, ".sql")] = len(out)
		out = append(out, Migration{Name: name, SQL: string(body)})
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations found (want migrations/NNN_name.sql)")
	}
	if err := loadChecks(fsys, out, byName); err != nil {
		return nil, err
	}
	fns, err := loadFunctions(fsys)
	if err != nil {
		return nil, err
	}
	return append(out, fns...), nil
}

func loadChecks(fsys fs.FS, migs []Migration, byName map[string]int) error {
	names, err := fs.Glob(fsys, "checks/*.sql")
	if err != nil {
		return fmt.Errorf("list checks: %w", err)
	}
	for _, p := range names {
		name := path.Base(p)
		m := checkName.FindStringSubmatch(name)
		if m == nil {
			return fmt.Errorf("check file %q: name must be NNN_name.before.sql or NNN_name.after.sql", p)
		}
		i, ok := byName[m[1]]
		if !ok {
			return fmt.Errorf("check file %q: there is no migration %s.sql", p, m[1])
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("read check %s: %w", p, err)
		}
		c := parseCheck(p, string(body))
		if m[2] == "before" {
			migs[i].Before = c
			continue
		}
		if strings.Contains(migs[i].SQL, "---- tern: disable-tx ----") {
			return fmt.Errorf("check file %q: %s runs outside a transaction, so an after check could not roll it back", p, migs[i].Name)
		}
		migs[i].After = c
	}
	return nil
}

// parseCheck reads the "-- check: <what the rows are>" line and the "-- fix: <text>" lines (one
// line of the fix each) of a check file; the rest is the query.
func parseCheck(file, body string) *Check {
	c := &Check{File: file, SQL: body}
	var fix []string
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimRight(line, " \t\r")
		switch {
		case strings.HasPrefix(line, "-- check:"):
			c.Title = strings.TrimSpace(strings.TrimPrefix(line, "-- check:"))
		case strings.HasPrefix(line, "-- fix:"):
			fix = append(fix, strings.TrimPrefix(strings.TrimPrefix(line, "-- fix:"), " "))
		}
	}
	c.Fix = strings.Join(fix, "\n")
	if c.Title == "" {
		c.Title = "offending rows"
	}
	return c
}

func loadFunctions(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "functions/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list function files: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, p := range names {
		name := path.Base(p)
		if !functionName.MatchString(name) {
			return nil, fmt.Errorf("function file %q: name must be lower_snake.sql", p)
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("read function file %s: %w", p, err)
		}
		// A repeatable file runs again on a database that has its objects: a plain CREATE fails
		// there, and without its own REVOKE/GRANT a function recreated under a new signature
		// would keep PostgreSQL's default (EXECUTE for PUBLIC) instead of the roles' grants.
		if plainCreate.MatchString(string(body)) {
			return nil, fmt.Errorf("function file %s: use CREATE OR REPLACE (the file is applied again whenever it changes)", p)
		}
		if !hasRevoke.MatchString(string(body)) {
			return nil, fmt.Errorf("function file %s: carry the function's own REVOKE ALL ... FROM PUBLIC and GRANT lines, "+
				"so that its privileges are the same however often it is applied", p)
		}
		out = append(out, Migration{Name: functionPrefix + name, SQL: string(body), Repeatable: true})
	}
	return out, nil
}

// split returns the versioned migrations and the repeatable files; versioned ones come first.
func split(migrations []Migration) (versioned, repeatable []Migration, err error) {
	for i, m := range migrations {
		if !m.Repeatable {
			if len(repeatable) > 0 {
				return nil, nil, fmt.Errorf("migration %s (#%d) comes after a repeatable file: versioned migrations come first", m.Name, i)
			}
			versioned = append(versioned, m)
			continue
		}
		repeatable = append(repeatable, m)
	}
	return versioned, repeatable, nil
}

// Migrate applies, under one advisory lock, every pending versioned migration in order and then
// every repeatable file that is pending or changed (all of them again when a versioned migration
// ran: it may have dropped or replaced what a function file defines). A migration with a before
// check is preceded by it: offending rows stop Migrate before that migration with a *CheckError
// naming them and the fix. An after check runs in the migration's transaction: offending rows roll
// it back, with a *CheckError too. logf (may be nil) is told about each file it applies.
func Migrate(ctx context.Context, conn *pgx.Conn, migrations []Migration, logf func(format string, args ...any)) (err error) {
	return runMigrate(ctx, conn, migrations, logf, true)
}

// MigrateKeepingChanges is Migrate for a command that must see the schema as it is: when the
// migrations and function files are all applied, a function changed by hand since the last
// migrate is left as it is (Migrate would apply its file again), so that the embedded-mode
// `audit`, which migrates before it checks like every command, reports it (function_definitions)
// instead of repairing the evidence away. A pending migration or a changed file is applied as
// Migrate applies it.
func MigrateKeepingChanges(ctx context.Context, conn *pgx.Conn, migrations []Migration, logf func(format string, args ...any)) error {
	return runMigrate(ctx, conn, migrations, logf, false)
}

func runMigrate(ctx context.Context, conn *pgx.Conn, migrations []Migration, logf func(format string, args ...any), repair bool) (err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	versioned, repeatable, err := split(migrations)
	if err != nil {
		return err
	}
	// Nothing to do is known without the lock: every embedded-mode command migrates first, and
	// any login may take an advisory lock, so a session holding this key would otherwise stall
	// every command of the operator (the security review of 2026-12-02), revoking a key included.
	if current, err := upToDate(ctx, conn, versioned, repeatable, repair); err != nil {
		return err
	} else if current {
		return nil
	}
	if err := lockMigrations(ctx, conn, logf); err != nil {
		return err
	}
	defer func() {
		// On a failed transaction the connection is still usable (tern rolled back); a broken
		// connection releases the session lock by closing.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLockKey); uerr != nil && err == nil {
			err = fmt.Errorf("migrate: unlock: %w", uerr)
		}
	}()
	m, err := newMigrator(ctx, conn, versioned)
	if err != nil {
		return err
	}
	m.OnStart = func(_ int32, name, _, _ string) {
		logf("applying %s", name)
	}
	start, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	// The database's record of what it applied is checked before anything more is applied: a
	// binary whose applied migrations differ (an edited or renamed file) would otherwise apply the
	// pending ones on top and refuse only afterwards, leaving a database neither binary made.
	if err := CheckChecksums(ctx, conn, versioned); err != nil {
		return err
	}
	for i := int(start); i < len(versioned); i++ {
		if versioned[i].Before == nil {
			continue
		}
		if err := m.MigrateTo(ctx, int32(i)); err != nil { // tern version i: files [0, i) applied
			return migrateError(err, versioned)
		}
		if err := runBeforeCheck(ctx, conn, versioned[i]); err != nil {
			return err
		}
	}
	if err := m.Migrate(ctx); err != nil {
		return migrateError(err, versioned)
	}
	if err := recordChecksums(ctx, conn, versioned); err != nil {
		return err
	}
	if err := CheckChecksums(ctx, conn, versioned); err != nil {
		return err
	}
	if err := applyRepeatable(ctx, conn, repeatable, int(start) < len(versioned), logf); err != nil {
		return err
	}
	return recordFunctionDigests(ctx, conn, definedByFiles(repeatable))
}

// upToDate reports whether every versioned migration is applied with the checksum of its file,
// and every repeatable file with its own: then Migrate has nothing to do. Read without the lock:
// a migration committing meanwhile is seen as not done yet, and the caller then takes the lock.
func upToDate(ctx context.Context, conn *pgx.Conn, versioned, repeatable []Migration, drift bool) (bool, error) {
	states, err := Status(ctx, conn, append(append([]Migration{}, versioned...), repeatable...))
	if err != nil {
		return false, err
	}
	for _, s := range states {
		if !s.Applied {
			return false, nil
		}
	}
	sums, err := readChecksums(ctx, conn, ChecksumTable)
	if err != nil {
		return false, fmt.Errorf("read migration checksums: %w", err)
	}
	for _, m := range versioned {
		if sums[m.Name] != checksum(m) {
			return false, nil // not recorded yet, or edited: Migrate records or refuses it
		}
	}
	// A function changed by hand since the last migrate: Migrate applies its file again.
	if !drift {
		return true, nil
	}
	drifted, err := driftedFunctions(ctx, conn)
	if err != nil {
		return false, err
	}
	return len(drifted) == 0, nil
}

// migrateLockWait bounds the wait for another session's migration lock.
const migrateLockWait = 5 * time.Minute

// lockMigrations takes the migration lock, waiting for another holder at most migrateLockWait
// and saying who it is (an advisory lock is open to any login: a session that is not migrating
// may hold it to stall the operator, and then must be ended).
func lockMigrations(ctx context.Context, conn *pgx.Conn, logf func(string, ...any)) error {
	deadline := time.Now().Add(migrateLockWait)
	var lastLog time.Time
	for {
		var locked bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrateLockKey).Scan(&locked); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if locked {
			return nil
		}
		holder, err := AdvisoryLockHolder(ctx, conn, migrateLockKey)
		if err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("migrate: waited %s for the migration lock, held by %s. If that session is not a "+
				"migration of yours, end it (SELECT pg_terminate_backend(<pid>) as a superuser) and run the command again",
				migrateLockWait, holder)
		}
		if time.Since(lastLog) >= 10*time.Second {
			logf(WarnPrefix+"waiting for the migration lock, held by %s", holder)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate: lock: %w (held by %s)", ctx.Err(), holder)
		case <-time.After(time.Second):
		}
	}
}

// AdvisoryLockHolder describes the session holding the session-level advisory lock key (a
// bigint key), for messages: "pid 123 (role r, application a)"; "no session" when none does.
func AdvisoryLockHolder(ctx context.Context, q Querier, key int64) (string, error) {
	var holder string
	err := q.QueryRow(ctx, `SELECT coalesce((
		SELECT format('pid %s (role %s, application %s)', a.pid, coalesce(a.usename::text, '?'),
		              coalesce(nullif(a.application_name, ''), '?'))
		  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		 WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()
		   AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
		 LIMIT 1), 'no session (it was released just now)')`, key).Scan(&holder)
	return holder, err
}

// migrateError turns the error an after check raised inside tern's transaction into a *CheckError.
func migrateError(err error, versioned []Migration) error {
	var me migrate.MigrationPgError
	if errors.As(err, &me) && me.PgError != nil && me.Code == checkSQLState {
		for _, v := range versioned {
			if v.Name == me.MigrationName && v.After != nil {
				return &CheckError{Migration: v.Name, Phase: "after", Check: v.After, Findings: strings.Split(me.Detail, "\n"),
					Total: checkTotal(me.Message)}
			}
		}
	}
	return fmt.Errorf("migrate: %w", err)
}

func checksum(m Migration) string {
	sum := sha256.Sum256([]byte(m.SQL))
	return hex.EncodeToString(sum[:])
}

// grantChecksumRead lets the service roles read table: they check the schema before they run (as
// 010 grants on the version table; 010 grants the migration checksums too when that table already
// exists, so old and new databases end alike).
func grantChecksumRead(ctx context.Context, conn *pgx.Conn, table string) error {
	_, err := conn.Exec(ctx, `DO $$ BEGIN
		IF (SELECT count(*) FROM pg_roles WHERE rolname IN ('dualledger_api', 'dualledger_worker', 'dualledger_readonly')) = 3 THEN
			GRANT SELECT ON `+table+` TO dualledger_api, dualledger_worker, dualledger_readonly;
		END IF; END $$`)
	return err
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
	if err := grantChecksumRead(ctx, conn, ChecksumTable); err != nil {
		return fmt.Errorf("record migration checksums: %w", err)
	}
	return nil
}

// CheckChecksums refuses a database whose applied versioned migrations differ from the files of
// this binary (a file edited after it was applied: the schema is not what the code expects).
// Repeatable files may change (Status reports them as changed). Databases migrated with plain
// psql have no checksums and are not checked.
func CheckChecksums(ctx context.Context, conn *pgx.Conn, migrations []Migration) error {
	applied, err := readChecksums(ctx, conn, ChecksumTable)
	if err != nil {
		return fmt.Errorf("read migration checksums: %w", err)
	}
	byNumber := map[string]string{} // "022" -> this binary's file of migration 022
	for _, m := range migrations {
		if m.Repeatable {
			continue
		}
		byNumber[migrationNumber(m.Name)] = m.Name
		if sum, ok := applied[m.Name]; ok && sum != checksum(m) {
			return fmt.Errorf("migration %s was applied with other content than this binary's: the database's schema "+
				"is not the one the code expects. Migrations are immutable once applied (db/migrations.sum); for a "+
				"development database, recreate it (or its data dir)", m.Name)
		}
	}
	// A migration is named by its number: a file renamed (or replaced) under the same number
	// would pass the check above as a new name, and be taken as applied without ever running.
	for name := range applied {
		if ours, ok := byNumber[migrationNumber(name)]; ok && ours != name {
			return fmt.Errorf("the database applied migration %s as %s, but this binary's migration %s is %s: a migration "+
				"was renamed or replaced after it was applied, and the schema is not the one the code expects. Migrations "+
				"are immutable once applied (db/migrations.sum); for a development database, recreate it (or its data dir)",
				migrationNumber(name), name, migrationNumber(name), ours)
		}
	}
	return nil
}

// migrationNumber is the version part of a migration's file name ("022" of
// "022_unlimited_accounts_index.sql").
func migrationNumber(name string) string {
	num, _, _ := strings.Cut(name, "_")
	return num
}

// readChecksums returns name -> sha256 of table, empty when the table does not exist.
func readChecksums(ctx context.Context, conn *pgx.Conn, table string) (map[string]string, error) {
	applied := map[string]string{}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil || !exists {
		return applied, err
	}
	rows, err := conn.Query(ctx, `SELECT name, sha256 FROM `+table)
	if err != nil {
		return nil, err
	}
	var name, sum string
	_, err = pgx.ForEachRow(rows, []any{&name, &sum}, func() error {
		applied[name] = sum
		return nil
	})
	return applied, err
}

// Status lists every migration and repeatable file: applied, pending, or (repeatable) changed.
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
	var fnSums map[string]string
	out := make([]MigrationState, len(migrations))
	n := int32(0) // index among the versioned migrations
	for i, mig := range migrations {
		state := StatePending
		switch {
		case !mig.Repeatable:
			if n < version {
				state = StateApplied
			}
			n++
		default:
			if fnSums == nil {
				var err error
				if fnSums, err = readChecksums(ctx, conn, FunctionChecksumTable); err != nil {
					return nil, fmt.Errorf("read function checksums: %w", err)
				}
			}
			if sum, ok := fnSums[mig.Name]; ok {
				state = StateChanged
				if sum == checksum(mig) {
					state = StateApplied
				}
			}
		}
		out[i] = MigrationState{Name: mig.Name, Applied: state == StateApplied, State: state}
	}
	return out, nil
}

func newMigrator(ctx context.Context, conn *pgx.Conn, migrations []Migration) (*migrate.Migrator, error) {
	m, err := migrate.NewMigratorEx(ctx, conn, VersionTable, &migrate.MigratorOptions{})
	if err != nil {
		return nil, fmt.Errorf("create migrator: %w", err)
	}
	for _, mig := range migrations {
		up := mig.SQL
		if mig.After != nil {
			// In the migration's own transaction: offending rows roll the migration back.
			up += "\n;\n" + AfterCheckSQL(mig.Name, mig.After)
		}
		m.AppendMigration(mig.Name, up, "")
	}
	return m, nil
}
