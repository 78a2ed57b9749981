-- The posting function, post_ledger_entries (created by 005_post_ledger_entry.sql), as a short
-- driver over named stages. Signature, results, error precedence and grants are those of 005 and
-- 010; post_ledger_entry (the seed's single-entry signature) is in post_ledger_entry.sql, the
-- helpers dl_amount_text and dl_entry_diff in posting_values.sql, dl_result_sqlstate in
-- result_sqlstate.sql. dl_parse_timestamp is redefined here (below), accepting exactly what 005's
-- accepted.
--
--   dl_post_parse             parse and validate every entry, set-based, before any lock
--   dl_post_lookup_refs       the batch's references already in the ledger (before the head lock)
--   dl_post_lock              the one ledger-head lock, and the accounts read under it
--   dl_post_replays           replays and reference conflicts with committed entries
--   dl_post_reversal_targets  the entries this batch reverses, and how much of each is reversed
--   dl_post_walk              one pass in batch order: in-batch retries, accounts, funds, the chain
--   dl_post_atomic            an atomic batch with a rejection writes nothing
--   dl_post_write             head, entries, balances (40001 guard), outbox rows
--
-- Between the stages the state travels as composite types (dl_post_*). Inside a stage that walks
-- positions the arrays are copied into local variables first: PL/pgSQL keeps a local array
-- expanded (a subscript is O(1)); a subscript of an array inside a composite is not.
--
-- The stages are not SECURITY DEFINER and nobody but the owner may call them: they run inside the
-- driver, which is, and inherit its settings (search_path, plan_cache_mode = force_generic_plan:
-- GUCs set by a function hold until it returns, nested calls included). A SET clause on a stage
-- would cost a GUC save and restore per call.
--
-- Every look-up of an entry by id also names its ledger (011: the unique key is (id, ledger_id)).

-- ---------------------------------------------------------------------------------------------
-- The types between the stages. CREATE TYPE cannot be replaced: created when missing, and their
-- shape must stay as it is (a change is a new type name, or a migration).
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
    -- The batch as parsed, per position; code/msg/details: the validation result (NULL: valid).
    IF to_regtype('public.dl_post_batch') IS NULL THEN
        CREATE TYPE dl_post_batch AS (
            n integer, debit text[], credit text[], amount numeric[], currency text[], asset text[],
            ttype text[], ref text[], fx numeric[], meta jsonb[], ts timestamptz[], ts_given boolean[],
            reverses bigint[], id bigint[], pre bytea[], post bytea[], prev_dup integer[],
            code text[], msg text[], details jsonb[]);
    END IF;
    -- The results, per position (dbank/cbank: the registered banks an entry goes to, outbox).
    IF to_regtype('public.dl_post_results') IS NULL THEN
        CREATE TYPE dl_post_results AS (
            code text[], msg text[], details jsonb[], id bigint[], seq bigint[], prev bytea[], hash bytea[],
            ts timestamptz[], rec timestamptz[], meta jsonb[], dbal numeric[], cbal numeric[],
            dbank text[], cbank text[]);
    END IF;
    -- Entries that already hold one of the batch's references, seen before the head lock.
    IF to_regtype('public.dl_post_refs') IS NULL THEN
        CREATE TYPE dl_post_refs AS (seen_seq bigint, ids bigint[], refset jsonb);
    END IF;
    -- The head and the touched accounts in id order (map: account id -> index).
    IF to_regtype('public.dl_post_accounts') IS NULL THEN
        CREATE TYPE dl_post_accounts AS (
            found boolean, head_seq bigint, head_hash bytea, id text[], bal numeric[], avail numeric[],
            lim numeric[], currency text[], asset text[], status text[], bank text[], bankid text[],
            map jsonb, changed boolean[]);
    END IF;
    -- Reversed entries (map: entry id -> index) and the amount reversed so far.
    IF to_regtype('public.dl_post_reversals') IS NULL THEN
        CREATE TYPE dl_post_reversals AS (
            map jsonb, debit text[], credit text[], amount numeric[], currency text[], asset text[], done numeric[]);
    END IF;
    -- After the walk: results, accounts as they end, the new head, what to write.
    IF to_regtype('public.dl_post_walked') IS NULL THEN
        CREATE TYPE dl_post_walked AS (
            res dl_post_results, acc dl_post_accounts, seq bigint, hash bytea, created integer, outbox boolean);
    END IF;
    -- One rejection: result code, message, details.
    IF to_regtype('public.dl_post_rejection') IS NULL THEN
        CREATE TYPE dl_post_rejection AS (code text, msg text, details jsonb);
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------------
-- An RFC 3339 date-time with an explicit offset, between 1900 and 9999, as timestamptz; NULL when
-- the text is not one, and never an error (a raise would cost the whole batch). 005 wrote it in
-- PL/pgSQL, matching the fields with one expression and checking their ranges one by one; it ran
-- for every entry with a timestamp, and a backfill's rows all have one. Here the ranges are in the
-- one pattern (year 1900-9999; months of 31, 30 and 28 days; 29 February in leap years only; hour
-- 0-23, minute and second 0-59; offset up to 15:59), so the function is a single expression that
-- the planner inlines into the parse stage; the cast runs only on text the pattern accepted, and
-- the range check applies the offset (1900-01-01T00:00:00+01:00 is 1899 in UTC).
-- TestParseTimestampAgreesWith005 runs both on every combination of boundary fields.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_parse_timestamp(p text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
    WHEN p ~ ('^(?:(?:19[0-9]{2}|[2-9][0-9]{3})-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])'
              '|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))'
              '|(?:(?:19|[2-9][0-9])(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[3579][26])00)-02-29)'
              '[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?'
              '(?:[Zz]|[+-](?:0[0-9]|1[0-5]):?[0-5][0-9])$')
         AND p::timestamptz >= '1900-01-01T00:00:00Z' AND p::timestamptz < '10000-01-01T00:00:00Z'
    THEN p::timestamptz
END;
REVOKE ALL ON FUNCTION dl_parse_timestamp(text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Messages (each called only for a rejection).
-- ---------------------------------------------------------------------------------------------
-- The message of a required string field that is missing, not a non-empty string, or longer
-- than p_max characters.
CREATE OR REPLACE FUNCTION dl_post_id_message(p_field text, p_value jsonb, p_max integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
         WHEN jsonb_typeof(p_value) = 'string' AND length(p_value #>> '{}') > p_max
           THEN format('%s is %s characters long: at most %s', p_field, length(p_value #>> '{}'), p_max)
         ELSE format('%s is required: a string of 1 to %s characters, got %s', p_field, p_max, coalesce(left(p_value::text, 100), 'nothing'))
       END;
REVOKE ALL ON FUNCTION dl_post_id_message(text, jsonb, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_post_problem_message(
    p_problem text, p_i integer, p_raw jsonb, p_ledger_id text, p_amount_type text, p_amount_txt text,
    p_currency text, p_minor_unit integer, p_debit text, p_meta_type text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE p_problem
                 WHEN 'entry' THEN format('entry %s must be a JSON object', p_i)
                 WHEN 'ledger_id' THEN format('ledger_id %s does not match the batch''s ledger %s', p_raw -> 'ledger_id', to_jsonb(p_ledger_id))
                 -- A value that is there but too long (or, for the type, holds a control
                 -- character) is told so: "is required" for it sent the client looking for a
                 -- missing field.
                 WHEN 'debit_account_id' THEN dl_post_id_message('debit_account_id', p_raw -> 'debit_account_id', 128)
                 WHEN 'credit_account_id' THEN dl_post_id_message('credit_account_id', p_raw -> 'credit_account_id', 128)
                 WHEN 'transaction_type' THEN
                     CASE WHEN jsonb_typeof(p_raw -> 'transaction_type') = 'string' AND length(p_raw ->> 'transaction_type') BETWEEN 1 AND 64
                          THEN format('transaction_type %s contains a control character: a string of 1 to 64 characters without control characters', left((p_raw -> 'transaction_type')::text, 100))
                          ELSE dl_post_id_message('transaction_type', p_raw -> 'transaction_type', 64) END
                 WHEN 'amount_missing' THEN 'amount is required (a decimal string such as "100.00")'
                 WHEN 'amount_type' THEN format('amount must be a decimal string such as "100.00", not a JSON %s', p_amount_type)
                 WHEN 'amount_length' THEN format('amount is %s characters long: at most 64 (20 integer digits, 18 decimals)', length(p_amount_txt))
                 WHEN 'amount_syntax' THEN format('amount %s is not a plain decimal string (digits with an optional "." and decimals; no sign, exponent, separators or spaces)', left((p_raw -> 'amount')::text, 80))
                 WHEN 'amount_range' THEN format('amount %s is out of range: at most 20 integer digits', left((p_raw -> 'amount')::text, 80))
                 WHEN 'amount_precision' THEN format('amount %s has more than 18 decimals', left((p_raw -> 'amount')::text, 80))
                 WHEN 'amount_sign' THEN format('amount must be greater than zero, got %s', p_raw -> 'amount')
                 WHEN 'currency_missing' THEN format('currency_code is required (an ISO 4217 code such as "USD"), got %s', coalesce((p_raw -> 'currency_code')::text, 'nothing'))
                 WHEN 'currency_code' THEN format('unknown currency code %s (ISO 4217 codes are three upper-case letters)', left((p_raw -> 'currency_code')::text, 40))
                 WHEN 'asset_type' THEN format('asset_type %s is not one of fiat, cbdc, commodity, security', coalesce(left((p_raw -> 'asset_type')::text, 40), 'nothing'))
                 WHEN 'amount_minor_unit' THEN format('amount %s has %s decimals but %s allows at most %s', p_raw -> 'amount',
                                                      length(rtrim(split_part(p_amount_txt, '.', 2), '0')), p_currency, p_minor_unit)
                 WHEN 'same_account' THEN format('debit and credit account are the same (%s)', to_jsonb(p_debit))
                 WHEN 'fx_rate' THEN format('fx_rate must be a positive decimal string with at most 18 decimals, got %s', left((p_raw -> 'fx_rate')::text, 80))
                 WHEN 'metadata' THEN format('metadata must be a JSON object, not a JSON %s', p_meta_type)
                 WHEN 'metadata_size' THEN format('metadata takes %s bytes stored: at most 1048576 (1 MiB)', pg_column_size(p_raw -> 'metadata'))
                 WHEN 'timestamp_utc' THEN format('timestamp_utc must be an RFC 3339 date-time with a time zone and at most 6 decimals of a second, between 1900 and 9999, such as "2025-01-20T10:00:00Z", got %s', left((p_raw -> 'timestamp_utc')::text, 80))
                 WHEN 'reverses_entry_id' THEN format('reverses_entry_id must be the id of an entry, got %s', left((p_raw -> 'reverses_entry_id')::text, 40))
END;
REVOKE ALL ON FUNCTION dl_post_problem_message(text, integer, jsonb, text, text, text, text, integer, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_post_reject_unknown_account(p_ledger_id text, p_debit text, p_credit text, p_dmiss boolean, p_cmiss boolean)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('unknown_account',
    CASE WHEN p_dmiss AND p_cmiss
         THEN format('unknown accounts %s and %s in ledger %s', to_jsonb(p_debit), to_jsonb(p_credit), to_jsonb(p_ledger_id))
         WHEN p_dmiss THEN format('unknown debit account %s in ledger %s', to_jsonb(p_debit), to_jsonb(p_ledger_id))
         ELSE format('unknown credit account %s in ledger %s', to_jsonb(p_credit), to_jsonb(p_ledger_id)) END,
    jsonb_build_object('ledger_id', p_ledger_id, 'missing_account_ids',
                       to_jsonb(array_remove(ARRAY[CASE WHEN p_dmiss THEN p_debit END, CASE WHEN p_cmiss THEN p_credit END], NULL)))
)::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_unknown_account(text, text, text, boolean, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_post_reject_currency(
    p_currency text, p_asset text, p_did text, p_dcur text, p_dasset text, p_cid text, p_ccur text, p_casset text)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('currency_mismatch',
    CASE WHEN p_dcur <> p_currency OR p_dasset <> p_asset
         THEN format('entry is %s %s but %s account %s holds %s %s', p_currency, p_asset, 'debit', to_jsonb(p_did), p_dcur, p_dasset)
         ELSE format('entry is %s %s but %s account %s holds %s %s', p_currency, p_asset, 'credit', to_jsonb(p_cid), p_ccur, p_casset) END,
    jsonb_build_object('currency_code', p_currency, 'asset_type', p_asset,
                       'debit_account', jsonb_build_object('id', p_did, 'currency_code', p_dcur, 'asset_type', p_dasset),
                       'credit_account', jsonb_build_object('id', p_cid, 'currency_code', p_ccur, 'asset_type', p_casset))
)::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_currency(text, text, text, text, text, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_post_reject_inactive(p_did text, p_dstatus text, p_cid text, p_cstatus text)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN p_dstatus <> 'active'
    THEN ROW('account_inactive', format('%s account %s is %s', 'debit', to_jsonb(p_did), p_dstatus),
             jsonb_build_object('account_id', p_did, 'status', p_dstatus))::dl_post_rejection
    ELSE ROW('account_inactive', format('%s account %s is %s', 'credit', to_jsonb(p_cid), p_cstatus),
             jsonb_build_object('account_id', p_cid, 'status', p_cstatus))::dl_post_rejection END;
REVOKE ALL ON FUNCTION dl_post_reject_inactive(text, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_post_reject_unknown_entry(p_ledger_id text, p_reverses bigint)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('unknown_entry', format('reverses_entry_id %s is not an entry of ledger %s', p_reverses, to_jsonb(p_ledger_id)),
           jsonb_build_object('field', 'reverses_entry_id', 'reverses_entry_id', p_reverses))::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_unknown_entry(text, bigint) FROM PUBLIC;

-- The reversal does not move the entry back (r*: the reversed entry).
CREATE OR REPLACE FUNCTION dl_post_reject_reversal(
    p_reverses bigint, p_rdebit text, p_rcredit text, p_ramount numeric, p_rcurrency text, p_rasset text)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('invalid_reversal',
    format('entry %s moved %s %s from %s to %s: its reversal must move it back (debit %s, credit %s, %s %s)',
           p_reverses, dl_amount_text(p_ramount, p_rcurrency), p_rcurrency,
           to_jsonb(p_rdebit), to_jsonb(p_rcredit), to_jsonb(p_rcredit), to_jsonb(p_rdebit), p_rcurrency, p_rasset),
    jsonb_build_object('field', 'reverses_entry_id', 'reverses_entry_id', p_reverses,
                       'debit_account_id', p_rcredit, 'credit_account_id', p_rdebit))::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_reversal(bigint, text, text, numeric, text, text) FROM PUBLIC;

-- The reversal would reverse more than the entry moved.
CREATE OR REPLACE FUNCTION dl_post_reject_overreversal(p_reverses bigint, p_ramount numeric, p_rdone numeric, p_currency text)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('invalid_reversal',
    format('entry %s moved %s %s and %s of it is already reversed: at most %s more can be',
           p_reverses, dl_amount_text(p_ramount, p_currency), p_currency,
           dl_amount_text(p_rdone, p_currency), dl_amount_text(p_ramount - p_rdone, p_currency)),
    jsonb_build_object('field', 'amount', 'reverses_entry_id', p_reverses,
                       'entry_amount', dl_amount_text(p_ramount, p_currency),
                       'already_reversed', dl_amount_text(p_rdone, p_currency)))::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_overreversal(bigint, numeric, numeric, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dl_post_reject_funds(p_did text, p_avail numeric, p_limit numeric, p_amount numeric, p_currency text)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('insufficient_funds',
    format('insufficient funds in account %s: available %s, overdraft limit %s, amount %s %s',
           to_jsonb(p_did), dl_amount_text(p_avail, p_currency), dl_amount_text(p_limit, p_currency),
           dl_amount_text(p_amount, p_currency), p_currency),
    jsonb_build_object('account_id', p_did, 'available_balance', dl_amount_text(p_avail, p_currency),
                       'overdraft_limit', dl_amount_text(p_limit, p_currency),
                       'amount', dl_amount_text(p_amount, p_currency), 'currency_code', p_currency))::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_funds(text, numeric, numeric, numeric, text) FROM PUBLIC;

-- NUMERIC(38,18) holds less than 10^20 in magnitude: an entry or hold that would push a stored
-- balance past it is a rejection of that entry (invalid_amount), checked before anything is
-- written, so that the database never raises 22003 (numeric_value_out_of_range) mid-batch.
-- p_balance names the column: balance, available_balance or reserved_balance. (Until the other
-- two were checked too, this took no p_balance and always said "the balance".)
DROP FUNCTION IF EXISTS dl_post_reject_overflow(numeric, text);
CREATE OR REPLACE FUNCTION dl_post_reject_overflow(p_amount numeric, p_account text, p_balance text)
RETURNS dl_post_rejection
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ROW('invalid_amount',
    format('amount %s would take the %s of account %s beyond NUMERIC(38,18) (20 integer digits)',
           trim_scale(p_amount), p_balance, to_jsonb(p_account)),
    jsonb_build_object('field', 'amount', 'account_id', p_account, 'balance', p_balance))::dl_post_rejection;
REVOKE ALL ON FUNCTION dl_post_reject_overflow(numeric, text, text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 1. Parse and validate every entry on its own, before taking any lock, and prepare the parts of
--    the canonical encoding that do not depend on seq. `problem` names the first thing wrong, in
--    order of precedence; code, field and message follow from it. Draws the entry ids.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_parse(p_ledger_id text, p_entries jsonb) RETURNS dl_post_batch
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    b     dl_post_batch;
    e_pos integer[];   -- 1..n, checked
BEGIN
    b.n := jsonb_array_length(p_entries);
    SELECT array_agg(v.debit), array_agg(v.credit), array_agg(v.amount),
           array_agg(v.currency), array_agg(v.asset), array_agg(v.ttype),
           array_agg(v.ref), array_agg(v.fx), array_agg(v.meta),
           array_agg(v.ts), array_agg(v.ts_given), array_agg(v.reverses),
           array_agg(v.id),
           array_agg(CASE WHEN v.id IS NOT NULL THEN convert_to(concat_ws(E'\x1f', 'DLE1', v.id, p_ledger_id, ''), 'UTF8') END),
           array_agg(CASE WHEN v.id IS NOT NULL THEN
                   convert_to(concat_ws(E'\x1f', '', v.debit, v.credit, round(v.amount, 18), v.currency, v.asset, v.ttype, v.ref,
                                        coalesce(round(v.fx, 18)::text, ''), v.meta,
                                        to_char(v.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                        coalesce(v.reverses::text, '')), 'UTF8') END),
           array_agg(v.code), array_agg(v.msg), array_agg(v.det), array_agg(v.i)
      INTO b.debit, b.credit, b.amount, b.currency, b.asset, b.ttype, b.ref, b.fx, b.meta, b.ts, b.ts_given,
           b.reverses, b.id, b.pre, b.post, b.code, b.msg, b.details, e_pos
      FROM (
        SELECT w.*,
               CASE WHEN w.code IS NULL THEN nextval('ledger_entries_id_seq'::regclass) END AS id,
               CASE WHEN w.code IS NULL THEN w.amount_txt::numeric END AS amount,
               CASE WHEN w.code IS NULL THEN w.fx_txt::numeric END AS fx,
               CASE WHEN w.code IS NULL THEN w.reverses_txt::bigint END AS reverses,
               CASE WHEN w.code IS NULL THEN coalesce(w.ts_parsed, now()) END AS ts,
               CASE WHEN w.problem = 'reference_id' THEN dl_reference_message(w.raw -> 'reference_id')
                    WHEN w.problem IS NOT NULL THEN
                   dl_post_problem_message(w.problem, w.i, w.raw, p_ledger_id, w.amount_type, w.amount_txt,
                                           w.currency, w.minor_unit, w.debit, w.meta_type) END AS msg,
               CASE WHEN w.problem = 'reference_id' THEN dl_reference_details(w.raw -> 'reference_id')
                    WHEN w.problem IS NOT NULL THEN
                   jsonb_build_object('field', CASE WHEN w.problem LIKE 'amount%' THEN 'amount'
                                                    WHEN w.problem LIKE 'currency%' THEN 'currency_code'
                                                    WHEN w.problem = 'same_account' THEN 'credit_account_id'
                                                    WHEN w.problem = 'metadata_size' THEN 'metadata'
                                                    ELSE w.problem END)
               END AS det
          FROM (
            SELECT q.*,
                   CASE
                     WHEN q.problem IS NULL THEN NULL
                     WHEN q.problem LIKE 'amount%' THEN 'invalid_amount'
                     WHEN q.problem = 'currency_code' THEN 'unknown_currency'
                     WHEN q.problem = 'asset_type' THEN 'invalid_asset_type'
                     WHEN q.problem = 'same_account' THEN 'same_account'
                     ELSE 'invalid_request'
                   END AS code
              FROM (
                SELECT r.*, cur.minor_unit,
                       CASE
                         WHEN NOT r.is_object THEN 'entry'
                         WHEN r.ledger_type IS NOT NULL AND r.ledger_type <> 'null'
                              AND (r.ledger_type <> 'string' OR r.raw ->> 'ledger_id' <> p_ledger_id) THEN 'ledger_id'
                         WHEN r.debit IS NULL OR r.debit = '' OR length(r.debit) > 128 THEN 'debit_account_id'
                         WHEN r.credit IS NULL OR r.credit = '' OR length(r.credit) > 128 THEN 'credit_account_id'
                         -- the rules of ledger.ValidateReference (reference_rules.sql, generated from them)
                         WHEN dl_reference_rule(r.ref) IS NOT NULL THEN 'reference_id'
                         WHEN r.ttype IS NULL OR r.ttype = '' OR length(r.ttype) > 64 OR r.ttype ~ '[[:cntrl:]]' THEN 'transaction_type'
                         WHEN r.amount_type IS NULL OR r.amount_type = 'null' THEN 'amount_missing'
                         WHEN r.amount_type <> 'string' THEN 'amount_type'
                         WHEN length(r.amount_txt) > 64 THEN 'amount_length'
                         WHEN r.amount_txt !~ '^[0-9]+(\.[0-9]+)?$' THEN
                              CASE WHEN r.amount_txt ~ '^-[0-9]+(\.[0-9]+)?$' THEN 'amount_sign' ELSE 'amount_syntax' END
                         WHEN length(ltrim(split_part(r.amount_txt, '.', 1), '0')) > 20 THEN 'amount_range'
                         WHEN r.amount_txt ~ '\.[0-9]{18}[0-9]*[1-9]' THEN 'amount_precision'
                         WHEN r.amount_txt::numeric <= 0 THEN 'amount_sign'
                         WHEN r.currency IS NULL OR r.currency = '' THEN 'currency_missing'
                         WHEN cur.code IS NULL THEN 'currency_code'
                         WHEN r.asset IS NULL OR r.asset NOT IN ('fiat', 'cbdc', 'commodity', 'security') THEN 'asset_type'
                         WHEN r.asset = 'fiat' AND r.amount_txt::numeric <> trunc(r.amount_txt::numeric, cur.minor_unit) THEN 'amount_minor_unit'
                         WHEN r.debit = r.credit THEN 'same_account'
                         WHEN r.fx_type IS NOT NULL AND r.fx_type <> 'null' AND (r.fx_type <> 'string'
                              OR length(r.fx_txt) > 64 OR r.fx_txt !~ '^[0-9]+(\.[0-9]+)?$' OR r.fx_txt ~ '\.[0-9]{18}[0-9]*[1-9]'
                              OR length(ltrim(split_part(r.fx_txt, '.', 1), '0')) > 20 OR r.fx_txt::numeric <= 0) THEN 'fx_rate'
                         WHEN r.meta_type IS NOT NULL AND r.meta_type NOT IN ('object', 'null') THEN 'metadata'
                         WHEN pg_column_size(r.meta) > 1048576 THEN 'metadata_size'  -- 1 MiB stored, for every caller
                         WHEN r.ts_type IS NOT NULL AND r.ts_type <> 'null'
                              AND (r.ts_type <> 'string' OR r.ts_parsed IS NULL) THEN 'timestamp_utc'
                         WHEN r.rev_type IS NOT NULL AND r.rev_type <> 'null'
                              AND (r.reverses_txt IS NULL OR r.reverses_txt !~ '^[1-9][0-9]{0,17}$') THEN 'reverses_entry_id'
                       END AS problem
                  FROM (
                    SELECT t.i::integer AS i, t.j AS raw,
                           jsonb_typeof(t.j) = 'object' AS is_object,
                           jsonb_typeof(t.j -> 'ledger_id') AS ledger_type,
                           CASE WHEN jsonb_typeof(t.j -> 'debit_account_id') = 'string' THEN t.j ->> 'debit_account_id' END AS debit,
                           CASE WHEN jsonb_typeof(t.j -> 'credit_account_id') = 'string' THEN t.j ->> 'credit_account_id' END AS credit,
                           jsonb_typeof(t.j -> 'amount') AS amount_type,
                           t.j ->> 'amount' AS amount_txt,
                           CASE WHEN jsonb_typeof(t.j -> 'currency_code') = 'string' THEN t.j ->> 'currency_code' END AS currency,
                           CASE WHEN jsonb_typeof(t.j -> 'asset_type') = 'string' THEN t.j ->> 'asset_type' END AS asset,
                           CASE WHEN jsonb_typeof(t.j -> 'transaction_type') = 'string' THEN t.j ->> 'transaction_type' END AS ttype,
                           CASE WHEN jsonb_typeof(t.j -> 'reference_id') = 'string' THEN t.j ->> 'reference_id' END AS ref,
                           jsonb_typeof(t.j -> 'fx_rate') AS fx_type,
                           t.j ->> 'fx_rate' AS fx_txt,
                           jsonb_typeof(t.j -> 'metadata') AS meta_type,
                           CASE WHEN jsonb_typeof(t.j -> 'metadata') = 'object' THEN t.j -> 'metadata' ELSE '{}'::jsonb END AS meta,
                           jsonb_typeof(t.j -> 'timestamp_utc') AS ts_type,
                           -- parsed once here (the fence below), used by the check and the value
                           CASE WHEN jsonb_typeof(t.j -> 'timestamp_utc') = 'string'
                                THEN dl_parse_timestamp(t.j ->> 'timestamp_utc') END AS ts_parsed,
                           jsonb_typeof(t.j -> 'timestamp_utc') = 'string' AS ts_given,
                           jsonb_typeof(t.j -> 'reverses_entry_id') AS rev_type,
                           CASE WHEN jsonb_typeof(t.j -> 'reverses_entry_id') IN ('string', 'number') THEN t.j ->> 'reverses_entry_id' END AS reverses_txt
                      FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS t(j, i)
                    OFFSET 0  -- a fence: extract each field once, not once per reference below
                  ) r
                  LEFT JOIN currencies cur ON cur.code = r.currency
                 OFFSET 0  -- a fence: keep the planner from copying `problem` into every reference
              ) q
             OFFSET 0
          ) w
         ORDER BY w.i  -- one sort; every array_agg above then sees the rows in batch order
         OFFSET 0
      ) v;
    -- The arrays must be in batch order (results are matched to entries by position): check it
    -- rather than trust it.
    IF e_pos IS DISTINCT FROM ARRAY(SELECT generate_series(1, b.n)) THEN
        RAISE EXCEPTION 'internal error: batch order not preserved' USING ERRCODE = 'XX000';
    END IF;
    -- Earlier position of the same reference in this batch (a retry inside one group commit).
    b.prev_dup := ARRAY(SELECT lag(u.k::integer) OVER (PARTITION BY u.ref ORDER BY u.k)
                          FROM unnest(b.ref) WITH ORDINALITY AS u(ref, k) ORDER BY u.k);
    RETURN b;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_parse(text, jsonb) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 2. References already in the ledger, looked up before the head lock (so batches do it in
--    parallel), with the head seq of the same snapshot: under the lock only entries committed
--    after that seq need a second look (dl_post_replays).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_lookup_refs(p_ledger_id text, b dl_post_batch) RETURNS dl_post_refs
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    r dl_post_refs;
BEGIN
    SELECT (SELECT l.head_seq FROM ledgers l WHERE l.id = p_ledger_id), array_agg(le.id)
      INTO r.seen_seq, r.ids
      FROM unnest(b.ref, b.code) AS u(ref, code)
     CROSS JOIN LATERAL (
           -- One probe of the unique index per reference (OFFSET 0: never a join that scans).
           SELECT x.id FROM ledger_entries x
            WHERE x.ledger_id = p_ledger_id AND x.reference_id = u.ref OFFSET 0) le
     WHERE u.code IS NULL;
    r.refset := (SELECT jsonb_object_agg(u.ref, true) FROM unnest(b.ref, b.code) AS u(ref, code) WHERE u.code IS NULL);
    RETURN r;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_lookup_refs(text, dl_post_batch) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 3. The ledger head: one lock for the whole batch (found = false: no such ledger). From here on
--    this ledger is ours alone. The accounts are read under it: every change of a balance happens
--    in a posting function holding its ledger's head, so the balances read here cannot change
--    before our UPDATE; no row lock is taken per account (a FOR UPDATE of every touched account
--    writes a WAL record per row and made concurrent batches queue account by account).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_lock(p_ledger_id text, p_b dl_post_batch) RETURNS dl_post_accounts
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v_a dl_post_accounts;
BEGIN
    SELECT l.head_seq, l.head_hash INTO v_a.head_seq, v_a.head_hash
      FROM ledgers l WHERE l.id = p_ledger_id
       FOR UPDATE;
    v_a.found := FOUND;
    IF NOT v_a.found THEN
        RETURN v_a;
    END IF;
    SELECT array_agg(a.id), array_agg(a.balance), array_agg(a.available_balance), array_agg(a.overdraft_limit),
           array_agg(a.currency_code), array_agg(a.asset_type), array_agg(a.status), array_agg(b.id), array_agg(a.bank_id)
      INTO v_a.id, v_a.bal, v_a.avail, v_a.lim, v_a.currency, v_a.asset, v_a.status, v_a.bank, v_a.bankid
      FROM (
        SELECT s.*
          FROM (SELECT ba.*
                  FROM (SELECT DISTINCT x.id
                          FROM unnest(p_b.debit, p_b.credit, p_b.code) AS u(debit, credit, code)
                         CROSS JOIN LATERAL (VALUES (u.debit), (u.credit)) AS x(id)
                         WHERE u.code IS NULL
                         ORDER BY x.id) ids
                 CROSS JOIN LATERAL (
                       -- One primary-key probe per account (OFFSET 0: never a scan of the table).
                       SELECT b.id, b.balance, b.available_balance, b.overdraft_limit, b.currency_code,
                              b.asset_type, b.status, b.bank_id
                         FROM bank_accounts b
                        WHERE b.ledger_id = p_ledger_id AND b.id = ids.id
                       OFFSET 0) ba) s
      ) a
      LEFT JOIN banks b ON b.id = a.bank_id;
    -- Positions taken from the arrays themselves, so the map cannot disagree with them.
    v_a.map := coalesce((SELECT jsonb_object_agg(x.id, x.k) FROM unnest(v_a.id) WITH ORDINALITY AS x(id, k)), '{}'::jsonb);
    v_a.changed := array_fill(false, ARRAY[coalesce(cardinality(v_a.id), 0)]);
    RETURN v_a;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_lock(text, dl_post_batch) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 4. Idempotency, and the results' starting point: a reference already in the ledger is answered
--    with the original entry (replayed) or refused (reference_conflict, naming the fields). This
--    comes before the account and funds checks, so the retry of a posting that succeeded is a
--    replay even if the balance has moved on since. The entries committed between the look-up of
--    dl_post_lookup_refs and the head lock are checked now, under the lock (a range of the
--    primary key, usually empty).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_replays(p_ledger_id text, p_b dl_post_batch, p_refs dl_post_refs, p_head_seq bigint)
RETURNS dl_post_results
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    n      integer := p_b.n;
    m_ids  bigint[] := p_refs.ids;
    rec    record;
    r_code text[] := p_b.code;   r_msg text[] := p_b.msg;     r_details jsonb[] := p_b.details;
    r_id   bigint[] := array_fill(NULL::bigint, ARRAY[n]);    r_seq  bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    r_prev bytea[] := array_fill(NULL::bytea, ARRAY[n]);      r_hash bytea[] := array_fill(NULL::bytea, ARRAY[n]);
    r_ts   timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    r_rec  timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    r_meta jsonb[] := array_fill(NULL::jsonb, ARRAY[n]);
    r_dbal numeric[] := array_fill(NULL::numeric, ARRAY[n]);  r_cbal numeric[] := array_fill(NULL::numeric, ARRAY[n]);
BEGIN
    IF p_head_seq > coalesce(p_refs.seen_seq, 0) AND p_refs.refset IS NOT NULL THEN
        m_ids := coalesce(m_ids, '{}'::bigint[]) || ARRAY(
            SELECT x.id FROM ledger_entries x
             WHERE x.ledger_id = p_ledger_id
               -- (both bounds: the generic plan then estimates a narrow range and scans the
               -- primary key; "seq > $n" alone is estimated at a third of the table)
               AND x.seq BETWEEN coalesce(p_refs.seen_seq, 0) + 1 AND p_head_seq
               AND p_refs.refset ? x.reference_id
             -- In seq order, which only the primary key gives without a sort: a plan made on an
             -- empty table (a new database) then still scans the range, not every entry of the
             -- ledger through the reference index (led by ledger_id too).
             ORDER BY x.seq);
    END IF;
    IF cardinality(m_ids) > 0 THEN
        FOR rec IN
            SELECT u.k::integer AS k, u.ref, le.id, le.seq, le.block_hash, le.previous_hash, le.recorded_at,
                   le.debit_balance_after, le.credit_balance_after, le.metadata, le.timestamp_utc,
                   dl_entry_diff(le.debit_account_id, le.credit_account_id, le.amount, le.currency_code, le.asset_type,
                                 le.transaction_type, le.fx_rate, le.metadata, le.timestamp_utc, le.reverses_entry_id,
                                 u.debit, u.credit, u.amount, u.currency, u.asset, u.ttype,
                                 u.fx, u.meta, u.ts, u.ts_given, u.reverses) AS diff
              FROM ledger_entries le
              JOIN unnest(p_b.ref, p_b.code, p_b.debit, p_b.credit, p_b.amount, p_b.currency, p_b.asset, p_b.ttype,
                          p_b.fx, p_b.meta, p_b.ts, p_b.ts_given, p_b.reverses) WITH ORDINALITY
                   AS u(ref, code, debit, credit, amount, currency, asset, ttype, fx, meta, ts, ts_given, reverses, k)
                ON u.ref = le.reference_id
             WHERE le.id = ANY (m_ids) AND le.ledger_id = p_ledger_id AND u.code IS NULL
        LOOP
            r_id[rec.k] := rec.id;
            r_seq[rec.k] := rec.seq;
            r_hash[rec.k] := rec.block_hash;
            r_prev[rec.k] := rec.previous_hash;
            r_ts[rec.k] := rec.timestamp_utc;
            r_rec[rec.k] := rec.recorded_at;
            r_meta[rec.k] := rec.metadata;
            r_dbal[rec.k] := rec.debit_balance_after;
            r_cbal[rec.k] := rec.credit_balance_after;
            IF cardinality(rec.diff) = 0 THEN
                r_code[rec.k] := 'replayed';
            ELSE
                r_code[rec.k] := 'reference_conflict';
                r_msg[rec.k] := format('reference_id %s was already used for entry %s with a different %s',
                                       to_jsonb(rec.ref), rec.id, array_to_string(rec.diff, ', '));
                r_details[rec.k] := jsonb_build_object('reference_id', rec.ref, 'existing_entry_id', rec.id,
                                                       'fields', to_jsonb(rec.diff));
            END IF;
        END LOOP;
    END IF;
    RETURN ROW(r_code, r_msg, r_details, r_id, r_seq, r_prev, r_hash, r_ts, r_rec, r_meta, r_dbal, r_cbal,
               array_fill(NULL::text, ARRAY[n]), array_fill(NULL::text, ARRAY[n]))::dl_post_results;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_replays(text, dl_post_batch, dl_post_refs, bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 5. Reversal targets, once for the batch (none in most batches): position map, the original
--    entries and how much of each is already reversed (committed reversals).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_reversal_targets(p_ledger_id text, p_b dl_post_batch) RETURNS dl_post_reversals
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    v dl_post_reversals;
BEGIN
    v.map := '{}'::jsonb;
    IF EXISTS (SELECT 1 FROM unnest(p_b.reverses) AS x WHERE x IS NOT NULL) THEN
        SELECT coalesce(jsonb_object_agg(t.id, t.k), '{}'::jsonb), array_agg(t.debit ORDER BY t.k),
               array_agg(t.credit ORDER BY t.k), array_agg(t.amount ORDER BY t.k), array_agg(t.currency ORDER BY t.k),
               array_agg(t.asset ORDER BY t.k), array_agg(t.reversed ORDER BY t.k)
          INTO v.map, v.debit, v.credit, v.amount, v.currency, v.asset, v.done
          FROM (SELECT row_number() OVER (ORDER BY le.id) AS k, le.id, le.debit_account_id AS debit,
                       le.credit_account_id AS credit, le.amount, le.currency_code AS currency, le.asset_type AS asset,
                       coalesce((SELECT sum(r.amount) FROM ledger_entries r
                                  WHERE r.ledger_id = p_ledger_id AND r.reverses_entry_id = le.id), 0) AS reversed
                  FROM (SELECT DISTINCT x AS id FROM unnest(p_b.reverses) AS x WHERE x IS NOT NULL) ids
                 CROSS JOIN LATERAL (SELECT e.* FROM ledger_entries e
                                      WHERE e.id = ids.id AND e.ledger_id = p_ledger_id OFFSET 0) le) t;
    END IF;
    RETURN v;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_reversal_targets(text, dl_post_batch) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 6. One pass in batch order, under the head lock: in-batch retries, accounts, reversals, funds,
--    seq and the hash chain. Checks in order of precedence; the first that fails is the result.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_walk(
    p_ledger_id text, p_b dl_post_batch, p_r dl_post_results, p_a dl_post_accounts, p_v dl_post_reversals)
RETURNS dl_post_walked
LANGUAGE plpgsql
AS $fn$
DECLARE
    -- Local copies (expanded arrays: O(1) subscripts). The batch:
    e_debit text[] := p_b.debit;    e_credit text[] := p_b.credit;   e_amount numeric[] := p_b.amount;
    e_currency text[] := p_b.currency;  e_asset text[] := p_b.asset;  e_ttype text[] := p_b.ttype;
    e_ref text[] := p_b.ref;        e_fx numeric[] := p_b.fx;        e_meta jsonb[] := p_b.meta;
    e_ts timestamptz[] := p_b.ts;   e_ts_given boolean[] := p_b.ts_given;  e_reverses bigint[] := p_b.reverses;
    e_id bigint[] := p_b.id;        e_pre bytea[] := p_b.pre;        e_post bytea[] := p_b.post;
    e_prev_dup integer[] := p_b.prev_dup;
    -- The results:
    r_code text[] := p_r.code;      r_msg text[] := p_r.msg;         r_details jsonb[] := p_r.details;
    r_id bigint[] := p_r.id;        r_seq bigint[] := p_r.seq;       r_prev bytea[] := p_r.prev;
    r_hash bytea[] := p_r.hash;     r_ts timestamptz[] := p_r.ts;    r_rec timestamptz[] := p_r.rec;
    r_meta jsonb[] := p_r.meta;     r_dbal numeric[] := p_r.dbal;    r_cbal numeric[] := p_r.cbal;
    e_dbank text[] := p_r.dbank;    e_cbank text[] := p_r.cbank;
    -- The accounts (in id order) and the reversed entries:
    a_id text[] := p_a.id;          a_bal numeric[] := p_a.bal;      a_avail numeric[] := p_a.avail;
    a_limit numeric[] := p_a.lim;   a_currency text[] := p_a.currency;  a_asset text[] := p_a.asset;
    a_status text[] := p_a.status;  a_bank text[] := p_a.bank;       a_changed boolean[] := p_a.changed;
    v_rev_debit text[] := p_v.debit;  v_rev_credit text[] := p_v.credit;  v_rev_amount numeric[] := p_v.amount;
    v_rev_currency text[] := p_v.currency;  v_rev_asset text[] := p_v.asset;  v_rev_done numeric[] := p_v.done;
    -- The walk:
    i integer; j integer; d integer; c integer; rv integer; amt numeric; diff text[]; rj dl_post_rejection;
    v_seq bigint := p_a.head_seq;   v_hash bytea := p_a.head_hash;   v_created integer := 0;   v_outbox boolean := false;
BEGIN
    FOR i IN 1..p_b.n LOOP
        CONTINUE WHEN r_code[i] IS NOT NULL;

        j := e_prev_dup[i];
        IF j IS NOT NULL THEN
            -- The same reference earlier in this batch: compare with the nearest earlier occurrence
            -- that was created; if none was, this one is judged as a fresh posting.
            WHILE j IS NOT NULL AND r_code[j] IS DISTINCT FROM 'created' LOOP
                j := e_prev_dup[j];
            END LOOP;
            IF j IS NOT NULL THEN
                diff := dl_entry_diff(e_debit[j], e_credit[j], e_amount[j], e_currency[j], e_asset[j], e_ttype[j],
                                      e_fx[j], e_meta[j], e_ts[j], e_reverses[j],
                                      e_debit[i], e_credit[i], e_amount[i], e_currency[i], e_asset[i], e_ttype[i],
                                      e_fx[i], e_meta[i], e_ts[i], e_ts_given[i], e_reverses[i]);
                r_id[i] := r_id[j]; r_seq[i] := r_seq[j]; r_hash[i] := r_hash[j]; r_prev[i] := r_prev[j];
                r_ts[i] := r_ts[j]; r_rec[i] := r_rec[j]; r_dbal[i] := r_dbal[j]; r_cbal[i] := r_cbal[j];
                r_meta[i] := r_meta[j];
                IF cardinality(diff) = 0 THEN
                    r_code[i] := 'replayed';
                ELSE
                    r_code[i] := 'reference_conflict';
                    r_msg[i] := format('reference_id %s is used by entry %s of this batch (entry id %s) with a different %s',
                                       to_jsonb(e_ref[i]), j, r_id[j], array_to_string(diff, ', '));
                    r_details[i] := jsonb_build_object('reference_id', e_ref[i], 'existing_entry_id', r_id[j],
                                                       'batch_entry', j, 'fields', to_jsonb(diff));
                END IF;
                CONTINUE;
            END IF;
        END IF;

        d := (p_a.map ->> e_debit[i])::integer;
        c := (p_a.map ->> e_credit[i])::integer;
        amt := e_amount[i];
        rv := (p_v.map ->> e_reverses[i]::text)::integer;  -- (NULL when the entry reverses nothing)
        rj := NULL;
        IF d IS NULL OR c IS NULL THEN
            rj := dl_post_reject_unknown_account(p_ledger_id, e_debit[i], e_credit[i], d IS NULL, c IS NULL);
        ELSIF a_currency[d] <> e_currency[i] OR a_asset[d] <> e_asset[i]
              OR a_currency[c] <> e_currency[i] OR a_asset[c] <> e_asset[i] THEN
            rj := dl_post_reject_currency(e_currency[i], e_asset[i], a_id[d], a_currency[d], a_asset[d],
                                          a_id[c], a_currency[c], a_asset[c]);
        ELSIF a_status[d] <> 'active' OR a_status[c] <> 'active' THEN
            rj := dl_post_reject_inactive(a_id[d], a_status[d], a_id[c], a_status[c]);
        -- A reversal moves (part of) an entry's amount back: the same two accounts the other way
        -- round, the same currency and asset type, and never more in total than the entry moved
        -- (counting the reversals earlier in this batch).
        ELSIF e_reverses[i] IS NOT NULL AND rv IS NULL THEN
            rj := dl_post_reject_unknown_entry(p_ledger_id, e_reverses[i]);
        ELSIF e_reverses[i] IS NOT NULL
              AND (v_rev_debit[rv] <> e_credit[i] OR v_rev_credit[rv] <> e_debit[i]
                   OR v_rev_currency[rv] <> e_currency[i] OR v_rev_asset[rv] <> e_asset[i]) THEN
            rj := dl_post_reject_reversal(e_reverses[i], v_rev_debit[rv], v_rev_credit[rv], v_rev_amount[rv],
                                          v_rev_currency[rv], v_rev_asset[rv]);
        ELSIF e_reverses[i] IS NOT NULL AND v_rev_done[rv] + amt > v_rev_amount[rv] THEN
            rj := dl_post_reject_overreversal(e_reverses[i], v_rev_amount[rv], v_rev_done[rv], e_currency[i]);
        -- available_balance is balance - reserved_balance (004's CHECK): funds reserved by holds
        -- (db/functions/posting_holds.sql) are not available, so this check respects them.
        ELSIF a_limit[d] IS NOT NULL AND a_avail[d] - amt < -a_limit[d] THEN
            rj := dl_post_reject_funds(a_id[d], a_avail[d], a_limit[d], amt, e_currency[i]);
        -- Every stored balance the entry moves must stay within NUMERIC(38,18): the debit's balance
        -- and available_balance go down, the credit's go up (reserved_balance does not move). As
        -- available_balance = balance - reserved_balance, the debit's available_balance is the
        -- one that overflows first when funds are reserved on an unlimited account.
        ELSIF a_bal[d] - amt <= -1e20 OR a_avail[d] - amt <= -1e20 OR a_bal[c] + amt >= 1e20 OR a_avail[c] + amt >= 1e20 THEN
            rj := CASE WHEN a_bal[d] - amt <= -1e20 THEN dl_post_reject_overflow(amt, a_id[d], 'balance')
                       WHEN a_avail[d] - amt <= -1e20 THEN dl_post_reject_overflow(amt, a_id[d], 'available_balance')
                       WHEN a_bal[c] + amt >= 1e20 THEN dl_post_reject_overflow(amt, a_id[c], 'balance')
                       ELSE dl_post_reject_overflow(amt, a_id[c], 'available_balance') END;
        END IF;
        IF rj.code IS NOT NULL THEN
            r_code[i] := rj.code; r_msg[i] := rj.msg; r_details[i] := rj.details;
            CONTINUE;
        END IF;

        a_bal[d] := a_bal[d] - amt;
        a_avail[d] := a_avail[d] - amt;
        a_bal[c] := a_bal[c] + amt;
        a_avail[c] := a_avail[c] + amt;
        a_changed[d] := true;
        a_changed[c] := true;
        v_seq := v_seq + 1;
        r_prev[i] := v_hash;
        v_hash := sha256(v_hash || e_pre[i] || convert_to(v_seq::text, 'UTF8') || e_post[i]);
        r_code[i] := 'created';
        r_id[i] := e_id[i];
        r_seq[i] := v_seq;
        r_hash[i] := v_hash;
        r_ts[i] := e_ts[i];
        r_rec[i] := now();
        r_meta[i] := e_meta[i];
        r_dbal[i] := a_bal[d];
        r_cbal[i] := a_bal[c];
        IF e_reverses[i] IS NOT NULL THEN
            v_rev_done[rv] := v_rev_done[rv] + amt;
        END IF;
        IF a_bank[d] IS NOT NULL OR a_bank[c] IS NOT NULL THEN
            e_dbank[i] := a_bank[d];
            e_cbank[i] := a_bank[c];
            v_outbox := true;
        END IF;
        v_created := v_created + 1;
    END LOOP;

    RETURN ROW(ROW(r_code, r_msg, r_details, r_id, r_seq, r_prev, r_hash, r_ts, r_rec, r_meta, r_dbal, r_cbal,
                   e_dbank, e_cbank)::dl_post_results,
               ROW(true, p_a.head_seq, p_a.head_hash, a_id, a_bal, a_avail, a_limit, a_currency, a_asset, a_status,
                   a_bank, p_a.bankid, p_a.map, a_changed)::dl_post_accounts,
               v_seq, v_hash, v_created, v_outbox)::dl_post_walked;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_walk(text, dl_post_batch, dl_post_results, dl_post_accounts, dl_post_reversals) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 7. An atomic batch with any rejection writes nothing: what would have been created (or a
--    replay of it) answers not_applied; replays of committed entries still answer replayed.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_atomic(p_w dl_post_walked, p_head_seq bigint) RETURNS dl_post_walked
LANGUAGE plpgsql
AS $fn$
DECLARE
    w dl_post_walked := p_w;
    r dl_post_results := p_w.res;
    r_code text[] := r.code;     r_msg text[] := r.msg;       r_details jsonb[] := r.details;
    r_id bigint[] := r.id;       r_seq bigint[] := r.seq;     r_prev bytea[] := r.prev;
    r_hash bytea[] := r.hash;    r_ts timestamptz[] := r.ts;  r_rec timestamptz[] := r.rec;
    r_meta jsonb[] := r.meta;    r_dbal numeric[] := r.dbal;  r_cbal numeric[] := r.cbal;
    v_first_bad integer;
BEGIN
    FOR i IN 1..cardinality(r_code) LOOP
        IF r_code[i] NOT IN ('created', 'replayed') THEN
            v_first_bad := i;
            EXIT;
        END IF;
    END LOOP;
    IF v_first_bad IS NULL THEN
        RETURN w;
    END IF;
    FOR i IN 1..cardinality(r_code) LOOP
        IF r_seq[i] > p_head_seq THEN
            -- Refers to an entry of this batch, which is not written: created entries and in-batch
            -- replays become not_applied; an in-batch conflict keeps its code (it is a reason in
            -- itself) but has no entry to show.
            IF r_code[i] IN ('created', 'replayed') THEN
                r_code[i] := 'not_applied';
                r_msg[i] := format('not applied: entry %s of this atomic batch was rejected (%s)', v_first_bad, r_code[v_first_bad]);
                r_details[i] := jsonb_build_object('rejected_entry', v_first_bad, 'rejected_result', r_code[v_first_bad]);
            ELSE
                r_details[i] := r_details[i] - 'existing_entry_id';
            END IF;
            r_id[i] := NULL; r_seq[i] := NULL; r_hash[i] := NULL; r_prev[i] := NULL;
            r_ts[i] := NULL; r_rec[i] := NULL; r_dbal[i] := NULL; r_cbal[i] := NULL; r_meta[i] := NULL;
        END IF;
    END LOOP;
    w.res := ROW(r_code, r_msg, r_details, r_id, r_seq, r_prev, r_hash, r_ts, r_rec, r_meta, r_dbal, r_cbal,
                 r.dbank, r.cbank)::dl_post_results;
    w.created := 0;
    RETURN w;
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_atomic(dl_post_walked, bigint) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- 8. Writes: head first (the chain-check trigger compares it with the new entries), then the
--    entries in one INSERT, the balances in one UPDATE, the outbox rows in one INSERT, with the
--    transaction-local dualledger.posting flag on for the guard triggers.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION dl_post_write(p_ledger_id text, p_b dl_post_batch, p_w dl_post_walked) RETURNS void
LANGUAGE plpgsql
AS $fn$
#variable_conflict use_column
DECLARE
    r         dl_post_results := p_w.res;
    a         dl_post_accounts := p_w.acc;
    v_updated bigint;
BEGIN
    PERFORM set_config('dualledger.posting', 'on', true);
    UPDATE ledgers l SET head_seq = p_w.seq, head_hash = p_w.hash WHERE l.id = p_ledger_id;

    INSERT INTO ledger_entries (id, ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code,
                                asset_type, transaction_type, reference_id, fx_rate, metadata, timestamp_utc,
                                previous_hash, block_hash, reverses_entry_id, debit_balance_after, credit_balance_after)
    SELECT u.id, p_ledger_id, u.seq, u.debit, u.credit, u.amount, u.currency, u.asset, u.ttype, u.ref, u.fx,
           u.meta, u.ts, u.prev, u.hash, u.reverses, u.dbal, u.cbal
      FROM unnest(r.code, p_b.id, r.seq, p_b.debit, p_b.credit, p_b.amount, p_b.currency, p_b.asset, p_b.ttype,
                  p_b.ref, p_b.fx, p_b.meta, p_b.ts, r.prev, r.hash, p_b.reverses, r.dbal, r.cbal)
           AS u(code, id, seq, debit, credit, amount, currency, asset, ttype, ref, fx, meta, ts, prev, hash, reverses, dbal, cbal)
     WHERE u.code = 'created';

    -- The accounts' status, overdraft limit and bank were read without a row lock: an owner
    -- changing them meanwhile (only the owner may: the app role has no UPDATE on accounts) makes
    -- the row fail these conditions, and the batch is refused as a serialization failure
    -- (40001), which callers retry, instead of moving money past a freeze or a lowered limit.
    UPDATE bank_accounts ba
       SET balance = u.bal, available_balance = u.avail, updated_at = now()
      FROM unnest(a.id, a.bal, a.avail, a.changed, a.lim, a.status, a.bankid)
           AS u(id, bal, avail, changed, lim, status, bank)
     WHERE ba.ledger_id = p_ledger_id AND ba.id = u.id AND u.changed
       AND ba.status = u.status AND ba.overdraft_limit IS NOT DISTINCT FROM u.lim
       AND ba.bank_id IS NOT DISTINCT FROM u.bank;
    GET DIAGNOSTICS v_updated = ROW_COUNT;
    IF v_updated <> (SELECT count(*) FROM unnest(a.changed) AS x WHERE x) THEN
        RAISE EXCEPTION 'an account of this batch was changed while it was being posted: retry the batch'
            USING ERRCODE = '40001';
    END IF;

    IF p_w.outbox THEN
        INSERT INTO dual_ledger_outbox (ledger_id, entry_id, entry_seq, reference_id, scb_id)
        SELECT DISTINCT p_ledger_id, u.id, u.seq, u.ref, b.scb
          FROM unnest(r.code, r.prev, p_b.id, r.seq, p_b.ref, r.dbank, r.cbank) AS u(code, prev, id, seq, ref, dbank, cbank)
         CROSS JOIN LATERAL (VALUES (u.dbank), (u.cbank)) AS b(scb)
         WHERE u.code = 'created' AND b.scb IS NOT NULL;
    END IF;
    PERFORM set_config('dualledger.posting', '', true);
END
$fn$;
REVOKE ALL ON FUNCTION dl_post_write(text, dl_post_batch, dl_post_walked) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- The driver (005's signature and results; 010's grants).
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION post_ledger_entries(p_ledger_id text, p_entries jsonb, p_atomic boolean DEFAULT false)
RETURNS TABLE (
    idx            integer,  -- 1-based position in the batch
    result         text,     -- created | replayed | reference_conflict | insufficient_funds | ... | not_applied
    entry_id       bigint,
    seq            bigint,
    block_hash     text,     -- hex
    previous_hash  text,     -- hex
    timestamp_utc  timestamptz,
    metadata       jsonb,    -- as stored (a replay answers the original's)
    recorded_at    timestamptz,
    debit_balance  numeric,  -- debit account's balance right after the entry
    credit_balance numeric,  -- credit account's balance right after the entry
    message        text,
    details        jsonb
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
-- Generic plans: a custom plan for a brand-new ledger (no statistics for its id yet, estimate
-- "1 row") once looked references up by ledger_id alone and filtered every entry of the ledger
-- per reference. With the ledger id as a parameter the planner uses the unique indexes. (Set
-- here, it holds for the stages too.)
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    max_batch CONSTANT integer := 10000;
    n      integer;
    b      dl_post_batch;
    refs   dl_post_refs;
    acc    dl_post_accounts;
    w      dl_post_walked;
    r      dl_post_results;
BEGIN
    IF p_atomic IS NULL THEN
        RAISE EXCEPTION 'invalid_request: atomic must be true or false, not NULL' USING ERRCODE = 'DL009';
    END IF;
    IF p_entries IS NULL OR jsonb_typeof(p_entries) <> 'array' THEN
        RAISE EXCEPTION 'invalid_request: entries must be a JSON array of entry objects'
            USING ERRCODE = 'DL009';
    END IF;
    n := jsonb_array_length(p_entries);
    IF n = 0 OR n > max_batch THEN
        RAISE EXCEPTION 'invalid_request: a batch holds 1 to % entries, got %', max_batch, n
            USING ERRCODE = 'DL009';
    END IF;

    b := dl_post_parse(p_ledger_id, p_entries);          -- set-based, before any lock
    refs := dl_post_lookup_refs(p_ledger_id, b);         -- before the lock too
    acc := dl_post_lock(p_ledger_id, b);                 -- the head lock; accounts under it
    IF NOT acc.found THEN
        RETURN QUERY
            SELECT k, 'unknown_ledger'::text, NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::timestamptz,
                   NULL::jsonb, NULL::timestamptz, NULL::numeric, NULL::numeric,
                   format('unknown ledger %s', to_jsonb(p_ledger_id)), jsonb_build_object('ledger_id', p_ledger_id)
              FROM generate_series(1, n) AS k;
        RETURN;
    END IF;
    w := dl_post_walk(p_ledger_id, b, dl_post_replays(p_ledger_id, b, refs, acc.head_seq), acc,
                      dl_post_reversal_targets(p_ledger_id, b));
    IF p_atomic AND w.created < n THEN
        w := dl_post_atomic(w, acc.head_seq);
    END IF;
    IF w.created > 0 THEN
        PERFORM dl_post_write(p_ledger_id, b, w);
    END IF;

    r := w.res;
    RETURN QUERY
        SELECT u.k::integer, u.code, u.id, u.seq, encode(u.hash, 'hex'), encode(u.prev, 'hex'), u.ts, u.meta, u.rec,
               u.dbal, u.cbal, u.msg, u.det
          FROM unnest(r.code, r.id, r.seq, r.hash, r.prev, r.ts, r.meta, r.rec, r.dbal, r.cbal, r.msg, r.details)
               WITH ORDINALITY AS u(code, id, seq, hash, prev, ts, meta, rec, dbal, cbal, msg, det, k);
END
$fn$;
REVOKE ALL ON FUNCTION post_ledger_entries(text, jsonb, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_ledger_entries(text, jsonb, boolean) TO dualledger_api;
