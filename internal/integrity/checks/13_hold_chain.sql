-- hold_chain: the hold events of each ledger are a hash chain like its entries
-- (docs/hash-chain.md, "Hold events"): hash = sha256(previous_hash || ledger_hold_event_canonical),
-- previous_hash = hash of seq-1 (32 zero bytes for seq 1), seq gapless from 1, and
-- ledgers.hold_head_seq / hold_head_hash at the last event. One finding per broken ledger.
WITH checked AS (
    SELECT e.ledger_id, e.seq, e.hold_id,
           e.hash IS DISTINCT FROM ledger_hold_event_hash(e) AS hash_bad,
           CASE WHEN e.seq = 1 THEN e.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.hash IS DISTINCT FROM e.previous_hash END AS link_bad,
           p.seq IS NULL AND e.seq > 1 AS prior_missing
      FROM ledger_hold_events e
      LEFT JOIN ledger_hold_events p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
), firsts AS (
    SELECT DISTINCT ON (ledger_id) *, count(*) OVER (PARTITION BY ledger_id) AS broken
      FROM checked
     WHERE hash_bad OR link_bad
     ORDER BY ledger_id, seq
), heads AS (
    SELECT l.id AS ledger_id, l.hold_head_seq, l.hold_head_hash, t.events, t.last_seq, e.hash AS last_hash
      FROM ledgers l
      LEFT JOIN (SELECT ledger_id, count(*) AS events, max(seq) AS last_seq FROM ledger_hold_events GROUP BY ledger_id) t
             ON t.ledger_id = l.id
      LEFT JOIN ledger_hold_events e ON e.ledger_id = l.id AND e.seq = l.hold_head_seq
)
SELECT format('%s: first broken hold event seq %s (hold %s): %s; broken events in all: %s', ledger_id, seq, hold_id,
              concat_ws(' and ',
                  CASE WHEN prior_missing THEN format('hold event seq %s is missing', seq - 1)
                       WHEN link_bad THEN 'previous_hash is not the hash of seq-1' END,
                  CASE WHEN hash_bad THEN 'hash is not sha256(previous_hash || canonical(event)): the event or its hold was changed' END),
              broken),
       jsonb_build_object('ledger_id', ledger_id, 'seq', seq, 'hold_id', hold_id, 'hash_mismatch', hash_bad,
                          'link_broken', link_bad, 'prior_missing', prior_missing, 'broken_events', broken)
  FROM firsts
UNION ALL
SELECT format('%s: hold head is seq %s, but the hold events %s', h.ledger_id, h.hold_head_seq,
              CASE WHEN coalesce(h.events, 0) <> coalesce(h.last_seq, 0) THEN format('are %s with seq up to %s (a gap)', coalesce(h.events, 0), coalesce(h.last_seq, 0))
                   WHEN h.hold_head_seq <> coalesce(h.last_seq, 0) THEN format('end at seq %s', coalesce(h.last_seq, 0))
                   ELSE 'end with another hash' END),
       jsonb_build_object('ledger_id', h.ledger_id, 'hold_head_seq', h.hold_head_seq, 'events', coalesce(h.events, 0),
                          'last_seq', coalesce(h.last_seq, 0), 'hold_head_hash', encode(h.hold_head_hash, 'hex'))
  FROM heads h
 WHERE coalesce(h.events, 0) <> coalesce(h.last_seq, 0)
    OR h.hold_head_seq <> coalesce(h.last_seq, 0)
    OR CASE WHEN h.hold_head_seq = 0 THEN h.hold_head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE h.last_hash IS DISTINCT FROM h.hold_head_hash END
