// This file is the cluster's lifecycle: start or join, and stop when the last user leaves.
// Every start/stop decision is taken under an exclusive flock on <data dir>.launcher.lock (beside
// the data dir), and every live handle holds a shared flock on <data dir>.inuse.lock; the server
// is stopped only by a Release that can take the in-use lock exclusively, i.e. when no handle of
// any process still holds it. The kernel drops the locks of a process that dies, so a crashed user never keeps the server
// up forever, and no pid files or counters of ours can go stale.

package pgembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	startTimeoutSeconds = 60
	readyTimeout        = 30 * time.Second
	// releaseTimeout bounds Release, which deliberately ignores cancellation
	// of its context (see Release).
	releaseTimeout = 2 * time.Minute

	// The files beside the data dir, named after it (<data dir>.launcher.lock, ...): they must
	// exist before initdb, which wants an empty directory, and two data dirs in one parent must
	// not share them (they once did: one cluster's server was kept up by the other's users, and
	// both wrote one log).
	launcherLockSuffix = ".launcher.lock"
	inuseLockSuffix    = ".inuse.lock"
	logFileSuffix      = ".log"
)

// Cluster is a handle on the private cluster; one per process user.
//
// Any number of handles (in one or several processes) may use the same data
// dir at once: they share one server, which is stopped when the last handle is
// released or its process dies.
type Cluster struct {
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

// Options configures Start.
type Options struct {
	DataDir string       // e.g. "./.dualledger/pg" (made absolute)
	Logger  *slog.Logger // may be nil
}

// Start starts the private cluster in opts.DataDir, or joins it if
// another handle already runs it, and returns once a connection succeeds.
// The caller must call Release when done.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
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
	// One cluster, one name, however it is reached: the locks are named after the data dir, so a
	// symlink to it (or to its parent) must resolve to the same path, or a command started through
	// the alias would find no other user on "its" in-use lock and stop the server under them.
	if real, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = real
	} else if realParent, err := filepath.EvalSymlinks(parent); err == nil {
		dataDir = filepath.Join(realParent, filepath.Base(dataDir))
	}
	parent = filepath.Dir(dataDir)
	if runAs.switchTo {
		if err := checkTraversable(parent, runAs); err != nil {
			return nil, err
		}
	}

	e := &Cluster{
		binDir:    binDir,
		dataDir:   dataDir,
		parentDir: parent,
		socketDir: socketDirFor(dataDir),
		logFile:   dataDir + logFileSuffix,
		runAs:     runAs,
		env:       childEnv(runAs),
		logger:    logger.With("component", "embedded-postgres", "datadir", dataDir),
	}

	// The launcher lock serialises every start/stop decision on this data
	// dir, across processes: without it two commands started together
	// could both run initdb or pg_ctl start on the same directory.
	launcher, err := openLockFile(dataDir + launcherLockSuffix)
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
		e.inuse, err = openLockFile(dataDir + inuseLockSuffix)
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
func (e *Cluster) SocketDir() string { return e.socketDir }

// DataDir is the absolute data directory of the cluster.
func (e *Cluster) DataDir() string { return e.dataDir }

// LogFile is the server log written by pg_ctl -l.
func (e *Cluster) LogFile() string { return e.logFile }

// Release gives up this handle. If no other handle (in any process) still
// uses the cluster, the server is stopped (pg_ctl stop -m fast).
//
// Release is typically called on the way out, often right after a Ctrl-C
// cancelled ctx, which is exactly when the server must still be stopped
// cleanly; so it ignores ctx's cancellation (keeping its values) and is
// bounded by its own timeout instead. Calling Release twice is a no-op.
func (e *Cluster) Release(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inuse == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()

	launcher, err := openLockFile(e.dataDir + launcherLockSuffix)
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

// inuseProbes and inuseProbeWait bound how long stopIfUnused looks again at an in-use lock that
// looks held (about a tenth of a second).
const (
	inuseProbes    = 10
	inuseProbeWait = 10 * time.Millisecond
)

// stopIfUnused stops the server if no handle holds a shared in-use lock.
// The caller must hold the launcher lock.
func (e *Cluster) stopIfUnused(ctx context.Context) (stopped bool, err error) {
	probe, err := openLockFile(e.dataDir + inuseLockSuffix)
	if err != nil {
		return false, err
	}
	defer probe.close()
	// A child this process forks (pg_ctl for another cluster, any exec) holds a copy of every
	// descriptor until it execs, the in-use lock a handle just closed included: for that moment
	// the lock still looks held. So a lock that looks held is probed again for a while before the
	// server is taken to be in use (a loaded test machine left servers running that way).
	free, err := probe.tryLock(syscall.LOCK_EX)
	for try := 0; err == nil && !free && try < inuseProbes; try++ {
		t := time.NewTimer(inuseProbeWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		free, err = probe.tryLock(syscall.LOCK_EX)
	}
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
func (e *Cluster) ensureRunning(ctx context.Context) (started bool, err error) {
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

// status reports whether a postmaster is running on the data dir
// (pg_ctl status: exit 0 running, 3 not running, 4 no usable data dir).
func (e *Cluster) status(ctx context.Context) (bool, error) {
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
func (e *Cluster) waitReady(ctx context.Context) error {
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

// prepareLogFile creates the log file up front: pg_ctl opens it as the
// server user, who cannot create files in our (root-owned) parent dir.
func (e *Cluster) prepareLogFile() error {
	// O_NOFOLLOW: root must not append to wherever a planted symlink points.
	f, err := os.OpenFile(e.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
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

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
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
