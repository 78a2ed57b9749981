package pg_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/db"
	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

// dbFiles is db.FS() with extra files added or replaced (name relative to db/).
func dbFiles(t *testing.T, extra map[string]string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(db.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := fs.ReadFile(db.FS(), p)
		out[p] = &fstest.MapFile{Data: b, Mode: 0o644}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range extra {
		out[name] = &fstest.MapFile{Data: []byte(body), Mode: 0o644}
	}
	return out
}

func load(t *testing.T, extra map[string]string) []pg.Migration {
	t.Helper()
	migs, err := pg.LoadMigrations(dbFiles(t, extra))
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

// migrateLogged runs pg.Migrate and returns the files it applied.
func migrateLogged(t *testing.T, conn *pgx.Conn, migs []pg.Migration) ([]string, error) {
	t.Helper()
	var applied []string
	err := pg.Migrate(context.Background(), conn, migs, func(format string, args ...any) {
		if format == "applying %s" {
			applied = append(applied, args[0].(string))
		}
	})
	return applied, err
}

func stateOf(t *testing.T, conn *pgx.Conn, migs []pg.Migration, name string) string {
	t.Helper()
	states, err := pg.Status(context.Background(), conn, migs)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Name == name {
			if s.Applied != (s.State == pg.StateApplied) {
				t.Fatalf("%s: applied=%v state=%s", s.Name, s.Applied, s.State)
			}
			return s.State
		}
	}
	t.Fatalf("%s not in the status", name)
	return ""
}

// answerFile sorts after the real function files of db/functions, which every run applies too.
const answerFile = "functions/zz_dltest_answer.sql"

// answer is a repeatable file defining dltest_answer() (or, with signature, dltest_answer(int)),
// callable by dualledger_api only.
func answer(body string, signature bool) string {
	if signature {
		return `DROP FUNCTION IF EXISTS dltest_answer();
CREATE OR REPLACE FUNCTION dltest_answer(p integer) RETURNS integer LANGUAGE sql AS $$ ` + body + ` $$;
REVOKE ALL ON FUNCTION dltest_answer(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dltest_answer(integer) TO dualledger_api;
`
	}
	return `CREATE OR REPLACE FUNCTION dltest_answer() RETURNS integer LANGUAGE sql AS $$ ` + body + ` $$;
REVOKE ALL ON FUNCTION dltest_answer() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dltest_answer() TO dualledger_api;
`
}

// TestRepeatableFunctions: a file of db/functions is applied after the migrations, not again while
// it is unchanged, again once edited (status "changed" until then, as the service roles see it
// too), and its privileges are its own lines' whatever happened before, a signature change included.
func TestRepeatableFunctions(t *testing.T) {
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)

	migs := load(t, map[string]string{answerFile: answer("SELECT 1", false)})
	if last := migs[len(migs)-1]; last.Name != answerFile || !last.Repeatable {
		t.Fatalf("last file %s repeatable=%v", last.Name, last.Repeatable)
	}
	if s := stateOf(t, conn, migs, answerFile); s != pg.StatePending {
		t.Fatalf("before the first migrate: %s", s)
	}
	applied, err := migrateLogged(t, conn, migs)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(migs); len(applied) != want || applied[10] != "010_role_split.sql" || applied[want-1] != answerFile {
		t.Fatalf("first migrate applied %v", applied)
	}
	var got int
	if err := conn.QueryRow(ctx, `SELECT dltest_answer()`).Scan(&got); err != nil || got != 1 {
		t.Fatalf("dltest_answer() = %d %v", got, err)
	}
	var xmin string
	if err := conn.QueryRow(ctx, `SELECT xmin::text FROM pg_proc WHERE proname = 'dltest_answer'`).Scan(&xmin); err != nil {
		t.Fatal(err)
	}

	// Unchanged: nothing applied, the function not even replaced.
	if applied, err := migrateLogged(t, conn, migs); err != nil || len(applied) != 0 {
		t.Fatalf("second migrate: %v %v", applied, err)
	}
	var xmin2 string
	if err := conn.QueryRow(ctx, `SELECT xmin::text FROM pg_proc WHERE proname = 'dltest_answer'`).Scan(&xmin2); err != nil || xmin2 != xmin {
		t.Fatalf("the function was replaced by a no-op migrate (xmin %s -> %s, %v)", xmin, xmin2, err)
	}

	// Edited: "changed" for the owner and for a service role (the service commands' schema check).
	migs = load(t, map[string]string{answerFile: answer("SELECT 2", false)})
	if s := stateOf(t, conn, migs, answerFile); s != pg.StateChanged {
		t.Fatalf("after an edit: %s", s)
	}
	worker, err := pgx.Connect(ctx, d.LoginRole(t, "dualledger_worker"))
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close(ctx)
	if _, err := worker.Exec(ctx, `SET ROLE dualledger_worker`); err != nil {
		t.Fatal(err)
	}
	if s := stateOf(t, worker, migs, answerFile); s != pg.StateChanged {
		t.Fatalf("after an edit, as dualledger_worker: %s", s)
	}
	if applied, err := migrateLogged(t, conn, migs); err != nil || !slices.Equal(applied, []string{answerFile}) {
		t.Fatalf("migrate after the edit: %v %v", applied, err)
	}
	if err := conn.QueryRow(ctx, `SELECT dltest_answer()`).Scan(&got); err != nil || got != 2 {
		t.Fatalf("dltest_answer() after the edit = %d %v", got, err)
	}
	if s := stateOf(t, worker, migs, answerFile); s != pg.StateApplied {
		t.Fatalf("after migrate, as dualledger_worker: %s", s)
	}

	// A privilege changed by hand converges back when the file is applied again (any edit).
	if _, err := conn.Exec(ctx, `GRANT EXECUTE ON FUNCTION dltest_answer() TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	migs = load(t, map[string]string{answerFile: answer("SELECT 3", false)})
	if _, err := migrateLogged(t, conn, migs); err != nil {
		t.Fatal(err)
	}
	checkGrants := func(sig, call string, want int) {
		t.Helper()
		var api, readonly bool
		if err := conn.QueryRow(ctx, `SELECT has_function_privilege('dualledger_api', $1, 'EXECUTE'),
			has_function_privilege('dualledger_readonly', $1, 'EXECUTE')`, sig).Scan(&api, &readonly); err != nil || !api || readonly {
			t.Fatalf("%s: api may execute %v, readonly %v (%v)", sig, api, readonly, err)
		}
		if err := d.PoolAs(t, "dualledger_api").QueryRow(ctx, call).Scan(&got); err != nil || got != want {
			t.Fatalf("as dualledger_api: %s = %d %v", call, got, err)
		}
		if _, err := d.PoolAs(t, "dualledger_readonly").Exec(ctx, call); sqlState(err) != "42501" {
			t.Fatalf("as dualledger_readonly: %s: %v, want 42501", call, err)
		}
	}
	checkGrants("dltest_answer()", "SELECT dltest_answer()", 3)

	// A signature change: the old function is gone, the new one has the file's privileges.
	migs = load(t, map[string]string{answerFile: answer("SELECT p + 1", true)})
	if applied, err := migrateLogged(t, conn, migs); err != nil || !slices.Equal(applied, []string{answerFile}) {
		t.Fatalf("migrate after the signature change: %v %v", applied, err)
	}
	var old bool
	if err := conn.QueryRow(ctx, `SELECT to_regprocedure('dltest_answer()') IS NOT NULL`).Scan(&old); err != nil || old {
		t.Fatalf("the old signature exists: %v %v", old, err)
	}
	checkGrants("dltest_answer(integer)", "SELECT dltest_answer(41)", 42)
}

// items names the test migration of checkFiles: the number after the last of db/migrations, so
// that these tests do not depend on how many migrations there are.
var items = func() string {
	names, err := fs.Glob(db.FS(), "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%03d_dltest_items", len(names))
}()

// checkFiles: migration items inserts items (a negative one when dltest.bad_item is on); its before
// check returns dltest.legacy_rows rows, its after check the negative items.
var checkFiles = map[string]string{
	"migrations/" + items + ".sql": `CREATE TABLE IF NOT EXISTS dltest_items (x integer);
INSERT INTO dltest_items VALUES (1);
INSERT INTO dltest_items SELECT -1 WHERE current_setting('dltest.bad_item', true) = 'on';
`,
	"checks/" + items + ".before.sql": `-- check: legacy rows
-- fix: convert the legacy rows;
-- fix: then try again.
SELECT 'legacy row ' || g FROM generate_series(1, coalesce(nullif(current_setting('dltest.legacy_rows', true), ''), '0')::integer) g
 ORDER BY g;
`,
	"checks/" + items + ".after.sql": `-- check: negative items
-- fix: delete the negative items
SELECT 'item ' || x FROM dltest_items WHERE x < 0 ORDER BY x -- a comment on the last line
`,
	answerFile: answer("SELECT 1", false),
}

// TestMigrationChecks: a before check's rows stop the migration before it (the first 50 listed
// with the count and the fix); an after check's rows roll the migration back; without rows the
// migration and the repeatable files apply.
func TestMigrationChecks(t *testing.T) {
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	migs := load(t, checkFiles)
	if m := migs[len(migs)-1-repeatables(migs)]; m.Name != items+".sql" || m.Before == nil || m.After == nil || m.Before.Title != "legacy rows" ||
		m.Before.Fix != "convert the legacy rows;\nthen try again." {
		t.Fatalf("%s: %+v", items, m)
	}

	// The settings are the connection's (tern runs RESET ALL after each migration).
	_, err := migrateLogged(t, connWith(t, d, "dltest.legacy_rows", "60"), migs)
	var ce *pg.CheckError
	if !errors.As(err, &ce) || ce.Phase != "before" || ce.Migration != items+".sql" || ce.Total != 60 || len(ce.Findings) != 50 ||
		ce.Findings[0] != "legacy row 1" || !strings.Contains(err.Error(), "... and 10 more") ||
		!strings.Contains(err.Error(), "fix: convert the legacy rows;\nthen try again.") {
		t.Fatalf("before check: %v", err)
	}
	if s := stateOf(t, conn, migs, "010_role_split.sql"); s != pg.StateApplied {
		t.Fatalf("010 %s", s)
	}
	if s := stateOf(t, conn, migs, items+".sql"); s != pg.StatePending {
		t.Fatalf("%s %s after the failed before check", items, s)
	}

	_, err = migrateLogged(t, connWith(t, d, "dltest.bad_item", "on"), migs)
	if !errors.As(err, &ce) || ce.Phase != "after" || ce.Total != 1 || !slices.Equal(ce.Findings, []string{"item -1"}) ||
		!strings.Contains(err.Error(), "fix: delete the negative items") {
		t.Fatalf("after check: %v", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('dltest_items') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("%s was not rolled back: %v %v", items, exists, err)
	}
	if s := stateOf(t, conn, migs, items+".sql"); s != pg.StatePending {
		t.Fatalf("%s %s after the failed after check", items, s)
	}

	if applied, err := migrateLogged(t, conn, migs); err != nil || !slices.Equal(applied, append([]string{items + ".sql"}, repeatableNames(migs)...)) {
		t.Fatalf("migrate without offending rows: %v %v", applied, err)
	}
	if applied, err := migrateLogged(t, conn, migs); err != nil || len(applied) != 0 {
		t.Fatalf("migrate again: %v %v", applied, err)
	}
}

// connWith connects to d with one setting in the startup packet (its default for the session).
func connWith(t *testing.T, d *pgtest.DB, name, value string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(d.ConnStr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams[name] = value
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestPsqlChecksAndFunctions: scripts/run-migrations.sh runs the same checks (exit status 1, the
// rows and the fix) and applies the function files after the migrations; `dualledger migrate`
// accepts the result.
func TestPsqlChecksAndFunctions(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not installed")
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, dbFiles(t, checkFiles)); err != nil {
		t.Fatal(err)
	}
	d := pgtest.NewEmpty(t)
	run := func(pgoptions string) (string, int) {
		t.Helper()
		cmd := exec.Command("../../scripts/run-migrations.sh", d.ConnStr)
		cmd.Env = append(os.Environ(), "DUALLEDGER_DB_DIR="+dir, "PGOPTIONS="+pgoptions)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run("-c dltest.bad_item=on")
	if code != 1 || !strings.Contains(out, "check after "+items+".sql failed (db/checks/"+items+".after.sql): 1 row(s), negative items:\n  item -1\nfix: delete the negative items") {
		t.Fatalf("after check with psql: exit %d\n%s", code, out)
	}
	ctx := context.Background()
	conn := d.Conn(t)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('dltest_items') IS NOT NULL OR to_regprocedure('dltest_answer()') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("%s or the function file applied after the failed check: %v %v", items, exists, err)
	}
	out, code = run("-c dltest.legacy_rows=3")
	if code != 1 || !strings.Contains(out, "check before "+items+".sql failed (db/checks/"+items+".before.sql): 3 row(s), legacy rows:\n  legacy row 1\n  legacy row 2\n  legacy row 3\nfix: convert the legacy rows;\nthen try again.") {
		t.Fatalf("before check with psql: exit %d\n%s", code, out)
	}
	for i := 0; i < 2; i++ {
		if out, code = run(""); code != 0 || !strings.Contains(out, "applying "+answerFile+"\nall migrations applied") {
			t.Fatalf("run-migrations.sh (run %d): exit %d\n%s", i+1, code, out)
		}
	}
	migs := load(t, checkFiles)
	if s := stateOf(t, conn, migs, answerFile); s != pg.StatePending {
		t.Fatalf("function file after psql, before migrate: %s", s)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("migrate after psql: %v", err)
	}
	var got int
	if err := conn.QueryRow(ctx, `SELECT dltest_answer()`).Scan(&got); err != nil || got != 1 {
		t.Fatalf("dltest_answer() = %d %v", got, err)
	}
}

// TestLoadMigrationsRefuses: function files that would not converge when applied again, and check
// files that name no migration, are refused by name.
func TestLoadMigrationsRefuses(t *testing.T) {
	for name, c := range map[string]struct{ file, body, want string }{
		"plain create": {"functions/f.sql", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'; REVOKE ALL ON FUNCTION f() FROM PUBLIC;", "CREATE OR REPLACE"},
		"no revoke":    {"functions/f.sql", "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';", "REVOKE"},
		"bad name":     {"functions/F-1.sql", "", "lower_snake"},
		"orphan check": {"checks/099_nothing.before.sql", "SELECT 'x' WHERE false", "no migration 099_nothing.sql"},
		"check name":   {"checks/004_balance_constraints.during.sql", "SELECT 'x' WHERE false", "NNN_name.before.sql"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pg.LoadMigrations(dbFiles(t, map[string]string{c.file: c.body}))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: %v, want an error naming %q", c.file, err, c.want)
			}
		})
	}
	// The real directory loads, with the before checks of 004, 007 and 011 and nothing else special-cased.
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migs {
		if (m.Before != nil) != (m.Name == "004_balance_constraints.sql" || m.Name == "007_outbox_operations.sql" || m.Name == "011_ledger_keys.sql") || m.After != nil {
			t.Errorf("%s: before %v after %v", m.Name, m.Before != nil, m.After != nil)
		}
	}
}

// sqlState returns the SQLSTATE of err, or "" if it is not a PostgreSQL error.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestConcurrentMigrate: two migrators at once (two replicas starting, say) apply each migration
// and each function file exactly once between them: the advisory lock covers the whole run.
func TestConcurrentMigrate(t *testing.T) {
	d := pgtest.NewEmpty(t)
	migs := load(t, map[string]string{answerFile: answer("SELECT 1", false)})
	conns := []*pgx.Conn{d.Conn(t), d.Conn(t)}
	var (
		mu      sync.Mutex
		applied []string
		wg      sync.WaitGroup
		errs    = make([]error, len(conns))
	)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pg.Migrate(context.Background(), c, migs, func(format string, args ...any) {
				if format != "applying %s" {
					return // "waiting for the migration lock, held by ..."
				}
				mu.Lock()
				defer mu.Unlock()
				applied = append(applied, args[0].(string))
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrator %d: %v", i, err)
		}
	}
	slices.Sort(applied)
	if len(applied) != len(migs) || len(slices.Compact(slices.Clone(applied))) != len(migs) {
		t.Fatalf("applied %v, want each of the %d files once", applied, len(migs))
	}
}

// repeatableNames lists the function files of migs, in the order they are applied.
func repeatableNames(migs []pg.Migration) []string {
	var out []string
	for _, m := range migs {
		if m.Repeatable {
			out = append(out, m.Name)
		}
	}
	return out
}

func repeatables(migs []pg.Migration) int { return len(repeatableNames(migs)) }

// TestMigrateCurrentNeedsNoLock: on a current schema Migrate does not wait for the migration lock,
// which any login may take (an advisory lock): a session holding it once stalled every command of
// the operator, since each migrates first (the security review of 2026-12-02). The holder is named.
func TestMigrateCurrentNeedsNoLock(t *testing.T) {
	d := pgtest.NewEmpty(t)
	ctx := context.Background()
	migs := load(t, nil)
	if err := pg.Migrate(ctx, d.Conn(t), migs, nil); err != nil {
		t.Fatal(err)
	}
	squatter := d.Conn(t)
	if _, err := squatter.Exec(ctx, "SET application_name = 'squatter'"); err != nil {
		t.Fatal(err)
	}
	if _, err := squatter.Exec(ctx, "SELECT pg_advisory_lock(9628173550095224)"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	other := d.Conn(t)
	if err := pg.Migrate(cctx, other, migs, nil); err != nil {
		t.Fatalf("a current schema waited for the lock: %v", err)
	}
	holder, err := pg.AdvisoryLockHolder(ctx, other, 9628173550095224)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(holder, "application squatter") {
		t.Errorf("holder %q", holder)
	}
	// With something to apply, it waits, saying for whom, and gives up when its context ends.
	more := load(t, map[string]string{answerFile: answer("SELECT 1", false)})
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	var logged []string
	err = pg.Migrate(short, other, more, func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) })
	if err == nil || !strings.Contains(err.Error(), "application squatter") {
		t.Errorf("pending migration under a held lock: %v", err)
	}
	if len(logged) == 0 || !strings.Contains(logged[0], "waiting for the migration lock, held by pid") {
		t.Errorf("logged %q", logged)
	}
}

// TestReapplyRestoresGrants: a function file applied again leaves its functions with exactly the
// privileges the file grants. "REVOKE ALL ... FROM PUBLIC" alone left a grant to a named role in
// place: the security review of 2026-12-02 granted EXECUTE on outbox_requeue to dualledger_api,
// forced a re-apply, and the grant survived it.
func TestReapplyRestoresGrants(t *testing.T) {
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	migs := load(t, nil)
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatal(err)
	}
	privileges := func() string {
		var s string
		if err := conn.QueryRow(ctx, `SELECT string_agg(p.oid::regprocedure::text || ' ' || r.rolname, ', ' ORDER BY 1)
			FROM pg_proc p CROSS JOIN pg_roles r
			WHERE p.proname LIKE 'outbox\_%' AND p.pronamespace = 'public'::regnamespace
			  AND r.rolname IN ('dualledger_api', 'dualledger_worker', 'dualledger_readonly')
			  AND has_function_privilege(r.oid, p.oid, 'EXECUTE')`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	want := privileges()
	for _, sql := range []string{
		`GRANT EXECUTE ON FUNCTION outbox_requeue(text, text, bigint, text, boolean, text) TO dualledger_api`,
		`GRANT EXECUTE ON FUNCTION outbox_claim(text, text, text, interval, integer) TO dualledger_readonly WITH GRANT OPTION`,
		`UPDATE ` + pg.FunctionChecksumTable + ` SET sha256 = 'forced' WHERE name = 'functions/outbox.sql'`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if privileges() == want {
		t.Fatal("the grants made by hand did not take")
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatal(err)
	}
	if got := privileges(); got != want {
		t.Errorf("after the re-apply:\n got %s\nwant %s", got, want)
	}
}

// TestMigrateAppliesChangedFunctionAgain: a function changed by hand since the last migrate (its
// body here) makes the schema not current, and migrate applies its file again, even though the
// file's checksum is the one recorded; the digests then match again.
func TestMigrateAppliesChangedFunctionAgain(t *testing.T) {
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	migs := load(t, nil)
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatal(err)
	}
	body := func() string {
		var s string
		if err := conn.QueryRow(ctx, `SELECT pg_get_functiondef('dl_acting_as_service()'::regprocedure)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	want := body()
	for _, sql := range []string{
		`CREATE OR REPLACE FUNCTION dl_acting_as_service() RETURNS boolean LANGUAGE sql STABLE RETURN false`,
		`CREATE FUNCTION backdoor() RETURNS void LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var logged []string
	if err := pg.Migrate(ctx, conn, migs, func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) }); err != nil {
		t.Fatal(err)
	}
	if got := body(); got != want {
		t.Errorf("the changed function was not restored:\n%s", got)
	}
	if !slices.ContainsFunc(logged, func(s string) bool {
		return strings.Contains(s, "warning: dl_acting_as_service changed since the last migrate (by hand: find out who); applying functions/operator_acts.sql again")
	}) {
		t.Errorf("logged %q", logged)
	}
	// The function made by hand is not taken as the new baseline: it stays the one difference.
	// And the digests do not depend on the session (a SQL-standard body's timestamptz constants
	// print in its TimeZone): a client in another zone sees no drift.
	for _, tz := range []string{"UTC", "Asia/Tokyo", "America/St_Johns"} {
		var drift []string
		if _, err := conn.Exec(ctx, `SELECT set_config('TimeZone', $1, false)`, tz); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(coalesce(c.signature, d.signature) ORDER BY 1), '{}')
			FROM dl_function_digests() c
			FULL JOIN dualledger_function_digests d USING (signature) WHERE c.digest IS DISTINCT FROM d.digest`).Scan(&drift); err != nil ||
			!slices.Equal(drift, []string{"public.backdoor()"}) {
			t.Errorf("after migrate, TimeZone %s: functions that differ from the record %q, %v", tz, drift, err)
		}
	}
}

