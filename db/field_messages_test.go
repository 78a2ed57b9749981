package db_test

import (
	"strings"
	"testing"
)

// TestFieldMessagesSayWhatIsWrong: a transaction type or account id that is there but too long,
// or a type with a control character, is told what is wrong with it; "is required" (what every
// such value was answered before) sent the client looking for a field it had sent.
func TestFieldMessagesSayWhatIsWrong(t *testing.T) {
	o := newOverflowLedger(t)
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, c := range []struct {
		field string
		value any
		want  string
	}{
		{"transaction_type", long(65), "transaction_type is 65 characters long: at most 64"},
		{"transaction_type", "a\tb", `transaction_type "a\tb" contains a control character`},
		{"transaction_type", "", `transaction_type is required: a string of 1 to 64 characters, got ""`},
		{"transaction_type", nil, "transaction_type is required: a string of 1 to 64 characters, got null"},
		{"debit_account_id", long(129), "debit_account_id is 129 characters long: at most 128"},
		{"credit_account_id", long(200), "credit_account_id is 200 characters long: at most 128"},
		{"credit_account_id", "", `credit_account_id is required: a string of 1 to 128 characters, got ""`},
	} {
		e := ovEntry("m-1", "U", "X", "1.00")
		e[c.field] = c.value
		got := o.post(false, e)
		if len(got) != 1 || got[0].Code != "invalid_request" || !strings.HasPrefix(got[0].Msg, c.want) || got[0].Details["field"] != c.field {
			t.Errorf("%s %q: %+v, want %q", c.field, c.value, got, c.want)
		}
	}
	// Missing altogether.
	e := ovEntry("m-2", "U", "X", "1.00")
	delete(e, "transaction_type")
	if got := o.post(false, e); len(got) != 1 || got[0].Msg != "transaction_type is required: a string of 1 to 64 characters, got nothing" {
		t.Errorf("missing: %+v", got)
	}
}
