-- 015_account_index_order.sql
--
-- The account indexes of 013, (ledger_id, debit_account_id, seq) and (ledger_id, credit_account_id,
-- seq), become (debit_account_id, ledger_id, seq) and (credit_account_id, ledger_id, seq).
--
-- Why: the posting function looks each reference up with `ledger_id = $1 AND reference_id = $2`
-- (a generic plan: plan_cache_mode = force_generic_plan). A session plans it on its first posting,
-- and in a new database that is when ledger_entries is empty: every index then costs the same one
-- row, and the planner took an account index, whose leading ledger_id matched, with the reference
-- as a filter. The session kept that plan until autovacuum's first ANALYZE of the table
-- invalidated it (10 s in the embedded cluster, a minute or more elsewhere; never with autovacuum
-- off), and every reference look-up read every entry of the ledger: the first wrk run against a
-- new server reached about 2,100 postings/s instead of 5,800 (docs/benchmarks.md, "A plan made for
-- an empty table, in the server"). With the account id leading, an account index can serve
-- `ledger_id = $1` only by reading all of it, which costs more than the unique index's one probe
-- whatever the table's size; TestReferenceProbePlans (db/) checks the plans on an empty table.
--
-- Every query by account names both the ledger and the account (statements, balance as of a seq),
-- so the reordered indexes serve them as before: equality on the first two columns, then seq.
--
-- Nothing here can fail on data. Rebuilding the two indexes takes a write lock on ledger_entries
-- for the time of the build (about 2 s per index and million entries here); plan the upgrade
-- accordingly.
-- Idempotent: the old names are dropped if present, the new ones created if missing.

DROP INDEX IF EXISTS ledger_entries_debit_account_idx;
DROP INDEX IF EXISTS ledger_entries_credit_account_idx;
CREATE INDEX IF NOT EXISTS ledger_entries_debit_account_seq_idx ON ledger_entries (debit_account_id, ledger_id, seq);
CREATE INDEX IF NOT EXISTS ledger_entries_credit_account_seq_idx ON ledger_entries (credit_account_id, ledger_id, seq);
