// Package pgtest gives each test its own freshly migrated PostgreSQL database.
//
// The server is DATABASE_URL when set (its user must be allowed to CREATE DATABASE), otherwise an
// embedded cluster shared by all test processes in $DUALLEDGER_TEST_DATA (default
// <tmp>/dualledger-test/pg). The migrations are applied once to a template database named after
// their checksum; each test then gets `CREATE DATABASE ... TEMPLATE`, which takes milliseconds,
// and drops it when it ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/db"
	"dualledger/internal/pg"
	"dualledger/internal/pgembed"
)

// Server is the PostgreSQL server of one test process.
type Server struct {
	admin    string // connection string to an existing database, for CREATE/DROP DATABASE
	connFor  func(dbname string) string
	template string
	release  func()
}

var (
	mu     sync.Mutex
	server *Server
	err0   error
)

// Main wraps testing.M.Run: it stops the embedded cluster (if this process was its last user)
// after the tests. Use it from TestMain in every package that calls New.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main without the exit, for a TestMain that has more to clean up.
func Run(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	if server != nil && server.release != nil {
		server.release()
	}
	mu.Unlock()
	return code
}

func get(ctx context.Context) (*Server, error) {
	mu.Lock()
	defer mu.Unlock()
	if server != nil || err0 != nil {
		return server, err0
	}
	server, err0 = start(ctx)
	return server, err0
}

func start(ctx context.Context) (*Server, error) {
	s := &Server{}
	if url := os.Getenv("DATABASE_URL"); url != "" {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
		}
		s.admin = url
		s.connFor = func(dbname string) string {
			c := cfg.Copy()
			c.Database = dbname
			return connString(c)
		}
	} else {
		dir := os.Getenv("DUALLEDGER_TEST_DATA")
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "dualledger-test", "pg")
		}
		emb, err := pgembed.Start(ctx, pgembed.Options{DataDir: dir})
		if err != nil {
			return nil, err
		}
		s.admin = emb.ConnString("postgres")
		s.connFor = emb.ConnString
		s.release = func() {
			if err := emb.Release(context.Background()); err != nil {
				log.Printf("pgtest: release embedded cluster: %v", err)
			}
		}
	}
	tpl, err := s.ensureTemplate(ctx)
	if err != nil {
		if s.release != nil {
			s.release()
		}
		return nil, err
	}
	s.template = tpl
	return s, nil
}

