package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/money"
)

// Error is a stable, client-facing error: a code from docs/error-codes.md, a message that says
// what was wrong, and details (JSON object) such as the field or the account.
type Error struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details,omitempty"`
	cause   error           // kept for logs, never shown to clients
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func (e *Error) Unwrap() error { return e.cause }

// Errorf builds an *Error.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetails returns e with details (marshalled to JSON).
func (e *Error) WithDetails(d any) *Error {
	b, err := json.Marshal(d)
	if err == nil {
		e.Details = b
	}
	return e
}

// CodeOf returns the code of err if it is (or wraps) an *Error, else CodeInternal.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// constraintCodes maps constraint names to what they mean for a client.
var constraintCodes = map[string]struct{ code, msg string }{
	"ledgers_pkey":                              {CodeLedgerExists, "a ledger with this id already exists"},
	"ledgers_id_format":                         {CodeInvalidRequest, "ledger id must be 1-64 characters: letters, digits and _ . - (starting with a letter or digit)"},
	"ledgers_id_no_colon":                       {CodeInvalidRequest, "ledger id must not contain ':'"},
	"banks_pkey":                                {CodeBankExists, "a bank with this id is already registered"},
	"banks_id_format":                           {CodeInvalidRequest, "bank id must be 1-64 characters: letters, digits and _ . : - (starting with a letter or digit)"},
	"banks_name_nonempty":                       {CodeInvalidRequest, "bank name must be 1-200 characters"},
	"bank_accounts_pkey":                        {CodeAccountExists, "an account with this id already exists in the ledger"},
	"bank_accounts_ledger_id_fkey":              {CodeUnknownLedger, "unknown ledger"},
	"bank_accounts_currency_code_fkey":          {CodeUnknownCurrency, "unknown currency code"},
	"bank_accounts_id_format":                   {CodeInvalidRequest, "account id must be 1-128 characters: letters, digits and _ . : @ / - (starting with a letter or digit)"},
	"bank_accounts_bank_id_format":              {CodeInvalidRequest, "bank_id must be 1-64 characters: letters, digits and _ . : -"},
	"bank_accounts_bank_id_fkey":                {CodeUnknownBank, "bank_id names a bank that is not registered (register it first: POST /v1/banks)"},
	"api_keys_bank_id_fkey":                     {CodeUnknownBank, "bank_id names a bank that is not registered (register it first: POST /v1/banks)"},
	"api_keys_expires_after_creation":           {CodeInvalidRequest, "expires_at must be after the key's creation, in the future"},
	"bank_accounts_asset_type_valid":            {CodeInvalidAssetType, "asset_type must be one of " + strings.Join(money.AssetTypeNames(), ", ")},
	"bank_accounts_status_valid":                {CodeInvalidRequest, "status must be one of active, frozen, closed"},
	"bank_accounts_metadata_object":             {CodeInvalidRequest, "metadata must be a JSON object"},
	"bank_accounts_overdraft_limit_nonnegative": {CodeInvalidRequest, "overdraft_limit must be zero or positive"},
	// Lowering a limit below the overdraft in use (or reserved by holds).
	"bank_accounts_available_balance_within_overdraft": {CodeInvalidRequest, "overdraft_limit is below the overdraft the account already uses (its available balance, holds deducted, is under minus the new limit): bring the balance up first, or set a limit at least that large"},
	"ledger_entries_unique_ledger_reference":           {CodeReferenceConflict, "reference_id already used in this ledger"},
	// An entry's id or seq taken twice is not the client's reference: the ledger's sequence or head
	// was changed by hand (a setval the audit reports, table_privileges). Answered as 23505 it read
	// as a reference_conflict on every new reference.
	"ledger_entries_pkey":             {CodeInternal, "internal error"},
	"ledger_entries_id_ledger_id_key": {CodeInternal, "internal error"},
	// dl_begin_act: the key an administrative act runs on behalf of was revoked or expired after
	// the request was authenticated (another process revoked it within the keyring's refresh).
	"dl_begin_act_active_key": {CodeUnauthenticated, "the API key is unknown, revoked or expired"},
}

