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

-- The SCB's amount of a discrepancy (its copy as the run read it), or NULL when it is not a
-- plain decimal.
CREATE OR REPLACE FUNCTION dl_scb_amount(p_scb jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN p_scb ->> 'amount' ~ '^[0-9]{1,20}(\.[0-9]{1,18})?$' THEN (p_scb ->> 'amount')::numeric END;
REVOKE ALL ON FUNCTION dl_scb_amount(jsonb) FROM PUBLIC;

-- Whether the correcting entry p_c brings our ledger to what the SCB's copy p_scb holds, for a
-- discrepancy of kind p_kind about our entry p_o (NULL for missing_on_dbis):
--   missing_on_dbis  p_c is the SCB's entry: its accounts, amount, currency and asset type;
--   amount_mismatch  the SCB holds less: p_c reverses p_o by exactly the difference; it holds
--                    more: p_c moves the difference between p_o's accounts, in p_o's currency;
--   missing_on_scb, delivery_failed
--                    the SCB holds nothing of p_o: p_c is p_o's full reversal.
-- Any other correction would leave the two ledgers apart once it is not sent to that SCB.
CREATE OR REPLACE FUNCTION dl_correction_matches(p_kind text, p_scb jsonb, p_o ledger_entries, p_c ledger_entries) RETURNS boolean
LANGUAGE sql STABLE
RETURN coalesce(CASE p_kind
    WHEN 'missing_on_dbis' THEN
        p_c.reverses_entry_id IS NULL AND p_c.debit_account_id = p_scb ->> 'debit_account_id'
        AND p_c.credit_account_id = p_scb ->> 'credit_account_id' AND p_c.amount = dl_scb_amount(p_scb)
        AND p_c.currency_code = p_scb ->> 'currency_code' AND p_c.asset_type = p_scb ->> 'asset_type'
    WHEN 'amount_mismatch' THEN
        p_c.currency_code = p_o.currency_code AND p_c.asset_type = p_o.asset_type AND CASE
        WHEN dl_scb_amount(p_scb) < p_o.amount THEN
            p_c.reverses_entry_id = p_o.id AND p_c.amount = p_o.amount - dl_scb_amount(p_scb)
        WHEN dl_scb_amount(p_scb) > p_o.amount THEN
            p_c.reverses_entry_id IS NULL AND p_c.debit_account_id = p_o.debit_account_id
            AND p_c.credit_account_id = p_o.credit_account_id AND p_c.amount = dl_scb_amount(p_scb) - p_o.amount
        END
    WHEN 'missing_on_scb' THEN p_c.reverses_entry_id = p_o.id AND p_c.amount = p_o.amount
    WHEN 'delivery_failed' THEN p_c.reverses_entry_id = p_o.id AND p_c.amount = p_o.amount
    END, false);
REVOKE ALL ON FUNCTION dl_correction_matches(text, jsonb, ledger_entries, ledger_entries) FROM PUBLIC;

-- The `correct` resolution of p_d with the correcting entry p_ref, posted beforehand in this
-- transaction (discrepancy_resolve). The correction brings our ledger to what the discrepancy's
-- SCB holds, so it is not sent there (dl_outbox_waive); that is true only of the corrections
-- dl_correction_matches accepts, and the others are refused (DL121): an SCB that holds our entry
-- with another field, hash or status, or twice, fixes its copy, or the discrepancy is explained.
-- Another SCB with the same finding about the same reference, its copy the same as this one's
-- (one movement both SCBs hold and we lack, one amount both hold), holds the corrected state too:
-- its delivery is waived as well and its discrepancy resolved with this correction (o_siblings),
-- so that a second correction cannot book it twice. An entry the SCB does not hold is corrected
-- only by its full reversal, not while it is on its way, and its FAILED delivery is acknowledged
-- with it (sent alone, it would stand at the SCB without its reversal).
CREATE OR REPLACE FUNCTION dl_discrepancy_correct(
    p_actor text, p_d reconciliation_discrepancies, p_ref text, p_reason text,
    OUT o_seq bigint, OUT o_waived bigint, OUT o_siblings bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_o   ledger_entries;
    v_c   ledger_entries;
    v_row dual_ledger_outbox;
    v_sib reconciliation_discrepancies;
BEGIN
    -- A finding no run sees any more needs no correction: posting one would move money for a
    -- difference that is gone (the correcting entry, posted in this transaction, is undone).
    IF p_d.cleared_at IS NOT NULL THEN
        RAISE EXCEPTION 'discrepancy % was cleared by run % (the difference is no longer seen): a correction would move money for nothing; resolve it explained', p_d.id, p_d.cleared_run_id
            USING ERRCODE = 'DL121';
    END IF;
    IF p_d.kind NOT IN ('missing_on_dbis', 'amount_mismatch', 'missing_on_scb', 'delivery_failed') THEN
        RAISE EXCEPTION 'a % discrepancy is not corrected by an entry here: the SCB holds our entry (%); its operator fixes their copy, or resolve it explained',
                        p_d.kind, CASE p_d.kind WHEN 'duplicate_on_scb' THEN 'more than once' WHEN 'status_mismatch' THEN 'with another status'
                                                ELSE 'with other ' || array_to_string(p_d.fields, ', ') END
            USING ERRCODE = 'DL121';
    END IF;
    SELECT * INTO v_c FROM ledger_entries e WHERE e.ledger_id = p_d.ledger_id AND e.reference_id = p_ref;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no correcting entry % in ledger %: post it first', coalesce(quote_literal(p_ref), 'NULL'), p_d.ledger_id
            USING ERRCODE = 'DL121';
    END IF;
    SELECT * INTO v_o FROM ledger_entries e WHERE e.ledger_id = p_d.ledger_id AND e.seq = p_d.entry_seq;
    IF NOT dl_correction_matches(p_d.kind, p_d.scb, v_o, v_c) THEN
        RAISE EXCEPTION 'the correction of a % discrepancy must bring our ledger to what % holds: %', p_d.kind, p_d.scb_id,
              CASE p_d.kind
              WHEN 'missing_on_dbis' THEN format('its entry, %s -> %s, %s %s %s', p_d.scb ->> 'debit_account_id', p_d.scb ->> 'credit_account_id',
                                                 p_d.scb ->> 'amount', p_d.scb ->> 'currency_code', p_d.scb ->> 'asset_type')
              WHEN 'amount_mismatch' THEN format('our %s of %s against its %s, so the difference (a reversal of part of ours, or an entry between its accounts)',
                                                 trim_scale(v_o.amount), p_d.reference_id, coalesce(p_d.scb ->> 'amount', 'no readable amount'))
              ELSE format('nothing of %s, so its full reversal (to correct by another amount, redeliver it and post an ordinary entry, which reaches both)', p_d.reference_id) END
            USING ERRCODE = 'DL121';
    END IF;
    IF p_d.kind IN ('missing_on_scb', 'delivery_failed') THEN
        SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_d.outbox_id AND ledger_id = p_d.ledger_id FOR UPDATE;
        IF v_row.status IN ('QUEUED', 'PROCESSING') THEN
            RAISE EXCEPTION 'entry % is on its way to % (outbox row %, %): a reversal not sent there would part the ledgers once it arrives; resolve the discrepancy when it has been delivered, or explained',
                            p_d.reference_id, p_d.scb_id, v_row.id, v_row.status
                USING ERRCODE = 'DL121';
        END IF;
        IF v_row.status = 'FAILED' AND v_row.acknowledged_at IS NULL THEN
            UPDATE dual_ledger_outbox o
               SET acknowledged_at = now(), acknowledged_by = p_actor,
                   acknowledged_reason = left(format('reversed by %s (discrepancy %s); delivered alone it would stand at %s without its reversal; %s',
                                                     p_ref, p_d.id, p_d.scb_id, p_reason), 2000)
             WHERE o.ledger_id = v_row.ledger_id AND o.id = v_row.id;
            INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error)
            VALUES (v_row.ledger_id, v_row.id, v_row.attempts, p_actor, 'acknowledge', now(), 'acknowledged',
                    left(format('reversed by %s (discrepancy %s); %s', p_ref, p_d.id, p_reason), 2000));
        END IF;
    END IF;
    o_seq := v_c.seq;
    o_waived := dl_outbox_waive(p_actor, p_d.ledger_id, p_ref, p_d.scb_id,
        format('the correction of discrepancy %s (%s): %s holds this state already; %s', p_d.id, p_d.kind, p_d.scb_id, p_reason));
    o_siblings := '{}';
    IF p_d.kind IN ('missing_on_dbis', 'amount_mismatch') THEN
        FOR v_sib IN
            SELECT x.* FROM reconciliation_discrepancies x
             WHERE x.ledger_id = p_d.ledger_id AND x.reference_id = p_d.reference_id AND x.kind = p_d.kind
               AND x.scb_id <> p_d.scb_id AND x.status <> 'RESOLVED' AND x.cleared_at IS NULL
               AND dl_correction_matches(x.kind, x.scb, v_o, v_c)
             ORDER BY x.id FOR UPDATE
        LOOP
            PERFORM dl_outbox_waive(p_actor, p_d.ledger_id, p_ref, v_sib.scb_id,
                format('the correction of discrepancy %s (%s), which %s holds as %s does; %s', p_d.id, p_d.kind, v_sib.scb_id, p_d.scb_id, p_reason));
            UPDATE reconciliation_discrepancies x
               SET status = 'RESOLVED', resolved_at = now(), resolved_by = p_actor, resolution = 'correct',
                   resolution_reason = left(format('corrected with discrepancy %s (%s): %s', p_d.id, p_ref, p_reason), 1000),
                   acknowledged_at = coalesce(x.acknowledged_at, now()), acknowledged_by = coalesce(x.acknowledged_by, p_actor),
                   correction_entry_seq = v_c.seq, correction_reference_id = p_ref
             WHERE x.id = v_sib.id AND x.ledger_id = v_sib.ledger_id;
            PERFORM record_operator_action(p_actor, 'discrepancy.resolve', 'discrepancy/' || v_sib.id,
                jsonb_build_object('status', v_sib.status, 'kind', v_sib.kind, 'ledger_id', v_sib.ledger_id, 'scb_id', v_sib.scb_id,
                                   'reference_id', v_sib.reference_id),
                jsonb_build_object('status', 'RESOLVED', 'resolution', 'correct', 'with_discrepancy', p_d.id,
                                   'correction_entry_seq', v_c.seq, 'correction_reference_id', p_ref),
                p_reason);
            o_siblings := o_siblings || v_sib.id;
        END LOOP;
    END IF;
END $$;
REVOKE ALL ON FUNCTION dl_discrepancy_correct(text, reconciliation_discrepancies, text, text) FROM PUBLIC;

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
    v_siblings bigint[];
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
        SELECT c.o_seq, c.o_waived, c.o_siblings INTO v_seq, v_waived, v_siblings
          FROM dl_discrepancy_correct(p_actor, v_d, p_correction_ref, v_reason) c;
        v_action := 'not sent to ' || v_d.scb_id
                    || CASE WHEN cardinality(v_siblings) > 0 THEN format(' nor to the SCBs of discrepancies %s, resolved with it', array_to_string(v_siblings, ', ')) ELSE '' END;
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
