package money

import (
	"math/big"
	"strings"
	"testing"
)

// plainDecimal reports whether s matches ^-?[0-9]+(\.[0-9]+)?$ (the
// reference grammar, written independently of ParseAmount).
func plainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	ip, fp, hasPoint := strings.Cut(s, ".")
	allDigits := func(x string) bool {
		if x == "" {
			return false
		}
		for i := 0; i < len(x); i++ {
			if x[i] < '0' || x[i] > '9' {
				return false
			}
		}
		return true
	}
	return allDigits(ip) && (!hasPoint || allDigits(fp))
}

func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{
		"0", "-0", "1", "-1", "10.5", "1000.00", "10.010", "10.001", "0.1",
		"99999999999999999999.999999999999999999",
		"-99999999999999999999.999999999999999999",
		"100000000000000000000", "0.0000000000000000001", "1.0000000000000000000",
		"0000000000000000000000000000000000000000001.5",
		"1e5", "1E5", "1e-5", "+1", " 1", "1 ", "1,000.00", ".5", "5.", ".", "-", "--1",
		"NaN", "Inf", "-Infinity", "0x1F", "1_000", "１", "\u00a01", "1\x00",
		"-.5", "-5.", "1..2", "1.2.3", "", strings.Repeat("9", 65),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAmount(s)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			if len(err.Error()) > 400 {
				t.Fatalf("error message too long (%d)", len(err.Error()))
			}
			return
		}
		if strings.ContainsAny(s, "eE+ \t\r\n,_") {
			t.Fatalf("accepted %q", s)
		}
		if !plainDecimal(s) || len(s) > MaxInputLength {
			t.Fatalf("accepted %q, which is outside the grammar", s)
		}

		// Value agrees with an independent exact parser.
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("big.Rat cannot parse accepted %q", s)
		}
		if got := a.Decimal().Rat(); got.Cmp(want) != 0 {
			t.Fatalf("ParseAmount(%q) = %s, want %s", s, got.RatString(), want.RatString())
		}

		// String re-parses to an equal value and is canonical.
		str := a.String()
		b, err := ParseAmount(str)
		if err != nil {
			t.Fatalf("String() %q of %q does not re-parse: %v", str, s, err)
		}
		if !a.Equal(b) || b.String() != str {
			t.Fatalf("String round trip: %q -> %q -> %q", s, str, b.String())
		}
		if strings.ContainsAny(str, "eE+") || strings.HasSuffix(str, ".") ||
			(strings.Contains(str, ".") && strings.HasSuffix(str, "0")) || str == "-0" {
			t.Fatalf("String() %q not canonical", str)
		}

		// Fixed18 has exactly 18 decimals and re-parses equal.
		fx := a.Fixed18()
		ip, fp, found := strings.Cut(fx, ".")
		if !found || len(fp) != 18 || ip == "" {
			t.Fatalf("Fixed18() = %q", fx)
		}
		c, err := ParseAmount(fx)
		if err != nil || !c.Equal(a) {
			t.Fatalf("Fixed18 %q of %q does not re-parse equal: %v", fx, s, err)
		}
		if strings.TrimRight(strings.TrimRight(fx, "0"), ".") != str {
			t.Fatalf("Fixed18 %q and String %q disagree", fx, str)
		}

		// Limits hold and posting validation never panics.
		if err := a.CheckNumeric(); err != nil {
			t.Fatalf("parsed amount %q fails CheckNumeric: %v", s, err)
		}
		_ = ValidatePosting(a, "USD", Fiat)
		_ = ValidatePosting(a, "XAU", Commodity)
	})
}