// messageOutOfRange is FromDB's message for SQLSTATE 22003 (numeric_value_out_of_range), answered
// invalid_amount.
const messageOutOfRange = "an amount or balance is out of range: amounts and balances hold at most 20 integer digits and 18 decimals (NUMERIC(38,18))"

// FromDB turns a database error into an *Error with a stable code. Messages of unknown database
// errors are not passed on (they may name internals); the cause stays available to logs through
// errors.Unwrap.
func FromDB(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if code, ok := sqlstateCodes[pgErr.Code]; ok {
			// The SQL functions' messages start with their code ("unknown_ledger: unknown ledger
			// ..."), which Error() puts in front already.
			msg := strings.TrimPrefix(pgErr.Message, code+": ")
			return &Error{Code: code, Message: msg, Details: jsonOrNil(pgErr.Detail), cause: err}
		}
		if c, ok := constraintCodes[pgErr.ConstraintName]; ok {
			return &Error{Code: c.code, Message: c.msg, cause: err}
		}
		switch pgErr.Code {
		case pgerrcode.CharacterNotInRepertoire, pgerrcode.UntranslatableCharacter:
			return &Error{Code: CodeInvalidRequest, Message: "the request contains text that is not valid UTF-8", cause: err}
		case pgerrcode.UniqueViolation:
			return &Error{Code: CodeReferenceConflict, Message: "duplicate key", cause: err}
		case pgerrcode.NumericValueOutOfRange:
			// A value beyond NUMERIC(38,18). The posting and hold functions reject an entry that
			// would take a balance there before writing anything (invalid_amount naming the
			// account and the balance); this is the backstop for anything they miss. The
			// database's text ("numeric field overflow", precision and scale) stays in the cause.
			return &Error{Code: CodeInvalidAmount, Message: messageOutOfRange, cause: err}
		case pgerrcode.CheckViolation, pgerrcode.NotNullViolation, pgerrcode.InvalidTextRepresentation,
			pgerrcode.InvalidParameterValue, pgerrcode.StringDataRightTruncationDataException:
			return &Error{Code: CodeInvalidRequest, Message: "the request breaks a rule of the ledger (" + pgErr.ConstraintName + ")", cause: err}
		case pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected:
			// Nothing was written: the statement lost a race with a concurrent change and was
			// rolled back (PostBatch already retried it).
			return &Error{Code: CodeUnavailable, Message: "the ledger was busy; retry with the same reference_id", cause: err}
		case pgerrcode.QueryCanceled, pgerrcode.AdminShutdown, pgerrcode.CrashShutdown, pgerrcode.CannotConnectNow,
			pgerrcode.TooManyConnections:
			return &Error{Code: CodeUnavailable, Message: "the database is unavailable; retry with the same reference_id", cause: err}
		}
		if pgerrcode.IsConnectionException(pgErr.Code) {
			return &Error{Code: CodeUnavailable, Message: msgConnectionLost, cause: err}
		}
		// The SQLSTATE stays in the cause (for the log): clients get a stable code, not database text.
		return &Error{Code: CodeInternal, Message: "internal error", cause: err}
	}
	var connErr *pgconn.ConnectError
	if pgconn.Timeout(err) || pgconn.SafeToRetry(err) || errors.As(err, &connErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, errNoConn) {
		return &Error{Code: CodeUnavailable, Message: "the database is unavailable; retry with the same reference_id", cause: err}
	}
	if connectionLost(err) {
		return &Error{Code: CodeUnavailable, Message: msgConnectionLost, cause: err}
	}
	return &Error{Code: CodeInternal, Message: "internal error", cause: err}
}

// msgConnectionLost is the answer when the connection broke after the statement was sent: the
// outcome is unknown (the commit may have happened), which a retry with the same reference
// learns (replayed), as the unavailable code promises.
const msgConnectionLost = "the connection to the database broke; what was sent may have committed: retry with the same reference_id to learn its outcome"

// connectionLost reports a connection that broke under a statement (the server went away: EOF,
// a reset, a closed socket), not a bug: the review of 2026-12-02 killed a backend under load and
// got 500 internal for postings that had committed.
func connectionLost(err error) bool {
	var netErr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) || errors.As(err, &netErr)
}

var errNoConn = errors.New("no database connection")

func jsonOrNil(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return nil
	}
	return json.RawMessage(s)
}
