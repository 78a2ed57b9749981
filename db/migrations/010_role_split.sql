-- 010_role_split.sql
--
-- Database roles split by job (docs/security.md). Three NOLOGIN roles replace dualledger_app:
--
--   dualledger_api       what `dualledger serve` runs as: reads the ledger tables, the outbox and
--                        the API keys; writes nothing itself. Money moves only through the posting
--                        functions, ledgers, banks, accounts and keys only through the 009
--                        functions (which log the act). No privilege on the outbox beyond SELECT.
--   dualledger_worker    what `dualledger worker` runs as: reads the outbox and the banks; every
--                        outbox transition goes through the outbox_* functions below, which check
--                        the lease, record the attempt and refuse FINALIZED without the SCB's FINAL
--                        answer. It cannot read entries or accounts except what a claim returns.
--   dualledger_readonly  reporting: SELECT on the ledger tables, the outbox and the operator log,
--                        not on api_keys.
--
-- dualledger_app keeps existing (roles belong to the cluster, and login roles may still be granted
-- it) but loses every privilege in this database, so a database migrated through 006 earlier ends
-- in the same state as a new one. Every privilege of the four roles on the schema's objects is
-- revoked first and then granted exactly as listed at the end, so running this file again, or on
-- a database where someone granted more by hand, converges to the same state.
--
-- Outbox rows may become FINALIZED only with the SCB's FINAL answer recorded with them: a non-empty
-- scb_entry_id and scb_status 'FINAL' (trigger: DL111; CHECK constraint as the backstop). A
-- database holding FINALIZED rows without it stops here with the rows listed.
--
-- Every statement is idempotent: the file is also applied with plain psql
-- (scripts/run-migrations.sh, one transaction per file).

-- ---------------------------------------------------------------------------------------------
-- The roles. Created when the migrating user may (superuser or CREATEROLE); otherwise the
-- migration stops with the statements a DBA must run first.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    v_role    text;
    v_missing text[] := '{}';
