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
           failure_reason = left('not sent: ' || p_why, 2000)
     WHERE o.ledger_id = v_row.ledger_id AND o.id = v_row.id;
    PERFORM dl_outbox_acknowledge_row(p_actor, v_row, p_why, 'waived');
    RETURN v_row.id;
END $$;
REVOKE ALL ON FUNCTION dl_outbox_waive(text, text, text, text, text) FROM PUBLIC;

-- The SCB's amount of a discrepancy (its copy as the run read it), or NULL when it is not a
-- plain decimal.
CREATE OR REPLACE FUNCTION dl_scb_amount(p_scb jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN p_scb ->> 'amount' ~ '^[0-9]{1,20}(\.[0-9]{1,18})?$' THEN (p_scb ->> 'amount')::numeric END;
REVOKE ALL ON FUNCTION dl_scb_amount(jsonb) FROM PUBLIC;

-- Whether the SCB's copy p_scb has our entry p_o's accounts, currency and asset type.
CREATE OR REPLACE FUNCTION dl_same_but_amount(p_scb jsonb, p_o ledger_entries) RETURNS boolean
LANGUAGE sql STABLE
RETURN p_scb ->> 'debit_account_id' = p_o.debit_account_id AND p_scb ->> 'credit_account_id' = p_o.credit_account_id
       AND p_scb ->> 'currency_code' = p_o.currency_code AND p_scb ->> 'asset_type' = p_o.asset_type;
REVOKE ALL ON FUNCTION dl_same_but_amount(jsonb, ledger_entries) FROM PUBLIC;

-- The discrepancies of SCB p_scb_id (of ledger p_ledger_id, or of all when NULL) resolved with a
-- correction that was not sent to that SCB, with the correction's outbox row there: FAILED and
-- acknowledged (a waived delivery, dl_outbox_waive). One definition for the run's rereads
-- (reconcile_reread_keys) and its findings (reconcile_findings' lapsed waivers).
CREATE OR REPLACE FUNCTION dl_waived_corrections(p_scb_id text, p_ledger_id text)
RETURNS TABLE (d reconciliation_discrepancies, outbox_id bigint)
LANGUAGE sql STABLE
AS $$
    SELECT d, o.id FROM reconciliation_discrepancies d
      JOIN dual_ledger_outbox o ON o.ledger_id = d.ledger_id AND o.reference_id = d.correction_reference_id AND o.scb_id = d.scb_id
     WHERE d.scb_id = p_scb_id AND d.resolution = 'correct' AND (p_ledger_id IS NULL OR d.ledger_id = p_ledger_id)
       AND o.status = 'FAILED' AND o.acknowledged_at IS NOT NULL
$$;
REVOKE ALL ON FUNCTION dl_waived_corrections(text, text) FROM PUBLIC;

-- Whether the SCB of discrepancy p_d, resolved with a correction that was not sent to it (a waived
-- delivery, dl_outbox_waive), has come back to the state before the difference, as its copies
-- read by the runs say (every run asks the SCB about these references again:
-- reconcile_reread_keys): for missing_on_dbis it no longer lists the entry we adopted; for the
-- other kinds it lists our entry as we hold it (the discrepancy's dbis: amount, accounts,
-- currency, asset type): the amount it had agreed to change is ours again, or the entry we
-- reversed is there after all. Then the correction is the one difference left, and sending it (a
-- requeue) makes the two ledgers alike: reconcile_findings reports it as missing_on_scb. An SCB
-- that moved to a third state (another amount, other accounts) is not lapsed: the run finds a new
-- discrepancy about the original reference instead, with both values.
CREATE OR REPLACE FUNCTION dl_correction_lapsed(p_d reconciliation_discrepancies) RETURNS boolean
LANGUAGE sql STABLE
RETURN CASE WHEN p_d.kind = 'missing_on_dbis' THEN NOT EXISTS (
        SELECT 1 FROM reconciliation_scb_entries s
         WHERE s.ledger_id = p_d.ledger_id AND s.scb_id = p_d.scb_id AND s.reference_id = p_d.reference_id AND s.gone_run_id IS NULL)
    ELSE EXISTS (
        SELECT 1 FROM reconciliation_scb_entries s
         WHERE s.ledger_id = p_d.ledger_id AND s.scb_id = p_d.scb_id AND s.reference_id = p_d.reference_id AND s.gone_run_id IS NULL
           AND dl_scb_amount(jsonb_build_object('amount', s.amount)) = dl_scb_amount(p_d.dbis)
           AND s.debit_account_id = p_d.dbis ->> 'debit_account_id' AND s.credit_account_id = p_d.dbis ->> 'credit_account_id'
           AND s.currency_code = p_d.dbis ->> 'currency_code' AND s.asset_type = p_d.dbis ->> 'asset_type') END;
REVOKE ALL ON FUNCTION dl_correction_lapsed(reconciliation_discrepancies) FROM PUBLIC;

-- Whether discrepancy p_d is about a correction's waived delivery that has lapsed (its dbis names
-- the discrepancy the correction resolved: reconcile_findings).
CREATE OR REPLACE FUNCTION dl_waiver_lapsed(p_d reconciliation_discrepancies) RETURNS boolean
LANGUAGE sql STABLE
RETURN p_d.kind = 'missing_on_scb' AND p_d.dbis ->> 'waived_for_discrepancy' ~ '^[0-9]{1,18}$' AND EXISTS (
    SELECT 1 FROM reconciliation_discrepancies w
     WHERE w.id = (p_d.dbis ->> 'waived_for_discrepancy')::bigint AND w.ledger_id = p_d.ledger_id AND w.scb_id = p_d.scb_id
       AND w.resolution = 'correct' AND w.correction_reference_id = p_d.reference_id AND dl_correction_lapsed(w));
REVOKE ALL ON FUNCTION dl_waiver_lapsed(reconciliation_discrepancies) FROM PUBLIC;

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
        -- only a difference of amounts: the SCB's copy has our accounts, currency and asset type
        dl_same_but_amount(p_scb, p_o)
        AND p_c.currency_code = p_o.currency_code AND p_c.asset_type = p_o.asset_type AND CASE
        WHEN dl_scb_amount(p_scb) < p_o.amount THEN
            p_c.reverses_entry_id = p_o.id AND p_c.amount = p_o.amount - dl_scb_amount(p_scb)
        WHEN dl_scb_amount(p_scb) > p_o.amount THEN
            p_c.reverses_entry_id IS NULL AND p_c.debit_account_id = p_o.debit_account_id
            AND p_c.credit_account_id = p_o.credit_account_id AND p_c.amount = dl_scb_amount(p_scb) - p_o.amount
        END
    WHEN 'missing_on_scb' THEN p_c.reverses_entry_id = p_o.id AND p_c.amount = p_o.amount
    -- (a delivery that failed on our side only, say a timeout after the SCB committed it, left
    -- the SCB holding our entry: the run saw its copy, and the reversal would have to reach it)
    WHEN 'delivery_failed' THEN p_scb IS NULL AND p_c.reverses_entry_id = p_o.id AND p_c.amount = p_o.amount
    END, false);
