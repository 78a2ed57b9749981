package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// checkRegex matches the regular expression of a CHECK constraint as pg_get_constraintdef
// renders it: CHECK ((id ~ '^...$'::text)).
var checkRegex = regexp.MustCompile(`~ '((?:[^']|'')*)'::text`)

// constraintRegex returns the one regular expression of CHECK constraint name on table.
func constraintRegex(t *testing.T, conn *pgx.Conn, table, name string) string {
	t.Helper()
	var def string
	err := conn.QueryRow(context.Background(), `
		SELECT pg_get_constraintdef(oid) FROM pg_constraint
		 WHERE conrelid = $1::regclass AND conname = $2 AND contype = 'c'`, table, name).Scan(&def)
	if err != nil {
		t.Fatalf("CHECK constraint %s of %s: %v", name, table, err)
	}
	m := checkRegex.FindAllStringSubmatch(def, -1)
	if len(m) != 1 {
		t.Fatalf("CHECK constraint %s of %s: want one regular expression, got %q", name, table, def)
	}
	return strings.ReplaceAll(m[0][1], "''", "'")
}

// checkProbe copies every CHECK constraint of table that involves column alone onto a temporary
// one-column table, so that values can be tried against the schema's own rules without the
// table's other columns, triggers and foreign keys. It returns a function that reports whether
// the constraints accept a value.
func checkProbe(t *testing.T, conn *pgx.Conn, table, column string) func(string) bool {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `
		SELECT c.conname, pg_get_constraintdef(c.oid)
		  FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = $2
		 WHERE c.conrelid = $1::regclass AND c.contype = 'c' AND c.conkey = ARRAY[a.attnum]
		 ORDER BY c.conname`, table, column)
	if err != nil {
		t.Fatalf("CHECK constraints of %s.%s: %v", table, column, err)
	}
	type check struct{ Name, Def string }
	checks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[check])
	if err != nil {
		t.Fatalf("CHECK constraints of %s.%s: %v", table, column, err)
	}
	if len(checks) == 0 {
		t.Fatalf("%s.%s has no CHECK constraint", table, column)
	}
	probe := pgx.Identifier{"probe_" + table + "_" + column}.Sanitize()
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE TEMP TABLE %s (%s text)`, probe, pgx.Identifier{column}.Sanitize())); err != nil {
		t.Fatalf("create probe table: %v", err)
	}
	for _, c := range checks {
		if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER TABLE %s ADD CONSTRAINT %s %s`, probe, pgx.Identifier{c.Name}.Sanitize(), c.Def)); err != nil {
			t.Fatalf("copy %s to the probe table: %v", c.Name, err)
		}
	}
	return func(v string) bool {
		_, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO %s VALUES ($1)`, probe), v)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return true
		case errors.As(err, &pgErr) && pgErr.Code == "23514":
			return false
		default:
			t.Fatalf("probe %s.%s with %q: %v", table, column, v, err)
			return false
		}
	}
}

// idProbes are values at the edges of every id format: each character class, the lengths around
// each limit, a trailing newline ($ in Go and in PostgreSQL), non-ASCII letters.
func idProbes() []string {
	p := []string{
		"a", "Z", "0", "_a", ".a", "-a", ":a", "a_", "a.b", "a:b", "a-b", "a@b", "a/b", "a b", "a\n", "\na",
		"a\tb", "é", "aé", "ß", "a'b", `a"b`, "a%b", "a+b", "A:B:C", "ledger-1", "bank.1", "acct@bank/1",
		"key_abcdefghijklmnop", "key_234567abcdefghij", "key_abcdefghijklmno1", "key_ABCDEFGHIJKLMNOP",
		"key_abcdefghijklmno", "key_abcdefghijklmnopq", "key-abcdefghijklmnop", "KEY_abcdefghijklmnop",
	}
	for _, n := range []int{63, 64, 65, 127, 128, 129} {
		p = append(p, strings.Repeat("a", n), "a"+strings.Repeat(":", n-1), "a"+strings.Repeat("@", n-1))
	}
	return p
}

// TestIDPatternsMatchSchema holds the Go id formats (ledger.*IDPattern, auth.IDPattern) equal to
// the schema's CHECK constraints: the same regular expression, and the same verdict on every
// probe (ledger ids: the format and the no-':' rule of 009 together).
func TestIDPatternsMatchSchema(t *testing.T) {
	db := pgtest.New(t)
	conn := db.Conn(t)

	for _, c := range []struct{ table, constraint, pattern string }{
		{"ledgers", "ledgers_id_format", ledger.BankIDPattern}, // the shared shape; ':' is refused by ledgers_id_no_colon
		{"banks", "banks_id_format", ledger.BankIDPattern},
		{"bank_accounts", "bank_accounts_id_format", ledger.AccountIDPattern},
		{"bank_accounts", "bank_accounts_bank_id_format", ledger.BankIDPattern},
		{"api_keys", "api_keys_id_format", auth.IDPattern},
	} {
		if got := constraintRegex(t, conn, c.table, c.constraint); got != c.pattern {
			t.Errorf("%s: the schema says %s, Go says %s", c.constraint, got, c.pattern)
		}
	}

	for _, c := range []struct {
		table, column string
		pattern       string
	}{
		{"ledgers", "id", ledger.LedgerIDPattern},
		{"banks", "id", ledger.BankIDPattern},
		{"bank_accounts", "id", ledger.AccountIDPattern},
		{"bank_accounts", "bank_id", ledger.BankIDPattern},
		{"api_keys", "id", auth.IDPattern},
	} {
		accepts := checkProbe(t, conn, c.table, c.column)
		re := regexp.MustCompile(c.pattern)
		for _, v := range idProbes() {
			if sql, goes := accepts(v), re.MatchString(v); sql != goes {
				t.Errorf("%s.%s %q: the schema accepts it: %v, Go (%s): %v", c.table, c.column, v, sql, c.pattern, goes)
			}
		}
	}

	// The Go validators use the patterns.
	for _, v := range idProbes() {
		if got, want := ledger.ValidLedgerID(v), regexp.MustCompile(ledger.LedgerIDPattern).MatchString(v); got != want {
			t.Errorf("ValidLedgerID(%q) = %v, LedgerIDPattern says %v", v, got, want)
		}
		if got, want := auth.ValidID(v), regexp.MustCompile(auth.IDPattern).MatchString(v); got != want {
			t.Errorf("auth.ValidID(%q) = %v, IDPattern says %v", v, got, want)
		}
	}
}
