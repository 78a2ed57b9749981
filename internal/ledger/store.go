package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/money"
)

// Id formats, one source for Go, auth, the OpenAPI document and the docs; the schema's CHECK
// constraints carry the same regular expressions (ids_schema_test.go compares them with
// pg_constraint). Ledger ids have no ':' (since migration 009, a second CHECK): the SCB
// Idempotency-Key is "<ledger_id>:<reference_id>", which must name one entry only.
const (
	BankIDPattern    = `^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`
	LedgerIDPattern  = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`
	AccountIDPattern = `^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$`
)

var (
	idPattern        = regexp.MustCompile(BankIDPattern)
	ledgerIDPattern  = regexp.MustCompile(LedgerIDPattern)
	accountIDPattern = regexp.MustCompile(AccountIDPattern)
)

// ValidLedgerID reports whether id is a well-formed ledger id.
func ValidLedgerID(id string) bool { return ledgerIDPattern.MatchString(id) }

// Administrative acts (creating ledgers, banks and accounts, changing accounts) name their actor:
// "key:<api key id>" through the API, "cli:<OS user>" from the command line, "system:<what>" for
// the program's own setup. The database records it, with the database role, in the operator log
// (operator_actions), in the transaction of the act.

// CreateLedger creates an empty ledger on behalf of actor.
func CreateLedger(ctx context.Context, db DBTX, actor, id string) (Ledger, error) {
	if !ledgerIDPattern.MatchString(id) {
		return Ledger{}, Errorf(CodeInvalidRequest, "ledger id %q is invalid: 1-64 characters, letters, digits and _ . - (starting with a letter or digit)", id).
			WithDetails(map[string]string{"field": "id"})
	}
	row := db.QueryRow(ctx, `SELECT id, head_seq, encode(head_hash, 'hex'), created_at FROM create_ledger($1, $2)`, actor, id)
	l, err := scanLedger(row)
	if err != nil {
		if CodeOf(FromDB(err)) == CodeLedgerExists {
			return Ledger{}, Errorf(CodeLedgerExists, "ledger %q already exists", id).WithDetails(map[string]string{"ledger_id": id})
		}
		return Ledger{}, FromDB(err)
	}
	return l, nil
}

// GetLedger returns one ledger with its chain head.
func GetLedger(ctx context.Context, db DBTX, id string) (Ledger, error) {
	l, err := scanLedger(db.QueryRow(ctx, `SELECT id, head_seq, encode(head_hash, 'hex'), created_at FROM ledgers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Ledger{}, Errorf(CodeUnknownLedger, "unknown ledger %q", id).WithDetails(map[string]string{"ledger_id": id})
	}
	if err != nil {
		return Ledger{}, FromDB(err)
	}
	return l, nil
}

// ListLedgers returns up to limit ledgers whose id sorts after `after`, by id; only those named in
// `only` when it is not empty.
func ListLedgers(ctx context.Context, db DBTX, after string, limit int, only []string) ([]Ledger, error) {
	rows, err := db.Query(ctx, `SELECT id, head_seq, encode(head_hash, 'hex'), created_at FROM ledgers
		WHERE id > $1 AND (coalesce(cardinality($3::text[]), 0) = 0 OR id = ANY($3)) ORDER BY id LIMIT $2`, after, limit, only)
	if err != nil {
		return nil, FromDB(err)
	}
	defer rows.Close()
	out := []Ledger{}
	for rows.Next() {
		l, err := scanLedger(rows)
		if err != nil {
			return nil, FromDB(err)
		}
		out = append(out, l)
	}
	return out, FromDB(rows.Err())
}

func scanLedger(row pgx.Row) (Ledger, error) {
	var l Ledger
	err := row.Scan(&l.ID, &l.HeadSeq, &l.HeadHash, &l.CreatedAt)
	l.CreatedAt = l.CreatedAt.UTC()
	return l, err
}