REVOKE ALL ON FUNCTION dl_correction_matches(text, jsonb, ledger_entries, ledger_entries) FROM PUBLIC;

-- The one correction dl_correction_matches accepts for discrepancy p_d about our entry p_o, for a
-- refusal to name, in both the command's flags and the API's request fields (the HTTP API and
-- `discrepancies resolve` share this message); or why there is none.
CREATE OR REPLACE FUNCTION dl_correction_wanted(p_d reconciliation_discrepancies, p_o ledger_entries) RETURNS text
LANGUAGE sql STABLE
RETURN CASE p_d.kind
    WHEN 'missing_on_dbis' THEN format('the SCB''s entry: debit %s, credit %s, amount %s %s %s (command: --debit %s --credit %s --amount %s --currency %s --asset-type %s; API: "correction": {"entry": {"debit_account_id", "credit_account_id", "amount", "currency_code", "asset_type", "transaction_type"}})',
                                       p_d.scb ->> 'debit_account_id', p_d.scb ->> 'credit_account_id', p_d.scb ->> 'amount',
                                       p_d.scb ->> 'currency_code', p_d.scb ->> 'asset_type',
                                       p_d.scb ->> 'debit_account_id', p_d.scb ->> 'credit_account_id', p_d.scb ->> 'amount',
                                       p_d.scb ->> 'currency_code', p_d.scb ->> 'asset_type')
    WHEN 'amount_mismatch' THEN CASE
        WHEN dl_scb_amount(p_d.scb) IS NULL THEN format('none: the SCB''s amount %s is not a plain decimal; resolve it explained',
                                                        coalesce(p_d.scb ->> 'amount', 'null'))
        WHEN NOT coalesce(dl_same_but_amount(p_d.scb, p_o), false) THEN
            'none: the SCB''s copy differs in its accounts, currency or asset type as well (a field_mismatch); its operator fixes their copy, or resolve it explained'
        WHEN dl_scb_amount(p_d.scb) < p_o.amount THEN format('the difference between our %s and the SCB''s %s: a reversal of our entry by %s (command: --reverse --amount %s; API: "correction": {"reverse": true, "amount": "%s"})',
                                                             dl_amount_text(p_o.amount, p_o.currency_code), p_d.scb ->> 'amount',
                                                             dl_amount_text(p_o.amount - dl_scb_amount(p_d.scb), p_o.currency_code),
                                                             dl_amount_text(p_o.amount - dl_scb_amount(p_d.scb), p_o.currency_code),
                                                             dl_amount_text(p_o.amount - dl_scb_amount(p_d.scb), p_o.currency_code))
        ELSE format('the difference between our %s and the SCB''s %s: debit %s, credit %s, amount %s %s %s (command: --debit %s --credit %s --amount %s --currency %s --asset-type %s; API: "correction": {"entry": {"debit_account_id", "credit_account_id", "amount", "currency_code", "asset_type", "transaction_type"}})',
                    dl_amount_text(p_o.amount, p_o.currency_code), p_d.scb ->> 'amount', p_o.debit_account_id, p_o.credit_account_id,
                    dl_amount_text(dl_scb_amount(p_d.scb) - p_o.amount, p_o.currency_code), p_o.currency_code, p_o.asset_type,
                    p_o.debit_account_id, p_o.credit_account_id,
                    dl_amount_text(dl_scb_amount(p_d.scb) - p_o.amount, p_o.currency_code), p_o.currency_code, p_o.asset_type) END
    WHEN 'delivery_failed' THEN CASE
        -- The SCB holds another entry under our reference (it answered 409): a requeue would get
        -- 409 again. The difference is the companion finding's to correct.
        WHEN p_d.scb IS NOT NULL AND NOT (coalesce(dl_same_but_amount(p_d.scb, p_o), false) AND dl_scb_amount(p_d.scb) = p_o.amount)
        THEN format('none: %s holds another entry under %s (its copy differs from ours; a delivery refused with 409): a requeue would be refused again. Correct the difference through the amount_mismatch or field_mismatch discrepancy about %s (dualledger discrepancies list --scb %s), then resolve this one explained',
                    p_d.scb_id, p_d.reference_id, p_d.reference_id, p_d.scb_id)
        WHEN p_d.scb IS NOT NULL
        THEN format('none: %s holds %s although our delivery failed (it failed on our side, after the SCB had booked it: the run read its copy, status %s): resolve it requeue, which sends it again and is answered as a replay; a reversal, if one is wanted, is then an ordinary entry that reaches both',
                    p_d.scb_id, p_d.reference_id, coalesce(p_d.scb ->> 'status', 'unknown'))
        ELSE format('the full reversal of %s, which the SCB does not hold (command: --reverse; API: "correction": {"reverse": true}); to correct it by another amount, redeliver it and post an ordinary entry, which reaches both',
                    p_d.reference_id) END
    ELSE format('the full reversal of %s, which the SCB does not hold (command: --reverse; API: "correction": {"reverse": true}); to correct it by another amount, redeliver it and post an ordinary entry, which reaches both',
                p_d.reference_id) END;
