// Package money holds dualledger's money primitives: exact decimal amounts,
// the ISO 4217 currency table, asset types and the validation rules for
// postings.
//
// Money is never a float. In SQL an amount is NUMERIC(38,18) (at most 20
// integer digits and 18 fractional digits); in JSON and on the CLI it is a
// plain decimal string such as "1000.00".
package money

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/shopspring/decimal"
)

// Limits of NUMERIC(38,18) and of accepted input.
const (
	// MaxScale is the number of fractional digits NUMERIC(38,18) stores.
	MaxScale = 18
	// MaxIntegerDigits is the number of integer digits NUMERIC(38,18) stores.
	MaxIntegerDigits = 38 - MaxScale
	// MaxInputLength caps the length of an amount string, so giant inputs
	// are rejected before any work is done. The longest canonical value is
	// 40 characters ("-" + 20 digits + "." + 18 digits); the slack allows
	// some leading/trailing zeros.
	MaxInputLength = 64
)

// numericLimit is 10^20: every storable amount has |a| < numericLimit.
var numericLimit = decimal.New(1, MaxIntegerDigits)

// Amount is an exact decimal amount.
//
// Invariant: an Amount never has more than MaxScale (18) significant
// fractional digits; every constructor enforces it and Add/Sub/Neg preserve
// it. An Amount may exceed 20 integer digits only as the result of Add/Sub;
// CheckNumeric and ValidatePosting report that. The zero value is 0.
//
// Compare amounts with Cmp or Equal, not ==.
type Amount struct {
	d decimal.Decimal
}

// Zero is the zero amount (same as Amount{}).
var Zero = Amount{}