BEGIN
    FOREACH v_role IN ARRAY ARRAY['dualledger_api', 'dualledger_worker', 'dualledger_readonly'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
            IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL; -- created concurrently by another migrating database of this cluster
                END;
            ELSE
                v_missing := v_missing || format('CREATE ROLE %I NOLOGIN;', v_role);
            END IF;
        END IF;
    END LOOP;
    IF cardinality(v_missing) > 0 THEN
        RAISE EXCEPTION 'roles missing and % may not create them: %', current_user, array_to_string(v_missing, ' ')
            USING HINT = 'ask a DBA to run ' || array_to_string(v_missing, ' ') || ' then run the migrations again',
                  ERRCODE = 'insufficient_privilege';
    END IF;
    -- The setup docs of 006 suggested a LOGIN role named dualledger_api (member of dualledger_app).
    -- Such a role now receives the API's grants itself, which works, but it is then both a login
    -- and a group: say so, so that the DBA can move to a separate login (docs/security.md).
    FOR v_role IN
        SELECT rolname FROM pg_roles
         WHERE rolname IN ('dualledger_api', 'dualledger_worker', 'dualledger_readonly')
           AND (rolcanlogin OR rolsuper OR rolcreaterole OR rolbypassrls)
    LOOP
        RAISE WARNING 'role % already exists and can log in or has attributes beyond NOLOGIN; it receives the grants of 010 itself', v_role
            USING HINT = 'create a separate LOGIN role that is a plain member of it, and ALTER ROLE ' || v_role
                         || ' NOLOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS (docs/security.md, "Login roles")';
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Revoke everything the four roles hold on this schema and its tables, columns, sequences and
-- functions (006 and 007 granted dualledger_app table, column, sequence and function privileges;
-- `dualledger migrate` granted it SELECT on its checksum table). Only objects that name one of the
-- roles in their ACL are touched. REVOKE on a table also revokes its column privileges.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    v_schema oid := (SELECT relnamespace FROM pg_class WHERE oid = 'ledger_entries'::regclass);
    v_roles  oid[];
    v_names  text;
    v_obj    record;
BEGIN
    SELECT array_agg(oid), string_agg(quote_ident(rolname), ', ') INTO v_roles, v_names
      FROM pg_roles WHERE rolname IN ('dualledger_app', 'dualledger_api', 'dualledger_worker', 'dualledger_readonly');
    IF v_roles IS NULL THEN
        RETURN;
    END IF;
    EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %s', (SELECT nspname FROM pg_namespace WHERE oid = v_schema), v_names);
    FOR v_obj IN
        SELECT c.oid::regclass AS rel, c.relkind
          FROM pg_class c
         WHERE c.relnamespace = v_schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
           AND (EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = ANY (v_roles))
                OR EXISTS (SELECT 1 FROM pg_attribute at, aclexplode(at.attacl) a
                            WHERE at.attrelid = c.oid AND at.attacl IS NOT NULL AND a.grantee = ANY (v_roles)))
    LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM %s',
                       CASE WHEN v_obj.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, v_obj.rel, v_names);
    END LOOP;
    FOR v_obj IN
        SELECT p.oid::regprocedure AS proc
          FROM pg_proc p
         WHERE p.pronamespace = v_schema
           AND EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = ANY (v_roles))
    LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM %s', v_obj.proc, v_names);
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------------------------
-- The SCB's answer, on every attempt that got one.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE dual_ledger_outbox_attempts ADD COLUMN IF NOT EXISTS scb_entry_id text NULL;
ALTER TABLE dual_ledger_outbox_attempts ADD COLUMN IF NOT EXISTS scb_status text NULL;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'dual_ledger_outbox_attempts'::regclass
                    AND conname = 'dual_ledger_outbox_attempts_scb_status_valid') THEN
        ALTER TABLE dual_ledger_outbox_attempts ADD CONSTRAINT dual_ledger_outbox_attempts_scb_status_valid
            CHECK (scb_status IS NULL OR scb_status IN ('ACCEPTED', 'POSTED', 'FINAL'));
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- FINALIZED only with the SCB's FINAL answer. The worker has always recorded scb_status 'FINAL'
-- and the SCB's scb_entry_id with a FINALIZED row; a row without them was finalized by hand (the
-- forgery of issue 6) or by an SCB that did not name its entry. Such rows are listed and the
-- migration stops: they must be checked with their SCB first.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    v_count integer;
    v_list  text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'dual_ledger_outbox'::regclass
                AND conname = 'dual_ledger_outbox_finalized_has_scb_answer') THEN
        RETURN;
    END IF;
    SELECT count(*), string_agg(format('row %s (%s/%s at %s: scb_entry_id %s, scb_status %s)', id, ledger_id, reference_id, scb_id,
                                       coalesce(quote_literal(scb_entry_id), 'NULL'), coalesce(quote_literal(scb_status), 'NULL')),
                                '; ' ORDER BY id) FILTER (WHERE rn <= 20)
      INTO v_count, v_list
      FROM (SELECT o.*, row_number() OVER (ORDER BY o.id) AS rn
              FROM dual_ledger_outbox o
             WHERE o.status = 'FINALIZED'
               AND (o.scb_entry_id IS NULL OR o.scb_entry_id = '' OR o.scb_status IS DISTINCT FROM 'FINAL')) x;
    IF v_count > 0 THEN
        RAISE EXCEPTION '% FINALIZED outbox row(s) have no FINAL answer of their SCB recorded (scb_entry_id and scb_status = ''FINAL''): %',
                        v_count, v_list || CASE WHEN v_count > 20 THEN '; ...' ELSE '' END
            USING ERRCODE = 'check_violation',
                  HINT = 'a row made FINALIZED by hand looks like this. Ask each SCB for the entry (GET /v1/entries/{reference_id}?ledger_id=). '
                         'As the owner, in one transaction with the state-machine trigger disabled '
                         '(ALTER TABLE dual_ledger_outbox DISABLE TRIGGER dual_ledger_outbox_state_machine; ... ENABLE TRIGGER ...): '
                         'where the SCB has it FINAL, set scb_entry_id to its id and scb_status = ''FINAL''; where it does not, '
                         'set status = ''QUEUED'', finalized_at = NULL so that it is delivered. Then run the migrations again; '
                         'nothing of 010 was applied.';
    END IF;
    ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dual_ledger_outbox_finalized_has_scb_answer
        CHECK (status <> 'FINALIZED' OR (scb_entry_id IS NOT NULL AND scb_entry_id <> '' AND scb_status = 'FINAL'));
