-- 005_post_ledger_entry.sql
--
-- The posting functions: the only way entries are written (DESIGN 6).
--
--   post_ledger_entries(ledger_id, entries jsonb, atomic boolean DEFAULT false)
--       A batch: one result row per entry, in order. Set-based where it can be, one pass over the
--       batch for what is sequential by nature (funds checks and the hash chain). Locks the ledger
--       head once and the touched accounts in id order. Never raises for a business rejection: the
--       result says created, replayed, reference_conflict, insufficient_funds, ... With atomic =>
--       true, one rejection means nothing is written (the others answer not_applied).
--
--   post_ledger_entry(ledger_id, debit, credit, amount, currency, asset_type, transaction_type,
--                     reference_id, fx_rate, metadata)
--       The seed's signature, for psql and SQL callers: a batch of one that returns entry_id, seq,
--       block_hash and both balances, raises SQLSTATE 23505 on a duplicate reference, and raises its
--       own SQLSTATE (class DL, see dl_result_sqlstate) with the result code at the start of the
--       message for every other rejection.

-- Result code -> SQLSTATE for post_ledger_entry's errors (docs/error-codes.md).
CREATE OR REPLACE FUNCTION dl_result_sqlstate(p_code text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_code
    WHEN 'replayed'           THEN '23505'
    WHEN 'reference_conflict' THEN '23505'
    WHEN 'insufficient_funds' THEN 'DL001'
    WHEN 'unknown_account'    THEN 'DL002'
    WHEN 'unknown_ledger'     THEN 'DL003'
    WHEN 'currency_mismatch'  THEN 'DL004'
    WHEN 'same_account'       THEN 'DL005'
    WHEN 'invalid_amount'     THEN 'DL006'
    WHEN 'unknown_currency'   THEN 'DL007'
    WHEN 'invalid_asset_type' THEN 'DL008'
    WHEN 'invalid_request'    THEN 'DL009'
    WHEN 'account_inactive'   THEN 'DL010'
    WHEN 'unknown_entry'      THEN 'DL012'
    WHEN 'invalid_reversal'   THEN 'DL013'
    WHEN 'not_applied'        THEN 'DL011'
    ELSE 'DL000' END;

-- An amount as text for messages and details: at least the currency's minor unit of decimals
-- when it is small ("90.00" USD, "1000" JPY), otherwise without trailing zeros.
CREATE OR REPLACE FUNCTION dl_amount_text(p_amount numeric, p_currency text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN p_amount IS NULL THEN NULL
            ELSE round(p_amount, greatest(scale(trim_scale(p_amount)),
                                          coalesce((SELECT CASE WHEN c.minor_unit <= 4 THEN c.minor_unit END
                                                      FROM currencies c WHERE c.code = p_currency), 0)))::text END;

-- The fields in which two versions of one posting differ (for replay detection). timestamp_utc is
-- compared only when the retry states it: a retry that leaves it out means "now" both times.
CREATE OR REPLACE FUNCTION dl_entry_diff(
    a_debit text, a_credit text, a_amount numeric, a_currency text, a_asset text, a_ttype text,
    a_fx numeric, a_meta jsonb, a_ts timestamptz, a_reverses bigint,
    b_debit text, b_credit text, b_amount numeric, b_currency text, b_asset text, b_ttype text,
    b_fx numeric, b_meta jsonb, b_ts timestamptz, b_ts_given boolean, b_reverses bigint
) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN array_remove(ARRAY[
    CASE WHEN a_debit IS DISTINCT FROM b_debit THEN 'debit_account_id' END,
    CASE WHEN a_credit IS DISTINCT FROM b_credit THEN 'credit_account_id' END,
    CASE WHEN a_amount IS DISTINCT FROM b_amount THEN 'amount' END,
    CASE WHEN a_currency IS DISTINCT FROM b_currency THEN 'currency_code' END,
    CASE WHEN a_asset IS DISTINCT FROM b_asset THEN 'asset_type' END,
    CASE WHEN a_ttype IS DISTINCT FROM b_ttype THEN 'transaction_type' END,
    CASE WHEN a_fx IS DISTINCT FROM b_fx THEN 'fx_rate' END,
    CASE WHEN coalesce(a_meta, '{}'::jsonb) IS DISTINCT FROM coalesce(b_meta, '{}'::jsonb) THEN 'metadata' END,
    CASE WHEN b_ts_given AND a_ts IS DISTINCT FROM b_ts THEN 'timestamp_utc' END,
    CASE WHEN a_reverses IS DISTINCT FROM b_reverses THEN 'reverses_entry_id' END
], NULL);

-- An RFC 3339 date-time with an explicit offset, between 1900 and 9999, as timestamptz; NULL when
-- the text is not one. Checked field by field so that bad input never raises (a raise would cost
-- the whole batch, and catching it would cost a subtransaction per entry).
CREATE OR REPLACE FUNCTION dl_parse_timestamp(p text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    m  text[];
    y  integer;
    mo integer;
    dd integer;
    ts timestamptz;
BEGIN
    IF p IS NULL THEN
        RETURN NULL;
    END IF;
    m := regexp_match(p, '^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?(?:[Zz]|[+-]([0-9]{2}):?([0-9]{2}))$');
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    y := m[1]::integer; mo := m[2]::integer; dd := m[3]::integer;
    IF y < 1900 OR mo NOT BETWEEN 1 AND 12 OR dd < 1
       OR dd > extract(day FROM make_date(y, mo, 1) + interval '1 month - 1 day')
       OR m[4]::integer > 23 OR m[5]::integer > 59 OR m[6]::integer > 59
       OR coalesce(m[8]::integer, 0) > 15 OR coalesce(m[9]::integer, 0) > 59 THEN
        RETURN NULL;
    END IF;
    ts := p::timestamptz;
    IF ts < '1900-01-01T00:00:00Z' OR ts >= '10000-01-01T00:00:00Z' THEN
        RETURN NULL;
    END IF;
    RETURN ts;
END $$;

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
-- per reference. With the ledger id as a parameter the planner uses the unique indexes.
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
DECLARE
    max_batch CONSTANT integer := 10000;
    n         integer;
    i         integer;
    j         integer;
    d         integer;
    c         integer;
    amt       numeric;
    diff      text[];
    rec       record;
    -- Per entry, indexed by position in the batch. (Arrays walked with unnest() in SQL and with
    -- subscripts only in PL/pgSQL: a subscript inside an SQL statement costs about a microsecond.)
    e_debit    text[];
    e_credit   text[];
    e_amount   numeric[];
    e_currency text[];
    e_asset    text[];
    e_ttype    text[];
    e_ref      text[];
    e_fx       numeric[];
    e_meta     jsonb[];
    e_ts       timestamptz[];
    e_ts_given boolean[];
    e_reverses bigint[];
    e_id       bigint[];
    e_pre      bytea[];     -- canonical encoding up to seq ("DLE1" US id US ledger_id US)
    e_post     bytea[];     -- canonical encoding after seq (US debit_account_id ... reverses_entry_id)
    e_pos      integer[];   -- 1..n, checked
    e_prev_dup integer[];   -- previous position in the batch with the same reference_id
    e_dbank    text[];      -- registered bank of the debit / credit account (outbox)
    e_cbank    text[];
    r_code     text[];
    r_msg      text[];
    r_details  jsonb[];
    r_id       bigint[];
    r_seq      bigint[];
    r_prev     bytea[];
    r_hash     bytea[];
    r_ts       timestamptz[];
    r_rec      timestamptz[];
    r_meta     jsonb[];
    r_dbal     numeric[];
    r_cbal     numeric[];
    -- Per touched account, in id order (the lock order).
    a_id       text[];
    a_bal      numeric[];
    a_avail    numeric[];
    a_limit    numeric[];
    a_currency text[];
    a_asset    text[];
    a_status   text[];
    a_bank     text[];      -- the owning bank if it is registered (mirrored), else NULL
    a_bankid   text[];      -- bank_id as read (to detect a concurrent change)
    v_updated  bigint;
    a_changed  boolean[];
    a_map      jsonb;       -- account id -> index into a_*
    -- The chain.
    v_head_seq  bigint;
    v_head_hash bytea;
    v_seen_seq  bigint;      -- head seq when the references were looked up (before the lock)
    v_refset    jsonb;       -- this batch's references, as a set
    m_ids       bigint[];    -- entries that already hold one of this batch's references
    v_seq       bigint;
    v_hash      bytea;
    v_created   integer := 0;
    v_outbox    boolean := false;
    v_first_bad integer;
    -- Entries reversed by this batch: id -> position, and per position the original entry and
    -- the amount reversed so far (committed reversals plus this batch's, as the pass goes).
    rv             integer;
    v_rev_map      jsonb := '{}'::jsonb;
    v_rev_debit    text[];
    v_rev_credit   text[];
    v_rev_amount   numeric[];
    v_rev_currency text[];
    v_rev_asset    text[];
    v_rev_done     numeric[];
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

    -- 1. Parse and validate every entry on its own, before taking any lock, and prepare the parts of
    --    the canonical encoding that do not depend on seq. `problem` names the first thing wrong,
    --    in order of precedence; code, field and message follow from it.
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
      INTO e_debit, e_credit, e_amount, e_currency, e_asset, e_ttype, e_ref, e_fx, e_meta, e_ts, e_ts_given,
           e_reverses, e_id, e_pre, e_post, r_code, r_msg, r_details, e_pos
      FROM (
        SELECT w.*,
               CASE WHEN w.code IS NULL THEN nextval('ledger_entries_id_seq'::regclass) END AS id,
               CASE WHEN w.code IS NULL THEN w.amount_txt::numeric END AS amount,
               CASE WHEN w.code IS NULL THEN w.fx_txt::numeric END AS fx,
               CASE WHEN w.code IS NULL THEN w.reverses_txt::bigint END AS reverses,
               CASE WHEN w.code IS NULL THEN coalesce(dl_parse_timestamp(w.ts_txt), now()) END AS ts,
               CASE w.problem
                 WHEN 'entry' THEN format('entry %s must be a JSON object', w.i)
                 WHEN 'ledger_id' THEN format('ledger_id %s does not match the batch''s ledger %s', w.raw -> 'ledger_id', to_jsonb(p_ledger_id))
                 WHEN 'debit_account_id' THEN format('debit_account_id is required (a non-empty string), got %s', coalesce((w.raw -> 'debit_account_id')::text, 'nothing'))
                 WHEN 'credit_account_id' THEN format('credit_account_id is required (a non-empty string), got %s', coalesce((w.raw -> 'credit_account_id')::text, 'nothing'))
                 WHEN 'reference_id' THEN format('reference_id is required: a string of 1 to 255 characters without control characters, got %s', coalesce(left((w.raw -> 'reference_id')::text, 300), 'nothing'))
                 WHEN 'transaction_type' THEN format('transaction_type is required: a string of 1 to 64 characters without control characters, got %s', coalesce(left((w.raw -> 'transaction_type')::text, 100), 'nothing'))
                 WHEN 'amount_missing' THEN 'amount is required (a decimal string such as "100.00")'
                 WHEN 'amount_type' THEN format('amount must be a decimal string such as "100.00", not a JSON %s', w.amount_type)
                 WHEN 'amount_length' THEN format('amount is %s characters long: at most 64 (20 integer digits, 18 decimals)', length(w.amount_txt))
                 WHEN 'amount_syntax' THEN format('amount %s is not a plain decimal string (digits with an optional "." and decimals; no sign, exponent, separators or spaces)', left((w.raw -> 'amount')::text, 80))
                 WHEN 'amount_range' THEN format('amount %s is out of range: at most 20 integer digits', left((w.raw -> 'amount')::text, 80))
                 WHEN 'amount_precision' THEN format('amount %s has more than 18 decimals', left((w.raw -> 'amount')::text, 80))
                 WHEN 'amount_sign' THEN format('amount must be greater than zero, got %s', w.raw -> 'amount')
                 WHEN 'currency_missing' THEN format('currency_code is required (an ISO 4217 code such as "USD"), got %s', coalesce((w.raw -> 'currency_code')::text, 'nothing'))
                 WHEN 'currency_code' THEN format('unknown currency code %s (ISO 4217 codes are three upper-case letters)', left((w.raw -> 'currency_code')::text, 40))
                 WHEN 'asset_type' THEN format('asset_type %s is not one of fiat, cbdc, commodity, security', coalesce(left((w.raw -> 'asset_type')::text, 40), 'nothing'))
                 WHEN 'amount_minor_unit' THEN format('amount %s has %s decimals but %s allows at most %s', w.raw -> 'amount',
                                                      length(rtrim(split_part(w.amount_txt, '.', 2), '0')), w.currency, w.minor_unit)
                 WHEN 'same_account' THEN format('debit and credit account are the same (%s)', to_jsonb(w.debit))
                 WHEN 'fx_rate' THEN format('fx_rate must be a positive decimal string with at most 18 decimals, got %s', left((w.raw -> 'fx_rate')::text, 80))
                 WHEN 'metadata' THEN format('metadata must be a JSON object, not a JSON %s', w.meta_type)
                 WHEN 'timestamp_utc' THEN format('timestamp_utc must be an RFC 3339 date-time with a time zone between 1900 and 9999, such as "2025-01-20T10:00:00Z", got %s', left((w.raw -> 'timestamp_utc')::text, 80))
                 WHEN 'reverses_entry_id' THEN format('reverses_entry_id must be the id of an entry, got %s', left((w.raw -> 'reverses_entry_id')::text, 40))
               END AS msg,
               CASE WHEN w.problem IS NOT NULL THEN
                   jsonb_build_object('field', CASE WHEN w.problem LIKE 'amount%' THEN 'amount'
                                                    WHEN w.problem LIKE 'currency%' THEN 'currency_code'
                                                    WHEN w.problem = 'same_account' THEN 'credit_account_id'
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
                         WHEN r.ref IS NULL OR r.ref = '' OR length(r.ref) > 255 OR r.ref ~ '[[:cntrl:]]' THEN 'reference_id'
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
                         WHEN r.ts_type IS NOT NULL AND r.ts_type <> 'null'
                              AND (r.ts_type <> 'string' OR dl_parse_timestamp(r.ts_txt) IS NULL) THEN 'timestamp_utc'
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
                           CASE WHEN jsonb_typeof(t.j -> 'timestamp_utc') = 'string' THEN t.j ->> 'timestamp_utc' END AS ts_txt,
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
    IF e_pos IS DISTINCT FROM ARRAY(SELECT generate_series(1, n)) THEN
        RAISE EXCEPTION 'internal error: batch order not preserved' USING ERRCODE = 'XX000';
    END IF;

    r_id := array_fill(NULL::bigint, ARRAY[n]);
    r_seq := array_fill(NULL::bigint, ARRAY[n]);
    r_prev := array_fill(NULL::bytea, ARRAY[n]);
    r_hash := array_fill(NULL::bytea, ARRAY[n]);
    r_ts := array_fill(NULL::timestamptz, ARRAY[n]);
    r_rec := array_fill(NULL::timestamptz, ARRAY[n]);
    r_meta := array_fill(NULL::jsonb, ARRAY[n]);
    r_dbal := array_fill(NULL::numeric, ARRAY[n]);
    r_cbal := array_fill(NULL::numeric, ARRAY[n]);
    e_dbank := array_fill(NULL::text, ARRAY[n]);
    e_cbank := array_fill(NULL::text, ARRAY[n]);

    -- Earlier position of the same reference in this batch (a retry inside one group commit).
    e_prev_dup := ARRAY(SELECT lag(u.k::integer) OVER (PARTITION BY u.ref ORDER BY u.k)
                          FROM unnest(e_ref) WITH ORDINALITY AS u(ref, k) ORDER BY u.k);


    -- References already in the ledger, looked up before the head lock (so batches do it in
    -- parallel), with the head seq of the same snapshot: under the lock only entries committed
    -- after that seq need a second look.
    SELECT (SELECT l.head_seq FROM ledgers l WHERE l.id = p_ledger_id), array_agg(le.id)
      INTO v_seen_seq, m_ids
      FROM unnest(e_ref, r_code) AS u(ref, code)
     CROSS JOIN LATERAL (
           -- One probe of the unique index per reference (OFFSET 0: never a join that scans).
           SELECT x.id FROM ledger_entries x
            WHERE x.ledger_id = p_ledger_id AND x.reference_id = u.ref OFFSET 0) le
     WHERE u.code IS NULL;
    v_refset := (SELECT jsonb_object_agg(u.ref, true) FROM unnest(e_ref, r_code) AS u(ref, code) WHERE u.code IS NULL);

    -- 2. The ledger head: one lock for the whole batch. From here on this ledger is ours alone.
    SELECT l.head_seq, l.head_hash INTO v_head_seq, v_head_hash
      FROM ledgers l WHERE l.id = p_ledger_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY
            SELECT k, 'unknown_ledger'::text, NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::timestamptz,
                   NULL::jsonb, NULL::timestamptz, NULL::numeric, NULL::numeric,
                   format('unknown ledger %s', to_jsonb(p_ledger_id)), jsonb_build_object('ledger_id', p_ledger_id)
              FROM generate_series(1, n) AS k;
        RETURN;
    END IF;

    -- 3. The accounts, read under the head lock. Every change of a balance happens in a posting
    --    function holding its ledger's head, so the balances read here cannot change before our
    --    UPDATE; no row lock is taken per account (a FOR UPDATE of every touched account writes a
    --    WAL record per row and made concurrent batches queue account by account).
    SELECT array_agg(a.id), array_agg(a.balance), array_agg(a.available_balance), array_agg(a.overdraft_limit),
           array_agg(a.currency_code), array_agg(a.asset_type), array_agg(a.status), array_agg(b.id), array_agg(a.bank_id)
      INTO a_id, a_bal, a_avail, a_limit, a_currency, a_asset, a_status, a_bank, a_bankid
      FROM (
        SELECT s.*
          FROM (SELECT ba.*
                  FROM (SELECT DISTINCT x.id
                          FROM unnest(e_debit, e_credit, r_code) AS u(debit, credit, code)
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
    a_map := coalesce((SELECT jsonb_object_agg(x.id, x.k) FROM unnest(a_id) WITH ORDINALITY AS x(id, k)), '{}'::jsonb);
    a_changed := array_fill(false, ARRAY[coalesce(cardinality(a_id), 0)]);

    -- 4. Idempotency: a reference already in the ledger is answered with the original entry
    --    (replayed) or refused (reference_conflict, naming the fields). This comes before the
    --    account and funds checks, so the retry of a posting that succeeded is a replay even if
    --    the balance has moved on since. The entries committed between the look-up above and the
    --    head lock are checked now, under the lock (a range of the primary key, usually empty).
    IF v_head_seq > coalesce(v_seen_seq, 0) AND v_refset IS NOT NULL THEN
        m_ids := coalesce(m_ids, '{}'::bigint[]) || ARRAY(
            SELECT x.id FROM ledger_entries x
             WHERE x.ledger_id = p_ledger_id
               -- (both bounds: the generic plan then estimates a narrow range and scans the
               -- primary key; "seq > $n" alone is estimated at a third of the table)
               AND x.seq BETWEEN coalesce(v_seen_seq, 0) + 1 AND v_head_seq
               AND v_refset ? x.reference_id);
    END IF;
    IF cardinality(m_ids) > 0 THEN
    FOR rec IN
        SELECT u.k::integer AS k, le.id, le.seq, le.block_hash, le.previous_hash, le.recorded_at,
               le.debit_balance_after, le.credit_balance_after,
               le.debit_account_id, le.credit_account_id, le.amount, le.currency_code, le.asset_type,
               le.transaction_type, le.fx_rate, le.metadata, le.timestamp_utc, le.reverses_entry_id
          FROM ledger_entries le
          JOIN unnest(e_ref, r_code) WITH ORDINALITY AS u(ref, code, k) ON u.ref = le.reference_id
         WHERE le.id = ANY (m_ids) AND le.ledger_id = p_ledger_id AND u.code IS NULL
    LOOP
        i := rec.k;
        diff := dl_entry_diff(rec.debit_account_id, rec.credit_account_id, rec.amount, rec.currency_code, rec.asset_type,
                              rec.transaction_type, rec.fx_rate, rec.metadata, rec.timestamp_utc, rec.reverses_entry_id,
                              e_debit[i], e_credit[i], e_amount[i], e_currency[i], e_asset[i], e_ttype[i],
                              e_fx[i], e_meta[i], e_ts[i], e_ts_given[i], e_reverses[i]);
        r_id[i] := rec.id;
        r_seq[i] := rec.seq;
        r_hash[i] := rec.block_hash;
        r_prev[i] := rec.previous_hash;
        r_ts[i] := rec.timestamp_utc;
        r_rec[i] := rec.recorded_at;
        r_meta[i] := rec.metadata;
        r_dbal[i] := rec.debit_balance_after;
        r_cbal[i] := rec.credit_balance_after;
        IF cardinality(diff) = 0 THEN
            r_code[i] := 'replayed';
        ELSE
            r_code[i] := 'reference_conflict';
            r_msg[i] := format('reference_id %s was already used for entry %s with a different %s',
                               to_jsonb(e_ref[i]), rec.id, array_to_string(diff, ', '));
            r_details[i] := jsonb_build_object('reference_id', e_ref[i], 'existing_entry_id', rec.id, 'fields', to_jsonb(diff));
        END IF;
    END LOOP;
    END IF;

    -- Reversal targets, once for the batch (none in most batches): position map, the original
    -- entries and how much of each is already reversed.
    IF EXISTS (SELECT 1 FROM unnest(e_reverses) AS x WHERE x IS NOT NULL) THEN
        SELECT coalesce(jsonb_object_agg(t.id, t.k), '{}'::jsonb), array_agg(t.debit ORDER BY t.k),
               array_agg(t.credit ORDER BY t.k), array_agg(t.amount ORDER BY t.k), array_agg(t.currency ORDER BY t.k),
               array_agg(t.asset ORDER BY t.k), array_agg(t.reversed ORDER BY t.k)
          INTO v_rev_map, v_rev_debit, v_rev_credit, v_rev_amount, v_rev_currency, v_rev_asset, v_rev_done
          FROM (SELECT row_number() OVER (ORDER BY le.id) AS k, le.id, le.debit_account_id AS debit,
                       le.credit_account_id AS credit, le.amount, le.currency_code AS currency, le.asset_type AS asset,
                       coalesce((SELECT sum(r.amount) FROM ledger_entries r
                                  WHERE r.ledger_id = p_ledger_id AND r.reverses_entry_id = le.id), 0) AS reversed
                  FROM (SELECT DISTINCT x AS id FROM unnest(e_reverses) AS x WHERE x IS NOT NULL) ids
                 CROSS JOIN LATERAL (SELECT e.* FROM ledger_entries e
                                      WHERE e.id = ids.id AND e.ledger_id = p_ledger_id OFFSET 0) le) t;
    END IF;

    -- 5. One pass in batch order: in-batch retries, accounts, funds, seq and the hash chain.
    v_seq := v_head_seq;
    v_hash := v_head_hash;
    FOR i IN 1..n LOOP
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

        d := (a_map ->> e_debit[i])::integer;
        c := (a_map ->> e_credit[i])::integer;
        IF d IS NULL OR c IS NULL THEN
            r_code[i] := 'unknown_account';
            r_msg[i] := CASE WHEN d IS NULL AND c IS NULL
                             THEN format('unknown accounts %s and %s in ledger %s', to_jsonb(e_debit[i]), to_jsonb(e_credit[i]), to_jsonb(p_ledger_id))
                             WHEN d IS NULL THEN format('unknown debit account %s in ledger %s', to_jsonb(e_debit[i]), to_jsonb(p_ledger_id))
                             ELSE format('unknown credit account %s in ledger %s', to_jsonb(e_credit[i]), to_jsonb(p_ledger_id)) END;
            r_details[i] := jsonb_build_object('ledger_id', p_ledger_id, 'missing_account_ids',
                                to_jsonb(array_remove(ARRAY[CASE WHEN d IS NULL THEN e_debit[i] END,
                                                            CASE WHEN c IS NULL THEN e_credit[i] END], NULL)));
            CONTINUE;
        END IF;
        IF a_currency[d] <> e_currency[i] OR a_asset[d] <> e_asset[i]
           OR a_currency[c] <> e_currency[i] OR a_asset[c] <> e_asset[i] THEN
            r_code[i] := 'currency_mismatch';
            j := CASE WHEN a_currency[d] <> e_currency[i] OR a_asset[d] <> e_asset[i] THEN d ELSE c END;
            r_msg[i] := format('entry is %s %s but %s account %s holds %s %s', e_currency[i], e_asset[i],
                               CASE WHEN j = d THEN 'debit' ELSE 'credit' END, to_jsonb(a_id[j]), a_currency[j], a_asset[j]);
            r_details[i] := jsonb_build_object('currency_code', e_currency[i], 'asset_type', e_asset[i],
                                'debit_account', jsonb_build_object('id', a_id[d], 'currency_code', a_currency[d], 'asset_type', a_asset[d]),
                                'credit_account', jsonb_build_object('id', a_id[c], 'currency_code', a_currency[c], 'asset_type', a_asset[c]));
            CONTINUE;
        END IF;
        IF a_status[d] <> 'active' OR a_status[c] <> 'active' THEN
            r_code[i] := 'account_inactive';
            j := CASE WHEN a_status[d] <> 'active' THEN d ELSE c END;
            r_msg[i] := format('%s account %s is %s', CASE WHEN j = d THEN 'debit' ELSE 'credit' END, to_jsonb(a_id[j]), a_status[j]);
            r_details[i] := jsonb_build_object('account_id', a_id[j], 'status', a_status[j]);
            CONTINUE;
        END IF;
        IF e_reverses[i] IS NOT NULL THEN
            -- A reversal moves (part of) an entry's amount back: the same two accounts the other way
            -- round, the same currency and asset type, and never more in total than the entry moved
            -- (counting the reversals earlier in this batch).
            rv := (v_rev_map ->> e_reverses[i]::text)::integer;
            IF rv IS NULL THEN
                r_code[i] := 'unknown_entry';
                r_msg[i] := format('reverses_entry_id %s is not an entry of ledger %s', e_reverses[i], to_jsonb(p_ledger_id));
                r_details[i] := jsonb_build_object('field', 'reverses_entry_id', 'reverses_entry_id', e_reverses[i]);
                CONTINUE;
            END IF;
            IF v_rev_debit[rv] <> e_credit[i] OR v_rev_credit[rv] <> e_debit[i]
               OR v_rev_currency[rv] <> e_currency[i] OR v_rev_asset[rv] <> e_asset[i] THEN
                r_code[i] := 'invalid_reversal';
                r_msg[i] := format('entry %s moved %s %s from %s to %s: its reversal must move it back (debit %s, credit %s, %s %s)',
                                   e_reverses[i], dl_amount_text(v_rev_amount[rv], v_rev_currency[rv]), v_rev_currency[rv],
                                   to_jsonb(v_rev_debit[rv]), to_jsonb(v_rev_credit[rv]), to_jsonb(v_rev_credit[rv]),
                                   to_jsonb(v_rev_debit[rv]), v_rev_currency[rv], v_rev_asset[rv]);
                r_details[i] := jsonb_build_object('field', 'reverses_entry_id', 'reverses_entry_id', e_reverses[i],
                                                   'debit_account_id', v_rev_credit[rv], 'credit_account_id', v_rev_debit[rv]);
                CONTINUE;
            END IF;
            IF v_rev_done[rv] + e_amount[i] > v_rev_amount[rv] THEN
                r_code[i] := 'invalid_reversal';
                r_msg[i] := format('entry %s moved %s %s and %s of it is already reversed: at most %s more can be',
                                   e_reverses[i], dl_amount_text(v_rev_amount[rv], e_currency[i]), e_currency[i],
                                   dl_amount_text(v_rev_done[rv], e_currency[i]),
                                   dl_amount_text(v_rev_amount[rv] - v_rev_done[rv], e_currency[i]));
                r_details[i] := jsonb_build_object('field', 'amount', 'reverses_entry_id', e_reverses[i],
                                                   'entry_amount', dl_amount_text(v_rev_amount[rv], e_currency[i]),
                                                   'already_reversed', dl_amount_text(v_rev_done[rv], e_currency[i]));
                CONTINUE;
            END IF;
        END IF;

        amt := e_amount[i];
        IF a_limit[d] IS NOT NULL AND a_avail[d] - amt < -a_limit[d] THEN
            r_code[i] := 'insufficient_funds';
            r_msg[i] := format('insufficient funds in account %s: available %s, overdraft limit %s, amount %s %s',
                               to_jsonb(a_id[d]), dl_amount_text(a_avail[d], e_currency[i]), dl_amount_text(a_limit[d], e_currency[i]),
                               dl_amount_text(amt, e_currency[i]), e_currency[i]);
            r_details[i] := jsonb_build_object('account_id', a_id[d], 'available_balance', dl_amount_text(a_avail[d], e_currency[i]),
                                               'overdraft_limit', dl_amount_text(a_limit[d], e_currency[i]),
                                               'amount', dl_amount_text(amt, e_currency[i]), 'currency_code', e_currency[i]);
            CONTINUE;
        END IF;

        -- NUMERIC(38,18) holds less than 10^20: a posting that would push a balance past it is
        -- refused here (as a rejection of this entry), not by an overflow that fails the batch.
        IF a_bal[d] - amt <= -1e20 OR a_bal[c] + amt >= 1e20 THEN
            j := CASE WHEN a_bal[d] - amt <= -1e20 THEN d ELSE c END;
            r_code[i] := 'invalid_amount';
            r_msg[i] := format('amount %s would take the balance of account %s beyond NUMERIC(38,18) (20 integer digits)',
                               trim_scale(amt), to_jsonb(a_id[j]));
            r_details[i] := jsonb_build_object('field', 'amount', 'account_id', a_id[j]);
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

    -- 6. An atomic batch with any rejection writes nothing: what would have been created (or a
    --    replay of it) answers not_applied; replays of committed entries still answer replayed.
    IF p_atomic AND v_created < n THEN
        FOR i IN 1..n LOOP
            IF r_code[i] NOT IN ('created', 'replayed') THEN
                v_first_bad := i;
                EXIT;
            END IF;
        END LOOP;
        IF v_first_bad IS NOT NULL THEN
            FOR i IN 1..n LOOP
                IF r_seq[i] > v_head_seq THEN
                    -- Refers to an entry of this batch, which is not written: created entries and
                    -- in-batch replays become not_applied; an in-batch conflict keeps its code (it
                    -- is a reason in itself) but has no entry to show.
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
            v_created := 0;
        END IF;
    END IF;

    -- 7. Writes: head first (the chain-check trigger compares it with the new entries), then the
    --    entries in one INSERT, the balances in one UPDATE, the outbox rows in one INSERT.
    IF v_created > 0 THEN
        PERFORM set_config('dualledger.posting', 'on', true);
        UPDATE ledgers l SET head_seq = v_seq, head_hash = v_hash WHERE l.id = p_ledger_id;

        INSERT INTO ledger_entries (id, ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code,
                                    asset_type, transaction_type, reference_id, fx_rate, metadata, timestamp_utc,
                                    previous_hash, block_hash, reverses_entry_id, debit_balance_after, credit_balance_after)
        SELECT u.id, p_ledger_id, u.seq, u.debit, u.credit, u.amount, u.currency, u.asset, u.ttype, u.ref, u.fx,
               u.meta, u.ts, u.prev, u.hash, u.reverses, u.dbal, u.cbal
          FROM unnest(r_code, e_id, r_seq, e_debit, e_credit, e_amount, e_currency, e_asset, e_ttype, e_ref, e_fx,
                      e_meta, e_ts, r_prev, r_hash, e_reverses, r_dbal, r_cbal)
               AS u(code, id, seq, debit, credit, amount, currency, asset, ttype, ref, fx, meta, ts, prev, hash, reverses, dbal, cbal)
         WHERE u.code = 'created';

        -- The accounts' status, overdraft limit and bank were read without a row lock: an owner
        -- changing them meanwhile (only the owner may: the app role has no UPDATE on accounts) makes
        -- the row fail these conditions, and the batch is refused as a serialization failure
        -- (40001), which callers retry, instead of moving money past a freeze or a lowered limit.
        UPDATE bank_accounts ba
           SET balance = u.bal, available_balance = u.avail, updated_at = now()
          FROM unnest(a_id, a_bal, a_avail, a_changed, a_limit, a_status, a_bankid)
               AS u(id, bal, avail, changed, lim, status, bank)
         WHERE ba.ledger_id = p_ledger_id AND ba.id = u.id AND u.changed
           AND ba.status = u.status AND ba.overdraft_limit IS NOT DISTINCT FROM u.lim
           AND ba.bank_id IS NOT DISTINCT FROM u.bank;
        GET DIAGNOSTICS v_updated = ROW_COUNT;
        IF v_updated <> (SELECT count(*) FROM unnest(a_changed) AS x WHERE x) THEN
            RAISE EXCEPTION 'an account of this batch was changed while it was being posted: retry the batch'
                USING ERRCODE = '40001';
        END IF;

        IF v_outbox THEN
            INSERT INTO dual_ledger_outbox (ledger_id, entry_id, entry_seq, reference_id, scb_id)
            SELECT DISTINCT p_ledger_id, u.id, u.seq, u.ref, b.scb
              FROM unnest(r_code, r_prev, e_id, r_seq, e_ref, e_dbank, e_cbank) AS u(code, prev, id, seq, ref, dbank, cbank)
             CROSS JOIN LATERAL (VALUES (u.dbank), (u.cbank)) AS b(scb)
             WHERE u.code = 'created' AND b.scb IS NOT NULL;
        END IF;
        PERFORM set_config('dualledger.posting', '', true);
    END IF;

    RETURN QUERY
        SELECT u.k::integer, u.code, u.id, u.seq, encode(u.hash, 'hex'), encode(u.prev, 'hex'), u.ts, u.meta, u.rec,
               u.dbal, u.cbal, u.msg, u.det
          FROM unnest(r_code, r_id, r_seq, r_hash, r_prev, r_ts, r_meta, r_rec, r_dbal, r_cbal, r_msg, r_details)
               WITH ORDINALITY AS u(code, id, seq, hash, prev, ts, meta, rec, dbal, cbal, msg, det, k);
END
$fn$;

CREATE OR REPLACE FUNCTION post_ledger_entry(
    p_ledger_id        text,
    p_debit_account_id text,
    p_credit_account_id text,
    p_amount           numeric,
    p_currency_code    text,
    p_asset_type       text,
    p_transaction_type text,
    p_reference_id     text,
    p_fx_rate          numeric DEFAULT NULL,
    p_metadata         jsonb DEFAULT NULL
) RETURNS TABLE (entry_id bigint, seq bigint, block_hash text, debit_balance numeric, credit_balance numeric)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    SELECT * INTO r
      FROM post_ledger_entries(p_ledger_id, jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
               'debit_account_id', p_debit_account_id,
               'credit_account_id', p_credit_account_id,
               'amount', p_amount::text,
               'currency_code', p_currency_code,
               'asset_type', p_asset_type,
               'transaction_type', p_transaction_type,
               'reference_id', p_reference_id,
               'fx_rate', p_fx_rate::text))
               || CASE WHEN p_metadata IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('metadata', p_metadata) END),
           false);
    IF r.result = 'created' THEN
        RETURN QUERY SELECT r.entry_id, r.seq, r.block_hash, r.debit_balance, r.credit_balance;
        RETURN;
    END IF;
    IF r.result IN ('replayed', 'reference_conflict') THEN
        RAISE EXCEPTION USING
            ERRCODE = '23505',
            MESSAGE = format('%s: duplicate reference_id %s in ledger %s (entry %s)%s', r.result,
                             to_jsonb(p_reference_id), to_jsonb(p_ledger_id), r.entry_id,
                             CASE WHEN r.result = 'reference_conflict' THEN ': ' || r.message ELSE ', same content' END),
            DETAIL = coalesce(r.details, jsonb_build_object('reference_id', p_reference_id, 'existing_entry_id', r.entry_id))::text,
            CONSTRAINT = 'ledger_entries_unique_ledger_reference',
            TABLE = 'ledger_entries';
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = dl_result_sqlstate(r.result),
        MESSAGE = r.result || ': ' || r.message,
        DETAIL = coalesce(r.details::text, '');
END
$fn$;

-- SECURITY DEFINER functions run with their owner's rights: nobody may call them unless granted
-- (006 grants dualledger_app). Revoked here, where they are created, so that no later step can
-- leave them open to every role.
REVOKE ALL ON FUNCTION post_ledger_entries(text, jsonb, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb) FROM PUBLIC;
