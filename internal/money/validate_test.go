package money

import (
	"errors"
	"testing"
)

func TestValidatePosting(t *testing.T) {
	tests := []struct {
		amount   string
		currency string
		asset    AssetType
		code     string // "" = valid
		msg      string // exact message when set
	}{
		// USD, 2 decimals, value-based
		{"1000.00", "USD", Fiat, "", ""},
		{"10.01", "USD", Fiat, "", ""},
		{"10.010", "USD", Fiat, "", ""},
		{"10.0100000000000000000", "USD", Fiat, "", ""},
		{"10.001", "USD", Fiat, CodeInvalidAmount, `amount "10.001" has 3 decimals but USD allows at most 2`},
		{"10.0010", "USD", Fiat, CodeInvalidAmount, `amount "10.001" has 3 decimals but USD allows at most 2`},
		{"0.01", "USD", Fiat, "", ""},
		{"0.001", "USD", CBDC, "", ""}, // minor unit applies to fiat only
		{"0.000000000000000001", "USD", CBDC, "", ""},
		// JPY, 0 decimals
		{"1000", "JPY", Fiat, "", ""},
		{"1000.0", "JPY", Fiat, "", ""},
		{"1000.5", "JPY", Fiat, CodeInvalidAmount, `amount "1000.5" has 1 decimal but JPY allows no decimals`},
		{"1000.5", "JPY", Security, "", ""},
		// BHD, 3 decimals
		{"1.234", "BHD", Fiat, "", ""},
		{"1.2345", "BHD", Fiat, CodeInvalidAmount, `amount "1.2345" has 4 decimals but BHD allows at most 3`},
		// CLF, 4 decimals
		{"1.2345", "CLF", Fiat, "", ""},
		{"1.23456", "CLF", Fiat, CodeInvalidAmount, `amount "1.23456" has 5 decimals but CLF allows at most 4`},
		{"1.2345", "UYW", Fiat, "", ""},
		// metals / SDR: any decimals up to 18
		{"0.123456789012345678", "XAU", Commodity, "", ""},
		{"0.123456789012345678", "XAU", Fiat, "", ""},
		{"1.5", "XDR", Fiat, "", ""},
		// positivity
		{"0", "USD", Fiat, CodeInvalidAmount, `amount must be greater than zero, got "0"`},
		{"-0.00", "USD", Fiat, CodeInvalidAmount, `amount must be greater than zero, got "0"`},
		{"-5", "USD", Fiat, CodeInvalidAmount, `amount must be greater than zero, got "-5"`},
		{"-5.001", "USD", Fiat, CodeInvalidAmount, `amount must be greater than zero, got "-5.001"`},
		// range
		{"99999999999999999999.99", "USD", Fiat, "", ""},
		{"99999999999999999999.999999999999999999", "XAU", Commodity, "", ""},
		// currency: known for every asset type, exact case
		{"1", "usd", Fiat, CodeUnknownCurrency, `unknown currency code "usd" (ISO 4217 codes are three upper-case letters)`},
		{"1", "BTC", CBDC, CodeUnknownCurrency, `unknown currency code "BTC" (not an active ISO 4217 currency code)`},
		{"1", "XXX", Commodity, CodeUnknownCurrency, ""},
		{"1", "XTS", Security, CodeUnknownCurrency, ""},
		{"1", "", Fiat, CodeUnknownCurrency, ""},
		// asset type
		{"1", "USD", "crypto", CodeInvalidAssetType, `asset_type "crypto" is not one of fiat, cbdc, commodity, security`},
		{"1", "USD", "", CodeInvalidAssetType, ""},
		{"1", "USD", "FIAT", CodeInvalidAssetType, ""},
	}
	for _, tt := range tests {
		t.Run(tt.amount+"_"+tt.currency+"_"+string(tt.asset), func(t *testing.T) {
			err := ValidatePosting(MustParseAmount(tt.amount), tt.currency, tt.asset)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error = %v (%T), want *Error %s", err, err, tt.code)
			}
			if me.Code != tt.code {
				t.Errorf("Code = %q, want %q (%s)", me.Code, tt.code, me.Message)
			}
			if tt.msg != "" && me.Message != tt.msg {
				t.Errorf("Message = %q, want %q", me.Message, tt.msg)
			}
		})
	}
}

func TestValidatePostingOverflow(t *testing.T) {
	max := MustParseAmount("99999999999999999999.99")
	err := ValidatePosting(max.Add(MustParseAmount("0.01")), "USD", Fiat)
	var me *Error
	if !errors.As(err, &me) || me.Code != CodeInvalidAmount {
		t.Fatalf("err = %v", err)
	}
	if want := `amount "100000000000000000000" exceeds NUMERIC(38,18): at most 20 integer digits`; me.Message != want {
		t.Errorf("Message = %q, want %q", me.Message, want)
	}
}

// CheckMinorUnit is ValidatePosting's minor-unit rule for any amount of an account, named by its
// field (an overdraft limit: zero and negative values are the caller's business).
func TestCheckMinorUnit(t *testing.T) {
	usd, _ := LookupCurrency("USD")
	jpy, _ := LookupCurrency("JPY")
	for _, tt := range []struct {
		amount string
		cur    Currency
		asset  AssetType
		msg    string // "" = valid
	}{
		{"0", usd, Fiat, ""},
		{"0.01", usd, Fiat, ""},
		{"1000.010", usd, Fiat, ""},
		{"0.001", usd, Fiat, `overdraft_limit "0.001" has 3 decimals but USD allows at most 2`},
		{"0.001", usd, CBDC, ""},
		{"5.5", jpy, Fiat, `overdraft_limit "5.5" has 1 decimal but JPY allows no decimals`},
	} {
		err := CheckMinorUnit("overdraft_limit", MustParseAmount(tt.amount), tt.cur, tt.asset)
		var me *Error
		switch {
		case tt.msg == "" && err != nil:
			t.Errorf("%s %s %s: %v", tt.amount, tt.cur.Code, tt.asset, err)
		case tt.msg != "" && (!errors.As(err, &me) || me.Code != CodeInvalidAmount || me.Field != "overdraft_limit" || me.Message != tt.msg):
			t.Errorf("%s %s %s: %#v, want invalid_amount of overdraft_limit: %s", tt.amount, tt.cur.Code, tt.asset, err, tt.msg)
		}
	}
}
