#!/usr/bin/env bash
# bench-backfill.sh: the backfill benchmark of docs/benchmarks.md ("Backfill").
#
#   scripts/bench-backfill.sh [ROWS] [SEED_ROWS]      (defaults 1000000 and 20000)
#
# 1. `dualledger backfill run` imports ROWS CSV rows (the seed's columns: funding of 100
#    accounts, then transfers between them, each with a reference and a timestamp) into a new
#    ledger, under /usr/bin/time -v (elapsed, peak RSS);
# 2. the seed's own SQL script (its DO block over ledger_entries_legacy, unchanged, calling
#    post_ledger_entry row by row) imports SEED_ROWS rows of the same kind into another ledger.
# Both rates are printed. With DATABASE_URL unset it uses the embedded cluster (--data-dir, env
# DUALLEDGER_DATA), kept up by a `dualledger serve` for the duration.
set -euo pipefail
ROWS=${1:-1000000}
SEED_ROWS=${2:-20000}
BIN=${BIN:-bin/dualledger}
DATA=${DUALLEDGER_DATA:-$PWD/.dualledger/pg}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null; true' EXIT

if [ -z "${DATABASE_URL:-}" ]; then
    "$BIN" --data-dir "$DATA" serve --addr 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 100); do grep -q listening "$WORK/serve.log" 2>/dev/null && break; sleep 0.2; done
    PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$DATA" -U postgres dualledger)
else
    PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL")
fi
DL=("$BIN" --data-dir "$DATA")
STAMP=$(date +%s)
setup() { # ledger
    "${DL[@]}" ledgers create "$1" >/dev/null
    "${DL[@]}" accounts create --ledger "$1" --currency USD issuance --overdraft unlimited >/dev/null
    for i in $(seq 0 99); do "${DL[@]}" accounts create --ledger "$1" --currency USD "acct-$i" >/dev/null; done
}
gen() { # rows prefix: CSV in the seed's columns
    awk -v n="$1" -v p="$2" 'BEGIN {
        srand(7); print "debitAccountId,creditAccountId,amount,currencyCode,assetType,transactionType,referenceId,fxRate,metadata,timestampUtc"
        for (i = 0; i < n; i++) {
            s = 1704067200 + i; ts = strftime("%Y-%m-%dT%H:%M:%SZ", s, 1)
            if (i < 100) { printf "issuance,acct-%d,100000000.00,USD,fiat,funding,%s-%08d,,,%s\n", i, p, i, ts; continue }
            f = int(rand() * 100); t = (f + 1 + int(rand() * 99)) % 100
            printf "acct-%d,acct-%d,%d.%02d,USD,fiat,transfer,%s-%08d,,,%s\n", f, t, 1 + int(rand() * 500), int(rand() * 100), p, i, ts
        }
    }'
}

L1="BENCH-$STAMP"; setup "$L1"
gen "$ROWS" "$L1" >"$WORK/history.csv"
echo "== dualledger backfill run: $ROWS rows ($(du -h "$WORK/history.csv" | cut -f1)) into $L1"
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; } # user nice system irq softirq steal, in ticks
busy0=$(busy)
/usr/bin/time -v "${DL[@]}" backfill run --source-type csv --source "$WORK/history.csv" --source-id "bench-$STAMP" \
    --ledger "$L1" --errors "$WORK/errors.jsonl" ${BACKFILL_FLAGS:-} >"$WORK/run.out" 2>"$WORK/run.err" || { cat "$WORK/run.out" "$WORK/run.err"; exit 1; }
cat "$WORK/run.out"
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s }' "$WORK/run.err")
rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/run.err")
rate=$(awk -v r="$ROWS" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.1f", s }' "$WORK/run.err")
machine=$(awk -v a="$busy0" -v b="$(busy)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz }')
echo "backfill: ${secs}s, ${rate} rows/s, peak RSS ${rss} kB, CPU of the dualledger process ${cpu}s; the machine's CPUs were busy ${machine}s of $(awk -v s="$secs" -v n="$(nproc)" 'BEGIN { printf "%.1f", s * n }')s (the rest is PostgreSQL and the system)"

L2="SEED-$STAMP"; setup "$L2"
gen "$SEED_ROWS" "$L2" >"$WORK/seed.csv"
"${PSQL[@]}" <<SQL
DROP TABLE IF EXISTS ledger_entries_legacy;
CREATE TABLE ledger_entries_legacy (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ledger_id text, debit_account_id text,
    credit_account_id text, amount numeric, currency_code text, asset_type text, transaction_type text, reference_id text,
    fx_rate numeric, metadata jsonb, timestamp_utc timestamptz);
CREATE TEMP TABLE s (d text, c text, a numeric, cur text, asset text, tt text, ref text, fx text, meta text, ts timestamptz);
\copy s FROM '$WORK/seed.csv' WITH (FORMAT csv, HEADER true)
INSERT INTO ledger_entries_legacy (ledger_id, debit_account_id, credit_account_id, amount, currency_code, asset_type, transaction_type, reference_id, timestamp_utc)
SELECT '$L2', d, c, a, cur, asset, tt, ref, ts FROM s;
SQL
echo "== the seed's SQL script (DO block, post_ledger_entry per row): $SEED_ROWS rows into $L2"
start=$(date +%s.%N)
"${PSQL[@]}" 2>/dev/null <<'SQL'
DO $$
DECLARE
    batch_size INTEGER := 1000;
    processed INTEGER := 0;
    successful INTEGER := 0;
    failed INTEGER := 0;
    entry RECORD;
BEGIN
    CREATE TEMP TABLE backfill_batch AS
    SELECT * FROM ledger_entries_legacy
    ORDER BY id
    LIMIT 0;
    FOR entry IN
        SELECT * FROM ledger_entries_legacy
        ORDER BY id
    LOOP
        BEGIN
            PERFORM post_ledger_entry(
                entry.ledger_id::TEXT,
                entry.debit_account_id::TEXT,
                entry.credit_account_id::TEXT,
                entry.amount::NUMERIC,
                entry.currency_code::TEXT,
                entry.asset_type::TEXT,
                entry.transaction_type::TEXT,
                entry.reference_id::TEXT,
                entry.fx_rate::NUMERIC,
                entry.metadata::JSONB
            );
            successful := successful + 1;
        EXCEPTION
            WHEN unique_violation THEN
                failed := failed + 1;
                RAISE NOTICE 'Skipping duplicate reference ID: %', entry.reference_id;
            WHEN OTHERS THEN
                failed := failed + 1;
                RAISE NOTICE 'Error processing entry %: %', entry.reference_id, SQLERRM;
        END;
        processed := processed + 1;
        IF processed % batch_size = 0 THEN
            RAISE NOTICE 'Processed % entries (% successful, % failed)', processed, successful, failed;
        END IF;
    END LOOP;
    RAISE NOTICE 'Backfill completed: % total, % successful, % failed', processed, successful, failed;
END $$;
SQL
end=$(date +%s.%N)
seed_rate=$(awk -v r="$SEED_ROWS" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", r / (b - a) }')
posted=$("${PSQL[@]}" -At -c "SELECT count(*) FROM ledger_entries WHERE ledger_id = '$L2'")
echo "seed script: $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')s, ${seed_rate} rows/s ($posted posted)"
echo "ratio: $(awk -v a="$rate" -v b="$seed_rate" 'BEGIN { printf "%.1f", a / b }')x"
"${PSQL[@]}" -c "DROP TABLE ledger_entries_legacy"
