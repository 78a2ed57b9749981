// Command dualledger is a double-entry ledger service on PostgreSQL: posting, hash chain, audit,
// the dual-ledger outbox to member banks, verify-chain and audit. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"dualledger/db"
	"dualledger/internal/ledger"
	"dualledger/internal/pg"
)

// Exit codes (README "Exit codes").
const (
	exitOK       = 0
	exitFindings = 1 // a check found a problem, or a posting was rejected
	exitUsage    = 2 // bad flags or arguments
	exitInfra    = 3 // the database or another dependency failed
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCodeNames are the codes of the --json error envelope of an error that is not a ledger
// rule's (which has its own code): one per exit status.
var exitCodeNames = map[int]string{exitFindings: "failed", exitUsage: "usage", exitInfra: "infrastructure"}

func findings(format string, args ...any) error {
	return &exitError{code: exitFindings, err: fmt.Errorf(format, args...)}
}

func usage(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// app is the state shared by the commands of one invocation.
type app struct {
	started bool // a command's RunE began: errors before it are usage errors (arguments, flags)
	dataDir string
	jsonOut bool
	verbose bool
	out     io.Writer
	errOut  io.Writer
	logger  *slog.Logger
	// environ is the process environment as run was given it (os.Environ()'s shape): commands
	// read their settings through getenv, never from the process directly, so a test or an
	// embedding program can run them with an environment of its own.
	environ []string
	// allowOwner lets serve and worker run with a login role that is a superuser or can act as
	// the schema's owner (--allow-owner, development only).
	allowOwner bool
	// command is the running command's path ("dualledger reconcile scb"): the application_name
	// of its database sessions, so that pg_stat_activity, and the messages that name the holder
	// of a lock, say which command a session belongs to.
	command string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr, environ: environ}
	root := newRoot(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	code := exitInfra
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case !a.started:
		// Cobra refused the arguments, a required flag or the command itself before any work.
		code = exitUsage
	}
	if !a.jsonOut && slices.Contains(args, "--json") {
		a.jsonOut = true // refused before the flags were parsed (an unknown command)
	}
	var le *ledger.Error
	switch {
	case a.jsonOut && errors.As(err, &le):
		_ = json.NewEncoder(stderr).Encode(map[string]any{"error": map[string]any{"code": le.Code, "message": le.Message, "details": le.Details}})
	case a.jsonOut:
		// Every error of every command has the envelope under --json, its code named by the exit
		// status, so that a script reads one shape whatever failed.
		_ = json.NewEncoder(stderr).Encode(map[string]any{"error": map[string]any{
			"code": exitCodeNames[code], "message": err.Error(), "details": map[string]int{"exit_code": code}}})
	default:
		fmt.Fprintln(stderr, "dualledger:", err)
	}
	// A login without the rights a command needs (a read-only or service login for an
	// administrative command) gets PostgreSQL's "permission denied"; say what to do about it.
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgerrcode.InsufficientPrivilege {
		fmt.Fprintln(stderr, "dualledger: this command needs a login with more rights than DATABASE_URL's: administrative commands "+
			"(keys, accounts, outbox repairs, reconciliation resolutions, migrate) run as the schema owner's login "+
			"(deploy/systemd/README.md, docs/security.md)")
	}
	// The operator at the console may see what an API client may not: the cause of an
	// internal or unavailable error.
	if errors.As(err, &le) && (le.Code == ledger.CodeInternal || le.Code == ledger.CodeUnavailable) && errors.Unwrap(le) != nil {
		fmt.Fprintln(stderr, "dualledger: cause:", errors.Unwrap(le))
	}
	return code
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "dualledger",
		Short: "A double-entry ledger on PostgreSQL with a hash-chained audit trail and a dual-ledger outbox",
		Long: `dualledger posts double entries atomically and idempotently, keeps a hash-chained audit trail,
enforces balances in the database, reserves funds with holds (capture, void, expiry), mirrors
postings to member banks (SCBs) through a transactional outbox, imports history with a resumable
backfill, proves the ledger with verify-chain and audit, and reconciles it with each member
bank's own ledger (reconcile, discrepancies, statements). See README.md and docs/.

With no DATABASE_URL every command uses a private PostgreSQL cluster in ./.dualledger/pg
(--data-dir or DUALLEDGER_DATA to move it), started on demand and stopped when the last
command using it exits. With DATABASE_URL set, that server is used and nothing is started.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if cmd.Annotations["daemon"] != "" {
				// Services log at INFO (the access log among it); one-shot commands only warn.
				level = slog.LevelInfo
			}
			if a.verbose {
				level = slog.LevelDebug
			}
			a.logger = slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	defaultDir := a.getenv("DUALLEDGER_DATA")
	if defaultDir == "" {
		defaultDir = pg.DefaultDataDir
	}
	root.PersistentFlags().StringVar(&a.dataDir, "data-dir", defaultDir, "embedded PostgreSQL data directory (env DUALLEDGER_DATA); ignored when DATABASE_URL is set")
	root.PersistentFlags().BoolVar(&a.jsonOut, "json", false, "machine-readable JSON output")
	root.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "debug logging on stderr")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usage("%v (see %s --help)", err, cmd.CommandPath())
	})

	defer markStarted(a, root)
	root.AddCommand(
		newMigrateCmd(a),
		newLedgersCmd(a),
		newAccountsCmd(a),
		newBanksCmd(a),
		newPostCmd(a),
		newEntriesCmd(a),
		newVerifyChainCmd(a),
		newAuditCmd(a),
		newServeCmd(a),
		newDemoCmd(a),
		newBenchCmd(a),
		newScbSimCmd(a),
		newWorkerCmd(a),
		newOutboxCmd(a),
		newSettleCmd(a),
		newSettlementsCmd(a),
		newKeysCmd(a),
		newOperatorLogCmd(a),
		newReconcileCmd(a),
		newDiscrepanciesCmd(a),
		newCheckpointCmd(a),
		newStatementCmd(a),
		newBackfillCmd(a),
		newHoldsCmd(a),
	)
	return root
}

// markStarted wraps every command's RunE so that run can tell usage errors (raised by cobra
// before RunE) from the errors of the work itself.
func markStarted(a *app, c *cobra.Command) {
	if c.RunE != nil {
		run := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			a.started = true
			a.command = cmd.CommandPath()
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markStarted(a, sub)
	}
}

// openOptions say how a command uses the database.
type openOptions struct {
	role     string // SET ROLE after connecting ("" = the login role)
	maxConns int32
	// service marks serve and worker: their login role must be a plain member of their role,
	// never a superuser or a role that can act as the schema's owner (pg.CheckServiceRole),
	// unless --allow-owner. In embedded mode they log in as pg.EmbeddedLogin(role), a plain
	// member that open creates, so the check holds there too.
	service bool
	// mayCreate marks the commands that may start a new, empty embedded cluster (demo, serve,
	// worker, bench, migrate, and those that create a ledger, a bank or a key). Every other
	// command reads or changes a ledger that must exist: with neither DATABASE_URL nor a cluster in
	// the data dir it stops, instead of creating an empty one and reporting on that (an operator
	// whose runbook forgot DATABASE_URL once got an all-clear from an empty database).
	mayCreate bool
	// api marks serve's pool: its statements are bounded too (serviceBounds).
	api bool
	// asItIs marks audit: in embedded mode it migrates as every command does, but leaves a
	// function changed by hand as it is, so that the audit reports it (pg.MigrateKeepingChanges).
	asItIs bool
}

// serviceBounds bounds a service's session: never idle inside a transaction for more than a
// minute (such a session would keep a ledger head's row lock, and every posting of that ledger
// waiting), and, for the API, no statement over 5 minutes (its requests are bounded anyway; the
// worker's reconciliation may run longer statements). A bound the DBA set stricter on the login
// (ALTER ROLE ... SET) is kept.
func serviceBounds(api bool) func(ctx context.Context, conn *pgx.Conn) error {
	return func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT set_config(s.name, s.bound, false)
			  FROM (VALUES ('idle_in_transaction_session_timeout', '60s'), ('statement_timeout', CASE WHEN $1 THEN '5min' END)) AS s(name, bound)
			 WHERE s.bound IS NOT NULL
			   AND (current_setting(s.name)::interval = interval '0' OR current_setting(s.name)::interval > s.bound::interval)`, api)
		if err != nil {
			return fmt.Errorf("bound the session: %w", err)
		}
		return nil
	}
}

