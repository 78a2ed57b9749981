package ledger

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"dualledger/internal/money"
)

// Result codes of a posting. Every code has its constant here and exactly one row in the code
// table below (Codes): adding a code is a constant and a row, and the SQL that raises it.
const (
	CodeCreated           = "created"
	CodeReplayed          = "replayed"
	CodeReferenceConflict = "reference_conflict"
	CodeInsufficientFunds = "insufficient_funds"
	CodeUnknownAccount    = "unknown_account"
	CodeUnknownLedger     = "unknown_ledger"
	CodeCurrencyMismatch  = "currency_mismatch"
	CodeSameAccount       = "same_account"
	CodeInvalidAmount     = "invalid_amount"
	CodeUnknownCurrency   = "unknown_currency"
	CodeInvalidAssetType  = "invalid_asset_type"
	CodeInvalidRequest    = "invalid_request"
	CodeAccountInactive   = "account_inactive"
	CodeUnknownEntry      = "unknown_entry"
	CodeInvalidReversal   = "invalid_reversal"
	CodeUnknownBank       = "unknown_bank"
	CodeNotApplied        = "not_applied"
)

// Codes of the hold operations (docs/holds.md). A hold operation also answers created, replayed,
// reference_conflict and the posting rejections (insufficient_funds, unknown_account, ...).
const (
	CodeUnknownHold    = "unknown_hold"
	CodeHoldNotPending = "hold_not_pending"
	CodeHoldExpired    = "hold_expired"
)

// Codes of the non-posting operations.
const (
	CodeLedgerExists  = "ledger_exists"
	CodeAccountExists = "account_exists"
	CodeBankExists    = "bank_exists"
	CodeNotFound      = "not_found"
	CodeUnavailable   = "unavailable" // the database could not be reached or timed out
	CodeInternal      = "internal"
)

// Codes only the HTTP layer and the settlement service answer. They are declared here, next to
// their rows, so that the table needs nothing from the packages above it (httpapi and settlement
// use these constants under their own names).
const (
	CodeUnauthenticated            = "unauthenticated"
	CodeForbidden                  = "forbidden"
	CodeRateLimited                = "rate_limited"
	CodeOverloaded                 = "overloaded"
	CodeMethodNotAllowed           = "method_not_allowed"
	CodeUnsupportedMediaType       = "unsupported_media_type"
	CodeBodyTooLarge               = "body_too_large"
	CodeBatchRejected              = "batch_rejected"
	CodeSettlementAccountNotFound  = "settlement_account_not_found"
	CodeAmbiguousSettlementAccount = "ambiguous_settlement_account"
)

// Codes of reconciliation with the member banks (internal/reconcile, docs/reconciliation.md).
const (
	CodeDiscrepancyResolved      = "discrepancy_resolved"
	CodeResolutionNotApplicable  = "resolution_not_applicable"
	CodeUnknownDiscrepancy       = "unknown_discrepancy"
	CodeReconciliationInProgress = "reconciliation_in_progress"
)

// CodeInfo is one row of the code table: everything the Go side, the HTTP API, the OpenAPI
// document and docs/error-codes.md say about a code.
type CodeInfo struct {
	Code string
	// HTTPStatus is what the API answers with the code (for a posting result inside a batch
	// response, the status the single-entry endpoint would answer).
	HTTPStatus int
	// StatusNote qualifies HTTPStatus in the docs, e.g. "(batch)".
	StatusNote string
	// SQLSTATE is the class-DL state the database raises for this code (dl_result_sqlstate and
	// the administrative functions); FromDB maps it back. Empty when the database has none.
	SQLSTATE string
	// SQLNote says in the docs how the database reports a code without a SQLSTATE of its own.
	SQLNote string
	// Result marks a posting result: a value of BatchResult.result and of post_ledger_entries'
	// result column.
	Result bool
	// Meaning and Details are the docs' columns (Markdown).
	Meaning string
	Details string
}

