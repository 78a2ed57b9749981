package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"dualledger/internal/ledger"
)

// A posting's result reaches the caller only once the entry's commit record is on disk. The
// batch commits without waiting for its WAL flush (the ledger head is released sooner) and
// PostBatch waits for the flush afterwards, so right after each call returns, the WAL up to the
// flush position must hold the commit of the entry's transaction. The test reads that WAL with
// pg_walinspect. Without the wait, the commit is still in the WAL buffers when the call returns
// (the WAL writer flushes asynchronous commits every few hundred milliseconds), and the check
// fails within the first few postings.
func TestPostBatchAnswersOnlyFlushedCommits(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_walinspect`); err != nil {
		t.Fatalf("pg_walinspect (PostgreSQL's contrib) is needed by this test: %v", err)
	}
	poster := ledger.NewPoster(d.Pool, ledger.PosterConfig{})
	defer poster.Close()

	for i := range 30 {
		var start string
		if err := d.Pool.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&start); err != nil {
			t.Fatal(err)
		}
		e := entry("alice", "bob", "0.01", "USD", fmt.Sprintf("durable-%d", i))
		var res ledger.Result
		var err error
		if i%2 == 0 {
			var rs []ledger.Result
			rs, err = ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{e}, false)
			if err == nil {
				res = rs[0]
			}
		} else {
			res, err = poster.Post(ctx, L, e) // group commit goes through the same path
		}
		if err != nil || res.Code != ledger.CodeCreated {
			t.Fatalf("post %d: %v %+v", i, err, res)
		}
		var flushed string
		if err := d.Pool.QueryRow(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&flushed); err != nil {
			t.Fatal(err)
		}
		// pg_walinspect reads only WAL that is already flushed, and refuses a start at the flush
		// position: nothing flushed since the start means the commit is not on disk either.
		var moved bool
		if err := d.Pool.QueryRow(ctx, `SELECT $2::pg_lsn > $1::pg_lsn`, start, flushed).Scan(&moved); err != nil {
			t.Fatal(err)
		}
		if !moved {
			t.Fatalf("post %d returned before its commit was flushed (no WAL flushed since %s)", i, start)
		}
		var commits int
		if err := d.Pool.QueryRow(ctx, `
			SELECT count(*)
			  FROM pg_get_wal_records_info($1::pg_lsn, $2::pg_lsn) w
			 WHERE w.resource_manager = 'Transaction' AND w.record_type LIKE 'COMMIT%'
			   AND w.end_lsn <= $2::pg_lsn
			   AND w.xid = (SELECT xmin FROM ledger_entries WHERE ledger_id = $3 AND seq = $4)`,
			start, flushed, L, res.Seq).Scan(&commits); err != nil {
			t.Fatal(err)
		}
		if commits != 1 {
			t.Fatalf("post %d returned before its commit was flushed (WAL %s..%s holds %d commits of its transaction)",
				i, start, flushed, commits)
		}
	}
	// The transaction-local setting did not leak into the pool's connections.
	var sc string
	if err := d.Pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&sc); err != nil || sc != "on" {
		t.Fatalf("synchronous_commit after posting: %q %v", sc, err)
	}
}
