-- scripts/audit-balances.sql: audit balances, sequences, ledger heads and the hash chain with psql.
--
--   psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f scripts/audit-balances.sql [-v limit=100]
--
-- Exit status: 0 when every check passes; 3 when any check has findings (the final DO block
-- raises, and ON_ERROR_STOP turns that into psql's exit status 3 - the script also sets
-- ON_ERROR_STOP itself, so a plain `psql -f` exits 3 too); 1 or 2 when psql itself or the
-- connection fails. Each check prints its offending rows (at most :limit, default 100, per check;
-- the summary counts all of them).
--
-- The same checks, under the same names and with the same rules, as `dualledger audit`
-- (internal/reconcile/audit.go; a test runs both on tampered databases and compares them):
--
--   account_rules           reserved_balance >= 0, available_balance = balance - reserved_balance,
--                           available_balance >= -overdraft_limit (NULL = unlimited; docs/design.md
--                           §2.3, migration 004). The seeds' own query (available_balance < 0 or
--                           available_balance > balance, docs/design.md §10.2) predates overdrafts: it would flag every
--                           issuance account, which is negative by design.
--   reserved_without_holds  reserved_balance = 0 while there is no holds table
--   duplicate_references    at most one entry per (ledger_id, reference_id)
--   entry_accounts          both accounts of an entry exist in its ledger, same currency and asset type
--   balances_match_entries  balance = sum(credits) - sum(debits) (the debit account pays; the seeds'
--                           sample reconciliation query has the opposite sign: docs/design.md §1.2)
--   zero_sum                balances sum to 0 per (ledger, currency, asset type)
--   gapless_seq             count(*) = max(seq) = head_seq per ledger
--   ledger_head             ledgers.head_hash is the block_hash of entry head_seq
--   hash_chain              block_hash and previous_hash recomputed with ledger_entry_block_hash
--                           (one row per ledger: its first broken seq)
--   balance_after           debit/credit_balance_after = the account's running balance in seq order
--                           (one row per account: its first wrong entry)
--   operator_log            the operator log's hash chain, links, seq and head (one row per broken seq)
--
-- Run scripts/verify-column-names.sql first: with a column missing, this script stops at the
-- first query that names it. Everything runs in one REPEATABLE READ snapshot and is rolled back
-- (the temp tables that hold the findings included); the script changes nothing.

\set ON_ERROR_STOP on
\set QUIET on
\pset pager off
\if :{?limit}
\else
\set limit 100
\endif

BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL work_mem = '64MB';

-- account_rules
CREATE TEMP TABLE audit_account_rules ON COMMIT DROP AS
SELECT ledger_id, id AS account_id, trim_scale(balance) AS balance, trim_scale(available_balance) AS available_balance,
       trim_scale(reserved_balance) AS reserved_balance, coalesce(trim_scale(overdraft_limit)::text, 'unlimited') AS overdraft_limit,
       concat_ws('; ',
           CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
           CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
           CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END
       ) AS problem
  FROM bank_accounts
 WHERE reserved_balance < 0
    OR available_balance <> balance - reserved_balance
    OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit);

-- reserved_without_holds (skipped when a holds table exists: then reserved_balance must equal
-- the open holds, which the holds module checks)
CREATE TEMP TABLE audit_reserved_without_holds ON COMMIT DROP AS
SELECT ledger_id, id AS account_id, trim_scale(reserved_balance) AS reserved_balance
  FROM bank_accounts
 WHERE reserved_balance <> 0
   AND to_regclass('holds') IS NULL;

-- duplicate_references
CREATE TEMP TABLE audit_duplicate_references ON COMMIT DROP AS
SELECT ledger_id, reference_id, count(*) AS entries, (array_agg(seq ORDER BY seq))[1:10] AS seqs
  FROM ledger_entries
 GROUP BY ledger_id, reference_id
HAVING count(*) > 1;

-- entry_accounts
CREATE TEMP TABLE audit_entry_accounts ON COMMIT DROP AS
SELECT e.ledger_id, e.seq, e.id AS entry_id, v.side, v.account_id, e.currency_code, e.asset_type
  FROM ledger_entries e
 CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id), ('credit', e.credit_account_id)) AS v(side, account_id)
 WHERE NOT EXISTS (SELECT 1 FROM bank_accounts a
                    WHERE a.ledger_id = e.ledger_id AND a.id = v.account_id
                      AND a.currency_code = e.currency_code AND a.asset_type = e.asset_type);

