package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/pg/pgtest"
)

// cli runs the dualledger binary with DATABASE_URL=dbURL and returns stdout, stderr and the exit
// code.
func cli(t *testing.T, dbURL string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// startServe runs `dualledger serve` on a free loopback port as a plain member of dualledger_api
// (the production setup) and returns its base URL.
func startServe(t *testing.T, d *pgtest.DB, extra ...string) string {
	t.Helper()
	args := append([]string{"serve", "--json", "--addr", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+d.LoginRole(t, "dualledger_api"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	childOfTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("serve log:\n%s", tail(logs.String(), 4000))
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening") {
				line <- sc.Text()
				return
			}
		}
	}()
	select {
	case l := <-line:
		// `"listening": "127.0.0.1:PORT"` (--json prints an indented object)
		_, addr, _ := strings.Cut(l, ":")
		return "http://" + strings.Trim(strings.TrimSpace(addr), `",`)
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start:\n%s", logs.String())
	}
	return ""
}

func httpDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// The operator's path end to end: a key made with the CLI works on a running server at once, a
// revocation with the CLI takes effect within a second, and every act is in the operator log with
// its actor.
func TestKeysOnARunningServer(t *testing.T) {
	d := pgtest.New(t)
	owner := d.ConnStr
	token, stderr, code := cli(t, owner, "keys", "create", "ops", "--scopes", "admin")
	token = strings.TrimSpace(token)
	if code != 0 || !strings.HasPrefix(token, "dl_") || !strings.Contains(stderr, "shown this once") {
		t.Fatalf("keys create: %d %q %q", code, token, stderr)
	}
	base := startServe(t, d)

	if st, body := httpDo(t, "POST", base+"/v1/ledgers", "", `{"id":"BOOKS"}`); st != 401 || !strings.Contains(body, "unauthenticated") {
		t.Fatalf("no key: %d %s", st, body)
	}
	if st, body := httpDo(t, "POST", base+"/v1/ledgers", token, `{"id":"BOOKS"}`); st != 201 {
		t.Fatalf("admin key: %d %s", st, body)
	}
	if st, _ := httpDo(t, "GET", base+"/metrics", "", ""); st != 404 {
		t.Errorf("/metrics on the API port: %d", st)
	}
	// Its sessions say which command they belong to (pg_stat_activity, the holder of a lock).
	var sessions int
	if err := d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dualledger serve'`).Scan(&sessions); err != nil || sessions == 0 {
		t.Errorf("sessions of dualledger serve in pg_stat_activity: %d, %v", sessions, err)
	}

	// A read key made now works at once; revoked, it stops within a second.
	out, _, code := cli(t, owner, "keys", "create", "reader", "--scopes", "read", "--ledger", "BOOKS", "--json")
	var nk struct{ ID, Token string }
	if err := json.Unmarshal([]byte(out), &nk); err != nil || code != 0 {
		t.Fatalf("keys create --json: %d %q %v", code, out, err)
	}
	if st, body := httpDo(t, "GET", base+"/v1/ledgers/BOOKS", nk.Token, ""); st != 200 {
		t.Fatalf("new key: %d %s", st, body)
	}
	if st, _ := httpDo(t, "POST", base+"/v1/ledgers", nk.Token, `{"id":"OTHER"}`); st != 403 {
		t.Errorf("read key creating a ledger: %d", st)
	}
	for _, args := range [][]string{{"keys", "--json"}, {"keys", "list", "--json"}, {"keys", "list"}} {
		list, _, _ := cli(t, owner, args...)
		if strings.Contains(list, nk.Token) || strings.Contains(list, token) || !strings.Contains(list, nk.ID) {
			t.Errorf("%v: %s", args, list)
		}
	}
	if _, stderr, code := cli(t, owner, "keys", "revoke", nk.ID, "--reason", "rotated"); code != 0 {
		t.Fatalf("keys revoke: %d %s", code, stderr)
	}
	revoked := time.Now()
	for {
		st, _ := httpDo(t, "GET", base+"/v1/ledgers/BOOKS", nk.Token, "")
		if st == 401 {
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("the revoked key still answers %d after a second", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Usage errors exit 2 and name the flag; an unknown key id is a finding (1).
	if _, stderr, code := cli(t, owner, "keys", "create", "x", "--scopes", "root"); code != 2 || !strings.Contains(stderr, "scopes") {
		t.Errorf("bad scope: %d %s", code, stderr)
	}
	if _, stderr, code := cli(t, owner, "keys", "create", "x", "--scopes", "admin", "--bank", "SCB-1"); code != 2 {
		t.Errorf("limited admin: %d %s", code, stderr)
	}
	if _, _, code := cli(t, owner, "keys", "revoke", "key_aaaaaaaaaaaaaaaa"); code != 1 {
		t.Errorf("revoke unknown: %d", code)
	}

	// The operator log has each act with its actor; audit verifies its chain.
	out, _, code = cli(t, owner, "operator-log", "--json")
	var acts []struct {
		Actor  string `json:"actor"`
		Action string `json:"action"`
		DBRole string `json:"db_role"`
	}
	if err := json.Unmarshal([]byte(out), &acts); err != nil || code != 0 {
		t.Fatalf("operator-log: %d %v %s", code, err, out)
	}
	var got []string
	for _, a := range acts {
		got = append(got, a.Action+" "+strings.SplitN(a.Actor, ":", 2)[0]+" "+a.DBRole)
	}
	want := []string{"key.create cli " + dbUser(t, owner), "ledger.create key dualledger_api", "key.create cli " + dbUser(t, owner),
		"key.revoke cli " + dbUser(t, owner)}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("operator log:\n got %v\nwant %v", got, want)
	}
	if _, stderr, code := cli(t, owner, "audit"); code != 0 {
		t.Errorf("audit: %d %s", code, stderr)
	}
}

// dbUser is the login role of a connection string.
func dbUser(t *testing.T, conn string) string {
	t.Helper()
	for _, f := range strings.Fields(conn) {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			return strings.Trim(v, "'")
		}
	}
	t.Fatalf("no user in %q", conn)
	return ""
}

// The read-only commands work with a login that is only a member of dualledger_readonly (the
// reporting role deploy/systemd/README.md gives operators), and the administrative ones refuse it.
func TestReadonlyLoginRunsTheReports(t *testing.T) {
	d := pgtest.New(t)
	owner := d.ConnStr
	for _, args := range [][]string{
		{"ledgers", "create", "BOOKS"},
		{"accounts", "create", "--ledger", "BOOKS", "--currency", "USD", "issuance", "--overdraft", "unlimited"},
		{"accounts", "create", "--ledger", "BOOKS", "--currency", "USD", "alice"},
		{"post", "--ledger", "BOOKS", "--debit", "issuance", "--credit", "alice", "--amount", "5.00", "--currency", "USD", "--type", "funding", "--ref", "f1"},
	} {
		if _, stderr, code := cli(t, owner, args...); code != 0 {
			t.Fatalf("%v: %d %s", args, code, stderr)
		}
	}
	ro := d.LoginRole(t, "dualledger_readonly")
	for _, args := range [][]string{{"audit"}, {"verify-chain"}, {"outbox", "status"}, {"operator-log"}, {"accounts", "--ledger", "BOOKS"}, {"entries", "--ledger", "BOOKS"}} {
		if out, stderr, code := cli(t, ro, args...); code != 0 {
			t.Errorf("%v as a readonly login: %d %s %s", args, code, stderr, out)
		}
	}
	for _, args := range [][]string{{"keys", "create", "x", "--scopes", "admin"}, {"ledgers", "create", "EVIL"},
		{"accounts", "update", "--ledger", "BOOKS", "alice", "--status", "frozen", "--reason", "x"}} {
		if _, _, code := cli(t, ro, args...); code == 0 {
			t.Errorf("%v as a readonly login succeeded", args)
		}
	}
}

// run takes its environment as an argument: the database named there is the one used, whatever
// the process environment says.
func TestRunTakesItsEnvironment(t *testing.T) {
	d := pgtest.New(t)
	var out, errb bytes.Buffer
	env := []string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/nothing", "DATABASE_URL=" + d.ConnStr}
	if code := run(context.Background(), []string{"ledgers", "create", "ENVTEST"}, env, &out, &errb); code != 0 {
		t.Fatalf("ledgers create: %d %s", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"ledgers"}, env, &out, &errb); code != 0 || !strings.Contains(out.String(), "ENVTEST") {
		t.Fatalf("ledgers: %d %q %s", code, out.String(), errb.String())
	}
}

// TestParseSince: operator-log --since takes an RFC 3339 time, a UTC date, or a duration back
// from now (the failed-backfill runbook's `--since 1h` was refused before).
func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-12-01T09:00:00Z": time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		"2026-12-01":           time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		"1h":                   now.Add(-time.Hour),
		"90m":                  now.Add(-90 * time.Minute),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1h", "0s", "yesterday", "1d"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestDriftedFunctionsAreSaid: a command that checks the schema without migrating it (any
// command with DATABASE_URL, the services included) says loudly that a function was changed by
// hand since the last migrate, and still runs; migrate repairs it, and the warning is gone.
func TestDriftedFunctionsAreSaid(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, `GRANT EXECUTE ON FUNCTION outbox_requeue(text, text, bigint, text, boolean, text) TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := cli(t, d.ConnStr, "ledgers")
	if code != 0 || !strings.Contains(stderr, "functions changed by hand since the last dualledger migrate") || !strings.Contains(stderr, "outbox_requeue") {
		t.Errorf("ledgers list on a drifted schema: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := cli(t, d.ConnStr, "migrate"); code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := cli(t, d.ConnStr, "ledgers"); code != 0 || strings.Contains(stderr, "changed by hand") {
		t.Errorf("after migrate: exit %d\n%s", code, stderr)
	}
}