END $$;

-- The state machine of 003, plus the same rule with its own SQLSTATE (DL111) and message, for
-- every writer including the owner.
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
    IF NEW.status = 'FINALIZED'
       AND (NEW.scb_entry_id IS NULL OR NEW.scb_entry_id = '' OR NEW.scb_status IS DISTINCT FROM 'FINAL') THEN
        RAISE EXCEPTION 'outbox row % cannot become FINALIZED without its SCB''s FINAL answer (scb_entry_id and scb_status FINAL)', OLD.id
            USING ERRCODE = 'DL111';
    END IF;
    IF NEW.attempts < OLD.attempts THEN
        RAISE EXCEPTION 'outbox row %: attempts cannot decrease', OLD.id USING ERRCODE = 'DL110';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

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

CREATE OR REPLACE FUNCTION dl_outbox_check_outcome(p_outcome text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_outcome IS NULL OR p_outcome !~ '^[a-z][a-z_]{0,63}$' THEN
        RAISE EXCEPTION 'attempt outcome % is not valid (lower case letters and _, at most 64)', coalesce(quote_literal(p_outcome), 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
END $$;

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

-- ---------------------------------------------------------------------------------------------
-- The outbox transitions (docs/state-machine.md). All SECURITY DEFINER with a fixed search_path;
-- EXECUTE is revoked from PUBLIC and granted to dualledger_worker below (outbox_requeue: to nobody,
-- it is the owner's). Each records the attempt it concludes in dual_ledger_outbox_attempts in the
-- same transaction; claims record theirs on the row (attempts, last_attempt_at), and the attempt row
-- is written when the attempt ends (finish, release, reap).
-- ---------------------------------------------------------------------------------------------

-- QUEUED -> PROCESSING: up to p_limit due rows of one SCB, oldest due first, under a lease of
-- p_worker; SKIP LOCKED lets any number of workers claim at once. Returns each row with the entry
-- it carries (the worker has no SELECT on ledger_entries).
CREATE OR REPLACE FUNCTION outbox_claim(p_scb_id text, p_worker text, p_lease interval, p_limit integer)
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
         WHERE d.status = 'QUEUED' AND d.scb_id = p_scb_id AND d.next_attempt_at <= now()
         ORDER BY d.next_attempt_at, d.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE dual_ledger_outbox o
           SET status = 'PROCESSING', locked_by = p_worker, lease_expires_at = now() + p_lease,
               attempts = o.attempts + 1, last_attempt_at = now()
          FROM due WHERE o.id = due.id
        RETURNING o.*)
    SELECT c.id, c.ledger_id, c.entry_seq, c.reference_id, c.scb_id, c.attempts, c.attempts_base, c.status, c.created_at,
           c.poll_failures, c.scb_entry_id, e.id, e.debit_account_id, e.credit_account_id, trim_scale(e.amount)::text,
           e.currency_code, e.asset_type, e.transaction_type, encode(e.block_hash, 'hex'), e.timestamp_utc
      FROM claimed c JOIN ledger_entries e ON e.ledger_id = c.ledger_id AND e.seq = c.entry_seq
     ORDER BY c.id;
END $$;

-- PROCESSING -> QUEUED | SENT | ACKED | FINALIZED | FAILED: the result of a delivery of a row that
-- p_worker holds under claim number p_attempt. The answer must match the new status
-- (dl_outbox_check_answer): FINALIZED only with the SCB's FINAL answer and its scb_entry_id.
-- Returns false, changing nothing but recording the attempt as 'lease_lost', when the row is no
-- longer held by that claim (the lease expired and the row was reaped or claimed again).
CREATE OR REPLACE FUNCTION outbox_finish(
    p_id bigint, p_worker text, p_attempt integer, p_status text, p_status_code integer, p_error text,
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
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row %', p_id USING ERRCODE = 'DL009';
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
         WHERE id = p_id;
    END IF;
    -- The attempt is recorded either way: a delivery whose lease was lost still reached the SCB.
    INSERT INTO dual_ledger_outbox_attempts
        (outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, error, scb_entry_id, scb_status)
    VALUES (p_id, p_attempt, p_worker, 'deliver', now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, CASE WHEN v_held THEN p_outcome ELSE 'lease_lost' END, v_error, v_entry, v_answer);
    RETURN v_held;
END $$;

-- PROCESSING -> QUEUED, due now, for rows p_worker holds under the given claim numbers (graceful
-- shutdown); each interrupted attempt is recorded. Returns how many were released.
CREATE OR REPLACE FUNCTION outbox_release(p_worker text, p_ids bigint[], p_attempts integer[]) RETURNS bigint
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
         WHERE o.id = h.h_id AND o.attempts = h.h_attempts AND o.status = 'PROCESSING' AND o.locked_by = p_worker
        RETURNING o.id, o.attempts, o.last_attempt_at)
    INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, outcome, error)
    SELECT r.id, r.attempts, p_worker, 'deliver', coalesce(r.last_attempt_at, now()), 'released',
           'interrupted by the worker''s shutdown; returned to QUEUED'
      FROM released r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

-- PROCESSING -> QUEUED (due now) for rows whose lease expired (their worker died or hung), or ->
-- FAILED once the row's attempt budget (p_max_attempts claims since its last requeue) is spent.
-- Any worker may reap for all; p_worker is recorded. Returns how many rows were reaped.
CREATE OR REPLACE FUNCTION outbox_reap(p_worker text, p_max_attempts integer) RETURNS bigint
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
         WHERE x.status = 'PROCESSING' AND x.lease_expires_at < now()
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
          FROM why WHERE o.id = why.id
        RETURNING o.id, o.attempts, why.spent, why.reason)
    INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, outcome, error)
    SELECT r.id, r.attempts, p_worker, 'lease_expired', now(), CASE WHEN r.spent THEN 'exhausted' ELSE 'lease_expired' END, r.reason
      FROM reaped r;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

