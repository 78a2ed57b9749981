package httpapi

import (
	"context"
	"sync"
	"time"

	"dualledger/internal/ledger"
)

// issuanceAccounts knows, per ledger, the accounts with an unlimited overdraft: debiting one
// creates money, which needs the issue scope (checkDebits). A look-up per posting cost the
// single-entry path about a third of its throughput (a pool connection and a round trip for each
// request; docs/benchmarks.md), so each ledger's set is read at most once per refresh interval
// (the keyring's, 500 ms by default) and shared by the requests meanwhile; a refresh is one
// index scan (bank_accounts_unlimited_idx, migration 022), as such accounts are few.
//
// The price is the keyring's: an account made unlimited (created so, or its limit changed) is
// known as such within the interval, as a revoked key is refused within it. Until then a key
// without issue can debit it as if it were limited: docs/security.md says so.
type issuanceAccounts struct {
	pool    ledger.DBTX
	refresh time.Duration
	mu      sync.Mutex
	ledgers map[string]*issuanceSet
}

type issuanceSet struct {
	mu  sync.Mutex // held while reading, so that concurrent requests share one read
	ids map[string]bool
	at  time.Time
}

func newIssuanceAccounts(pool ledger.DBTX, refresh time.Duration) *issuanceAccounts {
	return &issuanceAccounts{pool: pool, refresh: refresh, ledgers: map[string]*issuanceSet{}}
}

// of returns ledgerID's accounts with an unlimited overdraft, read at most refresh ago. The map
// is shared: callers only read it.
func (c *issuanceAccounts) of(ctx context.Context, ledgerID string) (map[string]bool, error) {
	c.mu.Lock()
	set := c.ledgers[ledgerID]
	if set == nil {
		set = &issuanceSet{}
		c.ledgers[ledgerID] = set
	}
	c.mu.Unlock()
	set.mu.Lock()
	defer set.mu.Unlock()
	if set.ids != nil && time.Since(set.at) < c.refresh {
		return set.ids, nil
	}
	at := time.Now()
	ids, err := ledger.UnlimitedAccounts(ctx, c.pool, ledgerID)
	if err != nil {
		return nil, err
	}
	set.ids, set.at = ids, at
	return ids, nil
}
