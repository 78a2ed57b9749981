// This file finds the PostgreSQL server programs. The launcher ships no PostgreSQL of its own:
// it uses the machine's install (Debian's /usr/lib/postgresql/N/bin, a source install, or
// whatever pg_config names), so the server is the one the operator patches, and a missing install
// is reported with the command that fixes it.

package pgembed

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrPostgresNotFound is returned when no PostgreSQL server binaries are
// installed; its message tells the user how to fix that.
var ErrPostgresNotFound = errors.New(`no PostgreSQL server binaries found (looked for postgres, initdb and pg_ctl via "pg_config --bindir", $PATH and /usr/lib/postgresql/*/bin): ` +
	`install them with "apt-get install -y postgresql" (Debian/Ubuntu), ` +
	`or set DATABASE_URL to use an existing PostgreSQL server instead`)

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
