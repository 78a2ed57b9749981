-- 006_app_role.sql
--
-- The application role. `dualledger serve` and `dualledger worker` run as dualledger_app (they
-- SET ROLE to it after connecting; docs/security.md): it can read everything, create ledgers,
-- banks and accounts, drive the outbox (whose state machine trigger still applies) and call the
-- posting functions, which are SECURITY DEFINER. It cannot INSERT, UPDATE or DELETE entries,
-- balances or ledger heads by any other path, and it cannot change an existing account at all:
-- an overdraft limit or a status is an operator's decision, made as the owner.
--
-- Roles are per cluster: the role is created when the migrating user may (superuser or
-- CREATEROLE); otherwise the migration stops with the statement a DBA must run first.

-- SECURITY DEFINER functions: nobody but the owner and dualledger_app may call them. Revoked
-- before anything else so that a database whose role is missing is never left callable by PUBLIC.
REVOKE ALL ON FUNCTION post_ledger_entries(text, jsonb, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb) FROM PUBLIC;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dualledger_app') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            BEGIN
                CREATE ROLE dualledger_app NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- created concurrently by another migrating database of this cluster
            END;
        ELSE
            RAISE EXCEPTION 'role dualledger_app does not exist and % may not create it', current_user
                USING HINT = 'ask a DBA to run CREATE ROLE dualledger_app NOLOGIN, then run the migrations again',
                      ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;

    GRANT USAGE ON SCHEMA public TO dualledger_app;
    -- Commands check that the schema is current before they run; the version table is tern's
    -- (created by `dualledger migrate`), made here too when the files are applied with psql.
    CREATE TABLE IF NOT EXISTS dualledger_schema_version (version int4 NOT NULL);
    INSERT INTO dualledger_schema_version (version)
        SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM dualledger_schema_version);
    GRANT SELECT ON dualledger_schema_version TO dualledger_app;
    GRANT SELECT ON currencies, ledgers, banks, bank_accounts, ledger_entries,
                    dual_ledger_outbox, dual_ledger_outbox_attempts TO dualledger_app;
    GRANT INSERT (id) ON ledgers TO dualledger_app;
    GRANT INSERT (id, name) ON banks TO dualledger_app;
    GRANT INSERT (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit, status, metadata)
        ON bank_accounts TO dualledger_app;
    GRANT UPDATE (status, attempts, next_attempt_at, last_attempt_at, last_status_code, last_error, locked_by,
                  lease_expires_at, scb_entry_id, scb_status, last_polled_at, updated_at, sent_at, acked_at,
                  finalized_at, failed_at)
        ON dual_ledger_outbox TO dualledger_app;
    GRANT INSERT (outbox_id, attempt, worker_id, kind, started_at, finished_at, status_code, outcome, error)
        ON dual_ledger_outbox_attempts TO dualledger_app;
    GRANT USAGE ON SEQUENCE dual_ledger_outbox_attempts_id_seq TO dualledger_app;

    GRANT EXECUTE ON FUNCTION post_ledger_entries(text, jsonb, boolean) TO dualledger_app;
    GRANT EXECUTE ON FUNCTION post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb) TO dualledger_app;
END $$;
