-- The discrepancy workflow (docs/reconciliation.md): OPEN -> ACKNOWLEDGED -> RESOLVED, each step
-- with its actor, time and reason, recorded in the operator log in the same transaction. A
-- RESOLVED discrepancy never changes again (DL120). The actor is checked by dl_begin_act: a
-- service role acts only on behalf of an active API key.
--
-- EXECUTE for dualledger_api (POST /v1/discrepancies/{id}/resolve, admin scope) and the owner
-- (`dualledger discrepancies ack|resolve`).

-- The discrepancy p_id, locked; DL122 when there is none.
CREATE OR REPLACE FUNCTION dl_discrepancy_for_update(p_id bigint) RETURNS reconciliation_discrepancies
LANGUAGE plpgsql AS $$
DECLARE
    v_d reconciliation_discrepancies;
BEGIN
    SELECT * INTO v_d FROM reconciliation_discrepancies WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no discrepancy %', p_id USING ERRCODE = 'DL122';
    END IF;
    IF v_d.status = 'RESOLVED' THEN
        RAISE EXCEPTION 'discrepancy % was already resolved (%, by %, at %)', p_id, v_d.resolution, v_d.resolved_by, v_d.resolved_at
            USING ERRCODE = 'DL120';
    END IF;
    RETURN v_d;
END $$;
REVOKE ALL ON FUNCTION dl_discrepancy_for_update(bigint) FROM PUBLIC;

-- OPEN -> ACKNOWLEDGED: someone is on it.
CREATE OR REPLACE FUNCTION discrepancy_acknowledge(p_actor text, p_id bigint, p_reason text) RETURNS reconciliation_discrepancies
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_d reconciliation_discrepancies;
BEGIN
    PERFORM dl_begin_act(p_actor, p_reason);
    v_d := dl_discrepancy_for_update(p_id);
    IF v_d.status <> 'OPEN' THEN
        RAISE EXCEPTION 'discrepancy % is already acknowledged (by %, at %)', p_id, v_d.acknowledged_by, v_d.acknowledged_at
            USING ERRCODE = 'DL120';
    END IF;
    UPDATE reconciliation_discrepancies
       SET status = 'ACKNOWLEDGED', acknowledged_at = now(), acknowledged_by = p_actor, acknowledge_reason = nullif(p_reason, '')
     WHERE id = p_id AND ledger_id = v_d.ledger_id
    RETURNING * INTO v_d;
    PERFORM record_operator_action(p_actor, 'discrepancy.acknowledge', 'discrepancy/' || p_id,
        jsonb_build_object('status', 'OPEN'), jsonb_build_object('status', 'ACKNOWLEDGED'), nullif(p_reason, ''));
    RETURN v_d;
END $$;
REVOKE ALL ON FUNCTION discrepancy_acknowledge(text, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION discrepancy_acknowledge(text, bigint, text) TO dualledger_api;

-- The correcting entry of a discrepancy is not sent to the discrepancy's SCB: it brings our
-- ledger to the state the SCB holds already (the SCB's own entry that we lacked, the SCB's amount
-- that was agreed), and delivering it would book the difference a second time there. Its outbox
-- row for that SCB, created QUEUED by the posting in this transaction, is closed at once as a
-- waived delivery: FAILED, acknowledged (migration 020) with the discrepancy as the reason, an
-- attempt 'acknowledge' / 'waived'. The other SCBs of the entry get it as usual. A correcting
-- entry posted earlier and already on its way to that SCB is refused (DL121): the SCB would
-- book it twice. Returns the row's id, or NULL when the entry touches no account of that SCB.
CREATE OR REPLACE FUNCTION dl_outbox_waive(p_actor text, p_ledger_id text, p_reference_id text, p_scb_id text, p_why text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_row dual_ledger_outbox;
BEGIN
    SELECT * INTO v_row FROM dual_ledger_outbox o
     WHERE o.ledger_id = p_ledger_id AND o.reference_id = p_reference_id AND o.scb_id = p_scb_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_row.status <> 'QUEUED' THEN
        RAISE EXCEPTION 'the correcting entry % was posted before and its delivery to % is under way (outbox row %, %): % would book the correction twice',
                        p_reference_id, p_scb_id, v_row.id, v_row.status, p_scb_id
            USING ERRCODE = 'DL121',
                  HINT = 'ask the SCB''s operator which state they hold now; resolve the discrepancy explained';
    END IF;
    UPDATE dual_ledger_outbox o SET status = 'PROCESSING', locked_by = p_actor, lease_expires_at = now()
     WHERE o.ledger_id = v_row.ledger_id AND o.id = v_row.id;
    UPDATE dual_ledger_outbox o
       SET status = 'FAILED', locked_by = NULL, lease_expires_at = NULL, failed_at = now(),
           failure_reason = left('not sent: ' || p_why, 2000),
           acknowledged_at = now(), acknowledged_by = p_actor, acknowledged_reason = left(p_why, 2000)
     WHERE o.ledger_id = v_row.ledger_id AND o.id = v_row.id;
    INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error)
    VALUES (v_row.ledger_id, v_row.id, v_row.attempts, p_actor, 'acknowledge', now(), 'waived', left(p_why, 2000));
    RETURN v_row.id;
END $$;
REVOKE ALL ON FUNCTION dl_outbox_waive(text, text, text, text, text) FROM PUBLIC;

-- OPEN | ACKNOWLEDGED -> RESOLVED with p_resolution:
--   requeue    redeliver through the outbox: a FAILED row is requeued (outbox_requeue), a SENT,
--              ACKED or FINALIZED row whose entry the SCB lost is redelivered (outbox_redeliver),
--              a QUEUED or PROCESSING row is already on its way. Only for missing_on_scb,
--              delivery_failed and status_mismatch, which have an outbox row (DL121 otherwise).
--   correct    the correcting entry (or reversal), posted beforehand through the posting function
--              with reference p_correction_ref in the discrepancy's ledger, is linked (DL121 when
--              there is no such entry), and not sent to the discrepancy's SCB (dl_outbox_waive:
--              resolution_outbox_id is that row).
--   explained  no action; the reason says why.
-- The reason is required. Returns the resolved discrepancy.
CREATE OR REPLACE FUNCTION discrepancy_resolve(
    p_actor text, p_id bigint, p_resolution text, p_reason text, p_correction_ref text) RETURNS reconciliation_discrepancies
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_d      reconciliation_discrepancies;
    v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
    v_row    dual_ledger_outbox;
    v_seq    bigint;
    v_action text;
    v_was    text;
    v_waived bigint;
