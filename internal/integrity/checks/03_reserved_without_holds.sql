-- reserved_without_holds runs only when there is no holds table: nothing can be reserved then.
SELECT format('%s/%s: reserved_balance %s but there are no holds', ledger_id, id, trim_scale(reserved_balance)),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', id, 'reserved_balance', trim_scale(reserved_balance)::text)
  FROM bank_accounts
 WHERE reserved_balance <> 0
 ORDER BY ledger_id, id
