-- account_rules: docs/design.md §2.3 and migration 004, the same rules as db/checks/004_balance_constraints.before.sql.
-- The seeds' own query (available_balance < 0, available_balance > balance) predates overdrafts and
-- our sign convention; it would flag every issuance account, so it is not used.
SELECT format('%s/%s: balance %s, available %s, reserved %s, overdraft_limit %s: %s',
              ledger_id, id, trim_scale(balance), trim_scale(available_balance), trim_scale(reserved_balance),
              coalesce(trim_scale(overdraft_limit)::text, 'unlimited'),
              concat_ws('; ',
                  CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
                  CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
                  CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END)),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', id, 'balance', trim_scale(balance)::text,
                          'available_balance', trim_scale(available_balance)::text,
                          'reserved_balance', trim_scale(reserved_balance)::text,
                          'overdraft_limit', coalesce(trim_scale(overdraft_limit)::text, 'unlimited'))
  FROM bank_accounts
 WHERE reserved_balance < 0
    OR available_balance <> balance - reserved_balance
    OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)
 ORDER BY ledger_id, id
