// Package pg owns dualledger's connection to PostgreSQL: either a server named
// by DATABASE_URL, or a private cluster that the program starts itself.
package pg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// embeddedPort only names the socket file (.s.PGSQL.5432): the server
	// listens on no TCP address at all, so it cannot clash with another
	// server on this port.
	embeddedPort = 5432
	// embeddedSuperuser is the bootstrap role created by initdb; with trust
	// authentication on a private socket it needs no password.
	embeddedSuperuser = "postgres"
	// maxSocketPath keeps <socketdir>/.s.PGSQL.5432 below the kernel's
	// sun_path limit (108 bytes including the NUL) with some margin.
	maxSocketPath = 100

	startTimeoutSeconds = 60
	readyTimeout        = 30 * time.Second
	// releaseTimeout bounds Release, which deliberately ignores cancellation
	// of its context (see Release).
	releaseTimeout = 2 * time.Minute

	launcherLockName = "launcher.lock"
	inuseLockName    = "inuse.lock"
	logFileName      = "pg.log"
	// confFileName is included from postgresql.conf and rewritten before
	// every start, so that the settings always match this binary and the
	// current location of the data dir.
	confFileName = "dualledger.conf"
)

// ErrPostgresNotFound is returned when no PostgreSQL server binaries are
// installed; its message tells the user how to fix that.
var ErrPostgresNotFound = errors.New(`no PostgreSQL server binaries found (looked for postgres, initdb and pg_ctl via "pg_config --bindir", $PATH and /usr/lib/postgresql/*/bin): ` +
	`install them with "apt-get install -y postgresql" (Debian/Ubuntu), ` +
	`or set DATABASE_URL to use an existing PostgreSQL server instead`)

// Embedded is a handle on the private cluster; one per process user.
//
// Any number of handles (in one or several processes) may use the same data
// dir at once: they share one server, which is stopped when the last handle is
// released or its process dies.
type Embedded struct {
	binDir    string
	dataDir   string
	parentDir string
	socketDir string
	logFile   string
	runAs     serverUser
	env       []string
	logger    *slog.Logger

	// startedHere records whether this handle launched the server (as
	// opposed to joining one that was already running). Informational only:
	// who stops the server is decided by the in-use lock, not by this.
	startedHere bool

	mu    sync.Mutex
	inuse *lockFile // shared lock held for the handle's lifetime; nil once released
}

// EmbeddedOptions configures StartEmbedded.
type EmbeddedOptions struct {
	DataDir string       // e.g. "./.dualledger/pg" (made absolute)
	Logger  *slog.Logger // may be nil
}

// serverUser is the OS account that runs initdb, pg_ctl and postgres.
type serverUser struct {
	name     string
	uid, gid int
	groups   []uint32 // supplementary groups, used for the traversal check
	home     string
	// switchTo is true when we are root: PostgreSQL refuses to run as root,
	// so child processes drop to this account.
	switchTo bool
}

