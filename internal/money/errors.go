package money

import "fmt"

// Error codes carried by *Error. API layers map them 1:1 onto their own
// error codes.
const (
	CodeInvalidAmount    = "invalid_amount"
	CodeUnknownCurrency  = "unknown_currency"
	CodeInvalidAssetType = "invalid_asset_type"
)

// Field names carried by *Error (the JSON field the problem belongs to).
const (
	FieldAmount    = "amount"
	FieldCurrency  = "currency"
	FieldAssetType = "asset_type"
)

// Error is the error type returned by every function in this package.
// Code is one of the Code* constants, Field the offending input field and
// Message a specific, human readable explanation that is safe to show to
// API clients (user input in it is quoted and truncated).
type Error struct {
	Code    string
	Field   string
	Message string
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, ErrInvalidAmount) etc. work: two *Error values
// match when their codes are equal.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}

// Sentinels for errors.Is. They carry only a code.
var (
	ErrInvalidAmount    = &Error{Code: CodeInvalidAmount, Field: FieldAmount, Message: "invalid amount"}
	ErrUnknownCurrency  = &Error{Code: CodeUnknownCurrency, Field: FieldCurrency, Message: "unknown currency"}
	ErrInvalidAssetType = &Error{Code: CodeInvalidAssetType, Field: FieldAssetType, Message: "invalid asset type"}
)

func amountErr(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidAmount, Field: FieldAmount, Message: fmt.Sprintf(format, args...)}
}

// maxQuoted bounds how much of a rejected input is echoed back in messages.
const maxQuoted = 64

// quote quotes user input for an error message, truncating giant inputs.
func quote(s string) string {
	if len(s) > maxQuoted {
		return fmt.Sprintf("%q... (%d bytes)", s[:maxQuoted], len(s))
	}
	return fmt.Sprintf("%q", s)
}
