-- hash_chain recomputes the chain with the SQL reference (ledger_entry_block_hash) and joins
-- each entry to seq-1 (a merge join on the primary key). One finding per ledger: its first
-- broken seq, and how many entries are broken in all.
WITH checked AS (
    SELECT e.ledger_id, e.seq, e.id, e.reference_id,
           e.block_hash <> ledger_entry_block_hash(e) AS hash_bad,
           CASE WHEN e.seq = 1 THEN e.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.block_hash IS DISTINCT FROM e.previous_hash END AS link_bad,
           p.seq IS NULL AND e.seq > 1 AS prior_missing
      FROM ledger_entries e
      LEFT JOIN ledger_entries p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
), firsts AS (
    SELECT DISTINCT ON (ledger_id) *, count(*) OVER (PARTITION BY ledger_id) AS broken
      FROM checked
     WHERE hash_bad OR link_bad
     ORDER BY ledger_id, seq
)
SELECT format('%s: first broken seq %s (entry %s, reference_id %s): %s; broken entries in all: %s', ledger_id, seq, id,
              to_jsonb(reference_id),
              concat_ws(' and ',
                  CASE WHEN prior_missing THEN format('seq %s is missing', seq - 1)
                       WHEN link_bad THEN 'previous_hash is not the block_hash of seq-1' END,
                  CASE WHEN hash_bad THEN 'block_hash is not sha256(previous_hash || canonical(entry))' END),
              broken),
       jsonb_build_object('ledger_id', ledger_id, 'seq', seq, 'entry_id', id, 'reference_id', reference_id,
                          'hash_mismatch', hash_bad, 'link_broken', link_bad, 'prior_missing', prior_missing,
                          'broken_entries', broken)
  FROM firsts
 ORDER BY ledger_id
