-- Values the posting stages (posting.sql) share: an amount as text for messages, and the fields in
-- which two versions of one posting differ (replays and reference conflicts). Migration 005 created
-- them.

-- An amount as text for messages and details: at least the currency's minor unit of decimals
-- when it is small ("90.00" USD, "1000" JPY), otherwise without trailing zeros.
CREATE OR REPLACE FUNCTION dl_amount_text(p_amount numeric, p_currency text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN p_amount IS NULL THEN NULL
            ELSE round(p_amount, greatest(scale(trim_scale(p_amount)),
                                          coalesce((SELECT CASE WHEN c.minor_unit <= 4 THEN c.minor_unit END
                                                      FROM currencies c WHERE c.code = p_currency), 0)))::text END;
REVOKE ALL ON FUNCTION dl_amount_text(numeric,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_amount_text(numeric,text) TO PUBLIC;

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
REVOKE ALL ON FUNCTION dl_entry_diff(text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,bigint,text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,boolean,bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_entry_diff(text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,bigint,text,text,numeric,text,text,text,numeric,jsonb,timestamp with time zone,boolean,bigint) TO PUBLIC;
