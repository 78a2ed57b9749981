#!/usr/bin/env bash
# bench-wrk-fresh.sh: the single-entry path on a brand-new server, as a newcomer would first
# measure it (docs/benchmarks.md, "A plan made for an empty table, in the server").
#
#   scripts/bench-wrk-fresh.sh [RUNS] [DURATION]      (defaults 3 and 10s)
#
# A new embedded data dir, a ledger BENCH with `issuance` and 1,000 accounts, a key of scopes post,issue,
# `dualledger serve` on 127.0.0.1:18081, then RUNS wrk runs (scripts/bench-wrk.lua, 32
# connections, DISTRIBUTION spread or hot) one after the other; SCB=1 puts the accounts in a
# member bank (outbox rows). The first run is the one a plan
# made on the empty table would slow down. Needs wrk and psql; the data dir is removed first (no
# server may be using it).
set -euo pipefail
RUNS=${1:-3}
DURATION=${2:-10s}
BIN=${BIN:-bin/dualledger}
DATA=${DUALLEDGER_DATA:-$PWD/.dualledger/bench-fresh}
ADDR=127.0.0.1:18081
rm -rf "$DATA"
mkdir -p "$DATA"
trap '[ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null; true' EXIT

"$BIN" --data-dir "$DATA/pg" ledgers create BENCH >/dev/null
TOKEN=$("$BIN" --data-dir "$DATA/pg" keys create bench --scopes post,issue 2>/dev/null | tail -1)
"$BIN" --data-dir "$DATA/pg" serve --addr "$ADDR" --reconcile-every 0 >"$DATA/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do grep -q listening "$DATA/serve.log" 2>/dev/null && break; sleep 0.2; done
# SCB=1: the 1,000 accounts belong to a member bank, so every posting also writes an outbox row
# (no worker runs: the rows stay QUEUED).
BANK=NULL
if [ "${SCB:-0}" = 1 ]; then
    "$BIN" --data-dir "$DATA/pg" banks register SCB-1 --name "Bench bank" >/dev/null
    BANK="'SCB-1'"
fi
psql -X -q -v ON_ERROR_STOP=1 -h "$DATA/pg" -U postgres dualledger -c "BEGIN; SELECT dl_begin_act('cli:bench', NULL);
  INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
  SELECT 'BENCH', 'acct-' || g, $BANK, 'USD', 'fiat', 0 FROM generate_series(1, 1000) g
  UNION ALL SELECT 'BENCH', 'issuance', NULL, 'USD', 'fiat', NULL; COMMIT;" >/dev/null
for r in $(seq "$RUNS"); do
    out=$(TOKEN=$TOKEN LEDGER=BENCH DISTRIBUTION=${DISTRIBUTION:-spread} \
        wrk -t2 -c32 -d"$DURATION" --latency -s scripts/bench-wrk.lua "http://$ADDR")
    echo "run $r: $(echo "$out" | awk '/Requests\/sec/ { r = $2 } / 99%/ { p = $2 } /Non-2xx/ { e = $NF } END { printf "%s requests/s, p99 %s%s", r, p, (e ? ", non-2xx " e : "") }')"
done
