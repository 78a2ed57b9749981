-- scripts/audit-balances.sql: audit balances, sequences, ledger heads and the hash chain with psql.
--
-- GENERATED from internal/integrity/checks/*.sql, the queries `dualledger audit` runs; do not edit.
-- Change those files, then: go test ./internal/integrity -run TestAuditScriptGenerated -update
-- (the test fails while this file differs from what they generate).
--
--   psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f scripts/audit-balances.sql [-v limit=100]
--
-- Exit status: 0 when every check passes; 3 when any check has findings (the final DO block
-- raises, and ON_ERROR_STOP turns that into psql's exit status 3 - the script also sets
-- ON_ERROR_STOP itself, so a plain `psql -f` exits 3 too); 1 or 2 when psql itself or the
-- connection fails. Each check prints its offending rows (message, details; at most :limit,
-- default 100, per check; the summary counts all of them).
--
-- Run scripts/verify-column-names.sql first (the column_names check of `dualledger audit`): with
-- a column missing, this script stops at the first query that names it. Everything runs in one
-- REPEATABLE READ snapshot and is rolled back (the temp tables that hold the findings included);
-- the script changes nothing.
--
-- The checks, in order, under the same names as `dualledger audit`:
--
--   account_rules            reserved_balance >= 0, available_balance = balance - reserved_balance, available_balance >= -overdraft_limit (NULL = unlimited)
--   reserved_holds           reserved_balance = Σ amounts of the account's PENDING holds, available_balance = balance - reserved_balance
--   duplicate_references     at most one entry per (ledger_id, reference_id)
--   entry_accounts           both accounts of every entry exist in its ledger with its currency and asset type
--   balances_match_entries   balance = Σ credits − Σ debits of the account's entries
--   zero_sum                 balances sum to zero per (ledger, currency, asset type)
--   gapless_seq              seq runs 1..head_seq without gaps: count(*) = max(seq) = head_seq per ledger
--   ledger_head              ledgers.head_hash is the block_hash of entry head_seq (32 zero bytes when empty)
--   hash_chain               block_hash = sha256(previous_hash || ledger_entry_canonical(entry)) and previous_hash = block_hash of seq-1, recomputed in SQL
--   balance_after            each entry's debit_balance_after / credit_balance_after is the account's running balance in seq order
--   operator_log             the operator log's hash chain: hash = sha256(previous_hash || operator_action_canonical(row)), previous_hash = hash of seq-1, seq gapless from 1, head at the last row
--   hold_chain               each ledger's hold events: hash = sha256(previous_hash || ledger_hold_event_canonical(event)), previous_hash = hash of seq-1, seq gapless from 1, hold head at the last event
--   hold_states              each hold's events match its state (created, then at most one of captured/voided/expired); a captured hold's entry moves the captured amount between its accounts
--   function_definitions     every function of the schema (body, settings, privileges) is as the last dualledger migrate left it
--   table_privileges         nobody but the tables' owner may write the ledger's tables directly (no INSERT, UPDATE, DELETE, TRUNCATE grant), and no trigger on them is disabled

\set ON_ERROR_STOP on
\set QUIET on
\pset pager off
\if :{?limit}
\else
\set limit 100
\endif

BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL work_mem = '64MB';

-- account_rules (internal/integrity/checks/02_account_rules.sql)
CREATE TEMP TABLE audit_account_rules ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- account_rules: docs/design.md §2.3 and migration 004, the same rules as db/checks/004_balance_constraints.before.sql.
-- The seeds' own query (available_balance < 0, available_balance > balance) predates overdrafts and
-- our sign convention; it would flag every issuance account, so it is not used.
SELECT format('%s/%s: balance %s, available %s, reserved %s, overdraft_limit %s: %s',
              ledger_id, id, trim_scale(balance), trim_scale(available_balance), trim_scale(reserved_balance),
              coalesce(trim_scale(overdraft_limit)::text, 'unlimited'),
              concat_ws('; ',
                  CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
                  CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
                  CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END)),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', id, 'balance', trim_scale(balance)::text,
                          'available_balance', trim_scale(available_balance)::text,
                          'reserved_balance', trim_scale(reserved_balance)::text,
                          'overdraft_limit', coalesce(trim_scale(overdraft_limit)::text, 'unlimited'))
  FROM bank_accounts
 WHERE reserved_balance < 0
    OR available_balance <> balance - reserved_balance
    OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)
 ORDER BY ledger_id, id
) AS c(message, details);
\echo '== account_rules: reserved_balance >= 0, available_balance = balance - reserved_balance, available_balance >= -overdraft_limit (NULL = unlimited)'
SELECT message, details FROM audit_account_rules ORDER BY n LIMIT :limit;

-- reserved_holds (internal/integrity/checks/03_reserved_holds.sql)
CREATE TEMP TABLE audit_reserved_holds ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- reserved_holds: each account's reserved_balance is the sum of the amounts of its PENDING holds
-- (it is their debit account), and available_balance = balance - reserved_balance (docs/holds.md).
-- One pass over the pending holds (a partial index), one over the accounts.
WITH pending AS (
    SELECT h.ledger_id, h.debit_account_id AS account_id, sum(h.amount) AS held, count(*) AS holds
      FROM ledger_holds h
     WHERE h.status = 'PENDING'
     GROUP BY h.ledger_id, h.debit_account_id
)
SELECT format('%s/%s: reserved_balance %s but its %s pending hold(s) sum to %s; available_balance %s, balance %s',
              a.ledger_id, a.id, trim_scale(a.reserved_balance), coalesce(p.holds, 0), trim_scale(coalesce(p.held, 0)),
              trim_scale(a.available_balance), trim_scale(a.balance)),
       jsonb_build_object('ledger_id', a.ledger_id, 'account_id', a.id,
                          'reserved_balance', trim_scale(a.reserved_balance)::text,
                          'pending_holds_sum', trim_scale(coalesce(p.held, 0))::text, 'pending_holds', coalesce(p.holds, 0),
                          'available_balance', trim_scale(a.available_balance)::text, 'balance', trim_scale(a.balance)::text)
  FROM bank_accounts a
  LEFT JOIN pending p ON p.ledger_id = a.ledger_id AND p.account_id = a.id
 WHERE a.reserved_balance <> coalesce(p.held, 0)
    OR a.available_balance <> a.balance - a.reserved_balance
 ORDER BY a.ledger_id, a.id
) AS c(message, details);
\echo '== reserved_holds: reserved_balance = Σ amounts of the account''s PENDING holds, available_balance = balance - reserved_balance'
SELECT message, details FROM audit_reserved_holds ORDER BY n LIMIT :limit;

-- duplicate_references (internal/integrity/checks/04_duplicate_references.sql)
CREATE TEMP TABLE audit_duplicate_references ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
SELECT format('%s: reference_id %s is used by %s entries (seq %s)', ledger_id, to_jsonb(reference_id), n, seqs),
       jsonb_build_object('ledger_id', ledger_id, 'reference_id', reference_id, 'entries', n, 'seqs', to_jsonb(seqs))
  FROM (SELECT ledger_id, reference_id, count(*) AS n, (array_agg(seq ORDER BY seq))[1:10] AS seqs
          FROM ledger_entries
         GROUP BY ledger_id, reference_id
        HAVING count(*) > 1) d
 ORDER BY ledger_id, reference_id
) AS c(message, details);
\echo '== duplicate_references: at most one entry per (ledger_id, reference_id)'
SELECT message, details FROM audit_duplicate_references ORDER BY n LIMIT :limit;

-- entry_accounts (internal/integrity/checks/05_entry_accounts.sql)
CREATE TEMP TABLE audit_entry_accounts ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
SELECT format('%s seq %s: %s account %s does not exist in the ledger as a %s %s account', e.ledger_id, e.seq, v.side,
              to_jsonb(v.account_id), e.currency_code, e.asset_type),
       jsonb_build_object('ledger_id', e.ledger_id, 'seq', e.seq, 'entry_id', e.id, 'side', v.side, 'account_id', v.account_id,
                          'currency_code', e.currency_code, 'asset_type', e.asset_type)
  FROM ledger_entries e
 CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id), ('credit', e.credit_account_id)) AS v(side, account_id)
 WHERE NOT EXISTS (SELECT 1 FROM bank_accounts a
                    WHERE a.ledger_id = e.ledger_id AND a.id = v.account_id
                      AND a.currency_code = e.currency_code AND a.asset_type = e.asset_type)
 ORDER BY e.ledger_id, e.seq, v.side
) AS c(message, details);
\echo '== entry_accounts: both accounts of every entry exist in its ledger with its currency and asset type'
SELECT message, details FROM audit_entry_accounts ORDER BY n LIMIT :limit;

-- balances_match_entries (internal/integrity/checks/06_balances_match_entries.sql)
CREATE TEMP TABLE audit_balances_match_entries ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- balances_match_entries: one scan of the entries, each contributing +amount to its credit
-- account and -amount to its debit account (docs/design.md §2.3: balance = Σ credits − Σ debits).
WITH sums AS (
    SELECT e.ledger_id, v.account_id, sum(v.delta) AS net, count(*) AS legs
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES (e.credit_account_id, e.amount), (e.debit_account_id, -e.amount)) AS v(account_id, delta)
     GROUP BY e.ledger_id, v.account_id
)
SELECT format('%s/%s: stored balance %s, but its %s entries sum to %s (Σ credits − Σ debits; difference %s)',
              a.ledger_id, a.id, trim_scale(a.balance), coalesce(s.legs, 0), trim_scale(coalesce(s.net, 0)),
              trim_scale(a.balance - coalesce(s.net, 0))),
       jsonb_build_object('ledger_id', a.ledger_id, 'account_id', a.id, 'balance', trim_scale(a.balance)::text,
                          'entries_sum', trim_scale(coalesce(s.net, 0))::text, 'entries', coalesce(s.legs, 0),
                          'difference', trim_scale(a.balance - coalesce(s.net, 0))::text)
  FROM bank_accounts a
  LEFT JOIN sums s ON s.ledger_id = a.ledger_id AND s.account_id = a.id
 WHERE a.balance <> coalesce(s.net, 0)
 ORDER BY a.ledger_id, a.id
) AS c(message, details);
\echo '== balances_match_entries: balance = Σ credits − Σ debits of the account''s entries'
SELECT message, details FROM audit_balances_match_entries ORDER BY n LIMIT :limit;

-- zero_sum (internal/integrity/checks/07_zero_sum.sql)
CREATE TEMP TABLE audit_zero_sum ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
SELECT format('%s %s %s: balances sum to %s over %s accounts, not 0', ledger_id, currency_code, asset_type, trim_scale(total), n),
       jsonb_build_object('ledger_id', ledger_id, 'currency_code', currency_code, 'asset_type', asset_type,
                          'sum', trim_scale(total)::text, 'accounts', n)
  FROM (SELECT ledger_id, currency_code, asset_type, sum(balance) AS total, count(*) AS n
          FROM bank_accounts
         GROUP BY ledger_id, currency_code, asset_type
        HAVING sum(balance) <> 0) z
 ORDER BY ledger_id, currency_code, asset_type
) AS c(message, details);
\echo '== zero_sum: balances sum to zero per (ledger, currency, asset type)'
SELECT message, details FROM audit_zero_sum ORDER BY n LIMIT :limit;

-- gapless_seq (internal/integrity/checks/08_gapless_seq.sql)
CREATE TEMP TABLE audit_gapless_seq ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- gapless_seq: seq is unique per ledger (primary key) and positive, so count(*) = max(seq)
-- means 1..max all exist. The first missing seq is looked up only for the failing ledgers.
WITH e AS (
    SELECT ledger_id, count(*) AS n, min(seq) AS min_seq, max(seq) AS max_seq
      FROM ledger_entries
     GROUP BY ledger_id
), bad AS (
    SELECT coalesce(l.id, e.ledger_id) AS ledger_id, l.id IS NULL AS no_ledger, coalesce(l.head_seq, 0) AS head_seq,
           coalesce(e.n, 0) AS n, coalesce(e.max_seq, 0) AS max_seq
      FROM ledgers l
      FULL JOIN e ON e.ledger_id = l.id
     WHERE l.id IS NULL OR coalesce(e.n, 0) <> l.head_seq OR coalesce(e.max_seq, 0) <> l.head_seq OR coalesce(e.min_seq, 1) <> 1
), described AS (
    SELECT b.*,
           coalesce((SELECT min(g.prev + 1)
                       FROM (SELECT le.seq, lag(le.seq, 1, 0::bigint) OVER (ORDER BY le.seq) AS prev
                               FROM ledger_entries le WHERE le.ledger_id = b.ledger_id) g
                      WHERE g.seq <> g.prev + 1),
                    CASE WHEN b.head_seq > b.max_seq THEN b.max_seq + 1 END) AS first_missing
      FROM bad b
)
SELECT CASE WHEN no_ledger THEN format('%s: %s entries belong to a ledger that does not exist', ledger_id, n)
            ELSE format('%s: %s entries, max(seq) %s, head_seq %s%s', ledger_id, n, max_seq, head_seq,
                        coalesce(', first missing seq ' || first_missing, '')) END,
       jsonb_build_object('ledger_id', ledger_id, 'entries', n, 'max_seq', max_seq, 'head_seq', head_seq,
                          'first_missing_seq', first_missing, 'ledger_exists', NOT no_ledger)
  FROM described
 ORDER BY ledger_id
) AS c(message, details);
\echo '== gapless_seq: seq runs 1..head_seq without gaps: count(*) = max(seq) = head_seq per ledger'
SELECT message, details FROM audit_gapless_seq ORDER BY n LIMIT :limit;

-- ledger_head (internal/integrity/checks/09_ledger_head.sql)
CREATE TEMP TABLE audit_ledger_head ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
SELECT CASE WHEN l.head_seq = 0 THEN format('%s: empty ledger (head_seq 0) but head_hash is %s, not 32 zero bytes', l.id, encode(l.head_hash, 'hex'))
            WHEN e.seq IS NULL THEN format('%s: head_seq %s but there is no entry with that seq', l.id, l.head_seq)
            ELSE format('%s: head_hash %s is not the block_hash %s of entry seq %s', l.id, encode(l.head_hash, 'hex'),
                        encode(e.block_hash, 'hex'), l.head_seq) END,
       jsonb_build_object('ledger_id', l.id, 'head_seq', l.head_seq, 'head_hash', encode(l.head_hash, 'hex'),
                          'entry_block_hash', encode(e.block_hash, 'hex'))
  FROM ledgers l
  LEFT JOIN ledger_entries e ON e.ledger_id = l.id AND e.seq = l.head_seq
 WHERE CASE WHEN l.head_seq = 0 THEN l.head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE e.block_hash IS DISTINCT FROM l.head_hash END
 ORDER BY l.id
) AS c(message, details);
\echo '== ledger_head: ledgers.head_hash is the block_hash of entry head_seq (32 zero bytes when empty)'
SELECT message, details FROM audit_ledger_head ORDER BY n LIMIT :limit;

-- hash_chain (internal/integrity/checks/10_hash_chain.sql)
CREATE TEMP TABLE audit_hash_chain ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- hash_chain recomputes the chain with the SQL reference (ledger_entry_block_hash) and joins
-- each entry to seq-1 (a merge join on the primary key). One finding per ledger: its first
-- broken seq, and how many entries are broken in all.
WITH checked AS (
    SELECT e.ledger_id, e.seq, e.id, e.reference_id,
           e.block_hash <> ledger_entry_block_hash(e) AS hash_bad,
           CASE WHEN e.seq = 1 THEN e.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.block_hash IS DISTINCT FROM e.previous_hash END AS link_bad,
           p.seq IS NULL AND e.seq > 1 AS prior_missing
      FROM ledger_entries e
      LEFT JOIN ledger_entries p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
), firsts AS (
    SELECT DISTINCT ON (ledger_id) *, count(*) OVER (PARTITION BY ledger_id) AS broken
      FROM checked
     WHERE hash_bad OR link_bad
     ORDER BY ledger_id, seq
)
SELECT format('%s: first broken seq %s (entry %s, reference_id %s): %s; broken entries in all: %s', ledger_id, seq, id,
              to_jsonb(reference_id),
              concat_ws(' and ',
                  CASE WHEN prior_missing THEN format('seq %s is missing', seq - 1)
                       WHEN link_bad THEN 'previous_hash is not the block_hash of seq-1' END,
                  CASE WHEN hash_bad THEN 'block_hash is not sha256(previous_hash || canonical(entry))' END),
              broken),
       jsonb_build_object('ledger_id', ledger_id, 'seq', seq, 'entry_id', id, 'reference_id', reference_id,
                          'hash_mismatch', hash_bad, 'link_broken', link_bad, 'prior_missing', prior_missing,
                          'broken_entries', broken)
  FROM firsts
 ORDER BY ledger_id
) AS c(message, details);
\echo '== hash_chain: block_hash = sha256(previous_hash || ledger_entry_canonical(entry)) and previous_hash = block_hash of seq-1, recomputed in SQL'
SELECT message, details FROM audit_hash_chain ORDER BY n LIMIT :limit;

-- balance_after (internal/integrity/checks/11_balance_after.sql)
CREATE TEMP TABLE audit_balance_after ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- balance_after: the running balance per account in seq order (a window over one scan). One
-- finding per account: the first entry whose stored balance-after disagrees.
WITH legs AS (
    SELECT e.ledger_id, v.account_id, e.seq, v.side, v.stored,
           sum(v.delta) OVER (PARTITION BY e.ledger_id, v.account_id ORDER BY e.seq
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id, -e.amount, e.debit_balance_after),
                                ('credit', e.credit_account_id, e.amount, e.credit_balance_after))
           AS v(side, account_id, delta, stored)
), firsts AS (
    SELECT DISTINCT ON (ledger_id, account_id) *, count(*) OVER (PARTITION BY ledger_id, account_id) AS wrong
      FROM legs
     WHERE stored <> running
     ORDER BY ledger_id, account_id, seq
)
SELECT format('%s/%s: from seq %s (%s side) the stored balance after the entry is %s but the running balance is %s; entries that disagree: %s',
              ledger_id, account_id, seq, side, trim_scale(stored), trim_scale(running), wrong),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', account_id, 'seq', seq, 'side', side,
                          'stored', trim_scale(stored)::text, 'running', trim_scale(running)::text, 'entries', wrong)
  FROM firsts
 ORDER BY ledger_id, account_id
) AS c(message, details);
\echo '== balance_after: each entry''s debit_balance_after / credit_balance_after is the account''s running balance in seq order'
SELECT message, details FROM audit_balance_after ORDER BY n LIMIT :limit;

-- operator_log (internal/integrity/checks/12_operator_log.sql)
CREATE TEMP TABLE audit_operator_log ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- operator_log checks the operator log (migration 009) like hash_chain checks the entries:
-- every row's hash recomputed, every link and the head. A finding names the seq.
WITH r AS (
    SELECT seq, previous_hash,
           hash <> sha256(previous_hash || operator_action_canonical(seq, at, actor, db_login, db_role, action, target,
                                                                    before, after, reason)) AS hash_bad,
           lag(seq) OVER (ORDER BY seq) AS prev_seq, lag(hash) OVER (ORDER BY seq) AS prev_hash
      FROM operator_actions),
bad AS (
    SELECT seq, CASE
             WHEN hash_bad THEN 'hash is not sha256(previous_hash || canonical(row)): the row was changed'
             WHEN prev_seq IS NULL AND seq <> 1 THEN 'the log does not start at seq 1'
             WHEN prev_seq IS NULL AND previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                  THEN 'seq 1 does not link to 32 zero bytes'
             WHEN prev_seq IS NOT NULL AND prev_seq <> seq - 1 THEN 'rows before this seq are missing'
             WHEN prev_seq IS NOT NULL AND prev_hash <> previous_hash THEN 'previous_hash is not the hash of the row before'
           END AS problem
      FROM r
    UNION ALL
    SELECT h.seq, 'the head does not point at the last row'
      FROM operator_actions_head h
      LEFT JOIN LATERAL (SELECT seq, hash FROM operator_actions ORDER BY seq DESC LIMIT 1) l ON true
     WHERE (h.seq, h.hash) IS DISTINCT FROM (l.seq, l.hash) AND NOT (h.seq = 0 AND l.seq IS NULL))
SELECT format('operator log seq %s: %s', seq, problem), jsonb_build_object('seq', seq, 'problem', problem)
  FROM bad WHERE problem IS NOT NULL
 ORDER BY seq
) AS c(message, details);
\echo '== operator_log: the operator log''s hash chain: hash = sha256(previous_hash || operator_action_canonical(row)), previous_hash = hash of seq-1, seq gapless from 1, head at the last row'
SELECT message, details FROM audit_operator_log ORDER BY n LIMIT :limit;

-- hold_chain (internal/integrity/checks/13_hold_chain.sql)
CREATE TEMP TABLE audit_hold_chain ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- hold_chain: the hold events of each ledger are a hash chain like its entries
-- (docs/hash-chain.md, "Hold events"): hash = sha256(previous_hash || ledger_hold_event_canonical),
-- previous_hash = hash of seq-1 (32 zero bytes for seq 1), seq gapless from 1, and
-- ledgers.hold_head_seq / hold_head_hash at the last event. One finding per broken ledger.
WITH checked AS (
    SELECT e.ledger_id, e.seq, e.hold_id,
           e.hash IS DISTINCT FROM ledger_hold_event_hash(e) AS hash_bad,
           CASE WHEN e.seq = 1 THEN e.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.hash IS DISTINCT FROM e.previous_hash END AS link_bad,
           p.seq IS NULL AND e.seq > 1 AS prior_missing
      FROM ledger_hold_events e
      LEFT JOIN ledger_hold_events p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
), firsts AS (
    SELECT DISTINCT ON (ledger_id) *, count(*) OVER (PARTITION BY ledger_id) AS broken
      FROM checked
     WHERE hash_bad OR link_bad
     ORDER BY ledger_id, seq
), heads AS (
    SELECT l.id AS ledger_id, l.hold_head_seq, l.hold_head_hash, t.events, t.last_seq, e.hash AS last_hash
      FROM ledgers l
      LEFT JOIN (SELECT ledger_id, count(*) AS events, max(seq) AS last_seq FROM ledger_hold_events GROUP BY ledger_id) t
             ON t.ledger_id = l.id
      LEFT JOIN ledger_hold_events e ON e.ledger_id = l.id AND e.seq = l.hold_head_seq
)
SELECT format('%s: first broken hold event seq %s (hold %s): %s; broken events in all: %s', ledger_id, seq, hold_id,
              concat_ws(' and ',
                  CASE WHEN prior_missing THEN format('hold event seq %s is missing', seq - 1)
                       WHEN link_bad THEN 'previous_hash is not the hash of seq-1' END,
                  CASE WHEN hash_bad THEN 'hash is not sha256(previous_hash || canonical(event)): the event or its hold was changed' END),
              broken),
       jsonb_build_object('ledger_id', ledger_id, 'seq', seq, 'hold_id', hold_id, 'hash_mismatch', hash_bad,
                          'link_broken', link_bad, 'prior_missing', prior_missing, 'broken_events', broken)
  FROM firsts
UNION ALL
SELECT format('%s: hold head is seq %s, but the hold events %s', h.ledger_id, h.hold_head_seq,
              CASE WHEN coalesce(h.events, 0) <> coalesce(h.last_seq, 0) THEN format('are %s with seq up to %s (a gap)', coalesce(h.events, 0), coalesce(h.last_seq, 0))
                   WHEN h.hold_head_seq <> coalesce(h.last_seq, 0) THEN format('end at seq %s', coalesce(h.last_seq, 0))
                   ELSE 'end with another hash' END),
       jsonb_build_object('ledger_id', h.ledger_id, 'hold_head_seq', h.hold_head_seq, 'events', coalesce(h.events, 0),
                          'last_seq', coalesce(h.last_seq, 0), 'hold_head_hash', encode(h.hold_head_hash, 'hex'))
  FROM heads h
 WHERE coalesce(h.events, 0) <> coalesce(h.last_seq, 0)
    OR h.hold_head_seq <> coalesce(h.last_seq, 0)
    OR CASE WHEN h.hold_head_seq = 0 THEN h.hold_head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE h.last_hash IS DISTINCT FROM h.hold_head_hash END
) AS c(message, details);
\echo '== hold_chain: each ledger''s hold events: hash = sha256(previous_hash || ledger_hold_event_canonical(event)), previous_hash = hash of seq-1, seq gapless from 1, hold head at the last event'
SELECT message, details FROM audit_hold_chain ORDER BY n LIMIT :limit;

-- hold_states (internal/integrity/checks/14_hold_states.sql)
CREATE TEMP TABLE audit_hold_states ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- hold_states: every hold's events tell its state (docs/holds.md): exactly one `created` event
-- for the hold's amount, then nothing (PENDING) or exactly one event named after its state; no
-- hold is both captured and voided or expired. A CAPTURED hold's entry moves the captured amount
-- between the hold's accounts, in its currency, under capture_reference_id; a capture event names
-- that entry and amount; an EXPIRED hold had an expires_at.
WITH ev AS (
    SELECT e.ledger_id, e.hold_id, array_agg(e.event ORDER BY e.seq) AS events,
           (array_agg(e.amount ORDER BY e.seq))[1] AS created_amount,
           (array_agg(e.entry_id ORDER BY e.seq) FILTER (WHERE e.event = 'captured'))[1] AS entry_id,
           (array_agg(e.amount ORDER BY e.seq) FILTER (WHERE e.event = 'captured'))[1] AS captured_amount
      FROM ledger_hold_events e
     GROUP BY e.ledger_id, e.hold_id
), judged AS (
    SELECT h.ledger_id, h.reference_id, h.id, h.status, coalesce(v.events, '{}') AS events,
           concat_ws('; ',
               CASE WHEN coalesce(v.events, '{}') <> CASE h.status WHEN 'PENDING' THEN ARRAY['created']
                                                         ELSE ARRAY['created', lower(h.status)] END
                    THEN format('events %s do not match status %s', coalesce(v.events, '{}'), h.status) END,
               CASE WHEN v.created_amount IS DISTINCT FROM h.amount THEN 'created event amount is not the hold''s amount' END,
               CASE WHEN h.status = 'CAPTURED' AND (v.entry_id IS DISTINCT FROM h.capture_entry_id
                                                    OR v.captured_amount IS DISTINCT FROM h.captured_amount)
                    THEN 'capture event does not name the hold''s capture entry and amount' END,
               CASE WHEN h.status = 'CAPTURED' AND NOT EXISTS (
                        SELECT 1 FROM ledger_entries x
                         WHERE x.ledger_id = h.ledger_id AND x.id = h.capture_entry_id
                           AND x.debit_account_id = h.debit_account_id AND x.credit_account_id = h.credit_account_id
                           AND x.amount = h.captured_amount AND x.currency_code = h.currency_code
                           AND x.asset_type = h.asset_type AND x.reference_id = h.capture_reference_id)
                    THEN 'capture entry does not move the captured amount between the hold''s accounts under capture_reference_id' END,
               CASE WHEN h.status = 'EXPIRED' AND h.expires_at IS NULL THEN 'expired without an expires_at' END) AS problem
      FROM ledger_holds h
      LEFT JOIN ev v ON v.ledger_id = h.ledger_id AND v.hold_id = h.id
)
SELECT format('%s/hold %s (%s): %s', ledger_id, to_jsonb(reference_id), status, problem),
       jsonb_build_object('ledger_id', ledger_id, 'hold_reference_id', reference_id, 'hold_id', id, 'status', status,
                          'events', to_jsonb(events))
  FROM judged
 WHERE problem <> ''
 ORDER BY ledger_id, id
) AS c(message, details);
\echo '== hold_states: each hold''s events match its state (created, then at most one of captured/voided/expired); a captured hold''s entry moves the captured amount between its accounts'
SELECT message, details FROM audit_hold_states ORDER BY n LIMIT :limit;

-- function_definitions (internal/integrity/checks/15_function_definitions.sql)
CREATE TEMP TABLE audit_function_definitions ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- function_definitions compares every function of the schema (its definition, owner and
-- privileges, dl_function_digests()) with what the last `dualledger migrate` recorded (migration
-- 017): a function changed, created or dropped by hand since is a finding. migrate records only
-- the functions its files define, so one created by hand stays a finding until it is dropped.
-- Nothing is compared when nothing was recorded (a database migrated with plain psql). A
-- function owned by another role than the ledger's tables is a finding whatever was recorded (a
-- SECURITY DEFINER function runs as its owner). The fix: docs/runbooks/audit-findings.md.
SELECT format('function %s %s since the last dualledger migrate', coalesce(c.signature, d.signature),
              CASE WHEN d.signature IS NULL THEN 'was created'
                   WHEN c.signature IS NULL THEN 'was dropped'
                   ELSE 'was changed (its body, settings, owner or privileges)' END),
       jsonb_build_object('function', coalesce(c.signature, d.signature), 'recorded_at', d.recorded_at)
  FROM dl_function_digests() c
  FULL JOIN dualledger_function_digests d ON d.signature = c.signature
 WHERE EXISTS (SELECT 1 FROM dualledger_function_digests) AND c.digest IS DISTINCT FROM d.digest
UNION ALL
SELECT format('function %s is owned by %s, not by %s, the owner of the ledger''s tables',
              p.oid::regprocedure, pg_get_userbyid(p.proowner), pg_get_userbyid(t.relowner)),
       jsonb_build_object('function', p.oid::regprocedure::text, 'owner', pg_get_userbyid(p.proowner))
  FROM pg_proc p, pg_class t
 WHERE t.oid = 'ledger_entries'::regclass AND p.pronamespace = t.relnamespace AND p.proowner <> t.relowner
   AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid AND x.deptype = 'e')
 ORDER BY 1
) AS c(message, details);
\echo '== function_definitions: every function of the schema (body, settings, privileges) is as the last dualledger migrate left it'
SELECT message, details FROM audit_function_definitions ORDER BY n LIMIT :limit;

-- table_privileges (internal/integrity/checks/16_table_privileges.sql)
CREATE TEMP TABLE audit_table_privileges ON COMMIT DROP AS
SELECT row_number() OVER () AS n, c.message, c.details FROM (
-- table_privileges: nobody but the owner of the ledger's tables may write them directly, and no
-- trigger on them is disabled. Every write goes through a SECURITY DEFINER function (migration
-- 010 grants SELECT and EXECUTE only), and the guard and chain triggers are what stops even the
-- owner from changing money by hand; a GRANT of INSERT or UPDATE to a service role, or a
-- DISABLE TRIGGER, made by hand, let a login move money outside the posting functions, and no
-- other check saw it until the balances showed it. Checked: table and column privileges
-- (INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER) and sequence UPDATE (setval) of any
-- role other than the tables' owner, PUBLIC included. The fix: docs/runbooks/audit-findings.md.
SELECT format('%s has %s on %s, which only the owner of the ledger''s tables may have: every write goes through the posting, hold and outbox functions',
              w.grantee, w.privilege, w.object),
       jsonb_build_object('object', w.object, 'grantee', w.grantee, 'privilege', w.privilege)
  FROM (
    SELECT c.oid::regclass::text AS object, a.privilege_type AS privilege,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee
      FROM pg_class t, pg_class c, aclexplode(c.relacl) a
     WHERE t.oid = 'ledger_entries'::regclass AND c.relnamespace = t.relnamespace AND a.grantee <> c.relowner
       AND (c.relkind IN ('r', 'p') AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
            OR c.relkind = 'S' AND a.privilege_type = 'UPDATE')
    UNION ALL
    SELECT format('%s (column %s)', c.oid::regclass, att.attname), a.privilege_type,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
      FROM pg_class t, pg_class c, pg_attribute att, aclexplode(att.attacl) a
     WHERE t.oid = 'ledger_entries'::regclass AND c.relnamespace = t.relnamespace AND att.attrelid = c.oid
       AND a.grantee <> c.relowner AND a.privilege_type IN ('INSERT', 'UPDATE', 'REFERENCES')) w
UNION ALL
SELECT format('trigger %s on %s is disabled (pg_trigger.tgenabled = %s): the table''s guard no longer runs',
              g.tgname, g.tgrelid::regclass, quote_literal(g.tgenabled::text)),
       jsonb_build_object('trigger', g.tgname, 'table', g.tgrelid::regclass::text, 'tgenabled', g.tgenabled::text)
  FROM pg_class t, pg_class c, pg_trigger g
 WHERE t.oid = 'ledger_entries'::regclass AND c.relnamespace = t.relnamespace AND g.tgrelid = c.oid
   AND NOT g.tgisinternal AND g.tgenabled <> 'O'
 ORDER BY 1
) AS c(message, details);
\echo '== table_privileges: nobody but the tables'' owner may write the ledger''s tables directly (no INSERT, UPDATE, DELETE, TRUNCATE grant), and no trigger on them is disabled'
SELECT message, details FROM audit_table_privileges ORDER BY n LIMIT :limit;

CREATE TEMP TABLE audit_summary ON COMMIT DROP AS
SELECT * FROM (VALUES
    (1, 'account_rules', (SELECT count(*) FROM audit_account_rules)),
    (2, 'reserved_holds', (SELECT count(*) FROM audit_reserved_holds)),
    (3, 'duplicate_references', (SELECT count(*) FROM audit_duplicate_references)),
    (4, 'entry_accounts', (SELECT count(*) FROM audit_entry_accounts)),
    (5, 'balances_match_entries', (SELECT count(*) FROM audit_balances_match_entries)),
    (6, 'zero_sum', (SELECT count(*) FROM audit_zero_sum)),
    (7, 'gapless_seq', (SELECT count(*) FROM audit_gapless_seq)),
    (8, 'ledger_head', (SELECT count(*) FROM audit_ledger_head)),
    (9, 'hash_chain', (SELECT count(*) FROM audit_hash_chain)),
    (10, 'balance_after', (SELECT count(*) FROM audit_balance_after)),
    (11, 'operator_log', (SELECT count(*) FROM audit_operator_log)),
    (12, 'hold_chain', (SELECT count(*) FROM audit_hold_chain)),
    (13, 'hold_states', (SELECT count(*) FROM audit_hold_states)),
    (14, 'function_definitions', (SELECT count(*) FROM audit_function_definitions)),
    (15, 'table_privileges', (SELECT count(*) FROM audit_table_privileges))
) AS s(ord, check_name, findings);

\echo '== summary'
SELECT check_name, findings,
       CASE WHEN findings > 0 THEN 'FAIL' ELSE 'ok' END AS status
  FROM audit_summary ORDER BY ord;

DO $$
DECLARE
    failed text;
BEGIN
    SELECT string_agg(format('%s (%s)', check_name, findings), ', ' ORDER BY ord)
      INTO failed
      FROM audit_summary
     WHERE findings > 0;
    IF failed IS NOT NULL THEN
        RAISE EXCEPTION 'audit-balances: checks failed: %', failed
            USING HINT = 'the sections above list the offending rows. A wrong entry (the chain checks pass) is corrected with a reversal entry, never by editing rows; '
                      || 'balance columns that disagree with intact entries (balances_match_entries or zero_sum alone) are restored from the entries: docs/runbooks/audit-findings.md';
    END IF;
    RAISE NOTICE 'audit-balances: all checks passed';
END $$;

ROLLBACK;
