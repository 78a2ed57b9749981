package db_test

// The database roles of migration 010 (docs/security.md): as each of dualledger_api,
// dualledger_worker and dualledger_readonly (a plain login member that SETs ROLE, as in
// production), every direct write on every table is refused; the grants are exactly the documented
// ones; a forged FINALIZED is refused for every role and even for the owner; and a database that
// ran the old dualledger_app grants (006/007) ends, once upgraded, with the same privileges and
// schema as a new one.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/db"
	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

var serviceRoles = []string{"dualledger_api", "dualledger_worker", "dualledger_readonly"}

// querier is a *pgx.Conn or a *pgxpool.Pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func strings1(t *testing.T, q querier, sql string, args ...any) []string {
	t.Helper()
	rows, err := q.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// wantSelect is what each role may read, wantExecute the SECURITY DEFINER functions it may call.
// Everything else is refused; none may INSERT, UPDATE, DELETE or TRUNCATE anything.
var (
	wantSelect = map[string][]string{
		"dualledger_api": {"api_keys", "bank_accounts", "banks", "currencies", "dual_ledger_outbox",
			"dualledger_function_checksums", "dualledger_function_digests", "dualledger_migration_checksums", "dualledger_schema_version", "ledger_entries",
			"ledger_hold_events", "ledger_holds", "ledgers", "operator_actions", "operator_actions_head",
			"reconciliation_discrepancies", "reconciliation_runs"},
		"dualledger_worker": {"banks", "dual_ledger_outbox", "dualledger_function_checksums", "dualledger_function_digests", "dualledger_migration_checksums",
			"dualledger_schema_version"},
		"dualledger_readonly": {"bank_accounts", "banks", "currencies", "dual_ledger_outbox", "dual_ledger_outbox_attempts",
			"dualledger_function_checksums", "dualledger_function_digests", "dualledger_migration_checksums", "dualledger_schema_version",
			"ledger_backfill_batches", "ledger_backfill_checkpoints", "ledger_entries", "ledger_hold_events", "ledger_holds",
			"ledgers", "operator_actions", "operator_actions_head", "reconciliation_discrepancies", "reconciliation_runs",
			"reconciliation_scb_entries"},
	}
	wantExecute = map[string][]string{
		"dualledger_api": {"capture_ledger_hold", "create_account", "create_api_key", "create_ledger", "create_ledger_hold",
			"discrepancy_acknowledge", "discrepancy_resolve", "dl_analyze_new_tables", "expire_ledger_holds", "post_ledger_entries", "post_ledger_entry",
			"register_bank", "revoke_api_key", "update_account", "void_ledger_hold"},
		"dualledger_worker": {"outbox_advance", "outbox_claim", "outbox_claim_for_poll", "outbox_finish", "outbox_poll_succeeded",
			"outbox_reap", "outbox_record_poll_error", "outbox_release", "reconcile_begin", "reconcile_fail", "reconcile_finish",
			"reconcile_forget_scb", "reconcile_full_runs", "reconcile_last_ok_runs", "reconcile_record_scb",
			"reconcile_reread_keys"},
		"dualledger_readonly": nil,
	}
)

