// Package pgembed launches the private PostgreSQL cluster that dualledger uses when no
// DATABASE_URL is set: initdb and postgres from the machine's PostgreSQL install, in a data dir
// of the user's choosing (default ./.dualledger/pg), listening on a Unix socket only, started on
// demand and stopped when its last user, in any process, is gone.
//
// It is a package of its own because it is a process supervisor, not a database client: it
// runs programs, takes file locks, changes users and owns directories, while internal/pg (the
// connection pool and the migration runner) only speaks SQL to whatever server it is given.
// internal/pg.Open and internal/pg/pgtest are its callers.
//
// The files split it by concern:
//
//   - cluster.go: Start and Release, the lifecycle, and the shared-use rule (launcher.lock,
//     inuse.lock) that lets any number of handles in any number of processes share one server;
//   - flock_unix.go: the flock(2) locks that rule is built on;
//   - binaries.go: finding postgres, initdb and pg_ctl on this machine;
//   - initdb.go: creating the cluster atomically and writing its settings;
//   - runas.go: running the programs as the postgres system user when we are root;
//   - connstring.go: where the socket lives and the connection strings that reach it.
//
// Why a launcher of our own rather than fergusstrange/embedded-postgres: that library always
// listens on TCP, wipes its runtime directory and cannot start as root (docs/architecture.md).
package pgembed
