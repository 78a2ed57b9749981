-- Before 004_balance_constraints.sql: the accounts that break the rules 004 is about to enforce
-- (reserved_balance >= 0, available_balance = balance - reserved_balance, available_balance >=
-- -overdraft_limit, NULL = unlimited). Any row stops the migration before 004, nothing of it
-- applied; `dualledger migrate` prints the rows and the fix below and exits 1.
-- scripts/audit-balances.sql (account_rules) and `dualledger audit` check the same rules on a
-- migrated database.
--
-- check: accounts that break the balance rules
-- fix: recompute reserved_balance from open holds and set available_balance = balance - reserved_balance;
-- fix: an account that is legitimately negative needs a higher overdraft_limit (NULL = unlimited, for issuance accounts)
-- fix: or funds posted from an opening-balance account.
-- fix: (scripts/audit-balances.sql lists the same accounts with psql.)
SELECT format('%s/%s: balance %s, available %s, reserved %s, overdraft_limit %s: %s',
              ledger_id, id, trim_scale(balance), trim_scale(available_balance), trim_scale(reserved_balance),
              coalesce(trim_scale(overdraft_limit)::text, 'unlimited'),
              concat_ws('; ',
                  CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
                  CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
                  CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END))
  FROM bank_accounts
 WHERE reserved_balance < 0
    OR available_balance <> balance - reserved_balance
    OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)
 ORDER BY ledger_id, id;
