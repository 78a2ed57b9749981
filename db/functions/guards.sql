-- Guard trigger functions: what the tables refuse whoever writes to them (docs/architecture.md,
-- "What the database enforces"). Migrations 000, 004, 006, 008, 009, 010 and 014 created them and
-- attached the triggers; the bodies live here, edited in place (db/functions/README.md). A trigger
-- function needs no EXECUTE to fire, so none is granted.

CREATE OR REPLACE FUNCTION dl_refuse_modification() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'DL100', HINT = coalesce(TG_ARGV[0], '');
END $$;
REVOKE ALL ON FUNCTION dl_refuse_modification() FROM PUBLIC;

-- Ledgers: never deleted; created empty; the head moves only forward and only from the posting functions.
CREATE OR REPLACE FUNCTION dl_guard_ledgers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.head_seq <> 0 OR NEW.head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
            RAISE EXCEPTION 'a new ledger starts with an empty chain (head_seq 0)' USING ERRCODE = 'DL101';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'ledger id and created_at are immutable' USING ERRCODE = 'DL101';
    END IF;
    IF (NEW.head_seq, NEW.head_hash) IS DISTINCT FROM (OLD.head_seq, OLD.head_hash) THEN
        IF NOT dl_in_posting_function() THEN
            RAISE EXCEPTION 'the ledger head moves only when entries are posted' USING ERRCODE = 'DL101';
        END IF;
        IF NEW.head_seq < OLD.head_seq THEN
            RAISE EXCEPTION 'ledger head cannot move backwards (% -> %)', OLD.head_seq, NEW.head_seq USING ERRCODE = 'DL102';
        END IF;
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION dl_guard_ledgers() FROM PUBLIC;

-- Accounts: never deleted; created with zero balances; identity, currency and asset type immutable;
-- balances change only through the posting functions.
CREATE OR REPLACE FUNCTION dl_guard_new_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.balance <> 0 OR NEW.available_balance <> 0 OR NEW.reserved_balance <> 0 THEN
        RAISE EXCEPTION 'account %/% must be created with zero balances; fund it with a posting from an issuance or opening-balance account',
            NEW.ledger_id, NEW.id USING ERRCODE = 'DL101';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION dl_guard_new_account() FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_refuse_account_identity_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_id, id, currency_code and asset_type of an account are immutable' USING ERRCODE = 'DL101';
END $$;
REVOKE ALL ON FUNCTION dl_refuse_account_identity_change() FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_require_posting_function() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT dl_in_posting_function() THEN
        RAISE EXCEPTION '% of % outside the posting functions is not allowed', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'DL101',
                  HINT = 'post entries with post_ledger_entry(...) or post_ledger_entries(...)';
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION dl_require_posting_function() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Guards. The real boundary for the application is privileges (the dualledger_app role may only
-- call the posting functions, see 005); these triggers also stop the table owner and superusers
-- from changing money by hand by accident. The posting functions set the transaction-local flag
-- dualledger.posting = 'on' while they write.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_in_posting_function() RETURNS boolean
LANGUAGE sql STABLE
RETURN coalesce(current_setting('dualledger.posting', true), '') = 'on';
REVOKE ALL ON FUNCTION dl_in_posting_function() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_in_posting_function() TO PUBLIC;

CREATE OR REPLACE FUNCTION dl_guard_api_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'API keys are never deleted: revoke them (dualledger keys revoke ID)' USING ERRCODE = 'DL100';
    END IF;
    IF (NEW.id, NEW.name, NEW.token_hash, NEW.scopes, NEW.ledgers, NEW.bank_id, NEW.rate_limit, NEW.created_at, NEW.created_by,
        NEW.expires_at)
       IS DISTINCT FROM (OLD.id, OLD.name, OLD.token_hash, OLD.scopes, OLD.ledgers, OLD.bank_id, OLD.rate_limit, OLD.created_at, OLD.created_by,
        OLD.expires_at) THEN
        RAISE EXCEPTION 'an API key is never changed: create a new one and revoke this one' USING ERRCODE = 'DL100';
    END IF;
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'API key % is already revoked', OLD.id USING ERRCODE = 'DL100';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION dl_guard_api_keys() FROM PUBLIC;

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
REVOKE ALL ON FUNCTION dl_require_oplog_function() FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_guard_hold_head() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.hold_head_seq <> 0 OR NEW.hold_head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
            RAISE EXCEPTION 'a new ledger starts with an empty hold chain (hold_head_seq 0)' USING ERRCODE = 'DL101';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.hold_head_seq, NEW.hold_head_hash) IS DISTINCT FROM (OLD.hold_head_seq, OLD.hold_head_hash) THEN
        IF NOT dl_in_posting_function() THEN
            RAISE EXCEPTION 'the ledger hold head moves only when hold events are recorded' USING ERRCODE = 'DL101';
        END IF;
        IF NEW.hold_head_seq < OLD.hold_head_seq THEN
            RAISE EXCEPTION 'ledger hold head cannot move backwards (% -> %)', OLD.hold_head_seq, NEW.hold_head_seq
                USING ERRCODE = 'DL102';
        END IF;
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION dl_guard_hold_head() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Guards: holds and their events are written only by the hold functions (the transaction-local
-- dualledger.posting flag, as for entries); events never change; a hold's terms never change and
-- it leaves PENDING once; the hold chain head moves forward only, from the hold functions.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_guard_hold_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.ledger_id, NEW.id, NEW.reference_id, NEW.debit_account_id, NEW.credit_account_id, NEW.amount,
        NEW.currency_code, NEW.asset_type, NEW.transaction_type, NEW.fx_rate, NEW.metadata, NEW.timestamp_utc,
        NEW.expires_at, NEW.created_at, NEW.created_seq)
       IS DISTINCT FROM
       (OLD.ledger_id, OLD.id, OLD.reference_id, OLD.debit_account_id, OLD.credit_account_id, OLD.amount,
        OLD.currency_code, OLD.asset_type, OLD.transaction_type, OLD.fx_rate, OLD.metadata, OLD.timestamp_utc,
        OLD.expires_at, OLD.created_at, OLD.created_seq) THEN
        RAISE EXCEPTION 'the terms of hold %/% are immutable', OLD.ledger_id, OLD.reference_id USING ERRCODE = 'DL101';
    END IF;
    IF OLD.status <> 'PENDING' OR NEW.status = 'PENDING' THEN
        RAISE EXCEPTION 'hold %/% is % and cannot become %: a hold leaves PENDING once', OLD.ledger_id, OLD.reference_id,
            OLD.status, NEW.status USING ERRCODE = 'DL101';
    END IF;
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION dl_guard_hold_update() FROM PUBLIC;
