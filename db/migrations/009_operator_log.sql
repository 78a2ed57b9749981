-- 009_operator_log.sql
--
-- Who did what, for every administrative act (docs/security.md, "Operator log"):
--
--   operator_actions   append-only and hash-chained like the entries: each row's hash is
--                      sha256(previous_hash || canonical(row)), the first row links to 32 zero
--                      bytes, operator_actions_head points at the last row. `dualledger audit`
--                      recomputes the chain.
--   api_keys           the API's bearer keys: only a sha256 of each token is stored.
--
-- The acts themselves go through SECURITY DEFINER functions (create_ledger, register_bank,
-- create_account, update_account, create_api_key, revoke_api_key), which name the actor. The log
-- rows are written by triggers on the tables, so an act done by any other path (the owner in psql)
-- is logged as well, with the actor 'sql:<login role>'. Grants to the service roles are in 010.
--
-- Also here: ledger ids can no longer contain ':'. The SCB Idempotency-Key is
-- '<ledger_id>:<reference_id>'; with a ':' in ledger ids, ledger 'L:X' reference '1' and ledger 'L'
-- reference 'X:1' would share a key.

-- ---------------------------------------------------------------------------------------------
-- Ledger ids without ':'. Checked first, so that a database holding such a ledger stops here with
-- the reason instead of failing on the constraint.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    v_bad text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'ledgers'::regclass AND conname = 'ledgers_id_no_colon') THEN
        SELECT string_agg(id, ', ' ORDER BY id) INTO v_bad FROM ledgers WHERE strpos(id, ':') > 0;
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION 'ledger ids may no longer contain '':'' and these ledgers do: %', v_bad
                USING ERRCODE = 'check_violation',
                      HINT = 'their SCB idempotency keys are ambiguous. Drain their outbox rows (dualledger outbox status), '
                             'move their accounts to a ledger without '':'' by postings, then ask for a migration that '
                             'retires them; nothing of 009 was applied.';
        END IF;
        ALTER TABLE ledgers ADD CONSTRAINT ledgers_id_no_colon CHECK (strpos(id, ':') = 0);
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- The operator log.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS operator_actions (
    seq           bigint      PRIMARY KEY CONSTRAINT operator_actions_seq_positive CHECK (seq > 0),
    at            timestamptz NOT NULL,
    -- Who asked: 'key:<api key id>' through the API, 'cli:<OS user>' from the command line,
    -- 'sql:<login role>' for a change made in SQL outside the functions.
    actor         text        NOT NULL CONSTRAINT operator_actions_actor_format
                              CHECK (actor ~ '^(key|cli|sql|worker|system):' AND length(actor) <= 200 AND actor !~ '[[:cntrl:]]'),
    -- The database roles the act ran under: the login role and the role it had SET (the same
    -- when none was set).
    db_login      text        NOT NULL,
    db_role       text        NOT NULL,
    action        text        NOT NULL CONSTRAINT operator_actions_action_format CHECK (action ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)+$'),
    target        text        NOT NULL CONSTRAINT operator_actions_target_format
                              CHECK (target <> '' AND length(target) <= 400 AND target !~ '[[:cntrl:]]'),
    before        jsonb       NULL,
    after         jsonb       NULL,
    reason        text        NULL CONSTRAINT operator_actions_reason_format
                              CHECK (reason IS NULL OR (reason <> '' AND length(reason) <= 1000 AND reason !~ '[[:cntrl:]]')),
    previous_hash bytea       NOT NULL CONSTRAINT operator_actions_previous_hash_length CHECK (octet_length(previous_hash) = 32),
    hash          bytea       NOT NULL CONSTRAINT operator_actions_hash_length CHECK (octet_length(hash) = 32)
);
CREATE INDEX IF NOT EXISTS operator_actions_at_idx ON operator_actions (at);

-- The chain head: one row, locked by every append, so the log is one serial order.
CREATE TABLE IF NOT EXISTS operator_actions_head (
    id   boolean PRIMARY KEY DEFAULT true CONSTRAINT operator_actions_head_single CHECK (id),
    seq  bigint  NOT NULL DEFAULT 0 CONSTRAINT operator_actions_head_seq_nonnegative CHECK (seq >= 0),
    hash bytea   NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                 CONSTRAINT operator_actions_head_hash_length CHECK (octet_length(hash) = 32)
);
-- Seeded before its guard trigger exists (below); a second run of this file finds the row.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM operator_actions_head) THEN
        INSERT INTO operator_actions_head (id) VALUES (true);
    END IF;
