-- balances_match_entries: one scan of the entries, each contributing +amount to its credit
-- account and -amount to its debit account (docs/design.md §2.3: balance = Σ credits − Σ debits).
WITH sums AS (
    SELECT e.ledger_id, v.account_id, sum(v.delta) AS net, count(*) AS legs
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES (e.credit_account_id, e.amount), (e.debit_account_id, -e.amount)) AS v(account_id, delta)
     GROUP BY e.ledger_id, v.account_id
)
SELECT format('%s/%s: stored balance %s, but its %s entries sum to %s (Σ credits − Σ debits; difference %s)',
              a.ledger_id, a.id, trim_scale(a.balance), coalesce(s.legs, 0), trim_scale(coalesce(s.net, 0)),
              trim_scale(a.balance - coalesce(s.net, 0))),
       jsonb_build_object('ledger_id', a.ledger_id, 'account_id', a.id, 'balance', trim_scale(a.balance)::text,
                          'entries_sum', trim_scale(coalesce(s.net, 0))::text, 'entries', coalesce(s.legs, 0),
                          'difference', trim_scale(a.balance - coalesce(s.net, 0))::text)
  FROM bank_accounts a
  LEFT JOIN sums s ON s.ledger_id = a.ledger_id AND s.account_id = a.id
 WHERE a.balance <> coalesce(s.net, 0)
 ORDER BY a.ledger_id, a.id
