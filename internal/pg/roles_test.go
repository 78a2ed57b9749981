package pg_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

// userOf is the login role of a connection string.
func userOf(t *testing.T, connStr string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(connStr)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.User
}

// poolOn opens a pool on connStr that SETs ROLE to role when role is not empty (as `dualledger
// serve` does): the check is about the login role, whatever role the session has SET.
func poolOn(t *testing.T, connStr, role string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(connStr)
	if err != nil {
		t.Fatal(err)
	}
	if role != "" {
		cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
			_, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize())
			return err
		}
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestCheckServiceRole: a service refuses a login role that can act as more than its role, and
// accepts a plain member (inheriting or not) of dualledger_api or dualledger_worker.
func TestCheckServiceRole(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	admin := d.Conn(t)
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	refused := func(name string, p *pgxpool.Pool, want ...string) {
		t.Helper()
		err := pg.CheckServiceRole(ctx, p)
		var se *pg.ServiceRoleError
		if !errors.As(err, &se) {
			t.Errorf("%s: %v, want a ServiceRoleError", name, err)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", name, err, w)
			}
		}
		if !strings.Contains(err.Error(), "--allow-owner") || !strings.Contains(err.Error(), "dualledger_api") {
			t.Errorf("%s: %q does not say what to do", name, err)
		}
	}
	accepted := func(name string, p *pgxpool.Pool) {
		t.Helper()
		if err := pg.CheckServiceRole(ctx, p); err != nil {
			t.Errorf("%s: %v, want accepted", name, err)
		}
	}

	refused("the superuser", d.Pool, "superuser")
	refused("the superuser after SET ROLE dualledger_api", poolOn(t, d.ConnStr, "dualledger_api"), "superuser")

	accepted("a plain member of dualledger_api", d.PoolAs(t, "dualledger_api"))
	accepted("a plain member of dualledger_worker", d.PoolAs(t, "dualledger_worker"))
	noinherit := d.LoginRole(t, "dualledger_api")
	exec("ALTER ROLE " + userOf(t, noinherit) + " NOINHERIT")
	accepted("a NOINHERIT member of dualledger_api", poolOn(t, noinherit, "dualledger_api"))
	accepted("a plain member of dualledger_api without SET ROLE", poolOn(t, d.LoginRole(t, "dualledger_api"), ""))

	// A member of the owner of the tables (here the superuser that migrated them) can SET ROLE to
	// it, directly or through another role, inheriting or not.
	ownerish := d.LoginRole(t, "dualledger_api")
	exec("GRANT postgres TO " + userOf(t, ownerish))
	refused("a member of the owner", poolOn(t, ownerish, "dualledger_api"), "can act as postgres")
	indirect := d.LoginRole(t, userOf(t, ownerish))
	exec("ALTER ROLE " + userOf(t, indirect) + " NOINHERIT")
	refused("a NOINHERIT member of a member of the owner", poolOn(t, indirect, ""), "can act as postgres")

	createrole := d.LoginRole(t, "dualledger_worker")
	exec("ALTER ROLE " + userOf(t, createrole) + " CREATEROLE")
	refused("a CREATEROLE login", poolOn(t, createrole, "dualledger_worker"), "CREATEROLE")

	writer := d.LoginRole(t, "dualledger_worker")
	exec("GRANT pg_write_all_data TO " + userOf(t, writer))
	refused("a member of pg_write_all_data", poolOn(t, writer, "dualledger_worker"), "pg_write_all_data")

	// A write privilege granted by hand, on a table or on a column: the login could set balances
	// around the posting function (the schema review of 2026-12-02).
	for _, grant := range []string{"INSERT, UPDATE ON bank_accounts", "UPDATE (balance) ON bank_accounts", "TRIGGER ON ledger_entries",
		"UPDATE ON SEQUENCE ledger_entries_id_seq"} {
		l := d.LoginRole(t, "dualledger_api")
		exec("GRANT " + grant + " TO " + userOf(t, l))
		t.Cleanup(func() { _, _ = admin.Exec(ctx, "REVOKE "+grant+" FROM "+userOf(t, l)) })
		refused("a login with "+grant, poolOn(t, l, "dualledger_api"), "may write tables of schema public directly")
	}

	creator := d.LoginRole(t, "dualledger_api")
	exec("GRANT CREATE ON SCHEMA public TO " + userOf(t, creator))
	refused("a login that may CREATE in the schema", poolOn(t, creator, "dualledger_api"), "may CREATE in schema public")
	exec("REVOKE CREATE ON SCHEMA public FROM " + userOf(t, creator))

	// The review's escalations: each of these logins passed the check before, and each became a
	// superuser (an overload of to_jsonb(text) in public that the owner's functions called; a
	// schema named after the owner, first in its default search_path; COPY TO PROGRAM).
	suffix := func() string {
		var b [4]byte
		_, _ = rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	creatorRole := "creator_" + suffix()
	exec("CREATE ROLE " + creatorRole + " NOLOGIN")
	exec("GRANT CREATE ON SCHEMA public TO " + creatorRole)
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "REVOKE CREATE ON SCHEMA public FROM "+creatorRole)
		_, _ = admin.Exec(ctx, "DROP ROLE "+creatorRole)
	})
	viaSetRole := d.LoginRole(t, "dualledger_api")
	exec("ALTER ROLE " + userOf(t, viaSetRole) + " NOINHERIT")
	exec("GRANT " + creatorRole + " TO " + userOf(t, viaSetRole))
	refused("a NOINHERIT member of a role that may CREATE in the schema", poolOn(t, viaSetRole, "dualledger_api"),
		"may CREATE in schema public (as "+creatorRole)

	dbCreator := d.LoginRole(t, "dualledger_api")
	exec("GRANT ALL ON DATABASE " + pgx.Identifier{d.Name}.Sanitize() + " TO " + userOf(t, dbCreator))
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "REVOKE ALL ON DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" FROM "+userOf(t, dbCreator))
	})
	refused("a login with ALL on the database", poolOn(t, dbCreator, "dualledger_api"), "may CREATE schemas in database "+d.Name)

	for _, predefined := range []string{"pg_execute_server_program", "pg_write_server_files", "pg_read_server_files", "pg_signal_backend"} {
		l := d.LoginRole(t, "dualledger_worker")
		exec("GRANT " + predefined + " TO " + userOf(t, l))
		refused("a member of "+predefined, poolOn(t, l, "dualledger_worker"), "member of "+predefined)
	}

	for _, grant := range []string{"ALTER SYSTEM ON PARAMETER archive_command", "SET ON PARAMETER session_replication_role"} {
		l := d.LoginRole(t, "dualledger_api")
		exec("GRANT " + grant + " TO " + userOf(t, l))
		refused("a login with "+grant, poolOn(t, l, "dualledger_api"), "privileges on server parameters")
		t.Cleanup(func() { _, _ = admin.Exec(ctx, "REVOKE "+grant+" FROM "+userOf(t, l)) })
	}
	reader := d.LoginRole(t, "dualledger_worker")
	exec("GRANT pg_read_all_data TO " + userOf(t, reader))
	refused("a member of pg_read_all_data", poolOn(t, reader, "dualledger_worker"), "member of pg_read_all_data")

	replicator := d.LoginRole(t, "dualledger_api")
	exec("ALTER ROLE " + userOf(t, replicator) + " REPLICATION")
	refused("a REPLICATION login", poolOn(t, replicator, "dualledger_api"), "REPLICATION")

	superGroup := "supergroup_" + suffix()
	exec("CREATE ROLE " + superGroup + " NOLOGIN SUPERUSER")
	t.Cleanup(func() { _, _ = admin.Exec(ctx, "DROP ROLE "+superGroup) })
	toSuper := d.LoginRole(t, "dualledger_api")
	exec("ALTER ROLE " + userOf(t, toSuper) + " NOINHERIT")
	exec("GRANT " + superGroup + " TO " + userOf(t, toSuper))
	refused("a NOINHERIT member of a superuser role", poolOn(t, toSuper, "dualledger_api"), "can act as "+superGroup+", a superuser")

	// The database's owner owns schema public (PostgreSQL 15: pg_database_owner) and may drop
	// the database.
	dbOwner := d.LoginRole(t, "dualledger_api")
	exec("ALTER DATABASE " + pgx.Identifier{d.Name}.Sanitize() + " OWNER TO " + userOf(t, dbOwner))
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{d.Name}.Sanitize()+" OWNER TO postgres")
	})
	refused("the database's owner", poolOn(t, dbOwner, "dualledger_api"), "the owner of database "+d.Name, "the owner of schema public")
}

