package main

// serve and worker as they are run in production (docs/security.md): their login role is a plain
// member of dualledger_api / dualledger_worker; a superuser login is refused unless --allow-owner.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/pg/pgtest"
	"dualledger/internal/scb/sim"
)

// startService starts the binary with args and DATABASE_URL=url (and the SCBs' configuration),
// and returns it with the path of its stderr log. With serve --json it also returns the address
// it listens on.
func startService(t *testing.T, url string, scbs []*scbSim, args ...string) (*exec.Cmd, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	for _, s := range scbs {
		envID := strings.ReplaceAll(s.id, "-", "_")
		cmd.Env = append(cmd.Env, "SCB_"+envID+"_API_URL="+s.http.URL, "SCB_"+envID+"_API_KEY="+s.key)
	}
	logPath := filepath.Join(t.TempDir(), "service.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	childOfTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%v log:\n%s", args, tail(string(b), 4000))
		}
	})
	addr := ""
	if args[0] == "serve" {
		var v struct {
			Listening string `json:"listening"`
		}
		if err := json.NewDecoder(stdout).Decode(&v); err != nil || v.Listening == "" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			b, _ := os.ReadFile(logPath)
			t.Fatalf("serve did not start: %+v %v\n%s", v, err, b)
		}
		addr = v.Listening
	}
	return cmd, logPath, addr
}

// refusedAs runs the binary with args as url's login role and wants exit status 2 with the
// reason and the way out named.
func refusedAs(t *testing.T, url string, want string, args ...string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v kept running as a privileged login role", args)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), want) || !strings.Contains(string(out), "--allow-owner") {
		t.Errorf("%v: %v, output %q; want exit status 2, %q and --allow-owner", args, err, out, want)
	}
}

func stop(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%v after SIGTERM: %v, want exit status 0", cmd.Args[1:], err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%v did not stop within 30s of SIGTERM", cmd.Args[1:])
	}
}

// TestServicesRunAsPlainMembers: serve and worker refuse a superuser login; serve --worker runs
// with a login role that is a plain member of dualledger_api and dualledger_worker, serves, and
// its in-process worker delivers as dualledger_worker; a login that is only a member of
// dualledger_api cannot run the in-process worker; --allow-owner lets the superuser run (for
// development) with a warning.
func TestServicesRunAsPlainMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	scbs := []*scbSim{startSim(t, "SCB-1", "right-1", sim.Faults{}), startSim(t, "SCB-2", "right-2", sim.Faults{})}

	refusedAs(t, e.db.ConnStr, "is a superuser", "serve", "--addr", "127.0.0.1:0")
	refusedAs(t, e.db.ConnStr, "is a superuser", "worker")

	apiOnly := e.db.LoginRole(t, "dualledger_api")
	cmd := exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--worker")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+apiOnly)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SET ROLE dualledger_worker") {
		t.Errorf("serve --worker as a member of dualledger_api only: %v %q; want it refused at SET ROLE dualledger_worker", err, out)
	}

	both := e.db.LoginRole(t, "dualledger_api", "dualledger_worker")
	srv, _, addr := startService(t, both, scbs, "serve", "--json", "--addr", "127.0.0.1:0", "--worker", "--worker-id", "in-serve",
		"--poll-every", "200ms", "--backoff-base", "50ms")
	res, err := http.Get("http://" + addr + "/healthz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", res, err)
	}
	res.Body.Close()
	e.settle(3, "srv")
	rows := e.count("")
	waitFor(t, "every row FINALIZED by serve's worker", 60*time.Second, func() bool { return e.count("FINALIZED") == rows })
	var workers []string
	r, err := e.db.Pool.Query(context.Background(), `SELECT DISTINCT worker_id FROM dual_ledger_outbox_attempts`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var w string
		if err := r.Scan(&w); err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	if len(workers) != 1 || workers[0] != "in-serve" {
		t.Errorf("attempts by %v, want serve's worker", workers)
	}
	stop(t, srv)

	w, logPath, _ := startService(t, e.db.ConnStr, scbs, "worker", "--allow-owner")
	waitFor(t, "the worker started with --allow-owner", 30*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "delivering")
	})
	stop(t, w)
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "--allow-owner") || !strings.Contains(string(b), "superuser") {
		t.Errorf("no warning about the privileged login role:\n%s", b)
	}
}

// TestServiceSessionLimits: the services' connections never idle in a transaction for more than
// a minute (a session that did would hold a ledger head's row lock), the API's statements are
// bounded, and every connection resolves names in public only.
func TestServiceSessionLimits(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	stricter := d.LoginRole(t, "dualledger_api")
	if _, err := d.Pool.Exec(ctx, `ALTER ROLE `+pgx.Identifier{loginOf(t, stricter)}.Sanitize()+` SET idle_in_transaction_session_timeout = '5s'`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, login, role string
		api               bool
		idle, statement   string
	}{
		{"serve", d.LoginRole(t, "dualledger_api"), "dualledger_api", true, "1min", "5min"},
		{"worker", d.LoginRole(t, "dualledger_worker"), "dualledger_worker", false, "1min", "0"},
		{"serve --db-role ''", d.LoginRole(t, "dualledger_api"), "", true, "1min", "5min"},
		{"a login the DBA bound tighter", stricter, "dualledger_api", true, "5s", "5min"},
	} {
		a := &app{environ: []string{"DATABASE_URL=" + c.login}, out: io.Discard, errOut: io.Discard,
			logger: slog.New(slog.DiscardHandler)}
		pool, release, err := a.open(ctx, openOptions{role: c.role, service: true, api: c.api})
		if err != nil {
			t.Fatalf("%s: %v", c.role, err)
		}
		var idle, statement, path string
		err = pool.QueryRow(ctx, `SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('statement_timeout'),
			current_setting('search_path')`).Scan(&idle, &statement, &path)
		release()
		if err != nil || idle != c.idle || statement != c.statement || path != "public" {
			t.Errorf("%s: idle_in_transaction_session_timeout %q, statement_timeout %q, search_path %q, %v", c.name, idle, statement, path, err)
		}
	}
}

// loginOf is the user of a connection string.
func loginOf(t *testing.T, connStr string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(connStr)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.User
}
