package pgembed

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperDataDirEnv makes the test binary act as a second process using the
// embedded cluster (see TestEmbeddedHelperProcess).
const helperDataDirEnv = "DUALLEDGER_PG_HELPER_DATADIR"

// testDataDir returns a data dir path (not yet created) in a fresh directory
// that the postgres user can traverse. t.TempDir() is not usable: its parent
// is 0700, and when tests run as root the server runs as postgres. Cleanup
// stops any server left behind by a failing test, then removes everything.
func testDataDir(t *testing.T, elems ...string) string {
	t.Helper()
	binDir, err := FindBinDir()
	if err != nil {
		t.Skipf("no PostgreSQL binaries: %v", err)
	}
	base, err := os.MkdirTemp("", "dualledger-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(append(append([]string{base}, elems...), "pg")...)
	t.Cleanup(func() {
		if fileExists(filepath.Join(dataDir, "postmaster.pid")) {
			t.Logf("stopping leftover server in %s", dataDir)
			runAs, err := lookupServerUser()
			if err == nil {
				e := &Cluster{binDir: binDir, dataDir: dataDir, runAs: runAs, env: childEnv(runAs)}
				out, err := e.command(context.Background(), "pg_ctl", "stop", "-D", dataDir, "-m", "immediate", "-w").CombinedOutput()
				if err != nil {
					t.Logf("pg_ctl stop: %v: %s", err, out)
				}
			}
		}
		_ = os.Remove(socketDirFor(dataDir))
		if err := os.RemoveAll(base); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	return dataDir
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func startEmbedded(t *testing.T, ctx context.Context, dataDir string) *Cluster {
	t.Helper()
	e, err := Start(ctx, Options{DataDir: dataDir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return e
}

func release(t *testing.T, e *Cluster) {
	t.Helper()
	if err := e.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// postmasterPID returns the PID in postmaster.pid, or 0 if there is none
// (the server is stopped: pg_ctl stop -w returns only after it is removed).
func postmasterPID(t *testing.T, dataDir string) int {
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

func queryString(t *testing.T, ctx context.Context, connString, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestEmbeddedStartConnectRelease(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testDataDir(t)

	e := startEmbedded(t, ctx, dataDir)
	if !e.startedHere {
		t.Error("first handle should have started the server")
	}
	if e.SocketDir() != dataDir {
		t.Errorf("SocketDir = %q, want the data dir %q", e.SocketDir(), dataDir)
	}
	if got := queryString(t, ctx, e.ConnString("postgres"), "select (1)::text"); got != "1" {
		t.Errorf("select 1 = %q", got)
	}
	for setting, want := range map[string]string{
		"listen_addresses":        "",
		"lc_collate":              "C",
		"server_encoding":         "UTF8",
		"max_connections":         "300",
		"shared_buffers":          "256MB",
		"fsync":                   "on",
		"synchronous_commit":      "on",
		"unix_socket_permissions": "0700",
	} {
		if got := queryString(t, ctx, e.ConnString("postgres"), "show "+setting); got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if hasPgStatStatements(e.binDir) {
		if got := queryString(t, ctx, e.ConnString("postgres"), "show shared_preload_libraries"); got != "pg_stat_statements" {
			t.Errorf("shared_preload_libraries = %q", got)
		}
	}
	if postmasterPID(t, dataDir) == 0 {
		t.Fatal("postmaster.pid missing while running")
	}
	// The locks and the log are beside the data dir, named after it: another data dir in the
	// same parent shares none of them.
	for _, suffix := range []string{".launcher.lock", ".inuse.lock", ".log"} {
		if _, err := os.Lstat(dataDir + suffix); err != nil {
			t.Errorf("%s: %v", dataDir+suffix, err)
		}
	}
	for _, shared := range []string{"launcher.lock", "inuse.lock"} {
		if _, err := os.Lstat(filepath.Join(filepath.Dir(dataDir), shared)); err == nil {
			t.Errorf("%s is shared by every data dir of the parent", shared)
		}
	}

	release(t, e)
	if pid := postmasterPID(t, dataDir); pid != 0 {
		t.Errorf("server (pid %d) still running after the only handle was released", pid)
	}
	if err := e.Release(ctx); err != nil {
		t.Errorf("second Release: %v", err)
	}
}

func TestEmbeddedConcurrentHandlesShareOneServer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testDataDir(t)

	// Two handles starting at the same moment, each with its own lock fds,
	// as two processes would.
	var (
		wg      sync.WaitGroup
		handles [2]*Cluster
		errs    [2]error
		startCh = make(chan struct{})
	)
	for i := range handles {
		wg.Go(func() {
			<-startCh
			handles[i], errs[i] = Start(ctx, Options{DataDir: dataDir})
		})
	}
	close(startCh)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
	}
	first, second := handles[0], handles[1]
	if first.startedHere == second.startedHere {
		t.Fatalf("exactly one handle should have started the server (got %v, %v)", first.startedHere, second.startedHere)
	}
	pid := postmasterPID(t, dataDir)
	for _, e := range handles {
		if got := queryString(t, ctx, e.ConnString("postgres"), "select pg_backend_pid()::text"); got == "" {
			t.Fatal("no backend pid")
		}
	}

	release(t, first)
	if got := postmasterPID(t, dataDir); got != pid {
		t.Fatalf("after releasing the first handle postmaster pid = %d, want %d (still running)", got, pid)
	}
	if got := queryString(t, ctx, second.ConnString("postgres"), "select 'still up'"); got != "still up" {
		t.Fatalf("got %q", got)
	}

	release(t, second)
	if got := postmasterPID(t, dataDir); got != 0 {
		t.Fatalf("server (pid %d) still running after the last handle was released", got)
	}
}

func TestEmbeddedReusesInitialisedCluster(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testDataDir(t)

	e := startEmbedded(t, ctx, dataDir)
	conn, err := pgx.Connect(ctx, e.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "create table survives_restart (v text); insert into survives_restart values ('kept')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	ino := inode(t, filepath.Join(dataDir, "PG_VERSION"))
	release(t, e)
	if postmasterPID(t, dataDir) != 0 {
		t.Fatal("server still running after release")
	}

	e = startEmbedded(t, ctx, dataDir)
	if !e.startedHere {
		t.Error("second start should have started the (stopped) server again")
	}
	if got := inode(t, filepath.Join(dataDir, "PG_VERSION")); got != ino {
		t.Errorf("PG_VERSION was recreated (inode %d -> %d): initdb ran again", ino, got)
	}
	if got := queryString(t, ctx, e.ConnString("postgres"), "select v from survives_restart"); got != "kept" {
		t.Errorf("got %q", got)
	}
	release(t, e)
	if postmasterPID(t, dataDir) != 0 {
		t.Fatal("server still running after release")
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestEmbeddedLongPathUsesShortSocketDir(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// Nested, not-yet-existing dirs: also checks that they are created
	// traversable for the server user.
	dataDir := testDataDir(t, strings.Repeat("long-directory-name-", 4), strings.Repeat("x", 40))
	if len(filepath.Join(dataDir, ".s.PGSQL.5432")) <= maxSocketPath {
		t.Fatalf("test data dir %q is not long enough", dataDir)
	}

	e := startEmbedded(t, ctx, dataDir)
	if want := socketDirFor(dataDir); e.SocketDir() != want || !strings.HasPrefix(want, "/tmp/dualledger-") || len(want) != len("/tmp/dualledger-")+12 {
		t.Errorf("SocketDir = %q, want the short dir %q", e.SocketDir(), want)
	}
	if !fileExists(filepath.Join(e.SocketDir(), ".s.PGSQL.5432")) {
		t.Errorf("no socket in %s", e.SocketDir())
	}
	fi, err := os.Stat(e.SocketDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode %v, want 0700", fi.Mode().Perm())
	}
	if got := queryString(t, ctx, e.ConnString("postgres"), "select current_setting('unix_socket_directories')"); got != e.SocketDir() {
		t.Errorf("unix_socket_directories = %q", got)
	}
	release(t, e)
	if postmasterPID(t, dataDir) != 0 {
		t.Fatal("server still running after release")
	}
	if _, err := os.Stat(e.SocketDir()); !os.IsNotExist(err) {
		t.Errorf("short socket dir not removed after stop: %v", err)
	}
}

func TestEmbeddedRecoversFromHalfInitialisedDir(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testDataDir(t)
	parent := filepath.Dir(dataDir)
	// What a crash during an earlier first start could leave: a data dir
	// without PG_VERSION, and our temporary initdb dir.
	for _, dir := range []string{dataDir, filepath.Join(parent, ".pg.initdb")} {
		if err := os.MkdirAll(filepath.Join(dir, "base"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "postgresql.conf"), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	e := startEmbedded(t, ctx, dataDir)
	defer release(t, e)
	if got := queryString(t, ctx, e.ConnString("postgres"), "select 'ok'"); got != "ok" {
		t.Fatalf("got %q", got)
	}
	aside, _ := filepath.Glob(dataDir + ".incomplete-*")
	if len(aside) != 1 || !fileExists(filepath.Join(aside[0], "postgresql.conf")) {
		t.Errorf("incomplete data dir not moved aside: %v", aside)
	}
	if fileExists(filepath.Join(parent, ".pg.initdb")) {
		t.Error("leftover temporary initdb dir not removed")
	}
}

func TestEmbeddedRefusesUntraversableParent(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("only relevant when running as root")
	}
	dataDir := testDataDir(t, "private")
	private := filepath.Dir(filepath.Dir(dataDir))
	if err := os.MkdirAll(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(testContext(t), Options{DataDir: dataDir})
	if err == nil || !strings.Contains(err.Error(), private) || !strings.Contains(err.Error(), "not traversable") {
		t.Fatalf("want an error naming %s, got %v", private, err)
	}
}

// TestEmbeddedCrashedUserDoesNotKeepServer runs a real second process that
// joins the cluster and is then killed: its lock must vanish with it.
func TestEmbeddedCrashedUserDoesNotKeepServer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testDataDir(t)

	e := startEmbedded(t, ctx, dataDir)
	pid := postmasterPID(t, dataDir)

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestEmbeddedHelperProcess$")
	cmd.Env = append(os.Environ(), helperDataDirEnv+"="+dataDir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready started=false" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper: %q, %v", line, err)
	}

	// The helper still uses the server, so our release must not stop it.
	release(t, e)
	if got := postmasterPID(t, dataDir); got != pid {
		t.Fatalf("server stopped (pid %d -> %d) although the helper process still uses it", pid, got)
	}

	// Crash the helper: the kernel drops its shared lock, so the next
	// user's release finds nobody left and stops the server.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	e = startEmbedded(t, ctx, dataDir)
	if e.startedHere {
		t.Error("server should still have been running")
	}
	release(t, e)
	if got := postmasterPID(t, dataDir); got != 0 {
		t.Fatalf("server (pid %d) still running after the last live user released", got)
	}
}

// TestEmbeddedHelperProcess is not a test: it is the second process of
// TestEmbeddedCrashedUserDoesNotKeepServer. It joins the cluster, reports,
// and holds it until stdin closes.
func TestEmbeddedHelperProcess(t *testing.T) {
	dataDir := os.Getenv(helperDataDirEnv)
	if dataDir == "" {
		t.Skip("helper process only")
	}
	e, err := Start(context.Background(), Options{DataDir: dataDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	fmt.Printf("ready started=%v\n", e.startedHere)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = e.Release(context.Background())
	os.Exit(0)
}

// TestReleaseWhileAForkedChildHoldsTheLock: a child forked by this process holds a copy of the
// in-use lock's descriptor until it execs (here: until it exits, 50 ms later). The last handle's
// Release must still stop the server once the child lets go (it left the server running when the
// lock looked held at the one moment it was probed: a flaky CI run under load).
func TestReleaseWhileAForkedChildHoldsTheLock(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dataDir := testDataDir(t)
	e := startEmbedded(t, ctx, dataDir)
	child := exec.Command("sleep", "0.05")
	child.ExtraFiles = []*os.File{e.inuse.f} // the same open file description, as a fork shares it
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	release(t, e)
	_ = child.Wait()
	if pid := postmasterPID(t, dataDir); pid != 0 {
		t.Errorf("server (pid %d) still running after the last handle was released", pid)
	}
}