// codeTable is THE table of result and error codes, in the order of the docs. Adding a code: add
// its row here (and its constant, in this file), and, if the database raises it, the SQL that raises it;
// docs/error-codes.md is regenerated (go test ./internal/ledger -run TestErrorCodesDoc -update)
// and the tests check that the database raises exactly the SQLSTATEs listed here. It is never
// modified: Codes hands out copies.
var codeTable = []CodeInfo{
	{Code: CodeCreated, HTTPStatus: http.StatusCreated, Result: true,
		Meaning: "the entry was posted", Details: "–"},
	{Code: CodeReplayed, HTTPStatus: http.StatusOK, Result: true, SQLNote: "23505, message `replayed: ...`",
		Meaning: "the reference exists with the same content; the original entry is returned, nothing written", Details: "–"},
	{Code: CodeReferenceConflict, HTTPStatus: http.StatusConflict, Result: true, SQLNote: "23505, message `reference_conflict: ...`",
		Meaning: "the reference exists with other content",
		Details: "`reference_id`, `existing_entry_id`, `fields` (the differing fields); for a reference used twice in one batch also `batch_entry` (the earlier position, from 1; the HTTP API adds `batch_index`, from 0), and in an atomic batch that was not applied no `existing_entry_id`; a single posting whose reference another request of its group commit took is answered as a conflict with that committed entry"},
	{Code: CodeInsufficientFunds, HTTPStatus: http.StatusUnprocessableEntity, SQLSTATE: "DL001", Result: true,
		Meaning: "`available_balance - amount < -overdraft_limit`",
		Details: "`account_id`, `available_balance`, `overdraft_limit`, `amount`"},
	{Code: CodeUnknownAccount, HTTPStatus: http.StatusNotFound, SQLSTATE: "DL002", Result: true,
		Meaning: "debit or credit account does not exist in the ledger", Details: "`ledger_id`, `missing_account_ids`"},
	{Code: CodeUnknownLedger, HTTPStatus: http.StatusNotFound, SQLSTATE: "DL003", Result: true,
		Meaning: "the ledger does not exist", Details: "`ledger_id`"},
	{Code: CodeCurrencyMismatch, HTTPStatus: http.StatusUnprocessableEntity, SQLSTATE: "DL004", Result: true,
		Meaning: "the entry's currency or asset type is not that of both accounts",
		Details: "`currency_code`, `asset_type`, `debit_account`, `credit_account`"},
	{Code: CodeSameAccount, HTTPStatus: http.StatusBadRequest, SQLSTATE: "DL005", Result: true,
		Meaning: "debit and credit account are the same", Details: "`field`"},
	{Code: CodeInvalidAmount, HTTPStatus: http.StatusBadRequest, SQLSTATE: "DL006", Result: true,
		Meaning: "not a decimal string, ≤ 0, more than 20 integer digits, more than 18 decimals, or more decimals than the currency's ISO 4217 minor unit (fiat); or the entry or hold would take a stored balance (`balance`, `available_balance`, `reserved_balance` of either account) to 10^20 or beyond (NUMERIC(38,18)); also SQLSTATE 22003 (numeric_value_out_of_range) from the database, with a fixed message",
		Details: "`field`; for a balance also `account_id` and `balance` (the column)"},
	{Code: CodeUnknownCurrency, HTTPStatus: http.StatusBadRequest, SQLSTATE: "DL007", Result: true,
		Meaning: "not an ISO 4217 code in `currencies`", Details: "`field`"},
	{Code: CodeInvalidAssetType, HTTPStatus: http.StatusBadRequest, SQLSTATE: "DL008", Result: true,
		Meaning: "not one of " + strings.Join(money.AssetTypeNames(), ", "), Details: "`field`"},
	{Code: CodeInvalidRequest, HTTPStatus: http.StatusBadRequest, SQLSTATE: "DL009", Result: true,
		Meaning: "another field is missing or malformed (reference_id, transaction_type, fx_rate, metadata, timestamp_utc, ...), unknown JSON field, trailing data, batch size; from the administrative functions (009): an actor or reason that the operator log would refuse, an account change without a reason or without anything to change",
		Details: "`field`; for reference ids also `rule` and `character` / `code_point` / `length`; for metadata `max_bytes` and `bytes` or `max_depth` and `depth`"},
	{Code: CodeAccountInactive, HTTPStatus: http.StatusUnprocessableEntity, SQLSTATE: "DL010", Result: true,
		Meaning: "an account is `frozen` or `closed`", Details: "`account_id`, `status`"},
	{Code: CodeNotApplied, HTTPStatus: http.StatusUnprocessableEntity, StatusNote: "(batch)", SQLSTATE: "DL011", Result: true,
		Meaning: "atomic batch: another entry was rejected, so this one was not written", Details: "`rejected_entry` (from 1; the HTTP API adds `rejected_index`, from 0), `rejected_result`"},
	{Code: CodeUnknownEntry, HTTPStatus: http.StatusNotFound, SQLSTATE: "DL012", Result: true,
		Meaning: "`reverses_entry_id` is not an entry of the ledger", Details: "`reverses_entry_id`"},
	{Code: CodeInvalidReversal, HTTPStatus: http.StatusUnprocessableEntity, SQLSTATE: "DL013", Result: true,
		Meaning: "a reversal must move the entry's amount back between the same two accounts (debit and credit swapped, same currency and asset type), and all reversals of an entry together never exceed it",
		Details: "`reverses_entry_id`, the expected accounts or `entry_amount` and `already_reversed`"},
	{Code: CodeUnknownHold, HTTPStatus: http.StatusNotFound, SQLNote: "result of the hold functions",
		Meaning: "no hold with that reference_id in the ledger (capture, void, GET)", Details: "`ledger_id`, `hold_reference_id`"},
	{Code: CodeHoldNotPending, HTTPStatus: http.StatusConflict, SQLNote: "result of the hold functions",
		Meaning: "the hold was already captured (under another reference), voided or expired: a capture or void of it changes nothing; of a capture and a void racing, the loser gets this",
		Details: "`hold_reference_id`, `status`, `capture_reference_id`"},
	{Code: CodeHoldExpired, HTTPStatus: http.StatusConflict, SQLNote: "result of the hold functions",
		Meaning: "capture of a hold whose `expires_at` has passed (whether or not the sweeper has released it yet), or void of an expired hold",
		Details: "`hold_reference_id`, `status`, `expires_at`"},
	{Code: CodeLedgerExists, HTTPStatus: http.StatusConflict, Meaning: "creation of a ledger that exists", Details: "ids"},
	{Code: CodeAccountExists, HTTPStatus: http.StatusConflict, Meaning: "creation of an account that exists in the ledger", Details: "ids"},
	{Code: CodeBankExists, HTTPStatus: http.StatusConflict, Meaning: "registration of a bank that exists", Details: "ids"},
	{Code: CodeUnknownBank, HTTPStatus: http.StatusNotFound,
		Meaning: "an account or a settlement names a bank that is not registered", Details: "`bank_id` (and `field`)"},
	{Code: CodeSettlementAccountNotFound, HTTPStatus: http.StatusUnprocessableEntity,
		Meaning: "a settlement's bank has no account in the settlement's currency and asset type",
		Details: "`field`, `bank_id`, `currency_code`, `asset_type`, `ledger_id`"},
	{Code: CodeAmbiguousSettlementAccount, HTTPStatus: http.StatusUnprocessableEntity,
		Meaning: "a settlement's bank has more than one such account", Details: "`field`, `bank_id`, `account_ids`"},
	{Code: CodeUnknownDiscrepancy, HTTPStatus: http.StatusNotFound, SQLSTATE: "DL122",
		Meaning: "no reconciliation discrepancy with that id (or, for a member bank's key, none of its bank's)", Details: "–"},
	{Code: CodeDiscrepancyResolved, HTTPStatus: http.StatusConflict, SQLSTATE: "DL120",
		Meaning: "the discrepancy is already RESOLVED (resolving twice is refused), or already ACKNOWLEDGED when acknowledged again",
		Details: "–"},
	{Code: CodeResolutionNotApplicable, HTTPStatus: http.StatusUnprocessableEntity, SQLSTATE: "DL121",
		Meaning: "the resolution does not fit the discrepancy: `requeue` of a kind without an outbox row to redeliver (only missing_on_scb, delivery_failed, status_mismatch), `correct` without the correcting entry, or of a discrepancy a run has cleared",
		Details: "–"},
	{Code: CodeReconciliationInProgress, HTTPStatus: http.StatusConflict,
		Meaning: "another reconciliation run of that SCB holds its lock (one run per SCB at a time, across processes)",
		Details: "`scb_id`, `held_by` (the session holding the lock: pid, role, application)"},
	{Code: CodeBatchRejected, HTTPStatus: http.StatusUnprocessableEntity,
		Meaning: "HTTP envelope of an atomic batch that was not applied; the per-entry results are in the body next to it",
		Details: "`index` (0-based position of the first rejected entry), `result`"},
	{Code: CodeNotFound, HTTPStatus: http.StatusNotFound,
		Meaning: "no entry with that reference / no such route (or a path not in canonical form, such as `//v1/...`: never redirected) / no API key with that id", Details: "`path`, `canonical_path` for a path not in canonical form"},
	{Code: CodeMethodNotAllowed, HTTPStatus: http.StatusMethodNotAllowed,
		Meaning: "the route exists, the method does not (`Allow` header lists the methods)", Details: "–"},
	{Code: CodeUnsupportedMediaType, HTTPStatus: http.StatusUnsupportedMediaType,
		Meaning: "a body that is not `application/json`", Details: "–"},
	{Code: CodeBodyTooLarge, HTTPStatus: http.StatusRequestEntityTooLarge,
		Meaning: "a body over the server's limit (`--max-body`)", Details: "–"},
	{Code: CodeUnauthenticated, HTTPStatus: http.StatusUnauthorized,
		Meaning: "no `Authorization: Bearer` token, or a malformed, unknown or revoked one (the same message for all; `WWW-Authenticate: Bearer`)",
		Details: "–"},
	{Code: CodeForbidden, HTTPStatus: http.StatusForbidden,
		Meaning: "the key lacks the route's scope (or the issue scope for debiting an account with an unlimited overdraft), is limited to other ledgers, or is a member bank's key reaching for another bank's money or data; never says whether the thing exists (docs/security.md)",
		Details: "`field`, `index` for a batch entry"},
	{Code: CodeRateLimited, HTTPStatus: http.StatusTooManyRequests,
		Meaning: "the key's own `--rate-limit` is spent (`Retry-After`)", Details: "–"},
	{Code: CodeOverloaded, HTTPStatus: http.StatusTooManyRequests,
		Meaning: "the server has `--max-in-flight` requests in flight, or the key its share of them; answered at once (`Retry-After: 1`), nothing was done",
		Details: "–"},
	{Code: CodeUnavailable, HTTPStatus: http.StatusServiceUnavailable,
		Meaning: "the database could not be reached, timed out, or the batch lost a serialization race three times (SQLSTATE 40001/40P01; nothing was written); retry with the same reference_id",
		Details: "–"},
	{Code: CodeInternal, HTTPStatus: http.StatusInternalServerError,
		Meaning: "a bug or an unexpected database error (logged)", Details: "–"},
}

