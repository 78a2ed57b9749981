-- operator_log checks the operator log (migration 009) like hash_chain checks the entries:
-- every row's hash recomputed, every link and the head. A finding names the seq.
WITH r AS (
    SELECT seq, previous_hash,
           hash <> sha256(previous_hash || operator_action_canonical(seq, at, actor, db_login, db_role, action, target,
                                                                    before, after, reason)) AS hash_bad,
           lag(seq) OVER (ORDER BY seq) AS prev_seq, lag(hash) OVER (ORDER BY seq) AS prev_hash
      FROM operator_actions),
bad AS (
    SELECT seq, CASE
             WHEN hash_bad THEN 'hash is not sha256(previous_hash || canonical(row)): the row was changed'
             WHEN prev_seq IS NULL AND seq <> 1 THEN 'the log does not start at seq 1'
             WHEN prev_seq IS NULL AND previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                  THEN 'seq 1 does not link to 32 zero bytes'
             WHEN prev_seq IS NOT NULL AND prev_seq <> seq - 1 THEN 'rows before this seq are missing'
             WHEN prev_seq IS NOT NULL AND prev_hash <> previous_hash THEN 'previous_hash is not the hash of the row before'
           END AS problem
      FROM r
    UNION ALL
    SELECT h.seq, 'the head does not point at the last row'
      FROM operator_actions_head h
      LEFT JOIN LATERAL (SELECT seq, hash FROM operator_actions ORDER BY seq DESC LIMIT 1) l ON true
     WHERE (h.seq, h.hash) IS DISTINCT FROM (l.seq, l.hash) AND NOT (h.seq = 0 AND l.seq IS NULL))
SELECT format('operator log seq %s: %s', seq, problem), jsonb_build_object('seq', seq, 'problem', problem)
  FROM bad WHERE problem IS NOT NULL
 ORDER BY seq