// TestRoleGrantsExactly: the catalog says each role may read exactly its tables and call exactly
// its SECURITY DEFINER functions, that no SECURITY DEFINER function is callable by PUBLIC, and
// that dualledger_app holds nothing at all.
func TestRoleGrantsExactly(t *testing.T) {
	d := pgtest.New(t)
	for _, role := range serviceRoles {
		got := strings1(t, d.Pool, `SELECT c.relname::text FROM pg_class c
			WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
			  AND has_table_privilege($1, c.oid, 'SELECT') ORDER BY 1`, role)
		if !slices.Equal(got, wantSelect[role]) {
			t.Errorf("%s may SELECT from %v, want %v", role, got, wantSelect[role])
		}
		got = strings1(t, d.Pool, `SELECT c.relname || ': ' || p FROM pg_class c, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
			WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
			  AND has_table_privilege($1, c.oid, p) ORDER BY 1`, role)
		got = append(got, strings1(t, d.Pool, `SELECT c.relname || '.' || a.attname || ': ' || p
			FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped, unnest(ARRAY['INSERT', 'UPDATE', 'REFERENCES']) p
			WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND has_column_privilege($1, c.oid, a.attnum, p) ORDER BY 1`, role)...)
		got = append(got, strings1(t, d.Pool, `SELECT c.relname || ': ' || p FROM pg_class c, unnest(ARRAY['USAGE', 'UPDATE']) p
			WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S' AND has_sequence_privilege($1, c.oid, p) ORDER BY 1`, role)...)
		if len(got) > 0 {
			t.Errorf("%s may write directly: %v", role, got)
		}
		got = strings1(t, d.Pool, `SELECT DISTINCT p.proname::text FROM pg_proc p
			WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef AND has_function_privilege($1, p.oid, 'EXECUTE') ORDER BY 1`, role)
		if !slices.Equal(got, wantExecute[role]) {
			t.Errorf("%s may call the SECURITY DEFINER functions %v, want %v", role, got, wantExecute[role])
		}
	}
	if got := strings1(t, d.Pool, `SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
		  AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))`); len(got) > 0 {
		t.Errorf("SECURITY DEFINER functions callable by PUBLIC: %v", got)
	}
	if got := strings1(t, d.Pool, `SELECT p.oid::regprocedure::text FROM pg_proc p
		WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef
		  AND (p.proconfig IS NULL OR NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%'))`); len(got) > 0 {
		t.Errorf("SECURITY DEFINER functions without a fixed search_path: %v", got)
	}
	if got := strings1(t, d.Pool, `SELECT x FROM (
			SELECT 'table ' || c.relname AS x FROM pg_class c, aclexplode(c.relacl) a
			 WHERE c.relnamespace = 'public'::regnamespace AND a.grantee = 'dualledger_app'::regrole
			UNION ALL SELECT 'column ' || c.relname || '.' || at.attname FROM pg_class c JOIN pg_attribute at ON at.attrelid = c.oid, aclexplode(at.attacl) a
			 WHERE c.relnamespace = 'public'::regnamespace AND a.grantee = 'dualledger_app'::regrole
			UNION ALL SELECT 'function ' || p.oid::regprocedure FROM pg_proc p, aclexplode(p.proacl) a
			 WHERE p.pronamespace = 'public'::regnamespace AND a.grantee = 'dualledger_app'::regrole
			UNION ALL SELECT 'schema public' FROM pg_namespace n, aclexplode(n.nspacl) a
			 WHERE n.nspname = 'public' AND a.grantee = 'dualledger_app'::regrole) x ORDER BY 1`); len(got) > 0 {
		t.Errorf("dualledger_app still holds %v", got)
	}
	// The roles themselves: NOLOGIN, no attribute, members of nothing (roles are the cluster's,
	// so this is checked here rather than compared between databases).
	if got := strings1(t, d.Pool, `SELECT r.rolname || ' ' || concat_ws(',', CASE WHEN r.rolcanlogin THEN 'LOGIN' END, CASE WHEN r.rolsuper THEN 'SUPERUSER' END,
			CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END, CASE WHEN r.rolcreatedb THEN 'CREATEDB' END, CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
			CASE WHEN r.rolreplication THEN 'REPLICATION' END,
			(SELECT 'member of ' || string_agg(g.rolname, ',') FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid))
		FROM pg_roles r WHERE r.rolname IN ('dualledger_app', 'dualledger_api', 'dualledger_worker', 'dualledger_readonly') ORDER BY 1`); !slices.Equal(got,
		[]string{"dualledger_api ", "dualledger_app ", "dualledger_readonly ", "dualledger_worker "}) {
		t.Errorf("roles: %v, want all four NOLOGIN without attributes or memberships", got)
	}
}

