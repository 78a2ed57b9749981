package money_test

// The Go tables of this package are the single source of the currency table, the asset types and
// the currency code format; the schema holds copies (migration 000's INSERT and CHECKs, which
// applied migrations can no longer change, and the posting function's asset types in
// db/functions/posting.sql). These tests hold the copies equal on a migrated
// database: a change to either side without the other fails here.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/money"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestCurrenciesMatchSQL: the database's currencies table equals money.Currencies(), row for row
// (code, minor unit, name), and its CHECKs agree with the Go rules.
func TestCurrenciesMatchSQL(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `SELECT code, minor_unit, name FROM currencies ORDER BY code COLLATE "C"`)
	if err != nil {
		t.Fatalf("read currencies: %v", err)
	}
	sqlRows, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (money.Currency, error) {
		var c money.Currency
		var minor int16
		err := r.Scan(&c.Code, &minor, &c.Name)
		c.MinorUnit = int(minor)
		return c, err
	})
	if err != nil {
		t.Fatalf("read currencies: %v", err)
	}
	goRows := money.Currencies()
	inSQL := map[string]money.Currency{}
	for _, c := range sqlRows {
		inSQL[c.Code] = c
	}
	inGo := map[string]bool{}
	var upserts, deletes []string // the SQL of a migration that would bring the database to Go's table
	for _, g := range goRows {
		inGo[g.Code] = true
		s, ok := inSQL[g.Code]
		switch {
		case !ok:
			t.Errorf("currency %s is in internal/money but not in the database's currencies table", g.Code)
		case s != g:
			t.Errorf("currency %s: database %+v, Go %+v", g.Code, s, g)
		}
		if !ok || s != g {
			upserts = append(upserts, fmt.Sprintf("(%s, %d, %s)", sqlQuote(g.Code), g.MinorUnit, sqlQuote(g.Name)))
		}
	}
	for _, s := range sqlRows {
		if !inGo[s.Code] {
			t.Errorf("currency %s is in the database's currencies table but not in internal/money", s.Code)
			deletes = append(deletes, sqlQuote(s.Code))
		}
	}
	if len(upserts) > 0 || len(deletes) > 0 {
		// Applied migrations are never edited: a change of the Go table ships as a new migration.
		var m strings.Builder
		if len(upserts) > 0 {
			m.WriteString("INSERT INTO currencies (code, minor_unit, name) VALUES\n    " + strings.Join(upserts, ",\n    ") +
				"\nON CONFLICT (code) DO UPDATE SET minor_unit = EXCLUDED.minor_unit, name = EXCLUDED.name;\n")
		}
		if len(deletes) > 0 {
			m.WriteString("DELETE FROM currencies WHERE code IN (" + strings.Join(deletes, ", ") + "); -- fails while accounts use them\n")
		}
		t.Logf("a new migration that brings the database to internal/money's table:\n%s", m.String())
	}
	if len(goRows) != len(sqlRows) {
		t.Errorf("%d currencies in Go, %d in the database", len(goRows), len(sqlRows))
	}

	// The code format: the same regular expression as the CHECK.
	var def string
	if err := db.Pool.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'currencies'::regclass AND conname = 'currencies_code_format'`).Scan(&def); err != nil {
		t.Fatalf("currencies_code_format: %v", err)
	}
	if want := fmt.Sprintf("~ '%s'::text", money.CurrencyCodePattern); !strings.Contains(def, want) {
		t.Errorf("currencies_code_format is %s; Go's CurrencyCodePattern is %s", def, money.CurrencyCodePattern)
	}
	re := regexp.MustCompile(money.CurrencyCodePattern)
	for _, c := range goRows {
		if !re.MatchString(c.Code) {
			t.Errorf("currency %s does not match CurrencyCodePattern", c.Code)
		}
		if c.MinorUnit < 0 || c.MinorUnit > money.MaxScale {
			t.Errorf("currency %s: minor unit %d outside 0..%d (currencies_minor_unit_range)", c.Code, c.MinorUnit, money.MaxScale)
		}
	}
}

// quotedValue matches the string literals of an IN list as pg_get_constraintdef renders it:
// CHECK ((asset_type = ANY (ARRAY['fiat'::text, ...]))).
var quotedValue = regexp.MustCompile(`'((?:[^']|'')*)'::text`)

