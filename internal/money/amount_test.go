package money

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestParseAmountValid(t *testing.T) {
	tests := []struct {
		in, str, fixed string
	}{
		{"0", "0", "0.000000000000000000"},
		{"-0", "0", "0.000000000000000000"},
		{"-0.000", "0", "0.000000000000000000"},
		{"1", "1", "1.000000000000000000"},
		{"100", "100", "100.000000000000000000"},
		{"1000.00", "1000", "1000.000000000000000000"},
		{"10.5", "10.5", "10.500000000000000000"},
		{"10.50", "10.5", "10.500000000000000000"},
		{"10.010", "10.01", "10.010000000000000000"},
		{"0.25", "0.25", "0.250000000000000000"},
		{"-0.25", "-0.25", "-0.250000000000000000"},
		{"-1234.5678", "-1234.5678", "-1234.567800000000000000"},
		{"0001.50", "1.5", "1.500000000000000000"},
		{"00000000000000000000000000001", "1", "1.000000000000000000"}, // leading zeros don't count
		{"0.000000000000000001", "0.000000000000000001", "0.000000000000000001"},
		// 19 decimals, but the 19th is zero: value-based, accepted.
		{"1.0000000000000000000", "1", "1.000000000000000000"},
		{"0.1000000000000000000000000", "0.1", "0.100000000000000000"},
		// the largest NUMERIC(38,18) values
		{"99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"},
		{"-99999999999999999999.999999999999999999", "-99999999999999999999.999999999999999999", "-99999999999999999999.999999999999999999"},
		{"12345678901234567890", "12345678901234567890", "12345678901234567890.000000000000000000"},
		{strings.Repeat("0", 30) + "1." + strings.Repeat("0", 31), "1", "1.000000000000000000"}, // 64 chars
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAmount(tt.in)
			if err != nil {
				t.Fatalf("ParseAmount(%q): %v", tt.in, err)
			}
			if got := a.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := a.Fixed18(); got != tt.fixed {
				t.Errorf("Fixed18() = %q, want %q", got, tt.fixed)
			}
			want := decimal.RequireFromString(tt.in)
			if !a.Decimal().Equal(want) {
				t.Errorf("Decimal() = %s, want %s", a.Decimal(), want)
			}
		})
	}
}

func TestParseAmountInvalid(t *testing.T) {
	tests := []struct {
		in      string
		wantMsg string // substring of the message
	}{
		{"", "amount is empty"},
		{"1e5", `amount "1e5" is not a plain decimal string (digits, optional '.', no exponent): exponent notation is not allowed`},
		{"1E5", "exponent"},
		{"1.5e-3", "exponent"},
		{"+1", "leading '+'"},
		{"+1.00", "leading '+'"},
		{" 1", "whitespace"},
		{"1 ", "whitespace"},
		{"1 000", "whitespace"},
		{"\t1", "whitespace"},
		{"1\n", "whitespace"},
		{"1,000.00", "thousands separators"},
		{"1,5", "thousands separators"},
		{"1_000", "thousands separators"},
		{"1'000", "thousands separators"},
		{".5", "digit is required before '.'"},
		{"-.5", "digit is required before '.'"},
		{"5.", "digit is required after '.'"},
		{"-5.", "digit is required after '.'"},
		{".", "not a plain decimal"},
		{"1.2.3", "more than one '.'"},
		{"-", "no digits"},
		{"--1", "'-' is only allowed as the first character"},
		{"1-", "'-' is only allowed as the first character"},
		{"NaN", "NaN and Infinity"},
		{"nan", "NaN and Infinity"},
		{"Inf", "NaN and Infinity"},
		{"-Infinity", "NaN and Infinity"},
		{"+Inf", "NaN and Infinity"},
		{"0x10", "not a plain decimal"},
		{"١٢٣", "not a plain decimal"}, // Arabic-Indic digits
		{"１", "not a plain decimal"},   // full-width digit
		{"1\u00a0000", "whitespace"},
		{"$10", "not a plain decimal"},
		{"10USD", "not a plain decimal"},
		{"true", `amount "true" is not a plain decimal string (digits, optional '.', no exponent)`}, // a JSON true: no exponent hint
		{"1e", "exponent"},
		{"\x00", "not a plain decimal"},
		// 21 integer digits
		{"100000000000000000000", `amount "100000000000000000000" exceeds NUMERIC(38,18): at most 20 integer digits, got 21`},
		{"-100000000000000000000.5", "at most 20 integer digits"},
		// a non-zero 19th decimal
		{"0.0000000000000000001", `amount "0.0000000000000000001" exceeds NUMERIC(38,18): at most 18 decimals, got 19`},
		{"1.00000000000000000010", "at most 18 decimals, got 19"},
		{strings.Repeat("1", 65), "amount is too long (65 characters, at most 64)"},
		{strings.Repeat("0", 64) + "1", "too long"},
		{strings.Repeat("9", 1<<20), "too long"},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			a, err := ParseAmount(tt.in)
			if err == nil {
				t.Fatalf("ParseAmount(%q) = %s, want error", tt.in, a)
			}
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not *money.Error", err)
			}
			if me.Code != CodeInvalidAmount || me.Field != FieldAmount {
				t.Errorf("Code/Field = %q/%q, want invalid_amount/amount", me.Code, me.Field)
			}
			if !errors.Is(err, ErrInvalidAmount) {
				t.Errorf("errors.Is(err, ErrInvalidAmount) = false")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q does not contain %q", err.Error(), tt.wantMsg)
			}
			if len(err.Error()) > 300 {
				t.Errorf("message is %d bytes long; input must be truncated", len(err.Error()))
			}
		})
	}
}

