-- function_definitions compares every function of the schema (its definition, owner and
-- privileges, dl_function_digests()) with what the last `dualledger migrate` recorded (migration
-- 017): a function changed, created or dropped by hand since is a finding. migrate records only
-- the functions its files define, so one created by hand stays a finding until it is dropped.
-- Nothing is compared when nothing was recorded (a database migrated with plain psql). A
-- function owned by another role than the ledger's tables is a finding whatever was recorded (a
-- SECURITY DEFINER function runs as its owner). The fix: docs/runbooks/audit-findings.md.
SELECT format('function %s %s since the last dualledger migrate', coalesce(c.signature, d.signature),
              CASE WHEN d.signature IS NULL THEN 'was created'
                   WHEN c.signature IS NULL THEN 'was dropped'
                   ELSE 'was changed (its body, settings, owner or privileges)' END),
       jsonb_build_object('function', coalesce(c.signature, d.signature), 'recorded_at', d.recorded_at)
  FROM dl_function_digests() c
  FULL JOIN dualledger_function_digests d ON d.signature = c.signature
 WHERE EXISTS (SELECT 1 FROM dualledger_function_digests) AND c.digest IS DISTINCT FROM d.digest
UNION ALL
SELECT format('function %s is owned by %s, not by %s, the owner of the ledger''s tables',
              p.oid::regprocedure, pg_get_userbyid(p.proowner), pg_get_userbyid(t.relowner)),
       jsonb_build_object('function', p.oid::regprocedure::text, 'owner', pg_get_userbyid(p.proowner))
  FROM pg_proc p, pg_class t
 WHERE t.oid = 'ledger_entries'::regclass AND p.pronamespace = t.relnamespace AND p.proowner <> t.relowner
   AND NOT EXISTS (SELECT 1 FROM pg_depend x WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid AND x.deptype = 'e')
 ORDER BY 1
