-- Reconciliation runs against one member bank (docs/reconciliation.md, migration 013).
--
-- A run (internal/reconcile) holds the advisory lock of its SCB for its whole length (one run at
-- a time per SCB, across processes), then:
--   reconcile_begin            opens the run, abandons runs left 'running' by a dead process, and
--                              says where to read the SCB's list from (the last good run's cursor,
--                              or the start for --full);
--   reconcile_record_scb       stores each page the SCB lists (its copy of our entries), and each
--                              entry asked about again one by one;
--   reconcile_forget_scb       forgets an entry the SCB answers 404 for;
--   reconcile_reread_keys      the entries worth asking about again: not FINAL there yet, or with
--                              a live discrepancy;
--   reconcile_finish           compares (reconcile_findings), records each finding once, clears
--                              the findings no longer seen, closes the run;
--   reconcile_fail             closes a run that could not finish (the cursor does not advance).
--
-- EXECUTE for dualledger_worker (the schedule of `worker` and `serve --reconcile-every` runs them as
-- the worker's role) and the owner (`dualledger reconcile`). reconcile_findings is internal: nobody may call it.

CREATE OR REPLACE FUNCTION reconcile_begin(p_actor text, p_scb_id text, p_ledger_id text, p_full boolean)
RETURNS TABLE (run_id bigint, cursor_from text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_cursor text;
    v_id     bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM banks WHERE id = p_scb_id) THEN
        RAISE EXCEPTION 'SCB % is not registered', coalesce(quote_literal(p_scb_id), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    -- The caller holds the SCB's advisory lock: a run still 'running' belongs to a dead process.
    UPDATE reconciliation_runs
       SET status = 'abandoned', finished_at = now(), error = 'the process running it stopped before it finished'
     WHERE scb_id = p_scb_id AND status = 'running';
    IF NOT coalesce(p_full, false) THEN
        -- Only a run over every ledger moves the cursor on: a --ledger run reads the whole list
        -- but compares one ledger, so starting after it would skip the others' entries for good.
        -- A --ledger run therefore also starts from the last unfiltered run (it rereads more).
        SELECT r.cursor_to INTO v_cursor FROM reconciliation_runs r
         WHERE r.scb_id = p_scb_id AND r.status = 'ok' AND r.cursor_to IS NOT NULL AND r.ledger_filter IS NULL
         ORDER BY r.id DESC LIMIT 1;
    END IF;
    INSERT INTO reconciliation_runs (scb_id, ledger_filter, full_read, actor, cursor_from, cursor_to)
    VALUES (p_scb_id, nullif(p_ledger_id, ''), coalesce(p_full, false), p_actor, v_cursor, v_cursor)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT v_id, v_cursor;
END $$;
REVOKE ALL ON FUNCTION reconcile_begin(text, text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_begin(text, text, text, boolean) TO dualledger_worker;

-- The distinct SCB entry ids of ids but main, sorted (the other copies of one entry).
CREATE OR REPLACE FUNCTION dl_other_scb_entry_ids(p_ids text[], p_main text) RETURNS text[]
LANGUAGE sql IMMUTABLE
RETURN ARRAY(SELECT DISTINCT x FROM unnest(p_ids) AS x WHERE x IS NOT NULL AND x IS DISTINCT FROM p_main ORDER BY x);
REVOKE ALL ON FUNCTION dl_other_scb_entry_ids(text[], text) FROM PUBLIC;

-- Stores the SCB's view of entries (a JSON array of GET /v1/entries items) for run p_run: a page
-- of the list (p_reread false; p_cursor is the page's next_since) or entries asked about again one
-- by one (p_reread true). Items without ledger_id or reference_id are the caller's to refuse.
-- Returns how many were stored.
CREATE OR REPLACE FUNCTION reconcile_record_scb(p_run bigint, p_entries jsonb, p_cursor text, p_reread boolean)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_run reconciliation_runs;
    v_n   integer;
BEGIN
    SELECT * INTO v_run FROM reconciliation_runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND OR v_run.status <> 'running' THEN
        RAISE EXCEPTION 'reconciliation run % is not running', p_run USING ERRCODE = 'DL009';
    END IF;
    IF jsonb_typeof(p_entries) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'entries must be a JSON array' USING ERRCODE = 'DL009';
    END IF;
    -- An SCB that lists two entries under one (ledger, reference) in one read of its list booked
    -- our posting twice: one copy is kept, the others' ids in other_scb_entry_ids (019), which
    -- the comparison reports as duplicate_on_scb. Only copies seen together count: within one
    -- run's read (its pages add up), and, once known, across later runs (listed or asked again
    -- under one of them, the copies stay copies). An id the SCB shows in another run in place of
    -- the one stored is not taken for a second copy: an incremental read lists only what is new,
    -- and the SCB may have renumbered the entry, or lost it and posted it again; a full run,
    -- which lists everything, finds a second copy that really is there.
    -- Of two copies known to be copies, the one the SCB posted first is the one compared, whatever
    -- page or answer shows the other (keep): which copy's amount and hash the other findings see
    -- must not depend on the page size or on which copy a GET answers.
    INSERT INTO reconciliation_scb_entries AS s
        (ledger_id, scb_id, reference_id, scb_entry_id, debit_account_id, credit_account_id, amount, currency_code,
         asset_type, transaction_type, dbis_entry_id, block_hash, timestamp_utc, status, posted_at, read_run_id, read_at,
         other_scb_entry_ids)
    SELECT i.ledger_id, v_run.scb_id, i.reference_id,
           CASE WHEN k.keep THEN o.scb_entry_id ELSE i.scb_entry_id END,
           CASE WHEN k.keep THEN o.debit_account_id ELSE i.debit_account_id END,
           CASE WHEN k.keep THEN o.credit_account_id ELSE i.credit_account_id END,
           CASE WHEN k.keep THEN o.amount ELSE i.amount END,
           CASE WHEN k.keep THEN o.currency_code ELSE i.currency_code END,
           CASE WHEN k.keep THEN o.asset_type ELSE i.asset_type END,
           CASE WHEN k.keep THEN o.transaction_type ELSE i.transaction_type END,
           CASE WHEN k.keep THEN o.dbis_entry_id ELSE i.dbis_entry_id END,
           CASE WHEN k.keep THEN o.block_hash ELSE i.block_hash END,
           CASE WHEN k.keep THEN o.timestamp_utc ELSE i.timestamp_utc END,
           CASE WHEN k.keep THEN o.status ELSE i.status END,
           CASE WHEN k.keep THEN o.posted_at ELSE i.posted_at END,
           p_run, now(),
           CASE WHEN k.keep THEN dl_other_scb_entry_ids(i.ids || i.scb_entry_id, o.scb_entry_id)
                ELSE dl_other_scb_entry_ids(i.ids, i.scb_entry_id) END
      FROM (SELECT DISTINCT ON (x.ledger_id, x.reference_id) x.*
              FROM (SELECT y.*, array_agg(y.scb_entry_id) OVER (PARTITION BY y.ledger_id, y.reference_id) AS ids
                      FROM jsonb_to_recordset(p_entries) AS y(ledger_id text, reference_id text, scb_entry_id text,
                           debit_account_id text, credit_account_id text, amount text, currency_code text, asset_type text,
                           transaction_type text, dbis_entry_id bigint, block_hash text, timestamp_utc timestamptz, status text,
                           posted_at timestamptz)
                     WHERE y.ledger_id <> '' AND y.reference_id <> '') x
             ORDER BY x.ledger_id, x.reference_id, x.posted_at) i
      LEFT JOIN reconciliation_scb_entries o
        ON o.ledger_id = i.ledger_id AND o.scb_id = v_run.scb_id AND o.reference_id = i.reference_id AND o.gone_run_id IS NULL
     CROSS JOIN LATERAL (SELECT coalesce(
               i.scb_entry_id IS DISTINCT FROM o.scb_entry_id
           AND ((NOT p_reread AND o.read_run_id = p_run) OR i.scb_entry_id = ANY (o.other_scb_entry_ids))
           AND o.posted_at <= i.posted_at, false) AS keep) k
    ON CONFLICT (ledger_id, scb_id, reference_id) DO UPDATE
       SET scb_entry_id = EXCLUDED.scb_entry_id, debit_account_id = EXCLUDED.debit_account_id,
           credit_account_id = EXCLUDED.credit_account_id, amount = EXCLUDED.amount, currency_code = EXCLUDED.currency_code,
           asset_type = EXCLUDED.asset_type, transaction_type = EXCLUDED.transaction_type, dbis_entry_id = EXCLUDED.dbis_entry_id,
           block_hash = EXCLUDED.block_hash, timestamp_utc = EXCLUDED.timestamp_utc, status = EXCLUDED.status,
           posted_at = EXCLUDED.posted_at, read_run_id = EXCLUDED.read_run_id, read_at = EXCLUDED.read_at, gone_run_id = NULL,
           other_scb_entry_ids = CASE
               -- this run's list showed the entry before: every copy it showed
               WHEN NOT p_reread AND s.read_run_id = p_run THEN
                   dl_other_scb_entry_ids(s.other_scb_entry_ids || s.scb_entry_id || EXCLUDED.other_scb_entry_ids, EXCLUDED.scb_entry_id)
               -- a full run's first sight of it: what its page shows
               WHEN NOT p_reread AND v_run.full_read THEN EXCLUDED.other_scb_entry_ids
               -- another of the known copies is shown (or answered): the copies stay copies
               WHEN EXCLUDED.scb_entry_id = ANY (s.other_scb_entry_ids) THEN
                   dl_other_scb_entry_ids(s.other_scb_entry_ids || s.scb_entry_id || EXCLUDED.other_scb_entry_ids, EXCLUDED.scb_entry_id)
               -- the same copy, or an id not known as a copy: no new copy from it
               ELSE dl_other_scb_entry_ids(s.other_scb_entry_ids || EXCLUDED.other_scb_entry_ids, EXCLUDED.scb_entry_id) END;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE reconciliation_runs
       SET scb_entries_read = scb_entries_read + CASE WHEN p_reread THEN 0 ELSE v_n END,
           scb_entries_reread = scb_entries_reread + CASE WHEN p_reread THEN v_n ELSE 0 END,
           cursor_to = CASE WHEN p_reread THEN cursor_to ELSE coalesce(nullif(p_cursor, ''), cursor_to) END
     WHERE id = p_run;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION reconcile_record_scb(bigint, jsonb, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_record_scb(bigint, jsonb, text, boolean) TO dualledger_worker;

-- The SCB answered 404 for an entry it had listed before: it no longer has it. Its copy is kept,
-- marked gone by this run (019): the comparison treats it as absent (missing_on_scb), and every
-- incremental run compares it until the SCB lists it again or a full run drops it (deleting it,
-- as 013 did, left nothing that made a later incremental run compare it).
CREATE OR REPLACE FUNCTION reconcile_forget_scb(p_run bigint, p_ledger_id text, p_reference_id text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_run reconciliation_runs;
    v_had boolean;
BEGIN
    SELECT * INTO v_run FROM reconciliation_runs WHERE id = p_run;
    IF NOT FOUND OR v_run.status <> 'running' THEN
        RAISE EXCEPTION 'reconciliation run % is not running', p_run USING ERRCODE = 'DL009';
    END IF;
    -- An entry it never listed (a delivery it never got) gets a gone copy too: read_at then
    -- records that it was asked about, so the rereads take turns (reconcile_reread_keys).
    -- Returns whether a copy was there before, as it did when it deleted it.
    INSERT INTO reconciliation_scb_entries (ledger_id, scb_id, reference_id, read_run_id, read_at, gone_run_id)
    VALUES (p_ledger_id, v_run.scb_id, p_reference_id, p_run, now(), p_run)
    ON CONFLICT (ledger_id, scb_id, reference_id) DO UPDATE
       SET gone_run_id = p_run, read_run_id = p_run, read_at = now()
    RETURNING xmax <> 0 INTO v_had;
    RETURN v_had;
END $$;
REVOKE ALL ON FUNCTION reconcile_forget_scb(bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_forget_scb(bigint, text, text) TO dualledger_worker;

-- Entries of the run's SCB worth asking about again (GET /v1/entries/{reference_id}): those not
-- FINAL there when last read (oldest read first), those with a live discrepancy, and those a
-- waived correction rests on, at most p_limit.
CREATE OR REPLACE FUNCTION reconcile_reread_keys(p_run bigint, p_limit integer)
RETURNS TABLE (ledger_id text, reference_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_run reconciliation_runs;
BEGIN
    SELECT * INTO v_run FROM reconciliation_runs r WHERE r.id = p_run;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no reconciliation run %', p_run USING ERRCODE = 'DL009';
    END IF;
    -- The budget goes, in this order, to: the keys of live discrepancies not resolved, up to half
    -- of it (they decide whether a finding still stands); the entries not FINAL there, oldest read
    -- first; the rest of the unresolved keys; the keys of resolved discrepancies still seen (an
    -- explained one may stay live for good, and a thousand of them must not starve the others).
    -- Discrepancy keys go least recently asked about (or read) first, by the SCB copy's read_at:
    -- a key asked about moves to the back, so none is starved for good.
    RETURN QUERY
    WITH dk AS (
        SELECT d.ledger_id, d.reference_id, bool_and(d.status = 'RESOLVED') AS resolved,
               coalesce(max(c.read_at), '-infinity') AS asked
          FROM reconciliation_discrepancies d
          LEFT JOIN reconciliation_scb_entries c
            ON c.ledger_id = d.ledger_id AND c.scb_id = d.scb_id AND c.reference_id = d.reference_id
         WHERE d.scb_id = v_run.scb_id AND d.cleared_at IS NULL
           AND (v_run.ledger_filter IS NULL OR d.ledger_id = v_run.ledger_filter)
         GROUP BY d.ledger_id, d.reference_id),
    ranked AS (
        SELECT dk.*, row_number() OVER (PARTITION BY dk.resolved ORDER BY dk.asked, dk.ledger_id, dk.reference_id) AS rn FROM dk)
    SELECT k.ledger_id, k.reference_id FROM (
        SELECT x.ledger_id, x.reference_id, min(x.pri) AS pri, min(x.ord) AS ord FROM (
            SELECT r.ledger_id, r.reference_id,
                   CASE WHEN r.resolved THEN 3 WHEN r.rn <= greatest(p_limit / 2, 1) THEN 0 ELSE 2 END AS pri,
                   r.rn::numeric AS ord
              FROM ranked r WHERE r.rn <= p_limit
            UNION ALL
            -- The references of corrections not sent to this SCB (waived deliveries), however old:
            -- whether the SCB still holds what each waiver rests on is decided on a fresh copy
            -- (dl_correction_lapsed); a stale one reported a lapse the SCB had undone, and its
            -- requeue booked the correction twice there (review of 2026-12-02). Corrections are few.
            (SELECT (w.d).ledger_id, (w.d).reference_id, 0, 0::numeric
               FROM dl_waived_corrections(v_run.scb_id, v_run.ledger_filter) w LIMIT p_limit)
            UNION ALL
            (SELECT s.ledger_id, s.reference_id, 1, extract(epoch FROM s.read_at) FROM reconciliation_scb_entries s
              WHERE s.scb_id = v_run.scb_id AND s.status IS DISTINCT FROM 'FINAL' AND s.read_run_id <> p_run
                AND s.gone_run_id IS NULL AND (v_run.ledger_filter IS NULL OR s.ledger_id = v_run.ledger_filter)
              ORDER BY s.read_at LIMIT p_limit)) x
         GROUP BY x.ledger_id, x.reference_id) k
     ORDER BY k.pri, k.ord
     LIMIT p_limit;
END $$;
REVOKE ALL ON FUNCTION reconcile_reread_keys(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_reread_keys(bigint, integer) TO dualledger_worker;

-- The (ledger, reference) pairs an incremental run p_run compares: what the SCB showed in this
-- run, what it no longer has (gone), our deliveries to it changed since p_since, and the live
-- discrepancies. Everything else is unchanged on both sides since a run that compared it.
CREATE OR REPLACE FUNCTION reconcile_candidates(p_scb_id text, p_ledger_id text, p_run bigint, p_since timestamptz)
RETURNS TABLE (ledger_id text, reference_id text)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT s.ledger_id, s.reference_id FROM reconciliation_scb_entries s
     WHERE s.scb_id = p_scb_id AND (s.read_run_id = p_run OR s.gone_run_id IS NOT NULL)
       AND (p_ledger_id IS NULL OR s.ledger_id = p_ledger_id)
    UNION
    SELECT o.ledger_id, o.reference_id FROM dual_ledger_outbox o
     WHERE o.scb_id = p_scb_id AND o.updated_at >= p_since AND (p_ledger_id IS NULL OR o.ledger_id = p_ledger_id)
    UNION
    SELECT d.ledger_id, d.reference_id FROM reconciliation_discrepancies d
     WHERE d.scb_id = p_scb_id AND d.cleared_at IS NULL AND (p_ledger_id IS NULL OR d.ledger_id = p_ledger_id)
$$;
REVOKE ALL ON FUNCTION reconcile_candidates(text, text, bigint, timestamptz) FROM PUBLIC;

-- Every difference between our deliveries to p_scb_id (the entries with an outbox row for it) and
-- the SCB's copy, matched by (ledger, reference), with both sides' values: all of them when
-- p_since is NULL (a full comparison), else only reconcile_candidates(p_run, p_since). A delivery
-- not made yet (QUEUED, PROCESSING) younger than p_grace is not yet expected at the SCB, one the
-- SCB answered after this run began reading is left to the next run (missing_on_scb); a row that
-- has not moved for p_grace, or whose polls fail since the SCB's copy was read FINAL, is expected
-- FINALIZED here when the SCB says FINAL (status_mismatch). A
-- correction's waived delivery is expected at the SCB once the SCB is back to the state before
-- the difference it corrected (lapsed: missing_on_scb, dbis.waived_for_discrepancy).
DROP FUNCTION IF EXISTS reconcile_findings(text, text, interval);
CREATE OR REPLACE FUNCTION reconcile_findings(p_scb_id text, p_ledger_id text, p_grace interval, p_run bigint, p_since timestamptz)
RETURNS TABLE (kind text, ledger_id text, reference_id text, entry_seq bigint, outbox_id bigint, fields text[], dbis jsonb, scb jsonb)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
-- The corrections not sent to this SCB (waived deliveries: FAILED, acknowledged) that have
-- lapsed: the SCB is back to the state before the difference (dl_correction_lapsed). Each is a
-- missing_on_scb of its own, compared by every run whatever changed (keys): the resolved
-- discrepancy it rests on may have been cleared long ago. Corrections are few.
WITH lapsed AS MATERIALIZED (
    SELECT DISTINCT ON ((w.d).ledger_id, w.outbox_id) (w.d).ledger_id, (w.d).correction_reference_id AS reference_id, w.outbox_id,
           (w.d).id AS discrepancy_id
      FROM dl_waived_corrections(p_scb_id, p_ledger_id) w
     WHERE dl_correction_lapsed(w.d)
     ORDER BY (w.d).ledger_id, w.outbox_id, (w.d).id),
keys AS MATERIALIZED (
    SELECT c.ledger_id, c.reference_id FROM reconcile_candidates(p_scb_id, p_ledger_id, p_run, p_since) c WHERE p_since IS NOT NULL
    UNION SELECT l.ledger_id, l.reference_id FROM lapsed l WHERE p_since IS NOT NULL),
run AS (SELECT r.started_at FROM reconciliation_runs r WHERE r.id = p_run),
ours AS (
    SELECT o.ledger_id, o.reference_id, o.id AS outbox_id, o.status AS outbox_status, o.created_at, o.updated_at, o.sent_at,
           o.acked_at, o.last_polled_at, o.poll_failures, o.failure_reason, o.acknowledged_at, l.discrepancy_id AS waived_for, e.seq, e.id AS entry_id, e.debit_account_id,
           e.credit_account_id, e.amount, e.currency_code, e.asset_type, e.transaction_type, e.timestamp_utc,
           encode(e.block_hash, 'hex') AS block_hash
      FROM dual_ledger_outbox o
      JOIN ledger_entries e ON e.ledger_id = o.ledger_id AND e.seq = o.entry_seq
      LEFT JOIN lapsed l ON l.ledger_id = o.ledger_id AND l.outbox_id = o.id
     WHERE o.scb_id = p_scb_id AND (p_ledger_id IS NULL OR o.ledger_id = p_ledger_id)
       AND (p_since IS NULL OR (o.ledger_id, o.reference_id) IN (SELECT k.ledger_id, k.reference_id FROM keys k))),
theirs AS (
    SELECT s.* FROM reconciliation_scb_entries s
     WHERE s.scb_id = p_scb_id AND s.gone_run_id IS NULL AND (p_ledger_id IS NULL OR s.ledger_id = p_ledger_id)
       AND (p_since IS NULL OR (s.ledger_id, s.reference_id) IN (SELECT k.ledger_id, k.reference_id FROM keys k))),
j AS (
    SELECT o.*, t.ledger_id AS t_ledger, t.reference_id AS t_reference, t.scb_entry_id AS t_scb_entry_id,
           t.debit_account_id AS t_debit, t.credit_account_id AS t_credit, t.amount AS t_amount, t.currency_code AS t_currency,
           t.asset_type AS t_asset, t.transaction_type AS t_type, t.dbis_entry_id AS t_entry_id, t.block_hash AS t_hash,
           t.timestamp_utc AS t_ts, t.status AS t_status, t.posted_at AS t_posted_at, t.read_at AS t_read_at,
           t.other_scb_entry_ids AS t_others,
           CASE WHEN t.amount ~ '^[0-9]{1,20}(\.[0-9]{1,18})?$' THEN t.amount::numeric <> o.amount ELSE true END AS amount_differs,
           array_remove(ARRAY[
               CASE WHEN o.debit_account_id IS DISTINCT FROM t.debit_account_id THEN 'debit_account_id' END,
               CASE WHEN o.credit_account_id IS DISTINCT FROM t.credit_account_id THEN 'credit_account_id' END,
               CASE WHEN o.currency_code IS DISTINCT FROM t.currency_code THEN 'currency_code' END,
               CASE WHEN o.asset_type IS DISTINCT FROM t.asset_type THEN 'asset_type' END,
               CASE WHEN o.transaction_type IS DISTINCT FROM t.transaction_type THEN 'transaction_type' END,
               CASE WHEN o.timestamp_utc IS DISTINCT FROM t.timestamp_utc THEN 'timestamp_utc' END,
               CASE WHEN o.entry_id IS DISTINCT FROM t.dbis_entry_id THEN 'dbis_entry_id' END], NULL) AS differing
      FROM ours o FULL JOIN theirs t ON t.ledger_id = o.ledger_id AND t.reference_id = o.reference_id),
hits AS (
    SELECT j.*, k.kind, k.fields
      FROM j CROSS JOIN LATERAL (VALUES
          ('missing_on_dbis', '{}'::text[], j.outbox_id IS NULL),
          -- Not an acknowledged one (020): given up on knowingly, with its reason, or a
          -- correction's delivery waived because the SCB holds that state already.
          ('delivery_failed', '{}'::text[], j.outbox_status = 'FAILED' AND j.acknowledged_at IS NULL),
          -- The SCB holds the entry more than once (019): booked twice there, whatever ours says.
          ('duplicate_on_scb', '{scb_entry_id}'::text[], cardinality(j.t_others) > 0),
          -- Not delivered yet: expected at the SCB once older than the grace. Delivered (the SCB
          -- answered): expected whatever its age, if that answer came before this run read the list.
          -- A waived correction that has lapsed is expected there now.
          ('missing_on_scb', '{}'::text[], j.t_reference IS NULL AND (j.waived_for IS NOT NULL OR j.outbox_status <> 'FAILED' AND CASE
              WHEN j.outbox_status IN ('QUEUED', 'PROCESSING') THEN j.created_at <= now() - p_grace
              ELSE coalesce(j.sent_at, j.updated_at) < (SELECT run.started_at FROM run) END)),
          ('amount_mismatch', '{amount}'::text[], j.t_reference IS NOT NULL AND j.outbox_id IS NOT NULL AND j.amount_differs),
          ('field_mismatch', j.differing, j.t_reference IS NOT NULL AND j.outbox_id IS NOT NULL AND cardinality(j.differing) > 0),
          ('hash_mismatch', '{block_hash}'::text[], j.t_reference IS NOT NULL AND j.outbox_id IS NOT NULL
                                                   AND j.block_hash IS DISTINCT FROM lower(j.t_hash)),
          -- FINALIZED here but not FINAL in the SCB's copy counts only if the row was FINALIZED
          -- before that copy was read: one read a moment before our poller saw FINAL is not the
          -- SCB going back on it (the next run rereads a copy that is not FINAL).
          ('status_mismatch', '{status}'::text[], j.t_reference IS NOT NULL AND j.outbox_id IS NOT NULL AND (
                (j.outbox_status = 'FINALIZED' AND j.t_status IS DISTINCT FROM 'FINAL' AND j.updated_at < j.t_read_at)
             -- A row not moved for the grace (updated_at: a row nobody polls), or a SENT/ACKED row
             -- whose polls fail since the SCB's copy was read FINAL (every poll moves updated_at,
             -- so a row whose polls kept failing, on another scb_entry_id or a 404 from the
             -- single read, was never reported). A row merely waiting for its next scheduled poll
             -- is neither: its poll will see FINAL.
             OR (j.t_status = 'FINAL' AND j.outbox_status NOT IN ('FINALIZED', 'FAILED')
                 AND (j.updated_at <= now() - p_grace
                      OR j.outbox_status IN ('SENT', 'ACKED') AND greatest(j.sent_at, j.acked_at) <= now() - p_grace
                         AND j.poll_failures > 0 AND j.last_polled_at > j.t_read_at))
             -- a status outside the contract (REVERSED, say): the worker cannot move the row by it
             -- and keeps failing its polls; it is the SCB's word on our entry all the same
             OR coalesce(j.t_status, '') NOT IN ('ACCEPTED', 'POSTED', 'FINAL')))
      ) AS k(kind, fields, hit)
     WHERE (j.outbox_id IS NULL OR j.t_reference IS NULL OR j.outbox_status = 'FAILED' OR j.amount_differs
            OR cardinality(j.t_others) > 0
            OR cardinality(j.differing) > 0 OR j.block_hash IS DISTINCT FROM lower(j.t_hash)
            OR j.outbox_status = 'FINALIZED' AND j.t_status IS DISTINCT FROM 'FINAL' OR j.t_status = 'FINAL' AND j.outbox_status <> 'FINALIZED'
            OR coalesce(j.t_status, '') NOT IN ('ACCEPTED', 'POSTED', 'FINAL'))
       AND k.hit)
SELECT h.kind, coalesce(h.ledger_id, h.t_ledger), coalesce(h.reference_id, h.t_reference), h.seq, h.outbox_id, h.fields,
       CASE WHEN h.outbox_id IS NOT NULL THEN jsonb_build_object(
           'entry_id', h.entry_id, 'seq', h.seq, 'debit_account_id', h.debit_account_id, 'credit_account_id', h.credit_account_id,
           'amount', trim_scale(h.amount)::text, 'currency_code', h.currency_code, 'asset_type', h.asset_type,
           'transaction_type', h.transaction_type, 'timestamp_utc', h.timestamp_utc, 'block_hash', h.block_hash,
           'outbox_id', h.outbox_id, 'outbox_status', h.outbox_status, 'failure_reason', h.failure_reason)
           || CASE WHEN h.waived_for IS NOT NULL THEN jsonb_build_object('waived_for_discrepancy', h.waived_for) ELSE '{}'::jsonb END
           END,
       CASE WHEN h.t_reference IS NOT NULL THEN jsonb_build_object(
           'scb_entry_id', h.t_scb_entry_id, 'dbis_entry_id', h.t_entry_id, 'debit_account_id', h.t_debit,
           'credit_account_id', h.t_credit, 'amount', h.t_amount, 'currency_code', h.t_currency, 'asset_type', h.t_asset,
           'transaction_type', h.t_type, 'timestamp_utc', h.t_ts, 'block_hash', h.t_hash, 'status', h.t_status,
           'posted_at', h.t_posted_at)
           -- only when there are any: a discrepancy recorded before 019 has no such key, and its
           -- values must stay the same finding (dl_discrepancy_substance)
           || CASE WHEN cardinality(h.t_others) > 0 THEN jsonb_build_object('other_scb_entry_ids', to_jsonb(h.t_others))
                   ELSE '{}'::jsonb END END
  FROM hits h
$$;
REVOKE ALL ON FUNCTION reconcile_findings(text, text, interval, bigint, timestamptz) FROM PUBLIC;

-- What makes a finding the same finding (reconcile_finish): the fields that differ and both
-- sides' values, without what moves while nothing is wrong (our delivery's status and failure,
-- the SCB's status and posting time), except for a status_mismatch, whose substance the statuses
-- are. Times and amounts are compared as values, not as text: a timestamptz turned into JSON is
-- written in the session's TimeZone (a run under PGTZ=Asia/Tokyo must not see every resolved
-- finding as changed), and an SCB may write 11.00 as 11.0. A duplicate_on_scb is the set of the
-- SCB's entry ids (which copy a run keeps as the main one may change); the other kinds leave the
-- SCB's ids out (a second copy is a finding of its own, and which copy is the main one, or a
-- renumbering, changes no amount or hash).
CREATE OR REPLACE FUNCTION dl_discrepancy_values(p_v jsonb) RETURNS jsonb
LANGUAGE sql STABLE
RETURN CASE WHEN p_v IS NULL THEN NULL ELSE p_v
    || CASE WHEN p_v ? 'timestamp_utc' AND jsonb_typeof(p_v -> 'timestamp_utc') = 'string'
            THEN jsonb_build_object('timestamp_utc', extract(epoch FROM (p_v ->> 'timestamp_utc')::timestamptz)) ELSE '{}' END
    || CASE WHEN p_v ->> 'amount' ~ '^[0-9]{1,20}(\.[0-9]{1,18})?$'
            THEN jsonb_build_object('amount', (p_v ->> 'amount')::numeric) ELSE '{}' END END;
REVOKE ALL ON FUNCTION dl_discrepancy_values(jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_discrepancy_substance(p_kind text, p_fields text[], p_dbis jsonb, p_scb jsonb) RETURNS jsonb
LANGUAGE sql STABLE
RETURN CASE
    WHEN p_kind = 'duplicate_on_scb' THEN jsonb_build_array(to_jsonb(p_fields),
        (SELECT jsonb_agg(DISTINCT x ORDER BY x) FROM (
            SELECT p_scb ->> 'scb_entry_id' AS x
            UNION SELECT jsonb_array_elements_text(coalesce(p_scb -> 'other_scb_entry_ids', '[]'))) ids WHERE x IS NOT NULL))
    WHEN p_kind = 'status_mismatch' THEN jsonb_build_array(to_jsonb(p_fields),
        dl_discrepancy_values(p_dbis - 'failure_reason'),
        dl_discrepancy_values(p_scb - 'posted_at' - 'scb_entry_id' - 'other_scb_entry_ids'))
    ELSE jsonb_build_array(to_jsonb(p_fields),
        dl_discrepancy_values(p_dbis - 'outbox_status' - 'failure_reason'),
        dl_discrepancy_values(p_scb - 'status' - 'posted_at' - 'scb_entry_id' - 'other_scb_entry_ids')) END;
REVOKE ALL ON FUNCTION dl_discrepancy_substance(text, text[], jsonb, jsonb) FROM PUBLIC;

-- Closes run p_run: after a full read, forgets the SCB's entries it no longer lists and compares
-- everything; an incremental run compares only what changed (reconcile_candidates). Records every
-- finding once (a finding seen before is updated: last_seen_at, seen_count, both sides' values);
-- marks cleared the live findings of its scope this run did not see; returns the closed run.
-- TimeZone is fixed for the function: the values it records (timestamptz in JSON) are then
-- written alike whatever the caller's session says (PGTZ, the login's settings).
CREATE OR REPLACE FUNCTION reconcile_finish(p_run bigint, p_grace interval) RETURNS reconciliation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
    v_run     reconciliation_runs;
    v_found   integer;
    v_new     integer;
    v_cleared integer;
    v_ours    bigint;
    v_since   timestamptz;
BEGIN
    SELECT * INTO v_run FROM reconciliation_runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND OR v_run.status <> 'running' THEN
        RAISE EXCEPTION 'reconciliation run % is not running', p_run USING ERRCODE = 'DL009';
    END IF;
    IF p_grace IS NULL OR p_grace < interval '0' OR p_grace > interval '7 days' THEN
        RAISE EXCEPTION 'grace must be from 0 to 7 days' USING ERRCODE = 'DL009';
    END IF;
    IF v_run.full_read THEN
        DELETE FROM reconciliation_scb_entries WHERE scb_id = v_run.scb_id AND read_run_id <> p_run;
    ELSE
        -- Incremental: compare what changed since the previous good run started, less the larger of
        -- its grace and this one's (a row too young for it then is old enough now; 019 keeps each
        -- run's grace, before which a smaller grace now skipped what it had left) and a minute (a transaction that began before that
        -- run and committed after it compared); the first run compares all.
        SELECT r.started_at - greatest(p_grace, coalesce(r.grace, p_grace)) - interval '1 minute' INTO v_since FROM reconciliation_runs r
         WHERE r.scb_id = v_run.scb_id AND r.status = 'ok' AND r.id < p_run AND r.ledger_filter IS NULL
         ORDER BY r.id DESC LIMIT 1;
    END IF;
    -- A RESOLVED discrepancy never changes again. When this run sees its finding again:
    --   * with other values (the SCB altered the amount once more, rewrote the hash again): that
    --     is a new difference, whatever the resolution said of the old one, so the resolved row is
    --     cleared and the upsert below opens a fresh OPEN row (an 'explained' must not absorb what
    --     came after it, and the old values stay as the evidence it was resolved on);
    --   * with the same values: 'explained' and 'correct' stand (the difference was judged, or
    --     corrected by an entry of ours beside the SCB's copy, which stays as it is: reopening it
    --     would invite a second correction); a 'requeue' resolved before this run began (less the
    --     grace) did not work: cleared, and opened again.
    -- The findings are computed once, into a temporary table both statements read.
    DROP TABLE IF EXISTS pg_temp.reconcile_found;
    CREATE TEMP TABLE reconcile_found ON COMMIT DROP AS
        SELECT * FROM reconcile_findings(v_run.scb_id, v_run.ledger_filter, p_grace, p_run, v_since);
    UPDATE reconciliation_discrepancies d
       SET cleared_at = now(), cleared_run_id = p_run
      FROM pg_temp.reconcile_found f
     WHERE d.scb_id = v_run.scb_id AND d.cleared_at IS NULL AND d.status = 'RESOLVED'
       AND (d.ledger_id, d.reference_id, d.kind) = (f.ledger_id, f.reference_id, f.kind)
       AND (dl_discrepancy_substance(d.kind, d.fields, d.dbis, d.scb) IS DISTINCT FROM dl_discrepancy_substance(f.kind, f.fields, f.dbis, f.scb)
            OR (d.resolution = 'requeue' AND d.resolved_at < v_run.started_at - p_grace));
    WITH f AS (SELECT * FROM pg_temp.reconcile_found),
    up AS (
        INSERT INTO reconciliation_discrepancies AS d
            (ledger_id, scb_id, reference_id, kind, entry_seq, outbox_id, fields, dbis, scb, first_run_id, last_run_id)
        SELECT f.ledger_id, v_run.scb_id, f.reference_id, f.kind, f.entry_seq, f.outbox_id, f.fields, f.dbis, f.scb, p_run, p_run
          FROM f
        ON CONFLICT (ledger_id, scb_id, reference_id, kind) WHERE cleared_at IS NULL DO UPDATE
           SET last_run_id = p_run, last_seen_at = now(), seen_count = d.seen_count + 1,
               -- a RESOLVED row keeps the values it was resolved on (the same finding, above)
               entry_seq = CASE WHEN d.status = 'RESOLVED' THEN d.entry_seq ELSE EXCLUDED.entry_seq END,
               outbox_id = CASE WHEN d.status = 'RESOLVED' THEN d.outbox_id ELSE EXCLUDED.outbox_id END,
               fields = CASE WHEN d.status = 'RESOLVED' THEN d.fields ELSE EXCLUDED.fields END,
               dbis = CASE WHEN d.status = 'RESOLVED' THEN d.dbis ELSE EXCLUDED.dbis END,
               scb = CASE WHEN d.status = 'RESOLVED' THEN d.scb ELSE EXCLUDED.scb END
        RETURNING (xmax = 0) AS inserted)
    SELECT count(*), count(*) FILTER (WHERE inserted) INTO v_found, v_new FROM up;
    UPDATE reconciliation_discrepancies
       SET cleared_at = now(), cleared_run_id = p_run
     WHERE scb_id = v_run.scb_id AND cleared_at IS NULL AND last_run_id <> p_run
       AND (v_run.ledger_filter IS NULL OR ledger_id = v_run.ledger_filter);
    GET DIAGNOSTICS v_cleared = ROW_COUNT;
    IF v_since IS NULL THEN
        SELECT count(*) INTO v_ours FROM dual_ledger_outbox
         WHERE scb_id = v_run.scb_id AND (v_run.ledger_filter IS NULL OR ledger_id = v_run.ledger_filter);
    ELSE
        SELECT count(*) INTO v_ours FROM dual_ledger_outbox o
         WHERE o.scb_id = v_run.scb_id AND (o.ledger_id, o.reference_id) IN
               (SELECT c.ledger_id, c.reference_id FROM reconcile_candidates(v_run.scb_id, v_run.ledger_filter, p_run, v_since) c);
    END IF;
    UPDATE reconciliation_runs
       SET status = 'ok', finished_at = now(), found = v_found, new_found = v_new, cleared = v_cleared, dbis_rows_compared = v_ours,
           grace = p_grace
     WHERE id = p_run
    RETURNING * INTO v_run;
    RETURN v_run;
END $$;
REVOKE ALL ON FUNCTION reconcile_finish(bigint, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_finish(bigint, interval) TO dualledger_worker;

-- Closes a run that could not finish; its cursor is not used by the next run.
CREATE OR REPLACE FUNCTION reconcile_fail(p_run bigint, p_error text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE reconciliation_runs
       SET status = 'failed', finished_at = now(), error = left(coalesce(nullif(p_error, ''), 'failed'), 2000)
     WHERE id = p_run AND status = 'running';
END $$;
REVOKE ALL ON FUNCTION reconcile_fail(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_fail(bigint, text) TO dualledger_worker;

-- The last good run of each SCB (the schedule of `worker` and `serve --reconcile-every` asks which
-- are due).
CREATE OR REPLACE FUNCTION reconcile_last_ok_runs()
RETURNS TABLE (scb_id text, run_id bigint, started_at timestamptz, finished_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT DISTINCT ON (r.scb_id) r.scb_id, r.id, r.started_at, r.finished_at
      FROM reconciliation_runs r WHERE r.status = 'ok' AND r.ledger_filter IS NULL ORDER BY r.scb_id, r.id DESC
$$;
REVOKE ALL ON FUNCTION reconcile_last_ok_runs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_last_ok_runs() TO dualledger_worker;

-- Full runs (the whole list reread) of each SCB: when the last good one started, and when the last
-- one of any outcome did (the schedule's --reconcile-full-every; after a failed full run it goes on
-- with incremental ones for a while instead of retrying the full read every minute).
CREATE OR REPLACE FUNCTION reconcile_full_runs()
RETURNS TABLE (scb_id text, last_ok_started_at timestamptz, last_started_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT r.scb_id, max(r.started_at) FILTER (WHERE r.status = 'ok'), max(r.started_at)
      FROM reconciliation_runs r WHERE r.full_read AND r.ledger_filter IS NULL
     GROUP BY r.scb_id
$$;
REVOKE ALL ON FUNCTION reconcile_full_runs() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reconcile_full_runs() TO dualledger_worker;
