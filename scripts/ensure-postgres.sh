#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, postgres, pg_ctl) are installed: dualledger starts
# its own private cluster from them when DATABASE_URL is not set. Installs Debian's package when
# they are missing and we may (root with apt-get); otherwise says what to run.
set -euo pipefail
if [ -n "${DATABASE_URL:-}" ]; then
  exit 0
fi
have() {
  for d in "$(pg_config --bindir 2>/dev/null || true)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && return 0
  done
  command -v postgres >/dev/null && command -v initdb >/dev/null && command -v pg_ctl >/dev/null
}
if have; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "PostgreSQL server binaries not found: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  have && exit 0
fi
echo "PostgreSQL server binaries not found. Install them (Debian/Ubuntu: apt-get install -y postgresql)," >&2
echo "or set DATABASE_URL to an existing server." >&2
exit 1