// CreateAccount creates an account with zero balances on behalf of actor.
func CreateAccount(ctx context.Context, db DBTX, actor, ledgerID string, in AccountInput) (Account, error) {
	field := func(f, format string, args ...any) error {
		return Errorf(CodeInvalidRequest, format, args...).WithDetails(map[string]string{"field": f})
	}
	if !accountIDPattern.MatchString(in.ID) {
		return Account{}, field("id", "account id %q is invalid: 1-128 characters, letters, digits and _ . : @ / - (starting with a letter or digit)", in.ID)
	}
	if in.CurrencyCode == "" {
		return Account{}, field("currency_code", "currency_code is required (an ISO 4217 code such as \"USD\")")
	}
	cur, err := money.CheckCurrency(in.CurrencyCode)
	if err != nil {
		return Account{}, Errorf(CodeUnknownCurrency, "%s", err.Error()).WithDetails(map[string]string{"field": "currency_code"})
	}
	asset, err := money.ParseAssetType(in.AssetType)
	if err != nil {
		return Account{}, Errorf(CodeInvalidAssetType, "%s", err.Error()).WithDetails(map[string]string{"field": "asset_type"})
	}
	if in.BankID != nil && !idPattern.MatchString(*in.BankID) {
		return Account{}, field("bank_id", "bank_id %q is invalid: 1-64 characters, letters, digits and _ . : -", *in.BankID)
	}
	limit, unlimited, err := ParseOverdraft(in.OverdraftLimit)
	if err != nil {
		return Account{}, err
	}
	if err := overdraftFits(limit, cur, asset); err != nil {
		return Account{}, err
	}
	meta := in.Metadata
	if len(meta) == 0 || string(meta) == "null" {
		meta = json.RawMessage(`{}`)
	} else if !isJSONObject(meta) {
		return Account{}, field("metadata", "metadata must be a JSON object")
	}
	row := db.QueryRow(ctx, `SELECT `+accountColumns+` FROM create_account($1, $2, $3, $4, $5, $6, $7::numeric, $8, $9::jsonb)`,
		actor, ledgerID, in.ID, in.CurrencyCode, in.AssetType, in.BankID, limit, unlimited, string(meta))
	a, err := scanAccount(row)
	if err != nil {
		e := FromDB(err)
		switch CodeOf(e) {
		case CodeAccountExists:
			return Account{}, Errorf(CodeAccountExists, "account %q already exists in ledger %q", in.ID, ledgerID).
				WithDetails(map[string]string{"ledger_id": ledgerID, "account_id": in.ID})
		case CodeUnknownLedger:
			return Account{}, Errorf(CodeUnknownLedger, "unknown ledger %q", ledgerID).WithDetails(map[string]string{"ledger_id": ledgerID})
		case CodeUnknownBank:
			return Account{}, Errorf(CodeUnknownBank, "bank %q is not registered: register it first (dualledger banks register, POST /v1/banks)", *in.BankID).
				WithDetails(map[string]string{"field": "bank_id", "bank_id": *in.BankID})
		}
		return Account{}, e
	}
	return a, nil
}

// ParseOverdraft reads an overdraft limit as a client states it: nil is 0, "unlimited" is no
// limit, anything else a non-negative decimal string. It returns the limit as decimal text (nil
// when unlimited).
func ParseOverdraft(v *string) (limit *string, unlimited bool, err error) {
	switch {
	case v == nil:
		zero := "0"
		return &zero, false, nil
	case *v == "unlimited":
		return nil, true, nil
	}
	a, perr := money.ParseAmount(*v)
	// A sign is refused even on zero ("-0"): a limit is never written with one.
	if perr != nil || a.IsNegative() || strings.HasPrefix(*v, "-") {
		return nil, false, Errorf(CodeInvalidRequest, `overdraft_limit must be a non-negative decimal string or "unlimited", got %q`, *v).
			WithDetails(map[string]string{"field": "overdraft_limit"})
	}
	s := a.String()
	return &s, false, nil
}

// overdraftFits refuses an overdraft limit (as ParseOverdraft returns it; nil: unlimited) with
// more decimals than an amount of the account may have: for fiat, the currency's minor unit
// (money.CheckMinorUnit, the postings' rule). The database stores any scale.
func overdraftFits(limit *string, cur money.Currency, asset money.AssetType) error {
	if limit == nil {
		return nil
	}
	a, err := money.ParseAmount(*limit)
	if err == nil {
		err = money.CheckMinorUnit("overdraft_limit", a, cur, asset)
	}
	if err != nil {
		return Errorf(CodeInvalidRequest, "%s", err.Error()).WithDetails(map[string]string{"field": "overdraft_limit"})
	}
	return nil
}

// GrantsCredit reports whether an overdraft limit as a client states it lets the account go below
// zero ("unlimited" or more than 0): only admin keys may open or set such a limit.
func GrantsCredit(v *string) bool {
	if v == nil {
		return false
	}
	if *v == "unlimited" {
		return true
	}
	a, err := money.ParseAmount(*v)
	return err != nil || a.Sign() != 0
}

