package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/money"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)
var accountIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$`)

// CreateLedger creates an empty ledger.
func CreateLedger(ctx context.Context, db *pgxpool.Pool, id string) (Ledger, error) {
	if !idPattern.MatchString(id) {
		return Ledger{}, Errorf(CodeInvalidRequest, "ledger id %q is invalid: 1-64 characters, letters, digits and _ . : - (starting with a letter or digit)", id).
			WithDetails(map[string]string{"field": "id"})
	}
	row := db.QueryRow(ctx, `INSERT INTO ledgers (id) VALUES ($1)
		RETURNING id, head_seq, encode(head_hash, 'hex'), created_at`, id)
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
func GetLedger(ctx context.Context, db *pgxpool.Pool, id string) (Ledger, error) {
	l, err := scanLedger(db.QueryRow(ctx, `SELECT id, head_seq, encode(head_hash, 'hex'), created_at FROM ledgers WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Ledger{}, Errorf(CodeUnknownLedger, "unknown ledger %q", id).WithDetails(map[string]string{"ledger_id": id})
	}
	if err != nil {
		return Ledger{}, FromDB(err)
	}
	return l, nil
}

// ListLedgers returns all ledgers by id.
func ListLedgers(ctx context.Context, db *pgxpool.Pool) ([]Ledger, error) {
	rows, err := db.Query(ctx, `SELECT id, head_seq, encode(head_hash, 'hex'), created_at FROM ledgers ORDER BY id`)
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

// CreateAccount creates an account with zero balances.
func CreateAccount(ctx context.Context, db *pgxpool.Pool, ledgerID string, in AccountInput) (Account, error) {
	field := func(f, format string, args ...any) error {
		return Errorf(CodeInvalidRequest, format, args...).WithDetails(map[string]string{"field": f})
	}
	if !accountIDPattern.MatchString(in.ID) {
		return Account{}, field("id", "account id %q is invalid: 1-128 characters, letters, digits and _ . : @ / - (starting with a letter or digit)", in.ID)
	}
	if in.CurrencyCode == "" {
		return Account{}, field("currency_code", "currency_code is required (an ISO 4217 code such as \"USD\")")
	}
	if _, err := money.CheckCurrency(in.CurrencyCode); err != nil {
		return Account{}, Errorf(CodeUnknownCurrency, "%s", err.Error()).WithDetails(map[string]string{"field": "currency_code"})
	}
	if _, err := money.ParseAssetType(in.AssetType); err != nil {
		return Account{}, Errorf(CodeInvalidAssetType, "%s", err.Error()).WithDetails(map[string]string{"field": "asset_type"})
	}
	if in.BankID != nil && !idPattern.MatchString(*in.BankID) {
		return Account{}, field("bank_id", "bank_id %q is invalid: 1-64 characters, letters, digits and _ . : -", *in.BankID)
	}
	var limit *string
	switch {
	case in.OverdraftLimit == nil:
		zero := "0"
		limit = &zero
	case *in.OverdraftLimit == "unlimited":
		limit = nil
	default:
		a, err := money.ParseAmount(*in.OverdraftLimit)
		if err != nil || a.IsNegative() {
			return Account{}, field("overdraft_limit", `overdraft_limit must be a non-negative decimal string or "unlimited", got %q`, *in.OverdraftLimit)
		}
		s := a.String()
		limit = &s
	}
	meta := in.Metadata
	if len(meta) == 0 || string(meta) == "null" {
		meta = json.RawMessage(`{}`)
	} else if !isJSONObject(meta) {
		return Account{}, field("metadata", "metadata must be a JSON object")
	}
	row := db.QueryRow(ctx, `INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit, metadata)
		VALUES ($1, $2, $3, $4, $5, $6::numeric, $7::jsonb)
		RETURNING `+accountColumns, ledgerID, in.ID, in.BankID, in.CurrencyCode, in.AssetType, limit, string(meta))
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

const accountColumns = `ledger_id, id, bank_id, currency_code, asset_type, balance::text, available_balance::text,
	reserved_balance::text, coalesce(overdraft_limit::text, 'unlimited'), status, metadata, created_at, updated_at`

// GetAccount returns one account with its balances.
func GetAccount(ctx context.Context, db *pgxpool.Pool, ledgerID, id string) (Account, error) {
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

// ListAccounts returns a ledger's accounts by id, at most limit after the id `after`.
func ListAccounts(ctx context.Context, db *pgxpool.Pool, ledgerID, after string, limit int) ([]Account, error) {
	if _, err := GetLedger(ctx, db, ledgerID); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT `+accountColumns+` FROM bank_accounts
		WHERE ledger_id = $1 AND id > $2 ORDER BY id LIMIT $3`, ledgerID, after, limit)
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
func GetEntryByReference(ctx context.Context, db *pgxpool.Pool, ledgerID, ref string) (Entry, error) {
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
func ListEntries(ctx context.Context, db *pgxpool.Pool, ledgerID string, afterSeq int64, limit int) ([]Entry, error) {
	if _, err := GetLedger(ctx, db, ledgerID); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE ledger_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, ledgerID, afterSeq, limit)
	if err != nil {
		return nil, FromDB(err)
	}
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
	e.DebitBalanceAfter = displayAmount(e.DebitBalanceAfter, e.CurrencyCode)
	e.CreditBalanceAfter = displayAmount(e.CreditBalanceAfter, e.CurrencyCode)
	return e, err
}

// RegisterBank registers a member bank (SCB) whose ledger we mirror.
func RegisterBank(ctx context.Context, db *pgxpool.Pool, id, name string) (Bank, error) {
	if !idPattern.MatchString(id) {
		return Bank{}, Errorf(CodeInvalidRequest, "bank id %q is invalid: 1-64 characters, letters, digits and _ . : - (starting with a letter or digit)", id).
			WithDetails(map[string]string{"field": "id"})
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Bank{}, Errorf(CodeInvalidRequest, "bank name is required (1-200 characters)").WithDetails(map[string]string{"field": "name"})
	}
	var b Bank
	err := db.QueryRow(ctx, `INSERT INTO banks (id, name) VALUES ($1, $2) RETURNING id, name, created_at`, id, name).
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

// ListBanks returns the registered banks by id.
func ListBanks(ctx context.Context, db *pgxpool.Pool) ([]Bank, error) {
	rows, err := db.Query(ctx, `SELECT id, name, created_at FROM banks ORDER BY id`)
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
		ReversesEntryID: in.ReversesEntryID, DebitBalanceAfter: r.DebitBalance, CreditBalanceAfter: r.CreditBalance,
	}, nil
}