// SQLState is a SQLSTATE the schema raises that is not a client-facing code of its own: the
// triggers and functions that guard the tables. It has a row in SchemaStates so that the tests
// can check that every class-DL state in the database is documented.
type SQLState struct {
	State    string
	RaisedBy string
	Meaning  string
}

// schemaStates lists the SQLSTATEs the schema raises besides the codes' (CodeInfo.SQLSTATE).
// Clients never see them as such: FromDB turns them into internal (logged), or the caller that
// expects one maps it (auth: DL014 is not_found); FromDB answers 23514 invalid_request and 22003
// invalid_amount.
var schemaStates = []SQLState{
	{"DL000", "`dl_result_sqlstate`", "a posting result without a SQLSTATE of its own (never raised while the code table and dl_result_sqlstate agree)"},
	{"DL014", "`revoke_api_key`", "no API key with that id (answered `not_found`)"},
	{"DL100", "append-only triggers", "UPDATE, DELETE or TRUNCATE of entries, ledgers, accounts, banks, outbox, attempts, the operator log; any change of an API key but its one revocation"},
	{"DL101", "guard triggers", "writing entries, balances or the ledger head outside the posting functions; creating an account with a balance; changing an account's identity"},
	{"DL102", "chain-check trigger", "an inserted entry breaks the hash chain, the seq order, the head, or names an account that does not exist with its currency and asset type"},
	{"DL110", "outbox state machine", "an illegal status transition or a change to a FINALIZED row"},
	{"DL111", "outbox state machine (010): `dl_outbox_guard`, `outbox_advance`", "a row made FINALIZED without the SCB's FINAL answer (`scb_entry_id`, `scb_status` FINAL), or ACKED without its POSTED answer"},
	{"23514", "CHECK constraints", "e.g. the balance constraints of 004"},
	{"22003", "PostgreSQL (numeric_value_out_of_range)", "a value beyond its NUMERIC(38,18) column; answered `invalid_amount` with a fixed message (the posting and hold functions reject such an entry before writing, so this is a backstop)"},
}

