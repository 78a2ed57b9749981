-- 020_outbox_acknowledged_failures.sql
--
-- A FAILED outbox row that will never be delivered can be acknowledged by an operator, with a
-- reason: `dualledger outbox acknowledge --id N --reason TEXT` (outbox_acknowledge,
-- db/functions/outbox.sql; docs/state-machine.md, "Acknowledged failures").
--
-- Why: a row that failed on 409 (the SCB holds another entry under our key) or on an SCB's
-- permanent refusal may stay undeliverable for good once the two sides agreed on a correction (a
-- reversal here and a new entry, or the SCB's own correction). Before, it stayed FAILED for ever:
-- the FAILED alerts fired for ever, and the sync lag (the age of the oldest row not FINALIZED)
-- grew without end, so that gauge and its alerts stopped telling anything about the rows that do
-- move. The row stays FAILED (its entry is not at that SCB, and `outbox status` still counts it);
-- the acknowledgement takes it out of the alerts and the sync lag, and a bulk requeue leaves it
-- alone. `outbox requeue --id N` undoes it (the requeue clears it).
--
--   acknowledged_at, acknowledged_by, acknowledged_reason
--       when, by whom (cli:<user>) and why; all three or none, and only on a FAILED row (a
--       requeue clears them in the same UPDATE that makes the row QUEUED).
--   dual_ledger_outbox_attempts.kind 'acknowledge'
--       the act in the row's own history, beside the operator log's 'outbox.acknowledge'.
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS acknowledged_at timestamptz NULL;
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS acknowledged_by text NULL;
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS acknowledged_reason text NULL;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'dual_ledger_outbox'::regclass AND conname = 'dual_ledger_outbox_acknowledged_failed') THEN
        ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dual_ledger_outbox_acknowledged_failed
            CHECK ((acknowledged_at IS NULL AND acknowledged_by IS NULL AND acknowledged_reason IS NULL)
                   OR (acknowledged_at IS NOT NULL AND acknowledged_by IS NOT NULL AND acknowledged_reason IS NOT NULL
                       AND status = 'FAILED'));
    END IF;
END $$;

ALTER TABLE dual_ledger_outbox_attempts DROP CONSTRAINT IF EXISTS dual_ledger_outbox_attempts_kind_valid;
ALTER TABLE dual_ledger_outbox_attempts ADD CONSTRAINT dual_ledger_outbox_attempts_kind_valid
    CHECK (kind IN ('deliver', 'poll', 'callback', 'requeue', 'lease_expired', 'redeliver', 'acknowledge'));