// TestEnsureLoginRole: the embedded cluster's login roles are created once, however many
// processes ask at the same moment, as plain members that pass CheckServiceRole.
func TestEnsureLoginRole(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	var rnd [5]byte
	_, _ = rand.Read(rnd[:])
	login := "dltest_embedded_" + hex.EncodeToString(rnd[:])
	admin := d.Conn(t)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+login) })

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, d.ConnStr)
			if err != nil {
				errs[i] = err
				return
			}
			defer conn.Close(ctx)
			errs[i] = pg.EnsureLoginRole(ctx, conn, login, pg.WorkerRole)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("EnsureLoginRole %d of 8 at once: %v", i+1, err)
		}
	}
	var canLogin, super, member bool
	if err := admin.QueryRow(ctx, `SELECT rolcanlogin, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication,
		pg_has_role(oid, 'dualledger_worker', 'USAGE') FROM pg_roles WHERE rolname = $1`, login).Scan(&canLogin, &super, &member); err != nil {
		t.Fatal(err)
	}
	if !canLogin || super || !member {
		t.Fatalf("login role: can login %v, attributes beyond LOGIN %v, inherits dualledger_worker %v", canLogin, super, member)
	}
	if err := pg.EnsureLoginRole(ctx, admin, login, pg.WorkerRole); err != nil {
		t.Errorf("again: %v", err)
	}
	cfg, err := pgx.ParseConfig(d.ConnStr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "" || !strings.HasPrefix(cfg.Host, "/") {
		t.Skip("the test server does not trust local connections (DATABASE_URL): logging in as the role is not tested")
	}
	cfg.User = login
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := pg.CheckServiceRole(ctx, conn); err != nil {
		t.Errorf("the embedded login role is refused: %v", err)
	}

	if err := pg.EnsureLoginRole(ctx, admin, "dltest_nogroup_"+hex.EncodeToString(rnd[:]), "dltest_no_such_group"); err == nil ||
		!strings.Contains(err.Error(), "migrate") {
		t.Errorf("a missing group: %v", err)
	}
	if _, err := admin.Exec(ctx, "CREATE ROLE dltest_nologin_"+hex.EncodeToString(rnd[:])+" NOLOGIN"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS dltest_nologin_"+hex.EncodeToString(rnd[:]))
	})
	if err := pg.EnsureLoginRole(ctx, admin, "dltest_nologin_"+hex.EncodeToString(rnd[:]), pg.WorkerRole); err == nil ||
		!strings.Contains(err.Error(), "cannot log in") {
		t.Errorf("an existing NOLOGIN role of that name: %v", err)
	}
	if err := pg.EnsureLoginRole(ctx, admin, `x"; DROP TABLE ledgers; --`, pg.WorkerRole); err == nil {
		t.Error("a role name that is not a plain identifier was accepted")
	}
}

