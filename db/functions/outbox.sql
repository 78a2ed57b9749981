-- The outbox's claims and transitions (docs/state-machine.md), per (SCB, ledger) and by
-- (ledger_id, id) (docs/scale-out.md, "Worker claims per (SCB, ledger)"):
--
-- - the claims (outbox_claim, outbox_claim_for_poll) take the SCB and the ledger, and outbox_reap
--   and outbox_release one ledger: the worker asks which ledgers of an SCB have due rows
--   (internal/outbox, Store.DueLedgers) and claims per pair, sharing its free slots among them;
-- - every transition of one row (outbox_finish, outbox_advance, outbox_record_poll_error,
--   outbox_poll_succeeded, outbox_redeliver) names it by (ledger_id, id): the worker has each row's
--   ledger_id from its claim, discrepancy_resolve from the discrepancy's row; outbox_requeue
--   takes the ledger too, optional for the operator's requeue by id or of every FAILED row.
--
-- So each call reads and writes one ledger's rows, and a distributed PostgreSQL (Citus, by
-- ledger_id) routes it to the one shard that holds them. The indexes the claims walk lead with
-- (scb_id, ledger_id) (migration 016). Every attempt row carries its outbox row's ledger_id,
-- which 011 made part of the attempts' keys (foreign key (ledger_id, outbox_id) to the outbox's
-- (ledger_id, id)); it is named by the inserting statement itself, not filled by a trigger,
-- because Citus routes an INSERT to its shard by the distribution column before any trigger runs.
--
-- The signatures of 010 (claims without the ledger, transitions by id alone) are dropped here:
-- a worker binary older than this file fails its calls until it is restarted with the new one,
-- and the rows it held come back when their lease expires (outbox_reap), as after a crash.
--
-- Privileges: EXECUTE for dualledger_worker, except outbox_requeue, outbox_redeliver and
-- outbox_acknowledge (the owner's: `dualledger outbox requeue` and `acknowledge`,
-- discrepancy_resolve), as 010 granted them
-- (db/roles_test.go, wantExecute and TestOutboxSignatures).
DROP FUNCTION IF EXISTS outbox_claim(text, text, interval, integer);
DROP FUNCTION IF EXISTS outbox_claim_for_poll(text, interval, integer);
DROP FUNCTION IF EXISTS outbox_finish(bigint, text, integer, text, integer, text, interval, text, text, text, interval);
DROP FUNCTION IF EXISTS outbox_release(text, bigint[], integer[]);
DROP FUNCTION IF EXISTS outbox_reap(text, integer);
DROP FUNCTION IF EXISTS outbox_advance(bigint, text, text, integer, text, text, text, text, interval);
DROP FUNCTION IF EXISTS outbox_record_poll_error(bigint, text, integer, text, interval, text, interval);
DROP FUNCTION IF EXISTS outbox_poll_succeeded(bigint, text, integer, text, interval);
DROP FUNCTION IF EXISTS outbox_redeliver(text, bigint, text);
DROP FUNCTION IF EXISTS outbox_requeue(text, bigint, text, boolean, text);

-- QUEUED -> PROCESSING: up to p_limit due rows of one SCB in one ledger, oldest due first, under a
-- lease of p_worker; SKIP LOCKED lets any number of workers claim at once. Returns each row with
-- the entry it carries (the worker has no SELECT on ledger_entries). The claim writes no attempt
-- row: it counts the attempt on the row (attempts, last_attempt_at), and the attempt row is
-- written when the attempt ends (finish, release, reap).
CREATE OR REPLACE FUNCTION outbox_claim(p_scb_id text, p_ledger_id text, p_worker text, p_lease interval, p_limit integer)
RETURNS TABLE (id bigint, ledger_id text, entry_seq bigint, reference_id text, scb_id text, attempts integer,
               attempts_base integer, status text, created_at timestamptz, poll_failures integer, scb_entry_id text,
               entry_id bigint, debit_account_id text, credit_account_id text, amount text, currency_code text,
               asset_type text, transaction_type text, block_hash text, timestamp_utc timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    IF p_lease IS NULL OR p_lease <= interval '0' OR p_lease > interval '1 day' THEN
        RAISE EXCEPTION 'lease must be longer than 0 and at most 1 day' USING ERRCODE = 'DL009';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1024 THEN
        RAISE EXCEPTION 'claim limit must be from 1 to 1024' USING ERRCODE = 'DL009';
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT d.id FROM dual_ledger_outbox d
         WHERE d.status = 'QUEUED' AND d.scb_id = p_scb_id AND d.ledger_id = p_ledger_id AND d.next_attempt_at <= now()
         ORDER BY d.next_attempt_at, d.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE dual_ledger_outbox o
           SET status = 'PROCESSING', locked_by = p_worker, lease_expires_at = now() + p_lease,
               attempts = o.attempts + 1, last_attempt_at = now()
          FROM due WHERE o.ledger_id = p_ledger_id AND o.id = due.id
        RETURNING o.*)
    SELECT c.id, c.ledger_id, c.entry_seq, c.reference_id, c.scb_id, c.attempts, c.attempts_base, c.status, c.created_at,
           c.poll_failures, c.scb_entry_id, e.id, e.debit_account_id, e.credit_account_id, trim_scale(e.amount)::text,
           e.currency_code, e.asset_type, e.transaction_type, encode(e.block_hash, 'hex'), e.timestamp_utc
      FROM claimed c JOIN ledger_entries e ON e.ledger_id = c.ledger_id AND e.seq = c.entry_seq
     ORDER BY c.id;
