package money

import (
	"fmt"
	"sort"
)

// Currency is one entry of the ISO 4217 table (see iso4217.go).
//
// MinorUnit is the number of decimals a fiat amount in this currency may
// carry. For codes whose ISO 4217 minor unit is "N.A." (precious metals,
// SDR, bond-market and fund units) it is MaxScale (18): any decimals that
// fit NUMERIC(38,18) are allowed.
type Currency struct {
	Code      string
	MinorUnit int
	Name      string
}

// CurrencyCodePattern is the shape of a currency code: the regular expression of the schema's
// currencies_code_format CHECK (schema_test.go compares them) and of the OpenAPI document.
// Whether a code of that shape is known is the table's business (iso4217.go).
const CurrencyCodePattern = `^[A-Z]{3}$`

var currencyByCode = func() map[string]Currency {
	m := make(map[string]Currency, len(iso4217))
	for _, c := range iso4217 {
		m[c.Code] = c
	}
	return m
}()

// LookupCurrency finds an active ISO 4217 code. The match is exact: the
// code must be three upper-case ASCII letters ("usd" is unknown; it is not
// silently upper-cased).
func LookupCurrency(code string) (Currency, bool) {
	c, ok := currencyByCode[code]
	return c, ok
}

// Currencies returns the whole table sorted by code. The slice is a copy.
func Currencies() []Currency {
	out := append([]Currency(nil), iso4217...)
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// CheckCurrency returns the currency for code or an *Error with code
// unknown_currency.
func CheckCurrency(code string) (Currency, error) {
	if c, ok := LookupCurrency(code); ok {
		return c, nil
	}
	msg := fmt.Sprintf("unknown currency code %s (ISO 4217 codes are three upper-case letters)", quote(code))
	if isUpper3(code) {
		msg = fmt.Sprintf("unknown currency code %s (not an active ISO 4217 currency code)", quote(code))
	}
	return Currency{}, &Error{Code: CodeUnknownCurrency, Field: FieldCurrency, Message: msg}
}

func isUpper3(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
