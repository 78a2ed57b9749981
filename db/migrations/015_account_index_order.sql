-- 015_account_index_order.sql
--
-- The account indexes of 013 keep their names and change their column order:
-- ledger_entries_debit_account_idx  (ledger_id, debit_account_id, seq)  -> (debit_account_id, ledger_id, seq)
-- ledger_entries_credit_account_idx (ledger_id, credit_account_id, seq) -> (credit_account_id, ledger_id, seq)
--
-- Why: the posting function looks each reference up with `ledger_id = $1 AND reference_id = $2`
-- (a generic plan: plan_cache_mode = force_generic_plan). A session plans it on its first posting,
-- and in a new database that is when ledger_entries is empty: every index then costs the same one
-- row, and the planner took an account index, whose leading ledger_id matched, with the reference
-- as a filter. The session kept that plan until autovacuum's first ANALYZE of the table
-- invalidated it (10 s in the embedded cluster, a minute or more elsewhere; never with autovacuum
-- off), and every reference look-up read every entry of the ledger: the first wrk run against a
-- new server reached 1,800-2,700 postings/s instead of 4,000-5,000 (docs/benchmarks.md, "A plan
-- made for an empty table, in the server"). With the account id leading, an account index can
-- serve `ledger_id = $1` only by reading all of it, which costs more than the unique index's one
-- probe whatever the table's size; TestPostingPlansMadeOnAnEmptyTable (db/plans_test.go) counts
-- what a session reads.
--
-- Every query by account names both the ledger and the account (statements, balance as of a seq),
-- so the reordered indexes serve them as before: equality on the first two columns, then seq.
--
-- Nothing here can fail on data. Each new index is built under a temporary name first (writes to
-- ledger_entries wait meanwhile, reads do not: about 2 s per index and million entries here), and
-- only then is the old one dropped and the new one renamed, so the exclusive lock that blocks
-- reads too is held for the last moments of the migration only.
--
-- Idempotent, and cheap to re-run: an index already in the new order is left alone, and since the
-- names are 013's, 013's own CREATE INDEX IF NOT EXISTS finds them on a re-run
-- (scripts/run-migrations.sh applies every file each time).
DO $$
DECLARE
    side text;
BEGIN
    FOREACH side IN ARRAY ARRAY['debit', 'credit'] LOOP
        IF pg_get_indexdef(format('ledger_entries_%s_account_idx', side)::regclass)
           LIKE format('%% (ledger_id, %s_account_id, seq)', side) THEN
            EXECUTE format('CREATE INDEX ledger_entries_%1$s_account_idx_new ON ledger_entries (%1$s_account_id, ledger_id, seq)', side);
        END IF;
    END LOOP;
    FOREACH side IN ARRAY ARRAY['debit', 'credit'] LOOP
        IF to_regclass(format('ledger_entries_%s_account_idx_new', side)) IS NOT NULL THEN
            EXECUTE format('DROP INDEX ledger_entries_%s_account_idx', side);
            EXECUTE format('ALTER INDEX ledger_entries_%1$s_account_idx_new RENAME TO ledger_entries_%1$s_account_idx', side);
        END IF;
    END LOOP;
END $$;
