package auth_test

// Adversarial review of issue 6 (the keyring). These tests live in their own file and define the
// package's TestMain because internal/auth had no tests on a database before.

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/auth"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// gatedDB is a pool whose one armed single-key look-up (auth.Get: "... WHERE id = $1") pauses
// after it has read the row, until the test lets it go: the interleaving of a request that looks
// up a key it has not seen with a revocation and the refresher's reload.
type gatedDB struct {
	pool    *pgxpool.Pool
	armed   atomic.Bool
	fetched chan struct{}
	release chan struct{}
}

func (g *gatedDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return g.pool.Exec(ctx, sql, args...)
}

func (g *gatedDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return g.pool.Query(ctx, sql, args...)
}

func (g *gatedDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	row := g.pool.QueryRow(ctx, sql, args...)
	if strings.Contains(sql, "WHERE id = $1") && g.armed.CompareAndSwap(true, false) {
		return gatedRow{Row: row, g: g}
	}
	return row
}

type gatedRow struct {
	pgx.Row
	g *gatedDB
}

func (r gatedRow) Scan(dest ...any) error {
	err := r.Row.Scan(dest...) // the key is read here, still active
	close(r.g.fetched)
	<-r.g.release
	return err
}

// TestAdversarialReviewRevokedKeyResurrectedByLookupRace: a request with a key the keyring has
// not loaded yet looks it up (Keyring.lookup). If the key is revoked, and the refresher reloads,
// between that look-up's read and its insertion into the map, the stale active copy is inserted
// after the reload. The keyring's fingerprint already matches the database, so no later reload
// replaces the map: the revoked key is accepted for as long as no other key is created or revoked.
func TestAdversarialReviewRevokedKeyResurrectedByLookupRace(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	g := &gatedDB{pool: d.Pool, fetched: make(chan struct{}), release: make(chan struct{})}
	kr := auth.NewKeyring(g, time.Hour, nil)
	if err := kr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	// A key created after the server's last reload (the CLI on another host, say), then stolen.
	nk, err := auth.Create(ctx, d.Pool, "cli:test", auth.Spec{Name: "soon stolen", Scopes: []string{auth.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}

	g.armed.Store(true)
	first := make(chan error, 1)
	go func() {
		_, err := kr.Authenticate(ctx, nk.Token) // the thief's first request: a look-up
		first <- err
	}()
	select {
	case <-g.fetched:
	case <-time.After(10 * time.Second):
		t.Fatal("the look-up never happened")
	}
	// Meanwhile the operator revokes the key and the server's refresher reloads (every 500 ms).
	if _, err := auth.Revoke(ctx, d.Pool, "cli:test", nk.ID, "stolen"); err != nil {
		t.Fatal(err)
	}
	if err := kr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	<-first // this one request may pass: the key was active when it was read

	// Every later refresh: nothing changed in api_keys since the last reload, so nothing reloads.
	for range 3 {
		if err := kr.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k, err := kr.Authenticate(ctx, nk.Token); err == nil {
		t.Errorf("REGRESSION: key %s (scopes %v) was revoked, and the keyring reloaded 4 times since, but its token is still "+
			"accepted: Keyring.lookup inserted the copy it read before the revocation after Reload had already replaced the "+
			"map, and Reload skips reloading while the fingerprint is unchanged. A revoked (stolen) admin key then works "+
			"until some other key is created or revoked.", k.ID, k.Scopes)
	}
}

// The property the race above breaks, without the race: a revocation is seen by the next reload,
// also for a key the keyring learnt by a look-up.
func TestAdversarialReviewRevocationAfterLookupHolds(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	kr := auth.NewKeyring(d.Pool, time.Hour, nil)
	if err := kr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	nk, err := auth.Create(ctx, d.Pool, "cli:test", auth.Spec{Name: "looked up", Scopes: []string{auth.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Authenticate(ctx, nk.Token); err != nil {
		t.Fatalf("a new key on its first request: %v", err)
	}
	if _, err := auth.Revoke(ctx, d.Pool, "cli:test", nk.ID, "rotated"); err != nil {
		t.Fatal(err)
	}
	if err := kr.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Authenticate(ctx, nk.Token); err != auth.ErrBadToken {
		t.Errorf("revoked key after a reload: %v, want ErrBadToken", err)
	}
	// Tokens that differ from a valid one in any way are refused (and never reach the database
	// as anything but a primary-key probe).
	nk2, err := auth.Create(ctx, d.Pool, "cli:test", auth.Spec{Name: "valid", Scopes: []string{auth.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		nk2.Token[:len(nk2.Token)-1], nk2.Token + "A", strings.ToUpper(nk2.Token), " " + nk2.Token,
		nk2.Token[:len(nk2.Token)-1] + string(nk2.Token[len(nk2.Token)-1]^1), "dl_" + nk2.ID[4:] + "_" + strings.Repeat("A", 43),
	} {
		if _, err := kr.Authenticate(ctx, bad); err != auth.ErrBadToken {
			t.Errorf("token %q: %v, want ErrBadToken", bad, err)
		}
	}
}
