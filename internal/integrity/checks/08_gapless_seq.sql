-- gapless_seq: seq is unique per ledger (primary key) and positive, so count(*) = max(seq)
-- means 1..max all exist. The first missing seq is looked up only for the failing ledgers.
WITH e AS (
    SELECT ledger_id, count(*) AS n, min(seq) AS min_seq, max(seq) AS max_seq
      FROM ledger_entries
     GROUP BY ledger_id
), bad AS (
    SELECT coalesce(l.id, e.ledger_id) AS ledger_id, l.id IS NULL AS no_ledger, coalesce(l.head_seq, 0) AS head_seq,
           coalesce(e.n, 0) AS n, coalesce(e.max_seq, 0) AS max_seq
      FROM ledgers l
      FULL JOIN e ON e.ledger_id = l.id
     WHERE l.id IS NULL OR coalesce(e.n, 0) <> l.head_seq OR coalesce(e.max_seq, 0) <> l.head_seq OR coalesce(e.min_seq, 1) <> 1
), described AS (
    SELECT b.*,
           coalesce((SELECT min(g.prev + 1)
                       FROM (SELECT le.seq, lag(le.seq, 1, 0::bigint) OVER (ORDER BY le.seq) AS prev
                               FROM ledger_entries le WHERE le.ledger_id = b.ledger_id) g
                      WHERE g.seq <> g.prev + 1),
                    CASE WHEN b.head_seq > b.max_seq THEN b.max_seq + 1 END) AS first_missing
      FROM bad b
)
SELECT CASE WHEN no_ledger THEN format('%s: %s entries belong to a ledger that does not exist', ledger_id, n)
            ELSE format('%s: %s entries, max(seq) %s, head_seq %s%s', ledger_id, n, max_seq, head_seq,
                        coalesce(', first missing seq ' || first_missing, '')) END,
       jsonb_build_object('ledger_id', ledger_id, 'entries', n, 'max_seq', max_seq, 'head_seq', head_seq,
                          'first_missing_seq', first_missing, 'ledger_exists', NOT no_ledger)
  FROM described
 ORDER BY ledger_id
