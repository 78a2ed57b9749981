// This file creates the cluster (initdb) and writes its settings. The cluster is made in a
// temporary sibling directory and renamed into place only when complete, so a crash in the middle
// never leaves a data dir that looks initialised but cannot start; our settings live in an include
// file rewritten before every start, so they always match this binary and the data dir's
// current location.

package pgembed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// confFileName is included from postgresql.conf and rewritten before
	// every start, so that the settings always match this binary and the
	// current location of the data dir.
	confFileName = "dualledger.conf"
)

// initCluster runs initdb. It initialises a temporary sibling directory and
// renames it into place only once initdb and our configuration succeeded, so
// the data dir, when present with a PG_VERSION, is always complete. Checking
// PG_VERSION alone would not be enough otherwise: initdb writes it early,
// long before the cluster is usable, so a crash in the middle would leave a
// dir that looks initialised but cannot start.
func (e *Cluster) initCluster(ctx context.Context) error {
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
func (e *Cluster) writeConf() error {
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

// confQuote quotes a postgresql.conf string value.
func confQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// syncDir makes a rename in dir durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