// Codes returns the code table (a copy), in the order of the docs.
func Codes() []CodeInfo { return slices.Clone(codeTable) }

// SchemaStates returns the schema's other SQLSTATEs (a copy), in the order of the docs.
func SchemaStates() []SQLState { return slices.Clone(schemaStates) }

// codeIndex finds a code's row; statusOf asks it for every error response.
var codeIndex = func() map[string]int {
	m := make(map[string]int, len(codeTable))
	for i, c := range codeTable {
		m[c.Code] = i
	}
	return m
}()

// CodeByName returns the row of code.
func CodeByName(code string) (CodeInfo, bool) {
	i, ok := codeIndex[code]
	if !ok {
		return CodeInfo{}, false
	}
	return codeTable[i], true
}

// HTTPStatus returns the HTTP status of code: its row's, or 500 for a code not in the table (a
// bug, which the table's tests are there to catch).
func HTTPStatus(code string) int {
	if c, ok := CodeByName(code); ok {
		return c.HTTPStatus
	}
	return http.StatusInternalServerError
}

// ResultCodes returns the posting results in table order (BatchResult.result's values).
func ResultCodes() []string {
	var out []string
	for _, c := range codeTable {
		if c.Result {
			out = append(out, c.Code)
		}
	}
	return out
}

// sqlstateIndex maps the class-DL SQLSTATEs of the table to their codes (FromDB).
func sqlstateIndex() map[string]string {
	m := make(map[string]string)
	for _, c := range codeTable {
		if c.SQLSTATE != "" {
			m[c.SQLSTATE] = c.Code
		}
	}
	return m
}