// AccountUpdate changes an account's overdraft limit and/or status; Reason is required.
type AccountUpdate struct {
	OverdraftLimit *string `json:"overdraft_limit,omitempty"` // decimal string or "unlimited"; nil: unchanged
	Status         *string `json:"status,omitempty"`          // active, frozen, closed; nil: unchanged
	Reason         string  `json:"reason"`
}

// UpdateAccount applies u on behalf of actor. A posting racing the change is refused and retried
// by the posting module, so none moves money past the new rule.
func UpdateAccount(ctx context.Context, db DBTX, actor, ledgerID, id string, u AccountUpdate) (Account, error) {
	field := func(f, format string, args ...any) error {
		return Errorf(CodeInvalidRequest, format, args...).WithDetails(map[string]string{"field": f})
	}
	if strings.TrimSpace(u.Reason) == "" {
		return Account{}, field("reason", "reason is required: say why the account changes (it goes into the operator log)")
	}
	if len(u.Reason) > 1000 || strings.ContainsFunc(u.Reason, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Account{}, field("reason", "reason must be at most 1000 characters without control characters")
	}
	if u.OverdraftLimit == nil && u.Status == nil {
		return Account{}, field("overdraft_limit", "nothing to change: give overdraft_limit and/or status")
	}
	if u.Status != nil && *u.Status != "active" && *u.Status != "frozen" && *u.Status != "closed" {
		return Account{}, field("status", "status must be one of active, frozen, closed, got %q", *u.Status)
	}
	var limit *string
	var unlimited bool
	if u.OverdraftLimit != nil {
		var err error
		if limit, unlimited, err = ParseOverdraft(u.OverdraftLimit); err != nil {
			return Account{}, err
		}
		if limit != nil {
			// The limit's decimals depend on the account's currency and asset type, which never
			// change (guard trigger). An account that is not there is update_account's to report.
			var code, assetType string
			err := db.QueryRow(ctx, `SELECT currency_code, asset_type FROM bank_accounts WHERE ledger_id = $1 AND id = $2`,
				ledgerID, id).Scan(&code, &assetType)
			switch {
			case err == nil:
				cur, cerr := money.CheckCurrency(code)
				if cerr != nil {
					return Account{}, fmt.Errorf("account %s/%s: %w", ledgerID, id, cerr)
				}
				if err := overdraftFits(limit, cur, money.AssetType(assetType)); err != nil {
					return Account{}, err
				}
			case !errors.Is(err, pgx.ErrNoRows):
				return Account{}, FromDB(err)
			}
		}
	}
	a, err := scanAccount(db.QueryRow(ctx, `SELECT `+accountColumns+` FROM update_account($1, $2, $3, $4::numeric, $5, $6, $7, $8)`,
		actor, ledgerID, id, limit, unlimited, u.OverdraftLimit != nil, u.Status, u.Reason))
	if err != nil {
		e := FromDB(err)
		switch CodeOf(e) {
		case CodeUnknownAccount:
			return Account{}, Errorf(CodeUnknownAccount, "unknown account %q in ledger %q", id, ledgerID).
				WithDetails(map[string]string{"ledger_id": ledgerID, "account_id": id})
		case CodeUnknownLedger:
			return Account{}, Errorf(CodeUnknownLedger, "unknown ledger %q", ledgerID).WithDetails(map[string]string{"ledger_id": ledgerID})
		}
		return Account{}, e
	}
	return a, nil
}

// displayAmountPtr is displayAmount for an optional amount.
func displayAmountPtr(s *string, currency string) *string {
	if s == nil {
		return nil
	}
	d := displayAmount(*s, currency)
	return &d
}

// EntriesCreditingBank returns which of the entries ids of a ledger paid into an account of bankID
// (their credit account is the bank's): the only entries a member bank may reverse, since a
// reversal moves the money back out of the account it went into.
func EntriesCreditingBank(ctx context.Context, db DBTX, ledgerID string, ids []int64, bankID string) (map[int64]bool, error) {
	rows, err := db.Query(ctx, `SELECT e.id FROM ledger_entries e
		  JOIN bank_accounts a ON a.ledger_id = e.ledger_id AND a.id = e.credit_account_id
		 WHERE e.ledger_id = $1 AND e.id = ANY($2) AND a.bank_id = $3`, ledgerID, ids, bankID)
	if err != nil {
		return nil, FromDB(err)
	}
	out := make(map[int64]bool, len(ids))
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { out[id] = true; return nil }); err != nil {
		return nil, FromDB(err)
	}
	return out, nil
}