END $$;

-- Canonical encoding of a log row (docs/hash-chain.md, "Operator log"): fields joined by the ASCII
-- unit separator, which none can contain (text fields refuse control characters, jsonb's text
-- form escapes them); timestamps in UTC with microseconds; NULL as the empty string.
CREATE OR REPLACE FUNCTION operator_action_canonical(
    p_seq bigint, p_at timestamptz, p_actor text, p_db_login text, p_db_role text, p_action text,
    p_target text, p_before jsonb, p_after jsonb, p_reason text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN convert_to(concat_ws(E'\x1f', 'DLO1', p_seq::text,
                            to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                            p_actor, p_db_login, p_db_role, p_action, p_target,
                            coalesce(p_before::text, ''), coalesce(p_after::text, ''), coalesce(p_reason, '')), 'UTF8');

-- Appends one row. Called only from SECURITY DEFINER functions and triggers of the owner, in the
-- transaction of the act it records: nobody is granted EXECUTE.
CREATE OR REPLACE FUNCTION record_operator_action(
    p_actor text, p_action text, p_target text, p_before jsonb, p_after jsonb, p_reason text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_head   operator_actions_head;
    v_seq    bigint;
    v_at     timestamptz := now();
    v_login  text := session_user;
    v_role   text := coalesce(nullif(current_setting('role', true), 'none'), session_user);
    v_hash   bytea;
BEGIN
    SELECT * INTO v_head FROM operator_actions_head WHERE id FOR UPDATE;
    v_seq := v_head.seq + 1;
    v_hash := sha256(v_head.hash || operator_action_canonical(v_seq, v_at, p_actor, v_login, v_role, p_action,
                                                              p_target, p_before, p_after, nullif(p_reason, '')));
    PERFORM set_config('dualledger.oplog', 'on', true);
    INSERT INTO operator_actions (seq, at, actor, db_login, db_role, action, target, before, after, reason, previous_hash, hash)
    VALUES (v_seq, v_at, p_actor, v_login, v_role, p_action, p_target, p_before, p_after, nullif(p_reason, ''), v_head.hash, v_hash);
    UPDATE operator_actions_head SET seq = v_seq, hash = v_hash WHERE id;
    PERFORM set_config('dualledger.oplog', '', true);
    RETURN v_seq;
END $$;

-- The log is append-only for everyone; rows and the head are written only by record_operator_action.
CREATE OR REPLACE FUNCTION dl_require_oplog_function() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('dualledger.oplog', true), '') <> 'on' THEN
        RAISE EXCEPTION '% of % outside record_operator_action is not allowed', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'DL101', HINT = 'the operator log is written by the administrative functions';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS operator_actions_no_change ON operator_actions;
CREATE TRIGGER operator_actions_no_change BEFORE UPDATE OR DELETE ON operator_actions
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('the operator log is append-only');
DROP TRIGGER IF EXISTS operator_actions_no_truncate ON operator_actions;
CREATE TRIGGER operator_actions_no_truncate BEFORE TRUNCATE ON operator_actions
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('the operator log is append-only');
DROP TRIGGER IF EXISTS operator_actions_insert_guard ON operator_actions;
CREATE TRIGGER operator_actions_insert_guard BEFORE INSERT ON operator_actions
    FOR EACH STATEMENT EXECUTE FUNCTION dl_require_oplog_function();
DROP TRIGGER IF EXISTS operator_actions_head_guard ON operator_actions_head;
CREATE TRIGGER operator_actions_head_guard BEFORE INSERT OR UPDATE ON operator_actions_head
    FOR EACH STATEMENT EXECUTE FUNCTION dl_require_oplog_function();
DROP TRIGGER IF EXISTS operator_actions_head_no_delete ON operator_actions_head;
CREATE TRIGGER operator_actions_head_no_delete BEFORE DELETE OR TRUNCATE ON operator_actions_head
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('the operator log is append-only');

-- The actor of the act in progress: the administrative functions set it (transaction-local) and
-- the logging triggers read it; without it, the act was done in SQL by hand.
CREATE OR REPLACE FUNCTION dl_current_actor() RETURNS text
LANGUAGE sql STABLE
RETURN coalesce(nullif(current_setting('dualledger.actor', true), ''), 'sql:' || session_user);

CREATE OR REPLACE FUNCTION dl_current_reason() RETURNS text
LANGUAGE sql STABLE
RETURN nullif(current_setting('dualledger.reason', true), '');

-- Sets the actor (and reason) of the act the calling function is about to perform. Refuses what
-- the log would refuse, with a message the caller can act on.
CREATE OR REPLACE FUNCTION dl_begin_act(p_actor text, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_actor IS NULL OR p_actor !~ '^(key|cli|worker|system):.' OR length(p_actor) > 200 OR p_actor ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'actor % is not valid: key:<api key id>, cli:<user>, worker:<id> or system:<what>', coalesce(p_actor, 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
    IF p_reason IS NOT NULL AND (length(p_reason) > 1000 OR p_reason ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'reason must be at most 1000 characters without control characters' USING ERRCODE = 'DL009';
    END IF;
    PERFORM set_config('dualledger.actor', p_actor, true);
    PERFORM set_config('dualledger.reason', coalesce(p_reason, ''), true);
END $$;

CREATE OR REPLACE FUNCTION dl_end_act() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('dualledger.actor', '', true);
    PERFORM set_config('dualledger.reason', '', true);
END $$;

-- ---------------------------------------------------------------------------------------------
-- Logging triggers: ledgers and banks created, accounts created or changed (status, overdraft
-- limit, bank), API keys created or revoked. They fire for every writer.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_account_json(a bank_accounts) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object('bank_id', a.bank_id, 'currency_code', a.currency_code, 'asset_type', a.asset_type,
                          'overdraft_limit', coalesce(trim_scale(a.overdraft_limit)::text, 'unlimited'),
                          'status', a.status);

CREATE OR REPLACE FUNCTION dl_log_admin_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'ledgers' THEN
        PERFORM record_operator_action(dl_current_actor(), 'ledger.create', NEW.id, NULL, jsonb_build_object('id', NEW.id), dl_current_reason());
    WHEN 'banks' THEN
        PERFORM record_operator_action(dl_current_actor(), 'bank.register', NEW.id, NULL,
                                       jsonb_build_object('id', NEW.id, 'name', NEW.name), dl_current_reason());
    WHEN 'bank_accounts' THEN
        IF TG_OP = 'INSERT' THEN
            PERFORM record_operator_action(dl_current_actor(), 'account.create', NEW.ledger_id || '/' || NEW.id, NULL,
                                           dl_account_json(NEW), dl_current_reason());
        ELSE
            PERFORM record_operator_action(dl_current_actor(), 'account.update', NEW.ledger_id || '/' || NEW.id,
                                           dl_account_json(OLD), dl_account_json(NEW), dl_current_reason());
        END IF;
    WHEN 'api_keys' THEN
        IF TG_OP = 'INSERT' THEN
            PERFORM record_operator_action(dl_current_actor(), 'key.create', NEW.id, NULL,
                                           jsonb_build_object('name', NEW.name, 'scopes', to_jsonb(NEW.scopes),
                                                              'ledgers', to_jsonb(NEW.ledgers), 'bank_id', NEW.bank_id,
                                                              'rate_limit', NEW.rate_limit), dl_current_reason());
        ELSE
            PERFORM record_operator_action(dl_current_actor(), 'key.revoke', NEW.id,
                                           jsonb_build_object('revoked', false), jsonb_build_object('revoked', true),
                                           coalesce(dl_current_reason(), NEW.revoke_reason));
        END IF;
    END CASE;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS ledgers_log ON ledgers;
CREATE TRIGGER ledgers_log AFTER INSERT ON ledgers FOR EACH ROW EXECUTE FUNCTION dl_log_admin_change();
DROP TRIGGER IF EXISTS banks_log ON banks;
CREATE TRIGGER banks_log AFTER INSERT ON banks FOR EACH ROW EXECUTE FUNCTION dl_log_admin_change();
DROP TRIGGER IF EXISTS bank_accounts_log_insert ON bank_accounts;
CREATE TRIGGER bank_accounts_log_insert AFTER INSERT ON bank_accounts FOR EACH ROW EXECUTE FUNCTION dl_log_admin_change();
-- Only the columns an operator changes; the posting functions' balance UPDATE lists none of them,
-- so the hot path never fires it.
DROP TRIGGER IF EXISTS bank_accounts_log_update ON bank_accounts;
CREATE TRIGGER bank_accounts_log_update AFTER UPDATE OF status, overdraft_limit, bank_id ON bank_accounts
    FOR EACH ROW
    WHEN ((OLD.status, OLD.overdraft_limit, OLD.bank_id) IS DISTINCT FROM (NEW.status, NEW.overdraft_limit, NEW.bank_id))
    EXECUTE FUNCTION dl_log_admin_change();

-- Banks are never deleted (accounts and outbox rows name them).
DROP TRIGGER IF EXISTS banks_no_delete ON banks;
CREATE TRIGGER banks_no_delete BEFORE DELETE OR TRUNCATE ON banks
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification();

-- ---------------------------------------------------------------------------------------------
-- API keys. The token is shown once when the key is created; only sha256(token) is kept. A key is
-- never deleted or changed, only revoked (once).
-- ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS api_keys (
    id            text        PRIMARY KEY CONSTRAINT api_keys_id_format CHECK (id ~ '^key_[a-z2-7]{16}$'),
    name          text        NOT NULL CONSTRAINT api_keys_name_format
                              CHECK (name <> '' AND length(name) <= 100 AND name !~ '[[:cntrl:]]'),
    token_hash    bytea       NOT NULL CONSTRAINT api_keys_token_hash_key UNIQUE
                              CONSTRAINT api_keys_token_hash_length CHECK (octet_length(token_hash) = 32),
    scopes        text[]      NOT NULL CONSTRAINT api_keys_scopes_valid
                              CHECK (cardinality(scopes) > 0 AND array_position(scopes, NULL) IS NULL
                                     AND scopes <@ ARRAY['read', 'post', 'settle', 'accounts', 'banks', 'admin']),
    -- The ledgers the key may touch; empty: all.
    ledgers       text[]      NOT NULL DEFAULT '{}' CONSTRAINT api_keys_ledgers_valid
                              CHECK (array_position(ledgers, NULL) IS NULL AND cardinality(ledgers) <= 100),
    -- A member bank's key: it moves money only out of that bank's accounts and reads only them.
    bank_id       text        NULL REFERENCES banks (id),
    -- Requests per second this key may make (a token bucket with a burst of the same size); NULL: no limit.
    rate_limit    numeric(12,3) NULL CONSTRAINT api_keys_rate_limit_positive CHECK (rate_limit IS NULL OR rate_limit > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL,
    revoked_at    timestamptz NULL,
    revoked_by    text        NULL,
    revoke_reason text        NULL,
    CONSTRAINT api_keys_revocation_complete CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

CREATE OR REPLACE FUNCTION dl_guard_api_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'API keys are never deleted: revoke them (dualledger keys revoke ID)' USING ERRCODE = 'DL100';
    END IF;
    IF (NEW.id, NEW.name, NEW.token_hash, NEW.scopes, NEW.ledgers, NEW.bank_id, NEW.rate_limit, NEW.created_at, NEW.created_by)
       IS DISTINCT FROM (OLD.id, OLD.name, OLD.token_hash, OLD.scopes, OLD.ledgers, OLD.bank_id, OLD.rate_limit, OLD.created_at, OLD.created_by) THEN
        RAISE EXCEPTION 'an API key is never changed: create a new one and revoke this one' USING ERRCODE = 'DL100';
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'API key % is already revoked', OLD.id USING ERRCODE = 'DL100';
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS api_keys_guard ON api_keys;
CREATE TRIGGER api_keys_guard BEFORE UPDATE OR DELETE ON api_keys FOR EACH ROW EXECUTE FUNCTION dl_guard_api_keys();
DROP TRIGGER IF EXISTS api_keys_no_truncate ON api_keys;
CREATE TRIGGER api_keys_no_truncate BEFORE TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION dl_refuse_modification('API keys are never deleted: revoke them');
DROP TRIGGER IF EXISTS api_keys_log ON api_keys;
CREATE TRIGGER api_keys_log AFTER INSERT OR UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION dl_log_admin_change();

-- ---------------------------------------------------------------------------------------------
-- The administrative functions. Each names its actor, performs one act, and leaves the logging to
-- the triggers above (same transaction). Validation stays with the table constraints; the Go
-- callers check formats first to give field-level messages.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION create_ledger(p_actor text, p_id text) RETURNS ledgers
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v ledgers;
BEGIN
    PERFORM dl_begin_act(p_actor, NULL);
    INSERT INTO ledgers (id) VALUES (p_id) RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;

CREATE OR REPLACE FUNCTION register_bank(p_actor text, p_id text, p_name text) RETURNS banks
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v banks;
BEGIN
    PERFORM dl_begin_act(p_actor, NULL);
    INSERT INTO banks (id, name) VALUES (p_id, p_name) RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;

-- p_unlimited: no overdraft limit (NULL in the table, issuance accounts); otherwise
-- p_overdraft_limit (NULL = 0). Whether the caller may open such an account is the caller's rule
-- (the API allows a non-zero limit only to admin keys).
CREATE OR REPLACE FUNCTION create_account(
    p_actor text, p_ledger_id text, p_id text, p_currency_code text, p_asset_type text, p_bank_id text,
    p_overdraft_limit numeric, p_unlimited boolean, p_metadata jsonb) RETURNS bank_accounts
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v bank_accounts;
BEGIN
    PERFORM dl_begin_act(p_actor, NULL);
    INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit, metadata)
    VALUES (p_ledger_id, p_id, p_bank_id, p_currency_code, p_asset_type,
            CASE WHEN coalesce(p_unlimited, false) THEN NULL ELSE coalesce(p_overdraft_limit, 0) END,
            coalesce(p_metadata, '{}'::jsonb))
    RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;

-- Changes an account's overdraft limit (when p_set_overdraft: p_unlimited or p_overdraft_limit)
-- and/or status (when p_status is not NULL). A reason is required. Postings racing the change are
-- refused with 40001 and retried by the posting module, so none moves money past the new rule.
CREATE OR REPLACE FUNCTION update_account(
    p_actor text, p_ledger_id text, p_id text, p_overdraft_limit numeric, p_unlimited boolean,
    p_set_overdraft boolean, p_status text, p_reason text) RETURNS bank_accounts
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v bank_accounts;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required to change an account' USING ERRCODE = 'DL009';
    END IF;
    IF NOT coalesce(p_set_overdraft, false) AND p_status IS NULL THEN
        RAISE EXCEPTION 'nothing to change: give an overdraft limit or a status' USING ERRCODE = 'DL009';
    END IF;
    PERFORM dl_begin_act(p_actor, p_reason);
    SELECT * INTO v FROM bank_accounts WHERE ledger_id = p_ledger_id AND id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM ledgers WHERE id = p_ledger_id) THEN
            RAISE EXCEPTION 'unknown ledger %', p_ledger_id USING ERRCODE = 'DL003';
        END IF;
        RAISE EXCEPTION 'unknown account % in ledger %', p_id, p_ledger_id USING ERRCODE = 'DL002';
    END IF;
    UPDATE bank_accounts
       SET overdraft_limit = CASE WHEN NOT coalesce(p_set_overdraft, false) THEN overdraft_limit
                                  WHEN coalesce(p_unlimited, false) THEN NULL
                                  ELSE coalesce(p_overdraft_limit, 0) END,
           status = coalesce(p_status, status),
           updated_at = now()
     WHERE ledger_id = p_ledger_id AND id = p_id
    RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;

CREATE OR REPLACE FUNCTION create_api_key(
    p_actor text, p_id text, p_name text, p_token_hash bytea, p_scopes text[], p_ledgers text[], p_bank_id text,
    p_rate_limit numeric) RETURNS api_keys
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v api_keys;
BEGIN
    PERFORM dl_begin_act(p_actor, NULL);
    INSERT INTO api_keys (id, name, token_hash, scopes, ledgers, bank_id, rate_limit, created_by)
    VALUES (p_id, p_name, p_token_hash, p_scopes, coalesce(p_ledgers, '{}'), p_bank_id, p_rate_limit, p_actor)
    RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;

CREATE OR REPLACE FUNCTION revoke_api_key(p_actor text, p_id text, p_reason text) RETURNS api_keys
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v api_keys;
BEGIN
    PERFORM dl_begin_act(p_actor, nullif(btrim(coalesce(p_reason, '')), ''));
    SELECT * INTO v FROM api_keys WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown API key %', p_id USING ERRCODE = 'DL014';
    END IF;
    IF v.revoked_at IS NOT NULL THEN
        PERFORM dl_end_act();
        RETURN v; -- revoking twice changes nothing and logs nothing
    END IF;
    UPDATE api_keys SET revoked_at = now(), revoked_by = p_actor, revoke_reason = nullif(btrim(coalesce(p_reason, '')), '')
     WHERE id = p_id RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;

-- Nobody but the owner may call these until 010 grants them to the service roles.
REVOKE ALL ON FUNCTION record_operator_action(text, text, text, jsonb, jsonb, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION create_ledger(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION register_bank(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION create_account(text, text, text, text, text, text, numeric, boolean, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION update_account(text, text, text, numeric, boolean, boolean, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION create_api_key(text, text, text, bytea, text[], text[], text, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION revoke_api_key(text, text, text) FROM PUBLIC;
-- Helpers of the functions above, which run as the owner: nobody else calls them.
REVOKE ALL ON FUNCTION dl_begin_act(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dl_end_act() FROM PUBLIC;
