-- Holds (docs/holds.md): create, capture, void and expire, as drivers over the posting engine's
-- stages (db/functions/posting.sql). A hold is validated exactly as an entry is (dl_post_parse),
-- under the same ledger-head lock (dl_post_lock), and judged by the same walk (dl_post_walk:
-- accounts, currency, status, funds with the overdraft limit); a capture posts its entry through
-- dl_post_write, so the entry is chained, balanced and mirrored to the member banks (outbox) like
-- any other. What the hold functions add is the reservation:
--
--   reserved_balance += amount, available_balance -= amount   on create (balance unchanged)
--   reserved_balance -= amount, available_balance += amount   on capture (before its entry), void, expiry
--
-- A plain posting needs nothing more: its funds check already reads available_balance, which is
-- balance - reserved_balance (004's CHECK), so reserved funds are never spent twice.
--
-- Every column a hold operation writes stays within NUMERIC(38,18), checked before the write as
-- the walk checks a posting's: a hold that would take its debit account's reserved_balance or
-- available_balance (or, through the walk, a balance its capture would move) to 10^20 or beyond
-- is answered invalid_amount, naming the account and the column (dl_post_reject_overflow).
--
-- Every hold function returns (result, hold_id, entry_id, message, details), one row, and writes
-- nothing unless result is created. Every transition takes the ledger-head lock first and reads
-- the hold under it: two transitions of one hold are serial, and the second sees the first.
--
-- Every change is a hold event, hash-chained per ledger (ledger_hold_events, 014).

-- ---------------------------------------------------------------------------------------------
-- One hold event: chained on the ledger's hold head (the head row is locked by the caller).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_hold_event(p_h ledger_holds, p_event text, p_amount numeric, p_entry_id bigint, p_entry_seq bigint)
RETURNS void
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v_seq  bigint;
    v_prev bytea;
    v_hash bytea;
    v_res  numeric;
BEGIN
    SELECT l.hold_head_seq + 1, l.hold_head_hash INTO v_seq, v_prev FROM ledgers l WHERE l.id = p_h.ledger_id;
    SELECT a.reserved_balance INTO v_res FROM bank_accounts a
     WHERE a.ledger_id = p_h.ledger_id AND a.id = p_h.debit_account_id;
    v_hash := sha256(v_prev || ledger_hold_event_canonical(
        p_h.ledger_id, v_seq, p_h.id, p_h.reference_id, p_event, p_h.debit_account_id, p_h.credit_account_id,
        p_h.amount, p_h.currency_code, p_h.asset_type, p_h.transaction_type, p_h.fx_rate, p_h.metadata,
        p_h.timestamp_utc, p_h.expires_at, p_amount, p_entry_id, p_entry_seq));
    -- The head first: the chain-check trigger compares it with the new event.
    UPDATE ledgers l SET hold_head_seq = v_seq, hold_head_hash = v_hash WHERE l.id = p_h.ledger_id;
    INSERT INTO ledger_hold_events (ledger_id, seq, hold_id, event, account_id, amount, entry_id, entry_seq,
                                    reserved_after, previous_hash, hash)
    VALUES (p_h.ledger_id, v_seq, p_h.id, p_event, p_h.debit_account_id, p_amount, p_entry_id, p_entry_seq,
            v_res, v_prev, v_hash);
END
$fn$;
REVOKE ALL ON FUNCTION dl_hold_event(ledger_holds, text, numeric, bigint, bigint) FROM PUBLIC;

-- A reservation move (+amount reserves, -amount releases) that would take the account's
-- reserved_balance or available_balance beyond NUMERIC(38,18): the rejection naming the column,
-- or NULL when both stay in range. (The balance itself does not move.)
CREATE OR REPLACE FUNCTION dl_hold_reject_overflow(p_account text, p_amount numeric, p_reserved numeric, p_avail numeric)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN abs(p_reserved + p_amount) >= 1e20 THEN dl_post_reject_overflow(abs(p_amount), p_account, 'reserved_balance')
            WHEN abs(p_avail - p_amount) >= 1e20 THEN dl_post_reject_overflow(abs(p_amount), p_account, 'available_balance') END;
REVOKE ALL ON FUNCTION dl_hold_reject_overflow(text, numeric, numeric, numeric) FROM PUBLIC;

-- Moves a reservation: +amount reserves, -amount releases. The account's status, limit and bank
-- are not looked at (a release moves no money; a reservation was judged by the walk under the
-- head lock, which also keeps every balance of the ledger still until we commit).
-- Only releases come here (capture, void, expiry). A release cannot leave NUMERIC(38,18) while
-- 004's CHECKs hold (reserved_balance only falls, and available_balance = balance -
-- reserved_balance rises at most to balance), but both columns are still checked before they
-- are written: out of range, the move is refused as invalid_amount (DL006, the rejection's
-- message and details) instead of the database's numeric field overflow.
CREATE OR REPLACE FUNCTION dl_hold_reserve(p_ledger_id text, p_account text, p_amount numeric) RETURNS void
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    rj dl_post_rejection;
BEGIN
    UPDATE bank_accounts a
       SET reserved_balance = a.reserved_balance + p_amount, available_balance = a.available_balance - p_amount,
           updated_at = now()
     WHERE a.ledger_id = p_ledger_id AND a.id = p_account
       AND abs(a.reserved_balance + p_amount) < 1e20 AND abs(a.available_balance - p_amount) < 1e20;
    IF NOT FOUND THEN
        rj := (SELECT dl_hold_reject_overflow(a.id, p_amount, a.reserved_balance, a.available_balance)
                 FROM bank_accounts a WHERE a.ledger_id = p_ledger_id AND a.id = p_account);
        IF rj.code IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'DL006', MESSAGE = rj.code || ': ' || rj.msg, DETAIL = rj.details::text;
        END IF;
        RAISE EXCEPTION 'internal error: account %/% of a hold is missing', p_ledger_id, p_account USING ERRCODE = 'XX000';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION dl_hold_reserve(text, text, numeric) FROM PUBLIC;

