package ledger_test

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/money"
	"dualledger/internal/pg/pgtest"
)

var update = flag.Bool("update", false, "rewrite the generated tables of docs/error-codes.md from ledger.Codes")

// errorCodesDoc is the page whose tables are generated from ledger.Codes and ledger.SchemaStates.
const errorCodesDoc = "../../docs/error-codes.md"

// generatedBlocks are the parts of docs/error-codes.md between markers, and what renders them.
var generatedBlocks = []struct {
	name   string
	render func() string
}{
	{"codes", ledger.CodesMarkdown},
	{"sqlstates", ledger.SchemaStatesMarkdown},
	{"formats", formatsMarkdown},
}

// formatsMarkdown renders the formats of ids and values from their Go sources (the same
// constants the validators and the OpenAPI document use; ids_schema_test.go and internal/money's
// schema_test.go hold them equal to the schema's CHECK constraints).
func formatsMarkdown() string {
	var b strings.Builder
	b.WriteString("| value | format | schema |\n| --- | --- | --- |\n")
	for _, f := range [][3]string{
		{"ledger id", "`" + ledger.LedgerIDPattern + "`", "`ledgers_id_format`, `ledgers_id_no_colon`"},
		{"bank id (also an account's `bank_id`)", "`" + ledger.BankIDPattern + "`", "`banks_id_format`, `bank_accounts_bank_id_format`"},
		{"account id", "`" + ledger.AccountIDPattern + "`", "`bank_accounts_id_format`"},
		{"API key id", "`" + auth.IDPattern + "`", "`api_keys_id_format`"},
		{"currency code", "`" + money.CurrencyCodePattern + "`, and a row of `currencies` (ISO 4217, `internal/money/iso4217.go`)", "`currencies_code_format`, foreign keys to `currencies`"},
		{"asset type", "one of " + strings.Join(money.AssetTypeNames(), ", "), "`bank_accounts_asset_type_valid`"},
	} {
		b.WriteString("| " + f[0] + " | " + strings.ReplaceAll(f[1], "|", `\|`) + " | " + f[2] + " |\n")
	}
	return b.String()
}

func beginMarker(name string) string {
	return "<!-- " + name + ":begin (generated, do not edit: go test ./internal/ledger -run TestErrorCodesDoc -update) -->\n"
}

func endMarker(name string) string { return "<!-- " + name + ":end -->" }

// TestErrorCodesDoc holds the tables of docs/error-codes.md equal to the code table. With -update
// it rewrites them; everything outside the markers stays hand-written.
func TestErrorCodesDoc(t *testing.T) {
	b, err := os.ReadFile(errorCodesDoc)
	if err != nil {
		t.Fatalf("read %s: %v", errorCodesDoc, err)
	}
	page := string(b)
	for _, g := range generatedBlocks {
		begin, end := beginMarker(g.name), endMarker(g.name)
		i := strings.Index(page, begin)
		j := strings.Index(page, end)
		if i < 0 || j < i {
			t.Fatalf("%s: markers %q ... %q not found (in this order)", errorCodesDoc, strings.TrimSpace(begin), end)
		}
		got, want := page[i+len(begin):j], g.render()
		if got == want {
			continue
		}
		if *update {
			page = page[:i+len(begin)] + want + page[j:]
			continue
		}
		t.Errorf("%s: the %s table differs from internal/ledger/codes.go; run go test ./internal/ledger -run TestErrorCodesDoc -update\n--- doc\n%s\n--- table\n%s",
			errorCodesDoc, g.name, got, want)
	}
	if *update && page != string(b) {
		if err := os.WriteFile(errorCodesDoc, []byte(page), 0o644); err != nil {
			t.Fatalf("write %s: %v", errorCodesDoc, err)
		}
		t.Logf("rewrote %s", errorCodesDoc)
	}
}

// TestCodesTable checks the table's own consistency and what is derived from it.
func TestCodesTable(t *testing.T) {
	seen := map[string]bool{}
	states := map[string]string{}
	for _, c := range ledger.Codes() {
		if c.Code == "" || !regexp.MustCompile(`^[a-z][a-z_]*$`).MatchString(c.Code) {
			t.Errorf("code %q: want lower_snake_case", c.Code)
		}
		if seen[c.Code] {
			t.Errorf("code %s: two rows", c.Code)
		}
		seen[c.Code] = true
		if http.StatusText(c.HTTPStatus) == "" {
			t.Errorf("code %s: HTTP status %d is not a status", c.Code, c.HTTPStatus)
		}
		if c.Meaning == "" || c.Details == "" {
			t.Errorf("code %s: meaning and details are documented (\"–\" for none)", c.Code)
		}
		if c.SQLSTATE != "" {
			if !regexp.MustCompile(`^DL[0-9]{3}$`).MatchString(c.SQLSTATE) {
				t.Errorf("code %s: SQLSTATE %q is not of class DL", c.Code, c.SQLSTATE)
			}
			if other, dup := states[c.SQLSTATE]; dup {
				t.Errorf("SQLSTATE %s: codes %s and %s", c.SQLSTATE, other, c.Code)
			}
			states[c.SQLSTATE] = c.Code
			// FromDB maps the state back to the code, with the database's message (less the code
			// it starts with, which Error() puts back once) and details.
			err := ledger.FromDB(&pgconn.PgError{Code: c.SQLSTATE, Message: c.Code + ": test", Detail: `{"field":"x"}`})
			var le *ledger.Error
			if !errors.As(err, &le) || le.Code != c.Code || le.Message != "test" || err.Error() != c.Code+": test" ||
				string(le.Details) != `{"field":"x"}` {
				t.Errorf("FromDB(SQLSTATE %s) = %#v, want code %s", c.SQLSTATE, err, c.Code)
			}
		}
		if got := ledger.HTTPStatus(c.Code); got != c.HTTPStatus {
			t.Errorf("HTTPStatus(%s) = %d, want %d", c.Code, got, c.HTTPStatus)
		}
	}
	for _, s := range ledger.SchemaStates() {
		if code, dup := states[s.State]; dup {
			t.Errorf("SQLSTATE %s: in SchemaStates and the state of code %s", s.State, code)
		}
		states[s.State] = "schema"
	}
	if got := ledger.HTTPStatus("no_such_code"); got != http.StatusInternalServerError {
		t.Errorf("HTTPStatus of an unknown code = %d, want 500", got)
	}
	// The money package's codes are ledger codes (API layers pass them on 1:1).
	for _, code := range []string{money.CodeInvalidAmount, money.CodeUnknownCurrency, money.CodeInvalidAssetType} {
		if c, ok := ledger.CodeByName(code); !ok || !c.Result {
			t.Errorf("money code %s: not a posting result of ledger.Codes", code)
		}
	}
	results := ledger.ResultCodes()
	if results[0] != ledger.CodeCreated || results[1] != ledger.CodeReplayed {
		t.Errorf("ResultCodes() = %v: want created and replayed first", results)
	}
}

