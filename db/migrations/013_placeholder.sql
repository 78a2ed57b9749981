-- 013_placeholder.sql
--
-- PLACEHOLDER in branch wt-holds only: migration numbers 012 and 013 belong to issues worked on in
-- parallel. The runner needs numbers without gaps, so this empty file stands in for the other
-- branch's migration; delete it (and its line in db/migrations.sum) when merging.
SELECT 1;