// sqlstateCodes is derived from the table once: FromDB runs for every rejected posting.
var sqlstateCodes = sqlstateIndex()

// ResultSQLStateSQL renders db/functions/result_sqlstate.sql: dl_result_sqlstate, the SQLSTATE
// with which post_ledger_entry (the seeds' single-entry function) raises a posting result, from
// this table. Generated, so that a new result code is its row here and the stage that returns it.
func ResultSQLStateSQL() string {
	var b strings.Builder
	b.WriteString(`-- Generated from internal/ledger/codes.go; do not edit. After changing the code table:
--   go test ./internal/ledger -run TestResultSQLStateFile -update
--
-- dl_result_sqlstate: the SQLSTATE with which post_ledger_entry (005, the seeds' single-entry
-- function) raises a posting result other than created (docs/error-codes.md). Migration 005
-- created it; this file redefines it with the same signature. Only post_ledger_entry (SECURITY
-- DEFINER, the owner's) calls it.
CREATE OR REPLACE FUNCTION dl_result_sqlstate(p_code text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE p_code
`)
	for _, c := range codeTable {
		state := resultSQLState(c)
		if !c.Result || state == "" {
			continue
		}
		b.WriteString("    WHEN " + sqlQuote(c.Code) + strings.Repeat(" ", max(1, 19-len(c.Code))) + "THEN " + sqlQuote(state) + "\n")
	}
	b.WriteString("    ELSE 'DL000' END;\nREVOKE ALL ON FUNCTION dl_result_sqlstate(text) FROM PUBLIC;\n")
	return b.String()
}

// resultSQLState is the state a posting result is raised with: its own, or for the two results
// that share 23505 (unique_violation), the one its SQLNote names.
func resultSQLState(c CodeInfo) string {
	if c.SQLSTATE != "" {
		return c.SQLSTATE
	}
	if len(c.SQLNote) >= 5 && isSQLState(c.SQLNote[:5]) {
		return c.SQLNote[:5]
	}
	return ""
}

func isSQLState(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return len(s) == 5
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// CodesMarkdown renders the code table of docs/error-codes.md.
func CodesMarkdown() string {
	var b strings.Builder
	b.WriteString("| code | HTTP | SQLSTATE | meaning | details |\n| --- | --- | --- | --- | --- |\n")
	for _, c := range codeTable {
		status := strconv.Itoa(c.HTTPStatus)
		if c.StatusNote != "" {
			status += " " + c.StatusNote
		}
		state := c.SQLSTATE
		if state == "" {
			state = c.SQLNote
		}
		if state == "" {
			state = "–"
		}
		row(&b, "`"+c.Code+"`", status, state, c.Meaning, c.Details)
	}
	return b.String()
}

// SchemaStatesMarkdown renders the table of the schema's other SQLSTATEs in docs/error-codes.md.
func SchemaStatesMarkdown() string {
	var b strings.Builder
	b.WriteString("| SQLSTATE | raised by | meaning |\n| --- | --- | --- |\n")
	for _, s := range schemaStates {
		row(&b, s.State, s.RaisedBy, s.Meaning)
	}
	return b.String()
}

func row(b *strings.Builder, cells ...string) {
	b.WriteString("|")
	for _, c := range cells {
		b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
	}
	b.WriteString("\n")
}