// ParseAmount parses a plain decimal string. It is deliberately strict,
// because it guards a payments API. The accepted syntax is exactly
//
//	^-?[0-9]+(\.[0-9]+)?$
//
// and nothing else: no exponent, no '+', no spaces, no leading or trailing
// '.', no thousands separators, no "NaN"/"Inf". The input may be at most
// MaxInputLength bytes long.
//
// Limits are value-based, consistent with the currency minor-unit rule:
// leading zeros of the integer part and trailing zeros of the fraction are
// ignored. So "0001.50" is fine, at most 20 significant integer digits are
// allowed, and more than 18 fractional digits are rejected only if a
// non-zero digit lies beyond the 18th ("1.0000000000000000000" parses as 1,
// "0.0000000000000000001" is rejected).
//
// Negative amounts parse (balances can be negative); ValidatePosting rejects
// amounts <= 0. "-0" parses as 0.
func ParseAmount(s string) (Amount, error) {
	if s == "" {
		return Amount{}, amountErr(`amount is empty; expected a decimal string like "1000.00"`)
	}
	if len(s) > MaxInputLength {
		return Amount{}, amountErr("amount is too long (%d characters, at most %d)", len(s), MaxInputLength)
	}

	i := 0
	neg := false
	if s[0] == '-' {
		neg = true
		i = 1
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[intStart:i]
	fracPart := ""
	hasPoint := false
	if i < len(s) && s[i] == '.' {
		hasPoint = true
		i++
		fracStart := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracPart = s[fracStart:i]
	}
	if intPart == "" || (hasPoint && fracPart == "") || i != len(s) {
		return Amount{}, amountErr("amount %s is not a plain decimal string (digits, optional '.', no exponent)%s",
			quote(s), syntaxHint(s))
	}

	intPart = strings.TrimLeft(intPart, "0")
	fracPart = strings.TrimRight(fracPart, "0")
	if len(intPart) > MaxIntegerDigits {
		return Amount{}, amountErr("amount %s exceeds NUMERIC(38,18): at most %d integer digits, got %d",
			quote(s), MaxIntegerDigits, len(intPart))
	}
	if len(fracPart) > MaxScale {
		return Amount{}, amountErr("amount %s exceeds NUMERIC(38,18): at most %d decimals, got %d",
			quote(s), MaxScale, len(fracPart))
	}

	coef := new(big.Int)
	if digits := intPart + fracPart; digits != "" {
		if _, ok := coef.SetString(digits, 10); !ok { // cannot happen: digits only
			return Amount{}, amountErr("amount %s is not a plain decimal string (digits, optional '.', no exponent)", quote(s))
		}
	}
	if neg {
		coef.Neg(coef)
	}
	return Amount{d: decimal.NewFromBigInt(coef, -int32(len(fracPart)))}, nil
}

// MustParseAmount is ParseAmount for constants in code and tests; it panics
// on error.
func MustParseAmount(s string) Amount {
	a, err := ParseAmount(s)
	if err != nil {
		panic(err)
	}
	return a
}

// FromDecimal converts a decimal.Decimal into an Amount. It fails unless the
// value fits NUMERIC(38,18) (at most 20 integer and 18 significant
// fractional digits); it never rounds.
func FromDecimal(d decimal.Decimal) (Amount, error) {
	if d.IsZero() {
		return Amount{}, nil
	}
	// Integer digits estimated without materialising huge exponents.
	if int64(d.NumDigits())+int64(d.Exponent()) > MaxIntegerDigits {
		return Amount{}, amountErr("amount exceeds NUMERIC(38,18): at most %d integer digits", MaxIntegerDigits)
	}
	if n := decimalsOf(d); n > MaxScale {
		return Amount{}, amountErr("amount exceeds NUMERIC(38,18): at most %d decimals, got %d", MaxScale, n)
	}
	a := Amount{d: d}
	if err := a.CheckNumeric(); err != nil {
		return Amount{}, err
	}
	return a, nil
}

// FromInt returns the amount n (whole units).
func FromInt(n int64) Amount { return Amount{d: decimal.New(n, 0)} }

// String returns the canonical plain decimal form: no exponent, no '+',
// trailing fractional zeros trimmed, e.g. "10.5", "100", "-0.25", "0".
func (a Amount) String() string { return a.format(0, true) }

// Fixed18 returns the amount with exactly 18 decimals, e.g.
// "100.000000000000000000" — the way PostgreSQL prints NUMERIC(38,18).
// Use it wherever a byte-exact representation is hashed.
func (a Amount) Fixed18() string { return a.format(MaxScale, false) }

// Format returns the amount with at least minDecimals fractional digits
// (padding with zeros), e.g. MustParseAmount("1000").Format(2) == "1000.00".
// It never rounds: significant decimals beyond minDecimals are kept.
func (a Amount) Format(minDecimals int) string {
	if minDecimals < 0 {
		minDecimals = 0
	}
	return a.format(minDecimals, true)
}

// format renders a without ever rounding. The fraction is trimmed of
// trailing zeros when trim is set, then padded to at least pad digits.
func (a Amount) format(pad int, trim bool) string {
	coef := a.d.Coefficient() // a copy
	exp := int(a.d.Exponent())
	neg := coef.Sign() < 0
	coef.Abs(coef)
	if exp > 0 {
		coef.Mul(coef, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil))
		exp = 0
	}
	digits := coef.String()
	scale := -exp
	var intPart, fracPart string
	if len(digits) > scale {
		intPart, fracPart = digits[:len(digits)-scale], digits[len(digits)-scale:]
	} else {
		intPart, fracPart = "0", strings.Repeat("0", scale-len(digits))+digits
	}
	if trim {
		fracPart = strings.TrimRight(fracPart, "0")
	}
	if len(fracPart) < pad {
		fracPart += strings.Repeat("0", pad-len(fracPart))
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(intPart)
	if fracPart != "" {
		b.WriteByte('.')
		b.WriteString(fracPart)
	}
	return b.String()
}

// Decimal returns the underlying decimal.Decimal.
func (a Amount) Decimal() decimal.Decimal { return a.d }

// Sign returns -1, 0 or +1.
func (a Amount) Sign() int { return a.d.Sign() }

// IsZero reports whether a == 0.
func (a Amount) IsZero() bool { return a.d.IsZero() }

// IsPositive reports whether a > 0.
func (a Amount) IsPositive() bool { return a.d.Sign() > 0 }

// IsNegative reports whether a < 0.
func (a Amount) IsNegative() bool { return a.d.Sign() < 0 }

// Cmp returns -1, 0 or +1 as a is less than, equal to or greater than b.
func (a Amount) Cmp(b Amount) int { return a.d.Cmp(b.d) }

// Equal reports whether a and b have the same value ("1.50" equals "1.5").
func (a Amount) Equal(b Amount) bool { return a.d.Equal(b.d) }

// Add returns a + b (exact). The result may exceed NUMERIC(38,18); see
// CheckNumeric.
func (a Amount) Add(b Amount) Amount { return Amount{d: a.d.Add(b.d)} }

// Sub returns a - b (exact). The result may exceed NUMERIC(38,18); see
// CheckNumeric.
func (a Amount) Sub(b Amount) Amount { return Amount{d: a.d.Sub(b.d)} }

// Neg returns -a.
func (a Amount) Neg() Amount { return Amount{d: a.d.Neg()} }

// Abs returns |a|.
func (a Amount) Abs() Amount { return Amount{d: a.d.Abs()} }

// Decimals returns the number of significant fractional digits of the value
// (trailing zeros do not count): "10.010" has 2, "100" has 0.
func (a Amount) Decimals() int { return decimalsOf(a.d) }

// CheckNumeric returns an *Error (code invalid_amount) if a cannot be
// stored in NUMERIC(38,18).
func (a Amount) CheckNumeric() error {
	if a.d.Abs().Cmp(numericLimit) >= 0 {
		return amountErr("amount %s exceeds NUMERIC(38,18): at most %d integer digits", quote(a.String()), MaxIntegerDigits)
	}
	if n := a.Decimals(); n > MaxScale {
		return amountErr("amount exceeds NUMERIC(38,18): at most %d decimals, got %d", MaxScale, n)
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler (canonical String form).
func (a Amount) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseAmount rules.
func (a *Amount) UnmarshalText(b []byte) error {
	v, err := ParseAmount(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// MarshalJSON encodes the amount as a JSON string, e.g. "10.5".
func (a Amount) MarshalJSON() ([]byte, error) {
	return []byte(`"` + a.String() + `"`), nil
}

// UnmarshalJSON accepts only a JSON string holding a ParseAmount-valid
// decimal; JSON numbers are rejected (they would invite float handling by
// clients). As usual for encoding/json, null leaves the value unchanged.
func (a *Amount) UnmarshalJSON(b []byte) error {
	t := strings.TrimSpace(string(b))
	if t == "null" {
		return nil
	}
	if !strings.HasPrefix(t, `"`) {
		return amountErr(`amount must be a JSON string such as "1000.00", got %s`, quote(t))
	}
	var s string
	if err := json.Unmarshal([]byte(t), &s); err != nil {
		return amountErr("amount is not a valid JSON string: %v", err)
	}
	return a.UnmarshalText([]byte(s))
}

// Value implements driver.Valuer: the canonical decimal string, which
// PostgreSQL casts to NUMERIC exactly.
func (a Amount) Value() (driver.Value, error) { return a.String(), nil }

// Scan implements sql.Scanner for NUMERIC columns (delivered as text).
// NULL is an error (use *Amount or sql.Null[Amount] for nullable columns);
// floats are refused.
func (a *Amount) Scan(src any) error {
	switch v := src.(type) {
	case string:
		return a.UnmarshalText([]byte(v))
	case []byte:
		return a.UnmarshalText(v)
	case int64:
		*a = FromInt(v)
		return nil
	case nil:
		return amountErr("cannot scan NULL into money.Amount")
	default:
		return amountErr("cannot scan %T into money.Amount (only NUMERIC as text or integers)", src)
	}
}

// decimalsOf counts the significant fractional digits of d.
func decimalsOf(d decimal.Decimal) int {
	exp := int(d.Exponent())
	if exp >= 0 || d.IsZero() {
		return 0
	}
	digits := d.Coefficient().String()
	tz := len(digits) - len(strings.TrimRight(digits, "0"))
	n := -exp - tz
	if n < 0 {
		return 0
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// syntaxHint explains the most common reasons an amount string is rejected.
func syntaxHint(s string) string {
	switch {
	case strings.ContainsAny(s, "eE") && strings.ContainsAny(s, "0123456789") && strings.Trim(s, "0123456789.+-eE") == "":
		// a number written with an exponent ("1e3"), not a word with an e in it ("true")
		return ": exponent notation is not allowed"
	case strings.EqualFold(strings.TrimLeft(s, "+-"), "nan") || strings.HasPrefix(strings.ToLower(strings.TrimLeft(s, "+-")), "inf"):
		return ": NaN and Infinity are not amounts"
	case strings.HasPrefix(s, "+"):
		return ": a leading '+' is not allowed"
	case strings.ContainsAny(s, " \t\r\n\v\f\u00a0"):
		return ": whitespace is not allowed"
	case strings.Contains(s, ","), strings.Contains(s, "_"), strings.Contains(s, "'"):
		return ": thousands separators are not allowed, and the decimal separator is '.'"
	case strings.HasPrefix(s, ".") || strings.HasPrefix(s, "-."):
		return ": a digit is required before '.'"
	case strings.HasSuffix(s, "."):
		return ": a digit is required after '.'"
	case strings.Count(s, ".") > 1:
		return ": more than one '.'"
	case s == "-":
		return ": no digits"
	case strings.Count(s, "-") > 1 || strings.LastIndex(s, "-") > 0:
		return ": '-' is only allowed as the first character"
	}
	return ""
}

// decimalWord returns "1 decimal" / "3 decimals".
func decimalWord(n int) string {
	if n == 1 {
		return "1 decimal"
	}
	return fmt.Sprintf("%d decimals", n)
}
