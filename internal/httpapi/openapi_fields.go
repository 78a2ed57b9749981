package httpapi

import (
	"dualledger/internal/ledger"
	"dualledger/internal/money"
)

// fieldDoc describes one JSON field in the OpenAPI document. The field's type and whether it is
// required come from the Go type; this adds what a type cannot say (meaning, format, values).
type fieldDoc struct {
	description string
	pattern     string
	enum        []string
	example     any
	override    func() *Schema
}

const decimalPattern = `^[0-9]+(\.[0-9]+)?$`

// assetTypes and resultCodes come from their single sources (money's asset types, ledger.Codes),
// which the tests hold equal to the database's CHECK constraints and functions.
var (
	assetTypes  = money.AssetTypeNames()
	resultCodes = ledger.ResultCodes()
)

// docFor returns the documentation of field of the Go type typeName ("" when there is none).
// Type-specific entries come first; the rest holds for the field name wherever it appears,
// because the API uses one vocabulary (docs/design.md §1.1).
func docFor(typeName, field string) fieldDoc {
	switch typeName + "." + field {
	case "EntryInput.amount":
		return fieldDoc{description: "Amount moved from the debit to the credit account: a decimal string (never a JSON number), " +
			"greater than zero, at most 20 integer digits and 18 decimals; for fiat at most the currency's ISO 4217 minor unit " +
			"(USD 2, JPY 0, BHD 3).", pattern: decimalPattern, example: "100.00"}
	case "EntryInput.timestamp_utc":
		return fieldDoc{description: "Business time, RFC 3339 with a time zone, between 1900 and 9999; default: the commit time. " +
			"A retry that leaves it out matches the original whatever its time.", example: "2025-01-20T10:00:00Z"}
	case "EntryInput.metadata", "AccountInput.metadata":
		return fieldDoc{description: "A JSON object (default {}): at most 16 KiB as sent and 8 levels deep, the object itself " +
			"included (serve --max-metadata, --max-metadata-depth). Numbers in it have at most 64 characters and an exponent within ±300."}
	case "EntryInput.reverses_entry_id":
		return fieldDoc{description: "The id of the entry of this ledger that this entry reverses (corrections are new entries)."}
	case "AccountInput.overdraft_limit":
		return fieldDoc{description: `How far available_balance may go below zero: a decimal string (default "0"), or "unlimited" ` +
			`for issuance and system accounts. For fiat at most the currency's ISO 4217 minor unit of decimals, as an entry's ` +
			`amount (USD 2, JPY 0, BHD 3).`, example: "0"}
	case "AccountUpdate.overdraft_limit":
		return fieldDoc{description: `The new overdraft limit (admin scope): a decimal string, or "unlimited"; for fiat at most ` +
			`the currency's ISO 4217 minor unit of decimals. Absent: unchanged.`, example: "1000.00"}
	case "AccountInput.bank_id":
		return fieldDoc{description: "The registered member bank (SCB) the account belongs to; absent or null: none. A " +
			"settlement uses the bank's one account per currency and asset type, so a bank_id needs the banks scope (or " +
			"admin); a member bank's key must give its own bank.", pattern: ledger.BankIDPattern}
	case "AccountInput.id":
		return fieldDoc{description: "Account id, unique in the ledger: 1-128 characters, letters, digits and _ . : @ / - " +
			"(starting with a letter or digit). In a URL, percent-encode / as %2F.", pattern: ledger.AccountIDPattern}
	case "CreateLedgerRequest.id":
		return fieldDoc{description: "1-64 characters: letters, digits and _ . - (starting with a letter or digit; no ':', " +
			"which separates ledger and reference in the SCB's Idempotency-Key).", pattern: ledger.LedgerIDPattern}
	case "RegisterBankRequest.id":
		return fieldDoc{description: "1-64 characters: letters, digits and _ . : - (starting with a letter or digit).",
			pattern: ledger.BankIDPattern}
	case "RegisterBankRequest.name":
		return fieldDoc{description: "Display name, 1-200 bytes of UTF-8 text without control characters, line separators or bidirectional overrides (leading and trailing spaces are trimmed)."}
	case "Account.overdraft_limit":
		return fieldDoc{description: `Decimal string, or "unlimited".`}
	case "Account.balance":
		return fieldDoc{description: "Σ credits − Σ debits of the account's entries (decimal string; may be negative)."}
	case "Account.available_balance":
		return fieldDoc{description: "balance − reserved_balance (decimal string)."}
	case "Account.reserved_balance":
		return fieldDoc{description: "Σ of the open holds on the account (decimal string, never negative)."}
	case "HoldInput.amount":
		return fieldDoc{description: "Amount reserved on the debit account: a decimal string, as an entry's amount.",
			pattern: decimalPattern, example: "250.00"}
	case "HoldInput.expires_at":
		return fieldDoc{description: "Optional RFC 3339 time with a time zone (at most 6 decimals of a second), in the future: " +
			"after it the hold cannot be captured (hold_expired) and the sweeper releases it. Default: never.",
			example: "2030-01-01T00:00:00Z"}
	case "HoldInput.reference_id":
		return fieldDoc{description: "The hold's idempotency key, unique per ledger among holds (entries have their own): the " +
			"rules of an entry's reference_id. The same body again answers replayed; another body, reference_conflict."}
	case "CaptureInput.reference_id":
		return fieldDoc{description: "The reference_id of the entry the capture posts (its own, unused by any entry). The same " +
			"capture again (same reference_id and amount) answers replayed with the original entry."}
	case "CaptureInput.amount":
		return fieldDoc{description: "Amount to post, at most the hold's (decimal string); default: the whole hold. The rest " +
			"of the reservation is released either way.", pattern: decimalPattern, example: "200.00"}
	case "Hold.status":
		return fieldDoc{enum: ledger.HoldStatuses}
	case "Hold.created_seq", "Hold.resolved_seq":
		return fieldDoc{description: "The ledger's entry head seq when the hold was made / right after it was captured, " +
			"voided or expired (a capture's: its entry's seq)."}
	case "Hold.captured_amount", "Hold.capture_entry_id", "Hold.capture_reference_id":
		return fieldDoc{description: "Set for a CAPTURED hold: the amount posted, and the entry's id and reference_id."}
	case "HoldResponse.result", "CaptureResponse.result":
		return fieldDoc{enum: []string{ledger.CodeCreated, ledger.CodeReplayed}}
	case "HoldList.next_after_id":
		return fieldDoc{description: "Pass as ?after_id= for the next page; null on the last page."}
	case "AccountAsOf.as_of_seq":
		return fieldDoc{description: "The entry seq the balances are as of (null: the current balances)."}
	case "AccountAsOf.as_of":
		return fieldDoc{description: "The time asked for with ?as_of= (null otherwise); as_of_seq is the last entry recorded at or before it."}
	case "Account.status":
		return fieldDoc{enum: []string{"active", "frozen", "closed"}}
	case "Entry.amount", "Entry.fx_rate", "Entry.debit_balance_after", "Entry.credit_balance_after":
		return fieldDoc{description: "Decimal string."}
	case "Entry.previous_hash":
		return fieldDoc{description: "block_hash of the previous entry (hex; 64 zeros for seq 1)."}
	case "Entry.block_hash":
		return fieldDoc{description: "sha256(previous_hash || canonical(entry)), hex (docs/hash-chain.md)."}
	case "Ledger.head_hash":
		return fieldDoc{description: "block_hash of the last entry (hex; 64 zeros for an empty ledger)."}
	case "PostingResponse.result":
		return fieldDoc{enum: []string{ledger.CodeCreated, ledger.CodeReplayed}}
	case "PostingResponse.replayed":
		return fieldDoc{description: "true when the reference_id was already posted with the same content: entry is the original."}
	case "PostingResponse.entry":
		return fieldDoc{description: "The committed entry (for a replay, the original one). In a 201 its metadata echoes the " +
			"request's object; GET returns it as stored (jsonb: same content, keys possibly reordered)."}
	case "BatchResult.result":
		return fieldDoc{enum: resultCodes}
	case "BatchResult.index":
		return fieldDoc{description: "0-based position of the entry in the request."}
	case "BatchResponse.applied":
		return fieldDoc{description: "Whether the batch was committed. A non-atomic batch always is (with whatever entries " +
			"were accepted); an atomic batch is committed entirely or not at all."}
	case "BatchRequest.atomic":
		return fieldDoc{description: "true: all entries or none (any rejection answers 422 and writes nothing). " +
			"false (default): every acceptable entry is posted, each rejection is reported in its result."}
	case "AccountList.next_after":
		return fieldDoc{description: "Pass as ?after= for the next page; null on the last page."}
	case "EntryList.next_after_seq":
		return fieldDoc{description: "Pass as ?after_seq= for the next page; null on the last page."}
	case "ErrorBody.code":
		return fieldDoc{description: "Stable error code (docs/error-codes.md); see x-error-codes on each response."}
	case "ErrorBody.details":
		return fieldDoc{description: "A JSON object with specifics, e.g. {\"field\": \"amount\"}; {} when there are none."}
	}
	switch field {
	case "asset_type":
		return fieldDoc{enum: assetTypes}
	case "currency_code":
		return fieldDoc{description: "ISO 4217 code.", pattern: money.CurrencyCodePattern, example: "USD"}
	case "fx_rate":
		return fieldDoc{description: "Positive decimal string with at most 18 decimals.", pattern: decimalPattern}
	case "reference_id":
		return fieldDoc{description: "The caller's idempotency key, unique per ledger: 1-128 characters of NFC UTF-8; no leading or " +
			"trailing whitespace, no whitespace but the ASCII space, no control, invisible (zero-width, bidi, BOM, variation selectors), " +
			"separator, private-use or unassigned characters; not \".\", \"..\" or \"/\". Quotes, parentheses, %, ?, #, / and other " +
			"printable characters are allowed; percent-encode it in URLs. " +
			"Re-posting it with the same content answers replayed with the original entry; with different content, reference_conflict."}
	case "debit_account_id":
		return fieldDoc{description: "The account that pays (its balance goes down)."}
	case "credit_account_id":
		return fieldDoc{description: "The account that receives (its balance goes up)."}
	case "transaction_type":
		return fieldDoc{description: "1-64 characters without control characters, e.g. \"funding\", \"settlement\"."}
	}
	return fieldDoc{}
}
