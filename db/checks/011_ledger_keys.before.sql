-- Before 011_ledger_keys.sql: delivery attempts whose outbox row does not exist. 011 gives every
-- attempt its outbox row's ledger_id (NOT NULL) and a foreign key (ledger_id, outbox_id) to the
-- outbox; an attempt without its row has no ledger to take. The foreign key of 002 rules such rows
-- out, so finding one means that key was dropped or disabled by hand. Any row stops the migration
-- before 011, nothing of it applied. Runs the same before and after 011 (it reads no column 011 adds).
--
-- check: delivery attempts whose outbox row is missing
-- fix: find where the outbox row went (a restore that skipped rows, a hand-made DELETE with the triggers disabled);
-- fix: restore it, or, if the attempt is spurious, delete the attempt as the owner with the append-only trigger
-- fix: disabled (ALTER TABLE dual_ledger_outbox_attempts DISABLE TRIGGER dual_ledger_outbox_attempts_append_only; ... ENABLE TRIGGER ...).
SELECT format('attempt %s (%s by %s at %s): outbox row %s does not exist', a.id, a.kind, a.worker_id, a.started_at, a.outbox_id)
  FROM dual_ledger_outbox_attempts a
 WHERE NOT EXISTS (SELECT 1 FROM dual_ledger_outbox o WHERE o.id = a.outbox_id)
 ORDER BY a.id;