-- Up to p_limit SENT/ACKED rows of one SCB whose next poll is due; their next poll moves to now +
-- p_every, so concurrent workers poll different rows and each row at most every p_every. Polls
-- hold no lease and change no status here; what the poll learns is recorded by outbox_advance,
-- outbox_record_poll_error or outbox_poll_succeeded.
CREATE OR REPLACE FUNCTION outbox_claim_for_poll(p_scb_id text, p_every interval, p_limit integer)
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
         WHERE d.status IN ('SENT', 'ACKED') AND d.scb_id = p_scb_id AND d.next_poll_at <= now()
         ORDER BY d.next_poll_at, d.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    polled AS (
        UPDATE dual_ledger_outbox o SET last_polled_at = now(), next_poll_at = now() + p_every
          FROM due WHERE o.id = due.id
        RETURNING o.*)
    SELECT c.id, c.ledger_id, c.entry_seq, c.reference_id, c.scb_id, c.attempts, c.attempts_base, c.status, c.created_at,
           c.poll_failures, c.scb_entry_id, e.id, e.debit_account_id, e.credit_account_id, trim_scale(e.amount)::text,
           e.currency_code, e.asset_type, e.transaction_type, encode(e.block_hash, 'hex'), e.timestamp_utc
      FROM polled c JOIN ledger_entries e ON e.ledger_id = c.ledger_id AND e.seq = c.entry_seq
     ORDER BY c.id;
END $$;