-- balances_match_entries: each entry adds +amount to its credit account, -amount to its debit account
CREATE TEMP TABLE audit_balances_match_entries ON COMMIT DROP AS
WITH sums AS (
    SELECT e.ledger_id, v.account_id, sum(v.delta) AS net, count(*) AS legs
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES (e.credit_account_id, e.amount), (e.debit_account_id, -e.amount)) AS v(account_id, delta)
     GROUP BY e.ledger_id, v.account_id
)
SELECT a.ledger_id, a.id AS account_id, trim_scale(a.balance) AS stored_balance, trim_scale(coalesce(s.net, 0)) AS entries_sum,
       coalesce(s.legs, 0) AS entries, trim_scale(a.balance - coalesce(s.net, 0)) AS difference
  FROM bank_accounts a
  LEFT JOIN sums s ON s.ledger_id = a.ledger_id AND s.account_id = a.id
 WHERE a.balance <> coalesce(s.net, 0);

-- zero_sum
CREATE TEMP TABLE audit_zero_sum ON COMMIT DROP AS
SELECT ledger_id, currency_code, asset_type, trim_scale(sum(balance)) AS balance_sum, count(*) AS accounts
  FROM bank_accounts
 GROUP BY ledger_id, currency_code, asset_type
HAVING sum(balance) <> 0;

-- gapless_seq (seq is unique and positive, so count(*) = max(seq) means 1..max all exist)
CREATE TEMP TABLE audit_gapless_seq ON COMMIT DROP AS
WITH e AS (
    SELECT ledger_id, count(*) AS n, min(seq) AS min_seq, max(seq) AS max_seq
      FROM ledger_entries
     GROUP BY ledger_id
), bad AS (
    SELECT coalesce(l.id, e.ledger_id) AS ledger_id, l.id IS NOT NULL AS ledger_exists,
           coalesce(l.head_seq, 0) AS head_seq, coalesce(e.n, 0) AS entries, coalesce(e.max_seq, 0) AS max_seq
      FROM ledgers l
      FULL JOIN e ON e.ledger_id = l.id
     WHERE l.id IS NULL OR coalesce(e.n, 0) <> l.head_seq OR coalesce(e.max_seq, 0) <> l.head_seq OR coalesce(e.min_seq, 1) <> 1
)
SELECT b.*,
       coalesce((SELECT min(g.prev + 1)
                   FROM (SELECT le.seq, lag(le.seq, 1, 0::bigint) OVER (ORDER BY le.seq) AS prev
                           FROM ledger_entries le WHERE le.ledger_id = b.ledger_id) g
                  WHERE g.seq <> g.prev + 1),
                CASE WHEN b.head_seq > b.max_seq THEN b.max_seq + 1 END) AS first_missing_seq
  FROM bad b;

-- ledger_head
CREATE TEMP TABLE audit_ledger_head ON COMMIT DROP AS
SELECT l.id AS ledger_id, l.head_seq, encode(l.head_hash, 'hex') AS head_hash,
       encode(e.block_hash, 'hex') AS entry_block_hash
  FROM ledgers l
  LEFT JOIN ledger_entries e ON e.ledger_id = l.id AND e.seq = l.head_seq
 WHERE CASE WHEN l.head_seq = 0 THEN l.head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE e.block_hash IS DISTINCT FROM l.head_hash END;

-- hash_chain: one row per ledger, its first broken seq
CREATE TEMP TABLE audit_hash_chain ON COMMIT DROP AS
WITH checked AS (
    SELECT e.ledger_id, e.seq, e.id AS entry_id, e.reference_id,
           e.block_hash <> ledger_entry_block_hash(e) AS hash_mismatch,
           CASE WHEN e.seq = 1 THEN e.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.block_hash IS DISTINCT FROM e.previous_hash END AS link_broken,
           p.seq IS NULL AND e.seq > 1 AS prior_missing
      FROM ledger_entries e
      LEFT JOIN ledger_entries p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
)
SELECT DISTINCT ON (ledger_id) ledger_id, seq AS first_broken_seq, entry_id, reference_id, hash_mismatch,
       link_broken, prior_missing, count(*) OVER (PARTITION BY ledger_id) AS broken_entries
  FROM checked
 WHERE hash_mismatch OR link_broken
 ORDER BY ledger_id, seq;

