-- Administrative acts as SECURITY DEFINER functions taking the actor (migrations 009 and 010):
-- ledgers, banks, accounts, API keys. Each records itself in the operator log.

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
REVOKE ALL ON FUNCTION create_ledger(text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_ledger(text,text) TO dualledger_api;

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
REVOKE ALL ON FUNCTION register_bank(text,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION register_bank(text,text,text) TO dualledger_api;

-- ---------------------------------------------------------------------------------------------
-- Logging triggers: ledgers and banks created, accounts created or changed (status, overdraft
-- limit, bank), API keys created or revoked. They fire for every writer.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_account_json(a bank_accounts) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN jsonb_build_object('bank_id', a.bank_id, 'currency_code', a.currency_code, 'asset_type', a.asset_type,
                          'overdraft_limit', coalesce(trim_scale(a.overdraft_limit)::text, 'unlimited'),
                          'status', a.status);
REVOKE ALL ON FUNCTION dl_account_json(bank_accounts) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_account_json(bank_accounts) TO PUBLIC;

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
REVOKE ALL ON FUNCTION create_account(text,text,text,text,text,text,numeric,boolean,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_account(text,text,text,text,text,text,numeric,boolean,jsonb) TO dualledger_api;

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
REVOKE ALL ON FUNCTION update_account(text,text,text,numeric,boolean,boolean,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION update_account(text,text,text,numeric,boolean,boolean,text,text) TO dualledger_api;

-- p_expires_at (018): when the key stops working, NULL for never; the CHECK
-- api_keys_expires_after_creation refuses a time that is not after now.
DROP FUNCTION IF EXISTS create_api_key(text,text,text,bytea,text[],text[],text,numeric);
CREATE OR REPLACE FUNCTION create_api_key(
    p_actor text, p_id text, p_name text, p_token_hash bytea, p_scopes text[], p_ledgers text[], p_bank_id text,
    p_rate_limit numeric, p_expires_at timestamptz DEFAULT NULL) RETURNS api_keys
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v api_keys;
BEGIN
    PERFORM dl_begin_act(p_actor, NULL);
    INSERT INTO api_keys (id, name, token_hash, scopes, ledgers, bank_id, rate_limit, created_by, expires_at)
    VALUES (p_id, p_name, p_token_hash, p_scopes, coalesce(p_ledgers, '{}'), p_bank_id, p_rate_limit, p_actor, p_expires_at)
    RETURNING * INTO v;
    PERFORM dl_end_act();
    RETURN v;
END $$;
REVOKE ALL ON FUNCTION create_api_key(text,text,text,bytea,text[],text[],text,numeric,timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION create_api_key(text,text,text,bytea,text[],text[],text,numeric,timestamptz) TO dualledger_api;

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
REVOKE ALL ON FUNCTION revoke_api_key(text,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION revoke_api_key(text,text,text) TO dualledger_api;
