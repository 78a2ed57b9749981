package pg

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The roles of migration 010 (docs/security.md): serve runs as APIRole, worker as WorkerRole,
// reporting as ReadonlyRole. They are NOLOGIN; a login role is granted one of them.
const (
	APIRole      = "dualledger_api"
	WorkerRole   = "dualledger_worker"
	ReadonlyRole = "dualledger_readonly"
)

// Querier is what CheckServiceRole needs: a *pgx.Conn, a *pgxpool.Pool or a pgx.Tx.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ServiceRoleError says why a login role may not run a service (serve, worker): it can do more
// than the role the service asks for, so a compromise of the service would not be contained.
type ServiceRoleError struct {
	Login   string   // session_user
	Reasons []string // one line per finding
}

func (e *ServiceRoleError) Error() string {
	return fmt.Sprintf("the database login role %s must not run a service: %s. Log in as a role that is only a member of "+
		"%s or %s (docs/security.md, \"Login roles\"), or pass --allow-owner on a development database",
		e.Login, strings.Join(e.Reasons, "; "), APIRole, WorkerRole)
}

// CheckServiceRole refuses a login role (session_user, which a session can always RESET ROLE
// back to) that can act as more than a service role. What counts is every role the login can
// become (pg_has_role ... 'MEMBER': directly or not, inheriting or not, since it can SET ROLE to
// each), not only the privileges it holds by itself. Refused: a superuser among them; CREATEROLE
// (before PostgreSQL 16 it may grant itself any non-superuser role, the owner's included);
// REPLICATION (it reads every row through the WAL); privileges on server parameters (GRANT SET or
// ALTER SYSTEM ON PARAMETER: archive_command, session_replication_role); membership of
// pg_write_all_data, pg_read_all_data,
// pg_execute_server_program, pg_write_server_files, pg_read_server_files (a COPY TO PROGRAM or
// into the data directory runs code as the server) or pg_signal_backend (it ends other sessions,
// the worker's among them); acting as the owner of the ledger schema, of the database, or of any
// table, sequence, function or type in the schema; CREATE in the schema or in the database; and
// a write privilege on a table of the schema (granted by hand: 010 grants none).
// CREATE is refused because of search_path: an object of its own in the schema (an overload of a
// function the owner's functions call, such as to_jsonb(text)) or a schema named after another
// role ("$user" comes first in a default search_path) would run its code with that role's
// rights. It returns a *ServiceRoleError with every finding, nil when the role is a plain member
// of the service roles.
func CheckServiceRole(ctx context.Context, db Querier) error {
	var (
		login      string
		super      bool
		supers     []string
		createrole []string
		replicate  []string
		predefined []string
		schema     string
		nspOwner   string
		ownsNsp    bool
		dbName     string
		dbOwner    string
		ownsDB     bool
		nspCreate  []string
		dbCreate   []string
		owners     []string
		params     []string
		writes     []string
	)
	err := db.QueryRow(ctx, `
		WITH sch AS (
			SELECT n.oid, n.nspname, n.nspowner FROM pg_namespace n
			 WHERE n.oid = coalesce((SELECT relnamespace FROM pg_class WHERE oid = to_regclass('ledger_entries')),
			                        'public'::regnamespace)),
		objowners AS (
			SELECT c.relowner AS owner FROM pg_class c, sch WHERE c.relnamespace = sch.oid
			UNION SELECT p.proowner FROM pg_proc p, sch WHERE p.pronamespace = sch.oid
			UNION SELECT t.typowner FROM pg_type t, sch WHERE t.typnamespace = sch.oid),
		reach AS (
			SELECT r.oid, r.rolname, r.rolsuper, r.rolcreaterole, r.rolreplication FROM pg_roles r
			 WHERE pg_has_role(session_user, r.oid, 'MEMBER')),
		names AS (
			SELECT array_agg(rolname ORDER BY rolname) FILTER (WHERE rolsuper) AS supers,
			       array_agg(rolname ORDER BY rolname) FILTER (WHERE rolcreaterole) AS createrole,
			       array_agg(rolname ORDER BY rolname) FILTER (WHERE rolreplication) AS replicate,
			       array_agg(rolname ORDER BY rolname) FILTER (WHERE rolname IN ('pg_write_all_data', 'pg_read_all_data',
			           'pg_execute_server_program', 'pg_write_server_files', 'pg_read_server_files',
			           'pg_signal_backend')) AS predefined,
			       array_agg(rolname ORDER BY rolname) FILTER (WHERE has_schema_privilege(oid, (SELECT oid FROM sch), 'CREATE')) AS nsp_create,
			       array_agg(rolname ORDER BY rolname) FILTER (WHERE has_database_privilege(oid, current_database(), 'CREATE')) AS db_create
			  FROM reach)
		SELECT r.rolname, r.rolsuper, coalesce(names.supers, '{}'), coalesce(names.createrole, '{}'),
		       coalesce(names.replicate, '{}'), coalesce(names.predefined, '{}'),
		       sch.nspname, pg_get_userbyid(sch.nspowner), pg_has_role(session_user, sch.nspowner, 'MEMBER'),
		       d.datname, pg_get_userbyid(d.datdba), pg_has_role(session_user, d.datdba, 'MEMBER'),
		       coalesce(names.nsp_create, '{}'), coalesce(names.db_create, '{}'),
		       coalesce((SELECT array_agg(DISTINCT pg_get_userbyid(o.owner) ORDER BY pg_get_userbyid(o.owner))
		                   FROM objowners o WHERE pg_has_role(session_user, o.owner, 'MEMBER')), '{}'),
		       coalesce((SELECT array_agg(DISTINCT pa.parname ORDER BY pa.parname)
		                   FROM pg_parameter_acl pa CROSS JOIN LATERAL aclexplode(pa.paracl) a
		                  WHERE a.grantee = 0 OR a.grantee IN (SELECT oid FROM reach)), '{}'),
		       coalesce((SELECT array_agg(DISTINCT c.oid::regclass::text ORDER BY c.oid::regclass::text)
		                   FROM pg_class c, sch, reach x
		                  WHERE c.relnamespace = sch.oid
		                    AND (c.relkind IN ('r', 'p')
		                         AND (has_table_privilege(x.oid, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
		                              OR has_any_column_privilege(x.oid, c.oid, 'INSERT, UPDATE, REFERENCES'))
		                         -- setval on the entries' id sequence makes every posting collide
		                         OR c.relkind = 'S' AND has_sequence_privilege(x.oid, c.oid, 'UPDATE'))), '{}')
		  FROM pg_roles r, sch, pg_database d, names
		 WHERE r.rolname = session_user AND d.datname = current_database()`).
		Scan(&login, &super, &supers, &createrole, &replicate, &predefined, &schema, &nspOwner, &ownsNsp,
			&dbName, &dbOwner, &ownsDB, &nspCreate, &dbCreate, &owners, &params, &writes)
	if err != nil {
		return fmt.Errorf("check the database login role: %w", err)
	}
	if super {
		// A superuser can do everything; the other findings would only repeat it.
		return &ServiceRoleError{Login: login, Reasons: []string{"it is a superuser"}}
	}
	var reasons []string
	if len(supers) > 0 {
		reasons = append(reasons, fmt.Sprintf("it can act as %s, a superuser", strings.Join(supers, ", ")))
	}
	if len(createrole) > 0 {
		reasons = append(reasons, fmt.Sprintf("it has CREATEROLE (as %s; it could grant itself the owner's role)", strings.Join(createrole, ", ")))
	}
	if len(replicate) > 0 {
		reasons = append(reasons, fmt.Sprintf("it has REPLICATION (as %s; it could read every row through the WAL)", strings.Join(replicate, ", ")))
	}
	for _, p := range predefined {
		reasons = append(reasons, fmt.Sprintf("it is a member of %s", p))
	}
	if ownsNsp {
		reasons = append(reasons, fmt.Sprintf("it can act as %s, the owner of schema %s", nspOwner, schema))
	}
	if ownsDB {
		reasons = append(reasons, fmt.Sprintf("it can act as %s, the owner of database %s", dbOwner, dbName))
	}
	if len(owners) > 0 {
		reasons = append(reasons, fmt.Sprintf("it can act as %s, owner of the ledger's tables or functions", strings.Join(owners, ", ")))
	}
	if len(nspCreate) > 0 && !ownsNsp {
		reasons = append(reasons, fmt.Sprintf("it may CREATE in schema %s (as %s: REVOKE CREATE ON SCHEMA %s FROM PUBLIC, and from them)",
			schema, strings.Join(nspCreate, ", "), schema))
	}
	if len(dbCreate) > 0 && !ownsDB {
		reasons = append(reasons, fmt.Sprintf("it may CREATE schemas in database %s (as %s: REVOKE CREATE ON DATABASE %s FROM them)",
			dbName, strings.Join(dbCreate, ", "), dbName))
	}
	if len(params) > 0 {
		// GRANT SET / ALTER SYSTEM ON PARAMETER (PostgreSQL 15): archive_command runs a shell
		// command as the server's OS user; session_replication_role = replica silences every
		// guard and logging trigger of the schema.
		reasons = append(reasons, fmt.Sprintf("it holds privileges on server parameters (%s: GRANT ... ON PARAMETER)", strings.Join(params, ", ")))
	}
	if len(writes) > 0 && len(owners) == 0 {
		// Every write goes through the SECURITY DEFINER functions (migration 010 grants no
		// INSERT, UPDATE or DELETE); a grant made by hand lets the service move money around
		// them, and the audit's table_privileges check reports it too.
		reasons = append(reasons, fmt.Sprintf("it may write tables of schema %s directly (%s: INSERT, UPDATE, DELETE, TRUNCATE, "+
			"REFERENCES or TRIGGER, or a sequence's UPDATE, granted by hand; REVOKE them: every write goes through the posting and outbox functions)",
			schema, strings.Join(writes, ", ")))
	}
	if len(reasons) > 0 {
		return &ServiceRoleError{Login: login, Reasons: reasons}
	}
	return nil
}

