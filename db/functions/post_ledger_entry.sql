-- post_ledger_entry: the seeds' single-entry signature (migration 005), a batch of one through
-- post_ledger_entries (posting.sql) that raises its rejection with the result's SQLSTATE
-- (result_sqlstate.sql) and the code at the start of the message (docs/error-codes.md).

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
REVOKE ALL ON FUNCTION post_ledger_entry(text,text,text,numeric,text,text,text,text,numeric,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION post_ledger_entry(text,text,text,numeric,text,text,text,text,numeric,jsonb) TO dualledger_api;