END $$;
REVOKE ALL ON FUNCTION outbox_claim(text, text, text, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_claim(text, text, text, interval, integer) TO dualledger_worker;

-- Up to p_limit SENT/ACKED rows of one SCB in one ledger whose next poll is due; their next poll
-- moves to now + p_every, so concurrent workers poll different rows and each row at most every
-- p_every. Polls hold no lease and change no status here; what the poll learns is recorded by
-- outbox_advance, outbox_record_poll_error or outbox_poll_succeeded.
CREATE OR REPLACE FUNCTION outbox_claim_for_poll(p_scb_id text, p_ledger_id text, p_every interval, p_limit integer)
RETURNS TABLE (id bigint, ledger_id text, entry_seq bigint, reference_id text, scb_id text, attempts integer,
               attempts_base integer, status text, created_at timestamptz, poll_failures integer, scb_entry_id text,
               entry_id bigint, debit_account_id text, credit_account_id text, amount text, currency_code text,
               asset_type text, transaction_type text, block_hash text, timestamp_utc timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
#variable_conflict use_column
BEGIN
    IF p_every IS NULL OR p_every <= interval '0' OR p_every > interval '1 day' THEN
        RAISE EXCEPTION 'poll interval must be longer than 0 and at most 1 day' USING ERRCODE = 'DL009';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1024 THEN
        RAISE EXCEPTION 'claim limit must be from 1 to 1024' USING ERRCODE = 'DL009';
    END IF;
    RETURN QUERY
    WITH due AS (
        SELECT d.id FROM dual_ledger_outbox d
         WHERE d.status IN ('SENT', 'ACKED') AND d.scb_id = p_scb_id AND d.ledger_id = p_ledger_id AND d.next_poll_at <= now()
         ORDER BY d.next_poll_at, d.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    polled AS (
        UPDATE dual_ledger_outbox o SET last_polled_at = now(), next_poll_at = now() + p_every
          FROM due WHERE o.ledger_id = p_ledger_id AND o.id = due.id
        RETURNING o.*)
    SELECT c.id, c.ledger_id, c.entry_seq, c.reference_id, c.scb_id, c.attempts, c.attempts_base, c.status, c.created_at,
           c.poll_failures, c.scb_entry_id, e.id, e.debit_account_id, e.credit_account_id, trim_scale(e.amount)::text,
           e.currency_code, e.asset_type, e.transaction_type, encode(e.block_hash, 'hex'), e.timestamp_utc
      FROM polled c JOIN ledger_entries e ON e.ledger_id = c.ledger_id AND e.seq = c.entry_seq
     ORDER BY c.id;
END $$;
REVOKE ALL ON FUNCTION outbox_claim_for_poll(text, text, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_claim_for_poll(text, text, interval, integer) TO dualledger_worker;

-- PROCESSING -> QUEUED | SENT | ACKED | FINALIZED | FAILED: the result of a delivery of a row that
-- p_worker holds under claim number p_attempt. The answer must match the new status
-- (dl_outbox_check_answer): FINALIZED only with the SCB's FINAL answer and its scb_entry_id.
-- Returns false, changing nothing but recording the attempt as 'lease_lost', when the row is no
-- longer held by that claim (the lease expired and the row was reaped or claimed again).
CREATE OR REPLACE FUNCTION outbox_finish(
    p_ledger_id text, p_id bigint, p_worker text, p_attempt integer, p_status text, p_status_code integer, p_error text,
    p_delay interval, p_scb_entry_id text, p_scb_status text, p_outcome text, p_took interval) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row    dual_ledger_outbox;
    v_entry  text := nullif(p_scb_entry_id, '');
    v_answer text := nullif(p_scb_status, '');
    v_error  text := left(nullif(p_error, ''), 2000);
    v_code   integer := nullif(p_status_code, 0);
    v_held   boolean;
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    PERFORM dl_outbox_check_outcome(p_outcome);
    PERFORM dl_outbox_check_answer(p_status, v_entry, v_answer);
    IF p_status = 'FAILED' AND v_error IS NULL THEN
        RAISE EXCEPTION 'a FAILED row needs the reason' USING ERRCODE = 'DL009';
    END IF;
    IF v_code IS NOT NULL AND (v_code < 100 OR v_code > 999) THEN
        RAISE EXCEPTION 'status code % is not an HTTP status', v_code USING ERRCODE = 'DL009';
    END IF;
    IF p_delay IS NULL OR p_delay < interval '0' OR p_delay > interval '7 days' THEN
        RAISE EXCEPTION 'retry delay must be from 0 to 7 days' USING ERRCODE = 'DL009';
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE ledger_id = p_ledger_id AND id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row % in ledger %', p_id, coalesce(quote_literal(p_ledger_id), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    v_held := v_row.status = 'PROCESSING' AND v_row.locked_by = p_worker AND v_row.attempts = p_attempt;
    IF v_held THEN
        UPDATE dual_ledger_outbox
           SET status = p_status, locked_by = NULL, lease_expires_at = NULL,
               last_status_code = v_code, last_error = v_error,
               next_attempt_at = CASE WHEN p_status = 'QUEUED' THEN now() + p_delay ELSE next_attempt_at END,
               scb_entry_id = coalesce(v_entry, scb_entry_id),
               scb_status = coalesce(v_answer, scb_status),
               sent_at = CASE WHEN p_status IN ('SENT', 'ACKED', 'FINALIZED') THEN coalesce(sent_at, now()) ELSE sent_at END,
               acked_at = CASE WHEN p_status IN ('ACKED', 'FINALIZED') THEN coalesce(acked_at, now()) ELSE acked_at END,
               finalized_at = CASE WHEN p_status = 'FINALIZED' THEN now() ELSE finalized_at END,
               failed_at = CASE WHEN p_status = 'FAILED' THEN now() ELSE failed_at END,
               failure_reason = CASE WHEN p_status = 'FAILED' THEN v_error ELSE failure_reason END,
               next_poll_at = CASE WHEN p_status IN ('SENT', 'ACKED') THEN now() ELSE next_poll_at END
         WHERE ledger_id = p_ledger_id AND id = p_id;
    END IF;
    -- The attempt is recorded either way: a delivery whose lease was lost still reached the SCB.
    INSERT INTO dual_ledger_outbox_attempts
        (ledger_id, outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, error, scb_entry_id, scb_status)
    VALUES (v_row.ledger_id, p_id, p_attempt, p_worker, 'deliver', now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, CASE WHEN v_held THEN p_outcome ELSE 'lease_lost' END, v_error, v_entry, v_answer);
    RETURN v_held;
END $$;
REVOKE ALL ON FUNCTION outbox_finish(text, bigint, text, integer, text, integer, text, interval, text, text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_finish(text, bigint, text, integer, text, integer, text, interval, text, text, text, interval) TO dualledger_worker;

-- PROCESSING -> QUEUED, due now, for rows of one ledger that p_worker holds under the given claim
-- numbers (graceful shutdown: the worker calls it once per ledger it holds rows of); each
-- interrupted attempt is recorded. Returns how many were released.
CREATE OR REPLACE FUNCTION outbox_release(p_ledger_id text, p_worker text, p_ids bigint[], p_attempts integer[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    IF p_ids IS NULL OR p_attempts IS NULL OR cardinality(p_ids) <> cardinality(p_attempts) THEN
        RAISE EXCEPTION 'release needs one claim number per row' USING ERRCODE = 'DL009';
    END IF;
    WITH released AS (
        UPDATE dual_ledger_outbox o
           SET status = 'QUEUED', locked_by = NULL, lease_expires_at = NULL, next_attempt_at = now(),
               last_error = 'released by worker ' || p_worker || ' on shutdown'
          FROM unnest(p_ids, p_attempts) AS h(h_id, h_attempts)
         WHERE o.ledger_id = p_ledger_id AND o.id = h.h_id AND o.attempts = h.h_attempts
           AND o.status = 'PROCESSING' AND o.locked_by = p_worker
        RETURNING o.ledger_id, o.id, o.attempts, o.last_attempt_at)
    INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error)
    SELECT r.ledger_id, r.id, r.attempts, p_worker, 'deliver', coalesce(r.last_attempt_at, now()), 'released',
           'interrupted by the worker''s shutdown; returned to QUEUED'
      FROM released r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION outbox_release(text, text, bigint[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_release(text, text, bigint[], integer[]) TO dualledger_worker;

-- PROCESSING -> QUEUED (due now) for rows of one ledger whose lease expired (their worker died or
-- hung), or -> FAILED once the row's attempt budget (p_max_attempts claims since its last
-- requeue) is spent. Any worker may reap for all: it asks which ledgers have expired leases
-- (Store.ReapExpiredLeases) and reaps each; p_worker is recorded. Returns how many rows were reaped.
CREATE OR REPLACE FUNCTION outbox_reap(p_ledger_id text, p_worker text, p_max_attempts integer) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_n bigint;
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    IF p_max_attempts IS NULL OR p_max_attempts < 1 THEN
        RAISE EXCEPTION 'max attempts must be at least 1' USING ERRCODE = 'DL009';
    END IF;
    WITH expired AS (
        SELECT x.id, x.locked_by, x.attempts - x.attempts_base AS budget, x.attempts - x.attempts_base >= p_max_attempts AS spent
          FROM dual_ledger_outbox x
         WHERE x.status = 'PROCESSING' AND x.ledger_id = p_ledger_id AND x.lease_expires_at < now()
           FOR UPDATE SKIP LOCKED),
    why AS (
        SELECT e.id, e.spent,
               CASE WHEN e.spent
                    THEN 'gave up after ' || e.budget || ' attempts; last: the lease of worker ' || e.locked_by
                         || ' expired (the worker died or hung while delivering)'
                    ELSE 'lease of worker ' || e.locked_by || ' expired; returned to QUEUED' END AS reason
          FROM expired e),
    reaped AS (
        UPDATE dual_ledger_outbox o
           SET status = CASE WHEN why.spent THEN 'FAILED' ELSE 'QUEUED' END,
               locked_by = NULL, lease_expires_at = NULL, next_attempt_at = now(),
               last_error = why.reason,
               failed_at = CASE WHEN why.spent THEN now() ELSE o.failed_at END,
               failure_reason = CASE WHEN why.spent THEN why.reason ELSE o.failure_reason END
          FROM why WHERE o.ledger_id = p_ledger_id AND o.id = why.id
        RETURNING o.ledger_id, o.id, o.attempts, why.spent, why.reason)
    INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error)
    SELECT r.ledger_id, r.id, r.attempts, p_worker, 'lease_expired', now(), CASE WHEN r.spent THEN 'exhausted' ELSE 'lease_expired' END, r.reason
      FROM reaped r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;
REVOKE ALL ON FUNCTION outbox_reap(text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_reap(text, text, integer) TO dualledger_worker;

-- SENT -> ACKED | FINALIZED, ACKED -> FINALIZED after a poll or a callback. An answer that is not
-- a step forward (older, equal, or not a poll result at all) changes nothing and returns false.
-- A step forward needs the matching answer (FINALIZED: FINAL with the SCB's scb_entry_id), and an
-- scb_entry_id other than the one the SCB gave before is refused (DL111): the SCB would be
-- confirming a different entry.
CREATE OR REPLACE FUNCTION outbox_advance(
    p_ledger_id text, p_id bigint, p_worker text, p_status text, p_status_code integer, p_scb_entry_id text, p_scb_status text,
    p_kind text, p_outcome text, p_took interval) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row    dual_ledger_outbox;
    v_entry  text := nullif(p_scb_entry_id, '');
    v_answer text := nullif(p_scb_status, '');
    v_code   integer := nullif(p_status_code, 0);
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    PERFORM dl_outbox_check_outcome(p_outcome);
    IF p_kind IS NULL OR p_kind NOT IN ('poll', 'callback') THEN
        RAISE EXCEPTION 'an advance comes from a poll or a callback, not %', coalesce(quote_literal(p_kind), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    IF v_code IS NOT NULL AND (v_code < 100 OR v_code > 999) THEN
        RAISE EXCEPTION 'status code % is not an HTTP status', v_code USING ERRCODE = 'DL009';
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE ledger_id = p_ledger_id AND id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row % in ledger %', p_id, coalesce(quote_literal(p_ledger_id), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    IF NOT ((v_row.status = 'SENT' AND p_status IN ('ACKED', 'FINALIZED')) OR (v_row.status = 'ACKED' AND p_status = 'FINALIZED')) THEN
        RETURN false;
    END IF;
    PERFORM dl_outbox_check_answer(p_status, v_entry, v_answer);
    IF v_entry IS NOT NULL AND v_row.scb_entry_id IS NOT NULL AND v_entry <> v_row.scb_entry_id THEN
        RAISE EXCEPTION 'outbox row %: the SCB now names entry % but accepted it as %', p_id, quote_literal(left(v_entry, 60)),
                        quote_literal(left(v_row.scb_entry_id, 60))
            USING ERRCODE = 'DL111';
    END IF;
    UPDATE dual_ledger_outbox
       SET status = p_status,
           scb_entry_id = coalesce(v_entry, scb_entry_id),
           scb_status = v_answer,
           acked_at = coalesce(acked_at, now()),
           finalized_at = CASE WHEN p_status = 'FINALIZED' THEN now() ELSE finalized_at END,
           last_status_code = coalesce(v_code, last_status_code),
           poll_failures = 0
     WHERE ledger_id = p_ledger_id AND id = p_id;
    INSERT INTO dual_ledger_outbox_attempts
        (ledger_id, outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, scb_entry_id, scb_status)
    VALUES (v_row.ledger_id, p_id, v_row.attempts, p_worker, p_kind, now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, p_outcome, v_entry, v_answer);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION outbox_advance(text, bigint, text, text, integer, text, text, text, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_advance(text, bigint, text, text, integer, text, text, text, text, interval) TO dualledger_worker;

-- A failed poll of a SENT/ACKED row: the row stays where it is, counts the failure and waits
-- p_delay (at least) before the next poll; the attempt is recorded. Returns whether the row was
-- still SENT/ACKED (the attempt is recorded either way).
CREATE OR REPLACE FUNCTION outbox_record_poll_error(
    p_ledger_id text, p_id bigint, p_worker text, p_status_code integer, p_error text, p_delay interval, p_outcome text, p_took interval) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row     dual_ledger_outbox;
    v_error   text := left(nullif(p_error, ''), 2000);
    v_code    integer := nullif(p_status_code, 0);
    v_changed boolean;
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    PERFORM dl_outbox_check_outcome(p_outcome);
    IF v_error IS NULL THEN
        RAISE EXCEPTION 'a poll error needs its reason' USING ERRCODE = 'DL009';
    END IF;
    IF v_code IS NOT NULL AND (v_code < 100 OR v_code > 999) THEN
        RAISE EXCEPTION 'status code % is not an HTTP status', v_code USING ERRCODE = 'DL009';
    END IF;
    IF p_delay IS NULL OR p_delay < interval '0' OR p_delay > interval '7 days' THEN
        RAISE EXCEPTION 'poll delay must be from 0 to 7 days' USING ERRCODE = 'DL009';
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE ledger_id = p_ledger_id AND id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row % in ledger %', p_id, coalesce(quote_literal(p_ledger_id), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    v_changed := v_row.status IN ('SENT', 'ACKED');
    IF v_changed THEN
        UPDATE dual_ledger_outbox
           SET last_error = v_error, last_status_code = v_code, poll_failures = poll_failures + 1,
               next_poll_at = greatest(next_poll_at, now() + p_delay)
         WHERE ledger_id = p_ledger_id AND id = p_id;
    END IF;
    INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, error)
    VALUES (v_row.ledger_id, p_id, v_row.attempts, p_worker, 'poll', now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, p_outcome, v_error);
    RETURN v_changed;
END $$;
REVOKE ALL ON FUNCTION outbox_record_poll_error(text, bigint, text, integer, text, interval, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_record_poll_error(text, bigint, text, integer, text, interval, text, interval) TO dualledger_worker;

-- A poll answered without news after failed polls: the row's poll backoff starts over, and the
-- answer that ended the run of failures is recorded (outcome 'recovered'). Answers without news
-- of a row with no failed polls are not recorded (one per row every --poll-every would drown the
-- log). Returns whether the row's backoff was reset.
CREATE OR REPLACE FUNCTION outbox_poll_succeeded(
    p_ledger_id text, p_id bigint, p_worker text, p_status_code integer, p_scb_status text, p_took interval) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row    dual_ledger_outbox;
    v_answer text := nullif(p_scb_status, '');
    v_code   integer := nullif(p_status_code, 0);
BEGIN
    PERFORM dl_outbox_check_worker(p_worker);
    IF v_answer IS NOT NULL AND v_answer NOT IN ('ACCEPTED', 'POSTED', 'FINAL') THEN
        RAISE EXCEPTION 'scb_status % is not an SCB status', quote_literal(v_answer) USING ERRCODE = 'DL009';
    END IF;
    IF v_code IS NOT NULL AND (v_code < 100 OR v_code > 999) THEN
        RAISE EXCEPTION 'status code % is not an HTTP status', v_code USING ERRCODE = 'DL009';
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE ledger_id = p_ledger_id AND id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row % in ledger %', p_id, coalesce(quote_literal(p_ledger_id), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    IF v_row.status NOT IN ('SENT', 'ACKED') OR v_row.poll_failures = 0 THEN
        RETURN false;
    END IF;
    UPDATE dual_ledger_outbox SET poll_failures = 0 WHERE ledger_id = p_ledger_id AND id = p_id;
    INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, scb_status)
    VALUES (v_row.ledger_id, p_id, v_row.attempts, p_worker, 'poll', now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, 'recovered', v_answer);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION outbox_poll_succeeded(text, bigint, text, integer, text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_poll_succeeded(text, bigint, text, integer, text, interval) TO dualledger_worker;

-- FAILED -> QUEUED, due now, with a fresh attempt budget: an operator act (`dualledger outbox
-- requeue`), logged in operator_actions in the same transaction. By id (p_id > 0), or every FAILED
-- row (of one SCB when p_scb_id is given); with all rows, those that failed on 409 (the SCB holds
-- another body under our idempotency key) are left alone unless p_include_conflicts, and
-- acknowledged rows (outbox_acknowledge) always. A requeue clears the acknowledgement. p_ledger_id
-- (NULL or '' for every ledger) keeps the act to one ledger's rows: given with the id, the look-up
-- is by (ledger_id, id) like the worker's (discrepancy_resolve always gives it; the CLI's --id
-- alone asks every ledger, which on a distributed PostgreSQL is every shard: an operator's rare
-- act). Each requeued row gets an attempt row 'requeue' by the actor. Returns how many rows were
-- requeued.
CREATE OR REPLACE FUNCTION outbox_requeue(
    p_actor text, p_ledger_id text, p_id bigint, p_scb_id text, p_include_conflicts boolean, p_reason text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_ledger text := nullif(p_ledger_id, '');
    v_id     bigint := coalesce(p_id, 0);
    v_scb    text := nullif(p_scb_id, '');
    v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
    v_ids    bigint[];
    v_waived reconciliation_discrepancies;
BEGIN
    IF p_actor IS NULL OR p_actor !~ '^(key|cli|worker|system):.' OR length(p_actor) > 200 OR p_actor ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'actor % is not valid: key:<api key id>, cli:<user>, worker:<id> or system:<what>', coalesce(quote_literal(p_actor), 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
    IF v_reason IS NOT NULL AND (length(v_reason) > 1000 OR v_reason ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'reason must be at most 1000 characters without control characters' USING ERRCODE = 'DL009';
    END IF;
    IF v_id < 0 OR (v_id > 0 AND v_scb IS NOT NULL) THEN
        RAISE EXCEPTION 'requeue one row by id, or all FAILED rows (optionally of one SCB)' USING ERRCODE = 'DL009';
    END IF;
    -- A correction's delivery waived for the SCB it corrects (discrepancy_resolve, correct) is the
    -- difference that SCB already holds: sent, it would be booked there twice, and no run would
    -- notice (the discrepancy stays resolved, the correction matches). It is sent only once the
    -- SCB is back to the state before the difference, as a run read it (dl_correction_lapsed).
    IF v_id > 0 THEN
        SELECT (w.d).* INTO v_waived
          FROM dual_ledger_outbox o CROSS JOIN LATERAL dl_waived_corrections(o.scb_id, o.ledger_id) w
         WHERE o.id = v_id AND (v_ledger IS NULL OR o.ledger_id = v_ledger) AND w.outbox_id = o.id AND NOT dl_correction_lapsed(w.d)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'outbox row % is the correction of discrepancy % (%), not sent to % because % holds that state already: sent, it would be booked there twice. It is sent only when a reconciliation run finds % back at the state before the difference (the waiver lapses: a missing_on_scb finding, resolved requeue); if % changed its copy, run dualledger reconcile scb --scb % first',
                            v_id, v_waived.id, v_waived.kind, v_waived.scb_id, v_waived.scb_id, v_waived.scb_id, v_waived.scb_id, v_waived.scb_id
                USING ERRCODE = 'DL121';
        END IF;
    END IF;
    WITH requeued AS (
        UPDATE dual_ledger_outbox o
           SET status = 'QUEUED', next_attempt_at = now(), attempts_base = o.attempts,
               requeue_count = o.requeue_count + 1, failure_reason = NULL,
           acknowledged_at = NULL, acknowledged_by = NULL, acknowledged_reason = NULL
         WHERE o.status = 'FAILED'
           AND (v_ledger IS NULL OR o.ledger_id = v_ledger)
           AND (v_id = 0 OR o.id = v_id)
           AND (v_scb IS NULL OR o.scb_id = v_scb)
           AND (v_id <> 0 OR coalesce(p_include_conflicts, false) OR o.last_status_code IS DISTINCT FROM 409)
           -- An acknowledged row was given up on knowingly (outbox_acknowledge): only a requeue
           -- by its id, which clears the acknowledgement, sends it again.
           AND (v_id <> 0 OR o.acknowledged_at IS NULL)
        RETURNING o.ledger_id, o.id, o.attempts),
    logged AS (
        INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome)
        SELECT r.ledger_id, r.id, r.attempts, p_actor, 'requeue', now(), 'requeued' FROM requeued r
        RETURNING outbox_id)
    SELECT coalesce(array_agg(outbox_id ORDER BY outbox_id), '{}') INTO v_ids FROM logged;
    IF cardinality(v_ids) > 0 THEN
        PERFORM record_operator_action(
            p_actor, 'outbox.requeue',
            CASE WHEN v_id > 0 THEN 'outbox/' || v_id ELSE 'outbox/FAILED' || coalesce('/' || v_scb, '') END,
            jsonb_build_object('status', 'FAILED', 'ids', to_jsonb(v_ids), 'scb_id', v_scb, 'ledger_id', v_ledger,
                               'include_conflicts', coalesce(p_include_conflicts, false)),
            jsonb_build_object('status', 'QUEUED', 'requeued', cardinality(v_ids)),
            v_reason);
    END IF;
    RETURN cardinality(v_ids);
END $$;
REVOKE ALL ON FUNCTION outbox_requeue(text, text, bigint, text, boolean, text) FROM PUBLIC;

-- QUEUED rows that wait for their next attempt (the backoff, or an SCB's Retry-After, which may
-- push it up to 24 hours: docs/state-machine.md) made due now, once the cause is gone (the SCB is
-- back); so are SENT and ACKED rows whose next poll waits after failed polls (the same backoff and
-- Retry-After: one maintenance page could park every row polled during it for a day). The status
-- does not change and the attempt budget stays; one 'outbox.retry_now' row in the operator log
-- names the rows and when the last of them was due. One row by id, or every waiting row
-- (optionally of one SCB, of one ledger). Returns how many. EXECUTE for nobody but the owner, like
-- outbox_requeue.
CREATE OR REPLACE FUNCTION outbox_retry_now(p_actor text, p_ledger_id text, p_id bigint, p_scb_id text, p_reason text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_ledger text := nullif(p_ledger_id, '');
    v_id     bigint := coalesce(p_id, 0);
    v_scb    text := nullif(p_scb_id, '');
    v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
    v_ids    bigint[];
    v_polls  bigint[];
    v_latest timestamptz;
    v_poll   timestamptz;
BEGIN
    PERFORM dl_begin_act(p_actor, v_reason);  -- the actor and the reason, as every operator act checks them
    IF v_id < 0 OR (v_id > 0 AND v_scb IS NOT NULL) THEN
        RAISE EXCEPTION 'retry one row by id, or every waiting row (optionally of one SCB)' USING ERRCODE = 'DL009';
    END IF;
    SELECT coalesce(array_agg(w.id ORDER BY w.id) FILTER (WHERE w.status = 'QUEUED'), '{}'),
           coalesce(array_agg(w.id ORDER BY w.id) FILTER (WHERE w.status <> 'QUEUED'), '{}'),
           max(w.next_attempt_at) FILTER (WHERE w.status = 'QUEUED'), max(w.next_poll_at) FILTER (WHERE w.status <> 'QUEUED')
      INTO v_ids, v_polls, v_latest, v_poll
      FROM (SELECT o.id, o.status, o.next_attempt_at, o.next_poll_at
              FROM dual_ledger_outbox o
             WHERE (o.status = 'QUEUED' AND o.next_attempt_at > now()
                    OR o.status IN ('SENT', 'ACKED') AND o.poll_failures > 0 AND o.next_poll_at > now())
               AND (v_ledger IS NULL OR o.ledger_id = v_ledger)
               AND (v_id = 0 OR o.id = v_id)
               AND (v_scb IS NULL OR o.scb_id = v_scb)
               FOR UPDATE) w;
    IF cardinality(v_ids) + cardinality(v_polls) = 0 THEN
        RETURN 0;
    END IF;
    UPDATE dual_ledger_outbox o SET next_attempt_at = now()
     WHERE o.id = ANY (v_ids) AND o.status = 'QUEUED' AND (v_ledger IS NULL OR o.ledger_id = v_ledger);
    UPDATE dual_ledger_outbox o SET next_poll_at = now()
     WHERE o.id = ANY (v_polls) AND o.status IN ('SENT', 'ACKED') AND (v_ledger IS NULL OR o.ledger_id = v_ledger);
    -- The log says which rows had their next attempt moved (QUEUED) and which their next poll
    -- (SENT/ACKED after failed polls), with when the last of each was due.
    PERFORM record_operator_action(
        p_actor, 'outbox.retry_now',
        CASE WHEN v_id > 0 THEN 'outbox/' || v_id ELSE 'outbox/waiting' || coalesce('/' || v_scb, '') END,
        jsonb_build_object('queued_ids', to_jsonb(v_ids), 'latest_next_attempt_at', v_latest,
                           'polled_ids', to_jsonb(v_polls), 'latest_next_poll_at', v_poll,
                           'scb_id', v_scb, 'ledger_id', v_ledger),
        jsonb_build_object('due', 'now', 'queued', cardinality(v_ids), 'polled', cardinality(v_polls)),
        v_reason);
    RETURN cardinality(v_ids) + cardinality(v_polls);
END $$;
REVOKE ALL ON FUNCTION outbox_retry_now(text, text, bigint, text, text) FROM PUBLIC;

-- SENT | ACKED | FINALIZED -> QUEUED: the SCB lost an entry after acknowledging it (reconciliation
-- found it missing_on_scb, or not FINAL there), so it is delivered again, due now, with a fresh
-- attempt budget. The SCB's previous answer (scb_entry_id, scb_status) is cleared from the row, so
-- the new delivery's answer is recorded as it comes, and kept in the attempt row of kind
-- 'redeliver' (with the actor and the reason); one 'outbox.redeliver' row in the operator log.
-- The state-machine trigger allows these transitions only for the row named in this
-- transaction's dualledger.redeliver setting (migration 013). A QUEUED, PROCESSING or FAILED row
-- is refused (DL110): it is on its way, or `outbox requeue` is its repair. Returns true.
-- Called by discrepancy_resolve (resolution requeue); EXECUTE for nobody else (the owner).
CREATE OR REPLACE FUNCTION outbox_redeliver(p_actor text, p_ledger_id text, p_id bigint, p_reason text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_row    dual_ledger_outbox;
    v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
BEGIN
    IF p_actor IS NULL OR p_actor !~ '^(key|cli|worker|system):.' OR length(p_actor) > 200 OR p_actor ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'actor % is not valid: key:<api key id>, cli:<user>, worker:<id> or system:<what>', coalesce(quote_literal(p_actor), 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
    IF v_reason IS NULL OR length(v_reason) > 1000 OR v_reason ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'a redelivery needs its reason (at most 1000 characters without control characters)' USING ERRCODE = 'DL009';
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE ledger_id = p_ledger_id AND id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row % in ledger %', p_id, coalesce(quote_literal(p_ledger_id), 'NULL') USING ERRCODE = 'DL009';
    END IF;
    IF v_row.status NOT IN ('SENT', 'ACKED', 'FINALIZED') THEN
        RAISE EXCEPTION 'outbox row % is %: only a SENT, ACKED or FINALIZED row is redelivered', p_id, v_row.status
            USING ERRCODE = 'DL110',
                  HINT = 'a FAILED row is requeued (dualledger outbox requeue); a QUEUED or PROCESSING row is being delivered';
    END IF;
    PERFORM set_config('dualledger.redeliver', p_id::text, true);
    UPDATE dual_ledger_outbox
       SET status = 'QUEUED', next_attempt_at = now(), attempts_base = attempts, requeue_count = requeue_count + 1,
           scb_entry_id = NULL, scb_status = NULL, sent_at = NULL, acked_at = NULL, finalized_at = NULL,
           poll_failures = 0, last_status_code = NULL,
           -- Worded for every cause: the SCB lost the entry (missing_on_scb) or holds it short of
           -- FINAL (status_mismatch); the reason names the discrepancy and its kind.
           last_error = left('redelivery: the SCB had answered ' || coalesce(v_row.scb_status, v_row.status)
                             || ' and reconciliation found its copy missing or short of FINAL; ' || v_reason, 2000)
     WHERE ledger_id = p_ledger_id AND id = p_id;
    PERFORM set_config('dualledger.redeliver', '', true);
    INSERT INTO dual_ledger_outbox_attempts
        (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error, scb_entry_id, scb_status)
    VALUES (v_row.ledger_id, p_id, v_row.attempts, p_actor, 'redeliver', now(), 'redelivered',
            left('was ' || v_row.status || '; ' || v_reason, 2000), v_row.scb_entry_id, v_row.scb_status);
    PERFORM record_operator_action(
        p_actor, 'outbox.redeliver', 'outbox/' || p_id,
        jsonb_build_object('status', v_row.status, 'scb_id', v_row.scb_id, 'scb_entry_id', v_row.scb_entry_id,
                           'scb_status', v_row.scb_status, 'ledger_id', v_row.ledger_id, 'reference_id', v_row.reference_id),
        jsonb_build_object('status', 'QUEUED'),
        v_reason);
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION outbox_redeliver(text, text, bigint, text) FROM PUBLIC;

-- A FAILED row that will never be delivered, acknowledged by an operator with a reason (migration
-- 020; docs/state-machine.md, "Acknowledged failures"): the SCB holds another entry under our key
-- (409) or refuses ours for good, and the two sides settled it otherwise (a reversal and a new
-- entry here, or the SCB's own correction). The row stays FAILED; the acknowledgement takes it
-- out of the FAILED alerts and the sync lag, and outbox_requeue's bulk form leaves it alone. A
-- requeue by id undoes it. One row, by (ledger_id, id), or by id alone when p_ledger_id is NULL or
-- '' (ids come from one sequence); recorded as an attempt 'acknowledge' and an
-- 'outbox.acknowledge' row in the operator log. EXECUTE for nobody but the owner.
CREATE OR REPLACE FUNCTION outbox_acknowledge(p_actor text, p_ledger_id text, p_id bigint, p_reason text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_ledger text := nullif(p_ledger_id, '');
    v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
    v_row    dual_ledger_outbox;
BEGIN
    IF v_reason IS NULL THEN
        RAISE EXCEPTION 'acknowledging a FAILED row needs a reason: the incident, and how the two ledgers were reconciled'
            USING ERRCODE = 'DL009';
    END IF;
    PERFORM dl_begin_act(p_actor, v_reason);  -- the actor, and the reason's length and characters
    IF p_id IS NULL OR p_id <= 0 THEN
        RAISE EXCEPTION 'acknowledge one outbox row by its id (positive), got %', coalesce(p_id::text, 'NULL') USING ERRCODE = 'DL009';
    END IF;
    SELECT * INTO v_row FROM dual_ledger_outbox o
     WHERE o.id = p_id AND (v_ledger IS NULL OR o.ledger_id = v_ledger) FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row %', p_id || coalesce(' in ledger ' || quote_literal(v_ledger), '') USING ERRCODE = 'DL009';
    END IF;
    IF v_row.status <> 'FAILED' THEN
        RAISE EXCEPTION 'outbox row % is %: only a FAILED row is acknowledged', p_id, v_row.status
            USING ERRCODE = 'DL009', HINT = 'a row on its way to the SCB needs no acknowledgement';
    END IF;
    IF v_row.acknowledged_at IS NOT NULL THEN
        RAISE EXCEPTION 'outbox row % was acknowledged already, at % by %: %', p_id, v_row.acknowledged_at,
                        v_row.acknowledged_by, v_row.acknowledged_reason
            USING ERRCODE = 'DL009';
    END IF;
    PERFORM dl_outbox_acknowledge_row(p_actor, v_row, v_reason, 'acknowledged');
    PERFORM record_operator_action(
        p_actor, 'outbox.acknowledge', 'outbox/' || p_id,
        jsonb_build_object('status', 'FAILED', 'scb_id', v_row.scb_id, 'ledger_id', v_row.ledger_id,
                           'reference_id', v_row.reference_id, 'last_status_code', v_row.last_status_code,
                           'failure_reason', v_row.failure_reason),
        jsonb_build_object('status', 'FAILED', 'acknowledged', true),
        v_reason);
END $$;
REVOKE ALL ON FUNCTION outbox_acknowledge(text, text, bigint, text) FROM PUBLIC;

-- Marks the FAILED row p_row acknowledged by p_actor for p_reason (migration 020), with its
-- attempt 'acknowledge' / p_outcome ('acknowledged' by an operator, 'waived' for a correction's
-- delivery): the one place that writes an acknowledgement, for outbox_acknowledge and the
-- discrepancy resolutions (db/functions/discrepancies.sql). The row must be FAILED (the CHECK
-- refuses anything else).
CREATE OR REPLACE FUNCTION dl_outbox_acknowledge_row(p_actor text, p_row dual_ledger_outbox, p_reason text, p_outcome text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dual_ledger_outbox o
       SET acknowledged_at = now(), acknowledged_by = p_actor, acknowledged_reason = left(p_reason, 2000)
     WHERE o.ledger_id = p_row.ledger_id AND o.id = p_row.id;
    INSERT INTO dual_ledger_outbox_attempts (ledger_id, outbox_id, attempt, worker_id, kind, started_at, outcome, error)
    VALUES (p_row.ledger_id, p_row.id, p_row.attempts, p_actor, 'acknowledge', now(), p_outcome, left(p_reason, 2000));
END $$;
REVOKE ALL ON FUNCTION dl_outbox_acknowledge_row(text, dual_ledger_outbox, text, text) FROM PUBLIC;
