package money

import (
	"fmt"
	"strings"
)

// AssetType classifies what a ledger account holds.
type AssetType string

// The asset types. Only Fiat is subject to the ISO 4217 minor-unit rule.
const (
	Fiat      AssetType = "fiat"
	CBDC      AssetType = "cbdc"
	Commodity AssetType = "commodity"
	Security  AssetType = "security"
)

var assetTypes = []AssetType{Fiat, CBDC, Commodity, Security}

// AssetTypes returns all valid asset types (a copy), in canonical order.
func AssetTypes() []AssetType {
	return append([]AssetType(nil), assetTypes...)
}

// AssetTypeNames returns the asset types as strings, in canonical order: for enums in the OpenAPI
// document and lists in messages and docs; internal/scb validates an SCB entry with it. The
// schema's bank_accounts_asset_type_valid CHECK and the posting function (db/functions/posting.sql:
// dl_post_parse's list, dl_post_problem_message's message) hold copies (schema_test.go compares
// them, and posts an entry of each type).
func AssetTypeNames() []string {
	out := make([]string, len(assetTypes))
	for i, t := range assetTypes {
		out[i] = string(t)
	}
	return out
}

// ParseAssetType accepts exactly "fiat", "cbdc", "commodity" or "security"
// (lower case, no surrounding spaces).
func ParseAssetType(s string) (AssetType, error) {
	for _, t := range assetTypes {
		if s == string(t) {
			return t, nil
		}
	}
	return "", &Error{
		Code:    CodeInvalidAssetType,
		Field:   FieldAssetType,
		Message: fmt.Sprintf("asset_type %s is not one of %s", quote(s), strings.Join(AssetTypeNames(), ", ")),
	}
}

// Valid reports whether t is one of the defined asset types.
func (t AssetType) Valid() bool {
	_, err := ParseAssetType(string(t))
	return err == nil
}

// String implements fmt.Stringer.
func (t AssetType) String() string { return string(t) }
