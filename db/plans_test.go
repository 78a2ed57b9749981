package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"dualledger/internal/pg/pgtest"
)

// TestPostingPlansMadeOnAnEmptyTable: a session plans the posting function's statements on its
// first posting (generic plans), and in a new database that is when ledger_entries is empty. For
// an empty table every index that can serve `ledger_id = $1` costs the same one row, so the
// reference look-up (`ledger_id = $1 AND reference_id = $2`) could take any index led by
// ledger_id and filter by reference: migration 013's account indexes were led by it, and the
// planner took one of them. The session kept that plan until an ANALYZE of the table invalidated
// it, and each look-up read every entry of the ledger. Migration 015 leads the account indexes with
// the account id, which leaves the unique (ledger_id, reference_id) index as the plan.
//
// Here one session, with autovacuum off for the table (nothing else invalidates its plans), posts
// one entry on the empty table and then 5,000 more in batches of 100, all new references. A
// look-up by the unique index reads nothing for a new reference; the account-index plan read
// about n²/2 entries (12.5 million), and the chain trigger's look-up of the entry before a batch,
// planned the same way through the reference index, read the ledger's every entry per batch (n²/200).
// What a session may read is a few entries per posting statement.
func TestPostingPlansMadeOnAnEmptyTable(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	conn := d.Conn(t)
	for _, q := range []string{
		`ALTER TABLE ledger_entries SET (autovacuum_enabled = off)`,
		`INSERT INTO ledgers (id) VALUES ('GROW')`,
		`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
		 SELECT 'GROW', 'acct-' || g, 'USD', 'fiat', 0 FROM generate_series(1, 100) g
		 UNION ALL SELECT 'GROW', 'issuance', 'USD', 'fiat', NULL`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	post := func(refs ...string) {
		t.Helper()
		entries := make([]map[string]string, len(refs))
		for i, ref := range refs {
			entries[i] = map[string]string{"debit_account_id": "issuance", "credit_account_id": fmt.Sprintf("acct-%d", 1+i%100),
				"amount": "1.00", "currency_code": "USD", "asset_type": "fiat", "transaction_type": "transfer", "reference_id": ref}
		}
		body, err := json.Marshal(entries)
		if err != nil {
			t.Fatal(err)
		}
		var created int
		if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE result = 'created') FROM post_ledger_entries('GROW', $1::jsonb, false)`,
			string(body)).Scan(&created); err != nil {
			t.Fatal(err)
		}
		if created != len(refs) {
			t.Fatalf("%d of %d entries created", created, len(refs))
		}
	}
	post("first")
	const n, batch = 5000, 100
	for b := 0; b < n/batch; b++ {
		refs := make([]string, batch)
		for i := range refs {
			refs[i] = fmt.Sprintf("grow-%05d", b*batch+i)
		}
		post(refs...)
	}
	// The session's counts reach the shared statistics when it is next idle.
	if _, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		t.Fatal(err)
	}
	var read int64
	var byIndex string
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(idx_tup_read), 0),
			coalesce(string_agg(indexrelname || ' ' || idx_tup_read, ', ' ORDER BY indexrelname), '')
		FROM pg_stat_user_indexes WHERE relname = 'ledger_entries'`).Scan(&read, &byIndex); err != nil {
		t.Fatal(err)
	}
	t.Logf("entries read through the indexes of ledger_entries: %d (%s)", read, byIndex)
	// About one entry per posting statement: the predecessor of its first entry, by primary key.
	if limit := int64(4 * (n/batch + 1)); read > limit {
		t.Errorf("the session read %d entries through the indexes of ledger_entries while posting %d (%s): it kept plans made for an empty table",
			read, n, byIndex)
	}
}