// TestMigrateRefusesChangedHistoryFirst: a binary whose applied migrations differ from what the
// database recorded (a file renamed under its number, or edited) is refused before anything more
// is applied. A renamed file once passed as a new name: the database took it for applied without
// running it, and an upgraded database differed from a fresh one; an edited one was refused only
// after the pending migrations had been applied on top (the schema review of 2026-12-02).
func TestMigrateRefusesChangedHistoryFirst(t *testing.T) {
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	if err := pg.Migrate(ctx, conn, load(t, nil), nil); err != nil {
		t.Fatal(err)
	}
	pending := map[string]string{"migrations/" + items + ".sql": "CREATE TABLE dltest_items (x integer);\n"}
	last := len(load(t, nil)) - 1 - repeatables(load(t, nil)) // the last applied migration
	for name, change := range map[string]func(*pg.Migration){
		"renamed": func(m *pg.Migration) { m.Name = strings.Replace(m.Name, "_", "_renamed_", 1) },
		"edited":  func(m *pg.Migration) { m.SQL += "\n-- edited\n" },
	} {
		migs := load(t, pending)
		change(&migs[last])
		_, err := migrateLogged(t, conn, migs)
		want := "renamed or replaced"
		if name == "edited" {
			want = "applied with other content"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass('dltest_items') IS NOT NULL`).Scan(&exists); err != nil || exists {
			t.Errorf("%s: the pending migration was applied before the refusal: %v %v", name, exists, err)
		}
	}
	// The files as they were apply the pending one.
	if applied, err := migrateLogged(t, conn, load(t, pending)); err != nil || !slices.Contains(applied, items+".sql") {
		t.Fatalf("migrate the unchanged files: %v %v", applied, err)
	}
}

// TestMigrateKeepingChangesLeavesEvidence: the embedded-mode audit migrates first, as every
// command does; with MigrateKeepingChanges a function changed by hand stays as it is, so that
// the audit reports it (it once applied the file again first: `audit` said ok and the evidence
// the runbook keeps was gone). Migrate then repairs it.
func TestMigrateKeepingChangesLeavesEvidence(t *testing.T) {
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	migs := load(t, nil)
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `GRANT EXECUTE ON FUNCTION outbox_requeue(text, text, bigint, text, boolean, text) TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	drift := func() []string {
		t.Helper()
		names, err := pg.DriftedFunctions(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	if err := pg.MigrateKeepingChanges(ctx, conn, migs, nil); err != nil {
		t.Fatal(err)
	}
	if got := drift(); !slices.Equal(got, []string{"outbox_requeue"}) {
		t.Fatalf("after MigrateKeepingChanges: %q, want the changed function left for the audit", got)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatal(err)
	}
	if got := drift(); len(got) != 0 {
		t.Errorf("after Migrate: %q, want none", got)
	}
}