// quotedState finds SQLSTATEs of class DL written as literals in function bodies
// (ERRCODE = 'DL009', and dl_result_sqlstate's CASE).
var quotedState = regexp.MustCompile(`'(DL[0-9A-Z]{3})'`)

// TestSQLStatesMatchSchema checks the SQL side of the code table on a migrated database: every
// class-DL SQLSTATE in a function body (migrations and db/functions alike) has a row, every row's
// DL state is raised somewhere, and dl_result_sqlstate maps each posting result to its row's state.
func TestSQLStatesMatchSchema(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `
		SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)
		  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
		   AND p.prokind IN ('f', 'p')`)
	if err != nil {
		t.Fatalf("read function bodies: %v", err)
	}
	raisedBy := map[string][]string{} // state -> functions
	for rows.Next() {
		var name, src string
		if err := rows.Scan(&name, &src); err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, m := range quotedState.FindAllStringSubmatch(stripSQLComments(src), -1) {
			if !slices.Contains(raisedBy[m[1]], name) {
				raisedBy[m[1]] = append(raisedBy[m[1]], name)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read function bodies: %v", err)
	}
	if len(raisedBy) == 0 {
		t.Fatal("no class-DL SQLSTATE in any function body: is the database migrated?")
	}

	known := map[string]bool{}
	for _, c := range ledger.Codes() {
		if c.SQLSTATE != "" {
			known[c.SQLSTATE] = true
		}
	}
	for _, s := range ledger.SchemaStates() {
		known[s.State] = true
	}
	var states []string
	for s := range raisedBy {
		states = append(states, s)
	}
	sort.Strings(states)
	for _, s := range states {
		if !known[s] {
			t.Errorf("SQLSTATE %s is raised by %v but has no row in ledger.Codes or ledger.SchemaStates (internal/ledger/codes.go)",
				s, raisedBy[s])
		}
	}
	for s := range known {
		if strings.HasPrefix(s, "DL") && len(raisedBy[s]) == 0 {
			t.Errorf("SQLSTATE %s has a row in internal/ledger/codes.go but no function raises it", s)
		}
	}

	// The posting function raises a rejection with dl_result_sqlstate(result): it must give each
	// posting result its row's state (replayed and reference_conflict: the 23505 of SQLNote).
	for _, c := range ledger.Codes() {
		want := c.SQLSTATE
		if want == "" && len(c.SQLNote) >= 5 {
			want = c.SQLNote[:5]
		}
		if !c.Result || want == "" {
			continue
		}
		var got string
		if err := db.Pool.QueryRow(ctx, `SELECT dl_result_sqlstate($1)`, c.Code).Scan(&got); err != nil {
			t.Fatalf("dl_result_sqlstate(%s): %v", c.Code, err)
		}
		if got != want {
			t.Errorf("dl_result_sqlstate(%s) = %s, ledger.Codes says %s", c.Code, got, want)
		}
	}
}

// stripSQLComments drops -- comments, so that a state named in a comment does not count as raised.
func stripSQLComments(src string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(src, "\n") {
		if i := strings.Index(line, "--"); i >= 0 && !strings.Contains(line[:i], "'") {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// resultSQLStateFile is dl_result_sqlstate, generated from the code table.
const resultSQLStateFile = "../../db/functions/result_sqlstate.sql"

// TestResultSQLStateFile holds db/functions/result_sqlstate.sql equal to what the code table
// renders (TestSQLStatesMatchSchema then checks the function in a migrated database). With
// -update it rewrites the file.
func TestResultSQLStateFile(t *testing.T) {
	want := ledger.ResultSQLStateSQL()
	if *update {
		if err := os.WriteFile(resultSQLStateFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(resultSQLStateFile)
	if err != nil {
		t.Fatalf("read %s: %v", resultSQLStateFile, err)
	}
	if string(got) != want {
		t.Errorf("%s is not what internal/ledger/codes.go renders: run go test ./internal/ledger -run TestResultSQLStateFile -update\n--- file\n%s\n--- rendered\n%s",
			resultSQLStateFile, got, want)
	}
}