// StartEmbedded starts the private cluster in opts.DataDir, or joins it if
// another handle already runs it, and returns once a connection succeeds.
// The caller must call Release when done.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	if opts.DataDir == "" {
		return nil, errors.New("embedded postgres: empty data dir")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("embedded postgres: resolve data dir %q: %w", opts.DataDir, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	runAs, err := lookupServerUser()
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(dataDir)
	if err := ensureParentDir(parent); err != nil {
		return nil, err
	}
	if runAs.switchTo {
		if err := checkTraversable(parent, runAs); err != nil {
			return nil, err
		}
	}

	e := &Embedded{
		binDir:    binDir,
		dataDir:   dataDir,
		parentDir: parent,
		socketDir: socketDirFor(dataDir),
		logFile:   filepath.Join(parent, logFileName),
		runAs:     runAs,
		env:       childEnv(runAs),
		logger:    logger.With("component", "embedded-postgres", "datadir", dataDir),
	}

	// The launcher lock serialises every start/stop decision on this data
	// dir, across processes: without it two commands started together
	// could both run initdb or pg_ctl start on the same directory.
	launcher, err := openLockFile(filepath.Join(parent, launcherLockName))
	if err != nil {
		return nil, fmt.Errorf("embedded postgres: %w", err)
	}
	defer launcher.close()
	if err := launcher.lock(ctx, syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("embedded postgres: take launcher lock: %w", err)
	}

	started, err := e.ensureRunning(ctx)
	e.startedHere = started
	if err == nil {
		// Take our shared in-use lock before dropping the launcher lock,
		// so that no Release in between can see the server as unused.
		e.inuse, err = openLockFile(filepath.Join(parent, inuseLockName))
		if err == nil {
			if err = e.inuse.lock(ctx, syscall.LOCK_SH); err != nil {
				e.inuse.close()
				e.inuse = nil
			}
		}
	}
	if err != nil {
		// Don't leave behind a server nobody uses (e.g. we started it but
		// it never accepted connections); the usual rule decides.
		if started {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
			defer cancel()
			if _, serr := e.stopIfUnused(sctx); serr != nil {
				e.logger.Warn("could not stop embedded postgres after failed start", "err", serr)
			}
		}
		return nil, fmt.Errorf("embedded postgres: %w", err)
	}
	if started {
		e.logger.Info("started embedded postgres", "socket_dir", e.socketDir, "log", e.logFile)
	} else {
		e.logger.Debug("joined running embedded postgres", "socket_dir", e.socketDir)
	}
	return e, nil
}

// SocketDir is the directory holding the server's Unix socket.
func (e *Embedded) SocketDir() string { return e.socketDir }

// DataDir is the absolute data directory of the cluster.
func (e *Embedded) DataDir() string { return e.dataDir }

// LogFile is the server log written by pg_ctl -l.
func (e *Embedded) LogFile() string { return e.logFile }

// ConnString returns a keyword/value connection string for dbname on the
// private socket, usable by pgx.
func (e *Embedded) ConnString(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		quoteConnValue(e.socketDir), embeddedPort, embeddedSuperuser, quoteConnValue(dbname))
}

// Release gives up this handle. If no other handle (in any process) still
// uses the cluster, the server is stopped (pg_ctl stop -m fast).
//
// Release is typically called on the way out, often right after a Ctrl-C
// cancelled ctx, which is exactly when the server must still be stopped
// cleanly; so it ignores ctx's cancellation (keeping its values) and is
// bounded by its own timeout instead. Calling Release twice is a no-op.
func (e *Embedded) Release(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inuse == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()

	launcher, err := openLockFile(filepath.Join(e.parentDir, launcherLockName))
	if err == nil {
		defer launcher.close()
		err = launcher.lock(ctx, syscall.LOCK_EX)
	}
	// Drop our in-use lock even if we could not get the launcher lock: a
	// lingering lock would keep the server up forever, while a server left
	// running is stopped by the next Release of any user.
	e.inuse.close()
	e.inuse = nil
	if err != nil {
		return fmt.Errorf("embedded postgres: release: take launcher lock: %w", err)
	}
	stopped, err := e.stopIfUnused(ctx)
	if err != nil {
		return fmt.Errorf("embedded postgres: release: %w", err)
	}
	if stopped {
		e.logger.Info("stopped embedded postgres (last user gone)")
	}
	return nil
}