// requireDatabase refuses to go on when no database is configured and mayCreate is false:
// DATABASE_URL is empty and the data dir holds no cluster.
func (a *app) requireDatabase(mayCreate bool) error {
	if mayCreate || a.getenv("DATABASE_URL") != "" {
		return nil
	}
	dir := a.dataDir
	if dir == "" {
		dir = pg.DefaultDataDir
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return &exitError{code: exitInfra, err: fmt.Errorf("no database: DATABASE_URL is not set and there is no embedded cluster in %s. "+
		"This command works on an existing ledger and does not create an empty one: set DATABASE_URL "+
		"(or --data-dir / DUALLEDGER_DATA to the cluster's directory)", dir)}
}

// open returns a pool on the ledger database. In embedded mode the schema is migrated first (so
// a newcomer needs no setup); with DATABASE_URL the schema must already be current, because
// migrating a shared server is the operator's decision (`dualledger migrate`). With a role, the
// returned pool runs as that role (SET ROLE after connecting); the schema is checked before that
// pool connects, because the role itself is created by a migration.
func (a *app) open(ctx context.Context, o openOptions) (*pgxpool.Pool, func(), error) {
	if err := a.requireDatabase(o.mayCreate); err != nil {
		return nil, nil, err
	}
	url := a.getenv("DATABASE_URL")
	pool, release, err := pg.Open(ctx, url, a.dataDir, "", a.logger, func(cfg *pgxpool.Config) {
		if o.maxConns > 0 {
			cfg.MaxConns = o.maxConns
		}
		// DATABASE_URL's own application_name wins.
		if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok && a.command != "" {
			cfg.ConnConfig.RuntimeParams["application_name"] = a.command
		}
		if o.service && o.role == "" {
			cfg.AfterConnect = serviceBounds(o.api) // the service runs in this pool (--db-role "")
		}
	})
	if err != nil {
		return nil, nil, &exitError{code: exitInfra, err: err}
	}
	if err := a.ensureSchema(ctx, pool, url == "", o.asItIs, o.role); err != nil {
		release()
		return nil, nil, err
	}
	if o.role == "" {
		if o.service {
			if err := a.checkServiceRole(ctx, pool); err != nil {
				release()
				return nil, nil, err
			}
		}
		return pool, release, nil
	}
	cfg := pool.Config().Copy()
	if url == "" && o.service {
		// The embedded cluster logs in as its superuser; a service gets a login role of its own
		// that is a plain member of its role (trusted on the private socket, like the superuser).
		login := pg.EmbeddedLogin(o.role)
		if err := pg.EnsureLoginRole(ctx, pool, login, o.role); err != nil {
			release()
			return nil, nil, &exitError{code: exitInfra, err: err}
		}
		cfg.ConnConfig.User = login
	}
	role := o.role
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			return fmt.Errorf("SET ROLE %s (grant it to the login role, see docs/security.md): %w", role, err)
		}
		if o.service {
			return serviceBounds(o.api)(ctx, conn)
		}
		return nil
	}
	rolePool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = rolePool.Ping(ctx)
	}
	pool.Close() // the embedded cluster stays up until release
	if err != nil {
		if rolePool != nil {
			rolePool.Close()
		}
		release()
		return nil, nil, &exitError{code: exitInfra, err: fmt.Errorf("open pool as %s: %w", role, err)}
	}
	closeAll := func() {
		rolePool.Close()
		release()
	}
	if o.service {
		if err := a.checkServiceRole(ctx, rolePool); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	return rolePool, closeAll, nil
}

