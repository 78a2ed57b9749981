-- 003_outbox_state_machine.sql
--
-- The outbox state machine (DESIGN 4, docs/state-machine.md). Only these status changes exist:
--
--   QUEUED     -> PROCESSING                  a worker claims the row (lease)
--   PROCESSING -> QUEUED                      retryable error, released on shutdown, or lease expired
--   PROCESSING -> SENT                        the SCB accepted it (ACCEPTED / 202)
--   PROCESSING -> ACKED                       the SCB posted it (POSTED)
--   PROCESSING -> FINALIZED                   the SCB answered FINAL at once
--   PROCESSING -> FAILED                      permanent error or max attempts reached
--   SENT       -> ACKED | FINALIZED           poll or signed callback
--   ACKED      -> FINALIZED                   poll or signed callback
--   FAILED     -> QUEUED                      operator requeue
--
-- Rows are inserted as QUEUED, never deleted, and a FINALIZED row never changes again. Any other
-- UPDATE of status is refused here, whoever sends it.

CREATE OR REPLACE FUNCTION dl_outbox_transition_allowed(p_from text, p_to text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (p_from, p_to) IN (
    ('QUEUED', 'PROCESSING'),
    ('PROCESSING', 'QUEUED'),
    ('PROCESSING', 'SENT'),
    ('PROCESSING', 'ACKED'),
    ('PROCESSING', 'FINALIZED'),
    ('PROCESSING', 'FAILED'),
    ('SENT', 'ACKED'),
    ('SENT', 'FINALIZED'),
    ('ACKED', 'FINALIZED'),
    ('FAILED', 'QUEUED'));

CREATE OR REPLACE FUNCTION dl_outbox_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'QUEUED' THEN
            RAISE EXCEPTION 'outbox rows are created QUEUED, not %', NEW.status
                USING ERRCODE = 'DL110';
        END IF;
        RETURN NEW;
    END IF;

    IF OLD.status = 'FINALIZED' THEN
        RAISE EXCEPTION 'outbox row % is FINALIZED and cannot change', OLD.id
            USING ERRCODE = 'DL110';
    END IF;
    IF (NEW.id, NEW.ledger_id, NEW.entry_id, NEW.entry_seq, NEW.reference_id, NEW.scb_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.ledger_id, OLD.entry_id, OLD.entry_seq, OLD.reference_id, OLD.scb_id, OLD.created_at) THEN
        RAISE EXCEPTION 'outbox row %: which entry goes to which SCB is immutable', OLD.id
            USING ERRCODE = 'DL110';
    END IF;
    IF NEW.status <> OLD.status AND NOT dl_outbox_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'illegal outbox transition % -> % (row %)', OLD.status, NEW.status, OLD.id
            USING ERRCODE = 'DL110',
                  HINT = 'allowed: QUEUED->PROCESSING, PROCESSING->QUEUED|SENT|ACKED|FINALIZED|FAILED, SENT->ACKED|FINALIZED, ACKED->FINALIZED, FAILED->QUEUED';
    END IF;
    IF NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'outbox row %: attempts cannot decrease', OLD.id USING ERRCODE = 'DL110';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS dual_ledger_outbox_state_machine ON dual_ledger_outbox;
CREATE TRIGGER dual_ledger_outbox_state_machine BEFORE INSERT OR UPDATE ON dual_ledger_outbox
    FOR EACH ROW EXECUTE FUNCTION dl_outbox_guard();

DROP TRIGGER IF EXISTS dual_ledger_outbox_no_delete ON dual_ledger_outbox;
CREATE TRIGGER dual_ledger_outbox_no_delete BEFORE DELETE OR TRUNCATE ON dual_ledger_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification();

-- Attempts are an audit log: insert only.
DROP TRIGGER IF EXISTS dual_ledger_outbox_attempts_append_only ON dual_ledger_outbox_attempts;
CREATE TRIGGER dual_ledger_outbox_attempts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON dual_ledger_outbox_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification();
