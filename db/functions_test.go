package db_test

import (
	"context"
	"io/fs"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"dualledger/db"
	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

// withFunction is db.FS() plus one repeatable file.
func withFunction(t *testing.T, name, body string) []pg.Migration {
	t.Helper()
	files := fstest.MapFS{}
	err := fs.WalkDir(db.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := fs.ReadFile(db.FS(), p)
		files[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	files["functions/"+name] = &fstest.MapFile{Data: []byte(body)}
	migs, err := pg.LoadMigrations(files)
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

// TestUpgradeEqualsFreshWithFunctions: the old database of TestUpgradeEqualsFresh, upgraded with
// a function file, then with that file edited to a new signature and new grants, ends with exactly
// the schema, function bodies and privileges of a new database migrated with the final file only,
// and again after every file is applied once more with plain SQL (scripts/run-migrations.sh).
// This is the guarantee a function moved into db/functions relies on.
func TestUpgradeEqualsFreshWithFunctions(t *testing.T) {
	ctx := context.Background()
	v1 := withFunction(t, "dltest_fn.sql", `CREATE OR REPLACE FUNCTION dltest_fn(p text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT p $$;
REVOKE ALL ON FUNCTION dltest_fn(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dltest_fn(text) TO dualledger_api, dualledger_readonly;
`)
	v2 := withFunction(t, "dltest_fn.sql", `DROP FUNCTION IF EXISTS dltest_fn(text);
CREATE OR REPLACE FUNCTION dltest_fn(p text, q integer) RETURNS text LANGUAGE sql STABLE AS $$ SELECT repeat(p, q) $$;
REVOKE ALL ON FUNCTION dltest_fn(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dltest_fn(text, integer) TO dualledger_api;
`)
	_, conn, _ := oldState(t, false)
	if err := pg.Migrate(ctx, conn, v1, nil); err != nil {
		t.Fatalf("upgrade with the function file: %v", err)
	}
	if err := pg.Migrate(ctx, conn, v2, nil); err != nil {
		t.Fatalf("migrate with the edited function file: %v", err)
	}
	fresh := pgtest.NewEmpty(t)
	freshConn := fresh.Conn(t)
	if err := pg.Migrate(ctx, freshConn, v2, nil); err != nil {
		t.Fatalf("fresh: %v", err)
	}
	compare := func(when string) {
		t.Helper()
		if d := diff(aclDump(t, conn), aclDump(t, freshConn)); len(d) > 0 {
			t.Errorf("%s: privileges of the upgraded database differ from a new one's:\n%s", when, strings.Join(d, "\n"))
		}
		if d := diff(schemaDump(t, conn), schemaDump(t, freshConn)); len(d) > 0 {
			t.Errorf("%s: schema or function bodies of the upgraded database differ from a new one's:\n%s", when, strings.Join(d, "\n"))
		}
	}
	compare("after the function files ran")
	if got := strings1(t, conn, `SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname = 'dltest_fn'`); len(got) != 1 || got[0] != "dltest_fn(text,integer)" {
		t.Fatalf("dltest_fn after the signature change: %v", got)
	}
	for _, m := range v2 {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s again: %v", m.Name, err)
		}
	}
	compare("after every file again")
}

// createFunction finds the functions a file (re)defines.
var createFunction = regexp.MustCompile(`(?i)CREATE\s+OR\s+REPLACE\s+FUNCTION\s+(?:public\.)?([a-z_][a-z0-9_]*)\s*\(`)

// TestEveryFunctionInAFile: every function of a migrated database has its body in a file of
// db/functions, so that a function is changed by editing its file (the migrations that first
// created it are history). A function a new migration creates must have its file too.
func TestEveryFunctionInAFile(t *testing.T) {
	inFiles := map[string]bool{}
	entries, err := fs.ReadDir(db.FS(), "functions")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, err := fs.ReadFile(db.FS(), "functions/"+e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range createFunction.FindAllStringSubmatch(string(b), -1) {
			inFiles[m[1]] = true
		}
	}
	d := pgtest.New(t)
	rows, err := d.Pool.Query(context.Background(), `SELECT DISTINCT p.proname FROM pg_proc p
		JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 50 {
		t.Fatalf("only %d functions in the migrated database: is it migrated?", len(names))
	}
	for _, n := range names {
		if !inFiles[n] {
			t.Errorf("function %s is defined only in a migration: give it a file in db/functions (db/functions/README.md)", n)
		}
	}
}
