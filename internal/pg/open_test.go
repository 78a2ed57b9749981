package pg_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dualledger/internal/pg"
	"dualledger/internal/pgembed"
)

// TestEmbeddedOpenConcurrent: several Opens of one embedded data dir at once share one server,
// create the database once (losing the CREATE DATABASE race is not an error), and the server
// stops when the last pool is released. The launcher itself is tested in internal/pgembed.
func TestEmbeddedOpenConcurrent(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dataDir := openTestDataDir(t)
	const dbName = `ledger "test" db`

	const n = 4
	var (
		wg       sync.WaitGroup
		releases [n]func()
		errs     [n]error
	)
	for i := range n {
		wg.Go(func() {
			pool, rel, err := pg.Open(ctx, "", dataDir, dbName, nil, nil)
			if err != nil {
				errs[i] = err
				return
			}
			releases[i] = rel
			var got string
			if err := pool.QueryRow(ctx, "select current_database()").Scan(&got); err != nil {
				errs[i] = err
			} else if got != dbName {
				errs[i] = fmt.Errorf("current_database() = %q", got)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	for _, rel := range releases {
		if rel != nil {
			rel()
			rel() // idempotent
		}
	}
	if got := openTestServerPID(t, dataDir); got != 0 {
		t.Fatalf("server (pid %d) still running after every pool was released", got)
	}
}

// openTestDataDir returns a data dir path (not yet created) in a fresh directory that the
// postgres user can traverse (t.TempDir()'s parent is 0700, and as root the server runs as
// postgres). Cleanup stops a server a failing test left behind the way any last user does, by
// joining it and releasing it, then removes everything.
func openTestDataDir(t *testing.T) string {
	t.Helper()
	if _, err := pgembed.FindBinDir(); err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	base, err := os.MkdirTemp("", "dualledger-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(base, "pg")
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(dataDir, "postmaster.pid")); err == nil {
			t.Logf("stopping leftover server in %s", dataDir)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if c, err := pgembed.Start(ctx, pgembed.Options{DataDir: dataDir}); err != nil {
				t.Logf("join leftover server: %v", err)
			} else if err := c.Release(ctx); err != nil {
				t.Logf("stop leftover server: %v", err)
			}
		}
		if err := os.RemoveAll(base); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return dataDir
}

// openTestServerPID returns the PID in postmaster.pid, or 0 if there is none (the server is
// stopped: pg_ctl stop -w returns only after it is removed).
func openTestServerPID(t *testing.T, dataDir string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(data), "\n", 2)[0])
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	return pid
}
