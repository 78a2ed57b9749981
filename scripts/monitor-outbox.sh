#!/usr/bin/env bash
# monitor-outbox.sh: the seeds' outbox monitor (docs/design.md §10.2), as a thin wrapper over `dualledger outbox`.
#
#   scripts/monitor-outbox.sh [options] [DATABASE_URL]
#
# Prints the outbox depth by SCB and status (`dualledger outbox status`) and the most recent
# FAILED rows (`dualledger outbox list --status FAILED`), and exits non-zero when a threshold of
# the seeds is crossed: more than 100 QUEUED or more than 10 FAILED rows (docs/design.md §10.2).
#
# The dualledger binary is taken from $DUALLEDGER, else from PATH, else built from this checkout
# with `go build`; when none of that works (or with --psql) plain psql queries equivalent to the
# seeds' are used instead (they need DATABASE_URL).
#
# Options:
#   --watch N     repeat every N seconds until interrupted (exit status: that of the last round)
#   --queued N    alert when more than N rows are QUEUED   (default 100, env ALERT_QUEUED; 0 = off)
#   --failed N    alert when more than N rows are FAILED and not acknowledged (default 10, env ALERT_FAILED; 0 = off)
#   --lag DUR     alert when the sync lag (oldest row neither FINALIZED nor acknowledged) exceeds DUR, e.g. 5m
#                 (default off, env ALERT_LAG; accepts Go durations s/m/h, e.g. 90s, 5m, 1h30m)
#   --limit N     FAILED rows listed (default 20)
#   --psql        use psql even if the dualledger binary is available
#   -h, --help    this text
#
# DATABASE_URL may also come from the environment; prefer that (or ~/.pgpass) to the argument,
# which other users can read in the process list. Without any DATABASE_URL the dualledger binary
# uses its embedded default (./.dualledger/pg, or --data-dir / DUALLEDGER_DATA).
#
# Exit status: 0 all thresholds respected; 1 a threshold is crossed; 2 bad arguments;
# 3 the outbox could not be read (database down, not migrated, no permission).
#
# Runbook: docs/runbooks/stuck-outbox.md

set -uo pipefail

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; }

watch=0
queued="${ALERT_QUEUED:-100}"
failed="${ALERT_FAILED:-10}"
lag="${ALERT_LAG:-}"
limit=20
force_psql=0
positional=()

die_usage() { echo "monitor-outbox: $*" >&2; echo "try: $0 --help" >&2; exit 2; }
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
	case "$1" in
	--watch) [ $# -ge 2 ] || die_usage "--watch needs N"; watch="$2"; shift 2 ;;
	--watch=*) watch="${1#*=}"; shift ;;
	--queued) [ $# -ge 2 ] || die_usage "--queued needs N"; queued="$2"; shift 2 ;;
	--queued=*) queued="${1#*=}"; shift ;;
	--failed) [ $# -ge 2 ] || die_usage "--failed needs N"; failed="$2"; shift 2 ;;
	--failed=*) failed="${1#*=}"; shift ;;
	--lag) [ $# -ge 2 ] || die_usage "--lag needs a duration"; lag="$2"; shift 2 ;;
	--lag=*) lag="${1#*=}"; shift ;;
	--limit) [ $# -ge 2 ] || die_usage "--limit needs N"; limit="$2"; shift 2 ;;
	--limit=*) limit="${1#*=}"; shift ;;
	--psql) force_psql=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; positional+=("$@"); break ;;
	-*) die_usage "unknown option $1" ;;
	*) positional+=("$1"); shift ;; # options may come before or after the DATABASE_URL
	esac
