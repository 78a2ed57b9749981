// This file runs the PostgreSQL programs as the right OS user. PostgreSQL refuses to run as
// root, and the machines this runs on (and CI) often are root: then initdb, pg_ctl and postgres run
// as the "postgres" system account, the directories they need are handed to it, and the data dir's
// ancestors are checked to be traversable by it (reported, never changed: they are not ours).
// As any other user, the programs run as that user.

package pgembed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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

// command prepares a PostgreSQL tool invocation as the server user.
func (e *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
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

func (e *Cluster) chown(path string) error {
	if !e.runAs.switchTo {
		return nil
	}
	if err := os.Lchown(path, e.runAs.uid, e.runAs.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, e.runAs.name, err)
	}
	return nil
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
