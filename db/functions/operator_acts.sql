-- The actor of an administrative act (the operator log, migration 009).
--
-- dl_begin_act is called first by every administrative function (create_ledger, register_bank,
-- create_account, update_account, create_api_key, revoke_api_key): it checks the actor and the
-- reason and sets them for the logging triggers of the transaction.
--
-- The services do not choose whom the log names. A session acting as dualledger_api or
-- dualledger_worker (a member login, or a SET ROLE to them) may act only on behalf of an API key
-- that exists, is not revoked and has not expired ('key:<id>'): a stolen service password cannot write
-- 'cli:alice' or another made-up operator into the log. The operator's own login (the schema
-- owner, or a superuser without SET ROLE) names itself 'cli:<OS user>' as before.

CREATE OR REPLACE FUNCTION dl_acting_as_service() RETURNS boolean
LANGUAGE sql STABLE
RETURN (SELECT NOT r.rolsuper
               AND (pg_has_role(r.oid, 'dualledger_api', 'MEMBER') OR pg_has_role(r.oid, 'dualledger_worker', 'MEMBER'))
          FROM pg_roles r
         WHERE r.rolname = coalesce(nullif(current_setting('role', true), 'none'), session_user));
REVOKE ALL ON FUNCTION dl_acting_as_service() FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_begin_act(p_actor text, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_actor IS NULL OR p_actor !~ '^(key|cli|worker|system):.' OR length(p_actor) > 200 OR p_actor ~ '[[:cntrl:]]' THEN
        RAISE EXCEPTION 'actor % is not valid: key:<api key id>, cli:<user>, worker:<id> or system:<what>', coalesce(p_actor, 'NULL')
            USING ERRCODE = 'DL009';
    END IF;
    IF coalesce(dl_acting_as_service(), false) THEN
        IF p_actor !~ '^key:key_[a-z2-7]{16}$' THEN
            RAISE EXCEPTION 'a service acts only on behalf of an active API key, not as %', p_actor
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'operators act with their own login (dualledger keys, accounts update ...), which the log names cli:<user>';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM api_keys WHERE id = substr(p_actor, 5) AND revoked_at IS NULL
                                                AND (expires_at IS NULL OR expires_at > now())) THEN
            RAISE EXCEPTION 'a service acts only on behalf of an active API key, and % is unknown, revoked or expired', p_actor
                USING ERRCODE = 'insufficient_privilege',
                      -- Named, so that the API answers 401 for a key revoked or expired after the
                      -- request was authenticated (the keyring refreshes every 500 ms), not 500. A
                      -- service passing a non-key actor (above) is a bug: it stays a plain 42501.
                      CONSTRAINT = 'dl_begin_act_active_key';
        END IF;
    END IF;
    IF p_reason IS NOT NULL AND (length(p_reason) > 1000 OR p_reason ~ '[[:cntrl:]]') THEN
        RAISE EXCEPTION 'reason must be at most 1000 characters without control characters' USING ERRCODE = 'DL009';
    END IF;
    PERFORM set_config('dualledger.actor', p_actor, true);
    PERFORM set_config('dualledger.reason', coalesce(p_reason, ''), true);
END $$;
REVOKE ALL ON FUNCTION dl_begin_act(text, text) FROM PUBLIC;
