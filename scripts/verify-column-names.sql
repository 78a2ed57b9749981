-- scripts/verify-column-names.sql: check that the database uses the snake_case column names the
-- code relies on (deployment step 1 of the seeds, docs/design.md §10.2), before auditing or migrating.
--
--   psql "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -f scripts/verify-column-names.sql
--
-- Exit status: 0 when every expected column, the idempotency constraint and the seeds' posting
-- function exist and no camelCase column sits beside them; 3 otherwise (the final DO block
-- raises, and ON_ERROR_STOP - which the script also sets itself - makes psql exit 3); 1 or 2
-- when psql itself or the connection fails.
--
-- It prints the missing columns, any camelCase columns (a Prisma schema without @map), and the
-- missing constraint/function. The expected list is the columns named by the seeds' code
-- (posting module, outbox worker, monitoring and backfill queries) and by the audits;
-- ledger_backfill_checkpoints is checked only once it exists (the backfill feature creates it).
-- Same rule, same list as the column_names check of `dualledger audit`
-- (internal/integrity/audit.go). pg_catalog rather than information_schema, which hides the
-- columns of tables the current role may not read.

\set ON_ERROR_STOP on
\set QUIET on
\pset pager off

BEGIN;

CREATE TEMP TABLE expected_columns (table_name text, column_name text, required boolean) ON COMMIT DROP;
INSERT INTO expected_columns VALUES
    ('ledgers', 'id', true), ('ledgers', 'head_seq', true), ('ledgers', 'head_hash', true),
    ('bank_accounts', 'ledger_id', true), ('bank_accounts', 'id', true), ('bank_accounts', 'currency_code', true),
    ('bank_accounts', 'asset_type', true), ('bank_accounts', 'balance', true), ('bank_accounts', 'available_balance', true),
    ('bank_accounts', 'reserved_balance', true), ('bank_accounts', 'overdraft_limit', true),
    ('ledger_entries', 'id', true), ('ledger_entries', 'ledger_id', true), ('ledger_entries', 'seq', true),
    ('ledger_entries', 'debit_account_id', true), ('ledger_entries', 'credit_account_id', true),
    ('ledger_entries', 'amount', true), ('ledger_entries', 'currency_code', true), ('ledger_entries', 'asset_type', true),
    ('ledger_entries', 'transaction_type', true), ('ledger_entries', 'reference_id', true), ('ledger_entries', 'fx_rate', true),
    ('ledger_entries', 'metadata', true), ('ledger_entries', 'timestamp_utc', true), ('ledger_entries', 'previous_hash', true),
    ('ledger_entries', 'block_hash', true), ('ledger_entries', 'reverses_entry_id', true),
    ('ledger_entries', 'debit_balance_after', true), ('ledger_entries', 'credit_balance_after', true),
    ('dual_ledger_outbox', 'id', true), ('dual_ledger_outbox', 'ledger_id', true), ('dual_ledger_outbox', 'reference_id', true),
    ('dual_ledger_outbox', 'status', true), ('dual_ledger_outbox', 'attempts', true), ('dual_ledger_outbox', 'created_at', true),
    ('dual_ledger_outbox', 'last_attempt_at', true),
    ('ledger_backfill_checkpoints', 'source_id', false), ('ledger_backfill_checkpoints', 'source_type', false),
    ('ledger_backfill_checkpoints', 'status', false), ('ledger_backfill_checkpoints', 'last_processed_id', false),
    ('ledger_backfill_checkpoints', 'last_processed_timestamp', false), ('ledger_backfill_checkpoints', 'total_processed', false),
    ('ledger_backfill_checkpoints', 'total_successful', false), ('ledger_backfill_checkpoints', 'total_failed', false),
    ('ledger_backfill_checkpoints', 'last_checkpoint_at', false), ('ledger_backfill_checkpoints', 'completed_at', false);

CREATE TEMP TABLE column_findings ON COMMIT DROP AS
SELECT 'missing column' AS problem, x.table_name AS object, x.column_name AS name
  FROM expected_columns x
 WHERE (x.required OR to_regclass(x.table_name) IS NOT NULL)
   AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = to_regclass(x.table_name) AND a.attname = x.column_name
                      AND a.attnum > 0 AND NOT a.attisdropped)
UNION ALL
SELECT 'camelCase column', c.relname, a.attname
  FROM (SELECT DISTINCT table_name FROM expected_columns) t
  JOIN pg_class c ON c.oid = to_regclass(t.table_name)
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE a.attname <> lower(a.attname)
UNION ALL
SELECT 'missing constraint', 'ledger_entries', 'ledger_entries_unique_ledger_reference'
 WHERE NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conname = 'ledger_entries_unique_ledger_reference' AND conrelid = to_regclass('ledger_entries'))
UNION ALL
SELECT 'missing function', 'post_ledger_entry', 'post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb)'
 WHERE to_regprocedure('post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb)') IS NULL;

\echo '== expected columns per table (present / expected)'
SELECT x.table_name,
       count(*) FILTER (WHERE a.attname IS NOT NULL) AS present,
       count(*) AS expected,
       CASE WHEN to_regclass(x.table_name) IS NULL AND NOT bool_or(x.required) THEN 'table not created yet (optional)'
            WHEN to_regclass(x.table_name) IS NULL THEN 'TABLE MISSING' ELSE '' END AS note
  FROM expected_columns x
  LEFT JOIN pg_attribute a ON a.attrelid = to_regclass(x.table_name) AND a.attname = x.column_name
                          AND a.attnum > 0 AND NOT a.attisdropped
 GROUP BY x.table_name
 ORDER BY x.table_name;

\echo '== findings (missing columns, camelCase columns, missing constraint or function)'
SELECT problem, object, name FROM column_findings ORDER BY problem, object, name;

DO $$
DECLARE
    n    bigint;
    list text;
BEGIN
    SELECT count(*), string_agg(format('%s %s.%s', problem, object, name), ', ' ORDER BY problem, object, name)
      INTO n, list
      FROM column_findings;
    IF n > 0 THEN
        RAISE EXCEPTION 'verify-column-names: % finding(s): %', n, list
            USING HINT = 'the code expects snake_case columns (e.g. ledger_id, debit_account_id); apply the migrations (dualledger migrate) or map the names';
    END IF;
    RAISE NOTICE 'verify-column-names: all expected columns exist (snake_case)';
END $$;

ROLLBACK;
