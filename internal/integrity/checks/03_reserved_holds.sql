-- reserved_holds: each account's reserved_balance is the sum of the amounts of its PENDING holds
-- (it is their debit account), and available_balance = balance - reserved_balance (docs/holds.md).
-- One pass over the pending holds (a partial index), one over the accounts.
WITH pending AS (
    SELECT h.ledger_id, h.debit_account_id AS account_id, sum(h.amount) AS held, count(*) AS holds
      FROM ledger_holds h
     WHERE h.status = 'PENDING'
     GROUP BY h.ledger_id, h.debit_account_id
)
SELECT format('%s/%s: reserved_balance %s but its %s pending hold(s) sum to %s; available_balance %s, balance %s',
              a.ledger_id, a.id, trim_scale(a.reserved_balance), coalesce(p.holds, 0), trim_scale(coalesce(p.held, 0)),
              trim_scale(a.available_balance), trim_scale(a.balance)),
       jsonb_build_object('ledger_id', a.ledger_id, 'account_id', a.id,
                          'reserved_balance', trim_scale(a.reserved_balance)::text,
                          'pending_holds_sum', trim_scale(coalesce(p.held, 0))::text, 'pending_holds', coalesce(p.holds, 0),
                          'available_balance', trim_scale(a.available_balance)::text, 'balance', trim_scale(a.balance)::text)
  FROM bank_accounts a
  LEFT JOIN pending p ON p.ledger_id = a.ledger_id AND p.account_id = a.id
 WHERE a.reserved_balance <> coalesce(p.held, 0)
    OR a.available_balance <> a.balance - a.reserved_balance
 ORDER BY a.ledger_id, a.id