REVOKE ALL ON FUNCTION dl_correction_wanted(reconciliation_discrepancies, ledger_entries) FROM PUBLIC;

-- Whether the correcting entry may be delivered to p_scb, an SCB of its accounts other than the
-- discrepancy's, which has no matching discrepancy of its own: only if that SCB holds our side
-- as the correction assumes, i.e. nothing about the reference is live there and, for
--   missing_on_dbis  (a new entry for us) it holds no copy of the reference and a run has read
--                    its list since the discrepancy was found (else it may hold the same entry);
--   amount_mismatch, missing_on_scb, delivery_failed
--                    (a change of our entry) our entry was delivered to it (SENT, ACKED, FINALIZED).
-- NULL when it may; else why not.
CREATE OR REPLACE FUNCTION dl_correction_other_scb(p_d reconciliation_discrepancies, p_scb text) RETURNS text
LANGUAGE sql STABLE
RETURN CASE
    WHEN EXISTS (SELECT 1 FROM reconciliation_discrepancies x WHERE x.ledger_id = p_d.ledger_id AND x.scb_id = p_scb
                    AND x.reference_id = p_d.reference_id AND x.cleared_at IS NULL AND x.status <> 'RESOLVED')
        THEN format('%s has a discrepancy of its own about %s that this correction does not settle: resolve that one first', p_scb, p_d.reference_id)
    WHEN p_d.kind = 'missing_on_dbis' AND EXISTS (SELECT 1 FROM reconciliation_scb_entries c WHERE c.ledger_id = p_d.ledger_id
                    AND c.scb_id = p_scb AND c.reference_id = p_d.reference_id AND c.gone_run_id IS NULL)
        THEN format('%s holds an entry %s too', p_scb, p_d.reference_id)
    WHEN p_d.kind = 'missing_on_dbis' AND NOT EXISTS (SELECT 1 FROM reconciliation_runs r WHERE r.scb_id = p_scb AND r.status = 'ok'
                    AND r.started_at >= p_d.first_seen_at)
        THEN format('%s''s list has not been read since the discrepancy was found, and it may hold the same entry: run dualledger reconcile scb --scb %s --full first', p_scb, p_scb)
    WHEN p_d.kind <> 'missing_on_dbis' AND NOT EXISTS (SELECT 1 FROM dual_ledger_outbox o WHERE o.ledger_id = p_d.ledger_id
                    AND o.reference_id = p_d.reference_id AND o.scb_id = p_scb AND o.status IN ('SENT', 'ACKED', 'FINALIZED'))
        THEN format('%s does not hold our %s (its delivery is not made), so the correction cannot be sent to it', p_scb, p_d.reference_id)
    END;
