package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"dualledger/internal/ledger"
)

// Scopes a key can grant (docs/security.md, "Scopes").
const (
	ScopeRead     = "read"     // GET of ledgers, accounts, entries, settlements, banks
	ScopePost     = "post"     // post entries and batches
	ScopeIssue    = "issue"    // debit an account with an unlimited overdraft (issuance): create money
	ScopeSettle   = "settle"   // POST /v1/settlements
	ScopeAccounts = "accounts" // create accounts, change their status
	ScopeBanks    = "banks"    // register banks
	ScopeAdmin    = "admin"    // everything, including keys, overdraft limits and the operator log
)

// Scopes lists every scope, in the order the docs show them.
var Scopes = []string{ScopeRead, ScopePost, ScopeIssue, ScopeSettle, ScopeAccounts, ScopeBanks, ScopeAdmin}

// Token format: "dl_" + the key id's 16 base32 characters + "_" + 43 characters of base64url
// (32 random bytes). The id part lets the server find the key without comparing secrets; the
// whole token is hashed and compared in constant time.
const (
	tokenPrefix = "dl_"
	idPrefix    = "key_"
	idChars     = 16
	secretBytes = 32
	tokenLen    = len(tokenPrefix) + idChars + 1 + 43
)

// IDPattern is the format of an API key id ("key_" and 16 base32 characters), the same regular
// expression as the api_keys_id_format CHECK constraint (internal/ledger/ids_schema_test.go
// compares them).
const IDPattern = `^key_[a-z2-7]{16}$`

var (
	idEncoding  = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	idPattern   = regexp.MustCompile(IDPattern)
	namePattern = regexp.MustCompile(`^[^\x00-\x1f\x7f]{1,100}$`)
)

// Key is an API key as stored (never with its token).
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	Ledgers   []string   `json:"ledgers"`    // empty: every ledger
	BankID    *string    `json:"bank_id"`    // a member bank's key
	RateLimit *float64   `json:"rate_limit"` // requests per second; nil: none
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at"`
	RevokedBy *string    `json:"revoked_by"`
	ExpiresAt *time.Time `json:"expires_at"` // from then on the key is refused; nil: never

	hash []byte // sha256 of the token
}

// Expired reports whether the key has expired at now.
func (k *Key) Expired(now time.Time) bool { return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) }

// NewKey is a key as created: the stored key and its token, which is shown once.
type NewKey struct {
	Key
	Token string `json:"token"`
}

// Spec is what `keys create` (or POST /v1/keys) asks for.
type Spec struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Ledgers   []string `json:"ledgers,omitempty"`
	BankID    *string  `json:"bank_id,omitempty"`
	RateLimit *float64 `json:"rate_limit,omitempty"`
	// ExpiresAt is when the key stops working, an RFC 3339 time in the future ("" or absent:
	// never). It is text here so that a malformed time is answered with its field.
	ExpiresAt *string `json:"expires_at,omitempty"`

	expires *time.Time // ExpiresAt parsed, set by Validate
}

// MaxKeyLifetime bounds expires_at: a key meant to live longer does not need an expiry.
const MaxKeyLifetime = 10 * 366 * 24 * time.Hour

// SpecError is a Spec that cannot become a key; Field names the offending field.
type SpecError struct {
	Field   string
	Message string
}

func (e *SpecError) Error() string { return e.Message }

var ledgerIDPattern = regexp.MustCompile(ledger.LedgerIDPattern)
var bankIDPattern = regexp.MustCompile(ledger.BankIDPattern)

