// Package pg owns dualledger's connection to PostgreSQL and its schema: the connection pool
// (Open: a server named by DATABASE_URL, or the private cluster that internal/pgembed launches),
// the migration runner and the checks that guard it, and the database roles the services log in
// as. Launching PostgreSQL processes is internal/pgembed's business, not this package's.
package pg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/pgembed"
)

const (
	// DefaultDBName is the database Open uses when dbName is empty.
	DefaultDBName = "dualledger"
	// DefaultDataDir is the embedded cluster's data dir when dataDir is empty.
	DefaultDataDir = ".dualledger/pg"
)

// SQLSTATEs a concurrent CREATE DATABASE of the same name can produce:
// duplicate_database if the other one committed before our name check,
// unique_violation on pg_database's name index if both passed the check.
const (
	sqlstateDuplicateDatabase = "42P04"
	sqlstateUniqueViolation   = "23505"
)

// Open returns a pgx pool for the dualledger database.
// If databaseURL is non-empty it is used as is (nothing is started).
// Otherwise the embedded cluster in dataDir (default DefaultDataDir) is
// started (or reused) and the database named dbName (default DefaultDBName)
// is created if missing; the returned release func closes the pool and
// releases the embedded cluster. configure, if non-nil, may adjust the pool
// config before the pool is created. The release func is safe to call more
// than once.
func Open(ctx context.Context, databaseURL, dataDir, dbName string, logger *slog.Logger, configure func(*pgxpool.Config)) (*pgxpool.Pool, func(), error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if databaseURL != "" {
		pool, err := newPool(ctx, databaseURL, configure)
		if err != nil {
			return nil, nil, fmt.Errorf("open DATABASE_URL: %w", err)
		}
		return pool, pool.Close, nil
	}

	if dbName == "" {
		dbName = DefaultDBName
	}
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	emb, err := pgembed.Start(ctx, pgembed.Options{DataDir: dataDir, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	releaseEmbedded := func() {
		// Release ignores cancellation itself; WithoutCancel only keeps
		// ctx's values without pinning its deadline.
		if err := emb.Release(context.WithoutCancel(ctx)); err != nil {
			logger.Error("release embedded postgres", "err", err)
		}
	}
	if err := EnsureDatabase(ctx, emb.ConnString("postgres"), dbName); err != nil {
		releaseEmbedded()
		return nil, nil, err
	}
	pool, err := newPool(ctx, emb.ConnString(dbName), configure)
	if err != nil {
		releaseEmbedded()
		return nil, nil, fmt.Errorf("open embedded database %q: %w", dbName, err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			// Close the pool first: pg_ctl stop -m fast would otherwise
			// cut our own connections.
			pool.Close()
			releaseEmbedded()
		})
	}
	return pool, release, nil
}

// EnsureDatabase creates the database name unless it exists, connecting with
// adminConnString (a superuser connection to an existing database such as
// "postgres"). Several processes may race to create it; losing the race is
// not an error.
func EnsureDatabase(ctx context.Context, adminConnString, name string) error {
	conn, err := ConnectAdmin(ctx, adminConnString)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var one int
	err = conn.QueryRow(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", name).Scan(&one)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("check database %q exists: %w", name, err)
	}
	// CREATE DATABASE takes no parameters, hence the quoted identifier.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == sqlstateDuplicateDatabase || pgErr.Code == sqlstateUniqueViolation) {
			// Another process created it at the same moment; both
			// errors are raised only after its creation committed.
			return nil
		}
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// ConnectAdmin opens a single connection for administrative statements, with
// a bounded connect time so a wedged server fails the command instead of
// hanging it.
func ConnectAdmin(ctx context.Context, connString string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, connString)
	if err != nil {
		return nil, fmt.Errorf("connect for database administration: %w", err)
	}
	return conn, nil
}

// PinSearchPath makes every connection of cc resolve unqualified names in schema public only
// (pg_catalog is always searched first), unless the connection string chose a search_path
// itself. PostgreSQL's default, "$user", public, puts first a schema named after the role that
// connects: whoever may CREATE a schema in the database could then give the owner's session a
// dualledger_schema_version, a create_api_key or any function of its own before the real one,
// and have the owner run it (the migration runner, the CLI). Every connection the program makes
// derives from Open's pool, so this one place covers them all.
func PinSearchPath(cc *pgx.ConnConfig) {
	if _, ok := cc.RuntimeParams["search_path"]; ok {
		return
	}
	if strings.Contains(cc.RuntimeParams["options"], "search_path") {
		return
	}
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["search_path"] = "public"
}

// newPool builds a pool and checks that a connection works, so that a bad
// URL or an unreachable server is reported by Open rather than by the first
// query.
func newPool(ctx context.Context, connString string, configure func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err)
	}
	PinSearchPath(cfg.ConnConfig)
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("create pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping: %w", err)
	}
	return pool, nil
}
