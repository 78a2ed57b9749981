package db_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The balance rules are written twice, on purpose: the check before migration 004 must run on a
// database that has no audit yet, and the audit's account_rules returns details as well. The
// rules themselves (which rows break them, and what the message says) must be the same text.
var (
	rulesWhere   = regexp.MustCompile(`(?s)FROM bank_accounts\s+WHERE .*?ORDER BY ledger_id, id`)
	rulesMessage = regexp.MustCompile(`(?s)concat_ws\('; ',.*?END\)\)`)
)

func TestBalanceRulesAgree(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	check := read("checks/004_balance_constraints.before.sql")
	audit := read("../internal/integrity/checks/02_account_rules.sql")
	norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, re := range []*regexp.Regexp{rulesWhere, rulesMessage} {
		a, b := re.FindString(check), re.FindString(audit)
		if a == "" || b == "" {
			t.Fatalf("%s not found in both files (check: %q, audit: %q)", re, a, b)
		}
		if norm(a) != norm(b) {
			t.Errorf("the check before 004 and the audit's account_rules differ:\n%s\n---\n%s", a, b)
		}
	}
}
