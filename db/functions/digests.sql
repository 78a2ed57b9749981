-- The digest of each function of the schema (migration 017): its signature, and the md5 of its
-- definition as pg_get_functiondef prints it with its privileges. search_path is pg_catalog
-- alone, so every name of the schema prints qualified and the text does not depend on the
-- caller's path. Functions of extensions are left out (they belong to the extension, not to the
-- migrations). Read by the migration runner (to record and to find drift) and by the audit.
--
-- The settings that change how a definition prints are fixed too (a SQL-standard body's
-- timestamptz constants print in the session's TimeZone): the digest is the same for every
-- caller. The owner is part of it (pg_get_functiondef leaves it out, and a SECURITY DEFINER
-- function runs as its owner). An aggregate (no definition to print) is digested by its
-- signature, owner and privileges.
CREATE OR REPLACE FUNCTION dl_function_digests() RETURNS TABLE (signature text, digest text)
LANGUAGE sql STABLE
SET search_path = pg_catalog
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
SET extra_float_digits = 1
SET standard_conforming_strings = on
SET quote_all_identifiers = off
AS $$
SELECT p.oid::regprocedure::text,
       md5(CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END
           || '|' || pg_get_userbyid(p.proowner) || '|' || coalesce(p.proacl::text, ''))
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend x
                    WHERE x.classid = 'pg_proc'::regclass AND x.objid = p.oid AND x.deptype = 'e')
$$;
REVOKE ALL ON FUNCTION dl_function_digests() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dl_function_digests() TO dualledger_api, dualledger_worker, dualledger_readonly;