// checkServiceRole refuses (exit 2) a login role that can do more than its service role, unless
// --allow-owner; with it, it warns.
func (a *app) checkServiceRole(ctx context.Context, pool *pgxpool.Pool) error {
	err := pg.CheckServiceRole(ctx, pool)
	var se *pg.ServiceRoleError
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &se):
		return &exitError{code: exitInfra, err: err}
	case a.allowOwner:
		a.logger.Warn("running with a privileged database login role (--allow-owner): a compromise of this process is not contained by the database; development only",
			"login", se.Login, "why", strings.Join(se.Reasons, "; "))
		return nil
	}
	return &exitError{code: exitUsage, err: err}
}

// ensureSchema migrates (embedded) or checks that every migration is applied and unchanged
// (DATABASE_URL). The check runs in the login role, or as role when the login role may SET ROLE
// to it: a login role that is a NOINHERIT member of its service role has no privilege of its own.
func (a *app) ensureSchema(ctx context.Context, pool *pgxpool.Pool, migrate, keepChanges bool, role string) error {
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		return err
	}
	// A connection in the login role (the pool's AfterConnect SET ROLE does not apply to it):
	// migrations need the owner's privileges.
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		return &exitError{code: exitInfra, err: fmt.Errorf("connect: %w", err)}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if migrate {
		run := pg.Migrate
		if keepChanges {
			run = pg.MigrateKeepingChanges
		}
		err := run(ctx, conn, migs, a.migrateLog)
		if err != nil {
			return &exitError{code: exitInfra, err: err}
		}
		return nil
	}
	if role != "" {
		var member bool
		err := conn.QueryRow(ctx, `SELECT coalesce(pg_has_role(session_user, to_regrole($1), 'MEMBER'), false)`, role).Scan(&member)
		if err != nil {
			return &exitError{code: exitInfra, err: fmt.Errorf("check the login role: %w", err)}
		}
		if member {
			if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
				return &exitError{code: exitInfra, err: fmt.Errorf("SET ROLE %s: %w", role, err)}
			}
		}
	}
	states, err := pg.Status(ctx, conn, migs)
	if err != nil {
		return &exitError{code: exitInfra, err: err}
	}
	for _, s := range states {
		if !s.Applied {
			return &exitError{code: exitInfra, err: fmt.Errorf("the database is not migrated (%s is %s): run `dualledger migrate`", s.Name, s.State)}
		}
	}
	if err := pg.CheckChecksums(ctx, conn, migs); err != nil {
		return &exitError{code: exitInfra, err: err}
	}
	// A function changed by hand (its body, settings or grants) is the audit's finding and the
	// next migrate's repair; a command that does not migrate says so loudly rather than run on it
	// without a word (it does not refuse: a stray GRANT must not stop the postings).
	if drifted, err := pg.DriftedFunctions(ctx, conn); err != nil {
		a.logger.Warn("could not compare the schema's functions with the last migrate", "err", err)
	} else if len(drifted) > 0 {
		a.logger.Error("functions changed by hand since the last dualledger migrate: run dualledger audit (function_definitions) and keep its output, "+
			"then dualledger migrate, as the schema owner (docs/runbooks/audit-findings.md)", "functions", strings.Join(drifted, ", "))
	}
	return nil
}

