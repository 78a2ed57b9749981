package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"golang.org/x/text/unicode/norm"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

const referenceRulesFile = "../../db/functions/reference_rules.sql"

// TestReferenceRulesFile holds db/functions/reference_rules.sql to what ledger.ReferenceRulesSQL
// renders from the Go rules (-update writes it).
func TestReferenceRulesFile(t *testing.T) {
	want := ledger.ReferenceRulesSQL()
	if *update {
		if err := os.WriteFile(referenceRulesFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(referenceRulesFile)
	if err != nil {
		t.Fatalf("read %s: %v", referenceRulesFile, err)
	}
	if string(got) != want {
		t.Errorf("%s is not what internal/ledger/reference.go renders: run go test ./internal/ledger -run TestReferenceRulesFile -update",
			referenceRulesFile)
	}
}

// goReference is what ValidateReference says of ref: the rule it breaks ("" when accepted) and
// the error's details (nil when accepted).
func goReference(t *testing.T, ref string) (rule string, details []byte) {
	t.Helper()
	err := ledger.ValidateReference("reference_id", ref)
	if err == nil {
		return "", nil
	}
	var le *ledger.Error
	if !errors.As(err, &le) {
		t.Fatalf("%q: %v is not a *ledger.Error", ref, err)
	}
	var d struct {
		Rule string `json:"rule"`
	}
	if err := json.Unmarshal(le.Details, &d); err != nil {
		t.Fatalf("%q: details %s: %v", ref, le.Details, err)
	}
	return d.Rule, le.Details
}

// sameJSON reports whether a and b are the same JSON value, key order aside.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// sqlReferenceMessage is the message the database should give for ref, which breaks rule: Go's,
// without the character's name after its code point; for the rules whose Go message names no
// character but the reference itself ("", ".", "/"), the database's own words, checked by prefix.
func sqlReferenceMessage(t *testing.T, ref, rule string) string {
	t.Helper()
	var le *ledger.Error
	if !errors.As(ledger.ValidateReference("reference_id", ref), &le) {
		t.Fatalf("%+q: Go accepts it", ref)
	}
	msg := le.Message
	switch rule {
	case ledger.RefRuleRequired, ledger.RefRulePathSegment:
		return "" // compared by prefix below
	case ledger.RefRuleLength, ledger.RefRuleNFC:
		return msg
	}
	i := strings.LastIndex(msg, " (U+")
	j := strings.LastIndex(msg, ") at character ")
	if i < 0 || j < i {
		t.Fatalf("%+q: Go's message %q names no code point", ref, msg)
	}
	if k := strings.IndexByte(msg[i+2:j], ' '); k >= 0 {
		msg = msg[:i+2+k] + msg[j:]
	}
	return msg
}

// TestReferenceRulesAgree holds the posting function's reference rules (reference_rules.sql,
// rendered from the Go rules) to ValidateReference: the same rule, character and code point for
// every reference of the Go tests, and for every code point on either side of each place where
// the Go verdict on a character changes (so every range of every character class, at its edges),
// alone, first, in the middle and last in a reference, and after or before a combining mark.
func TestReferenceRulesAgree(t *testing.T) {
	refs := []string{"", "a", "a b", " ", "  ", "a  b", ".", "..", "/", "...", "./", "a" + strings.Repeat("é", 127),
		strings.Repeat("é", 129), strings.Repeat("😀", 128), strings.Repeat("😀", 129), strings.Repeat("a", 127) + " "}
	refs = append(refs, oddReferences...)
	for _, c := range refusedReferences {
		if utf8.ValidString(c.ref) && !strings.ContainsRune(c.ref, 0) { // text holds neither
			refs = append(refs, c.ref)
		}
	}
	// Where the verdict on a character in the middle of a reference changes.
	middle := func(r rune) string { rule, _ := goReference(t, "a"+string(r)+"b"); return rule }
	prev := middle(1)
	probes := []rune{1}
	for r := rune(2); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		if rule := middle(r); rule != prev {
			probes = append(probes, r-1, r)
			prev = rule
		}
	}
	probes = append(probes, unicode.MaxRune)
	for _, r := range probes {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		c := string(r)
		refs = append(refs, c, c+"ab", "a"+c+"b", "ab"+c, c+"\u0301", "a\u0301"+c, "\u00a0"+c+"\u00a0", "a"+c+"\u200b")
	}
	t.Logf("%d references, %d code points at the edges of the classes", len(refs), len(probes))

	db := pgtest.New(t)
	conn := db.Conn(t)
	rows, err := conn.Query(context.Background(), `
		SELECT u.s, coalesce(dl_reference_rule(u.s), ''), coalesce(dl_reference_message(to_jsonb(u.s)), ''),
		       coalesce(dl_reference_details(to_jsonb(u.s)), '{}')
		  FROM unnest($1::text[]) AS u(s)`, refs)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var ref, rule, msg string
		var details []byte
		if err := rows.Scan(&ref, &rule, &msg, &details); err != nil {
			t.Fatal(err)
		}
		n++
		wantRule, wantDetails := goReference(t, ref)
		switch {
		case rule != wantRule:
			t.Errorf("%+q: the database says %q, Go says %q", ref, rule, wantRule)
		case rule == "" && (msg != "" || string(details) != "{}"):
			t.Errorf("%+q: accepted, but the database gives a message %q and details %s", ref, msg, details)
		case rule != "" && !sameJSON(details, wantDetails):
			t.Errorf("%+q: the database's details %s, Go's %s", ref, details, wantDetails)
		case (rule == ledger.RefRuleRequired || rule == ledger.RefRulePathSegment) && !strings.HasPrefix(msg, "reference_id "):
			t.Errorf("%+q: the database's message %q", ref, msg)
		case rule != "" && rule != ledger.RefRuleRequired && rule != ledger.RefRulePathSegment && msg != sqlReferenceMessage(t, ref, rule):
			t.Errorf("%+q: the database's message %q, want %q", ref, msg, sqlReferenceMessage(t, ref, rule))
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(refs) {
		t.Fatalf("%d verdicts for %d references", n, len(refs))
	}
}

// TestReferenceNFCAgrees compares the one rule the database decides with its own Unicode tables,
// NFC (IS NFC NORMALIZED), with Go's, for every code point the per-character rules accept: alone
// after a letter, and before and after combining marks of low and high combining class (so that
// a decomposition, a composition or a canonical reordering of any of them shows). The only
// disagreements allowed are those of characters PostgreSQL's tables do not know yet (assigned
// after its Unicode version), which the database takes for unchanged by normalization; the API
// and the other Go paths refuse what Go refuses before the database sees it.
func TestReferenceNFCAgrees(t *testing.T) {
	// Combining marks assigned in Unicode 15.0 (Go's version; PostgreSQL 15's tables are 14.0's).
	unicode15Marks := map[rune]bool{0x10EFD: true, 0x10EFE: true, 0x10EFF: true, 0x11F41: true, 0x11F42: true,
		0x1E08F: true, 0x1E4EC: true, 0x1E4ED: true, 0x1E4EE: true, 0x1E4EF: true}
	var refs []string
	var of []rune // the code point each reference is about
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		c := string(r)
		if rule, _ := goReference(t, "a"+c+"b"); rule != "" {
			continue
		}
		// x has no precomposed form with either mark, so only c can make these not NFC: by its
		// own decomposition, by composing with the acute, or by a combining class that must be
		// reordered against the acute's (230) or the tilde overlay's (1).
		refs = append(refs, "x"+c, "x"+c+"\u0334", "x\u0301"+c, "x"+c+"\u0301")
		of = append(of, r, r, r, r)
	}
	db := pgtest.New(t)
	conn := db.Conn(t)
	rows, err := conn.Query(context.Background(),
		`SELECT u.s FROM unnest($1::text[]) AS u(s) WHERE u.s IS NOT NFC NORMALIZED`, refs)
	if err != nil {
		t.Fatal(err)
	}
	notNFC, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	dbNotNFC := map[string]bool{}
	for _, s := range notNFC {
		dbNotNFC[s] = true
	}
	var disagree []string
	for i, s := range refs {
		goNFC := norm.NFC.IsNormalString(s)
		if goNFC != dbNotNFC[s] {
			continue
		}
		if !goNFC && unicode15Marks[of[i]] {
			continue // refused by Go, not yet known to the database
		}
		disagree = append(disagree, fmt.Sprintf("%+q (Go: NFC %t)", s, goNFC))
	}
	t.Logf("%d references, %d not NFC in the database, %d disagreements", len(refs), len(notNFC), len(disagree))
	for i, d := range disagree {
		if i == 50 {
			t.Errorf("... and %d more", len(disagree)-50)
			break
		}
		t.Errorf("NFC: %s", d)
	}
}

// TestPostingFunctionAppliesReferenceRules posts through the SQL function itself, as a psql
// caller does (the Go paths check references before the database sees them): every reference
// the Go rules refuse is refused with invalid_request and Go's details (rule, character, code
// point, ...); the odd but valid ones post.
func TestPostingFunctionAppliesReferenceRules(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	var entries []map[string]any
	var want []string
	for _, c := range refusedReferences {
		if !utf8.ValidString(c.ref) || strings.ContainsRune(c.ref, 0) {
			continue
		}
		entries = append(entries, map[string]any{"debit_account_id": "issuance", "credit_account_id": "bob", "amount": "1",
			"currency_code": "USD", "asset_type": "fiat", "transaction_type": "t", "reference_id": c.ref})
		want = append(want, c.rule)
	}
	for i, ref := range oddReferences {
		entries = append(entries, map[string]any{"debit_account_id": "issuance", "credit_account_id": "bob", "amount": "1",
			"currency_code": "USD", "asset_type": "fiat", "transaction_type": "t", "reference_id": fmt.Sprintf("%s-%d", string([]rune(ref)[:min(utf8.RuneCountInString(ref), 100)]), i)})
		want = append(want, "")
	}
	body, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := d.Pool.Query(ctx, `SELECT idx, result, coalesce(message, ''), coalesce(details, '{}')
		FROM post_ledger_entries($1, $2::jsonb, false) ORDER BY idx`, L, body)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		Idx     int
		Code    string
		Message string
		Details []byte
	}
	results, err := pgx.CollectRows(rows, pgx.RowToStructByPos[result])
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(entries) {
		t.Fatalf("%d results for %d entries", len(results), len(entries))
	}
	for i, r := range results {
		ref := entries[i]["reference_id"].(string)
		if want[i] == "" {
			if r.Code != ledger.CodeCreated {
				t.Errorf("%+q: %s %s", ref, r.Code, r.Message)
			}
			continue
		}
		_, wantDetails := goReference(t, ref)
		if r.Code != ledger.CodeInvalidRequest || !sameJSON(r.Details, wantDetails) || !strings.HasPrefix(r.Message, "reference_id ") {
			t.Errorf("%+q: %s %q %s; want invalid_request with details %s", ref, r.Code, r.Message, r.Details, wantDetails)
		}
	}
}
