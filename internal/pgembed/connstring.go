// This file decides where the server's Unix socket lives and how clients reach it. The server
// listens on no TCP address, so the socket directory is the server's address: every process must
// derive it from the data dir alone, and the connection strings must quote it correctly.

package pgembed

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
)

// ConnString returns a keyword/value connection string for dbname on the
// private socket, usable by pgx.
func (e *Cluster) ConnString(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		quoteConnValue(e.socketDir), embeddedPort, embeddedSuperuser, quoteConnValue(dbname))
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

// ensureSocketDir creates the short socket dir under /tmp. /tmp is shared
// with other users, so an existing entry is only accepted if it is a real
// directory owned by the server user (otherwise someone could hijack the
// socket).
func (e *Cluster) ensureSocketDir() error {
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

// quoteConnValue quotes a keyword/value connection string value when it
// needs it.
func quoteConnValue(s string) string {
	if s != "" && !strings.ContainsAny(s, "'\\ \t\n\r\v\f") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", `\'`) + "'"
}