-- balance_after: one row per account, its first entry whose stored balance-after is wrong
CREATE TEMP TABLE audit_balance_after ON COMMIT DROP AS
WITH legs AS (
    SELECT e.ledger_id, v.account_id, e.seq, v.side, v.stored,
           sum(v.delta) OVER (PARTITION BY e.ledger_id, v.account_id ORDER BY e.seq
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id, -e.amount, e.debit_balance_after),
                                ('credit', e.credit_account_id, e.amount, e.credit_balance_after))
           AS v(side, account_id, delta, stored)
)
SELECT DISTINCT ON (ledger_id, account_id) ledger_id, account_id, seq AS first_wrong_seq, side,
       trim_scale(stored) AS stored_balance_after, trim_scale(running) AS running_balance,
       count(*) OVER (PARTITION BY ledger_id, account_id) AS wrong_entries
  FROM legs
 WHERE stored <> running
 ORDER BY ledger_id, account_id, seq;

\echo
\echo '== account_rules: accounts that break the balance rules'
SELECT * FROM audit_account_rules ORDER BY ledger_id, account_id LIMIT :limit;
\echo '== reserved_without_holds: reserved funds without a holds table'
SELECT * FROM audit_reserved_without_holds ORDER BY ledger_id, account_id LIMIT :limit;
\echo '== duplicate_references: (ledger_id, reference_id) used more than once'
SELECT * FROM audit_duplicate_references ORDER BY ledger_id, reference_id LIMIT :limit;
\echo '== entry_accounts: entries whose account is missing or of another currency/asset type'
SELECT * FROM audit_entry_accounts ORDER BY ledger_id, seq, side LIMIT :limit;
\echo '== balances_match_entries: stored balance <> sum(credits) - sum(debits)'
SELECT * FROM audit_balances_match_entries ORDER BY ledger_id, account_id LIMIT :limit;
\echo '== zero_sum: balances that do not sum to 0 per ledger, currency and asset type'
SELECT * FROM audit_zero_sum ORDER BY ledger_id, currency_code, asset_type LIMIT :limit;
\echo '== gapless_seq: ledgers whose seq is not 1..head_seq without gaps'
SELECT * FROM audit_gapless_seq ORDER BY ledger_id LIMIT :limit;
\echo '== ledger_head: ledger heads that are not their last entry'
SELECT * FROM audit_ledger_head ORDER BY ledger_id LIMIT :limit;
\echo '== hash_chain: first broken seq per ledger'
SELECT * FROM audit_hash_chain ORDER BY ledger_id LIMIT :limit;
\echo '== balance_after: first wrong balance-after per account'
SELECT * FROM audit_balance_after ORDER BY ledger_id, account_id LIMIT :limit;

-- operator_log: the operator log's hash chain (migration 009), one row per broken seq
CREATE TEMP TABLE audit_operator_log ON COMMIT DROP AS
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
SELECT seq, problem FROM bad WHERE problem IS NOT NULL;

\echo '== operator_log: broken rows of the operator log'
SELECT * FROM audit_operator_log ORDER BY seq LIMIT :limit;

CREATE TEMP TABLE audit_summary ON COMMIT DROP AS
SELECT * FROM (VALUES
    (1, 'account_rules', (SELECT count(*) FROM audit_account_rules)),
    (2, 'reserved_without_holds', (SELECT count(*) FROM audit_reserved_without_holds)),
    (3, 'duplicate_references', (SELECT count(*) FROM audit_duplicate_references)),
    (4, 'entry_accounts', (SELECT count(*) FROM audit_entry_accounts)),
    (5, 'balances_match_entries', (SELECT count(*) FROM audit_balances_match_entries)),
    (6, 'zero_sum', (SELECT count(*) FROM audit_zero_sum)),
    (7, 'gapless_seq', (SELECT count(*) FROM audit_gapless_seq)),
    (8, 'ledger_head', (SELECT count(*) FROM audit_ledger_head)),
    (9, 'hash_chain', (SELECT count(*) FROM audit_hash_chain)),
    (10, 'balance_after', (SELECT count(*) FROM audit_balance_after)),
    (11, 'operator_log', (SELECT count(*) FROM audit_operator_log))
) AS s(ord, check_name, findings);

\echo '== summary'
SELECT check_name, findings,
       CASE WHEN findings > 0 THEN 'FAIL'
            WHEN check_name = 'reserved_without_holds' AND to_regclass('holds') IS NOT NULL THEN 'skipped (holds table exists)'
            ELSE 'ok' END AS status
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
            USING HINT = 'the sections above list the offending rows; entries are append-only: correct with reversal entries, never by editing rows';
    END IF;
    RAISE NOTICE 'audit-balances: all checks passed';
END $$;

ROLLBACK;
