package integrity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// accounts every test ledger has: an unlimited USD issuance account, four USD accounts without
// overdraft, and an unlimited gold (XAU, 18 decimals) vault with one gold account.
func createLedger(t testing.TB, pool *pgxpool.Pool, id string) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO ledgers (id) VALUES ($1)`,
		`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
		 VALUES ($1, 'issuance', 'USD', 'fiat', NULL), ($1, 'vault:gold', 'XAU', 'commodity', NULL),
		        ($1, 'a0', 'USD', 'fiat', 0), ($1, 'a1', 'USD', 'fiat', 0), ($1, 'a2', 'USD', 'fiat', 0),
		        ($1, 'a3', 'USD', 'fiat', 0), ($1, 'SCB-2/gold@reserve', 'XAU', 'commodity', 0)`,
	} {
		if _, err := pool.Exec(ctx, q, id); err != nil {
			t.Fatalf("create ledger %s: %v", id, err)
		}
	}
}

// entry is one element of post_ledger_entries' JSON batch.
type entry map[string]any

// genEntries returns n postings numbered from `from`: mostly issuance -> a<k>, every fifth a
// transfer between two funded accounts, with metadata whose keys arrive in varying order.
func genEntries(from, n int) []entry {
	out := make([]entry, 0, n)
	for i := from; i < from+n; i++ {
		e := entry{
			"debit_account_id": "issuance", "credit_account_id": fmt.Sprintf("a%d", i%4),
			"amount": fmt.Sprintf("%d.%02d", 10+i%7, i%100), "currency_code": "USD", "asset_type": "fiat",
			"transaction_type": "funding", "reference_id": fmt.Sprintf("ref-%d", i),
			"metadata": json.RawMessage(fmt.Sprintf(`{"z": %d, "memo": "entry %d", "a": [%d]}`, i, i, i%3)),
		}
		if i%5 == 4 {
			e["debit_account_id"] = fmt.Sprintf("a%d", i%4)
			e["credit_account_id"] = fmt.Sprintf("a%d", (i+1)%4)
			e["amount"] = "1.01"
			e["transaction_type"] = "transfer"
		}
		out = append(out, e)
	}
	return out
}

// post posts entries (in batches of at most 10000) and fails unless every one is created.
func post(t testing.TB, pool *pgxpool.Pool, ledgerID string, entries []entry) []postResult {
	t.Helper()
	var all []postResult
	for len(entries) > 0 {
		n := min(len(entries), 10000)
		body, err := json.Marshal(entries[:n])
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pool.Query(context.Background(),
			`SELECT result, coalesce(message, ''), entry_id, seq FROM post_ledger_entries($1, $2::jsonb, true)`, ledgerID, body)
		if err != nil {
			t.Fatalf("post_ledger_entries: %v", err)
		}
		res, err := pgx.CollectRows(rows, pgx.RowToStructByPos[postResult])
		if err != nil {
			t.Fatalf("post_ledger_entries: %v", err)
		}
		for i, r := range res {
			if r.Result != "created" {
				t.Fatalf("entry %d: %s: %s", i, r.Result, r.Message)
			}
		}
		all = append(all, res...)
		entries = entries[n:]
	}
	return all
}

type postResult struct {
	Result  string
	Message string
	EntryID *int64
	Seq     *int64
}

// tamper runs statements as superuser with triggers off (session_replication_role = replica
// disables the append-only and chain triggers), as an attacker with database access would.
func tamper(t *testing.T, d *pgtest.DB, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	conn := d.Conn(t)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatalf("disable triggers: %v", err)
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("tamper %q: %v", q, err)
		}
	}
}
