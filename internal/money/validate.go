package money

import "fmt"

// ValidatePosting checks that amount may be posted in currency for an
// account of the given asset type:
//
//   - asset must be one of fiat, cbdc, commodity, security (invalid_asset_type);
//   - currency must be an active ISO 4217 code, for every asset type
//     (unknown_currency);
//   - amount must be > 0 and fit NUMERIC(38,18) (invalid_amount);
//   - for fiat only, amount may not have more significant decimals than the
//     currency's ISO 4217 minor unit (invalid_amount). The rule is
//     value-based: "10.010" USD is fine, "10.001" USD is not. Other asset
//     types may use up to 18 decimals.
//
// The first violation found is returned as an *Error.
func ValidatePosting(a Amount, currency string, asset AssetType) error {
	if _, err := ParseAssetType(string(asset)); err != nil {
		return err
	}
	cur, err := CheckCurrency(currency)
	if err != nil {
		return err
	}
	if a.Sign() <= 0 {
		return amountErr("amount must be greater than zero, got %s", quote(a.String()))
	}
	if err := a.CheckNumeric(); err != nil {
		return err
	}
	return CheckMinorUnit(FieldAmount, a, cur, asset)
}

// CheckMinorUnit refuses, for fiat only, an amount with more significant decimals than the
// currency's ISO 4217 minor unit (value-based: "10.010" USD is fine, "10.001" is not); other
// asset types may use up to 18 decimals. It is ValidatePosting's rule, for any amount of an
// account (an overdraft limit too): field names the amount in the *Error (code invalid_amount)
// and its message.
func CheckMinorUnit(field string, a Amount, cur Currency, asset AssetType) error {
	if asset != Fiat {
		return nil
	}
	n := a.Decimals()
	if n <= cur.MinorUnit {
		return nil
	}
	allowed := fmt.Sprintf("allows at most %d", cur.MinorUnit)
	if cur.MinorUnit == 0 {
		allowed = "allows no decimals"
	}
	return &Error{Code: CodeInvalidAmount, Field: field,
		Message: fmt.Sprintf("%s %s has %s but %s %s", field, quote(a.String()), decimalWord(n), cur.Code, allowed)}
}
