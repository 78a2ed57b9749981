-- 004_balance_constraints.sql
--
-- Balance integrity (DESIGN 2.3), as CHECK constraints on bank_accounts:
--   reserved_balance >= 0
--   available_balance = balance - reserved_balance
--   available_balance >= -overdraft_limit        (overdraft_limit NULL = unlimited)
--
-- As the seed says, existing rows are audited first: if any account breaks a rule the migration
-- stops, names the offending accounts and says how to fix them (`dualledger migrate` runs the same
-- audit before this file and prints the full list). Constraints are never applied NOT VALID and
-- never disabled: a historical import that needs opening balances posts them from an explicit
-- opening-balance account.

DO $$
DECLARE
    offenders text;
    n         bigint;
BEGIN
    SELECT count(*),
           string_agg(format('%s/%s (balance %s, available %s, reserved %s, overdraft_limit %s: %s)',
                             ledger_id, id, balance, available_balance, reserved_balance,
                             coalesce(overdraft_limit::text, 'unlimited'), problem), E'\n  ')
      INTO n, offenders
      FROM (SELECT *,
                   concat_ws('; ',
                       CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
                       CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
                       CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END
                   ) AS problem
              FROM bank_accounts
             WHERE reserved_balance < 0
                OR available_balance <> balance - reserved_balance
                OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)
             ORDER BY ledger_id, id
             LIMIT 50) bad;
    IF n > 0 THEN
        RAISE EXCEPTION E'balance audit failed, % account(s) break the balance rules:\n  %', n, offenders
            USING HINT = 'run scripts/audit-balances.sql; recompute reserved_balance from open holds, set available_balance = balance - reserved_balance, '
                         'and for an account that is legitimately negative either raise its overdraft_limit (NULL = unlimited for issuance accounts) '
                         'or fund it with a posting from an opening-balance account; then re-run the migration';
    END IF;
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'bank_accounts'::regclass
                    AND conname = 'bank_accounts_reserved_balance_nonnegative') THEN
        ALTER TABLE bank_accounts ADD CONSTRAINT bank_accounts_reserved_balance_nonnegative
            CHECK (reserved_balance >= 0);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'bank_accounts'::regclass
                    AND conname = 'bank_accounts_available_balance_consistent') THEN
        ALTER TABLE bank_accounts ADD CONSTRAINT bank_accounts_available_balance_consistent
            CHECK (available_balance = balance - reserved_balance);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'bank_accounts'::regclass
                    AND conname = 'bank_accounts_available_balance_within_overdraft') THEN
        ALTER TABLE bank_accounts ADD CONSTRAINT bank_accounts_available_balance_within_overdraft
            CHECK (overdraft_limit IS NULL OR available_balance >= -overdraft_limit);
    END IF;
END $$;
