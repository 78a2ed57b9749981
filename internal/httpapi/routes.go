package httpapi

import (
	"net/http"
	"slices"
	"strings"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/settlement"
	"dualledger/internal/statement"
)

// handlerFunc is an endpoint: it writes a success response itself, or returns an error that the
// router answers in the error envelope.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one endpoint. The table of routes is the single source of both the ServeMux and the
// OpenAPI document, so the two cannot disagree (TestOpenAPIMatchesRoutes checks it anyway).
type route struct {
	method      string
	path        string // ServeMux pattern path, e.g. /v1/ledgers/{ledger_id}; also the OpenAPI path
	id          string // operationId
	tag         string
	summary     string
	description string
	query       []queryParam
	body        any    // a zero value of the request body's type; nil: no body
	maxBody     int64  // body limit in bytes (set by complete from Config)
	strictQuery bool   // refuse undocumented query parameters (set by complete: the /v1 API)
	access      access // public, or the scope a key needs; a route without one is refused by New
	responses   []response
	handle      handlerFunc
}

// response is one documented answer of a route.
type response struct {
	status      int
	body        any    // a zero value of the body's type; nil: no body
	contentType string // default application/json
	description string
	codes       []string // error codes answered with this status (x-error-codes)
}

// queryParam is one documented query parameter; any other parameter is refused.
type queryParam struct {
	name        string
	description string
	integer     bool
	min, max    *int64
	def         any
}

func ok(status int, body any, description string) response {
	return response{status: status, body: body, description: description}
}

func fail(status int, codes ...string) response {
	return response{status: status, body: ErrorResponse{}, codes: codes}
}

func ptr[T any](v T) *T { return &v }

// Path parameters mean the same wherever they appear.
var pathParamDocs = map[string]string{
	"ledger_id":      "Ledger id, e.g. MASTER.",
	"key_id":         "API key id, e.g. key_abcdefghijklmnop.",
	"account_id":     "Account id; percent-encode a / in it as %2F.",
	"reference_id":   "The entry's reference_id; percent-encode it (every character but A-Z a-z 0-9 - . _ ~).",
	"discrepancy_id": "A reconciliation discrepancy's id.",
	"hold_reference_id": "The hold's reference_id (the one it was created with); percent-encode it (every character but " +
		"A-Z a-z 0-9 - . _ ~).",
}

