#!/usr/bin/env bash
# Applies the schema with plain psql, as deployment step 3 of the seeds does (docs/design.md §10.2):
#
#   scripts/run-migrations.sh "$DATABASE_URL"
#
# The same files, order and checks as `dualledger migrate` (docs/architecture.md, "Schema
# evolution"):
#   1. db/migrations/NNN_*.sql in order, each in its own transaction (psql --single-transaction,
#      ON_ERROR_STOP). Before one, db/checks/NNN_*.before.sql if it exists: any row it returns stops
#      the run there (the rows and the check's "-- fix:" lines are printed, exit status 1). After
#      one, in its transaction, db/checks/NNN_*.after.sql the same way (the migration is rolled back).
#   2. db/functions/*.sql in name order, each in its own transaction.
# Every file is idempotent, so re-running is safe (and every check runs again each time).
# `dualledger migrate` also records what it applied (dualledger_schema_version and the checksum
# tables); after a psql run, `dualledger migrate` records them, applying the function files again.
# DUALLEDGER_DB_DIR overrides the db directory (tests).
set -euo pipefail
url="${1:-${DATABASE_URL:-}}"
if [ -z "$url" ]; then
  echo "usage: $0 DATABASE_URL" >&2
  exit 2
fi
db="${DUALLEDGER_DB_DIR:-$(cd "$(dirname "$0")/../db" && pwd)}"
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
run() { psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }

# check_failed CHECK_FILE PHASE MIGRATION ROWS [COUNT]: the message of pg.CheckError, then exit 1.
check_failed() {
  local title fix n
  title="$(sed -n 's/^-- check: *//p' "$1" | head -n 1)"
  fix="$(sed -n 's/^-- fix: \{0,1\}//p' "$1")"
  n="${5:-$(printf '%s\n' "$4" | wc -l)}"
  {
    echo "check $2 $3 failed (db/checks/$(basename "$1")): $n row(s), ${title:-offending rows}:"
    printf '%s\n' "$4" | head -n 50 | sed 's/^/  /'
    if [ "$n" -gt 50 ]; then echo "  ... and $((n - 50)) more"; fi
    if [ -n "$fix" ]; then echo "fix: $fix"; fi
    echo "Then run $0 again."
  } >&2
  exit 1
}

# after_check CHECK_FILE MIGRATION: the DO block of pg.AfterCheckSQL, which raises with the rows
# (at most 50 in its DETAIL) when the query returns any.
after_check() {
  local q
  q="$(cat "$1")"
  q="${q%"${q##*[![:space:]]}"}"
  q="${q%;}"
  cat <<SQL
DO \$dualledger_check\$
DECLARE
    found text[];
BEGIN
    SELECT array_agg(r) INTO found FROM (
$q
    ) AS c(r);
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'check after $2 failed: % row(s)', cardinality(found)
            USING ERRCODE = 'DL900', DETAIL = array_to_string(found[1:50], E'\n');
    END IF;
END
\$dualledger_check\$;
SQL
}

for f in "$db"/migrations/[0-9][0-9][0-9]_*.sql; do
  base="$(basename "$f")"
  before="$db/checks/${base%.sql}.before.sql"
  after="$db/checks/${base%.sql}.after.sql"
  if [ -f "$before" ]; then
    rows="$(run -A -t -f "$before")"
    if [ -n "$rows" ]; then check_failed "$before" before "$base" "$rows"; fi
  fi
  echo "applying $base"
  if [ -f "$after" ]; then
    if ! out="$(run --single-transaction -f "$f" -f <(after_check "$after" "$base") 2>&1)"; then
      if grep -q "check after $base failed" <<<"$out"; then
        rows="$(sed -n '/^DETAIL: */,$p' <<<"$out" | sed -e 's/^DETAIL: *//' -e '/^CONTEXT: /,$d')"
        check_failed "$after" after "$base" "$rows" "$(sed -n 's/.*failed: \([0-9]*\) row(s).*/\1/p' <<<"$out" | head -n 1)"
      fi
      echo "$out" >&2
      exit 3
    fi
    if [ -n "$out" ]; then echo "$out"; fi
  else
    run --single-transaction -f "$f"
  fi
done
for f in "$db"/functions/*.sql; do
  [ -e "$f" ] || continue
  echo "applying functions/$(basename "$f")"
  run --single-transaction -f "$f"
done
echo "all migrations applied"
