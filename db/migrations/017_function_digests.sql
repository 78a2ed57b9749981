-- 017_function_digests.sql
--
-- What every function of the schema looked like when `dualledger migrate` last left it: its
-- signature and a digest of its definition and privileges (dl_function_digests(),
-- db/functions/digests.sql). The migration runner fills it after every run that applied
-- something; `dualledger audit` (check function_definitions) reports a function changed,
-- created or dropped since, and the next `dualledger migrate` applies the file of a changed one
-- again. A database migrated with plain psql (scripts/run-migrations.sh) leaves it empty, and the
-- check then has nothing to compare.
--
-- Why: a function changed in place (CREATE OR REPLACE by hand, a GRANT EXECUTE to a service role)
-- left `migrate status` saying every file applied and the audit passing; the security review of
-- 2026-12-02 turned dl_acting_as_service off that way and the API's login then wrote operator-log
-- rows in an operator's name.
CREATE TABLE IF NOT EXISTS dualledger_function_digests (
    signature   text        PRIMARY KEY,
    digest      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON dualledger_function_digests FROM PUBLIC;
GRANT SELECT ON dualledger_function_digests TO dualledger_api, dualledger_worker, dualledger_readonly;
