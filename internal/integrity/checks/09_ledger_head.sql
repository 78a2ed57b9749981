SELECT CASE WHEN l.head_seq = 0 THEN format('%s: empty ledger (head_seq 0) but head_hash is %s, not 32 zero bytes', l.id, encode(l.head_hash, 'hex'))
            WHEN e.seq IS NULL THEN format('%s: head_seq %s but there is no entry with that seq', l.id, l.head_seq)
            ELSE format('%s: head_hash %s is not the block_hash %s of entry seq %s', l.id, encode(l.head_hash, 'hex'),
                        encode(e.block_hash, 'hex'), l.head_seq) END,
       jsonb_build_object('ledger_id', l.id, 'head_seq', l.head_seq, 'head_hash', encode(l.head_hash, 'hex'),
                          'entry_block_hash', encode(e.block_hash, 'hex'))
  FROM ledgers l
  LEFT JOIN ledger_entries e ON e.ledger_id = l.id AND e.seq = l.head_seq
 WHERE CASE WHEN l.head_seq = 0 THEN l.head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE e.block_hash IS DISTINCT FROM l.head_hash END
 ORDER BY l.id