func TestAmountArithmetic(t *testing.T) {
	a := MustParseAmount("10.25")
	b := MustParseAmount("0.75")
	if got := a.Add(b).String(); got != "11" {
		t.Errorf("Add = %s", got)
	}
	if got := b.Sub(a).String(); got != "-9.5" {
		t.Errorf("Sub = %s", got)
	}
	if got := a.Neg().String(); got != "-10.25" {
		t.Errorf("Neg = %s", got)
	}
	if got := a.Neg().Abs().String(); got != "10.25" {
		t.Errorf("Abs = %s", got)
	}
	if a.Cmp(b) != 1 || b.Cmp(a) != -1 || a.Cmp(a) != 0 {
		t.Error("Cmp")
	}
	if !MustParseAmount("1.50").Equal(MustParseAmount("1.5")) {
		t.Error("Equal")
	}
	if !Zero.IsZero() || !(Amount{}).IsZero() || Zero.String() != "0" || Zero.Fixed18() != "0.000000000000000000" {
		t.Error("zero value")
	}
	if a.Sign() != 1 || a.Neg().Sign() != -1 || !a.IsPositive() || !a.Neg().IsNegative() {
		t.Error("Sign")
	}
	if got := FromInt(-42).Fixed18(); got != "-42.000000000000000000" {
		t.Errorf("FromInt = %s", got)
	}
	// 0.1 + 0.2 is exactly 0.3
	if got := MustParseAmount("0.1").Add(MustParseAmount("0.2")); !got.Equal(MustParseAmount("0.3")) || got.String() != "0.3" {
		t.Errorf("0.1+0.2 = %s", got)
	}
	// overflow through Add is caught by CheckNumeric
	max := MustParseAmount("99999999999999999999.999999999999999999")
	if err := max.CheckNumeric(); err != nil {
		t.Errorf("max: %v", err)
	}
	over := max.Add(MustParseAmount("0.000000000000000001"))
	if over.String() != "100000000000000000000" {
		t.Errorf("over = %s", over)
	}
	if err := over.CheckNumeric(); err == nil || !errors.Is(err, ErrInvalidAmount) {
		t.Errorf("CheckNumeric(over) = %v", err)
	}
}

func TestAmountFormat(t *testing.T) {
	tests := []struct {
		in   string
		min  int
		want string
	}{
		{"1000", 2, "1000.00"},
		{"1000.5", 2, "1000.50"},
		{"1000.505", 2, "1000.505"}, // never rounds
		{"-0.5", 0, "-0.5"},
		{"7", 0, "7"},
		{"7", -1, "7"},
		{"0", 3, "0.000"},
	}
	for _, tt := range tests {
		if got := MustParseAmount(tt.in).Format(tt.min); got != tt.want {
			t.Errorf("Format(%q, %d) = %q, want %q", tt.in, tt.min, got, tt.want)
		}
	}
}

