-- 001_ledger_idempotency.sql
--
-- Idempotency (DESIGN 2.1): at most one entry per (ledger_id, reference_id). A retry with the same
-- reference is answered with the original entry by the posting functions; this constraint is the
-- last line of defence for every other writer.
--
-- Existing duplicates are reported (not deleted: entries are append-only) and stop the migration.

DO $$
DECLARE
    dups text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
                WHERE conname = 'ledger_entries_unique_ledger_reference'
                  AND conrelid = 'ledger_entries'::regclass) THEN
        RETURN;
    END IF;

    SELECT string_agg(format('%s/%s (%s entries)', ledger_id, reference_id, n), ', ')
      INTO dups
      FROM (SELECT ledger_id, reference_id, count(*) AS n
              FROM ledger_entries
             GROUP BY ledger_id, reference_id
            HAVING count(*) > 1
             ORDER BY ledger_id, reference_id
             LIMIT 20) d;
    IF dups IS NOT NULL THEN
        RAISE EXCEPTION 'duplicate (ledger_id, reference_id) pairs exist: %', dups
            USING HINT = 'entries are append-only: post reversals for the extra entries and give them new reference ids in a copy, then re-run';
    END IF;

    ALTER TABLE ledger_entries
        ADD CONSTRAINT ledger_entries_unique_ledger_reference UNIQUE (ledger_id, reference_id);
END $$;