// routes is the route table of s.
func (s *Server) routes() []route {
	var (
		pageLimit = queryParam{name: "limit", description: "Page size.", integer: true, min: ptr[int64](1), max: ptr[int64](maxPageLimit), def: defaultPageLimit}
		postErrs  = []response{
			fail(http.StatusBadRequest, ledger.CodeInvalidRequest, ledger.CodeInvalidAmount, ledger.CodeUnknownCurrency,
				ledger.CodeInvalidAssetType, ledger.CodeSameAccount),
			fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownAccount, ledger.CodeUnknownEntry),
			fail(http.StatusConflict, ledger.CodeReferenceConflict),
			fail(http.StatusUnprocessableEntity, ledger.CodeInsufficientFunds, ledger.CodeCurrencyMismatch, ledger.CodeAccountInactive,
				ledger.CodeInvalidReversal),
		}
	)
	rs := []route{
		{
			method: http.MethodPost, path: "/v1/ledgers", id: "createLedger", access: needs(auth.ScopeAdmin), tag: "ledgers",
			summary: "Create an empty ledger",
			body:    CreateLedgerRequest{}, handle: s.createLedger,
			responses: []response{
				ok(http.StatusCreated, ledger.Ledger{}, "The new ledger (head_seq 0)."),
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest),
				fail(http.StatusConflict, ledger.CodeLedgerExists),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers", id: "listLedgers", access: needs(auth.ScopeRead), tag: "ledgers",
			summary: "List the ledgers (those the key is limited to, if it is), by id, one page at a time",
			query: []queryParam{
				{name: "after", description: "Return ledgers whose id sorts after this one (the previous page's next_after)."},
				pageLimit,
			},
			handle:    s.listLedgers,
			responses: []response{ok(http.StatusOK, LedgerList{}, "One page of ledgers.")},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}", id: "getLedger", access: needs(auth.ScopeRead), tag: "ledgers",
			summary: "Get a ledger with its chain head (head_seq, head_hash)", handle: s.getLedger,
			responses: []response{
				ok(http.StatusOK, ledger.Ledger{}, "The ledger."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger),
			},
		},
		{
			method: http.MethodPost, path: "/v1/ledgers/{ledger_id}/accounts", id: "createAccount", access: needs(auth.ScopeAccounts), tag: "accounts",
			summary: "Create an account (zero balances)",
			description: "Needs the accounts scope. An overdraft_limit other than 0 needs the admin scope (it is credit). A " +
				"bank_id ties the account to a member bank, whose settlements use its one account per currency and asset " +
				"type: it needs the banks scope too (or admin), except from a member bank's key, which opens accounts of " +
				"its own bank only (bank_id must name it). Recorded in the operator log.",
			body: ledger.AccountInput{}, handle: s.createAccount,
			responses: []response{
				ok(http.StatusCreated, ledger.Account{}, "The new account."),
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest, ledger.CodeUnknownCurrency, ledger.CodeInvalidAssetType),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownBank),
				fail(http.StatusConflict, ledger.CodeAccountExists),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/accounts", id: "listAccounts", access: needs(auth.ScopeRead), tag: "accounts",
			summary: "List a ledger's accounts with balances, by id, one page at a time",
			query: []queryParam{
				{name: "after", description: "Return accounts whose id sorts after this one (the previous page's next_after)."},
				pageLimit,
			},
			handle: s.listAccounts,
			responses: []response{
				ok(http.StatusOK, AccountList{}, "One page of accounts."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/accounts/{account_id}", id: "getAccount", access: needs(auth.ScopeRead), tag: "accounts",
			summary: "Get an account with balance, available_balance and reserved_balance, now or as of a point of the ledger",
			description: "With as_of_seq (or as_of, a time) the balances are those of that point, read from stored rows (each " +
				"entry's balance-after, each hold event's reserved-after), not by replaying the ledger: the ledger as it was while " +
				"entry as_of_seq was its head (hold events up to the next entry included); as_of resolves to the last entry " +
				"recorded at or before it (as_of_seq in the answer). docs/holds.md.",
			query: []queryParam{
				{name: "as_of_seq", description: "Balances as of this entry seq (0 to the ledger's head_seq).", integer: true, min: ptr[int64](0)},
				{name: "as_of", description: "Balances as of this RFC 3339 time (not with as_of_seq)."},
			},
			handle: s.getAccount,
			responses: []response{
				ok(http.StatusOK, ledger.AccountAsOf{}, "The account (as_of_seq and as_of null for the current balances)."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownAccount),
			},
		},
		{
			method: http.MethodPatch, path: "/v1/ledgers/{ledger_id}/accounts/{account_id}", id: "updateAccount", access: needs(auth.ScopeAccounts), tag: "accounts",
			summary: "Change an account's status (active, frozen, closed) or overdraft limit, with a reason",
			description: "The change and its reason go into the operator log. A status change needs the accounts scope, an " +
				"overdraft limit change the admin scope (it is credit); member banks' keys change no account. Postings " +
				"racing the change are refused and retried, so none moves money past the new rule.",
			body: ledger.AccountUpdate{}, handle: s.updateAccount,
			responses: []response{
				ok(http.StatusOK, ledger.Account{}, "The changed account."),
				ok(http.StatusNoContent, nil, "The change was made; the answer to a key without the read scope, which may not read the account's balances."),
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownAccount),
			},
		},
		{
			method: http.MethodPost, path: "/v1/ledgers/{ledger_id}/entries", id: "postEntry", access: needs(auth.ScopePost), tag: "entries",
			summary: "Post one entry: amount moves from the debit account to the credit account",
			description: "Idempotent by reference_id: a retry with the same content answers 200 with the original entry " +
				"(\"replayed\": true); with different content, 409 reference_conflict naming the differing fields. " +
				"Concurrent postings to one ledger are committed together (group commit), each with its own result. " +
				"If the connection breaks before the answer, retry with the same reference_id to learn the outcome.",
			body: ledger.EntryInput{}, handle: s.postEntry,
			responses: append([]response{
				ok(http.StatusCreated, PostingResponse{}, "Posted now (result created)."),
				ok(http.StatusOK, PostingResponse{}, "Posted before with the same content (result replayed); entry is the original."),
			}, postErrs...),
		},
		{
			method: http.MethodPost, path: "/v1/ledgers/{ledger_id}/entries/batch", id: "postBatch", access: needs(auth.ScopePost), tag: "entries",
			summary: "Post several entries in one transaction; one result per entry, in order",
			description: "Non-atomic (default): every acceptable entry is committed; each result says created, replayed or why the " +
				"entry was rejected; the answer is 200. Atomic: all entries are committed or none; when any entry is rejected " +
				"nothing is written and the answer is 422 with the same body plus a top-level error batch_rejected (the rejected " +
				"entries carry their own error, the others not_applied). A malformed body, or more entries than the server's " +
				"--max-batch, is a 400 for the whole request (details.index names the entry).",
			body: BatchRequest{}, handle: s.postBatch,
			responses: []response{
				ok(http.StatusOK, BatchResponse{}, "The batch was committed (applied: true); results in request order."),
				{status: http.StatusUnprocessableEntity, body: BatchRejectedResponse{}, codes: []string{CodeBatchRejected},
					description: "An atomic batch with a rejected entry: nothing was written (applied: false)."},
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest, ledger.CodeInvalidAmount),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/entries", id: "listEntries", access: needs(auth.ScopeRead), tag: "entries",
			summary: "List a ledger's entries in seq order, one page at a time",
			query: []queryParam{
				{name: "after_seq", description: "Return entries with seq greater than this (the previous page's next_after_seq).",
					integer: true, min: ptr[int64](0), def: 0},
				pageLimit,
			},
			handle: s.listEntries,
			responses: []response{
				ok(http.StatusOK, EntryList{}, "One page of entries."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/entries/{reference_id}", id: "getEntry", access: needs(auth.ScopeRead), tag: "entries",
			summary: "Get one entry by reference_id, with seq, previous_hash and block_hash (hex)", handle: s.getEntry,
			responses: []response{
				ok(http.StatusOK, ledger.Entry{}, "The entry."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeNotFound),
			},
		},
		{
			method: http.MethodPost, path: "/v1/ledgers/{ledger_id}/holds", id: "createHold", access: needs(auth.ScopePost), tag: "holds",
			summary: "Reserve an amount on the debit account towards the credit account (a hold, PENDING)",
			description: "Raises the debit account's reserved_balance and lowers its available_balance; balance is unchanged and " +
				"nothing is posted. Refused with insufficient_funds when available_balance (with the overdraft limit) does not " +
				"cover it: reserved funds are spent neither by postings nor by other holds. expires_at (optional, RFC 3339, in " +
				"the future): after it the hold cannot be captured and the sweeper releases it. Idempotent by reference_id " +
				"(its own namespace, apart from entries'): the same body answers 200 with the hold; another, 409. docs/holds.md.",
			body: ledger.HoldInput{}, handle: s.createHold,
			responses: []response{
				ok(http.StatusCreated, HoldResponse{}, "Reserved now (result created)."),
				ok(http.StatusOK, HoldResponse{}, "Reserved before with the same body (result replayed); hold as it is now."),
				postErrs[0],
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownAccount),
				fail(http.StatusConflict, ledger.CodeReferenceConflict),
				fail(http.StatusUnprocessableEntity, ledger.CodeInsufficientFunds, ledger.CodeCurrencyMismatch, ledger.CodeAccountInactive),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/holds", id: "listHolds", access: needs(auth.ScopeRead), tag: "holds",
			summary: "List a ledger's holds by id (oldest first), optionally by status or account, one page at a time",
			query: []queryParam{
				{name: "status", description: "Only holds in this state: PENDING, CAPTURED, VOIDED or EXPIRED."},
				{name: "account", description: "Only holds whose debit or credit account is this one."},
				{name: "after_id", description: "Return holds with id greater than this (the previous page's next_after_id).",
					integer: true, min: ptr[int64](0), def: 0},
				pageLimit,
			},
			handle: s.listHolds,
			responses: []response{
				ok(http.StatusOK, HoldList{}, "One page of holds."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger),
			},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/holds/{hold_reference_id}", id: "getHold", access: needs(auth.ScopeRead), tag: "holds",
			summary: "Get a hold: its terms, status, and how it ended (captured amount and entry)", handle: s.getHold,
			responses: []response{
				ok(http.StatusOK, ledger.Hold{}, "The hold."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownHold),
			},
		},
		{
			method: http.MethodPost, path: "/v1/ledgers/{ledger_id}/holds/{hold_reference_id}/capture", id: "captureHold", access: needs(auth.ScopePost), tag: "holds",
			summary: "Capture a hold, fully or partly: post its entry and release the whole reservation",
			description: "Posts an entry for amount (default: the hold's whole amount) under the capture's own reference_id, " +
				"with the hold's accounts, currency, transaction type and fx_rate, and metadata plus hold_reference_id; the " +
				"rest of the reservation goes back to available_balance. A capture of more than the hold is invalid_amount; " +
				"after expires_at, hold_expired (whether or not the sweeper has run); of a hold already captured under " +
				"another reference, voided or expired, hold_not_pending (409). A capture and a void racing: exactly one wins. " +
				"A retry with the same reference_id and amount answers 200 with the original entry. Member banks' accounts " +
				"get their outbox rows for this entry, as for any posting.",
			body: ledger.CaptureInput{}, handle: s.captureHold,
			responses: []response{
				ok(http.StatusCreated, CaptureResponse{}, "Captured now: the hold (CAPTURED) and the entry posted."),
				ok(http.StatusOK, CaptureResponse{}, "Captured before under this reference_id and amount (replayed)."),
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest, ledger.CodeInvalidAmount),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownHold),
				fail(http.StatusConflict, ledger.CodeReferenceConflict, ledger.CodeHoldNotPending, ledger.CodeHoldExpired),
				fail(http.StatusUnprocessableEntity, ledger.CodeInsufficientFunds, ledger.CodeAccountInactive),
			},
		},
		{
			method: http.MethodPost, path: "/v1/ledgers/{ledger_id}/holds/{hold_reference_id}/void", id: "voidHold", access: needs(auth.ScopePost), tag: "holds",
			summary: "Void a PENDING hold: release its reservation, post nothing",
			description: "Voiding a voided hold answers 200 with replayed true; a captured one hold_not_pending, an expired one " +
				"hold_expired (409). A hold whose expires_at has passed but that the sweeper has not released yet may still be voided.",
			handle: s.voidHold,
			responses: []response{
				ok(http.StatusOK, HoldResponse{}, "Voided now (result created) or before (replayed)."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeUnknownHold),
				fail(http.StatusConflict, ledger.CodeHoldNotPending, ledger.CodeHoldExpired),
			},
		},
		{
			method: http.MethodPost, path: "/v1/banks", id: "registerBank", access: needs(auth.ScopeBanks), tag: "banks",
			summary: "Register a member bank (SCB) whose ledger is mirrored: postings touching its accounts get outbox rows",
			body:    RegisterBankRequest{}, handle: s.registerBank,
			responses: []response{
				ok(http.StatusCreated, ledger.Bank{}, "The registered bank."),
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest),
				fail(http.StatusConflict, ledger.CodeBankExists),
			},
		},
		{
			method: http.MethodPost, path: "/v1/settlements", id: "settle", access: needs(auth.ScopeSettle), tag: "settlements",
			summary: "Post a GSS settlement between two member banks on the master ledger (DBIS-first)",
			description: "Posts on the master ledger from the source bank's settlement account (its account there for the " +
				"currency and asset type) to the destination's, writes one outbox row per SCB in the same transaction and " +
				"answers 202 at once with status DBIS_COMMITTED, without waiting for any SCB. The worker mirrors the entry " +
				"to both SCBs; GET /v1/settlements/{reference_id} shows their sync status and SETTLED once all are FINALIZED. " +
				"Idempotent by reference_id: a retry answers 200 with \"replayed\": true and the current status.",
			body: settlement.Request{}, handle: s.postSettlement,
			responses: append([]response{
				ok(http.StatusAccepted, settlement.Settlement{}, "Committed on the master ledger (DBIS_COMMITTED); the SCBs follow."),
				ok(http.StatusOK, settlement.Settlement{}, "Posted before with the same content (replayed)."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, settlement.CodeUnknownBank),
				fail(http.StatusUnprocessableEntity, ledger.CodeInsufficientFunds, ledger.CodeCurrencyMismatch, ledger.CodeAccountInactive,
					settlement.CodeSettlementAccountNotFound, settlement.CodeAmbiguousSettlementAccount),
			}, postErrs[0], postErrs[2]),
		},
		{
			method: http.MethodGet, path: "/v1/settlements/{reference_id}", id: "getSettlement", access: needs(auth.ScopeRead), tag: "settlements",
			summary: "A settlement's entry and each SCB's sync status; SETTLED once every outbox row is FINALIZED",
			handle:  s.getSettlement,
			responses: []response{
				ok(http.StatusOK, settlement.Settlement{}, "The settlement."),
				fail(http.StatusNotFound, ledger.CodeUnknownLedger, ledger.CodeNotFound),
			},
		},
		{
			method: http.MethodGet, path: "/v1/banks", id: "listBanks", access: needs(auth.ScopeRead), tag: "banks",
			summary: "List the registered member banks (a member bank's key: its own), by id, one page at a time",
			query: []queryParam{
				{name: "after", description: "Return banks whose id sorts after this one (the previous page's next_after)."},
				pageLimit,
			},
			handle:    s.listBanks,
			responses: []response{ok(http.StatusOK, BankList{}, "One page of banks.")},
		},
		{
			method: http.MethodGet, path: "/v1/keys", id: "listKeys", access: needs(auth.ScopeAdmin), tag: "keys",
			summary: "List the API keys (never their tokens), oldest first, revoked ones too", handle: s.listKeys,
			responses: []response{ok(http.StatusOK, KeyList{}, "Every key.")},
		},
		{
			method: http.MethodPost, path: "/v1/keys", id: "createKey", access: needs(auth.ScopeAdmin), tag: "keys",
			summary: "Create an API key; its token is in this answer only",
			description: "Scopes: read, post, issue, settle, accounts, banks, admin. ledgers limits the key to those ledgers; bank_id " +
				"makes it a member bank's key (it moves money only out of that bank's accounts and reads only them). An admin " +
				"key cannot be limited. rate_limit is requests per second (none if absent). expires_at (an RFC 3339 time in the " +
				"future, at most 10 years ahead; none if absent) is when the key stops working: its requests are then answered 401. " +
				"Recorded in the operator log.",
			body: auth.Spec{}, handle: s.createKey,
			responses: []response{
				ok(http.StatusCreated, auth.NewKey{}, "The new key with its token (shown once)."),
				fail(http.StatusBadRequest, ledger.CodeInvalidRequest),
				fail(http.StatusNotFound, ledger.CodeUnknownBank),
			},
		},
		{
			method: http.MethodPost, path: "/v1/keys/{key_id}/revoke", id: "revokeKey", access: needs(auth.ScopeAdmin), tag: "keys",
			summary: "Revoke an API key (at once on this server, within a second on the others); revoking twice changes nothing",
			body:    RevokeKeyRequest{}, handle: s.revokeKey,
			responses: []response{
				ok(http.StatusOK, auth.Key{}, "The revoked key."),
				fail(http.StatusNotFound, ledger.CodeNotFound),
			},
		},
		{
			method: http.MethodGet, path: "/v1/operator-actions", id: "listOperatorActions", access: needs(auth.ScopeAdmin), tag: "keys",
			summary: "The operator log: every administrative act, hash-chained, in seq order, one page at a time",
			query: []queryParam{
				{name: "after_seq", description: "Return actions with seq greater than this (the previous page's next_after_seq).",
					integer: true, min: ptr[int64](0), def: 0},
				{name: "since", description: "Return actions at or after this RFC 3339 time."},
				pageLimit,
			},
			handle:    s.listOperatorActions,
			responses: []response{ok(http.StatusOK, OperatorActionList{}, "One page of the operator log.")},
		},
		{
			method: http.MethodGet, path: "/v1/ledgers/{ledger_id}/accounts/{account_id}/statement", id: "accountStatement",
			access: needs(auth.ScopeRead), tag: "reconciliation",
			summary:     "An account statement for booking dates from..to: opening balance, every entry with its running balance, closing balance",
			description: "format=json (default, this schema), csv (text/csv: a row per entry between an opening and a closing row) or camt053 (application/xml: ISO 20022 camt.053.001.08 BankToCustomerStatement, Bal OPBD/CLBD, one Ntry per entry). Balances are the stored balances-after. A member bank's key reads only its own bank's accounts.",
			query: []queryParam{
				{name: "from", description: "First booking date, YYYY-MM-DD (UTC)."},
				{name: "to", description: "Last booking date, YYYY-MM-DD (UTC), at most 366 days after from."},
				{name: "format", description: "json, csv or camt053.", def: "json"},
			},
			handle: s.accountStatement,
			responses: []response{
				ok(http.StatusOK, statement.Statement{}, "The statement (JSON; CSV or camt.053 XML by format)."),
				fail(http.StatusNotFound, ledger.CodeUnknownAccount),
			},
		},
		{
			method: http.MethodGet, path: "/v1/discrepancies", id: "listDiscrepancies", access: needs(auth.ScopeRead), tag: "reconciliation",
			summary:     "Discrepancies found by reconciliation with the member banks, in id order, one page at a time",
			description: "Live discrepancies (cleared=true adds those a later run no longer saw). A member bank's key sees only its own bank's, a ledger-limited key only its ledgers'. Only admin keys see the SCB's error text (dbis.failure_reason) and the operators' who and why (acknowledged_by, acknowledge_reason, resolved_by, resolution_reason: null for other keys). docs/reconciliation.md.",
			query: []queryParam{
				{name: "after", description: "Return discrepancies with an id greater than this (the previous page's next_after).",
					integer: true, min: ptr[int64](0), def: 0},
				{name: "scb_id", description: "Only this SCB's."},
				{name: "ledger_id", description: "Only this ledger's."},
				{name: "kind", description: "Only this kind: missing_on_scb, missing_on_dbis, amount_mismatch, field_mismatch, hash_mismatch, status_mismatch, delivery_failed, duplicate_on_scb."},
				{name: "status", description: "Only this status: OPEN, ACKNOWLEDGED, RESOLVED."},
				{name: "cleared", description: "true: include the cleared ones.", def: "false"},
				pageLimit,
			},
			handle:    s.listDiscrepancies,
			responses: []response{ok(http.StatusOK, DiscrepancyList{}, "One page of discrepancies.")},
		},
		{
			method: http.MethodPost, path: "/v1/discrepancies/{discrepancy_id}/resolve", id: "resolveDiscrepancy", access: needs(auth.ScopeAdmin),
			tag:     "reconciliation",
			summary: "Resolve a discrepancy once: requeue (redeliver through the outbox), correct (post a correcting entry or reversal, reference recon-<id>) or explained",
			body:    ResolveDiscrepancyRequest{}, handle: s.resolveDiscrepancy,
			responses: []response{
				ok(http.StatusOK, ResolveDiscrepancyResponse{}, "The resolved discrepancy (and the correcting entry)."),
				fail(http.StatusNotFound, ledger.CodeUnknownDiscrepancy, ledger.CodeUnknownAccount, ledger.CodeUnknownEntry),
				fail(http.StatusConflict, ledger.CodeDiscrepancyResolved, ledger.CodeReferenceConflict),
				fail(http.StatusUnprocessableEntity, ledger.CodeResolutionNotApplicable, ledger.CodeInsufficientFunds, ledger.CodeCurrencyMismatch,
					ledger.CodeAccountInactive, ledger.CodeInvalidReversal),
			},
		},
		{
			method: http.MethodGet, path: "/healthz", id: "healthz", access: public, tag: "operations",
			summary: "Liveness: the process is up (never touches the database)", handle: s.healthz,
			responses: []response{ok(http.StatusOK, Status{}, `Always {"status":"ok"}.`)},
		},
		{
			method: http.MethodGet, path: "/readyz", id: "readyz", access: public, tag: "operations",
			summary: "Readiness: the database answers SELECT 1 within 2 s, and the server is not shutting down", handle: s.readyz,
			responses: []response{
				ok(http.StatusOK, Status{}, `{"status":"ready"}.`),
				fail(http.StatusServiceUnavailable, ledger.CodeUnavailable),
			},
		},
		{
			method: http.MethodGet, path: "/openapi.json", id: "openapi", access: public, tag: "operations",
			summary: "This OpenAPI document", handle: s.serveOpenAPI,
			responses: []response{ok(http.StatusOK, map[string]any{}, "The OpenAPI 3.1 document.")},
		},
	}
	for i := range rs {
		rs[i] = s.complete(rs[i])
	}
	return rs
}