// Validate checks a Spec and returns it normalised (scopes deduplicated in canonical order,
// ledgers sorted). An admin key cannot be limited to ledgers or a bank: admin may create keys,
// so a limited admin could give itself an unlimited key.
func (s Spec) Validate() (Spec, error) {
	if !namePattern.MatchString(s.Name) || strings.TrimSpace(s.Name) != s.Name {
		return s, &SpecError{"name", fmt.Sprintf("key name %q is invalid: 1-100 characters, no control characters, no leading or trailing space", s.Name)}
	}
	if len(s.Scopes) == 0 {
		return s, &SpecError{"scopes", "at least one scope is required (" + strings.Join(Scopes, ", ") + ")"}
	}
	var scopes []string
	for _, sc := range Scopes {
		if slices.Contains(s.Scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	for _, sc := range s.Scopes {
		if !slices.Contains(Scopes, sc) {
			return s, &SpecError{"scopes", fmt.Sprintf("unknown scope %q (the scopes are: %s)", sc, strings.Join(Scopes, ", "))}
		}
	}
	s.Scopes = scopes
	if len(s.Ledgers) > 100 {
		return s, &SpecError{"ledgers", "a key may name at most 100 ledgers"}
	}
	ledgers := slices.Clone(s.Ledgers)
	for _, l := range ledgers {
		if !ledgerIDPattern.MatchString(l) {
			return s, &SpecError{"ledgers", fmt.Sprintf("ledger id %q is invalid", l)}
		}
	}
	slices.Sort(ledgers)
	s.Ledgers = slices.Compact(ledgers)
	if s.BankID != nil && !bankIDPattern.MatchString(*s.BankID) {
		return s, &SpecError{"bank_id", fmt.Sprintf("bank id %q is invalid", *s.BankID)}
	}
	if slices.Contains(s.Scopes, ScopeAdmin) && (len(s.Ledgers) > 0 || s.BankID != nil) {
		return s, &SpecError{"scopes", "an admin key cannot be limited to ledgers or a bank (admin may create keys); give the limited key the scopes it needs instead"}
	}
	if s.BankID != nil && slices.Contains(s.Scopes, ScopeBanks) {
		return s, &SpecError{"scopes", "a member bank's key cannot register banks"}
	}
	if s.BankID != nil && slices.Contains(s.Scopes, ScopeIssue) {
		return s, &SpecError{"scopes", "a member bank's key cannot issue money (debit an account with an unlimited overdraft)"}
	}
	// The column keeps three decimals (numeric(12,3)): a finer rate would be rounded, below
	// 0.001 to 0, which its CHECK refuses with the constraint's name.
	if s.RateLimit != nil && (*s.RateLimit < 0.001 || *s.RateLimit > 1e6 || math.Abs(*s.RateLimit*1000-math.Round(*s.RateLimit*1000)) > 1e-6) {
		return s, &SpecError{"rate_limit", "rate_limit must be from 0.001 to 1000000 requests per second, with at most 3 decimals"}
	}
	s.expires = nil
	if s.ExpiresAt != nil {
		t, err := parseExpiry(*s.ExpiresAt)
		if err != nil {
			return s, &SpecError{"expires_at", err.Error()}
		}
		now := time.Now()
		if !t.After(now) || t.Sub(now) > MaxKeyLifetime {
			return s, &SpecError{"expires_at", fmt.Sprintf("expires_at must be in the future and at most %d days ahead, got %s",
				MaxKeyLifetime/(24*time.Hour), t.UTC().Format(time.RFC3339Nano))}
		}
		t = t.UTC()
		s.expires = &t
	}
	return s, nil
}

// expiryPattern is RFC 3339 as the ledger takes it elsewhere (timestamp_utc, a hold's
// expires_at): an offset of at most 23:59 and at most 6 decimals of a second, which the database
// keeps (a seventh would be rounded away unseen).
var expiryPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

func parseExpiry(v string) (time.Time, error) {
	bad := fmt.Errorf("expires_at must be an RFC 3339 time with its offset and at most 6 decimals of a second, such as 2027-03-01T00:00:00Z, got %q (omit it for a key that does not expire)", clip(v))
	if !expiryPattern.MatchString(v) {
		return time.Time{}, bad
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, bad
	}
	return t, nil
}

// clip shortens what an error message repeats of the input.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// generate makes a new key id and token.
func generate() (id, token string, err error) {
	var idb [10]byte // 80 bits = 16 base32 characters
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", fmt.Errorf("generate key id: %w", err)
	}
	var secret [secretBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", fmt.Errorf("generate key secret: %w", err)
	}
	idPart := idEncoding.EncodeToString(idb[:])
	return idPrefix + idPart, tokenPrefix + idPart + "_" + base64.RawURLEncoding.EncodeToString(secret[:]), nil
}

// hashToken is what is stored and compared.
func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// keyIDOf returns the id a well-formed token claims, or "".
func keyIDOf(token string) string {
	if len(token) != tokenLen || !strings.HasPrefix(token, tokenPrefix) || token[len(tokenPrefix)+idChars] != '_' {
		return ""
	}
	id := idPrefix + token[len(tokenPrefix):len(tokenPrefix)+idChars]
	if !idPattern.MatchString(id) {
		return ""
	}
	return id
}

// ValidID reports whether id has the form of a key id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Has reports whether the key grants scope (admin grants every scope).
func (k *Key) Has(scope string) bool {
	return slices.Contains(k.Scopes, ScopeAdmin) || slices.Contains(k.Scopes, scope)
}

// IsAdmin reports whether the key has the admin scope.
func (k *Key) IsAdmin() bool { return slices.Contains(k.Scopes, ScopeAdmin) }

// AllowsLedger reports whether the key may touch ledger id.
func (k *Key) AllowsLedger(id string) bool {
	return len(k.Ledgers) == 0 || slices.Contains(k.Ledgers, id)
}

// Bank is the member bank the key belongs to, or "" for an operator's key.
func (k *Key) Bank() string {
	if k.BankID == nil {
		return ""
	}
	return *k.BankID
}

// Actor is how the operator log names the key's acts.
func (k *Key) Actor() string { return "key:" + k.ID }
