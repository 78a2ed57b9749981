package db_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"dualledger/internal/pg/pgtest"
)

// TestParseTimestampAgreesWith005 holds dl_parse_timestamp (db/functions/posting.sql: one
// pattern, inlined) to migration 005's PL/pgSQL version, which checked each field's range one by
// one: both must accept the same texts and give the same instants. 005's body is read from the
// migration and created as a temporary function; the inputs are every combination of boundary
// values of each field (years around 1900, centuries and leap years, every month with the days
// around its end, hours, minutes, seconds, fractions, separators and offsets), and 29 February of
// every year from 1000 to 9999.
func TestParseTimestampAgreesWith005(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	src, err := os.ReadFile("migrations/005_post_ledger_entry.sql")
	if err != nil {
		t.Fatal(err)
	}
	old := regexp.MustCompile(`(?s)CREATE OR REPLACE FUNCTION dl_parse_timestamp\(p text\).*?END \$\$;`).Find(src)
	if old == nil {
		t.Fatal("005's dl_parse_timestamp not found in the migration")
	}
	conn := d.Conn(t) // one session: the temporary function lives in it
	if _, err := conn.Exec(ctx, strings.Replace(string(old), "FUNCTION dl_parse_timestamp(", "FUNCTION pg_temp.parse_ts_005(", 1)); err != nil {
		t.Fatal(err)
	}

	// Dates: every year, month and day of the boundary sets, at a fixed valid time.
	// Times: every time, fraction, separator and offset of the boundary sets, on two dates.
	const inputs = `
WITH y(v) AS (VALUES ('0000'), ('1899'), ('1900'), ('1901'), ('1904'), ('1996'), ('1999'), ('2000'), ('2023'), ('2024'),
                     ('2100'), ('2400'), ('2800'), ('3200'), ('9996'), ('9999'), ('199'), ('19000')),
     m(v) AS (SELECT lpad(g::text, 2, '0') FROM generate_series(0, 13) g UNION ALL VALUES ('1'), ('001')),
     dd(v) AS (SELECT lpad(g::text, 2, '0') FROM generate_series(0, 32) g UNION ALL VALUES ('1'), ('010')),
     hh(v) AS (VALUES ('00'), ('09'), ('19'), ('20'), ('23'), ('24'), ('1')),
     mi(v) AS (VALUES ('00'), ('59'), ('60'), ('5')),
     fr(v) AS (VALUES (''), ('.'), ('.1'), ('.123456'), ('.1234567'), ('.x')),
     sep(v) AS (VALUES ('T'), ('t'), (' '), ('x'), ('')),
     off(v) AS (VALUES ('Z'), ('z'), ('+00:00'), ('-00:00'), ('+15:59'), ('-15:59'), ('+16:00'), ('+05:30'), ('+0530'),
                       ('-1200'), ('+05:60'), ('+5:30'), ('+05:3'), ('+05'), (''), ('UTC'), (' Z'), ('Z '))
SELECT y.v || '-' || m.v || '-' || dd.v || 'T12:30:45Z' FROM y, m, dd
UNION ALL
SELECT dt || sep.v || hh.v || ':' || mi.v || ':' || s.v || fr.v || off.v
  FROM (VALUES ('1900-01-01'), ('9999-12-31'), ('2024-02-29')) AS x(dt), sep, hh, mi, mi AS s, fr, off
UNION ALL
SELECT g::text || '-02-29T00:00:00Z' FROM generate_series(1000, 9999) g  -- every year's 29 February
UNION ALL
VALUES (NULL), (''), ('now'), ('2024-01-01'), ('2024-01-01T00:00:00'), ('１９９９-01-01T00:00:00Z'), ('2024-01-01T00:00:00Z\n')`

	var total, accepted int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(dl_parse_timestamp(i)) FROM (`+inputs+`) AS t(i)`).Scan(&total, &accepted); err != nil {
		t.Fatal(err)
	}
	if total < 50000 || accepted < 5000 || accepted == total {
		t.Fatalf("%d inputs, %d accepted: the sets do not cover both sides", total, accepted)
	}
	rows, err := conn.Query(ctx, `SELECT i, pg_temp.parse_ts_005(i)::text, dl_parse_timestamp(i)::text
		FROM (`+inputs+`) AS t(i)
		WHERE pg_temp.parse_ts_005(i) IS DISTINCT FROM dl_parse_timestamp(i)
		LIMIT 20`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var in, was, now *string
		if err := rows.Scan(&in, &was, &now); err != nil {
			t.Fatal(err)
		}
		t.Errorf("dl_parse_timestamp(%s) = %s, 005 gave %s", show(in), show(now), show(was))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return "'" + *s + "'"
}