// setupOutbox creates (as the owner) MASTER with banks SCB-1 and SCB-2 and posts one entry
// between their accounts, so that the outbox has two QUEUED rows.
func setupOutbox(t *testing.T, q querier) {
	t.Helper()
	for _, s := range []string{
		`INSERT INTO ledgers (id) VALUES ('MASTER')`,
		`INSERT INTO banks (id, name) VALUES ('SCB-1', 'One'), ('SCB-2', 'Two')`,
		`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
		 VALUES ('MASTER', 'scb1', 'SCB-1', 'USD', 'fiat', NULL), ('MASTER', 'scb2', 'SCB-2', 'USD', 'fiat', 0)`,
		`SELECT * FROM post_ledger_entry('MASTER', 'scb1', 'scb2', 100, 'USD', 'fiat', 'GSS_SETTLEMENT', 'stl-1', NULL, NULL)`,
	} {
		if _, err := q.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestRolesCannotWriteTables: as each role, logged in as a plain member, every INSERT, UPDATE,
// DELETE, TRUNCATE and row lock on every table, and every sequence bump, is refused with 42501.
func TestRolesCannotWriteTables(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	setupOutbox(t, d.Pool)
	type table struct{ name, col string }
	rows, err := d.Pool.Query(ctx, `SELECT c.relname::text, (SELECT a.attname::text FROM pg_attribute a
			WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1)
		FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var x table
		return x, r.Scan(&x.name, &x.col)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api_keys", "bank_accounts", "banks", "dual_ledger_outbox", "dual_ledger_outbox_attempts",
		"ledger_entries", "ledgers", "operator_actions", "operator_actions_head"} {
		if !slices.ContainsFunc(tables, func(x table) bool { return x.name == want }) {
			t.Fatalf("table %s not found among %v", want, tables)
		}
	}
	sequences := strings1(t, d.Pool, `SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S' ORDER BY 1`)
	for _, role := range serviceRoles {
		t.Run(role, func(t *testing.T) {
			p := d.PoolAs(t, role)
			var current string
			if err := p.QueryRow(ctx, `SELECT current_user || ' ' || session_user`).Scan(&current); err != nil || !strings.HasPrefix(current, role+" dltest_login_") {
				t.Fatalf("session: %q %v", current, err)
			}
			for _, tb := range tables {
				id := pgx.Identifier{tb.name}.Sanitize()
				col := pgx.Identifier{tb.col}.Sanitize()
				for _, stmt := range []string{
					"INSERT INTO " + id + " DEFAULT VALUES",
					"INSERT INTO " + id + " SELECT * FROM " + id,
					"UPDATE " + id + " SET " + col + " = " + col,
					"DELETE FROM " + id,
					"TRUNCATE " + id,
					"SELECT 1 FROM " + id + " FOR UPDATE",
					"SELECT 1 FROM " + id + " FOR KEY SHARE",
				} {
					if _, err := p.Exec(ctx, stmt); sqlState(err) != "42501" {
						t.Errorf("%s: %v, want 42501", stmt, err)
					}
				}
			}
			for _, s := range sequences {
				for _, stmt := range []string{"SELECT nextval('" + s + "')", "SELECT setval('" + s + "', 1000000)"} {
					if _, err := p.Exec(ctx, stmt); sqlState(err) != "42501" {
						t.Errorf("%s: %v, want 42501", stmt, err)
					}
				}
			}
			// The issue's own case: an account with any overdraft limit, inserted directly.
			_, err := p.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
				VALUES ('MASTER', 'mine', 'USD', 'fiat', NULL)`)
			if sqlState(err) != "42501" {
				t.Errorf("INSERT of an unlimited account: %v, want 42501", err)
			}
			// Functions the role is not granted, whatever their arguments.
			for fn, call := range map[string]string{
				"outbox_claim":           `SELECT * FROM outbox_claim('SCB-1', 'MASTER', 'x', interval '1 minute', 1)`,
				"outbox_requeue":         `SELECT outbox_requeue('cli:x', NULL, 0, NULL, true, NULL)`,
				"record_operator_action": `SELECT record_operator_action('cli:x', 'x.y', 'x', NULL, NULL, NULL)`,
				"create_account":         `SELECT create_account('key:x', 'MASTER', 'mine', 'USD', 'fiat', NULL, NULL, true, NULL)`,
				"post_ledger_entry":      `SELECT * FROM post_ledger_entry('MASTER', 'scb1', 'scb2', 1, 'USD', 'fiat', 't', 'r', NULL, NULL)`,
			} {
				if slices.Contains(wantExecute[role], fn) {
					continue
				}
				if _, err := p.Exec(ctx, call); sqlState(err) != "42501" {
					t.Errorf("%s: %v, want 42501", call, err)
				}
			}
		})
	}
	var accounts int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM bank_accounts WHERE id = 'mine'`).Scan(&accounts); err != nil || accounts != 0 {
		t.Errorf("accounts named mine: %d %v", accounts, err)
	}
}

// TestForgedFinalizedRefused: the attack, QUEUED -> PROCESSING -> FINALIZED with a
// made-up scb_entry_id and no FINAL answer, is refused for the worker's and the API's roles by
// every path, and for the owner by the trigger and (with triggers disabled) the CHECK constraint.
func TestForgedFinalizedRefused(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	setupOutbox(t, d.Pool)
	var id int64
	if err := d.Pool.QueryRow(ctx, `SELECT id FROM dual_ledger_outbox WHERE scb_id = 'SCB-1'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	direct := []string{
		`UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'x', lease_expires_at = now() + interval '1 minute', attempts = attempts + 1 WHERE id = $1`,
		`UPDATE dual_ledger_outbox SET status = 'FINALIZED', scb_entry_id = 'made-up', scb_status = 'FINAL', finalized_at = now() WHERE id = $1`,
		`INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, outcome, scb_entry_id, scb_status)
		 VALUES ($1, 1, 'x', 'deliver', now(), 'final', 'made-up', 'FINAL')`,
	}
	finish := `SELECT outbox_finish('MASTER', $1, 'forger', 1, 'FINALIZED', 201, '', interval '0', 'made-up', $2, 'final', interval '0')`

	api := d.PoolAs(t, "dualledger_api")
	for _, s := range direct {
		if _, err := api.Exec(ctx, s, id); sqlState(err) != "42501" {
			t.Errorf("api: %s: %v, want 42501", s, err)
		}
	}
	if _, err := api.Exec(ctx, `SELECT * FROM outbox_claim('SCB-1', 'MASTER', 'forger', interval '1 minute', 1)`); sqlState(err) != "42501" {
		t.Errorf("api: claim: %v, want 42501", err)
	}
	if _, err := api.Exec(ctx, finish, id, "FINAL"); sqlState(err) != "42501" {
		t.Errorf("api: finish: %v, want 42501", err)
	}

	worker := d.PoolAs(t, "dualledger_worker")
	for _, s := range direct {
		if _, err := worker.Exec(ctx, s, id); sqlState(err) != "42501" {
			t.Errorf("worker: %s: %v, want 42501", s, err)
		}
	}
	var claimed int64
	if err := worker.QueryRow(ctx, `SELECT id FROM outbox_claim('SCB-1', 'MASTER', 'forger', interval '1 minute', 1)`).Scan(&claimed); err != nil || claimed != id {
		t.Fatalf("worker: claim: %d %v", claimed, err)
	}
	for _, answer := range []string{"", "ACCEPTED", "POSTED", "final"} {
		if _, err := worker.Exec(ctx, finish, id, answer); sqlState(err) != "DL111" {
			t.Errorf("worker: FINALIZED with a made-up id and scb_status %q: %v, want DL111", answer, err)
		}
	}
	if _, err := worker.Exec(ctx, `SELECT outbox_finish('MASTER', $1, 'forger', 1, 'SENT', 202, '', interval '0', 'made-up', 'ACCEPTED', 'accepted', interval '0')`, id); err != nil {
		t.Fatal(err)
	}
	for _, answer := range []string{"", "ACCEPTED", "POSTED"} {
		if _, err := worker.Exec(ctx, `SELECT outbox_advance('MASTER', $1, 'forger', 'FINALIZED', 200, 'made-up', $2, 'poll', 'final', interval '0')`, id, answer); sqlState(err) != "DL111" {
			t.Errorf("worker: poll result FINALIZED with scb_status %q: %v, want DL111", answer, err)
		}
	}
	if _, err := worker.Exec(ctx, `SELECT outbox_advance('MASTER', $1, 'forger', 'FINALIZED', 200, 'another-id', 'FINAL', 'poll', 'final', interval '0')`, id); sqlState(err) != "DL111" {
		t.Errorf("worker: FINAL for another scb_entry_id than the accepted one: %v, want DL111", err)
	}
	var status string
	if err := d.Pool.QueryRow(ctx, `SELECT status FROM dual_ledger_outbox WHERE id = $1`, id).Scan(&status); err != nil || status != "SENT" {
		t.Fatalf("row after the forgeries: %s %v, want SENT", status, err)
	}

	// The owner bypasses privileges, not the trigger (DL111), nor, with triggers disabled, the
	// CHECK constraint.
	conn := d.Conn(t)
	if _, err := conn.Exec(ctx, `UPDATE dual_ledger_outbox SET status = 'FINALIZED', scb_entry_id = 'made-up', finalized_at = now() WHERE id = $1`, id); sqlState(err) != "DL111" {
		t.Errorf("owner: FINALIZED without the FINAL answer: %v, want DL111", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `UPDATE dual_ledger_outbox SET status = 'FINALIZED', scb_entry_id = 'made-up', scb_status = 'POSTED' WHERE id = $1`, id)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" || pe.ConstraintName != "dual_ledger_outbox_finalized_has_scb_answer" {
		t.Errorf("owner with triggers disabled: %v, want the CHECK constraint", err)
	}
}

// aclDump lists every privilege on the schema and on its relations, columns, functions and types,
// by name (grantor, grantee or PUBLIC, privilege, grant option), sorted.
func aclDump(t *testing.T, q querier) []string {
	t.Helper()
	return strings1(t, q, `
		WITH acl AS (
			SELECT 'schema ' || n.nspname AS object, a.* FROM pg_namespace n,
			       aclexplode(coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))) a WHERE n.nspname = 'public'
			UNION ALL
			SELECT 'relation ' || c.relname, a.* FROM pg_class c,
			       aclexplode(coalesce(c.relacl, acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char", c.relowner))) a
			 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
			UNION ALL
			SELECT 'column ' || c.relname || '.' || at.attname, a.* FROM pg_class c JOIN pg_attribute at ON at.attrelid = c.oid,
			       aclexplode(at.attacl) a
			 WHERE c.relnamespace = 'public'::regnamespace AND at.attacl IS NOT NULL
			UNION ALL
			SELECT 'function ' || p.oid::regprocedure, a.* FROM pg_proc p,
			       aclexplode(coalesce(p.proacl, acldefault('f'::"char", p.proowner))) a
			 WHERE p.pronamespace = 'public'::regnamespace
			UNION ALL
			-- Every type (composite, enum, domain, range, a table's row type); not the implicit array
			-- types, whose privileges are their element type's (GRANT on one is refused).
			SELECT 'type ' || t.oid::regtype, a.* FROM pg_type t,
			       aclexplode(coalesce(t.typacl, acldefault('T'::"char", t.typowner))) a
			 WHERE t.typnamespace = 'public'::regnamespace
			   AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid))
		SELECT object || ': ' || coalesce(pg_get_userbyid(nullif(grantee, 0)), 'PUBLIC') || ' ' || privilege_type
		       || CASE WHEN is_grantable THEN ' WITH GRANT OPTION' ELSE '' END || ' (by ' || pg_get_userbyid(grantor) || ')'
		  FROM acl ORDER BY 1`)
}

// schemaDump describes the schema: columns, constraints, indexes, triggers, functions (by body
// and settings), views, table options and types (a composite type's attributes, in order, as
// columns of its relation of relkind c: db/functions/posting.sql creates its dl_post_* types only
// when missing, so an old shape would survive there), sorted.
func schemaDump(t *testing.T, q querier) []string {
	t.Helper()
	return strings1(t, q, `
		SELECT x FROM (
			SELECT 'column ' || c.relname || '.' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
			       || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
			       || coalesce(' collate ' || nullif(a.attcollation, 0)::regcollation::text, '') AS x
			  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
			  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
			 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'c')
			UNION ALL
			-- Every type but the implicit array types: its kind and owner; a domain's base type, NOT
			-- NULL and default (its CHECKs are constraints, below); an enum's labels in order; a
			-- range's subtype.
			SELECT 'type ' || t.oid::regtype || ' ' || t.typtype::text || ' owner ' || pg_get_userbyid(t.typowner)
			       || CASE t.typtype
			              WHEN 'd' THEN ' base ' || format_type(t.typbasetype, t.typtypmod) || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
			                            || coalesce(' DEFAULT ' || t.typdefault, '')
			              WHEN 'e' THEN ' labels ' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)
			              WHEN 'r' THEN ' subtype ' || (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid)
			              ELSE '' END
			  FROM pg_type t
			 WHERE t.typnamespace = 'public'::regnamespace AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
			UNION ALL
			SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(array_to_string(c.reloptions, ','), '') || ' owner '
			       || pg_get_userbyid(c.relowner)
			  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
			UNION ALL
			SELECT 'constraint ' || coalesce(nullif(conrelid, 0)::regclass::text, 'type ' || nullif(contypid, 0)::regtype::text) || '.' || conname || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated
			  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
			UNION ALL
			SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			 WHERE c.relnamespace = 'public'::regnamespace
			UNION ALL
			SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
			 WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
			UNION ALL
			SELECT 'function ' || p.oid::regprocedure || ' returns ' || pg_get_function_result(p.oid) || ' ' || p.prokind::text || p.provolatile::text
			       || ' secdef=' || p.prosecdef || ' config=' || coalesce(array_to_string(p.proconfig, ','), '') || ' owner '
			       || pg_get_userbyid(p.proowner) || ' body ' || md5(coalesce(p.prosrc, '') || coalesce(pg_get_function_sqlbody(p.oid), ''))
			  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
			UNION ALL
			SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c
			 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm')) s
		ORDER BY 1`)
}

// diff lists what is only in a or only in b.
func diff(a, b []string) []string {
	in := func(s []string) map[string]int {
		m := map[string]int{}
		for _, x := range s {
			m[x]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, k := range slices.Sorted(maps.Keys(ma)) {
		if ma[k] != mb[k] {
			out = append(out, "upgraded only: "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(mb)) {
		if ma[k] != mb[k] {
			out = append(out, "fresh only:    "+k)
		}
	}
	return out
}

// oldState migrates an empty database to 008 and uses it as the service did then, through
// dualledger_app's grants (ledgers, banks and accounts inserted directly, outbox rows moved by
// UPDATE, attempts inserted, SELECT on the checksum table as `dualledger migrate` granted it),
// with a login role that is a member of dualledger_app. forged also leaves a row FINALIZED by hand
// without the SCB's answer.
func oldState(t *testing.T, forged bool) (*pgtest.DB, *pgx.Conn, []pg.Migration) {
	t.Helper()
	ctx := context.Background()
	d := pgtest.NewEmpty(t)
	conn := d.Conn(t)
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		t.Fatal(err)
	}
	if migs[8].Name != "008_hot_row_maintenance.sql" {
		t.Fatalf("migration 8 is %s", migs[8].Name)
	}
	if err := pg.Migrate(ctx, conn, migs[:9], nil); err != nil {
		t.Fatal(err)
	}
	app := d.LoginRole(t, "dualledger_app")
	cfg, err := pgx.ParseConfig(app)
	if err != nil {
		t.Fatal(err)
	}
	appConn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer appConn.Close(ctx)
	steps := []string{
		`GRANT SELECT ON dualledger_migration_checksums TO dualledger_app`,
		`SET ROLE dualledger_app`,
		`INSERT INTO ledgers (id) VALUES ('MASTER')`,
		`INSERT INTO banks (id, name) VALUES ('SCB-1', 'One'), ('SCB-2', 'Two')`,
		`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
		 VALUES ('MASTER', 'issuance', NULL, 'USD', 'fiat', NULL), ('MASTER', 'scb1', 'SCB-1', 'USD', 'fiat', 0), ('MASTER', 'scb2', 'SCB-2', 'USD', 'fiat', 0)`,
		`SELECT * FROM post_ledger_entry('MASTER', 'issuance', 'scb1', 1000, 'USD', 'fiat', 'funding', 'fund-1', NULL, NULL)`,
		`SELECT * FROM post_ledger_entry('MASTER', 'scb1', 'scb2', 100, 'USD', 'fiat', 'GSS_SETTLEMENT', 'stl-1', NULL, NULL)`,
		`SELECT * FROM post_ledger_entry('MASTER', 'scb1', 'scb2', 50, 'USD', 'fiat', 'GSS_SETTLEMENT', 'stl-2', NULL, NULL)`,
		// The old worker: claim, deliver, record.
		`UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'old-worker', lease_expires_at = now() + interval '1 minute',
		        attempts = attempts + 1, last_attempt_at = now() WHERE reference_id IN ('fund-1', 'stl-1')`,
		`UPDATE dual_ledger_outbox SET status = 'FINALIZED', locked_by = NULL, lease_expires_at = NULL, scb_entry_id = scb_id || '-1',
		        scb_status = 'FINAL', sent_at = now(), acked_at = now(), finalized_at = now()
		  WHERE reference_id = 'fund-1' OR (reference_id = 'stl-1' AND scb_id = 'SCB-1')`,
		`UPDATE dual_ledger_outbox SET status = 'FAILED', locked_by = NULL, lease_expires_at = NULL, failure_reason = '401 from SCB-2',
		        last_status_code = 401, failed_at = now() WHERE reference_id = 'stl-1' AND scb_id = 'SCB-2'`,
		`INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, status_code, outcome)
		 SELECT id, attempts, 'old-worker', 'deliver', now(), 201, 'final' FROM dual_ledger_outbox WHERE status = 'FINALIZED'`,
	}
	if forged {
		steps = append(steps,
			`UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'forger', lease_expires_at = now() + interval '1 minute',
			        attempts = attempts + 1 WHERE reference_id = 'stl-2' AND scb_id = 'SCB-1'`,
			`UPDATE dual_ledger_outbox SET status = 'FINALIZED', locked_by = NULL, lease_expires_at = NULL, scb_entry_id = 'made-up',
			        finalized_at = now() WHERE reference_id = 'stl-2' AND scb_id = 'SCB-1'`)
	}
	for i, s := range steps {
		c := appConn
		if i == 0 {
			c = conn // the grant is the owner's
		}
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("old state: %s: %v", s, err)
		}
	}
	return d, conn, migs
}

// TestUpgradeEqualsFresh: a database that ran 006/007 and was used through dualledger_app, once
// migrated to the latest, has exactly the privileges and the schema of a new database; its data
// stays usable by the new roles and dualledger_app can do nothing. Applying the files again
// with plain SQL, as scripts/run-migrations.sh does (006 grants dualledger_app again), converges
// to the same state.
func TestUpgradeEqualsFresh(t *testing.T) {
	ctx := context.Background()
	old, conn, migs := oldState(t, false)
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	fresh := pgtest.New(t)
	freshConn := fresh.Conn(t)
	if d := diff(aclDump(t, conn), aclDump(t, freshConn)); len(d) > 0 {
		t.Errorf("privileges of the upgraded database differ from a new one's:\n%s", strings.Join(d, "\n"))
	}
	if d := diff(schemaDump(t, conn), schemaDump(t, freshConn)); len(d) > 0 {
		t.Errorf("schema of the upgraded database differs from a new one's:\n%s", strings.Join(d, "\n"))
	}

	// Again, file by file, as psql would.
	for _, m := range migs {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s again: %v", m.Name, err)
		}
	}
	if d := diff(aclDump(t, conn), aclDump(t, freshConn)); len(d) > 0 {
		t.Errorf("privileges after applying every file again differ from a new database's:\n%s", strings.Join(d, "\n"))
	}
	if d := diff(schemaDump(t, conn), schemaDump(t, freshConn)); len(d) > 0 {
		t.Errorf("schema after applying every file again differs from a new database's:\n%s", strings.Join(d, "\n"))
	}

	// dualledger_app (and its login) can no longer read or write anything.
	app := old.PoolAs(t, "dualledger_app")
	for _, s := range []string{`SELECT count(*) FROM ledger_entries`, `SELECT count(*) FROM dual_ledger_outbox`,
		`INSERT INTO ledgers (id) VALUES ('X')`, `UPDATE dual_ledger_outbox SET scb_status = scb_status`,
		`SELECT * FROM post_ledger_entry('MASTER', 'scb1', 'scb2', 1, 'USD', 'fiat', 't', 'r', NULL, NULL)`} {
		if _, err := app.Exec(ctx, s); sqlState(err) != "42501" {
			t.Errorf("dualledger_app after the upgrade: %s: %v, want 42501", s, err)
		}
	}
	// The old rows go on through the new roles: the worker claims the QUEUED one, the owner
	// requeues the FAILED one.
	worker := old.PoolAs(t, "dualledger_worker")
	var ref string
	if err := worker.QueryRow(ctx, `SELECT reference_id FROM outbox_claim('SCB-1', 'MASTER', 'new-worker', interval '1 minute', 5)`).Scan(&ref); err != nil || ref != "stl-2" {
		t.Errorf("the new worker's claim on the old database: %q %v", ref, err)
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT outbox_requeue('cli:op', NULL, 0, 'SCB-2', true, 'key fixed')`).Scan(&n); err != nil || n != 1 {
		t.Errorf("requeue of the old FAILED row: %d %v", n, err)
	}
}

// TestDumpsSeeTypes: the dumps TestUpgradeEqualsFresh compares see a composite type's shape and
// every type's privileges, so an upgraded database whose dl_post_* type differs from a new one's
// (db/functions/posting.sql creates them only when missing, so an old shape would stay) fails it.
// Each change below is made on a scratch database and must show in the diff against an untouched
// one, as the line the comparison would print.
func TestDumpsSeeTypes(t *testing.T) {
	ctx := context.Background()
	fresh := pgtest.New(t)
	freshConn := fresh.Conn(t)
	schema, acl := schemaDump(t, freshConn), aclDump(t, freshConn)
	for _, c := range []struct {
		change []string
		acl    bool     // the change is a privilege: aclDump must see it, else schemaDump
		want   []string // lines only in the changed database's dump (prefixes)
	}{
		{[]string{`ALTER TYPE dl_post_rejection ADD ATTRIBUTE x integer`}, false,
			[]string{"column dl_post_rejection.4 x integer"}},
		{[]string{`ALTER TYPE dl_post_rejection ALTER ATTRIBUTE details TYPE json`}, false,
			[]string{"column dl_post_rejection.3 details json"}},
		{[]string{`ALTER TYPE dl_post_rejection DROP ATTRIBUTE details`, `ALTER TYPE dl_post_rejection ADD ATTRIBUTE details jsonb`}, false,
			[]string{"column dl_post_rejection.4 details jsonb"}},
		{[]string{`ALTER TYPE dl_post_refs RENAME ATTRIBUTE ids TO entry_ids`}, false,
			[]string{"column dl_post_refs.2 entry_ids bigint[]"}},
		{[]string{`GRANT USAGE ON TYPE dl_post_rejection TO dualledger_api`}, true,
			[]string{"type dl_post_rejection: dualledger_api USAGE"}},
		{[]string{`REVOKE USAGE ON TYPE dl_post_batch FROM PUBLIC`}, true,
			nil}, // the PUBLIC USAGE line is gone: only in the new database's dump
		{[]string{`CREATE TYPE dltest_state AS ENUM ('a', 'b')`}, false,
			[]string{"type dltest_state e owner "}},
		{[]string{`CREATE DOMAIN dltest_positive AS integer NOT NULL CHECK (VALUE > 0)`}, false,
			[]string{"type dltest_positive d owner ", "constraint type dltest_positive.dltest_positive_check CHECK"}},
	} {
		scratch := pgtest.New(t)
		sc := scratch.Conn(t)
		for _, s := range c.change {
			if _, err := sc.Exec(ctx, s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		before, after := schema, schemaDump(t, sc)
		if c.acl {
			before, after = acl, aclDump(t, sc)
		}
		d := diff(after, before)
		t.Logf("%v:\n%s", c.change, strings.Join(d, "\n"))
		if len(d) == 0 {
			t.Errorf("%v: the dump does not change", c.change)
			continue
		}
		for _, w := range c.want {
			if !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, "upgraded only: "+w) }) {
				t.Errorf("%v: the diff lacks %q:\n%s", c.change, w, strings.Join(d, "\n"))
			}
		}
		if c.want == nil && !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, "fresh only:    type dl_post_batch: PUBLIC USAGE") }) {
			t.Errorf("%v: the diff lacks PUBLIC's USAGE:\n%s", c.change, strings.Join(d, "\n"))
		}
	}
	// The enum's labels are part of its line: one more label changes it.
	scratch := pgtest.New(t)
	sc := scratch.Conn(t)
	if _, err := sc.Exec(ctx, `CREATE TYPE dltest_state AS ENUM ('a', 'b')`); err != nil {
		t.Fatal(err)
	}
	two := schemaDump(t, sc)
	if _, err := sc.Exec(ctx, `ALTER TYPE dltest_state ADD VALUE 'c'`); err != nil {
		t.Fatal(err)
	}
	if d := diff(schemaDump(t, sc), two); !slices.ContainsFunc(d, func(s string) bool { return strings.HasSuffix(s, " labels a,b,c") }) {
		t.Errorf("a new enum label does not show: %v", d)
	}
}

