#!/usr/bin/env bash
# Reconciliation benchmark (docs/benchmarks.md, "Reconciliation"): N entries delivered to one
# simulated SCB, then `reconcile scb --full` (time, peak RSS), then M new entries and the
# incremental daily run (reads only the new ones).
#
#   scripts/bench-reconcile.sh [N] [M]        default 1000000 and 1000
#
# Uses its own embedded cluster in $BENCH_DIR (default /tmp/dl-bench-reconcile; removed first) and
# bin/dualledger (make build). The N entries are bulk-loaded (see below); their delivery is not
# what is measured, so the SCB's log is written from our entries
# and the outbox rows are FINALIZED with the SCB's answers (as the worker would record them). The M
# new entries are posted through post_ledger_entries and delivered by the real worker.
set -euo pipefail
N=${1:-1000000}
M=${2:-1000}
BIN=${BIN:-bin/dualledger}
DIR=${BENCH_DIR:-/tmp/dl-bench-reconcile}
rm -rf "$DIR"
mkdir -p "$DIR"
chmod 755 "$DIR"
PG="$DIR/pg"
SIMDIR="$DIR/scb-SCB-1"
export DUALLEDGER_DATA="$PG"
unset DATABASE_URL

# Keep the embedded cluster up for the whole run (a server that reconciles nothing).
"$BIN" serve --addr 127.0.0.1:0 --reconcile-every 0 --allow-owner >"$DIR/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE ${SIM:-} ${WORKER:-} 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$PG/.s.PGSQL.5432" ] && grep -q listening "$DIR/serve.log" && break; sleep 0.2; done
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$PG" -U postgres dualledger)

"$BIN" ledgers create RECON >/dev/null
"$BIN" banks register SCB-1 --name "SCB one" >/dev/null
"$BIN" accounts create --ledger RECON --currency USD issuance --overdraft unlimited >/dev/null
"$BIN" accounts create --ledger RECON --currency USD --bank SCB-1 scb1 >/dev/null

echo "loading $N entries..."
start=$(date +%s)
# Bulk-loaded as the superuser with triggers off (session_replication_role = replica), because
# posting a million entries through post_ledger_entries takes most of an hour on a shared 2-core
# machine and is not what is measured. The rows are what the posting function writes (entries,
# balances-after, head, outbox rows) except that block_hash/previous_hash are sha256(seq) stand-ins,
# not a verifiable chain: reconciliation compares them as opaque values.
"${PSQL[@]}" <<SQL
SET session_replication_role = replica;
INSERT INTO ledger_entries (ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code, asset_type,
       transaction_type, reference_id, timestamp_utc, recorded_at, previous_hash, block_hash, debit_balance_after, credit_balance_after)
SELECT 'RECON', i, 'issuance', 'scb1', 1.00, 'USD', 'fiat', 'funding', 'r' || i,
       '2026-11-01T00:00:00Z'::timestamptz + i * interval '1 second', now(),
       sha256(convert_to((i - 1)::text, 'UTF8')), sha256(convert_to(i::text, 'UTF8')), -i, i
  FROM generate_series(1, $N) i;
UPDATE bank_accounts SET balance = -$N, available_balance = -$N WHERE ledger_id = 'RECON' AND id = 'issuance';
UPDATE bank_accounts SET balance = $N, available_balance = $N WHERE ledger_id = 'RECON' AND id = 'scb1';
UPDATE ledgers SET head_seq = $N, head_hash = sha256(convert_to('$N', 'UTF8')) WHERE id = 'RECON';
-- Delivered yesterday: the daily run today compares only what changed since.
INSERT INTO dual_ledger_outbox (ledger_id, entry_id, entry_seq, reference_id, scb_id, status, attempts, scb_entry_id, scb_status,
       sent_at, acked_at, finalized_at, created_at, updated_at)
SELECT e.ledger_id, e.id, e.seq, e.reference_id, 'SCB-1', 'FINALIZED', 1, 'SCB-1-' || lpad(e.seq::text, 8, '0'), 'FINAL',
       now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
  FROM ledger_entries e WHERE e.ledger_id = 'RECON';
SQL
echo "loaded in $(( $(date +%s) - start ))s"

# The SCB's copy: its log, as the simulator writes it, and our rows FINALIZED with its answers.
mkdir -p "$SIMDIR" && chmod 700 "$SIMDIR"
printf '{"id":"SCB-1"}' >"$SIMDIR/scb.json"
"${PSQL[@]}" -c "\\copy (SELECT json_build_object('seq', e.seq, 'key', e.ledger_id || ':' || e.reference_id, 'hash', '-',
    'scb_entry_id', 'SCB-1-' || lpad(e.seq::text, 8, '0'), 'posted_at', to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
    'entry', json_build_object('reference_id', e.reference_id, 'ledger_id', e.ledger_id, 'debit_account_id', e.debit_account_id,
      'credit_account_id', e.credit_account_id, 'amount', trim_scale(e.amount)::text, 'currency_code', e.currency_code,
      'asset_type', e.asset_type, 'transaction_type', e.transaction_type, 'dbis_entry_id', e.id,
      'block_hash', encode(e.block_hash, 'hex'),
      'timestamp_utc', to_char(e.timestamp_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')))
  FROM ledger_entries e WHERE e.ledger_id = 'RECON' ORDER BY e.seq) TO '$SIMDIR/entries.log'"
chmod 600 "$SIMDIR/entries.log"
"${PSQL[@]}" -c 'VACUUM ANALYZE'

"$BIN" scb-sim --id SCB-1 --api-key bench-key --data-dir "$SIMDIR" --addr 127.0.0.1:19411 --final-after 0 >"$DIR/sim.log" 2>&1 &
SIM=$!
for _ in $(seq 600); do curl -sf http://127.0.0.1:19411/healthz >/dev/null && break; sleep 0.2; done
export SCB_SCB_1_API_URL=http://127.0.0.1:19411 SCB_SCB_1_API_KEY=bench-key

echo "full run over $N entries:"
/usr/bin/time -f 'elapsed %e s, peak RSS %M KiB, user %U s, sys %S s' "$BIN" reconcile scb --scb SCB-1 --full --grace 0

echo "posting and delivering $M new entries..."
"${PSQL[@]}" -c "SELECT count(*) FROM post_ledger_entries('RECON', (SELECT jsonb_agg(jsonb_build_object('debit_account_id', 'issuance',
  'credit_account_id', 'scb1', 'amount', '2.00', 'currency_code', 'USD', 'asset_type', 'fiat', 'transaction_type', 'funding',
  'reference_id', 'new' || i)) FROM generate_series(1, $M) i), true)" >/dev/null
"$BIN" worker --allow-owner --poll-every 200ms >"$DIR/worker.log" 2>&1 &
WORKER=$!
for _ in $(seq 600); do
  left=$("${PSQL[@]}" -tA -c "SELECT count(*) FROM dual_ledger_outbox WHERE status <> 'FINALIZED'")
  [ "$left" = 0 ] && break
  sleep 0.5
done
kill $WORKER; wait $WORKER 2>/dev/null || true
WORKER=

echo "incremental run (the daily run):"
/usr/bin/time -f 'elapsed %e s, peak RSS %M KiB, user %U s, sys %S s' "$BIN" reconcile scb --scb SCB-1 --grace 0
