package scb

import (
	"regexp"
	"strings"
	"testing"

	"dualledger/internal/money"
)

// TestEntryValidateUsesMoney: Validate accepts exactly internal/money's asset types and currency
// code shape (the lists the schema and the posting function are held to), not a copy of its own.
func TestEntryValidateUsesMoney(t *testing.T) {
	for _, a := range append(money.AssetTypeNames(), "FIAT", "Fiat", " fiat", "crypto", "", "securities") {
		e := testEntry("r1")
		e.AssetType = a
		err := e.Validate()
		_, goErr := money.ParseAssetType(a)
		if (err == nil) != (goErr == nil) {
			t.Errorf("asset type %q: Validate %v, money %v", a, err, goErr)
		}
		if goErr != nil && (err == nil || !strings.Contains(err.Error(), goErr.Error())) {
			t.Errorf("asset type %q: Validate says %v, want money's message %q", a, err, goErr)
		}
	}
	re := regexp.MustCompile(money.CurrencyCodePattern)
	for _, c := range []string{"USD", "XAU", "ZZZ", "usd", "US", "USDT", "", "U5D"} {
		e := testEntry("r1")
		e.CurrencyCode = c
		if err := e.Validate(); (err == nil) != re.MatchString(c) {
			t.Errorf("currency code %q: Validate %v, money.CurrencyCodePattern match %v", c, err, re.MatchString(c))
		}
	}
}
