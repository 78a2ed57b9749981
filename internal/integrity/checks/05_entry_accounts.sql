SELECT format('%s seq %s: %s account %s does not exist in the ledger as a %s %s account', e.ledger_id, e.seq, v.side,
              to_jsonb(v.account_id), e.currency_code, e.asset_type),
       jsonb_build_object('ledger_id', e.ledger_id, 'seq', e.seq, 'entry_id', e.id, 'side', v.side, 'account_id', v.account_id,
                          'currency_code', e.currency_code, 'asset_type', e.asset_type)
  FROM ledger_entries e
 CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id), ('credit', e.credit_account_id)) AS v(side, account_id)
 WHERE NOT EXISTS (SELECT 1 FROM bank_accounts a
                    WHERE a.ledger_id = e.ledger_id AND a.id = v.account_id
                      AND a.currency_code = e.currency_code AND a.asset_type = e.asset_type)
 ORDER BY e.ledger_id, e.seq, v.side
