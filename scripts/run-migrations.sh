#!/usr/bin/env bash
# Applies db/migrations/*.sql in order with plain psql, as the seed's deployment step 3 does:
#
#   scripts/run-migrations.sh "$DATABASE_URL"
#
# Every file is idempotent, so re-running is safe, and each runs in its own transaction
# (psql --single-transaction) with ON_ERROR_STOP. 004_balance_constraints.sql audits the accounts
# first and stops with the offending accounts listed. `dualledger migrate` applies the same files
# and also records them in dualledger_schema_version; after a psql run, `dualledger migrate`
# records them without changing anything.
set -euo pipefail
url="${1:-${DATABASE_URL:-}}"
if [ -z "$url" ]; then
  echo "usage: $0 DATABASE_URL" >&2
  exit 2
fi
dir="$(cd "$(dirname "$0")/../db/migrations" && pwd)"
for f in "$dir"/[0-9][0-9][0-9]_*.sql; do
  echo "applying $(basename "$f")"
  PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
    psql "$url" -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$f"
done
echo "all migrations applied"