// AccountBanks returns the member bank of each of the named accounts of a ledger that exist
// ("" for an account of no bank); accounts that do not exist are absent from the map.
func AccountBanks(ctx context.Context, db DBTX, ledgerID string, ids []string) (map[string]string, error) {
	rows, err := db.Query(ctx, `SELECT id, coalesce(bank_id, '') FROM bank_accounts WHERE ledger_id = $1 AND id = ANY($2)`, ledgerID, ids)
	if err != nil {
		return nil, FromDB(err)
	}
	out := make(map[string]string, len(ids))
	var id, bank string
	_, err = pgx.ForEachRow(rows, []any{&id, &bank}, func() error {
		out[id] = bank
		return nil
	})
	if err != nil {
		return nil, FromDB(err)
	}
	return out, nil
}

// UnlimitedAccounts returns the ids of ledgerID's accounts with an unlimited overdraft
// (issuance accounts): few, found by a partial index (migration 022).
func UnlimitedAccounts(ctx context.Context, db DBTX, ledgerID string) (map[string]bool, error) {
	rows, err := db.Query(ctx, `SELECT id FROM bank_accounts WHERE ledger_id = $1 AND overdraft_limit IS NULL`, ledgerID)
	if err != nil {
		return nil, FromDB(err)
	}
	out := map[string]bool{}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		out[id] = true
		return nil
	}); err != nil {
		return nil, FromDB(err)
	}
	return out, nil
}

const accountColumns = `ledger_id, id, bank_id, currency_code, asset_type, balance::text, available_balance::text,
	reserved_balance::text, coalesce(overdraft_limit::text, 'unlimited'), status, metadata, created_at, updated_at`