-- SENT -> ACKED | FINALIZED, ACKED -> FINALIZED after a poll or a callback. An answer that is not
-- a step forward (older, equal, or not a poll result at all) changes nothing and returns false.
-- A step forward needs the matching answer (FINALIZED: FINAL with the SCB's scb_entry_id), and an
-- scb_entry_id other than the one the SCB gave before is refused (DL111): the SCB would be
-- confirming a different entry.
CREATE OR REPLACE FUNCTION outbox_advance(
    p_id bigint, p_worker text, p_status text, p_status_code integer, p_scb_entry_id text, p_scb_status text,
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
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row %', p_id USING ERRCODE = 'DL009';
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
     WHERE id = p_id;
    INSERT INTO dual_ledger_outbox_attempts
        (outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, scb_entry_id, scb_status)
    VALUES (p_id, v_row.attempts, p_worker, p_kind, now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, p_outcome, v_entry, v_answer);
    RETURN true;
END $$;

-- A failed poll of a SENT/ACKED row: the row stays where it is, counts the failure and waits
-- p_delay (at least) before the next poll; the attempt is recorded. Returns whether the row was
-- still SENT/ACKED (the attempt is recorded either way).
CREATE OR REPLACE FUNCTION outbox_record_poll_error(
    p_id bigint, p_worker text, p_status_code integer, p_error text, p_delay interval, p_outcome text, p_took interval) RETURNS boolean
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
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row %', p_id USING ERRCODE = 'DL009';
    END IF;
    v_changed := v_row.status IN ('SENT', 'ACKED');
    IF v_changed THEN
        UPDATE dual_ledger_outbox
           SET last_error = v_error, last_status_code = v_code, poll_failures = poll_failures + 1,
               next_poll_at = greatest(next_poll_at, now() + p_delay)
         WHERE id = p_id;
    END IF;
    INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, error)
    VALUES (p_id, v_row.attempts, p_worker, 'poll', now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, p_outcome, v_error);
    RETURN v_changed;
END $$;

-- A poll answered without news after failed polls: the row's poll backoff starts over, and the
-- answer that ended the run of failures is recorded (outcome 'recovered'). Answers without news
-- of a row with no failed polls are not recorded (one per row every --poll-every would drown the
-- log). Returns whether the row's backoff was reset.
CREATE OR REPLACE FUNCTION outbox_poll_succeeded(
    p_id bigint, p_worker text, p_status_code integer, p_scb_status text, p_took interval) RETURNS boolean
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
    SELECT * INTO v_row FROM dual_ledger_outbox WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no outbox row %', p_id USING ERRCODE = 'DL009';
    END IF;
    IF v_row.status NOT IN ('SENT', 'ACKED') OR v_row.poll_failures = 0 THEN
        RETURN false;
    END IF;
    UPDATE dual_ledger_outbox SET poll_failures = 0 WHERE id = p_id;
    INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, status_code, outcome, scb_status)
    VALUES (p_id, v_row.attempts, p_worker, 'poll', now() - least(greatest(coalesce(p_took, interval '0'), interval '0'), interval '1 day'),
            v_code, 'recovered', v_answer);
    RETURN true;
END $$;

-- FAILED -> QUEUED, due now, with a fresh attempt budget: an operator act (`dualledger outbox
-- requeue`), logged in operator_actions in the same transaction. By id (p_id > 0), or every FAILED
-- row (of one SCB when p_scb_id is given); with all rows, those that failed on 409 (the SCB holds
-- another body under our idempotency key) are left alone unless p_include_conflicts. Each
-- requeued row gets an attempt row 'requeue' by the actor. Returns how many rows were requeued.
CREATE OR REPLACE FUNCTION outbox_requeue(
    p_actor text, p_id bigint, p_scb_id text, p_include_conflicts boolean, p_reason text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_id     bigint := coalesce(p_id, 0);
    v_scb    text := nullif(p_scb_id, '');
    v_reason text := nullif(btrim(coalesce(p_reason, '')), '');
    v_ids    bigint[];
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
    WITH requeued AS (
        UPDATE dual_ledger_outbox o
           SET status = 'QUEUED', next_attempt_at = now(), attempts_base = o.attempts,
               requeue_count = o.requeue_count + 1, failure_reason = NULL
         WHERE o.status = 'FAILED'
           AND (v_id = 0 OR o.id = v_id)
           AND (v_scb IS NULL OR o.scb_id = v_scb)
           AND (v_id <> 0 OR coalesce(p_include_conflicts, false) OR o.last_status_code IS DISTINCT FROM 409)
        RETURNING o.id, o.attempts),
    logged AS (
        INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, outcome)
        SELECT r.id, r.attempts, p_actor, 'requeue', now(), 'requeued' FROM requeued r
        RETURNING outbox_id)
    SELECT coalesce(array_agg(outbox_id ORDER BY outbox_id), '{}') INTO v_ids FROM logged;
    IF cardinality(v_ids) > 0 THEN
        PERFORM record_operator_action(
            p_actor, 'outbox.requeue',
            CASE WHEN v_id > 0 THEN 'outbox/' || v_id ELSE 'outbox/FAILED' || coalesce('/' || v_scb, '') END,
            jsonb_build_object('status', 'FAILED', 'ids', to_jsonb(v_ids), 'scb_id', v_scb,
                               'include_conflicts', coalesce(p_include_conflicts, false)),
            jsonb_build_object('status', 'QUEUED', 'requeued', cardinality(v_ids)),
            v_reason);
    END IF;
    RETURN cardinality(v_ids);
