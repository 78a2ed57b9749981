-- The chain checks of ledger_entries and of ledger_hold_events, redefined here from the
-- migrations that first defined them (000 and 014, which also create their triggers).
--
-- The chain check of ledger_entries: once per INSERT statement, set-based, so a batch of 1000 costs a few
-- queries. Every new entry's block_hash is sha256(previous_hash || canonical), its previous_hash
-- is the block_hash of seq-1 in the same ledger (32 zero bytes for seq 1), both accounts exist
-- with the entry's currency and asset type, and the ledger head points at the last entry.
-- Together with the primary key (ledger_id, seq) this makes seq gapless and the chain unbroken
-- for any writer.
--
-- Redefined here (as 000 wrote it but for its two look-ups of one entry by seq) so that those
-- look-ups read the primary key whatever the plan was made for. A session plans them on its first
-- posting; in a new database ledger_entries is empty then, and for an empty table `ledger_id = $1
-- AND seq = $2` cost the same one row through the reference index (led by ledger_id too, seq as a
-- filter) as through the primary key: the planner took the reference index, and until an ANALYZE
-- invalidated the plan every posting read every entry of its ledger twice. As "the last entry
-- below seq, which must be seq-1" (ORDER BY seq DESC LIMIT 1) only the primary key returns the
-- rows in order: any other index would have to read them all and sort them first, so its plan
-- costs more at any size. TestPostingPlansMadeOnAnEmptyTable (db/plans_test.go) counts the entries
-- read.
CREATE OR REPLACE FUNCTION dl_check_new_entries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad     record;
    trusted boolean := dl_in_posting_function();
BEGIN
    -- Links, always. Inside the batch the predecessor is the previous new row; only the first new
    -- row of each ledger looks its predecessor up (one index probe), so the cost does not depend
    -- on the size of the table or on its statistics. Rows not written by the posting functions
    -- also have every hash recomputed and their accounts checked. (The posting functions compute
    -- exactly these and check the accounts under the ledger head lock; repeating it for their
    -- inserts cost a sixth of the time the ledger is locked. verify-chain and audit recheck all
    -- of it at any time.)
    SELECT x.ledger_id, x.seq,
           CASE WHEN x.hash_bad
                THEN 'block_hash is not sha256(previous_hash || canonical(entry))'
                ELSE 'previous_hash does not match the block_hash of seq-1 (or seq-1 is missing)' END AS why
      INTO bad
      FROM (SELECT n.ledger_id, n.seq, n.block_hash, n.previous_hash,
                   CASE WHEN trusted THEN false ELSE n.block_hash <> ledger_entry_block_hash(n) END AS hash_bad,
                   lag(n.seq) OVER w AS prev_seq, lag(n.block_hash) OVER w AS prev_hash
              FROM new_entries n
            WINDOW w AS (PARTITION BY n.ledger_id ORDER BY n.seq)) x
     WHERE x.hash_bad
        OR CASE WHEN x.prev_seq IS NOT NULL THEN x.prev_seq <> x.seq - 1 OR x.prev_hash <> x.previous_hash
                WHEN x.seq = 1 THEN x.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                -- The entry before the batch: the last one below its seq, which must be seq-1.
                ELSE (SELECT ROW(p.seq, p.block_hash) FROM ledger_entries p
                       WHERE p.ledger_id = x.ledger_id AND p.seq < x.seq
                       ORDER BY p.seq DESC LIMIT 1) IS DISTINCT FROM ROW(x.seq - 1, x.previous_hash)
           END
     ORDER BY x.ledger_id, x.seq
     LIMIT 1;
    IF NOT FOUND AND NOT trusted THEN
        -- Both accounts exist with the entry's currency and asset type: one probe per distinct account.
        SELECT d.ledger_id, NULL::bigint AS seq,
               format('account %s does not exist in ledger %s with currency %s and asset type %s',
                      d.account_id, d.ledger_id, d.currency_code, d.asset_type) AS why
          INTO bad
          FROM (SELECT DISTINCT n.ledger_id, a.account_id, n.currency_code, n.asset_type
                  FROM new_entries n
                 CROSS JOIN LATERAL (VALUES (n.debit_account_id), (n.credit_account_id)) AS a(account_id)) d
         WHERE NOT EXISTS (SELECT 1 FROM bank_accounts b
                            WHERE b.ledger_id = d.ledger_id AND b.id = d.account_id
                              AND b.currency_code = d.currency_code AND b.asset_type = d.asset_type
                            OFFSET 0)
         LIMIT 1;
    END IF;
    IF NOT FOUND THEN
        SELECT l.id AS ledger_id, l.head_seq AS seq, 'ledger head does not point at the last entry' AS why
          INTO bad
          FROM (SELECT n.ledger_id, max(n.seq) AS last_seq FROM new_entries n GROUP BY n.ledger_id) t
          JOIN ledgers l ON l.id = t.ledger_id
         WHERE l.head_seq <> t.last_seq
            OR (SELECT ROW(e.seq, e.block_hash) FROM ledger_entries e
                 WHERE e.ledger_id = l.id AND e.seq <= l.head_seq
                 ORDER BY e.seq DESC LIMIT 1) IS DISTINCT FROM ROW(l.head_seq, l.head_hash)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'hash chain violation in ledger % at seq %: %', bad.ledger_id, bad.seq, bad.why
            USING ERRCODE = 'DL102';
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION dl_check_new_entries() FROM PUBLIC;

