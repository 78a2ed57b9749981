SELECT format('%s: reference_id %s is used by %s entries (seq %s)', ledger_id, to_jsonb(reference_id), n, seqs),
       jsonb_build_object('ledger_id', ledger_id, 'reference_id', reference_id, 'entries', n, 'seqs', to_jsonb(seqs))
  FROM (SELECT ledger_id, reference_id, count(*) AS n, (array_agg(seq ORDER BY seq))[1:10] AS seqs
          FROM ledger_entries
         GROUP BY ledger_id, reference_id
        HAVING count(*) > 1) d
 ORDER BY ledger_id, reference_id