// TestAssetTypesMatchSQL: every CHECK constraint on a column named asset_type allows exactly
// money.AssetTypes(). bank_accounts has one; ledger_entries has none of its own (the chain-check
// trigger, DL102, requires each entry's asset type to be both accounts'), so the accounts' CHECK
// bounds the entries too. The posting function has its own copy (dl_post_parse rejects an entry's
// asset_type before it reads any account, and dl_post_problem_message lists the types): every
// list of string literals with 'fiat' in a function's body must be money's list, and
// post_ledger_entries must accept each of money's types and reject near misses with money's
// message.
func TestAssetTypesMatchSQL(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `
		SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
		  FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
		 WHERE c.contype = 'c' AND a.attname = 'asset_type'
		 ORDER BY 1, 2`)
	if err != nil {
		t.Fatalf("read CHECK constraints: %v", err)
	}
	type check struct{ Table, Name, Def string }
	checks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[check])
	if err != nil {
		t.Fatalf("read CHECK constraints: %v", err)
	}
	var want []string
	for _, a := range money.AssetTypes() {
		want = append(want, string(a))
	}
	tables := map[string]bool{}
	for _, c := range checks {
		tables[c.Table] = true
		var got []string
		for _, m := range quotedValue.FindAllStringSubmatch(c.Def, -1) {
			got = append(got, strings.ReplaceAll(m[1], "''", "'"))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s.%s allows %v (%s); money.AssetTypes() is %v", c.Table, c.Name, got, c.Def, want)
		}
	}
	if !tables["bank_accounts"] {
		t.Errorf("bank_accounts has no CHECK on asset_type (found %v)", checks)
	}

	// And the constraint's verdict on values: each Go asset type is accepted, near misses are not.
	conn := db.Conn(t)
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE probe (asset_type text)`); err != nil {
		t.Fatalf("probe table: %v", err)
	}
	for _, c := range checks {
		if c.Table != "bank_accounts" {
			continue
		}
		if _, err := conn.Exec(ctx, `ALTER TABLE probe ADD CONSTRAINT `+pgx.Identifier{c.Name}.Sanitize()+` `+c.Def); err != nil {
			t.Fatalf("copy %s: %v", c.Name, err)
		}
	}
	nearMisses := []string{"FIAT", "Fiat", " fiat", "fiat ", "crypto", "", "cash", "securities"}
	for _, v := range append(slices.Clone(want), nearMisses...) {
		_, err := conn.Exec(ctx, `INSERT INTO probe VALUES ($1)`, v)
		_, goErr := money.ParseAssetType(v)
		if (err == nil) != (goErr == nil) {
			t.Errorf("asset type %q: database error %v, Go error %v", v, err, goErr)
		}
	}

	// The function bodies' copies: each literal list that names 'fiat' (dl_post_parse's
	// `NOT IN (...)`; an SQL-standard body renders one as `ARRAY[...]`).
	rows, err = db.Pool.Query(ctx, `
		SELECT p.proname::text, coalesce(nullif(p.prosrc, ''), pg_get_function_sqlbody(p.oid))
		  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
		   AND coalesce(nullif(p.prosrc, ''), pg_get_function_sqlbody(p.oid)) LIKE '%''fiat''%'
		 ORDER BY 1`)
	if err != nil {
		t.Fatalf("read function bodies: %v", err)
	}
	type fnBody struct{ Name, Src string }
	bodies, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fnBody])
	if err != nil {
		t.Fatalf("read function bodies: %v", err)
	}
	lists := map[string]int{}
	for _, b := range bodies {
		for _, m := range literalList.FindAllStringSubmatch(b.Src, -1) {
			var got []string
			for _, v := range quotedLiteral.FindAllStringSubmatch(m[1], -1) {
				got = append(got, strings.ReplaceAll(v[1], "''", "'"))
			}
			if !slices.Contains(got, string(money.Fiat)) {
				continue
			}
			lists[b.Name]++
			if !slices.Equal(got, want) {
				t.Errorf("function %s lists the asset types %v (%s); money.AssetTypes() is %v", b.Name, got, m[0], want)
			}
		}
	}
	if lists["dl_post_parse"] == 0 {
		t.Errorf("no list of asset types found in dl_post_parse's body (found lists in %v): the posting function's check moved; update this test", lists)
	}

	// And the posting function's verdict: in a scratch ledger with two accounts of each of
	// money's types, an entry of each type is created, and one of each near miss is rejected as
	// invalid_asset_type with money's message (the list in the message is money's list).
	if _, err := conn.Exec(ctx, `INSERT INTO ledgers (id) VALUES ('ASSETS')`); err != nil {
		t.Fatal(err)
	}
	type entry map[string]any
	var entries []entry
	for _, a := range want {
		if _, err := conn.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
			VALUES ('ASSETS', $1 || '-from', 'USD', $1, NULL), ('ASSETS', $1 || '-to', 'USD', $1, 0)`, a); err != nil {
			t.Fatalf("accounts of asset type %s: %v", a, err)
		}
	}
	probes := append(slices.Clone(want), nearMisses...)
	for i, a := range probes {
		from, to := a+"-from", a+"-to"
		if !slices.Contains(want, a) {
			from, to = "fiat-from", "fiat-to"
		}
		entries = append(entries, entry{"debit_account_id": from, "credit_account_id": to, "amount": "1.00",
			"currency_code": "USD", "asset_type": a, "transaction_type": "probe", "reference_id": fmt.Sprintf("asset-%d", i)})
	}
	batch, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	rows, err = conn.Query(ctx, `SELECT idx, result, coalesce(message, '') FROM post_ledger_entries('ASSETS', $1::jsonb, false) ORDER BY idx`, batch)
	if err != nil {
		t.Fatalf("post_ledger_entries: %v", err)
	}
	type outcome struct {
		Idx             int32
		Result, Message string
	}
	outcomes, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outcome])
	if err != nil {
		t.Fatalf("post_ledger_entries: %v", err)
	}
	if len(outcomes) != len(probes) {
		t.Fatalf("%d outcomes for %d entries", len(outcomes), len(probes))
	}
	for i, o := range outcomes {
		a := probes[i]
		_, goErr := money.ParseAssetType(a)
		switch {
		case goErr == nil && o.Result != "created":
			t.Errorf("asset type %q (money accepts it): the posting function answers %s: %s", a, o.Result, o.Message)
		case goErr != nil && (o.Result != money.CodeInvalidAssetType || o.Message != goErr.Error()):
			t.Errorf("asset type %q (money: %v): the posting function answers %s: %s", a, goErr, o.Result, o.Message)
		}
	}
}

// literalList matches a parenthesized or ARRAY[...] list of string literals (with or without
// ::text casts) in a function's body; quotedLiteral each literal in it.
var (
	literalList   = regexp.MustCompile(`(?:\(|ARRAY\[)\s*('(?:[^']|'')*'(?:::text)?(?:\s*,\s*'(?:[^']|'')*'(?:::text)?)*)\s*(?:\)|\])`)
	quotedLiteral = regexp.MustCompile(`'((?:[^']|'')*)'`)
)

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
