package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/pg/pgtest"
)

// Plans made on an empty table. A session plans the posting and hold functions' statements on
// its first call (generic plans), and in a new database that is when their tables are empty. For
// an empty table every index that can serve `ledger_id = $1` costs the same one row, so a look-up
// by (ledger_id, something) could take any index led by ledger_id and filter by the rest. The
// session keeps such a plan until an ANALYZE of the table invalidates it (autovacuum: 10 s in the
// embedded cluster, a minute or more elsewhere, never with autovacuum off), and each look-up reads
// every row of the ledger. Migration 015 and the statements' forms (docs/benchmarks.md, "A plan
// made for an empty table, in the server") make the first plans the right ones.
//
// Each test below calls the functions on the empty tables first, with autovacuum off for them (so
// that only what the test does invalidates the sessions' plans), then many times more, and counts
// the rows read from the tables: a few per call, and what a bounded start-up may cost.

// growingSession is a superuser session on a new database, with autovacuum off for the tables
// that grow, and a ledger GROW with `issuance` and acct-1 ... acct-100.
func growingSession(t *testing.T) (*pgtest.DB, *pgx.Conn) {
	t.Helper()
	d := pgtest.New(t)
	conn := d.Conn(t)
	for _, q := range []string{
		`ALTER TABLE ledger_entries SET (autovacuum_enabled = off)`,
		`ALTER TABLE ledger_holds SET (autovacuum_enabled = off)`,
		`ALTER TABLE ledger_hold_events SET (autovacuum_enabled = off)`,
		`ALTER TABLE dual_ledger_outbox SET (autovacuum_enabled = off)`,
		`INSERT INTO ledgers (id) VALUES ('GROW')`,
		`INSERT INTO banks (id, name) VALUES ('SCB-1', 'One')`,
		// acct-1 ... acct-10 belong to a member bank: their entries get outbox rows.
		`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
		 SELECT 'GROW', 'acct-' || g, CASE WHEN g <= 10 THEN 'SCB-1' END, 'USD', 'fiat', 0 FROM generate_series(1, 100) g
		 UNION ALL SELECT 'GROW', 'issuance', NULL, 'USD', 'fiat', NULL`,
	} {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return d, conn
}

// indexReads returns the rows the session's statements read from tables, through their indexes
// or by sequential scans, in total and per index or table (the ones read at all).
func indexReads(t *testing.T, conn *pgx.Conn, tables ...string) (int64, string) {
	t.Helper()
	ctx := context.Background()
	// The session's counts reach the shared statistics when it is next idle.
	if _, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
		t.Fatal(err)
	}
	var read int64
	var byIndex string
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(n), 0), coalesce(string_agg(what || ' ' || n, ', ' ORDER BY what), '')
		FROM (SELECT indexrelname AS what, idx_tup_read AS n FROM pg_stat_user_indexes WHERE relname = ANY ($1)
		      UNION ALL
		      SELECT relname || ' (sequential scans)', seq_tup_read FROM pg_stat_user_tables WHERE relname = ANY ($1)) r
		WHERE n > 0`, tables).Scan(&read, &byIndex); err != nil {
		t.Fatal(err)
	}
	t.Logf("rows read from %v: %d (%s)", tables, read, byIndex)
	return read, byIndex
}

// call runs sql (a function returning a result column) and fails unless every row's result is want.
func call(t *testing.T, conn *pgx.Conn, want, sql string, args ...any) {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	results, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r != want {
			t.Fatalf("%s: %s, want %s", sql, r, want)
		}
	}
}

// TestPostingPlansMadeOnAnEmptyTable: one entry on the empty table, then 5,000 in batches of
// 100, all new references. Before migration 015 the reference look-up went through the account
// index (ledger_id, credit_account_id, seq) and read about n²/2 entries (12.3 million), and the
// chain trigger's look-up of the entry before a batch went through the reference index and read
// every entry of the ledger per batch. Now: the primary key, one entry per batch.
func TestPostingPlansMadeOnAnEmptyTable(t *testing.T) {
	_, conn := growingSession(t)
	post := func(refs ...string) {
		t.Helper()
		call(t, conn, "created", `SELECT result FROM post_ledger_entries('GROW', $1::jsonb, false)`, batchBody(t, refs, false))
	}
	post("first")
	const n, batch = 5000, 100
	for b := 0; b < n/batch; b++ {
		post(refs("grow", b*batch, batch)...)
	}
	read, byIndex := indexReads(t, conn, "ledger_entries")
	if limit := int64(4 * (n/batch + 1)); read > limit {
		t.Errorf("the session read %d entries through the indexes of ledger_entries while posting %d (%s): it kept plans made for an empty table",
			read, n, byIndex)
	}
}

// refs returns n references prefix-first ... prefix-(first+n-1).
func refs(prefix string, first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, first+i)
	}
	return out
}

// TestPlansAfterNewTableStatistics: the foreign keys' checks cannot be written to suit an empty
// table. An outbox row checks its entry by (ledger_id, seq) and a hold event its hold by
// (ledger_id, id); planned on empty tables, those checks went through the reference indexes and
// read every entry (every hold) of the ledger, 1.2 million entries for the 5,000 postings below.
// dl_analyze_new_tables, which `dualledger serve` calls every second until every table has
// statistics, gives the tables statistics once they have rows, and the sessions' plans are made
// again from them. Here the session posts to member-bank accounts (outbox rows) and moves holds
// once on the empty tables, the statistics are gathered as serve would, then it does the same
// many times more.
func TestPlansAfterNewTableStatistics(t *testing.T) {
	_, conn := growingSession(t)
	ctx := context.Background()
	pending := func() int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT dl_analyze_new_tables()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Five growing tables, all empty: nothing to analyse yet.
	if got := pending(); got != 5 {
		t.Fatalf("dl_analyze_new_tables on a new database: %d tables pending, want 5", got)
	}
	post := func(refs ...string) {
		t.Helper()
		call(t, conn, "created", `SELECT result FROM post_ledger_entries('GROW', $1::jsonb, false)`, batchBody(t, refs, true))
	}
	hold := func(i int) {
		t.Helper()
		ref := fmt.Sprintf("hold-%04d", i)
		h, err := json.Marshal(map[string]string{"debit_account_id": "issuance", "credit_account_id": fmt.Sprintf("acct-%d", 11+i%90),
			"amount": "2.00", "currency_code": "USD", "asset_type": "fiat", "transaction_type": "transfer", "reference_id": ref})
		if err != nil {
			t.Fatal(err)
		}
		call(t, conn, "created", `SELECT result FROM create_ledger_hold('GROW', $1::jsonb)`, string(h))
		if i%2 == 0 {
			call(t, conn, "created", `SELECT result FROM capture_ledger_hold('GROW', $1, $2::jsonb)`,
				ref, fmt.Sprintf(`{"reference_id": "%s-capture", "amount": "1.50"}`, ref))
		} else {
			call(t, conn, "created", `SELECT result FROM void_ledger_hold('GROW', $1)`, ref)
		}
	}
	// The first calls plan on empty tables; the statistics come once a table has 16 pages (serve
	// asks every second; here after every call).
	const n, batch, holds = 5000, 100, 600
	for b := 0; b < n/batch; b++ {
		post(refs("scb", b*batch, batch)...)
		pending()
	}
	for i := 0; i < holds; i++ {
		hold(i)
		pending()
	}
	// Entries, outbox rows, holds and hold events have had their statistics; the outbox's attempts
	// have no rows (no worker ran).
	if got := pending(); got != 1 {
		t.Fatalf("dl_analyze_new_tables after the postings: %d tables pending, want 1", got)
	}
	read, byIndex := indexReads(t, conn, "ledger_entries", "dual_ledger_outbox", "ledger_holds", "ledger_hold_events")
	// A posting statement reads an entry or two, an outbox row its entry, a capture or a void its
	// hold twice and the predecessors of its event and entry. Before a table has its statistics
	// (16 pages: about 600 entries, 330 holds), a check may read every row of it: r²/2 for r
	// entries, r² for r holds (two events each), about 400,000 in all. Without the statistics the
	// outbox's checks alone read n²/2, 12.5 million.
	if limit := int64(2*n + 8*holds + 500_000); read > limit {
		t.Errorf("the session read %d rows through the indexes for %d entries and %d holds (%s): it kept plans made for empty tables",
			read, n, holds, byIndex)
	}
}

// batchBody is a batch of entries from issuance, one per reference, to acct-1 ... acct-10 (a member
// bank's: each entry gets an outbox row) with bank, else to acct-11 ... acct-100.
func batchBody(t *testing.T, refs []string, bank bool) string {
	t.Helper()
	entries := make([]map[string]string, len(refs))
	for i, ref := range refs {
		credit := fmt.Sprintf("acct-%d", 11+i%90)
		if bank {
			credit = fmt.Sprintf("acct-%d", 1+i%10)
		}
		entries[i] = map[string]string{"debit_account_id": "issuance", "credit_account_id": credit,
			"amount": "1.00", "currency_code": "USD", "asset_type": "fiat", "transaction_type": "transfer", "reference_id": ref}
	}
	body, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestReplayRangePlansMadeOnAnEmptyTable: a batch checks the references of the entries committed
// between its look-up and its head lock (dl_post_replays' range, `seq BETWEEN ...`). Planned on an
// empty table, that range went through the reference index (led by ledger_id) and read every
// entry of the ledger instead of the range. Here session B's batch is sent while session A's holds
// the head lock, every time, so that each of B's 40 batches checks A's 100 entries before it.
func TestReplayRangePlansMadeOnAnEmptyTable(t *testing.T) {
	d, b := growingSession(t)
	a := d.Conn(t)
	ctx := context.Background()
	const rounds, batch = 40, 100
	bPID := b.PgConn().PID()
	for k := 0; k < rounds; k++ {
		tx, err := a.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT count(*) FROM post_ledger_entries('GROW', $1::jsonb, false)`,
			batchBody(t, refs("a", k*batch, batch), false)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		bBody := batchBody(t, refs("b", k*batch, batch), false)
		go func() {
			_, err := b.Exec(ctx, `SELECT count(*) FROM post_ledger_entries('GROW', $1::jsonb, false)`, bBody)
			done <- err
		}()
		// B has looked its references up and waits for the head lock that A holds.
		waiting := false
		for deadline := time.Now().Add(10 * time.Second); !waiting && time.Now().Before(deadline); {
			if err := d.Pool.QueryRow(ctx, `SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`,
				bPID).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if !waiting {
				time.Sleep(time.Millisecond)
			}
		}
		if !waiting {
			t.Fatalf("round %d: session B never waited for the head lock", k)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	read, byIndex := indexReads(t, b, "ledger_entries")
	// B reads A's batch before each of its own (and A reads a few rows): rounds × batch, about.
	if limit := int64(2 * rounds * batch); read > limit {
		t.Errorf("the sessions read %d entries while B checked %d batches of %d committed before its lock (%s): B kept a plan made for an empty table",
			read, rounds, batch, byIndex)
	}
}