// EmbeddedLogin is the login role the embedded cluster uses for a service role: a plain member of
// it, created by EnsureLoginRole.
func EmbeddedLogin(role string) string { return role + "_login" }

var roleName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// EnsureLoginRole makes login a LOGIN role without any attribute beyond it, a plain member of
// group, creating it when missing. conn must be a superuser's (or CREATEROLE with ADMIN on group).
// Several processes may do it at once (serve and worker started together): losing a race is not
// an error. It is meant for the embedded cluster, whose private socket trusts every role; a
// server reached through DATABASE_URL gets its login roles from a DBA (docs/security.md).
func EnsureLoginRole(ctx context.Context, conn Execer, login, group string) error {
	if !roleName.MatchString(login) || !roleName.MatchString(group) {
		return fmt.Errorf("login role %q for %q: not a plain role name", login, group)
	}
	var groupExists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, group).Scan(&groupExists); err != nil {
		return fmt.Errorf("look up role %s: %w", group, err)
	}
	if !groupExists {
		return fmt.Errorf("role %s does not exist: migrate the database first (dualledger migrate)", group)
	}
	var lastErr error
	for attempt := range 6 {
		ready, exists, err := loginRoleState(ctx, conn, login, group)
		if err != nil {
			return err
		}
		if ready {
			return nil
		}
		stmt := "GRANT " + pgx.Identifier{group}.Sanitize() + " TO " + pgx.Identifier{login}.Sanitize()
		if !exists {
			// One statement would not do: CREATE ROLE ... IN ROLE is refused when the group is
			// missing with a less helpful message than GRANT's. Both in one implicit transaction.
			stmt = "CREATE ROLE " + pgx.Identifier{login}.Sanitize() +
				" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT; " + stmt
		}
		_, lastErr = conn.Exec(ctx, stmt)
		if lastErr == nil {
			continue // checked again at the top
		}
		if !raceError(lastErr) {
			return fmt.Errorf("create login role %s (member of %s): %w", login, group, lastErr)
		}
		// Another process created or granted it at the same moment: look again.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
	return fmt.Errorf("create login role %s (member of %s): %w", login, group, lastErr)
}

