package db_test

import (
	"testing"

	"dualledger/internal/pg/pgtest"
)

// maxFunctionLines is the most lines a function body in the schema may have (issue 7): a body
// must be readable in one screen. The posting function is a driver over named stages
// (db/functions/posting.sql) for this reason.
const maxFunctionLines = 150

// TestFunctionBodiesFitOnOneScreen fails when any PL/pgSQL or SQL function of the public schema
// has a body (pg_proc.prosrc) of more than maxFunctionLines lines.
func TestFunctionBodiesFitOnOneScreen(t *testing.T) {
	d := pgtest.New(t)
	long := strings1(t, d.Pool, `SELECT p.oid::regprocedure::text || ': ' || (array_length(string_to_array(p.prosrc, E'\n'), 1))::text || ' lines'
		FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
		WHERE p.pronamespace = 'public'::regnamespace AND l.lanname IN ('plpgsql', 'sql')
		  AND array_length(string_to_array(p.prosrc, E'\n'), 1) > $1
		ORDER BY 1`, maxFunctionLines)
	for _, f := range long {
		t.Errorf("function body over %d lines: %s", maxFunctionLines, f)
	}
	// The check must see the posting functions (a query that matched nothing would pass).
	if got := strings1(t, d.Pool, `SELECT p.proname::text FROM pg_proc p
		WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('post_ledger_entries', 'dl_post_walk', 'dl_post_parse')
		ORDER BY 1`); len(got) != 3 {
		t.Fatalf("posting functions in the schema: %v, want post_ledger_entries and its stages", got)
	}
}
