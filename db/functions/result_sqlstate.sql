-- Generated from internal/ledger/codes.go; do not edit. After changing the code table:
--   go test ./internal/ledger -run TestResultSQLStateFile -update
--
-- dl_result_sqlstate: the SQLSTATE with which post_ledger_entry (005, the seeds' single-entry
-- function) raises a posting result other than created (docs/error-codes.md). Migration 005
-- created it; this file redefines it with the same signature. Only post_ledger_entry (SECURITY
-- DEFINER, the owner's) calls it.
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
    WHEN 'not_applied'        THEN 'DL011'
    WHEN 'unknown_entry'      THEN 'DL012'
    WHEN 'invalid_reversal'   THEN 'DL013'
    ELSE 'DL000' END;
REVOKE ALL ON FUNCTION dl_result_sqlstate(text) FROM PUBLIC;
