SELECT format('%s %s %s: balances sum to %s over %s accounts, not 0', ledger_id, currency_code, asset_type, trim_scale(total), n),
       jsonb_build_object('ledger_id', ledger_id, 'currency_code', currency_code, 'asset_type', asset_type,
                          'sum', trim_scale(total)::text, 'accounts', n)
  FROM (SELECT ledger_id, currency_code, asset_type, sum(balance) AS total, count(*) AS n
          FROM bank_accounts
         GROUP BY ledger_id, currency_code, asset_type
        HAVING sum(balance) <> 0) z
 ORDER BY ledger_id, currency_code, asset_type
