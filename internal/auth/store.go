package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/ledger"
)

// DB is what the key store needs of a pool, a connection or a transaction.
type DB = ledger.DBTX

// ErrUnknownKey is returned for a key id that does not exist.
var ErrUnknownKey = errors.New("unknown API key")

const keyColumns = `id, name, token_hash, scopes, ledgers, bank_id, rate_limit::text, created_at, created_by, revoked_at, revoked_by, expires_at`

func scanKey(row pgx.Row) (Key, error) {
	var k Key
	var rate *string
	err := row.Scan(&k.ID, &k.Name, &k.hash, &k.Scopes, &k.Ledgers, &k.BankID, &rate, &k.CreatedAt, &k.CreatedBy, &k.RevokedAt, &k.RevokedBy, &k.ExpiresAt)
	if err != nil {
		return Key{}, err
	}
	if rate != nil {
		f, err := strconv.ParseFloat(*rate, 64)
		if err != nil {
			return Key{}, fmt.Errorf("key %s: rate limit %q: %w", k.ID, *rate, err)
		}
		k.RateLimit = &f
	}
	if k.Ledgers == nil {
		k.Ledgers = []string{}
	}
	k.CreatedAt = k.CreatedAt.UTC()
	if k.RevokedAt != nil {
		t := k.RevokedAt.UTC()
		k.RevokedAt = &t
	}
	if k.ExpiresAt != nil {
		t := k.ExpiresAt.UTC()
		k.ExpiresAt = &t
	}
	return k, nil
}

// Create makes a key for spec on behalf of actor (recorded in the operator log) and returns it
// with its token. The token is not stored and cannot be shown again.
func Create(ctx context.Context, db DB, actor string, spec Spec) (NewKey, error) {
	spec, err := spec.Validate()
	if err != nil {
		return NewKey{}, err
	}
	id, token, err := generate()
	if err != nil {
		return NewKey{}, err
	}
	ledgers := spec.Ledgers
	if ledgers == nil {
		ledgers = []string{}
	}
	var rate *string
	if spec.RateLimit != nil {
		s := strconv.FormatFloat(*spec.RateLimit, 'f', 3, 64)
		rate = &s
	}
	k, err := scanKey(db.QueryRow(ctx, `SELECT `+keyColumns+` FROM create_api_key($1, $2, $3, $4, $5, $6, $7, $8::numeric, $9)`,
		actor, id, spec.Name, hashToken(token), spec.Scopes, ledgers, spec.BankID, rate, spec.expires))
	if err != nil {
		return NewKey{}, fmt.Errorf("create API key: %w", err)
	}
	return NewKey{Key: k, Token: token}, nil
}

// Revoke revokes key id on behalf of actor, with a reason for the operator log. Revoking a
// revoked key changes nothing.
func Revoke(ctx context.Context, db DB, actor, id, reason string) (Key, error) {
	if !ValidID(id) {
		return Key{}, fmt.Errorf("%w %q (ids look like key_abcdefghijklmnop)", ErrUnknownKey, id)
	}
	k, err := scanKey(db.QueryRow(ctx, `SELECT `+keyColumns+` FROM revoke_api_key($1, $2, $3)`, actor, id, reason))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "DL014" {
		return Key{}, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	if err != nil {
		return Key{}, fmt.Errorf("revoke API key %s: %w", id, err)
	}
	return k, nil
}

// List returns every key (revoked ones too), oldest first.
func List(ctx context.Context, db DB) ([]Key, error) {
	rows, err := db.Query(ctx, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) { return scanKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list API keys: %w", err)
	}
	return keys, nil
}

// Get returns one key.
func Get(ctx context.Context, db DB, id string) (Key, error) {
	k, err := scanKey(db.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	if err != nil {
		return Key{}, fmt.Errorf("get API key %s: %w", id, err)
	}
	return k, nil
}

// fingerprint changes whenever a key is created or revoked (keys are never deleted, and a
// revocation is final), so the keyring reloads only then.
func fingerprint(ctx context.Context, db DB) (string, error) {
	var n, revoked int64
	var last *time.Time
	if err := db.QueryRow(ctx, `SELECT count(*), count(revoked_at), max(created_at) FROM api_keys`).Scan(&n, &revoked, &last); err != nil {
		return "", fmt.Errorf("check API keys: %w", err)
	}
	fp := fmt.Sprintf("%d/%d", n, revoked)
	if last != nil {
		fp += "/" + last.UTC().Format(time.RFC3339Nano)
	}
	return fp, nil
}
