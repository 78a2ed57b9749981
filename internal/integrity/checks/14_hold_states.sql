-- hold_states: every hold's events tell its state (docs/holds.md): exactly one `created` event
-- for the hold's amount, then nothing (PENDING) or exactly one event named after its state; no
-- hold is both captured and voided or expired. A CAPTURED hold's entry moves the captured amount
-- between the hold's accounts, in its currency, under capture_reference_id; a capture event names
-- that entry and amount; an EXPIRED hold had an expires_at.
WITH ev AS (
    SELECT e.ledger_id, e.hold_id, array_agg(e.event ORDER BY e.seq) AS events,
           (array_agg(e.amount ORDER BY e.seq))[1] AS created_amount,
           (array_agg(e.entry_id ORDER BY e.seq) FILTER (WHERE e.event = 'captured'))[1] AS entry_id,
           (array_agg(e.amount ORDER BY e.seq) FILTER (WHERE e.event = 'captured'))[1] AS captured_amount
      FROM ledger_hold_events e
     GROUP BY e.ledger_id, e.hold_id
), judged AS (
    SELECT h.ledger_id, h.reference_id, h.id, h.status, coalesce(v.events, '{}') AS events,
           concat_ws('; ',
               CASE WHEN coalesce(v.events, '{}') <> CASE h.status WHEN 'PENDING' THEN ARRAY['created']
                                                         ELSE ARRAY['created', lower(h.status)] END
                    THEN format('events %s do not match status %s', coalesce(v.events, '{}'), h.status) END,
               CASE WHEN v.created_amount IS DISTINCT FROM h.amount THEN 'created event amount is not the hold''s amount' END,
               CASE WHEN h.status = 'CAPTURED' AND (v.entry_id IS DISTINCT FROM h.capture_entry_id
                                                    OR v.captured_amount IS DISTINCT FROM h.captured_amount)
                    THEN 'capture event does not name the hold''s capture entry and amount' END,
               CASE WHEN h.status = 'CAPTURED' AND NOT EXISTS (
                        SELECT 1 FROM ledger_entries x
                         WHERE x.ledger_id = h.ledger_id AND x.id = h.capture_entry_id
                           AND x.debit_account_id = h.debit_account_id AND x.credit_account_id = h.credit_account_id
                           AND x.amount = h.captured_amount AND x.currency_code = h.currency_code
                           AND x.asset_type = h.asset_type AND x.reference_id = h.capture_reference_id)
                    THEN 'capture entry does not move the captured amount between the hold''s accounts under capture_reference_id' END,
               CASE WHEN h.status = 'EXPIRED' AND h.expires_at IS NULL THEN 'expired without an expires_at' END) AS problem
      FROM ledger_holds h
      LEFT JOIN ev v ON v.ledger_id = h.ledger_id AND v.hold_id = h.id
)
SELECT format('%s/hold %s (%s): %s', ledger_id, to_jsonb(reference_id), status, problem),
       jsonb_build_object('ledger_id', ledger_id, 'hold_reference_id', reference_id, 'hold_id', id, 'status', status,
                          'events', to_jsonb(events))
  FROM judged
 WHERE problem <> ''
 ORDER BY ledger_id, id
