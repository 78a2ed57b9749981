-- 008_hot_row_maintenance.sql
--
-- Every posting rewrites its accounts' balance rows and its ledger's head row: a few thousand
-- updates a second concentrated on few rows. Vacuum them as soon as a thousand dead versions pile
-- up rather than after 20 % of the table, and without cost-based throttling, so that HOT pruning
-- and index cleanup keep pace. (fillfactor leaves room on each page for HOT updates; it was set
-- when the tables were created in 000 and is repeated here for databases created before.)

ALTER TABLE bank_accounts SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0.05);

ALTER TABLE ledgers SET (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_vacuum_cost_delay = 0);

-- Outbox rows change status a few times each: same treatment, milder.
ALTER TABLE dual_ledger_outbox SET (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);