// TestUpgradeStopsOnForgedFinalized: a database with a row FINALIZED by hand (no FINAL answer of
// its SCB) stops at 010 with the row named and what to do; nothing of 010 is applied. After the
// repair the HINT describes, the upgrade completes.
func TestUpgradeStopsOnForgedFinalized(t *testing.T) {
	ctx := context.Background()
	_, conn, migs := oldState(t, true)
	err := pg.Migrate(ctx, conn, migs, nil)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23514" || !strings.Contains(pe.Message, "1 FINALIZED outbox row(s) have no FINAL answer") ||
		!strings.Contains(pe.Message, "stl-2 at SCB-1: scb_entry_id 'made-up', scb_status NULL") || !strings.Contains(pe.Hint, "DISABLE TRIGGER") {
		t.Fatalf("upgrade with a forged FINALIZED row: %v (hint %q)", err, hintOf(err))
	}
	var applied bool
	if err := conn.QueryRow(ctx, `SELECT to_regprocedure('outbox_claim(text, text, interval, integer)') IS NOT NULL
		OR has_table_privilege('dualledger_app', 'dual_ledger_outbox', 'SELECT') = false`).Scan(&applied); err != nil || applied {
		t.Fatalf("part of 010 was applied: %v %v", applied, err)
	}
	// The repair: the SCB does not have it, so it goes back to QUEUED and is delivered.
	repair := []string{
		`BEGIN`,
		`ALTER TABLE dual_ledger_outbox DISABLE TRIGGER dual_ledger_outbox_state_machine`,
		`UPDATE dual_ledger_outbox SET status = 'QUEUED', finalized_at = NULL, scb_entry_id = NULL, scb_status = NULL
		  WHERE status = 'FINALIZED' AND scb_status IS DISTINCT FROM 'FINAL'`,
		`ALTER TABLE dual_ledger_outbox ENABLE TRIGGER dual_ledger_outbox_state_machine`,
		`COMMIT`,
	}
	for _, s := range repair {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("upgrade after the repair: %v", err)
	}
}