// stopIfUnused stops the server if no handle holds a shared in-use lock.
// The caller must hold the launcher lock.
func (e *Embedded) stopIfUnused(ctx context.Context) (stopped bool, err error) {
	probe, err := openLockFile(filepath.Join(e.parentDir, inuseLockName))
	if err != nil {
		return false, err
	}
	defer probe.close()
	free, err := probe.tryLock(syscall.LOCK_EX)
	if err != nil || !free {
		return false, err
	}
	running, err := e.status(ctx)
	if err != nil || !running {
		return false, err
	}
	out, err := e.command(ctx, "pg_ctl", "stop", "-D", e.dataDir, "-m", "fast", "-w",
		"-t", strconv.Itoa(startTimeoutSeconds)).CombinedOutput()
	if err != nil {
		// A server that went away by itself in the meantime is fine.
		if running, serr := e.status(ctx); serr == nil && !running {
			return false, nil
		}
		return false, fmt.Errorf("pg_ctl stop: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if e.socketDir != e.dataDir {
		// The short socket dir in /tmp is ours alone and empty now; tidy
		// it up (Remove fails harmlessly if something is still inside).
		_ = os.Remove(e.socketDir)
	}
	return true, nil
}

// ensureRunning initialises the cluster if needed and starts the server if it
// is not running, then waits until it accepts connections. The caller must
// hold the launcher lock. started reports whether we launched the server.
func (e *Embedded) ensureRunning(ctx context.Context) (started bool, err error) {
	if !fileExists(filepath.Join(e.dataDir, "PG_VERSION")) {
		if err := e.initCluster(ctx); err != nil {
			return false, err
		}
	}
	running, err := e.status(ctx)
	if err != nil {
		return false, err
	}
	if running {
		// Usually ready at once; a server still in crash recovery may
		// need a moment.
		return false, e.waitReady(ctx)
	}
	if err := e.writeConf(); err != nil {
		return false, err
	}
	if e.socketDir != e.dataDir {
		if err := e.ensureSocketDir(); err != nil {
			return false, err
		}
	}
	if err := e.prepareLogFile(); err != nil {
		return false, err
	}
	out, err := e.command(ctx, "pg_ctl", "start", "-w", "-t", strconv.Itoa(startTimeoutSeconds),
		"-D", e.dataDir, "-l", e.logFile).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("pg_ctl start: %w: %s\n--- last lines of %s ---\n%s",
			err, strings.TrimSpace(string(out)), e.logFile, tailFile(e.logFile, 20))
	}
	// From here on we did start it, even if it then misbehaves.
	return true, e.waitReady(ctx)
}

// initCluster runs initdb. It initialises a temporary sibling directory and
// renames it into place only once initdb and our configuration succeeded, so
// the data dir, when present with a PG_VERSION, is always complete. Checking
// PG_VERSION alone would not be enough otherwise: initdb writes it early,
// long before the cluster is usable, so a crash in the middle would leave a
// dir that looks initialised but cannot start.
func (e *Embedded) initCluster(ctx context.Context) error {
	tmp := filepath.Join(e.parentDir, "."+filepath.Base(e.dataDir)+".initdb")
	// Anything at tmp is the output of an initdb of ours that crashed
	// (nobody else writes there, and we hold the launcher lock): wipe it.
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove leftover %s: %w", tmp, err)
	}
	// A data dir without PG_VERSION is not a cluster. If it is empty we
	// just remove it; otherwise we move it aside rather than delete it,
	// because it might hold something a user cares about (or a half-made
	// cluster from an older version of this code that is worth a look).
	if entries, err := os.ReadDir(e.dataDir); err == nil {
		if len(entries) == 0 {
			if err := os.Remove(e.dataDir); err != nil {
				return fmt.Errorf("remove empty data dir: %w", err)
			}
		} else {
			aside := e.dataDir + ".incomplete-" + time.Now().Format("20060102-150405.000")
			if err := os.Rename(e.dataDir, aside); err != nil {
				return fmt.Errorf("move incomplete data dir aside: %w", err)
			}
			e.logger.Warn("moved an incomplete data dir (no PG_VERSION) aside", "to", aside)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read data dir: %w", err)
	}

	// We create the directory ourselves (the parent belongs to root when
	// we are root, so the postgres user could not) and hand it over.
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := e.chown(tmp); err != nil {
		return err
	}
	e.logger.Info("initialising embedded postgres cluster (initdb)")
	out, err := e.command(ctx, "initdb", "-D", tmp, "--auth=trust", "--username="+embeddedSuperuser,
		"--encoding=UTF8", "--locale=C").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(tailString(string(out), 20)))
	}
	// Plain include (not include_if_exists): starting without our settings
	// would listen on TCP and put the socket elsewhere, so better fail.
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, werr := fmt.Fprintf(f, "\n# Added by dualledger; the file is rewritten at every start.\ninclude '%s'\n", confFileName)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("append to postgresql.conf: %w", werr)
	}
	if err := os.Rename(tmp, e.dataDir); err != nil {
		return fmt.Errorf("move initialised cluster into place: %w", err)
	}
	syncDir(e.parentDir)
	return nil
}

