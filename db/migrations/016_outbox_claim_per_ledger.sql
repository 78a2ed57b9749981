-- 016_outbox_claim_per_ledger.sql
--
-- The worker claims per (SCB, ledger) (docs/scale-out.md, "Worker claims per (SCB, ledger)"):
-- outbox_claim and outbox_claim_for_poll (db/functions/outbox.sql) take the ledger and select
-- `scb_id = $1 AND ledger_id = $2`, oldest due first. The partial indexes of 002 and 007 lead with
-- scb_id and then the due time, so a claim for one ledger would walk the due rows of every other
-- ledger of the SCB (a busy ledger's backlog) before it found its own. They keep their names and
-- gain ledger_id as their second column:
--
-- idx_dual_ledger_outbox_due      (scb_id, next_attempt_at, id) WHERE QUEUED
--                              -> (scb_id, ledger_id, next_attempt_at, id)
-- idx_dual_ledger_outbox_poll_due (scb_id, next_poll_at, id) WHERE status IN (SENT, ACKED)
--                              -> (scb_id, ledger_id, next_poll_at, id)
--
-- Equality on the first two columns, then the claim's order: a claim reads only the rows it takes.
-- scb_id still leads, so the worker's "which SCBs have work" (EXISTS ... scb_id = b.id AND status
-- ...) is served as before, and outbox_due_ledgers probes one (SCB, ledger) pair per index
-- look-up. Nothing else used the old column order (every query on due rows names the SCB, and now
-- the ledger).
--
-- Nothing here can fail on data. As in 015, each new index is built under a temporary name first
-- (writes to the outbox wait meanwhile, reads do not; only the rows still to deliver or to poll are
-- indexed, not the FINALIZED history), and only then is the old one dropped and the new one
-- renamed, so the claims keep an index throughout. Idempotent, and cheap to re-run: an index
-- already in the new order is left alone, and since the names are those of 002 and 007, their
-- CREATE INDEX IF NOT EXISTS finds them on a re-run (scripts/run-migrations.sh applies every file
-- each time).
DO $$
BEGIN
    IF pg_get_indexdef('idx_dual_ledger_outbox_due'::regclass) LIKE '% (scb_id, next_attempt_at, id) %' THEN
        CREATE INDEX idx_dual_ledger_outbox_due_new
            ON dual_ledger_outbox (scb_id, ledger_id, next_attempt_at, id) WHERE status = 'QUEUED';
    END IF;
    IF pg_get_indexdef('idx_dual_ledger_outbox_poll_due'::regclass) LIKE '% (scb_id, next_poll_at, id) %' THEN
        CREATE INDEX idx_dual_ledger_outbox_poll_due_new
            ON dual_ledger_outbox (scb_id, ledger_id, next_poll_at, id) WHERE status IN ('SENT', 'ACKED');
    END IF;
    IF to_regclass('idx_dual_ledger_outbox_due_new') IS NOT NULL THEN
        DROP INDEX idx_dual_ledger_outbox_due;
        ALTER INDEX idx_dual_ledger_outbox_due_new RENAME TO idx_dual_ledger_outbox_due;
    END IF;
    IF to_regclass('idx_dual_ledger_outbox_poll_due_new') IS NOT NULL THEN
        DROP INDEX idx_dual_ledger_outbox_poll_due;
        ALTER INDEX idx_dual_ledger_outbox_poll_due_new RENAME TO idx_dual_ledger_outbox_poll_due;
    END IF;
END $$;
