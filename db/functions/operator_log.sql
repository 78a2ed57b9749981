-- The operator log (migration 009): who acts (dl_begin_act in operator_acts.sql sets it for a
-- transaction), the hash-chained record of each administrative act, and the trigger that logs a
-- change of an administered table.

-- The actor of the act in progress: the administrative functions set it (transaction-local) and
-- the logging triggers read it; without it, the act was done in SQL by hand.
CREATE OR REPLACE FUNCTION dl_current_actor() RETURNS text
LANGUAGE sql STABLE
RETURN coalesce(nullif(current_setting('dualledger.actor', true), ''), 'sql:' || session_user);
REVOKE ALL ON FUNCTION dl_current_actor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_current_actor() TO PUBLIC;

CREATE OR REPLACE FUNCTION dl_current_reason() RETURNS text
LANGUAGE sql STABLE
RETURN nullif(current_setting('dualledger.reason', true), '');
REVOKE ALL ON FUNCTION dl_current_reason() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_current_reason() TO PUBLIC;

CREATE OR REPLACE FUNCTION dl_end_act() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('dualledger.actor', '', true);
    PERFORM set_config('dualledger.reason', '', true);
END $$;
REVOKE ALL ON FUNCTION dl_end_act() FROM PUBLIC;

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
REVOKE ALL ON FUNCTION record_operator_action(text,text,text,jsonb,jsonb,text) FROM PUBLIC;

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
                                                              'rate_limit', NEW.rate_limit, 'expires_at', NEW.expires_at),
                                           dl_current_reason());
        ELSE
            PERFORM record_operator_action(dl_current_actor(), 'key.revoke', NEW.id,
                                           jsonb_build_object('revoked', false), jsonb_build_object('revoked', true),
                                           coalesce(dl_current_reason(), NEW.revoke_reason));
        END IF;
    END CASE;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION dl_log_admin_change() FROM PUBLIC;
