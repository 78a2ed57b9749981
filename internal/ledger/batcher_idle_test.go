package ledger

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"dualledger/internal/pg/pgtest"
)

// Idle ledger queues are released, and a posting racing the release is never lost: it lands in
// the old queue before it goes or in a new one.
func TestPosterReleasesIdleQueues(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	const ledgers = 20
	for i := range ledgers {
		id := fmt.Sprintf("IDLE-%d", i)
		if _, err := CreateLedger(ctx, d.Pool, "system:test", id); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Pool.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
			VALUES ($1, 'src', 'USD', 'fiat', NULL), ($1, 'dst', 'USD', 'fiat', 0)`, id); err != nil {
			t.Fatal(err)
		}
	}
	// Two flushers per ledger: each must stop once its queue is released.
	p := NewPoster(d.Pool, PosterConfig{IdleTimeout: 20 * time.Millisecond, Flushers: 2})
	defer p.Close()
	post := func(l, ref string) {
		res, err := p.Post(ctx, l, EntryInput{DebitAccountID: "src", CreditAccountID: "dst", Amount: "1", CurrencyCode: "USD",
			AssetType: "fiat", TransactionType: "t", ReferenceID: ref})
		if err != nil || res.Code != CodeCreated {
			t.Errorf("%s %s: %v %+v", l, ref, err, res)
		}
	}
	// Postings arrive in bursts with pauses around the idle timeout, so releases race them.
	var wg sync.WaitGroup
	for i := range ledgers {
		wg.Go(func() {
			for k := range 15 {
				post(fmt.Sprintf("IDLE-%d", i), fmt.Sprintf("r%d", k))
				time.Sleep(time.Duration(k%4) * 10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.RLock()
		n := len(p.queues)
		p.mu.RUnlock()
		// Every flusher of a released queue stops too (a ledger has several here).
		f := p.flushers.Load()
		if n == 0 && f == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle queues and %d flushers still held", n, f)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var count int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE ledger_id LIKE 'IDLE-%'`).Scan(&count); err != nil || count != ledgers*15 {
		t.Fatalf("%d entries, want %d (%v)", count, ledgers*15, err)
	}
	post("IDLE-0", "after-release")
}
