-- Statistics for a new database's tables, at once instead of at autovacuum's next round.
--
-- A session plans a function's statements, and the foreign keys' checks, the first time it runs
-- them, and keeps the plans until the table's statistics change. In a new database the ledger
-- tables have no statistics yet, and for a table without any every index led by ledger_id costs
-- the planner the same one row: a look-up by (ledger_id, seq) or (ledger_id, id) could go through
-- an index that matches only ledger_id and read every row of the ledger, for every look-up, until
-- autovacuum's first ANALYZE (at most autovacuum_naptime after the first 50 rows: 10 s in the
-- embedded cluster, a minute by default, never with autovacuum off). The posting function's own
-- look-ups do not depend on it (migration 015, db/functions/chain.sql), but the foreign keys'
-- checks cannot be written otherwise: an outbox row checks its entry by (ledger_id, seq), a hold
-- event its hold by (ledger_id, id).
--
-- dl_analyze_new_tables ANALYZEs each of the growing ledger tables that has never been analysed
-- once it has 16 pages (128 kB, a few hundred rows); ANALYZE invalidates every session's plans on
-- the table, and they are made again with statistics, from which the unique index is the clear
-- choice at any larger size. Not sooner: statistics of a table of a page or two make a sequential
-- scan the cheapest plan, and that plan is kept too while the table grows (the test measured 30
-- million entries read for 5,000 postings). It returns how many of the tables have never been
-- analysed and are still below the 16 pages. `dualledger serve` calls it every second until that
-- is 0 or for its first 15 minutes (cmd/dualledger/cmd_serve.go; autovacuum has analysed any table
-- with rows by then); it costs a look-up per table when there is nothing to do.
--
-- SECURITY DEFINER (ANALYZE needs the owner), so nothing the caller can create may stand in for
-- what it reads: the catalog and the tables are named with their schema, and pg_temp comes last.
-- What the api role can do with it is have these five tables analysed while their statistics
-- say they never were.
CREATE OR REPLACE FUNCTION dl_analyze_new_tables() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$
DECLARE
    t       regclass;
    pending integer := 0;
BEGIN
    FOR t IN
        SELECT s.relid::regclass FROM pg_catalog.pg_stat_user_tables s
         WHERE s.relid IN ('public.ledger_entries'::regclass, 'public.dual_ledger_outbox'::regclass,
                           'public.dual_ledger_outbox_attempts'::regclass, 'public.ledger_holds'::regclass,
                           'public.ledger_hold_events'::regclass)
           AND s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
         ORDER BY s.relid
    LOOP
        IF pg_catalog.pg_relation_size(t) >= 16 * pg_catalog.current_setting('block_size')::bigint THEN
            EXECUTE pg_catalog.format('ANALYZE %s', t);
        ELSE
            pending := pending + 1;
        END IF;
    END LOOP;
    RETURN pending;
END
$fn$;
REVOKE ALL ON FUNCTION dl_analyze_new_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_analyze_new_tables() TO dualledger_api;
