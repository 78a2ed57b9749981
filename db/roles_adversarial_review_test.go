package db_test

// Adversarial review of issue 6 (database roles and the operator log). Tests named ...Defect...
// document a defect and fail until it is fixed; the others confirm a property that held up.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/pg/pgtest"
)

func mustExec(t *testing.T, p *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := p.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// chainIntact recomputes the operator log's hash chain and its head.
func chainIntact(t *testing.T, p *pgxpool.Pool) {
	t.Helper()
	var broken int
	var headOK bool
	err := p.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM (
		          SELECT seq, hash, previous_hash, lag(hash) OVER (ORDER BY seq) AS prev_hash,
		                 sha256(previous_hash || operator_action_canonical(seq, at, actor, db_login, db_role, action, target, before, after, reason)) AS want
		            FROM operator_actions) x
		         WHERE hash <> want OR previous_hash <> coalesce(prev_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)),
		       (SELECT h.seq = coalesce((SELECT max(seq) FROM operator_actions), 0)
		               AND h.hash = coalesce((SELECT hash FROM operator_actions ORDER BY seq DESC LIMIT 1), '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
		          FROM operator_actions_head h)`).Scan(&broken, &headOK)
	if err != nil || broken != 0 || !headOK {
		t.Errorf("operator log chain: %d broken rows, head ok %v, err %v", broken, headOK, err)
	}
}

// Was a defect (low/medium, forensic), fixed in review: the actor of every administrative act is an argument the caller
// chooses, and the database checks only its form. The API's login (dualledger_api), or anyone
// who has it, records its acts as 'cli:<any operator>' or as another API key, so `operator-log`
// and GET /v1/operator-actions, which show the actor, point the investigation at the wrong person
// or key. db_login/db_role stay true, but nobody reading "actor" sees a forgery. The API only ever
// acts as 'key:<id of an active key>'; the functions could require that for dualledger_api.
func TestAdversarialReviewFixedAPIRoleChoosesTheLoggedActor(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	setupOutbox(t, d.Pool)
	api := d.PoolAs(t, "dualledger_api")

	// A real, active key of an innocent operator, made by the CLI.
	mustExec(t, d.Pool, `SELECT create_api_key('cli:ops', 'key_innocentinnocent', 'innocent', $1, '{read}', '{}', NULL, NULL)`,
		sha256.New().Sum(nil))
	hash := sha256.Sum256([]byte("the api login knows this token"))
	forged := map[string]string{
		"ledger.create": `SELECT create_ledger('cli:alice', 'FRAMED')`,
		"key.create": fmt.Sprintf(`SELECT create_api_key('system:migration', 'key_attackerattacker', 'looks legit', '\x%x', '{admin}', '{}', NULL, NULL)`,
			hash[:]),
		"key.revoke":        `SELECT revoke_api_key('cli:bob', 'key_innocentinnocent', 'bob did it')`,
		"unknown key":       `SELECT create_ledger('key:key_nosuchkeynosuchk', 'FRAMED2')`,
		"worker as service": `SELECT create_ledger('worker:w1', 'FRAMED3')`,
	}
	// Fixed (db/functions/operator_acts.sql): a service acts only on behalf of an active API key.
	for action, sql := range forged {
		_, err := api.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("%s as dualledger_api with a made-up actor: %v, want 42501", action, err)
		}
	}
	// What remains (docs/security.md, threat model): the API's login can still name an active
	// key as the actor; the key id is then the one the API authenticated, or a lie only someone
	// holding the API's database password can tell.
	mustExec(t, api, `SELECT create_account('key:key_innocentinnocent', 'MASTER', 'named', 'USD', 'fiat', NULL, NULL, false, NULL)`)
	var n int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM operator_actions WHERE db_role = 'dualledger_api' AND actor !~ '^key:'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("acts logged under non-key actors from dualledger_api: %d %v", n, err)
	}
	chainIntact(t, d.Pool)
}

// Held up: the operator log cannot be written, forged or redirected by the service roles, with
// the settings the triggers and functions use set by the caller beforehand, with look-alike
// objects in pg_temp ahead of public in search_path, or through functions it is not granted.
func TestAdversarialReviewOperatorLogResistsServiceRoles(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	setupOutbox(t, d.Pool)
	var before int64
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM operator_actions`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, role := range serviceRoles {
		t.Run(role, func(t *testing.T) {
			p := d.PoolAs(t, role)
			conn, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			for _, s := range []string{
				`SELECT set_config('dualledger.oplog', 'on', false)`,
				`SELECT set_config('dualledger.actor', 'cli:forged', false)`,
				`SELECT set_config('dualledger.reason', 'forged', false)`,
				`SELECT set_config('dualledger.posting', 'on', false)`,
			} {
				if _, err := conn.Exec(ctx, s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
			refused := []string{
				`INSERT INTO operator_actions (seq, at, actor, db_login, db_role, action, target, previous_hash, hash)
				 SELECT seq + 1, now(), 'cli:x', 'x', 'x', 'x.y', 'x', hash, hash FROM operator_actions_head`,
				`UPDATE operator_actions_head SET seq = seq`,
				`UPDATE operator_actions SET actor = 'cli:x'`,
				`DELETE FROM operator_actions`,
				`SELECT record_operator_action('cli:x', 'x.y', 'x', NULL, NULL, NULL)`,
				`SELECT dl_begin_act('cli:x', NULL)`,
				`SELECT dl_end_act()`,
				`SELECT outbox_requeue('cli:x', NULL, 0, NULL, true, NULL)`,
				`UPDATE api_keys SET scopes = '{admin}'`,
				`SET session_replication_role = replica`,
				`ALTER TABLE operator_actions DISABLE TRIGGER operator_actions_no_change`,
				`CREATE TRIGGER x BEFORE INSERT ON ledgers FOR EACH ROW EXECUTE FUNCTION dl_current_actor()`,
				`CREATE TABLE public.look_alike (id int)`,
				`CREATE SCHEMA evil`,
				`SET ROLE dualledger_worker`,
				`SET ROLE dualledger_api`,
			}
			for _, s := range refused {
				if s == "SET ROLE "+role {
					continue
				}
				if _, err := conn.Exec(ctx, s); err == nil {
					t.Errorf("%s: allowed", s)
				} else if st := sqlState(err); st != "42501" && st != "0A000" && !strings.HasPrefix(st, "22") && st != "42P01" {
					t.Logf("%s: %v", s, err)
				}
				if _, err := conn.Exec(ctx, "SET ROLE "+role); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	var after int64
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM operator_actions`).Scan(&after); err != nil || after != before {
		t.Errorf("operator log rows %d -> %d (%v)", before, after, err)
	}

	// The API's role, with the actor pre-set, pg_temp look-alikes first in search_path: its act is
	// still recorded by the real log under the actor the function was given, and lands in public.
	api := d.PoolAs(t, "dualledger_api")
	// The API acts for an active key (db/functions/operator_acts.sql).
	mustExec(t, d.Pool, `SELECT create_api_key('cli:ops', 'key_abcdefghijklmnop', 'api', $1, '{admin}', '{}', NULL, NULL)`,
		sha256.New().Sum(nil))
	conn, err := api.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, s := range []string{
		`SELECT set_config('dualledger.actor', 'cli:forged', false)`,
		`CREATE TEMP TABLE ledgers (id text, head_seq bigint, head_hash bytea, created_at timestamptz)`,
		`CREATE TEMP TABLE operator_actions_head (id boolean, seq bigint, hash bytea)`,
		`CREATE FUNCTION pg_temp.dl_current_actor() RETURNS text LANGUAGE sql AS $$ SELECT 'cli:from_pg_temp' $$`,
		`CREATE FUNCTION pg_temp.record_operator_action(text, text, text, jsonb, jsonb, text) RETURNS bigint LANGUAGE sql AS $$ SELECT 0::bigint $$`,
		`SET search_path = pg_temp, public`,
		`SELECT create_ledger('key:key_abcdefghijklmnop', 'SHADOWED')`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	var actor, role string
	if err := d.Pool.QueryRow(ctx, `SELECT actor, db_role FROM public.operator_actions WHERE target = 'SHADOWED'`).Scan(&actor, &role); err != nil {
		t.Fatalf("the act is not in the real log: %v", err)
	}
	if actor != "key:key_abcdefghijklmnop" || role != "dualledger_api" {
		t.Errorf("logged as %q / %q", actor, role)
	}
	var real int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM public.ledgers WHERE id = 'SHADOWED'`).Scan(&real); err != nil || real != 1 {
		t.Errorf("the ledger did not land in public.ledgers: %d %v", real, err)
	}
	chainIntact(t, d.Pool)
}

// Held up: hostile arguments to the functions the API's role may call are refused by the
// database (NULLs, multi-dimensional and huge arrays, bad hashes, unknown statuses, control
// characters), and nothing is written.
func TestAdversarialReviewHostileFunctionArguments(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	setupOutbox(t, d.Pool)
	api := d.PoolAs(t, "dualledger_api")
	h := fmt.Sprintf(`'\x%x'`, sha256.Sum256([]byte("x")))
	var before string
	snap := `SELECT (SELECT count(*) FROM api_keys) || '/' || (SELECT count(*) FROM operator_actions) || '/' ||
	                (SELECT count(*) FROM bank_accounts) || '/' || (SELECT string_agg(id || status || coalesce(overdraft_limit::text, 'u'), ',' ORDER BY id) FROM bank_accounts)`
	if err := d.Pool.QueryRow(ctx, snap).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`SELECT create_api_key(NULL, 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{}', NULL, NULL)`,
		`SELECT create_api_key('sql:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x' || chr(10), 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, NULL, '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{{admin}}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{root}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read,NULL}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', (SELECT array_agg(g::text) FROM generate_series(1, 100000) g), NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{{a},{b}}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{NULL}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{}', 'SCB-9', NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', ` + h + `, '{read}', '{}', NULL, -1)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', 'n', '\x00', '{read}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'KEY_AAAAAAAAAAAAAAAA', 'n', ` + h + `, '{read}', '{}', NULL, NULL)`,
		`SELECT create_api_key('key:x', 'key_aaaaaaaaaaaaaaaa', '', ` + h + `, '{read}', '{}', NULL, NULL)`,
		`SELECT update_account('key:x', 'MASTER', 'scb2', NULL, NULL, NULL, 'frozen', NULL)`,
		`SELECT update_account('key:x', 'MASTER', 'scb2', NULL, NULL, NULL, 'frozen', '   ')`,
		`SELECT update_account('key:x', 'MASTER', 'scb2', NULL, NULL, NULL, 'suspended', 'r')`,
		`SELECT update_account('key:x', 'MASTER', 'scb2', NULL, NULL, NULL, NULL, 'r')`,
		`SELECT update_account('key:x', 'MASTER', 'scb2', -5, false, true, NULL, 'r')`,
		`SELECT update_account('key:x', 'MASTER', 'scb2', NULL, NULL, NULL, 'frozen', 'a' || chr(7))`,
		`SELECT create_account('key:x', 'MASTER', 'neg', 'USD', 'fiat', NULL, -1, false, NULL)`,
		`SELECT create_account('key:x', 'MASTER', 'bad id', 'USD', 'fiat', NULL, 0, false, NULL)`,
		`SELECT create_account('key:x', 'MASTER', 'x', 'USD', 'fiat', 'SCB-9', 0, false, NULL)`,
		`SELECT create_ledger('key:x', 'A:B')`,
		`SELECT revoke_api_key('key:x', NULL, 'r')`,
	} {
		if _, err := api.Exec(ctx, s); err == nil {
			t.Errorf("accepted: %s", s)
		}
	}
	var after string
	if err := d.Pool.QueryRow(ctx, snap).Scan(&after); err != nil || after != before {
		t.Errorf("refused calls changed the database: %s -> %s (%v)", before, after, err)
	}
	// NULL limit and NULL unlimited mean no credit, not unlimited.
	nullsHash := sha256.Sum256([]byte("nulls"))
	mustExec(t, d.Pool, `SELECT create_api_key('cli:ops', 'key_nullsnullsnullsn', 'api', $1, '{admin}', '{}', NULL, NULL)`, nullsHash[:])
	mustExec(t, api, `SELECT create_account('key:key_nullsnullsnullsn', 'MASTER', 'nulls', 'USD', 'fiat', NULL, NULL, NULL, NULL)`)
	var zero bool
	if err := d.Pool.QueryRow(ctx, `SELECT coalesce(overdraft_limit = 0, false) FROM bank_accounts WHERE id = 'nulls'`).Scan(&zero); err != nil || !zero {
		t.Errorf("account opened with NULL limit arguments has credit (%v)", err)
	}
}
