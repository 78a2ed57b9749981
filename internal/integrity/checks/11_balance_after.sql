-- balance_after: the running balance per account in seq order (a window over one scan). One
-- finding per account: the first entry whose stored balance-after disagrees.
WITH legs AS (
    SELECT e.ledger_id, v.account_id, e.seq, v.side, v.stored,
           sum(v.delta) OVER (PARTITION BY e.ledger_id, v.account_id ORDER BY e.seq
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id, -e.amount, e.debit_balance_after),
                                ('credit', e.credit_account_id, e.amount, e.credit_balance_after))
           AS v(side, account_id, delta, stored)
), firsts AS (
    SELECT DISTINCT ON (ledger_id, account_id) *, count(*) OVER (PARTITION BY ledger_id, account_id) AS wrong
      FROM legs
     WHERE stored <> running
     ORDER BY ledger_id, account_id, seq
)
SELECT format('%s/%s: from seq %s (%s side) the stored balance after the entry is %s but the running balance is %s; entries that disagree: %s',
              ledger_id, account_id, seq, side, trim_scale(stored), trim_scale(running), wrong),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', account_id, 'seq', seq, 'side', side,
                          'stored', trim_scale(stored)::text, 'running', trim_scale(running)::text, 'entries', wrong)
  FROM firsts
 ORDER BY ledger_id, account_id
