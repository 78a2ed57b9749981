-- 021_issue_scope.sql
--
-- A scope of its own for creating money: `issue`.
--
-- Why: an account with an unlimited overdraft (an issuance account: `accounts create ...
-- --overdraft unlimited`) can be debited without end, so whoever may debit it creates money.
-- Before, any key with `post` could (the review of 2026-12-02 minted 50,000,000,000.00 USD with a
-- teller's key and watched the outbox deliver it to a member bank). From now on the server
-- refuses, for a key without `issue` (or `admin`), an entry, batch entry or hold whose debit
-- account has an unlimited overdraft (403 forbidden, field debit_account_id; docs/security.md,
-- "Scopes"). Accounts with a finite limit are credit lines an administrator granted: a `post` key
-- uses them within their limit, as before.
--
--   api_keys_scopes_valid      the list of scopes gains 'issue'
--   api_keys_bank_key_no_issue a member bank's key cannot have it: a member bank moves money only
--                              out of its own accounts, and never creates central-bank money
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scopes_valid;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_valid
    CHECK (cardinality(scopes) > 0 AND array_position(scopes, NULL) IS NULL
           AND scopes <@ ARRAY['read', 'post', 'issue', 'settle', 'accounts', 'banks', 'admin']);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'api_keys'::regclass AND conname = 'api_keys_bank_key_no_issue') THEN
        ALTER TABLE api_keys ADD CONSTRAINT api_keys_bank_key_no_issue CHECK (bank_id IS NULL OR NOT scopes @> ARRAY['issue']);
    END IF;
END $$;
