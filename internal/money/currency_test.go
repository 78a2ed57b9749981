package money

import (
	"errors"
	"sort"
	"strings"
	"testing"
)

func TestLookupCurrency(t *testing.T) {
	tests := []struct {
		code  string
		ok    bool
		minor int
	}{
		{"USD", true, 2}, {"EUR", true, 2}, {"GBP", true, 2}, {"CHF", true, 2},
		{"JPY", true, 0}, {"KRW", true, 0}, {"VND", true, 0}, {"ISK", true, 0},
		{"CLP", true, 0}, {"PYG", true, 0}, {"UGX", true, 0}, {"VUV", true, 0},
		{"XAF", true, 0}, {"XOF", true, 0}, {"XPF", true, 0}, {"KMF", true, 0},
		{"RWF", true, 0}, {"GNF", true, 0}, {"DJF", true, 0}, {"BIF", true, 0}, {"UYI", true, 0},
		{"BHD", true, 3}, {"IQD", true, 3}, {"JOD", true, 3}, {"KWD", true, 3},
		{"LYD", true, 3}, {"OMR", true, 3}, {"TND", true, 3},
		{"CLF", true, 4}, {"UYW", true, 4},
		{"VED", true, 2}, {"VES", true, 2}, {"SLE", true, 2}, {"ZWG", true, 2}, {"XCG", true, 2},
		{"XAU", true, 18}, {"XAG", true, 18}, {"XPT", true, 18}, {"XPD", true, 18}, {"XDR", true, 18},
		// not currencies / withdrawn / wrong case
		{"XXX", false, 0}, {"XTS", false, 0}, {"HRK", false, 0}, {"VEF", false, 0},
		{"usd", false, 0}, {"Usd", false, 0}, {"US", false, 0}, {"USDT", false, 0},
		{"", false, 0}, {" USD", false, 0}, {"BTC", false, 0},
	}
	for _, tt := range tests {
		c, ok := LookupCurrency(tt.code)
		if ok != tt.ok {
			t.Errorf("LookupCurrency(%q) ok = %v, want %v", tt.code, ok, tt.ok)
			continue
		}
		if ok && (c.MinorUnit != tt.minor || c.Code != tt.code || c.Name == "") {
			t.Errorf("LookupCurrency(%q) = %+v, want minor unit %d", tt.code, c, tt.minor)
		}
	}
}

func TestCheckCurrencyMessages(t *testing.T) {
	tests := map[string]string{
		"usd": `unknown currency code "usd" (ISO 4217 codes are three upper-case letters)`,
		"":    `unknown currency code "" (ISO 4217 codes are three upper-case letters)`,
		"XTS": `unknown currency code "XTS" (not an active ISO 4217 currency code)`,
	}
	for in, want := range tests {
		_, err := CheckCurrency(in)
		var me *Error
		if !errors.As(err, &me) || me.Code != CodeUnknownCurrency || me.Field != FieldCurrency {
			t.Errorf("CheckCurrency(%q) = %#v", in, err)
			continue
		}
		if err.Error() != want {
			t.Errorf("CheckCurrency(%q) = %q, want %q", in, err.Error(), want)
		}
		if !errors.Is(err, ErrUnknownCurrency) || errors.Is(err, ErrInvalidAmount) {
			t.Errorf("errors.Is mismatch for %q", in)
		}
	}
	if c, err := CheckCurrency("EUR"); err != nil || c.Code != "EUR" {
		t.Errorf("CheckCurrency(EUR) = %v, %v", c, err)
	}
}

func TestCurrencyTable(t *testing.T) {
	all := Currencies()
	if len(all) < 155 {
		t.Errorf("only %d currencies", len(all))
	}
	if !sort.SliceIsSorted(all, func(i, j int) bool { return all[i].Code < all[j].Code }) {
		t.Error("Currencies() not sorted")
	}
	seen := map[string]bool{}
	for i, c := range all {
		if !isUpper3(c.Code) {
			t.Errorf("bad code %q", c.Code)
		}
		if seen[c.Code] {
			t.Errorf("duplicate %s", c.Code)
		}
		seen[c.Code] = true
		if i > 0 && iso4217[i-1].Code >= iso4217[i].Code {
			t.Errorf("iso4217 literal not sorted at %s", iso4217[i].Code)
		}
		switch c.MinorUnit {
		case 0, 2, 3, 4, MaxScale:
		default:
			t.Errorf("%s: odd minor unit %d", c.Code, c.MinorUnit)
		}
		if c.MinorUnit == MaxScale && !strings.HasPrefix(c.Code, "X") {
			t.Errorf("%s: only X-codes may have minor unit N.A.", c.Code)
		}
		if strings.TrimSpace(c.Name) != c.Name || c.Name == "" {
			t.Errorf("%s: bad name %q", c.Code, c.Name)
		}
		for _, r := range c.Name {
			if r < 0x20 || r > 0x7e {
				t.Errorf("%s: non-ASCII name %q", c.Code, c.Name)
			}
		}
	}
	// Currencies returns a copy.
	all[0].Code = "ZZZ"
	if Currencies()[0].Code == "ZZZ" {
		t.Error("Currencies() exposes the table")
	}
}

func TestParseAssetType(t *testing.T) {
	for _, s := range []string{"fiat", "cbdc", "commodity", "security"} {
		a, err := ParseAssetType(s)
		if err != nil || string(a) != s || !a.Valid() || a.String() != s {
			t.Errorf("ParseAssetType(%q) = %q, %v", s, a, err)
		}
	}
	for _, s := range []string{"crypto", "", "Fiat", "FIAT", " fiat", "fiat ", "CBDC"} {
		_, err := ParseAssetType(s)
		var me *Error
		if !errors.As(err, &me) || me.Code != CodeInvalidAssetType || me.Field != FieldAssetType {
			t.Errorf("ParseAssetType(%q) = %v", s, err)
		}
		if AssetType(s).Valid() {
			t.Errorf("%q is Valid", s)
		}
	}
	_, err := ParseAssetType("crypto")
	if want := `asset_type "crypto" is not one of fiat, cbdc, commodity, security`; err.Error() != want {
		t.Errorf("message = %q, want %q", err.Error(), want)
	}
	if len(AssetTypes()) != 4 {
		t.Error("AssetTypes")
	}
}