func hintOf(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Hint
	}
	return ""
}

// TestMissingRolesStopWithDBAStatements: a migrating user that may not create roles gets the
// statements a DBA must run, and nothing of 010 is applied.
func TestMissingRolesStopWithDBAStatements(t *testing.T) {
	// Roles belong to the cluster, which the tests share: a missing role cannot be simulated
	// without dropping it for every test. What can be checked is the statement itself, on a
	// role name that does not exist.
	d := pgtest.New(t)
	conn := d.Conn(t)
	ctx := context.Background()
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		t.Fatal(err)
	}
	sql := migs[10].SQL
	first := sql[strings.Index(sql, "DO $$") : strings.Index(sql, "END $$;")+len("END $$;")]
	first = strings.Replace(first, "'dualledger_readonly'", "'dltest_missing_role'", 1)
	login := d.LoginRole(t)
	cfg, err := pgx.ParseConfig(login)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, first)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.Contains(pe.Hint, `CREATE ROLE dltest_missing_role NOLOGIN;`) {
		t.Fatalf("missing role, no CREATEROLE: %v (hint %q)", err, hintOf(err))
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dltest_missing_role')`).Scan(&exists); err != nil || exists {
		t.Fatalf("role created: %v %v", exists, err)
	}
}

// TestOutboxSignatures: the outbox's functions are those of db/functions/outbox.sql, per (SCB,
// ledger) and by (ledger_id, id) (docs/scale-out.md), and no signature of 010 (claims across
// ledgers, transitions by id alone) is left behind, on a fresh database as on an upgraded one
// (TestUpgradeEqualsFresh compares the two). The worker may call each of its own, not the
// operator's (requeue, retry now, redeliver, acknowledge).
func TestOutboxSignatures(t *testing.T) {
	d := pgtest.New(t)
	got := strings1(t, d.Pool, `SELECT p.oid::regprocedure::text || CASE WHEN has_function_privilege('dualledger_worker', p.oid, 'EXECUTE')
			THEN ' worker' ELSE '' END
		FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'outbox\_%' ORDER BY 1`)
	want := []string{
		"outbox_acknowledge(text,text,bigint,text)",
		"outbox_advance(text,bigint,text,text,integer,text,text,text,text,interval) worker",
		"outbox_claim(text,text,text,interval,integer) worker",
		"outbox_claim_for_poll(text,text,interval,integer) worker",
		"outbox_finish(text,bigint,text,integer,text,integer,text,interval,text,text,text,interval) worker",
		"outbox_poll_succeeded(text,bigint,text,integer,text,interval) worker",
		"outbox_reap(text,text,integer) worker",
		"outbox_record_poll_error(text,bigint,text,integer,text,interval,text,interval) worker",
		"outbox_redeliver(text,text,bigint,text)",
		"outbox_release(text,text,bigint[],integer[]) worker",
		"outbox_requeue(text,text,bigint,text,boolean,text)",
		"outbox_retry_now(text,text,bigint,text,text)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("outbox functions:\n got %q\nwant %q", got, want)
	}
}