func TestAmountDecimals(t *testing.T) {
	for in, want := range map[string]int{
		"0": 0, "100": 0, "10.010": 2, "10.001": 3, "1.0000000000000000000": 0,
		"0.000000000000000001": 18, "-2.50": 1,
	} {
		if got := MustParseAmount(in).Decimals(); got != want {
			t.Errorf("Decimals(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestFromDecimal(t *testing.T) {
	ok := []decimal.Decimal{
		decimal.Zero,
		decimal.New(15, -1),
		decimal.New(1, 19),    // 20 digits
		decimal.New(100, -20), // 1e-18 with trailing zeros
		decimal.RequireFromString("-1.2300000000000000000000"),
		decimal.New(0, 1000000),
	}
	for _, d := range ok {
		a, err := FromDecimal(d)
		if err != nil {
			t.Errorf("FromDecimal(%s): %v", d, err)
			continue
		}
		if !a.Decimal().Equal(d) {
			t.Errorf("FromDecimal(%s) = %s", d, a)
		}
	}
	bad := []decimal.Decimal{
		decimal.New(1, 20),
		decimal.New(1, 1000000000),
		decimal.New(1, -19),
		decimal.New(-1, -19),
	}
	for _, d := range bad {
		if a, err := FromDecimal(d); err == nil || !errors.Is(err, ErrInvalidAmount) {
			t.Errorf("FromDecimal(%s) = %s, %v; want invalid_amount", d, a, err)
		}
	}
	// Decimals with positive exponents print without exponent.
	a, err := FromDecimal(decimal.New(12, 3))
	if err != nil || a.String() != "12000" || a.Fixed18() != "12000.000000000000000000" {
		t.Errorf("FromDecimal(12e3) = %q %q %v", a.String(), a.Fixed18(), err)
	}
}

func TestAmountJSON(t *testing.T) {
	type body struct {
		Amount Amount `json:"amount"`
	}
	out, err := json.Marshal(body{MustParseAmount("1000.50")})
	if err != nil || string(out) != `{"amount":"1000.5"}` {
		t.Fatalf("Marshal = %s, %v", out, err)
	}
	var b body
	if err := json.Unmarshal([]byte(`{"amount":"1000.00"}`), &b); err != nil || b.Amount.String() != "1000" {
		t.Fatalf("Unmarshal = %s, %v", b.Amount, err)
	}
	for _, in := range []string{`{"amount":1000}`, `{"amount":1e3}`, `{"amount":"1e3"}`, `{"amount":" 1"}`, `{"amount":true}`, `{"amount":"1\u0000"}`} {
		var b body
		err := json.Unmarshal([]byte(in), &b)
		if err == nil {
			t.Errorf("Unmarshal(%s) succeeded: %s", in, b.Amount)
			continue
		}
		if !errors.Is(err, ErrInvalidAmount) {
			t.Errorf("Unmarshal(%s) error %v is not invalid_amount", in, err)
		}
	}
	b = body{Amount: MustParseAmount("5")}
	if err := json.Unmarshal([]byte(`{"amount":null}`), &b); err != nil || b.Amount.String() != "5" {
		t.Errorf("null: %s %v", b.Amount, err)
	}
}

func TestAmountSQL(t *testing.T) {
	v, err := MustParseAmount("-12.340").Value()
	if err != nil || v != "-12.34" {
		t.Errorf("Value = %v, %v", v, err)
	}
	var a Amount
	for src, want := range map[any]string{
		"100.000000000000000000":                  "100",
		"-0.500000000000000000":                   "-0.5",
		"99999999999999999999.999999999999999999": "99999999999999999999.999999999999999999",
		int64(7): "7",
	} {
		if err := a.Scan(src); err != nil || a.String() != want {
			t.Errorf("Scan(%v) = %s, %v", src, a, err)
		}
	}
	if err := a.Scan([]byte("1.25")); err != nil || a.String() != "1.25" {
		t.Errorf("Scan([]byte) = %s, %v", a, err)
	}
	for _, src := range []any{nil, 1.5, "NaN", "Infinity", true} {
		if err := a.Scan(src); err == nil {
			t.Errorf("Scan(%v) succeeded", src)
		}
	}
}
