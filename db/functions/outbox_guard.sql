-- The outbox's state machine: the transition table, the guard trigger on dual_ledger_outbox and the
-- checks the outbox functions share (docs/state-machine.md). Migrations 003, 010 and 013 created
-- them; the bodies live here, edited in place. The transitions themselves are in outbox.sql.

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
REVOKE ALL ON FUNCTION dl_outbox_transition_allowed(text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_outbox_transition_allowed(text,text) TO PUBLIC;

-- The state machine of 010 with the redelivery.
CREATE OR REPLACE FUNCTION dl_outbox_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_redeliver boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'QUEUED' THEN
            RAISE EXCEPTION 'outbox rows are created QUEUED, not %', NEW.status
                USING ERRCODE = 'DL110';
        END IF;
        RETURN NEW;
    END IF;

    v_redeliver := dl_outbox_redelivery(OLD.id, OLD.status, NEW.status);
    IF OLD.status = 'FINALIZED' AND NOT v_redeliver THEN
        RAISE EXCEPTION 'outbox row % is FINALIZED and cannot change', OLD.id
            USING ERRCODE = 'DL110',
                  HINT = 'if the SCB lost the entry, redeliver it: dualledger discrepancies resolve ID --resolution requeue';
    END IF;
    IF (NEW.id, NEW.ledger_id, NEW.entry_id, NEW.entry_seq, NEW.reference_id, NEW.scb_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.ledger_id, OLD.entry_id, OLD.entry_seq, OLD.reference_id, OLD.scb_id, OLD.created_at) THEN
        RAISE EXCEPTION 'outbox row %: which entry goes to which SCB is immutable', OLD.id
            USING ERRCODE = 'DL110';
    END IF;
    IF NEW.status <> OLD.status AND NOT dl_outbox_transition_allowed(OLD.status, NEW.status) AND NOT v_redeliver THEN
        RAISE EXCEPTION 'illegal outbox transition % -> % (row %)', OLD.status, NEW.status, OLD.id
            USING ERRCODE = 'DL110',
                  HINT = 'allowed: QUEUED->PROCESSING, PROCESSING->QUEUED|SENT|ACKED|FINALIZED|FAILED, SENT->ACKED|FINALIZED, ACKED->FINALIZED, FAILED->QUEUED; SENT|ACKED|FINALIZED->QUEUED only by outbox_redeliver';
    END IF;
    IF NEW.status = 'FINALIZED'
       AND (NEW.scb_entry_id IS NULL OR NEW.scb_entry_id = '' OR NEW.scb_status IS DISTINCT FROM 'FINAL') THEN
        RAISE EXCEPTION 'outbox row % cannot become FINALIZED without its SCB''s FINAL answer (scb_entry_id and scb_status FINAL)', OLD.id
            USING ERRCODE = 'DL111';
    END IF;
    -- An acknowledgement (outbox_acknowledge, 020) is set once on a FAILED row and kept until the
    -- row leaves FAILED (a requeue clears it; the CHECK allows it on FAILED rows only).
    IF OLD.acknowledged_at IS NOT NULL AND NEW.status = 'FAILED'
       AND (NEW.acknowledged_at, NEW.acknowledged_by, NEW.acknowledged_reason)
           IS DISTINCT FROM (OLD.acknowledged_at, OLD.acknowledged_by, OLD.acknowledged_reason) THEN
        RAISE EXCEPTION 'outbox row %: its acknowledgement is kept until the row is requeued', OLD.id
            USING ERRCODE = 'DL110';
    END IF;
    IF NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'outbox row %: attempts cannot decrease', OLD.id USING ERRCODE = 'DL110';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION dl_outbox_guard() FROM PUBLIC;

-- SENT, ACKED or FINALIZED -> QUEUED: only for the row that outbox_redeliver names in its own
-- transaction (the setting dualledger.redeliver), never by a plain UPDATE.
CREATE OR REPLACE FUNCTION dl_outbox_redelivery(p_id bigint, p_from text, p_to text) RETURNS boolean
LANGUAGE sql STABLE
RETURN p_to = 'QUEUED' AND p_from IN ('SENT', 'ACKED', 'FINALIZED')
       AND coalesce(current_setting('dualledger.redeliver', true), '') = p_id::text;
REVOKE ALL ON FUNCTION dl_outbox_redelivery(bigint,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_outbox_redelivery(bigint,text,text) TO PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Argument checks shared by the outbox functions (they run inside them, as the owner).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_outbox_check_worker(p_worker text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_worker IS NULL OR p_worker = '' OR length(p_worker) > 200 OR p_worker ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'worker id must be 1-200 characters without control characters' USING ERRCODE = 'DL009';
    END IF;
END $$;
REVOKE ALL ON FUNCTION dl_outbox_check_worker(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_outbox_check_worker(text) TO PUBLIC;

CREATE OR REPLACE FUNCTION dl_outbox_check_outcome(p_outcome text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_outcome IS NULL OR p_outcome !~ '^[a-z][a-z_]{0,63}$' THEN
        RAISE EXCEPTION 'attempt outcome % is not valid (lower case letters and _, at most 64)', coalesce(quote_literal(p_outcome), 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
END $$;
REVOKE ALL ON FUNCTION dl_outbox_check_outcome(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_outbox_check_outcome(text) TO PUBLIC;

-- The SCB's answer must be the one the new status stands for: ACCEPTED for SENT, POSTED for ACKED,
-- FINAL with the SCB's scb_entry_id for FINALIZED, and no answer at all for QUEUED and FAILED.
CREATE OR REPLACE FUNCTION dl_outbox_check_answer(p_status text, p_scb_entry_id text, p_scb_status text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_scb_entry_id IS NOT NULL AND (length(p_scb_entry_id) > 200 OR p_scb_entry_id ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'scb_entry_id must be at most 200 characters without control characters' USING ERRCODE = 'DL009';
    END IF;
    CASE p_status
    WHEN 'FINALIZED' THEN
        IF p_scb_status IS DISTINCT FROM 'FINAL' OR p_scb_entry_id IS NULL THEN
            RAISE EXCEPTION 'FINALIZED needs the SCB''s FINAL answer with its scb_entry_id (got scb_status %, scb_entry_id %)',
                            coalesce(quote_literal(p_scb_status), 'none'), coalesce(quote_literal(left(p_scb_entry_id, 60)), 'none')
                USING ERRCODE = 'DL111';
        END IF;
    WHEN 'ACKED' THEN
        IF p_scb_status IS DISTINCT FROM 'POSTED' THEN
            RAISE EXCEPTION 'ACKED needs the SCB''s POSTED answer (got scb_status %)', coalesce(quote_literal(p_scb_status), 'none')
                USING ERRCODE = 'DL111';
        END IF;
    WHEN 'SENT' THEN
        IF p_scb_status IS DISTINCT FROM 'ACCEPTED' THEN
            RAISE EXCEPTION 'SENT needs the SCB''s ACCEPTED answer (got scb_status %)', coalesce(quote_literal(p_scb_status), 'none')
                USING ERRCODE = 'DL111';
        END IF;
    WHEN 'QUEUED', 'FAILED' THEN
        IF p_scb_status IS NOT NULL OR p_scb_entry_id IS NOT NULL THEN
            RAISE EXCEPTION '% is not a result of an SCB answer (got scb_status %)', p_status, coalesce(quote_literal(p_scb_status), 'none')
                USING ERRCODE = 'DL111';
        END IF;
    ELSE
        RAISE EXCEPTION 'a delivery or poll cannot make a row %', coalesce(quote_literal(p_status), 'NULL') USING ERRCODE = 'DL009';
    END CASE;
END $$;
REVOKE ALL ON FUNCTION dl_outbox_check_answer(text,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_outbox_check_answer(text,text,text) TO PUBLIC;
