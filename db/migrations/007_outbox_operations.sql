-- 007_outbox_operations.sql
--
-- What the worker and the operator need beyond the seed's outbox:
--   attempts_base  attempts already spent when the row was last requeued by an operator: the
--                  attempt budget (--max-attempts) counts from here, while `attempts` stays the
--                  monotonic total for the audit.
--   requeue_count  how often an operator requeued the row.
--   failure_reason why the row is FAILED (permanent error, or attempts exhausted), kept apart from
--                  last_error (which later attempts overwrite).
--   next_poll_at   when a SENT/ACKED row may ask its SCB for news again; failed polls push it out
--   poll_failures  (backoff, Retry-After) so an SCB outage is not hammered by polls.

ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS attempts_base integer NOT NULL DEFAULT 0;
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS requeue_count integer NOT NULL DEFAULT 0;
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS failure_reason text NULL;
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS next_poll_at timestamptz NULL;
ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS poll_failures integer NOT NULL DEFAULT 0;

-- Rows of one SCB waiting for its final confirmation, in the order they are due to be polled.
CREATE INDEX IF NOT EXISTS idx_dual_ledger_outbox_poll_due
    ON dual_ledger_outbox (scb_id, next_poll_at, id) WHERE status IN ('SENT', 'ACKED');

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'dual_ledger_outbox'::regclass
                    AND conname = 'dual_ledger_outbox_attempts_base_valid') THEN
        ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dual_ledger_outbox_attempts_base_valid
            CHECK (attempts_base >= 0 AND attempts_base <= attempts);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'dual_ledger_outbox'::regclass
                    AND conname = 'dual_ledger_outbox_failed_has_reason') THEN
        ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dual_ledger_outbox_failed_has_reason
            CHECK (status <> 'FAILED' OR failure_reason IS NOT NULL);
    END IF;
    -- A row the SCB accepted is always due for a poll at some time: none can be forgotten.
    UPDATE dual_ledger_outbox SET next_poll_at = now()
     WHERE status IN ('SENT', 'ACKED') AND next_poll_at IS NULL;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'dual_ledger_outbox'::regclass
                    AND conname = 'dual_ledger_outbox_accepted_is_polled') THEN
        ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dual_ledger_outbox_accepted_is_polled
            CHECK (status NOT IN ('SENT', 'ACKED') OR next_poll_at IS NOT NULL);
    END IF;
END $$;

-- Entries that still wait for an SCB (DBIS_COMMITTED), cheaply: the settlement status query and
-- `outbox status` count them.
CREATE INDEX IF NOT EXISTS idx_dual_ledger_outbox_unsettled
    ON dual_ledger_outbox (ledger_id, reference_id) WHERE status <> 'FINALIZED';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dualledger_app') THEN
        GRANT UPDATE (attempts_base, requeue_count, failure_reason, next_poll_at, poll_failures)
            ON dual_ledger_outbox TO dualledger_app;
    END IF;
END $$;