REVOKE ALL ON FUNCTION dl_correction_other_scb(reconciliation_discrepancies, text) FROM PUBLIC;

-- Whether the delivery a missing_on_scb or delivery_failed discrepancy p_d is about stands as the
-- run saw it: the same status, not requeued nor redelivered since (the worker's polls touch a
-- SENT row all the time, so its updated_at says nothing), and not on its way.
CREATE OR REPLACE FUNCTION dl_delivery_as_seen(p_d reconciliation_discrepancies) RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM dual_ledger_outbox o
                WHERE o.ledger_id = p_d.ledger_id AND o.id = p_d.outbox_id
                  AND o.status = p_d.dbis ->> 'outbox_status' AND o.status NOT IN ('QUEUED', 'PROCESSING')
                  AND NOT EXISTS (SELECT 1 FROM dual_ledger_outbox_attempts a WHERE a.ledger_id = o.ledger_id AND a.outbox_id = o.id
                                     AND a.kind IN ('requeue', 'redeliver') AND a.started_at > p_d.last_seen_at));
REVOKE ALL ON FUNCTION dl_delivery_as_seen(reconciliation_discrepancies) FROM PUBLIC;

-- The `correct` resolution of p_d with the correcting entry p_ref, posted beforehand in this
-- transaction (discrepancy_resolve). The correction brings our ledger to what the discrepancy's
-- SCB holds, so it is not sent there (dl_outbox_waive); that is true only of the corrections
-- dl_correction_matches accepts, and the others are refused (DL121, naming the one that would
-- be accepted): an SCB that holds our entry with another field, hash or status, or twice, fixes
-- its copy, or the discrepancy is explained. Each other SCB of the correction's accounts either
-- holds the same as this one (a live discrepancy of a kind alike about the same reference,
-- which the correction matches): it is not sent the correction either, and its discrepancy is
-- resolved with it (o_siblings); or holds our side as the correction assumes
-- (dl_correction_other_scb) and is sent it; else the correction is refused. A reference
-- corrected once is not corrected again, and an entry the SCB does not hold is corrected only
-- while its delivery stands as the run saw it (a FAILED one is acknowledged with the reversal:
-- sent alone, the entry would stand at the SCB without it).
CREATE OR REPLACE FUNCTION dl_discrepancy_correct(
    p_actor text, p_d reconciliation_discrepancies, p_ref text, p_reason text,
    OUT o_seq bigint, OUT o_waived bigint, OUT o_siblings bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_o     ledger_entries;
    v_c     ledger_entries;
    v_row   dual_ledger_outbox;
    v_sib   reconciliation_discrepancies;
    v_other text;
    v_why   text;
    v_done  bigint;  -- the discrepancy about the same reference corrected before, if any
BEGIN
    -- A finding no run sees any more needs no correction: posting one would move money for a
    -- difference that is gone (the correcting entry, posted in this transaction, is undone).
    IF p_d.cleared_at IS NOT NULL THEN
        RAISE EXCEPTION 'discrepancy % was cleared by run % (the difference is no longer seen): a correction would move money for nothing; resolve it explained', p_d.id, p_d.cleared_run_id
            USING ERRCODE = 'DL121';
    END IF;
    IF p_d.kind NOT IN ('missing_on_dbis', 'amount_mismatch', 'missing_on_scb', 'delivery_failed') THEN
        RAISE EXCEPTION 'discrepancy % (%) is not corrected by an entry here: the SCB holds our entry %; its operator fixes their copy, or resolve it explained',
                        p_d.id, p_d.kind, CASE p_d.kind WHEN 'duplicate_on_scb' THEN 'more than once' WHEN 'status_mismatch' THEN 'with another status'
                                                        ELSE 'with other ' || array_to_string(p_d.fields, ', ') END
            USING ERRCODE = 'DL121';
    END IF;
    SELECT x.id INTO v_done FROM reconciliation_discrepancies x
     WHERE x.ledger_id = p_d.ledger_id AND x.reference_id = p_d.reference_id AND x.resolution = 'correct' AND x.id <> p_d.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'discrepancy % about % was corrected already (discrepancy %): a second correction would book it twice; resolve this one explained',
                        p_d.id, p_d.reference_id, v_done
            USING ERRCODE = 'DL121';
    END IF;
    SELECT * INTO v_c FROM ledger_entries e WHERE e.ledger_id = p_d.ledger_id AND e.reference_id = p_ref;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no correcting entry % in ledger %: post it first', coalesce(quote_literal(p_ref), 'NULL'), p_d.ledger_id
            USING ERRCODE = 'DL121';
    END IF;
    SELECT * INTO v_o FROM ledger_entries e WHERE e.ledger_id = p_d.ledger_id AND e.seq = p_d.entry_seq;
    IF p_d.kind = 'missing_on_dbis' AND EXISTS (SELECT 1 FROM ledger_entries e WHERE e.ledger_id = p_d.ledger_id AND e.reference_id = p_d.reference_id) THEN
        RAISE EXCEPTION 'discrepancy % (missing_on_dbis): we hold an entry % already, which %''s stray copy is not; its operator removes it, or resolve it explained',
                        p_d.id, p_d.reference_id, p_d.scb_id
            USING ERRCODE = 'DL121';
    END IF;
    IF NOT dl_correction_matches(p_d.kind, p_d.scb, v_o, v_c) THEN
        RAISE EXCEPTION 'the correction of discrepancy % (%) must bring our ledger to what % holds; the one accepted is %',
                        p_d.id, p_d.kind, p_d.scb_id, dl_correction_wanted(p_d, v_o)
            USING ERRCODE = 'DL121';
    END IF;
    IF p_d.kind IN ('missing_on_scb', 'delivery_failed') THEN
        SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_d.outbox_id AND ledger_id = p_d.ledger_id FOR UPDATE;
        IF NOT dl_delivery_as_seen(p_d) THEN
            RAISE EXCEPTION 'the delivery of % to % changed since the run that found discrepancy % (it is % now): reconcile again (dualledger reconcile scb --scb %), then resolve what that run finds',
                            p_d.reference_id, p_d.scb_id, p_d.id, v_row.status, p_d.scb_id
                USING ERRCODE = 'DL121';
        END IF;
    END IF;
    o_seq := v_c.seq;
    o_waived := dl_outbox_waive(p_actor, p_d.ledger_id, p_ref, p_d.scb_id,
        format('the correction of discrepancy %s (%s): %s holds this state already; %s', p_d.id, p_d.kind, p_d.scb_id, p_reason));
    IF o_waived IS NULL THEN
        RAISE EXCEPTION 'the correction touches no account of %, so it would not stay away from it: correct it with an entry on its accounts, or resolve it explained', p_d.scb_id
            USING ERRCODE = 'DL121';
    END IF;
    PERFORM dl_correction_acknowledge_original(p_actor, p_d, p_ref, p_reason);
    o_siblings := '{}';
    FOR v_other IN SELECT o.scb_id FROM dual_ledger_outbox o WHERE o.ledger_id = p_d.ledger_id AND o.reference_id = p_ref
                      AND o.scb_id <> p_d.scb_id ORDER BY o.scb_id LOOP
        SELECT x.* INTO v_sib FROM reconciliation_discrepancies x
         WHERE x.ledger_id = p_d.ledger_id AND x.reference_id = p_d.reference_id AND x.scb_id = v_other
           AND x.status <> 'RESOLVED' AND x.cleared_at IS NULL
           AND (x.kind = p_d.kind OR (x.kind IN ('missing_on_scb', 'delivery_failed') AND p_d.kind IN ('missing_on_scb', 'delivery_failed')))
           AND dl_correction_matches(x.kind, x.scb, v_o, v_c)
           AND (x.kind NOT IN ('missing_on_scb', 'delivery_failed') OR dl_delivery_as_seen(x))
         ORDER BY x.id LIMIT 1 FOR UPDATE;
        IF NOT FOUND THEN
            v_why := dl_correction_other_scb(p_d, v_other);
            IF v_why IS NOT NULL THEN
                RAISE EXCEPTION 'the correction of discrepancy % would reach % as well, and %', p_d.id, v_other, v_why USING ERRCODE = 'DL121';
            END IF;
            CONTINUE;
        END IF;
        PERFORM dl_outbox_waive(p_actor, p_d.ledger_id, p_ref, v_other,
            format('the correction of discrepancy %s (%s), which %s holds as %s does; %s', p_d.id, p_d.kind, v_other, p_d.scb_id, p_reason));
        PERFORM dl_correction_acknowledge_original(p_actor, v_sib, p_ref, p_reason);
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
END $$;
REVOKE ALL ON FUNCTION dl_discrepancy_correct(text, reconciliation_discrepancies, text, text) FROM PUBLIC;

-- With the full reversal of an entry an SCB does not hold (missing_on_scb, delivery_failed), the
-- entry's FAILED delivery to that SCB is acknowledged: sent alone, it would stand there without
-- its reversal, which is not sent either.
CREATE OR REPLACE FUNCTION dl_correction_acknowledge_original(p_actor text, p_d reconciliation_discrepancies, p_ref text, p_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_row dual_ledger_outbox;
BEGIN
    IF p_d.kind NOT IN ('missing_on_scb', 'delivery_failed') THEN
        RETURN;
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_d.outbox_id AND ledger_id = p_d.ledger_id FOR UPDATE;
    IF v_row.status = 'FAILED' AND v_row.acknowledged_at IS NULL THEN
        PERFORM dl_outbox_acknowledge_row(p_actor, v_row,
            format('reversed by %s (discrepancy %s); delivered alone it would stand at %s without its reversal; %s',
                   p_ref, p_d.id, p_d.scb_id, p_reason), 'acknowledged');
    END IF;
END $$;
REVOKE ALL ON FUNCTION dl_correction_acknowledge_original(text, reconciliation_discrepancies, text, text) FROM PUBLIC;

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
        -- A correction's waived delivery that has lapsed (dl_waiver_lapsed) is the exception: the
        -- SCB is back to the state before the difference, and sending the correction is the remedy.
        IF v_row.status = 'FAILED' AND v_row.acknowledged_at IS NOT NULL AND NOT dl_waiver_lapsed(v_d) THEN
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
