-- function_definitions compares every function of the schema (its definition and privileges,
-- dl_function_digests()) with what the last `dualledger migrate` recorded (migration 017): a
-- function changed, created or dropped by hand since is a finding. Nothing is compared when
-- nothing was recorded (a database migrated with plain psql). The fix is `dualledger migrate`,
-- which applies the file of a changed function again (docs/runbooks/audit-findings.md).
SELECT format('function %s %s since the last dualledger migrate', coalesce(c.signature, d.signature),
              CASE WHEN d.signature IS NULL THEN 'was created'
                   WHEN c.signature IS NULL THEN 'was dropped'
                   ELSE 'was changed (its body, settings or privileges)' END),
       jsonb_build_object('function', coalesce(c.signature, d.signature), 'recorded_at', d.recorded_at)
  FROM dl_function_digests() c
  FULL JOIN dualledger_function_digests d ON d.signature = c.signature
 WHERE EXISTS (SELECT 1 FROM dualledger_function_digests) AND c.digest IS DISTINCT FROM d.digest
 ORDER BY 1