// complete adds what every route of a kind answers, so that the table lists only what is
// particular to a route: body rules (400, 413, 415), query rules (400), and 500/503.
func (s *Server) complete(rt route) route {
	var extra []response
	if rt.body != nil {
		rt.maxBody = s.cfg.MaxBody
		if rt.id == "postBatch" {
			rt.maxBody = s.cfg.MaxBatchBody
		}
		extra = append(extra,
			fail(http.StatusBadRequest, ledger.CodeInvalidRequest),
			fail(http.StatusRequestEntityTooLarge, CodeBodyTooLarge),
			fail(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType))
	}
	// The API refuses query parameters it does not know (a typo must not pass silently); the
	// operations endpoints ignore them, since probes and scrapers add their own.
	if strings.HasPrefix(rt.path, "/v1/") {
		rt.strictQuery = true
		extra = append(extra,
			fail(http.StatusBadRequest, ledger.CodeInvalidRequest),
			fail(http.StatusServiceUnavailable, ledger.CodeUnavailable))
	}
	if rt.path == "/readyz" {
		extra = append(extra, fail(http.StatusServiceUnavailable, ledger.CodeUnavailable))
	}
	if !rt.access.public {
		extra = append(extra,
			fail(http.StatusUnauthorized, CodeUnauthenticated),
			fail(http.StatusForbidden, CodeForbidden),
			fail(http.StatusTooManyRequests, CodeRateLimited, CodeOverloaded))
	}
	extra = append(extra, fail(http.StatusInternalServerError, ledger.CodeInternal))
	for _, e := range extra {
		i := slices.IndexFunc(rt.responses, func(r response) bool { return r.status == e.status })
		switch {
		case i < 0:
			rt.responses = append(rt.responses, e)
		case rt.responses[i].codes != nil:
			for _, c := range e.codes {
				if !slices.Contains(rt.responses[i].codes, c) {
					rt.responses[i].codes = append(rt.responses[i].codes, c)
				}
			}
		}
	}
	return rt
}
