package scb_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// TestIdempotencyKeyFormat documents the SCB Idempotency-Key: "<ledger_id>:<reference_id>",
// the two joined by the first ':'. Reference ids may contain ':' (and most printable
// characters); ledger ids may not (migration 009, ledger.CreateLedger; the database test is
// e2e.TestLedgerIDWithColonRefused). So every key splits back at its first ':' into the one
// (ledger, reference) pair it was made from, and two different pairs never share a key.
func TestIdempotencyKeyFormat(t *testing.T) {
	pairs := [][2]string{
		{"MASTER", "stl-1"}, {"L", "X:1"}, {"LX", "1"}, {"L", "X"}, {"L", ":"}, {"L", "::"}, {"L", "a:b:c"},
		{"MASTER", "ref with spaces"}, {"MASTER", "ünïcödé ✓"}, {"M.A-S_T", "r/1?#%"},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		key := scb.Entry{LedgerID: p[0], ReferenceID: p[1]}.IdempotencyKey()
		if key != p[0]+":"+p[1] {
			t.Errorf("key of %q is %q", p, key)
		}
		l, r, _ := strings.Cut(key, ":")
		if l != p[0] || r != p[1] {
			t.Errorf("key %q splits into (%q, %q), not %q", key, l, r, p)
		}
		if other, ok := seen[key]; ok {
			t.Errorf("pairs %q and %q share key %q", p, other, key)
		}
		seen[key] = p
	}
	// What the ':'-free ledger ids prevent: with ledger "L:X" allowed, (L:X, 1) and (L, X:1)
	// would both be "L:X:1".
	a := scb.Entry{LedgerID: "L:X", ReferenceID: "1"}.IdempotencyKey()
	b := scb.Entry{LedgerID: "L", ReferenceID: "X:1"}.IdempotencyKey()
	if a != b {
		t.Fatalf("the collision this rule exists for is gone from the key itself (%q, %q): update this test", a, b)
	}
}

// TestIdempotencyKeyCollisionAtSCB: what a ledger id with ':' would do at an SCB. The SCB keeps
// one entry per key, so the second entry is refused as a different entry under the same key
// (409, permanent): it would never be delivered. ':'-free ledger ids make this impossible.
func TestIdempotencyKeyCollisionAtSCB(t *testing.T) {
	srv, err := sim.New(sim.Config{ID: "SCB-1", APIKey: "k-idem", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { _ = srv.Close() })
	c, err := scb.NewClient(scb.Config{ID: "SCB-1", BaseURL: ts.URL, APIKey: "k-idem", Timeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(ledgerID, ref string, id int64) scb.Entry {
		return scb.Entry{ReferenceID: ref, LedgerID: ledgerID, DebitAccountID: "a", CreditAccountID: "b", Amount: "1.00",
			CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", DBISEntryID: id, BlockHash: strings.Repeat("ab", 32),
			TimestampUTC: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	ctx := context.Background()
	if _, err := c.Post(ctx, entry("L:X", "1", 1)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Post(ctx, entry("L", "X:1", 2))
	var de *scb.DeliveryError
	if !errors.As(err, &de) || de.StatusCode != 409 || de.Class != scb.ClassConflict || de.Retryable {
		t.Fatalf("second entry under the same key: %v, want a permanent 409", err)
	}
	// With ':'-free ledger ids, entries of ledgers "L" and "LX" never share a key.
	if _, err := c.Post(ctx, entry("L", "X1", 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Post(ctx, entry("LX", "1", 4)); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]string{{"L", "X1"}, {"LX", "1"}} {
		got, err := c.GetInLedger(ctx, p[0], p[1])
		if err != nil || got.Entry.LedgerID != p[0] || got.Entry.ReferenceID != p[1] {
			t.Errorf("poll %q: %v %+v", p, err, got.Entry)
		}
	}
}