// migrateLog logs pg.Migrate's messages: at info level, but those that need the operator's
// attention (a function changed by hand and repaired, a wait for another session's lock) as
// warnings, which the default log level shows.
func (a *app) migrateLog(format string, args ...any) {
	if rest, ok := strings.CutPrefix(format, pg.WarnPrefix); ok {
		a.logger.Warn(fmt.Sprintf(rest, args...))
		return
	}
	a.logger.Info(fmt.Sprintf(format, args...))
}

// adminConn returns one connection in the login role (for migrate), and a release func;
// mayCreate as in openOptions.
func (a *app) adminConn(ctx context.Context, mayCreate bool) (*pgx.Conn, func(), error) {
	if err := a.requireDatabase(mayCreate); err != nil {
		return nil, nil, err
	}
	pool, release, err := pg.Open(ctx, a.getenv("DATABASE_URL"), a.dataDir, "", a.logger, nil)
	if err != nil {
		return nil, nil, &exitError{code: exitInfra, err: err}
	}
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	pool.Close()
	if err != nil {
		release()
		return nil, nil, &exitError{code: exitInfra, err: fmt.Errorf("connect: %w", err)}
	}
	return conn, func() {
		conn.Close(context.WithoutCancel(ctx))
		release()
	}, nil
}

func dbFS() fs.FS { return db.FS() }

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// getenv is os.Getenv over the environment run was given (the last setting of a name wins, as in
// the process environment).
func (a *app) getenv(name string) string {
	v := ""
	for _, kv := range a.environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}