// writeConf (re)writes the include file with our settings. It is written
// before every start so that a moved data dir (whose socket dir changes) or
// a newly installed pg_stat_statements is picked up.
func (e *Embedded) writeConf() error {
	var b strings.Builder
	b.WriteString("# Written by dualledger before every start of the embedded server; edits are lost.\n")
	set := func(name, value string) { fmt.Fprintf(&b, "%s = %s\n", name, value) }
	set("listen_addresses", "''") // Unix socket only: no TCP exposure, no port clashes.
	set("port", strconv.Itoa(embeddedPort))
	set("unix_socket_directories", confQuote(e.socketDir))
	set("unix_socket_permissions", "0700")
	set("max_connections", "300")
	set("shared_buffers", "256MB")
	// Explicit although they are the defaults: a ledger must not lose
	// committed data, whatever someone put into postgresql.conf.
	set("fsync", "on")
	set("synchronous_commit", "on")
	set("full_page_writes", "on")
	// A posting workload writes WAL steadily: fewer checkpoints mean fewer full-page images, and
	// compressed ones when they happen. Durability is unchanged.
	set("max_wal_size", "4GB")
	set("checkpoint_timeout", "15min")
	set("wal_compression", "on")
	set("wal_buffers", "16MB")
	// Account rows are rewritten by every posting: vacuum and analyze them often (the
	// per-table settings of migration 008 do the rest), so that HOT pruning keeps up and a new
	// ledger gets statistics within seconds.
	set("autovacuum_naptime", "10s")
	set("log_min_messages", "warning")
	if hasPgStatStatements(e.binDir) {
		set("shared_preload_libraries", confQuote("pg_stat_statements"))
	}

	path := filepath.Join(e.dataDir, confFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	// The server reads it as the server user.
	if err := e.chown(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// ensureSocketDir creates the short socket dir under /tmp. /tmp is shared
// with other users, so an existing entry is only accepted if it is a real
// directory owned by the server user (otherwise someone could hijack the
// socket).
func (e *Embedded) ensureSocketDir() error {
	err := os.Mkdir(e.socketDir, 0o700)
	if err == nil {
		return e.chown(e.socketDir)
	}
	if !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create socket dir: %w", err)
	}
	fi, err := os.Lstat(e.socketDir)
	if err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != e.runAs.uid {
		return fmt.Errorf("socket dir %s exists but is not a directory owned by %s (uid %d); remove it",
			e.socketDir, e.runAs.name, e.runAs.uid)
	}
	if err := os.Chmod(e.socketDir, 0o700); err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	return nil
}

// prepareLogFile creates the log file up front: pg_ctl opens it as the
// server user, who cannot create files in our (root-owned) parent dir.
func (e *Embedded) prepareLogFile() error {
	f, err := os.OpenFile(e.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create log file: %w", err)
	}
	f.Close()
	if e.runAs.switchTo {
		if err := os.Lchown(e.logFile, e.runAs.uid, e.runAs.gid); err != nil {
			return fmt.Errorf("chown log file: %w", err)
		}
	}
	return nil
}

// status reports whether a postmaster is running on the data dir
// (pg_ctl status: exit 0 running, 3 not running, 4 no usable data dir).
func (e *Embedded) status(ctx context.Context) (bool, error) {
	out, err := e.command(ctx, "pg_ctl", "status", "-D", e.dataDir).CombinedOutput()
	if err == nil {
		return true, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && (exitErr.ExitCode() == 3 || exitErr.ExitCode() == 4) {
		return false, nil
	}
	return false, fmt.Errorf("pg_ctl status: %w: %s", err, strings.TrimSpace(string(out)))
}

// waitReady returns once a real connection succeeds: pg_ctl's own wait only
// means the postmaster said it is ready, and a server we merely found
// running may still be recovering.
func (e *Embedded) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, e.ConnString("postgres"))
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for embedded postgres: %w", ctx.Err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded postgres did not accept connections within %s: %w\n--- last lines of %s ---\n%s",
				readyTimeout, lastErr, e.logFile, tailFile(e.logFile, 20))
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// command prepares a PostgreSQL tool invocation as the server user.
func (e *Embedded) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(e.binDir, name), args...)
	// Our working directory may not be accessible to the server user
	// (e.g. /root), which initdb and postgres complain about.
	cmd.Dir = "/"
	cmd.Env = e.env
	// A new process group: a Ctrl-C in our terminal is delivered to the
	// whole foreground group, and it must not reach the postmaster (which
	// pg_ctl starts as its descendant) or interrupt initdb behind our back;
	// we decide what to stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if e.runAs.switchTo {
		cmd.SysProcAttr.Credential = &syscall.Credential{
			Uid:    uint32(e.runAs.uid),
			Gid:    uint32(e.runAs.gid),
			Groups: e.runAs.groups,
		}
	}
	// pg_ctl redirects the postmaster's output to the log file, so our
	// output pipe closes when pg_ctl exits; this only guards against a
	// stray descendant keeping it open.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