END $$;

REVOKE ALL ON FUNCTION outbox_claim(text, text, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_finish(bigint, text, integer, text, integer, text, interval, text, text, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_release(text, bigint[], integer[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_reap(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_claim_for_poll(text, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_advance(bigint, text, text, integer, text, text, text, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_record_poll_error(bigint, text, integer, text, interval, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_poll_succeeded(bigint, text, integer, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION outbox_requeue(text, bigint, text, boolean, text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- The grants, exactly (docs/security.md has them as a table). Nothing here is INSERT, UPDATE,
-- DELETE, TRUNCATE, REFERENCES or TRIGGER: every write goes through a SECURITY DEFINER function.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    v_schema text := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 'ledger_entries'::regclass);
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO dualledger_api, dualledger_worker, dualledger_readonly', v_schema);
    -- Nobody but the owner creates objects in the ledger's schema (PostgreSQL 15's default for
    -- public; older clusters upgraded in place still let PUBLIC create there, and a role that can
    -- create objects next to the ledger's can plant look-alikes). The services refuse a login role
    -- that may (internal/pg CheckServiceRole).
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', v_schema);
    -- The version tables: commands check that the schema is current before they run. The checksum
    -- table is `dualledger migrate`'s (internal/pg, which grants the same when it creates it).
    GRANT SELECT ON dualledger_schema_version TO dualledger_api, dualledger_worker, dualledger_readonly;
    IF to_regclass('dualledger_migration_checksums') IS NOT NULL THEN
        GRANT SELECT ON dualledger_migration_checksums TO dualledger_api, dualledger_worker, dualledger_readonly;
    END IF;
END $$;

-- dualledger_api: reads what the API serves and what it needs to authenticate (api_keys), and acts
-- only through functions. The operator log's head too, so that an audit can run as it.
GRANT SELECT ON currencies, ledgers, banks, bank_accounts, ledger_entries, dual_ledger_outbox, api_keys, operator_actions,
                operator_actions_head
    TO dualledger_api;
GRANT EXECUTE ON FUNCTION post_ledger_entries(text, jsonb, boolean) TO dualledger_api;
GRANT EXECUTE ON FUNCTION post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb) TO dualledger_api;
GRANT EXECUTE ON FUNCTION create_ledger(text, text) TO dualledger_api;
GRANT EXECUTE ON FUNCTION register_bank(text, text, text) TO dualledger_api;
GRANT EXECUTE ON FUNCTION create_account(text, text, text, text, text, text, numeric, boolean, jsonb) TO dualledger_api;
GRANT EXECUTE ON FUNCTION update_account(text, text, text, numeric, boolean, boolean, text, text) TO dualledger_api;
GRANT EXECUTE ON FUNCTION create_api_key(text, text, text, bytea, text[], text[], text, numeric) TO dualledger_api;
GRANT EXECUTE ON FUNCTION revoke_api_key(text, text, text) TO dualledger_api;

-- dualledger_worker: the outbox and the banks it delivers to; entries only through its claims.
GRANT SELECT ON banks, dual_ledger_outbox TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_claim(text, text, interval, integer) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_finish(bigint, text, integer, text, integer, text, interval, text, text, text, interval) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_release(text, bigint[], integer[]) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_reap(text, integer) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_claim_for_poll(text, interval, integer) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_advance(bigint, text, text, integer, text, text, text, text, interval) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_record_poll_error(bigint, text, integer, text, interval, text, interval) TO dualledger_worker;
GRANT EXECUTE ON FUNCTION outbox_poll_succeeded(bigint, text, integer, text, interval) TO dualledger_worker;

-- dualledger_readonly: reporting on the ledgers, the outbox and the operator log; not the keys.
GRANT SELECT ON currencies, ledgers, banks, bank_accounts, ledger_entries, dual_ledger_outbox, dual_ledger_outbox_attempts,
                operator_actions, operator_actions_head
    TO dualledger_readonly;