-- A hold of an unknown ledger, or an unknown hold of a known ledger.
CREATE OR REPLACE FUNCTION dl_hold_reject_unknown(p_ledger_id text, p_ref text) RETURNS dl_post_rejection
LANGUAGE sql STABLE
RETURN CASE WHEN NOT EXISTS (SELECT 1 FROM ledgers l WHERE l.id = p_ledger_id)
    THEN ROW('unknown_ledger', format('unknown ledger %s', to_jsonb(p_ledger_id)),
             jsonb_build_object('ledger_id', p_ledger_id))::dl_post_rejection
    ELSE ROW('unknown_hold', format('no hold with reference_id %s in ledger %s', to_jsonb(p_ref), to_jsonb(p_ledger_id)),
             jsonb_build_object('ledger_id', p_ledger_id, 'hold_reference_id', p_ref))::dl_post_rejection END;
REVOKE ALL ON FUNCTION dl_hold_reject_unknown(text, text) FROM PUBLIC;

-- A transition of a hold that is no longer PENDING (or whose expires_at has passed: hold_expired).
CREATE OR REPLACE FUNCTION dl_hold_reject_state(p_h ledger_holds, p_action text, p_now timestamptz) RETURNS dl_post_rejection
LANGUAGE sql STABLE
RETURN CASE WHEN p_h.status = 'EXPIRED' OR (p_h.status = 'PENDING' AND p_h.expires_at <= p_now)
    THEN ROW('hold_expired',
             format('hold %s expired at %s: it cannot be %s', to_jsonb(p_h.reference_id),
                    to_char(p_h.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), p_action),
             jsonb_build_object('hold_reference_id', p_h.reference_id, 'status', p_h.status,
                                'expires_at', to_char(p_h.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::dl_post_rejection
    ELSE ROW('hold_not_pending',
             format('hold %s is %s: it cannot be %s', to_jsonb(p_h.reference_id), p_h.status, p_action),
             jsonb_build_object('hold_reference_id', p_h.reference_id, 'status', p_h.status,
                                'capture_reference_id', p_h.capture_reference_id))::dl_post_rejection END;
REVOKE ALL ON FUNCTION dl_hold_reject_state(ledger_holds, text, timestamptz) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- create_ledger_hold: reserve p_hold.amount on its debit account. p_hold is an entry (the fields
-- of post_ledger_entries, without reverses_entry_id) plus an optional expires_at (RFC 3339, in the
-- future). Replays: the same reference_id with the same terms answers replayed with the hold;
-- with other terms reference_conflict. Hold references are their own namespace (not entries').
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION create_ledger_hold(p_ledger_id text, p_hold jsonb)
RETURNS TABLE (result text, hold_id bigint, entry_id bigint, message text, details jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    b     dl_post_batch;
    acc   dl_post_accounts;
    w     dl_post_walked;
    h     ledger_holds;
    v_exp timestamptz;
    diff  text[];
    d     integer;
    v_status text[];
    v_lim numeric[];
    rj    dl_post_rejection;
BEGIN
    IF p_hold IS NULL OR jsonb_typeof(p_hold) <> 'object' THEN
        RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint, 'a hold must be a JSON object',
                            jsonb_build_object('field', 'hold');
        RETURN;
    END IF;
    IF coalesce(jsonb_typeof(p_hold -> 'reverses_entry_id'), 'null') <> 'null' THEN
        RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint,
                            'a hold cannot reverse an entry: post the reversal as an entry', jsonb_build_object('field', 'reverses_entry_id');
        RETURN;
    END IF;
    IF coalesce(jsonb_typeof(p_hold -> 'expires_at'), 'null') <> 'null' THEN
        v_exp := CASE WHEN jsonb_typeof(p_hold -> 'expires_at') = 'string' THEN dl_parse_timestamp(p_hold ->> 'expires_at') END;
        IF v_exp IS NULL THEN
            RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint,
                format('expires_at must be an RFC 3339 date-time with a time zone and at most 6 decimals of a second, such as "2025-01-20T10:00:00Z", got %s',
                       left((p_hold -> 'expires_at')::text, 80)), jsonb_build_object('field', 'expires_at');
            RETURN;
        END IF;
    END IF;

    b := dl_post_parse(p_ledger_id, jsonb_build_array(p_hold - 'expires_at'));
    IF b.code[1] IS NOT NULL THEN
        RETURN QUERY SELECT b.code[1], NULL::bigint, NULL::bigint, b.msg[1], b.details[1];
        RETURN;
    END IF;
    -- Its capture adds hold_reference_id to the metadata (dl_hold_capture_entry): a hold whose
    -- metadata would then be over the 1 MiB an entry may store could be created but never captured.
    IF pg_column_size(b.meta[1] || jsonb_build_object('hold_reference_id', b.ref[1])) > 1048576 THEN
        RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint,
            format('metadata takes %s bytes stored with the hold_reference_id its capture adds: at most 1048576 (1 MiB)',
                   pg_column_size(b.meta[1] || jsonb_build_object('hold_reference_id', b.ref[1]))),
            jsonb_build_object('field', 'metadata');
        RETURN;
    END IF;
    acc := dl_post_lock(p_ledger_id, b);                 -- the head lock; accounts under it
    IF NOT acc.found THEN
        RETURN QUERY SELECT 'unknown_ledger', NULL::bigint, NULL::bigint, format('unknown ledger %s', to_jsonb(p_ledger_id)),
                            jsonb_build_object('ledger_id', p_ledger_id);
        RETURN;
    END IF;

    -- Replays, under the lock (a hold with this reference cannot appear meanwhile).
    SELECT * INTO h FROM ledger_holds x WHERE x.ledger_id = p_ledger_id AND x.reference_id = b.ref[1];
    IF FOUND THEN
        diff := dl_entry_diff(h.debit_account_id, h.credit_account_id, h.amount, h.currency_code, h.asset_type,
                              h.transaction_type, h.fx_rate, h.metadata, h.timestamp_utc, NULL,
                              b.debit[1], b.credit[1], b.amount[1], b.currency[1], b.asset[1], b.ttype[1],
                              b.fx[1], b.meta[1], b.ts[1], b.ts_given[1], NULL)
                || CASE WHEN h.expires_at IS DISTINCT FROM v_exp THEN ARRAY['expires_at'] ELSE '{}'::text[] END;
        IF cardinality(diff) = 0 THEN
            RETURN QUERY SELECT 'replayed', h.id, NULL::bigint, NULL::text, NULL::jsonb;
        ELSE
            RETURN QUERY SELECT 'reference_conflict', h.id, NULL::bigint,
                format('reference_id %s was already used for hold %s with a different %s', to_jsonb(h.reference_id), h.id,
                       array_to_string(diff, ', ')),
                jsonb_build_object('reference_id', h.reference_id, 'existing_hold_id', h.id, 'fields', to_jsonb(diff));
        END IF;
        RETURN;
    END IF;
    IF v_exp <= clock_timestamp() THEN
        RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint,
            format('expires_at %s is not in the future', p_hold ->> 'expires_at'), jsonb_build_object('field', 'expires_at');
        RETURN;
    END IF;

    -- The walk judges the hold as an entry: accounts, currency, status, funds (available_balance,
    -- which already excludes other holds, with the overdraft limit). Nothing of it is written.
    w := dl_post_walk(p_ledger_id, b, dl_post_replays(p_ledger_id, b, ROW(acc.head_seq, NULL, NULL)::dl_post_refs, acc.head_seq),
                      acc, dl_post_reversal_targets(p_ledger_id, b));
    IF (w.res).code[1] <> 'created' THEN
        RETURN QUERY SELECT (w.res).code[1], NULL::bigint, NULL::bigint, (w.res).msg[1], (w.res).details[1];
        RETURN;
    END IF;
    -- The walk checked the debit's available_balance (and the balances the capture would move);
    -- the reservation also raises reserved_balance (= balance - available_balance, 004's CHECK).
    d := (acc.map ->> b.debit[1])::integer;
    rj := dl_hold_reject_overflow(b.debit[1], b.amount[1], acc.bal[d] - acc.avail[d], acc.avail[d]);
    IF rj.code IS NOT NULL THEN
        RETURN QUERY SELECT rj.code, NULL::bigint, NULL::bigint, rj.msg, rj.details;
        RETURN;
    END IF;

    PERFORM set_config('dualledger.posting', 'on', true);
    -- As dl_post_write does for postings: the account's status and overdraft limit were read
    -- without a row lock; an owner changing them meanwhile (update_account) makes this update
    -- find no row, and the hold is refused as a serialization failure (40001, retried by the
    -- callers) instead of reserving past a freeze or a lowered limit.
    v_status := acc.status;
    v_lim := acc.lim;
    UPDATE bank_accounts a
       SET reserved_balance = a.reserved_balance + b.amount[1], available_balance = a.available_balance - b.amount[1],
           updated_at = now()
     WHERE a.ledger_id = p_ledger_id AND a.id = b.debit[1]
       AND a.status = v_status[d] AND a.overdraft_limit IS NOT DISTINCT FROM v_lim[d];
    IF NOT FOUND THEN
        RAISE EXCEPTION 'account % was changed while the hold was being made: retry', b.debit[1] USING ERRCODE = '40001';
    END IF;
    INSERT INTO ledger_holds (ledger_id, reference_id, debit_account_id, credit_account_id, amount, currency_code, asset_type,
                              transaction_type, fx_rate, metadata, timestamp_utc, expires_at, created_seq)
    VALUES (p_ledger_id, b.ref[1], b.debit[1], b.credit[1], b.amount[1], b.currency[1], b.asset[1], b.ttype[1],
            b.fx[1], b.meta[1], b.ts[1], v_exp, acc.head_seq)
    RETURNING * INTO h;
    PERFORM dl_hold_event(h, 'created', h.amount, NULL, acc.head_seq);
    PERFORM set_config('dualledger.posting', '', true);
    RETURN QUERY SELECT 'created', h.id, NULL::bigint, NULL::text, NULL::jsonb;
END
$fn$;
REVOKE ALL ON FUNCTION create_ledger_hold(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_ledger_hold(text, jsonb) TO dualledger_api;

-- The entry a capture posts, as post_ledger_entries would receive it: the hold's terms, the
-- capture's reference_id and amount (the hold's when absent), the hold's metadata with
-- hold_reference_id added (the link the member banks see in the entry).
CREATE OR REPLACE FUNCTION dl_hold_capture_entry(p_h ledger_holds, p_capture jsonb) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_build_object(
    'debit_account_id', p_h.debit_account_id, 'credit_account_id', p_h.credit_account_id,
    'amount', CASE WHEN coalesce(jsonb_typeof(p_capture -> 'amount'), 'null') = 'null'
                   THEN to_jsonb(trim_scale(p_h.amount)::text) ELSE p_capture -> 'amount' END,
    'currency_code', p_h.currency_code, 'asset_type', p_h.asset_type, 'transaction_type', p_h.transaction_type,
    'reference_id', p_capture -> 'reference_id', 'fx_rate', to_jsonb(trim_scale(p_h.fx_rate)::text),
    'metadata', p_h.metadata || jsonb_build_object('hold_reference_id', p_h.reference_id));
REVOKE ALL ON FUNCTION dl_hold_capture_entry(ledger_holds, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- capture_ledger_hold: post the hold's entry for p_capture.amount (default: the whole hold)
-- under p_capture.reference_id, and release the whole reservation. Refused with hold_expired once
-- expires_at has passed (swept or not), hold_not_pending when captured (under another reference),
-- voided or expired, invalid_amount above the hold's amount. A replay (same reference, same
-- amount) answers replayed with the entry; an entry reference used otherwise, reference_conflict.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION capture_ledger_hold(p_ledger_id text, p_hold_reference_id text, p_capture jsonb)
RETURNS TABLE (result text, hold_id bigint, entry_id bigint, message text, details jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    h       ledger_holds;
    b       dl_post_batch;
    refs    dl_post_refs;
    acc     dl_post_accounts;
    r       dl_post_results;
    w       dl_post_walked;
    rj      dl_post_rejection;
    d       integer;
    v_avail numeric[];
    v_extra text;
BEGIN
    IF p_capture IS NULL OR jsonb_typeof(p_capture) <> 'object' THEN
        RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint,
                            'a capture must be a JSON object {"reference_id", "amount"?}', jsonb_build_object('field', 'capture');
        RETURN;
    END IF;
    SELECT k INTO v_extra FROM jsonb_object_keys(p_capture) AS k WHERE k NOT IN ('reference_id', 'amount') LIMIT 1;
    IF v_extra IS NOT NULL THEN
        RETURN QUERY SELECT 'invalid_request', NULL::bigint, NULL::bigint,
            format('unknown field %s in a capture: it takes reference_id and amount', to_jsonb(v_extra)),
            jsonb_build_object('field', v_extra);
        RETURN;
    END IF;
    SELECT * INTO h FROM ledger_holds x WHERE x.ledger_id = p_ledger_id AND x.reference_id = p_hold_reference_id;
    IF NOT FOUND THEN
        rj := dl_hold_reject_unknown(p_ledger_id, p_hold_reference_id);
        RETURN QUERY SELECT rj.code, NULL::bigint, NULL::bigint, rj.msg, rj.details;
        RETURN;
    END IF;

    b := dl_post_parse(p_ledger_id, jsonb_build_array(dl_hold_capture_entry(h, p_capture)));
    IF b.code[1] IS NOT NULL THEN
        RETURN QUERY SELECT b.code[1], h.id, NULL::bigint, b.msg[1], b.details[1];
        RETURN;
    END IF;
    refs := dl_post_lookup_refs(p_ledger_id, b);
    acc := dl_post_lock(p_ledger_id, b);                 -- the head lock: from here the hold is ours
    -- (By reference as well as by id, here and in the two UPDATEs below: either unique index then
    -- finds the one row, whatever the plan was made for; by id alone, a plan made on an empty
    -- table went through the reference index with id as a filter and read the ledger's every hold,
    -- as EXPLAIN of the generic plan shows. db/plans_test.go runs these paths from empty tables but
    -- cannot tell this look-up's reads from the hold events' foreign-key checks.)
    SELECT * INTO h FROM ledger_holds x WHERE x.ledger_id = p_ledger_id AND x.id = h.id AND x.reference_id = h.reference_id;

    IF h.status = 'CAPTURED' AND h.capture_reference_id = b.ref[1] THEN
        IF h.captured_amount = b.amount[1] THEN
            RETURN QUERY SELECT 'replayed', h.id, h.capture_entry_id, NULL::text, NULL::jsonb;
        ELSE
            RETURN QUERY SELECT 'reference_conflict', h.id, h.capture_entry_id,
                format('hold %s was captured under reference_id %s for %s, not %s', to_jsonb(h.reference_id),
                       to_jsonb(b.ref[1]), dl_amount_text(h.captured_amount, h.currency_code), dl_amount_text(b.amount[1], h.currency_code)),
                jsonb_build_object('reference_id', b.ref[1], 'existing_entry_id', h.capture_entry_id, 'fields', '["amount"]'::jsonb);
        END IF;
        RETURN;
    END IF;
    r := dl_post_replays(p_ledger_id, b, refs, acc.head_seq);
    IF r.code[1] IN ('replayed', 'reference_conflict') THEN
        RETURN QUERY SELECT 'reference_conflict', h.id, NULL::bigint,
            format('reference_id %s is already used by entry %s: a capture needs a reference of its own', to_jsonb(b.ref[1]), r.id[1]),
            jsonb_build_object('reference_id', b.ref[1], 'existing_entry_id', r.id[1]);
        RETURN;
    END IF;
    IF h.status <> 'PENDING' OR h.expires_at <= clock_timestamp() THEN
        rj := dl_hold_reject_state(h, 'captured', clock_timestamp());
        RETURN QUERY SELECT rj.code, h.id, NULL::bigint, rj.msg, rj.details;
        RETURN;
    END IF;
    IF b.amount[1] > h.amount THEN
        RETURN QUERY SELECT 'invalid_amount', h.id, NULL::bigint,
            format('capture amount %s is more than hold %s reserved (%s %s)', dl_amount_text(b.amount[1], h.currency_code),
                   to_jsonb(h.reference_id), dl_amount_text(h.amount, h.currency_code), h.currency_code),
            jsonb_build_object('field', 'amount', 'hold_amount', dl_amount_text(h.amount, h.currency_code));
        RETURN;
    END IF;

    -- The walk sees the reservation released (it is released below, before the entry is written),
    -- so the capture spends the funds the hold kept for it.
    d := (acc.map ->> h.debit_account_id)::integer;
    v_avail := acc.avail;
    v_avail[d] := v_avail[d] + h.amount;
    acc.avail := v_avail;
    w := dl_post_walk(p_ledger_id, b, r, acc, dl_post_reversal_targets(p_ledger_id, b));
    IF (w.res).code[1] <> 'created' THEN
        RETURN QUERY SELECT (w.res).code[1], h.id, NULL::bigint, (w.res).msg[1], (w.res).details[1];
        RETURN;
    END IF;

    PERFORM set_config('dualledger.posting', 'on', true);
    PERFORM dl_hold_reserve(p_ledger_id, h.debit_account_id, -h.amount);
    PERFORM dl_post_write(p_ledger_id, b, w);           -- head, entry, balances, outbox
    PERFORM set_config('dualledger.posting', 'on', true);
    UPDATE ledger_holds x
       SET status = 'CAPTURED', resolved_at = now(), resolved_seq = w.seq, captured_amount = b.amount[1],
           capture_entry_id = b.id[1], capture_reference_id = b.ref[1]
     WHERE x.ledger_id = p_ledger_id AND x.id = h.id AND x.reference_id = h.reference_id;
    PERFORM dl_hold_event(h, 'captured', b.amount[1], b.id[1], w.seq);
    PERFORM set_config('dualledger.posting', '', true);
    RETURN QUERY SELECT 'created', h.id, b.id[1], NULL::text, NULL::jsonb;
END
$fn$;
REVOKE ALL ON FUNCTION capture_ledger_hold(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION capture_ledger_hold(text, text, jsonb) TO dualledger_api;

-- ---------------------------------------------------------------------------------------------
-- Release one PENDING hold (void or expiry), under the head lock the caller holds.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_hold_release(p_h ledger_holds, p_status text, p_head_seq bigint) RETURNS void
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM set_config('dualledger.posting', 'on', true);
    PERFORM dl_hold_reserve(p_h.ledger_id, p_h.debit_account_id, -p_h.amount);
    -- An expired hold is resolved when it expired, never before: the sweep decides by the clock
    -- (expire_ledger_holds), while now() is its transaction's start, which may be before
    -- expires_at when the sweep waited for the head lock.
    UPDATE ledger_holds x
       SET status = p_status, resolved_at = CASE WHEN p_status = 'EXPIRED' THEN greatest(now(), p_h.expires_at) ELSE now() END,
           resolved_seq = p_head_seq
     WHERE x.ledger_id = p_h.ledger_id AND x.id = p_h.id AND x.reference_id = p_h.reference_id;
    PERFORM dl_hold_event(p_h, lower(p_status), p_h.amount, NULL, p_head_seq);
    PERFORM set_config('dualledger.posting', '', true);
END
$fn$;
REVOKE ALL ON FUNCTION dl_hold_release(ledger_holds, text, bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- void_ledger_hold: release a PENDING hold. A void of a VOIDED hold is a replay; of a captured or
-- expired one, hold_not_pending. A hold whose expires_at has passed but that the sweeper has not
-- expired yet may still be voided (either way its funds go back; nothing is posted).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION void_ledger_hold(p_ledger_id text, p_hold_reference_id text)
RETURNS TABLE (result text, hold_id bigint, entry_id bigint, message text, details jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    h      ledger_holds;
    rj     dl_post_rejection;
    v_head bigint;
BEGIN
    SELECT l.head_seq INTO v_head FROM ledgers l WHERE l.id = p_ledger_id FOR UPDATE;   -- the head lock
    SELECT * INTO h FROM ledger_holds x WHERE x.ledger_id = p_ledger_id AND x.reference_id = p_hold_reference_id;
    IF NOT FOUND THEN
        rj := dl_hold_reject_unknown(p_ledger_id, p_hold_reference_id);
        RETURN QUERY SELECT rj.code, NULL::bigint, NULL::bigint, rj.msg, rj.details;
        RETURN;
    END IF;
    IF h.status = 'VOIDED' THEN
        RETURN QUERY SELECT 'replayed', h.id, NULL::bigint, NULL::text, NULL::jsonb;
        RETURN;
    END IF;
    IF h.status <> 'PENDING' THEN
        rj := dl_hold_reject_state(h, 'voided', '-infinity');
        RETURN QUERY SELECT rj.code, h.id, NULL::bigint, rj.msg, rj.details;
        RETURN;
    END IF;
    PERFORM dl_hold_release(h, 'VOIDED', v_head);
    RETURN QUERY SELECT 'created', h.id, NULL::bigint, NULL::text, NULL::jsonb;
END
$fn$;
REVOKE ALL ON FUNCTION void_ledger_hold(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION void_ledger_hold(text, text) TO dualledger_api;

-- ---------------------------------------------------------------------------------------------
-- expire_ledger_holds: release up to p_limit PENDING holds of a ledger whose expires_at has
-- passed (on the database clock, under the head lock), oldest due first, and return them. The
-- sweeper in `serve` and `dualledger holds expire` call it per ledger until it returns fewer.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION expire_ledger_holds(p_ledger_id text, p_limit integer DEFAULT 1000)
RETURNS TABLE (hold_id bigint, reference_id text, account_id text, amount numeric, expires_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    h      ledger_holds;
    v_head bigint;
    v_now  timestamptz;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100000 THEN
        RAISE EXCEPTION 'invalid_request: limit must be 1 to 100000, got %', p_limit USING ERRCODE = 'DL009';
    END IF;
    SELECT l.head_seq INTO v_head FROM ledgers l WHERE l.id = p_ledger_id FOR UPDATE;   -- the head lock
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown_ledger: unknown ledger %', to_jsonb(p_ledger_id) USING ERRCODE = 'DL003';
    END IF;
    v_now := clock_timestamp();
    FOR h IN
        SELECT * FROM ledger_holds x
         WHERE x.ledger_id = p_ledger_id AND x.status = 'PENDING' AND x.expires_at <= v_now
         ORDER BY x.expires_at, x.id
         LIMIT p_limit
    LOOP
        PERFORM dl_hold_release(h, 'EXPIRED', v_head);
        hold_id := h.id; reference_id := h.reference_id; account_id := h.debit_account_id;
        amount := h.amount; expires_at := h.expires_at;
        RETURN NEXT;
    END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION expire_ledger_holds(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION expire_ledger_holds(text, integer) TO dualledger_api;