done
if [ ${#positional[@]} -gt 1 ]; then die_usage "at most one DATABASE_URL argument"; fi
if [ ${#positional[@]} -eq 1 ]; then export DATABASE_URL="${positional[0]}"; fi

is_uint "$watch" || die_usage "--watch must be a whole number of seconds"
is_uint "$queued" || die_usage "--queued must be a whole number"
is_uint "$failed" || die_usage "--failed must be a whole number"
is_uint "$limit" && [ "$limit" -gt 0 ] || die_usage "--limit must be a positive whole number"

# lag_seconds DUR: a Go duration (90s, 5m, 1h30m, 2h) as whole seconds, for the psql fallback.
lag_seconds() {
	local d="$1" total=0 n u
	[[ "$d" =~ ^([0-9]+(h|m|s))+$ ]] || return 1
	while [[ "$d" =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
		n="${BASH_REMATCH[1]}" u="${BASH_REMATCH[2]}" d="${BASH_REMATCH[3]}"
		case "$u" in h) total=$((total + n * 3600)) ;; m) total=$((total + n * 60)) ;; s) total=$((total + n)) ;; esac
	done
	echo "$total"
}
lag_secs=0
if [ -n "$lag" ]; then
	lag_secs="$(lag_seconds "$lag")" || die_usage "--lag must be a duration such as 90s, 5m or 1h30m"
fi

# --- find or build the dualledger binary --------------------------------------------------------

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin=""
find_binary() {
	if [ -n "${DUALLEDGER:-}" ] && [ -x "$DUALLEDGER" ]; then
		bin="$DUALLEDGER"
		return 0
	fi
	if command -v dualledger >/dev/null 2>&1; then
		bin="$(command -v dualledger)"
		return 0
	fi
	if command -v go >/dev/null 2>&1 && [ -d "$repo/cmd/dualledger" ]; then
		local out="${TMPDIR:-/tmp}/dualledger-monitor-$(id -u)/dualledger"
		mkdir -p "$(dirname "$out")" || return 1
		echo "monitor-outbox: dualledger is not on PATH; building it from $repo" >&2
		if (cd "$repo" && go build -o "$out" ./cmd/dualledger) >&2; then
			bin="$out"
			return 0
		fi
		echo "monitor-outbox: go build failed" >&2
	fi
	return 1
}

if [ "$force_psql" -eq 0 ] && ! find_binary; then
	echo "monitor-outbox: no dualledger binary (not on PATH, \$DUALLEDGER unset, cannot build); using psql" >&2
	force_psql=1
fi
if [ "$force_psql" -eq 0 ] && [ -z "${DATABASE_URL:-}" ]; then
	echo "monitor-outbox: DATABASE_URL is not set: reading the embedded database (${DUALLEDGER_DATA:-./.dualledger/pg})" >&2
fi
if [ "$force_psql" -eq 1 ]; then
	command -v psql >/dev/null 2>&1 || { echo "monitor-outbox: neither dualledger nor psql is available" >&2; exit 3; }
	[ -n "${DATABASE_URL:-}" ] || die_usage "the psql fallback needs DATABASE_URL (argument or environment)"
fi

# --- one round ----------------------------------------------------------------------------------

# with the binary: its own thresholds (--alert-*) decide the exit status of `outbox status`.
round_binary() {
	# (0 means "off" here; the binary's "off" is -1 and its 0 alerts on any row)
	local aq=$queued af=$failed
	[ "$aq" = 0 ] && aq=-1
	[ "$af" = 0 ] && af=-1
	local args=(outbox status --alert-queued "$aq" --alert-failed "$af") rc
	[ -n "$lag" ] && args+=(--alert-lag "$lag")
	"$bin" "${args[@]}"
	rc=$?
	# 1 = a threshold is crossed; anything else but 0 means the outbox could not be read.
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then return 3; fi
	echo
	echo "Most recent FAILED rows (at most $limit):"
	"$bin" outbox list --status FAILED --limit "$limit" || return 3
	return "$rc"
}

# without it: the seeds' queries, and the thresholds in SQL.
round_psql() {
	local psql=(psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -P pager=off)
	echo "Queue depth (SELECT status, COUNT(*) FROM dual_ledger_outbox GROUP BY status):"
	"${psql[@]}" -c "SELECT status, COUNT(*) FROM dual_ledger_outbox GROUP BY status ORDER BY status" || return 3
	echo "By SCB:"
	"${psql[@]}" -c "
		SELECT scb_id,
		       count(*) FILTER (WHERE status = 'QUEUED')     AS queued,
		       count(*) FILTER (WHERE status = 'PROCESSING') AS processing,
		       count(*) FILTER (WHERE status = 'SENT')       AS sent,
		       count(*) FILTER (WHERE status = 'ACKED')      AS acked,
		       count(*) FILTER (WHERE status = 'FINALIZED')  AS finalized,
		       count(*) FILTER (WHERE status = 'FAILED')     AS failed,
		       count(*) FILTER (WHERE acknowledged_at IS NOT NULL) AS failed_acknowledged,
		       date_trunc('second', now() - min(created_at) FILTER (WHERE status = 'QUEUED'))     AS oldest_queued,
		       date_trunc('second', now() - min(created_at) FILTER (WHERE status <> 'FINALIZED' AND acknowledged_at IS NULL)) AS sync_lag
		  FROM dual_ledger_outbox GROUP BY scb_id ORDER BY scb_id" || return 3
	echo "Most recent FAILED rows (at most $limit):"
	"${psql[@]}" -c "
		SELECT id, scb_id, ledger_id, reference_id, attempts, last_status_code,
		       left(coalesce(failure_reason, last_error), 100) AS reason, last_attempt_at,
		       acknowledged_by IS NOT NULL AS acknowledged
		  FROM dual_ledger_outbox WHERE status = 'FAILED'
		 ORDER BY last_attempt_at DESC NULLS LAST, id
		 LIMIT $limit" || return 3
	local line q f l
	line="$("${psql[@]}" -At -F ' ' -c "
		SELECT count(*) FILTER (WHERE status = 'QUEUED'), count(*) FILTER (WHERE status = 'FAILED' AND acknowledged_at IS NULL),
		       coalesce(floor(extract(epoch FROM now() - min(created_at) FILTER (WHERE status <> 'FINALIZED' AND acknowledged_at IS NULL))), 0)::bigint
		  FROM dual_ledger_outbox")" || return 3
	read -r q f l <<<"$line"
	local rc=0
	if [ "$queued" -gt 0 ] && [ "$q" -gt "$queued" ]; then echo "ALERT: $q QUEUED > $queued"; rc=1; fi
	if [ "$failed" -gt 0 ] && [ "$f" -gt "$failed" ]; then echo "ALERT: $f FAILED (not acknowledged) > $failed"; rc=1; fi
	if [ -n "$lag" ] && [ "$l" -gt "$lag_secs" ]; then echo "ALERT: sync lag ${l}s > $lag"; rc=1; fi
	return "$rc"
}

round() {
	if [ "$force_psql" -eq 1 ]; then round_psql; else round_binary; fi
}

if [ "$watch" -eq 0 ]; then
	round
	exit $?
fi

last=0
trap 'echo; exit "$last"' INT TERM
while :; do
	echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) (every ${watch}s; Ctrl-C to stop) ==="
	round
	last=$?
	echo
	sleep "$watch" &
	wait $!
done