func (e *Embedded) chown(path string) error {
	if !e.runAs.switchTo {
		return nil
	}
	if err := os.Lchown(path, e.runAs.uid, e.runAs.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, e.runAs.name, err)
	}
	return nil
}

// FindBinDir locates the directory holding postgres, initdb and pg_ctl:
// "pg_config --bindir" first, then postgres/pg_ctl on $PATH (symlinks
// resolved, so a /usr/local/bin link leads to the real directory), then the
// highest /usr/lib/postgresql/<version>/bin.
func FindBinDir() (string, error) {
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		// Debian's /usr/bin/pg_config may print /usr/bin, which holds only
		// client tools, hence the check.
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			if dir := strings.TrimSpace(string(out)); hasServerBinaries(dir) {
				return dir, nil
			}
		}
	}
	for _, name := range []string{"postgres", "pg_ctl"} {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if dir := filepath.Dir(p); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Highest version first; versions are compared numerically so that 9.6
	// sorts below 10.
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrPostgresNotFound
}

func hasServerBinaries(dir string) bool {
	if dir == "" {
		return false
	}
	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted numeric versions ("9.6" < "15").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return strings.Compare(a, b)
}

// hasPgStatStatements reports whether pg_stat_statements can be preloaded.
// We require the shared library itself, not just the extension's control
// file: preloading a missing library would stop the server from starting.
// Only a pg_config next to our postgres is trusted, since a library of a
// different major version would not load either.
func hasPgStatStatements(binDir string) bool {
	var libDirs []string
	if out, err := exec.Command(filepath.Join(binDir, "pg_config"), "--pkglibdir").Output(); err == nil {
		libDirs = append(libDirs, strings.TrimSpace(string(out)))
	}
	// Debian layout (/usr/lib/postgresql/N/lib) and the source-install
	// layout (<prefix>/lib/postgresql).
	libDirs = append(libDirs,
		filepath.Join(binDir, "..", "lib"),
		filepath.Join(binDir, "..", "lib", "postgresql"))
	for _, dir := range libDirs {
		for _, suffix := range []string{".so", ".dylib"} {
			if fileExists(filepath.Join(dir, "pg_stat_statements"+suffix)) {
				return true
			}
		}
	}
	return false
}