// TestSearchPathPinned: the program's connections resolve unqualified names in public only. With
// PostgreSQL's default search_path ("$user", public) a schema named after the connecting role
// comes first: a service login that may CREATE a schema once made the owner's CLI create and run
// functions of its own that way (the security review of 2026-12-02).
func TestSearchPathPinned(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	admin := d.Conn(t)
	owner := pgx.Identifier{userOf(t, d.ConnStr)}.Sanitize()
	for _, sql := range []string{
		"CREATE SCHEMA " + owner,
		"CREATE TABLE " + owner + ".ledgers (id text)",
		"INSERT INTO " + owner + ".ledgers VALUES ('SHADOW')",
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	pool, release, err := pg.Open(ctx, d.ConnStr, "", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var path string
	var shadowed bool
	if err := pool.QueryRow(ctx, `SELECT current_setting('search_path'), EXISTS (SELECT 1 FROM ledgers WHERE id = 'SHADOW')`).Scan(&path, &shadowed); err != nil {
		t.Fatal(err)
	}
	if path != "public" || shadowed {
		t.Errorf("search_path %q, the owner's schema read: %v", path, shadowed)
	}
	// A connection string that names its own search_path keeps it.
	cfg, err := pgx.ParseConfig(d.ConnStr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = "ledger, public"
	pg.PinSearchPath(cfg)
	if got := cfg.RuntimeParams["search_path"]; got != "ledger, public" {
		t.Errorf("an explicit search_path became %q", got)
	}
}
