-- column_names (generated into scripts/verify-column-names.sql: deployment step 1 of the seeds,
-- docs/design.md §10.2): the snake_case columns that the seeds' code (posting module, outbox
-- worker, backfill, monitoring queries) and this audit name, no camelCase column beside them (a Prisma schema without @map), the idempotency constraint and
-- the seeds' posting function. ledger_backfill_checkpoints is checked only once it exists (the
-- backfill feature creates it). pg_catalog, not information_schema: information_schema hides the
-- columns the current role has no privilege on.
WITH expected(table_name, column_name, required) AS (VALUES
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
    ('ledger_backfill_checkpoints', 'last_checkpoint_at', false), ('ledger_backfill_checkpoints', 'completed_at', false)
), f AS (
    SELECT 1 AS ord, x.table_name || '.' || x.column_name AS what,
           format('missing column %s.%s', x.table_name, x.column_name) AS message,
           jsonb_build_object('problem', 'missing_column', 'table', x.table_name, 'column', x.column_name) AS details
      FROM expected x
     WHERE (x.required OR to_regclass(x.table_name) IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = to_regclass(x.table_name) AND a.attname = x.column_name
                          AND a.attnum > 0 AND NOT a.attisdropped)
    UNION ALL
    SELECT 2, c.relname || '.' || a.attname,
           format('camelCase column %s.%I (the code expects snake_case names)', c.relname, a.attname),
           jsonb_build_object('problem', 'camel_case_column', 'table', c.relname, 'column', a.attname)
      FROM (SELECT DISTINCT table_name FROM expected) t
      JOIN pg_class c ON c.oid = to_regclass(t.table_name)
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE a.attname <> lower(a.attname)
    UNION ALL
    SELECT 3, 'ledger_entries_unique_ledger_reference',
           'missing constraint ledger_entries_unique_ledger_reference (UNIQUE (ledger_id, reference_id), migration 001)',
           jsonb_build_object('problem', 'missing_constraint', 'constraint', 'ledger_entries_unique_ledger_reference')
     WHERE NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conname = 'ledger_entries_unique_ledger_reference' AND conrelid = to_regclass('ledger_entries'))
    UNION ALL
    SELECT 3, 'post_ledger_entry',
           'missing function post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb) (migration 005)',
           jsonb_build_object('problem', 'missing_function', 'function', 'post_ledger_entry')
     WHERE to_regprocedure('post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb)') IS NULL
)
SELECT message, details FROM f ORDER BY ord, what
