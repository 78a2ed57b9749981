-- 019_reconciliation_review.sql
--
-- What the reconciliation review of 2026-12-02 found missing from 013's tables:
--
--   reconciliation_runs.grace
--       the --grace a run was finished with. An incremental run compares what changed since the
--       previous good run began, less that run's grace (a delivery too young for it then is old
--       enough now); with this run's grace instead, a run with a smaller grace than the one
--       before skipped the deliveries the earlier run had left for later.
--
--   reconciliation_scb_entries.gone_run_id
--       the run whose GET answered 404 for an entry the SCB had listed before. 013 deleted the
--       entry's copy, and an incremental run then compared it no more (nothing of it was read,
--       our delivery did not change): the loss was missed until a full run. The copy is now kept
--       as gone: not the SCB's any more for the comparison (missing_on_scb), but still compared by
--       every run until the SCB lists it again or a full run drops it.
--
--   reconciliation_scb_entries.other_scb_entry_ids
--       the SCB's other entries under the same (ledger, reference) in one read of its list: the
--       SCB booked one of our postings twice. 013 kept one copy and the second went unreported;
--       now it is a discrepancy of its own kind, duplicate_on_scb.
ALTER TABLE reconciliation_runs ADD COLUMN IF NOT EXISTS grace interval NULL;
ALTER TABLE reconciliation_scb_entries ADD COLUMN IF NOT EXISTS gone_run_id bigint NULL;
ALTER TABLE reconciliation_scb_entries ADD COLUMN IF NOT EXISTS other_scb_entry_ids text[] NOT NULL DEFAULT '{}';

ALTER TABLE reconciliation_discrepancies DROP CONSTRAINT IF EXISTS reconciliation_discrepancies_kind_valid;
ALTER TABLE reconciliation_discrepancies ADD CONSTRAINT reconciliation_discrepancies_kind_valid
    CHECK (kind IN ('missing_on_scb', 'missing_on_dbis', 'amount_mismatch', 'field_mismatch',
                    'hash_mismatch', 'status_mismatch', 'delivery_failed', 'duplicate_on_scb'));