-- The chain check of hold events (014), per INSERT statement: every new event's hash is
-- sha256(previous_hash || canonical), its previous_hash is the hash of seq-1 (32 zero bytes for
-- seq 1), and the ledger's hold head points at the last one. Always recomputed (hold events are
-- few next to entries). As 014 wrote it but for its two look-ups of one event by seq, for the
-- reason above: on an empty table the plan took the index (ledger_id, hold_id) and read every
-- event of the ledger (TestPlansAfterNewTableStatistics).
CREATE OR REPLACE FUNCTION dl_check_new_hold_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT x.ledger_id, x.seq,
           CASE WHEN x.hash IS DISTINCT FROM x.want THEN 'hash is not sha256(previous_hash || canonical(event))'
                ELSE 'previous_hash does not match the hash of seq-1 (or seq-1 is missing)' END AS why
      INTO bad
      FROM (SELECT n.ledger_id, n.seq, n.hash, ledger_hold_event_hash(n) AS want, n.previous_hash,
                   lag(n.seq) OVER w AS prev_seq, lag(n.hash) OVER w AS prev_hash
              FROM new_events n
            WINDOW w AS (PARTITION BY n.ledger_id ORDER BY n.seq)) x
     WHERE x.hash IS DISTINCT FROM x.want
        OR CASE WHEN x.prev_seq IS NOT NULL THEN x.prev_seq <> x.seq - 1 OR x.prev_hash <> x.previous_hash
                WHEN x.seq = 1 THEN x.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                -- The event before the batch: the last one below its seq, which must be seq-1.
                ELSE (SELECT ROW(p.seq, p.hash) FROM ledger_hold_events p
                       WHERE p.ledger_id = x.ledger_id AND p.seq < x.seq
                       ORDER BY p.seq DESC LIMIT 1) IS DISTINCT FROM ROW(x.seq - 1, x.previous_hash)
           END
     ORDER BY x.ledger_id, x.seq
     LIMIT 1;
    IF NOT FOUND THEN
        SELECT l.id AS ledger_id, l.hold_head_seq AS seq, 'ledger hold head does not point at the last hold event' AS why
          INTO bad
          FROM (SELECT n.ledger_id, max(n.seq) AS last_seq FROM new_events n GROUP BY n.ledger_id) t
          JOIN ledgers l ON l.id = t.ledger_id
         WHERE l.hold_head_seq <> t.last_seq
            OR (SELECT ROW(e.seq, e.hash) FROM ledger_hold_events e
                 WHERE e.ledger_id = l.id AND e.seq <= l.hold_head_seq
                 ORDER BY e.seq DESC LIMIT 1) IS DISTINCT FROM ROW(l.hold_head_seq, l.hold_head_hash)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'hold chain violation in ledger % at seq %: %', bad.ledger_id, bad.seq, bad.why
            USING ERRCODE = 'DL102';
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION dl_check_new_hold_events() FROM PUBLIC;
