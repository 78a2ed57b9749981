-- Before 007_outbox_operations.sql: FAILED outbox rows without a failure_reason. 007 adds the
-- column failure_reason (NULL) and then the CHECK dual_ledger_outbox_failed_has_reason (a FAILED
-- row has a reason), so on a database before 007 every FAILED row breaks it: the column does not
-- exist yet. Any row stops the migration before 007, nothing of it applied (instead of a bare
-- constraint violation halfway through 007). Runs the same before and after 007: the column is
-- read through to_jsonb, which has no failure_reason key before 007 (and after 007 the CHECK
-- leaves nothing to find).
--
-- check: FAILED outbox rows without a failure_reason
-- fix: keep them FAILED and give each its reason, as the owner, in one transaction: first add 007's first three columns, in 007's order (007 then skips them and the table ends as a new database's):
-- fix:   ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS attempts_base integer NOT NULL DEFAULT 0;
-- fix:   ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS requeue_count integer NOT NULL DEFAULT 0;
-- fix:   ALTER TABLE dual_ledger_outbox ADD COLUMN IF NOT EXISTS failure_reason text NULL;
-- fix:   UPDATE dual_ledger_outbox SET failure_reason = coalesce(last_error, 'FAILED before migration 007 (no reason recorded)')
-- fix:    WHERE status = 'FAILED' AND failure_reason IS NULL;
-- fix: or, to have them delivered again, requeue them (FAILED -> QUEUED is allowed; before 007 there is no attempt budget to reset, so a requeued row that fails once more is FAILED again at once: the first fix, then `dualledger outbox requeue` after 007, gives it a fresh budget):
-- fix:   UPDATE dual_ledger_outbox SET status = 'QUEUED', next_attempt_at = now() WHERE status = 'FAILED';
SELECT format('%s/%s to %s: outbox row %s FAILED at %s without a failure_reason (last error: %s, last status code: %s)',
              o.ledger_id, o.reference_id, o.scb_id, o.id, coalesce(o.failed_at::text, 'an unknown time'),
              coalesce(o.last_error, 'none'), coalesce(o.last_status_code::text, 'none'))
  FROM dual_ledger_outbox o
 WHERE o.status = 'FAILED' AND to_jsonb(o) ->> 'failure_reason' IS NULL
 ORDER BY o.ledger_id, o.reference_id, o.scb_id;
