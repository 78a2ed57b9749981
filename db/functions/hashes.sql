-- The canonical encodings and hashes of the chains (docs/hash-chain.md, with test vectors):
-- entries, hold events, the operator log. Changing one changes every hash after it: a new encoding
-- is a new version tag, never an edit of these bodies' output.

-- ---------------------------------------------------------------------------------------------
-- Canonical encoding of an entry for the hash chain (docs/hash-chain.md has the specification and
-- test vectors; internal/ledger/hash.go implements the same in Go):
--
--   canonical  = utf8( "DLE1" US id US ledger_id US seq US debit_account_id US credit_account_id
--                      US amount US currency_code US asset_type US transaction_type US reference_id
--                      US fx_rate US metadata US timestamp_utc US reverses_entry_id )
--   block_hash = sha256(previous_hash || canonical)
--
-- US is the ASCII unit separator (0x1F). No field can contain it: ids are restricted by CHECK
-- constraints, reference_id and transaction_type may hold no control character, numbers and
-- timestamps are digits, and jsonb's text rendering escapes every control character. So the
-- encoding is unambiguous, and it is one concat + one conversion per entry (cheap in SQL).
--   numbers    decimal text; amount and fx_rate with exactly 18 decimals (as NUMERIC(38,18) prints)
--   NULL       the empty string (fx_rate, reverses_entry_id)
--   metadata   PostgreSQL's jsonb text rendering
--   timestamp  UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ'
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION ledger_entry_canonical(
    p_id bigint, p_ledger_id text, p_seq bigint, p_debit_account_id text, p_credit_account_id text,
    p_amount numeric, p_currency_code text, p_asset_type text, p_transaction_type text, p_reference_id text,
    p_fx_rate numeric, p_metadata jsonb, p_timestamp_utc timestamptz, p_reverses_entry_id bigint
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
-- (Every argument is coalesced: concat_ws skips NULLs, which would shift the fields.)
RETURN convert_to(concat_ws(E'\x1f', 'DLE1', coalesce(p_id::text, ''), coalesce(p_ledger_id, ''),
                            coalesce(p_seq::text, ''), coalesce(p_debit_account_id, ''), coalesce(p_credit_account_id, ''),
                            coalesce(round(p_amount, 18)::text, ''), coalesce(p_currency_code, ''), coalesce(p_asset_type, ''),
                            coalesce(p_transaction_type, ''), coalesce(p_reference_id, ''),
                            coalesce(round(p_fx_rate, 18)::text, ''), coalesce(p_metadata::text, ''),
                            coalesce(to_char(p_timestamp_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
                            coalesce(p_reverses_entry_id::text, '')), 'UTF8');
REVOKE ALL ON FUNCTION ledger_entry_canonical(bigint,text,bigint,text,text,numeric,text,text,text,text,numeric,jsonb,timestamp with time zone,bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_entry_canonical(bigint,text,bigint,text,text,numeric,text,text,text,text,numeric,jsonb,timestamp with time zone,bigint) TO PUBLIC;

CREATE OR REPLACE FUNCTION ledger_entry_block_hash(e ledger_entries) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN sha256(e.previous_hash || ledger_entry_canonical(
    e.id, e.ledger_id, e.seq, e.debit_account_id, e.credit_account_id, e.amount, e.currency_code,
    e.asset_type, e.transaction_type, e.reference_id, e.fx_rate, e.metadata, e.timestamp_utc,
    e.reverses_entry_id));
REVOKE ALL ON FUNCTION ledger_entry_block_hash(ledger_entries) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_entry_block_hash(ledger_entries) TO PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Canonical encoding of a hold event (docs/hash-chain.md, "Hold events"; internal/ledger's
-- HoldEventCanonical is the Go twin):
--   "DLH1" US ledger_id US seq US hold_id US reference_id US event US debit_account_id
--   US credit_account_id US hold amount US currency_code US asset_type US transaction_type
--   US fx_rate US metadata US timestamp_utc US expires_at US event amount US entry_id US entry_seq
-- numbers as for entries (18 decimals), NULL as the empty string, timestamps in UTC with 6 digits.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION ledger_hold_event_canonical(
    p_ledger_id text, p_seq bigint, p_hold_id bigint, p_reference_id text, p_event text,
    p_debit_account_id text, p_credit_account_id text, p_hold_amount numeric, p_currency_code text,
    p_asset_type text, p_transaction_type text, p_fx_rate numeric, p_metadata jsonb, p_timestamp_utc timestamptz,
    p_expires_at timestamptz, p_amount numeric, p_entry_id bigint, p_entry_seq bigint
) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN convert_to(concat_ws(E'\x1f', 'DLH1', coalesce(p_ledger_id, ''), coalesce(p_seq::text, ''),
                            coalesce(p_hold_id::text, ''), coalesce(p_reference_id, ''), coalesce(p_event, ''),
                            coalesce(p_debit_account_id, ''), coalesce(p_credit_account_id, ''),
                            coalesce(round(p_hold_amount, 18)::text, ''), coalesce(p_currency_code, ''),
                            coalesce(p_asset_type, ''), coalesce(p_transaction_type, ''),
                            coalesce(round(p_fx_rate, 18)::text, ''), coalesce(p_metadata::text, ''),
                            coalesce(to_char(p_timestamp_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
                            coalesce(to_char(p_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ''),
                            coalesce(round(p_amount, 18)::text, ''), coalesce(p_entry_id::text, ''),
                            coalesce(p_entry_seq::text, '')), 'UTF8');
REVOKE ALL ON FUNCTION ledger_hold_event_canonical(text,bigint,bigint,text,text,text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,timestamp with time zone,numeric,bigint,bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_hold_event_canonical(text,bigint,bigint,text,text,text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,timestamp with time zone,numeric,bigint,bigint) TO dualledger_api;
GRANT EXECUTE ON FUNCTION ledger_hold_event_canonical(text,bigint,bigint,text,text,text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,timestamp with time zone,numeric,bigint,bigint) TO dualledger_readonly;

-- The hash of a stored event (its hold's fields joined in).
CREATE OR REPLACE FUNCTION ledger_hold_event_hash(e ledger_hold_events) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT sha256(e.previous_hash || ledger_hold_event_canonical(
            e.ledger_id, e.seq, e.hold_id, h.reference_id, e.event, h.debit_account_id, h.credit_account_id,
            h.amount, h.currency_code, h.asset_type, h.transaction_type, h.fx_rate, h.metadata, h.timestamp_utc,
            h.expires_at, e.amount, e.entry_id, e.entry_seq))
          FROM ledger_holds h WHERE h.ledger_id = e.ledger_id AND h.id = e.hold_id);
REVOKE ALL ON FUNCTION ledger_hold_event_hash(ledger_hold_events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_hold_event_hash(ledger_hold_events) TO dualledger_api;
GRANT EXECUTE ON FUNCTION ledger_hold_event_hash(ledger_hold_events) TO dualledger_readonly;

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
REVOKE ALL ON FUNCTION operator_action_canonical(bigint,timestamp with time zone,text,text,text,text,text,jsonb,jsonb,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION operator_action_canonical(bigint,timestamp with time zone,text,text,text,text,text,jsonb,jsonb,text) TO PUBLIC;