// GetAccount returns one account with its balances.
func GetAccount(ctx context.Context, db DBTX, ledgerID, id string) (Account, error) {
	a, err := scanAccount(db.QueryRow(ctx, `SELECT `+accountColumns+` FROM bank_accounts WHERE ledger_id = $1 AND id = $2`, ledgerID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, lerr := GetLedger(ctx, db, ledgerID); lerr != nil {
			return Account{}, lerr
		}
		return Account{}, Errorf(CodeUnknownAccount, "unknown account %q in ledger %q", id, ledgerID).
			WithDetails(map[string]string{"ledger_id": ledgerID, "account_id": id})
	}
	if err != nil {
		return Account{}, FromDB(err)
	}
	return a, nil
}

// ListAccounts returns a ledger's accounts by id, at most limit after the id `after`; with bankID
// only the accounts of that member bank.
func ListAccounts(ctx context.Context, db DBTX, ledgerID, after string, limit int, bankID string) ([]Account, error) {
	if _, err := GetLedger(ctx, db, ledgerID); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT `+accountColumns+` FROM bank_accounts
		WHERE ledger_id = $1 AND id > $2 AND ($4 = '' OR bank_id = $4) ORDER BY id LIMIT $3`, ledgerID, after, limit, bankID)
	if err != nil {
		return nil, FromDB(err)
	}
	defer rows.Close()
	out := []Account{}
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, FromDB(err)
		}
		out = append(out, a)
	}
	return out, FromDB(rows.Err())
}

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	var meta []byte
	err := row.Scan(&a.LedgerID, &a.ID, &a.BankID, &a.CurrencyCode, &a.AssetType, &a.Balance, &a.AvailableBalance,
		&a.ReservedBalance, &a.OverdraftLimit, &a.Status, &meta, &a.CreatedAt, &a.UpdatedAt)
	a.Balance = displayAmount(a.Balance, a.CurrencyCode)
	a.AvailableBalance = displayAmount(a.AvailableBalance, a.CurrencyCode)
	a.ReservedBalance = displayAmount(a.ReservedBalance, a.CurrencyCode)
	if a.OverdraftLimit != "unlimited" {
		a.OverdraftLimit = displayAmount(a.OverdraftLimit, a.CurrencyCode)
	}
	a.Metadata = meta
	a.CreatedAt = a.CreatedAt.UTC()
	a.UpdatedAt = a.UpdatedAt.UTC()
	return a, err
}

const entryColumns = `id, ledger_id, seq, debit_account_id, credit_account_id, amount::text, currency_code, asset_type,
	transaction_type, reference_id, fx_rate::text, metadata, timestamp_utc, recorded_at, encode(previous_hash, 'hex'),
	encode(block_hash, 'hex'), reverses_entry_id, debit_balance_after::text, credit_balance_after::text`

// GetEntryByReference returns the entry with reference_id in a ledger.
func GetEntryByReference(ctx context.Context, db DBTX, ledgerID, ref string) (Entry, error) {
	e, err := scanEntry(db.QueryRow(ctx, `SELECT `+entryColumns+` FROM ledger_entries WHERE ledger_id = $1 AND reference_id = $2`, ledgerID, ref))
	if errors.Is(err, pgx.ErrNoRows) {
		if _, lerr := GetLedger(ctx, db, ledgerID); lerr != nil {
			return Entry{}, lerr
		}
		return Entry{}, Errorf(CodeNotFound, "no entry with reference_id %q in ledger %q", ref, ledgerID).
			WithDetails(map[string]string{"ledger_id": ledgerID, "reference_id": ref})
	}
	if err != nil {
		return Entry{}, FromDB(err)
	}
	return e, nil
}

// ListEntries returns up to limit entries of a ledger with seq > afterSeq, in seq order.
func ListEntries(ctx context.Context, db DBTX, ledgerID string, afterSeq int64, limit int) ([]Entry, error) {
	if _, err := GetLedger(ctx, db, ledgerID); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE ledger_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, ledgerID, afterSeq, limit)
	if err != nil {
		return nil, FromDB(err)
	}
	return collectEntries(rows)
}

// BankScanWindow is how many seqs one page of a member bank's entries looks at by default: the
// bank's entries may be rare in a busy ledger, and a page must not scan the whole ledger to find
// them.
const BankScanWindow = 20000

// ListBankEntries returns up to limit entries of a ledger with seq > afterSeq that touch an
// account of bankID, looking at no more than window seqs. scannedTo is the last seq it
// looked at: when fewer than limit entries came back and scannedTo is below the ledger's head,
// the next page starts after scannedTo.
func ListBankEntries(ctx context.Context, db DBTX, ledgerID, bankID string, afterSeq int64, limit int, window int64) (entries []Entry, scannedTo, head int64, err error) {
	l, err := GetLedger(ctx, db, ledgerID)
	if err != nil {
		return nil, 0, 0, err
	}
	// afterSeq is the client's cursor (up to the largest int64): the window's end saturates
	// instead of wrapping to a negative seq.
	end := afterSeq + max(window, 1)
	if end < afterSeq {
		end = math.MaxInt64
	}
	scannedTo = min(l.HeadSeq, end)
	rows, err := db.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries e
		WHERE ledger_id = $1 AND seq > $2 AND seq <= $5
		  AND EXISTS (SELECT 1 FROM bank_accounts a WHERE a.ledger_id = $1 AND a.bank_id = $4
		                 AND a.id IN (e.debit_account_id, e.credit_account_id))
		ORDER BY seq LIMIT $3`, ledgerID, afterSeq, limit, bankID, scannedTo)
	if err != nil {
		return nil, 0, 0, FromDB(err)
	}
	entries, err = collectEntries(rows)
	return entries, scannedTo, l.HeadSeq, err
}

func collectEntries(rows pgx.Rows) ([]Entry, error) {
	defer rows.Close()
	out := []Entry{}
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, FromDB(err)
		}
		out = append(out, e)
	}
	return out, FromDB(rows.Err())
}

func scanEntry(row pgx.Row) (Entry, error) {
	var e Entry
	var meta []byte
	err := row.Scan(&e.ID, &e.LedgerID, &e.Seq, &e.DebitAccountID, &e.CreditAccountID, &e.Amount, &e.CurrencyCode,
		&e.AssetType, &e.TransactionType, &e.ReferenceID, &e.FxRate, &meta, &e.TimestampUTC, &e.RecordedAt,
		&e.PreviousHash, &e.BlockHash, &e.ReversesEntryID, &e.DebitBalanceAfter, &e.CreditBalanceAfter)
	e.Amount = displayAmount(e.Amount, e.CurrencyCode)
	if e.FxRate != nil {
		s := trimDecimal(*e.FxRate)
		e.FxRate = &s
	}
	e.Metadata = meta
	e.TimestampUTC = e.TimestampUTC.UTC()
	e.RecordedAt = e.RecordedAt.UTC()
	e.DebitBalanceAfter = displayAmountPtr(e.DebitBalanceAfter, e.CurrencyCode)
	e.CreditBalanceAfter = displayAmountPtr(e.CreditBalanceAfter, e.CurrencyCode)
	return e, err
}

