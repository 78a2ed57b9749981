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
	if asset == Fiat {
		if n := a.Decimals(); n > cur.MinorUnit {
			allowed := fmt.Sprintf("allows at most %d", cur.MinorUnit)
			if cur.MinorUnit == 0 {
				allowed = "allows no decimals"
			}
			return amountErr("amount %s has %s but %s %s", quote(a.String()), decimalWord(n), cur.Code, allowed)
		}
	}
	return nil
}
