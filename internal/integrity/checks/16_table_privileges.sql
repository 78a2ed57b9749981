-- table_privileges: nobody but the owner of the ledger's tables may write them directly, and no
-- trigger on them is disabled. Every write goes through a SECURITY DEFINER function (migration
-- 010 grants SELECT and EXECUTE only), and the guard and chain triggers are what stops even the
-- owner from changing money by hand; a GRANT of INSERT or UPDATE to a service role, or a
-- DISABLE TRIGGER, made by hand, let a login move money outside the posting functions, and no
-- other check saw it until the balances showed it. Checked: table and column privileges
-- (INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER) and sequence UPDATE (setval) of any
-- role other than the tables' owner, PUBLIC included. The fix: docs/runbooks/audit-findings.md.
SELECT format('%s has %s on %s, which only the owner of the ledger''s tables may have: every write goes through the posting, hold and outbox functions',
              w.grantee, w.privilege, w.object),
       jsonb_build_object('object', w.object, 'grantee', w.grantee, 'privilege', w.privilege)
  FROM (
    SELECT c.oid::regclass::text AS object, a.privilege_type AS privilege,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee
      FROM pg_class t, pg_class c, aclexplode(c.relacl) a
     WHERE t.oid = 'ledger_entries'::regclass AND c.relnamespace = t.relnamespace AND a.grantee <> c.relowner
       AND (c.relkind IN ('r', 'p') AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
            OR c.relkind = 'S' AND a.privilege_type = 'UPDATE')
    UNION ALL
    SELECT format('%s (column %s)', c.oid::regclass, att.attname), a.privilege_type,
           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
      FROM pg_class t, pg_class c, pg_attribute att, aclexplode(att.attacl) a
     WHERE t.oid = 'ledger_entries'::regclass AND c.relnamespace = t.relnamespace AND att.attrelid = c.oid
       AND a.grantee <> c.relowner AND a.privilege_type IN ('INSERT', 'UPDATE', 'REFERENCES')) w
UNION ALL
SELECT format('trigger %s on %s is disabled (pg_trigger.tgenabled = %s): the table''s guard no longer runs',
              g.tgname, g.tgrelid::regclass, quote_literal(g.tgenabled::text)),
       jsonb_build_object('trigger', g.tgname, 'table', g.tgrelid::regclass::text, 'tgenabled', g.tgenabled::text)
  FROM pg_class t, pg_class c, pg_trigger g
 WHERE t.oid = 'ledger_entries'::regclass AND c.relnamespace = t.relnamespace AND g.tgrelid = c.oid
   AND NOT g.tgisinternal AND g.tgenabled <> 'O'
 ORDER BY 1