// ensureTemplate creates and migrates the template database once per migration set, under an
// advisory lock so that parallel test processes do it once; a comment marks it complete.
func (s *Server) ensureTemplate(ctx context.Context) (string, error) {
	migs, err := pg.LoadMigrations(db.FS())
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "bookkeeping %d\n", pg.BookkeepingVersion)
	for _, m := range migs {
		h.Write([]byte(m.Name))
		h.Write([]byte(m.SQL))
	}
	name := "dltpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	admin, err := pg.ConnectAdmin(ctx, s.admin)
	if err != nil {
		return "", err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(hashtext('dualledger pgtest template'))"); err != nil {
		return "", fmt.Errorf("lock template: %w", err)
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext('dualledger pgtest template'))") //nolint:errcheck

	var comment *string
	err = admin.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`, name).Scan(&comment)
	switch {
	case err == nil && comment != nil && *comment == "ready":
		return name, nil
	case err == nil:
		// Left half-built by a crashed run.
		if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop stale template: %w", err)
		}
	case err != pgx.ErrNoRows:
		return "", fmt.Errorf("look up template: %w", err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	conn, err := pgx.Connect(ctx, s.connFor(name))
	if err != nil {
		return "", fmt.Errorf("connect to template: %w", err)
	}
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		conn.Close(context.Background())
		return "", fmt.Errorf("migrate template: %w", err)
	}
	conn.Close(context.Background())
	if _, err := admin.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{name}.Sanitize()+" IS 'ready'"); err != nil {
		return "", fmt.Errorf("mark template: %w", err)
	}
	return name, nil
}

// DB is one test's database.
type DB struct {
	Name    string
	ConnStr string
	Pool    *pgxpool.Pool
}

// New creates a migrated database for t (dropped when t ends) and a pool on it.
func New(t testing.TB) *DB {
	t.Helper()
	return NewWithConfig(t, nil)
}

// NewWithConfig is New with a hook to adjust the pool configuration.
func NewWithConfig(t testing.TB, configure func(*pgxpool.Config)) *DB {
	t.Helper()
	return newDB(t, "", configure)
}

// NewEmpty creates an empty (unmigrated) UTF8 database for t, for tests of the migrations
// themselves.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	return newDB(t, "template0", nil)
}

func newDB(t testing.TB, template string, configure func(*pgxpool.Config)) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := get(ctx)
	if err != nil {
		t.Fatalf("pgtest: no PostgreSQL for tests: %v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "dltest_" + hex.EncodeToString(rnd[:])
	admin, err := pg.ConnectAdmin(ctx, s.admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer admin.Close(context.Background())
	if template == "" {
		template = s.template
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{template}.Sanitize()+" ENCODING 'UTF8'"); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	connStr := s.connFor(name)
	cfg, err := pgxpool.ParseConfig(connStr)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns = 16
	if configure != nil {
		configure(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		admin, err := pg.ConnectAdmin(ctx, s.admin)
		if err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	return &DB{Name: name, ConnStr: connStr, Pool: pool}
}

// Conn connects to the database as the server's superuser (tests that tamper with rows).
func (d *DB) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), d.ConnStr)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// LoginRole creates a login role for t, a plain member of groups (e.g. "dualledger_worker"): no
// attribute beyond LOGIN, a random password. It returns a connection string to d as that role.
// This is the production setup of docs/security.md; the role is dropped when t ends.
func (d *DB) LoginRole(t testing.TB, groups ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := "dltest_login_" + hex.EncodeToString(rnd[:6])
	password := hex.EncodeToString(rnd[:])
	conn := d.Conn(t)
	// Roles belong to the cluster, which parallel test processes share: a unique name, and a
	// password in case the server of DATABASE_URL does not trust local connections.
	if _, err := conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("pgtest: create login role: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := get(ctx)
		if err != nil {
			return
		}
		admin, err := pg.ConnectAdmin(ctx, s.admin)
		if err != nil {
			t.Errorf("pgtest: drop role %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Errorf("pgtest: drop role %s: %v", name, err)
		}
	})
	for _, g := range groups {
		if _, err := conn.Exec(ctx, "GRANT "+pgx.Identifier{g}.Sanitize()+" TO "+pgx.Identifier{name}.Sanitize()); err != nil {
			t.Fatalf("pgtest: grant %s to the login role: %v", g, err)
		}
	}
	cfg, err := pgx.ParseConfig(d.ConnStr)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.User, cfg.Password = name, password
	return connString(cfg)
}

// PoolAs returns a pool on d that logs in as a new plain member of role (LoginRole) and SETs ROLE
// to it on every connection, as `dualledger serve` and `dualledger worker` do. Closed when t ends.
func (d *DB) PoolAs(t testing.TB, role string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(d.LoginRole(t, role))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns = 16
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize())
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("pgtest: pool as %s: %v", role, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// connString renders a pgx config back to a keyword/value connection string.
func connString(c *pgx.ConnConfig) string {
	parts := []string{
		"host=" + quote(c.Host),
		fmt.Sprintf("port=%d", c.Port),
		"user=" + quote(c.User),
		"dbname=" + quote(c.Database),
	}
	if c.Password != "" {
		parts = append(parts, "password="+quote(c.Password))
	}
	if c.TLSConfig == nil {
		parts = append(parts, "sslmode=disable")
	}
	return strings.Join(parts, " ")
}

func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