BEGIN
    IF v_reason IS NULL THEN
        RAISE EXCEPTION 'a resolution needs its reason' USING ERRCODE = 'DL009';
    END IF;
    IF p_resolution IS NULL OR p_resolution NOT IN ('requeue', 'correct', 'explained') THEN
        RAISE EXCEPTION 'resolution must be requeue, correct or explained, not %', coalesce(quote_literal(p_resolution), 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
    PERFORM dl_begin_act(p_actor, v_reason);
    v_d := dl_discrepancy_for_update(p_id);
    v_was := v_d.status;
    IF p_resolution = 'requeue' THEN
        IF v_d.kind NOT IN ('missing_on_scb', 'delivery_failed', 'status_mismatch') OR v_d.outbox_id IS NULL THEN
            RAISE EXCEPTION 'a % discrepancy cannot be requeued: redelivery sends the same entry, which the SCB already holds or which we never sent; resolve it with correct or explained', v_d.kind
                USING ERRCODE = 'DL121';
        END IF;
        SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = v_d.outbox_id AND ledger_id = v_d.ledger_id;
        -- An operator gave this row up knowingly (outbox_acknowledge: the difference was settled
        -- another way); sending it again could book the movement twice at the SCB. Only the
        -- operator's own requeue by id, which says what it clears, undoes that.
        IF v_row.status = 'FAILED' AND v_row.acknowledged_at IS NOT NULL THEN
            RAISE EXCEPTION 'outbox row % was acknowledged as not to be delivered, at % by %: %; a resolution does not send it again',
                            v_row.id, v_row.acknowledged_at, v_row.acknowledged_by, v_row.acknowledged_reason
                USING ERRCODE = 'DL121',
                      HINT = 'resolve the discrepancy explained; if it must be sent after all, an operator runs dualledger outbox requeue --id ' || v_row.id;
        END IF;
        IF v_row.status = 'FAILED' THEN
            PERFORM outbox_requeue(p_actor, v_row.ledger_id, v_row.id, NULL, true, v_reason);
            v_action := 'requeued';
        ELSIF v_row.status IN ('SENT', 'ACKED', 'FINALIZED') THEN
            PERFORM outbox_redeliver(p_actor, v_row.ledger_id, v_row.id, 'discrepancy ' || p_id || ' (' || v_d.kind || '): ' || v_reason);
            v_action := 'redelivered';
        ELSE
            v_action := 'already ' || v_row.status;
        END IF;
    ELSIF p_resolution = 'correct' THEN
        -- A finding no run sees any more needs no correction: posting one would move money for a
        -- difference that is gone (the correcting entry, posted in this transaction, is undone).
        IF v_d.cleared_at IS NOT NULL THEN
            RAISE EXCEPTION 'discrepancy % was cleared by run % (the difference is no longer seen): a correction would move money for nothing; resolve it explained', p_id, v_d.cleared_run_id
                USING ERRCODE = 'DL121';
        END IF;
        -- The correction is not sent to the discrepancy's SCB (dl_outbox_waive): it must bring our
        -- ledger to the state that SCB holds. Not so for these two kinds: the SCB holds our entry
        -- (or more than one copy of it), and a correction here would part the ledgers.
        IF v_d.kind IN ('status_mismatch', 'duplicate_on_scb') THEN
            RAISE EXCEPTION 'a % discrepancy is not corrected by an entry here: %', v_d.kind,
                  CASE v_d.kind WHEN 'status_mismatch' THEN 'the SCB holds our entry and only its status differs; redeliver it (requeue) or resolve it explained'
                       ELSE 'the SCB booked our entry more than once; their operator reverses the extra bookings, then resolve it explained' END
                USING ERRCODE = 'DL121';
        END IF;
        SELECT e.seq INTO v_seq FROM ledger_entries e WHERE e.ledger_id = v_d.ledger_id AND e.reference_id = p_correction_ref;
        IF v_seq IS NULL THEN
            RAISE EXCEPTION 'no correcting entry % in ledger %: post it first', coalesce(quote_literal(p_correction_ref), 'NULL'), v_d.ledger_id
                USING ERRCODE = 'DL121';
        END IF;
        IF v_d.kind IN ('missing_on_scb', 'delivery_failed') THEN
            -- The SCB holds nothing of our entry: only its full reversal, delivered to that SCB no
            -- more than the entry, leaves the two alike; and only if the entry is not on its way.
            SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = v_d.outbox_id AND ledger_id = v_d.ledger_id FOR UPDATE;
            IF v_row.status IN ('QUEUED', 'PROCESSING') THEN
                RAISE EXCEPTION 'entry % is on its way to % (outbox row %, %): a correction not sent there would part the ledgers once it arrives; resolve the discrepancy when it has been delivered, or explained',
                                v_d.reference_id, v_d.scb_id, v_row.id, v_row.status
                    USING ERRCODE = 'DL121';
            END IF;
            IF NOT EXISTS (SELECT 1 FROM ledger_entries c
                             JOIN ledger_entries o ON o.ledger_id = c.ledger_id AND o.id = c.reverses_entry_id
                            WHERE c.ledger_id = v_d.ledger_id AND c.seq = v_seq AND o.seq = v_d.entry_seq AND c.amount = o.amount) THEN
                RAISE EXCEPTION '% does not hold entry %: a correction other than its full reversal would leave the two ledgers apart',
                                v_d.scb_id, v_d.reference_id
                    USING ERRCODE = 'DL121',
                          HINT = 'redeliver it (resolution requeue), then post the adjustment as an ordinary entry: it reaches both ledgers';
            END IF;
            -- Reversed, the entry is not to be delivered either: a FAILED row is acknowledged
            -- (sent alone, the entry would stand at the SCB without its reversal).
            IF v_row.status = 'FAILED' AND v_row.acknowledged_at IS NULL THEN
                UPDATE dual_ledger_outbox o
                   SET acknowledged_at = now(), acknowledged_by = p_actor,
                       acknowledged_reason = left(format('reversed by %s (discrepancy %s); delivered alone it would stand at %s without its reversal; %s',
                                                         p_correction_ref, p_id, v_d.scb_id, v_reason), 2000)
                 WHERE o.ledger_id = v_row.ledger_id AND o.id = v_row.id;
                INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error)
                VALUES (v_row.ledger_id, v_row.id, v_row.attempts, p_actor, 'acknowledge', now(), 'acknowledged',
                        left(format('reversed by %s (discrepancy %s); %s', p_correction_ref, p_id, v_reason), 2000));
            END IF;
        END IF;
        v_waived := dl_outbox_waive(p_actor, v_d.ledger_id, p_correction_ref, v_d.scb_id,
            format('the correction of discrepancy %s (%s): %s holds this state already; %s', p_id, v_d.kind, v_d.scb_id, v_reason));
        v_action := CASE WHEN v_waived IS NOT NULL THEN 'not sent to ' || v_d.scb_id END;
    END IF;
    UPDATE reconciliation_discrepancies
       SET status = 'RESOLVED', resolved_at = now(), resolved_by = p_actor, resolution = p_resolution, resolution_reason = v_reason,
           acknowledged_at = coalesce(acknowledged_at, now()), acknowledged_by = coalesce(acknowledged_by, p_actor),
           resolution_outbox_id = CASE WHEN p_resolution = 'requeue' THEN v_row.id ELSE v_waived END,
           correction_entry_seq = v_seq,
           correction_reference_id = CASE WHEN p_resolution = 'correct' THEN p_correction_ref END
     WHERE id = p_id AND ledger_id = v_d.ledger_id
    RETURNING * INTO v_d;
    PERFORM record_operator_action(p_actor, 'discrepancy.resolve', 'discrepancy/' || p_id,
        jsonb_build_object('status', v_was, 'kind', v_d.kind, 'ledger_id', v_d.ledger_id, 'scb_id', v_d.scb_id,
                           'reference_id', v_d.reference_id),
        jsonb_strip_nulls(jsonb_build_object('status', 'RESOLVED', 'resolution', p_resolution, 'outbox_id', v_d.resolution_outbox_id,
                           'outbox', v_action, 'correction_entry_seq', v_seq, 'correction_reference_id', v_d.correction_reference_id)),
        v_reason);
    RETURN v_d;
END $$;
REVOKE ALL ON FUNCTION discrepancy_resolve(text, bigint, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION discrepancy_resolve(text, bigint, text, text, text) TO dualledger_api;