// socketDirFor decides where the server's socket lives. Every process must
// compute the same answer from the data dir alone, so it depends on nothing
// else. The data dir itself is preferred (private, and removed with it), but
// Unix socket paths are limited to ~107 bytes, and a comma, quote, backslash
// or whitespace would be misread in unix_socket_directories or in a
// connection string's host list; then we use a short, private dir in /tmp
// named after a hash of the data dir.
func socketDirFor(dataDir string) string {
	sock := filepath.Join(dataDir, fmt.Sprintf(".s.PGSQL.%d", embeddedPort))
	if len(sock) <= maxSocketPath && !strings.ContainsAny(dataDir, ",'\"\\ \t\n\r\v\f") {
		return dataDir
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join("/tmp", "dualledger-"+hex.EncodeToString(sum[:])[:12])
}

// lookupServerUser decides who runs the server: ourselves, or the postgres
// system account when we are root.
func lookupServerUser() (serverUser, error) {
	if os.Geteuid() != 0 {
		u := serverUser{uid: os.Geteuid(), gid: os.Getegid(), name: strconv.Itoa(os.Geteuid())}
		if cur, err := user.Current(); err == nil {
			u.name = cur.Username
		}
		return u, nil
	}
	pu, err := user.Lookup("postgres")
	if err != nil {
		return serverUser{}, fmt.Errorf("embedded postgres: running as root, but PostgreSQL refuses to run as root and the %q system user was not found (it is created by the postgresql package): %w", "postgres", err)
	}
	uid, err := strconv.Atoi(pu.Uid)
	if err != nil {
		return serverUser{}, fmt.Errorf("embedded postgres: uid of postgres user: %w", err)
	}
	gid, err := strconv.Atoi(pu.Gid)
	if err != nil {
		return serverUser{}, fmt.Errorf("embedded postgres: gid of postgres user: %w", err)
	}
	u := serverUser{name: pu.Username, uid: uid, gid: gid, home: pu.HomeDir, switchTo: true}
	if ids, err := pu.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				u.groups = append(u.groups, uint32(g))
			}
		}
	}
	return u, nil
}

// ensureParentDir creates the data dir's parent (e.g. ./.dualledger). Dirs we
// create get mode 0755 regardless of the umask, because the server user must
// be able to traverse them; existing dirs are left alone.
func ensureParentDir(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("embedded postgres: create %s: %w", dir, err)
	}
	for _, d := range missing {
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("embedded postgres: chmod %s: %w", d, err)
		}
	}
	return nil
}

// checkTraversable verifies that the server user can reach dir, i.e. has
// search (x) permission on it and on every ancestor, both along the path as
// given and along its symlink-resolved form. We only report the problem:
// changing permissions outside our own directory is not ours to decide.
func checkTraversable(dir string, u serverUser) error {
	paths := []string{dir}
	if real, err := filepath.EvalSymlinks(dir); err == nil && real != dir {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for d := p; ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("embedded postgres: %w", err)
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && !canSearch(fi.Mode().Perm(), st, u) {
				return fmt.Errorf("embedded postgres: directory %s (mode %v, owner uid %d) is not traversable by the %q user that runs the server; "+
					"make it searchable (e.g. chmod o+x %s), put the data dir elsewhere, or set DATABASE_URL",
					d, fi.Mode().Perm(), st.Uid, u.name, d)
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return nil
}

func canSearch(perm os.FileMode, st *syscall.Stat_t, u serverUser) bool {
	switch {
	case int(st.Uid) == u.uid:
		return perm&0o100 != 0
	case int(st.Gid) == u.gid || slices.Contains(u.groups, st.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// childEnv is our environment minus PG* variables (PGPORT, PGDATA, PGHOST...
// would change what pg_ctl and postgres do) and locale variables, with the C
// locale so tool output in errors is predictable.
func childEnv(u serverUser) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") ||
			(u.switchTo && strings.HasPrefix(kv, "HOME=")) {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if u.switchTo && u.home != "" {
		env = append(env, "HOME="+u.home)
	}
	return env
}

// confQuote quotes a postgresql.conf string value.
func confQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// quoteConnValue quotes a keyword/value connection string value when it
// needs it.
func quoteConnValue(s string) string {
	if s != "" && !strings.ContainsAny(s, "'\\ \t\n\r\v\f") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// syncDir makes a rename in dir durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// tailFile returns the last n lines of a file, for error messages. Only the
// last 64 KiB are read: the log is appended to across runs.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxTail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		if _, err := f.Seek(fi.Size()-maxTail, io.SeekStart); err != nil {
			return fmt.Sprintf("(cannot read %s: %v)", path, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	return tailString(string(data), n)
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}
