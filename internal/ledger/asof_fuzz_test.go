package ledger_test

import (
	"strconv"
	"testing"

	"dualledger/internal/ledger"
)

// FuzzParseAsOf: the as-of parameters of GET account and `accounts get --as-of` never panic,
// never yield both a seq and a time, a seq is the non-negative integer written (no sign, no
// leading zeros, no spaces), and a refusal is invalid_request naming the field.
func FuzzParseAsOf(f *testing.F) {
	for _, s := range [][2]string{{"0", ""}, {"42", ""}, {"", "2025-01-20T10:00:00Z"}, {"", "2025-01-20T10:00:00.123456+02:00"},
		{"-1", ""}, {"01", ""}, {" 1", ""}, {"1", "2025-01-20T10:00:00Z"}, {"9223372036854775808", ""}, {"", "yesterday"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, seqText, atText string) {
		seq, at, err := ledger.ParseAsOf(seqText, atText)
		if err != nil {
			if ledger.CodeOf(err) != ledger.CodeInvalidRequest || seq != nil || at != nil {
				t.Fatalf("ParseAsOf(%q, %q): %v with %v %v", seqText, atText, err, seq, at)
			}
			return
		}
		if seq != nil && at != nil {
			t.Fatalf("ParseAsOf(%q, %q): both", seqText, atText)
		}
		if seq != nil && (*seq < 0 || strconv.FormatInt(*seq, 10) != seqText) {
			t.Fatalf("ParseAsOf(%q): seq %d", seqText, *seq)
		}
		if (seq == nil && at == nil) != (seqText == "" && atText == "") {
			t.Fatalf("ParseAsOf(%q, %q): nothing parsed", seqText, atText)
		}
	})
}