// RegisterBank registers a member bank (SCB) whose ledger we mirror, on behalf of actor.
func RegisterBank(ctx context.Context, db DBTX, actor, id, name string) (Bank, error) {
	if !idPattern.MatchString(id) {
		return Bank{}, Errorf(CodeInvalidRequest, "bank id %q is invalid: 1-64 characters, letters, digits and _ . : - (starting with a letter or digit)", id).
			WithDetails(map[string]string{"field": "id"})
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Bank{}, Errorf(CodeInvalidRequest, "bank name is required (1-200 characters)").WithDetails(map[string]string{"field": "name"})
	}
	// A name is shown in listings, logs and terminals: no control characters (a newline or an
	// escape sequence would forge lines there).
	if !utf8.ValidString(name) || strings.ContainsFunc(name, UnsafeRune) {
		return Bank{}, Errorf(CodeInvalidRequest, "bank name %q must be UTF-8 text without control characters, line separators or bidirectional overrides", name).
			WithDetails(map[string]string{"field": "name"})
	}
	var b Bank
	err := db.QueryRow(ctx, `SELECT id, name, created_at FROM register_bank($1, $2, $3)`, actor, id, name).
		Scan(&b.ID, &b.Name, &b.CreatedAt)
	if err != nil {
		if CodeOf(FromDB(err)) == CodeBankExists {
			return Bank{}, Errorf(CodeBankExists, "bank %q is already registered", id).WithDetails(map[string]string{"bank_id": id})
		}
		return Bank{}, FromDB(err)
	}
	b.CreatedAt = b.CreatedAt.UTC()
	return b, nil
}

// UnsafeRune reports whether r would forge or disguise lines where a name is shown: a control
// character (C0, DEL, C1), a line or paragraph separator (U+2028, U+2029), or a bidirectional
// embedding, override or isolate (U+202A-U+202E, U+2066-U+2069), which reorders what follows it
// ("Trojan Source"). Other format characters (ZWNJ, used in Persian names) pass.
func UnsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) ||
		(r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// ListBanks returns up to limit registered banks whose id sorts after `after`, by id; only bank
// `only` when it is not "".
func ListBanks(ctx context.Context, db DBTX, after string, limit int, only string) ([]Bank, error) {
	rows, err := db.Query(ctx, `SELECT id, name, created_at FROM banks WHERE id > $1 AND ($3 = '' OR id = $3) ORDER BY id LIMIT $2`,
		after, limit, only)
	if err != nil {
		return nil, FromDB(err)
	}
	defer rows.Close()
	out := []Bank{}
	for rows.Next() {
		var b Bank
		if err := rows.Scan(&b.ID, &b.Name, &b.CreatedAt); err != nil {
			return nil, FromDB(err)
		}
		b.CreatedAt = b.CreatedAt.UTC()
		out = append(out, b)
	}
	return out, FromDB(rows.Err())
}

func isJSONObject(b json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

// EntryFromResult combines a posting's input with its result into the committed entry.
func EntryFromResult(ledgerID string, in EntryInput, r Result) (Entry, error) {
	if !r.OK() {
		return Entry{}, fmt.Errorf("result %s has no entry", r.Code)
	}
	meta := r.Metadata
	if len(meta) == 0 {
		meta = in.Metadata
	}
	if len(meta) == 0 || string(meta) == "null" {
		meta = json.RawMessage(`{}`)
	}
	var fx *string
	if in.FxRate != nil {
		if a, err := money.ParseAmount(*in.FxRate); err == nil {
			s := a.String()
			fx = &s
		}
	}
	amount := in.Amount
	if a, err := money.ParseAmount(in.Amount); err == nil {
		amount = displayAmount(a.String(), in.CurrencyCode)
	}
	return Entry{
		ID: r.EntryID, LedgerID: ledgerID, Seq: r.Seq,
		DebitAccountID: in.DebitAccountID, CreditAccountID: in.CreditAccountID,
		Amount: amount, CurrencyCode: in.CurrencyCode, AssetType: in.AssetType,
		TransactionType: in.TransactionType, ReferenceID: in.ReferenceID, FxRate: fx, Metadata: meta,
		TimestampUTC: r.TimestampUTC, RecordedAt: r.RecordedAt, PreviousHash: r.PreviousHash, BlockHash: r.BlockHash,
		ReversesEntryID: in.ReversesEntryID, DebitBalanceAfter: &r.DebitBalance, CreditBalanceAfter: &r.CreditBalance,
	}, nil
}