// Execer runs statements and queries: a *pgx.Conn or a *pgxpool.Pool.
type Execer interface {
	Querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// loginRoleState reports whether login exists, and whether it is ready: a LOGIN role that is a
// member of group.
func loginRoleState(ctx context.Context, conn Querier, login, group string) (ready, exists bool, err error) {
	var canLogin, member *bool
	err = conn.QueryRow(ctx, `SELECT l.rolcanlogin, pg_has_role(l.oid, g.oid, 'MEMBER')
		FROM pg_roles l LEFT JOIN pg_roles g ON g.rolname = $2 WHERE l.rolname = $1`, login, group).Scan(&canLogin, &member)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, false, nil
	case err != nil:
		return false, false, fmt.Errorf("look up login role %s: %w", login, err)
	case member == nil:
		return false, true, fmt.Errorf("role %s does not exist: migrate the database first (dualledger migrate)", group)
	case canLogin == nil || !*canLogin:
		return false, true, fmt.Errorf("role %s exists but cannot log in; it was not made by dualledger: drop it or use another data dir", login)
	}
	return *member, true, nil
}

// raceError reports whether err is what a concurrent CREATE ROLE or GRANT of the same role
// produces: duplicate_object once the other committed, unique_violation on the catalog index if
// both passed the existence check, or "tuple concurrently updated" on the catalog row.
func raceError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42710", "23505", "XX000", "40001", "40P01":
		return true
	}
	return false
}
