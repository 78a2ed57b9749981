package outbox

import (
	"context"
	"testing"
	"time"

	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// TestTwoWorkersNeverShareARow: two workers (different ids) on one database and two SCBs. With
// no faults, every row is delivered exactly once, by exactly one worker (one deliver attempt per
// row; one POST per key at each SCB), both workers take part, and nothing is left behind.
func TestTwoWorkersNeverShareARow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	lat := sim.Faults{Latency: sim.Duration(2 * time.Millisecond)}
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusAccepted, finalAfter: 100 * time.Millisecond, faults: lat})
	s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusAccepted, finalAfter: 100 * time.Millisecond, faults: lat})
	f.settle(150, "two-a", "SCB-1", "SCB-2")
	f.settle(150, "two-b", "SCB-2", "SCB-1")
	total := f.count("", "")
	res := newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")})
	for _, id := range []string{"wa", "wb"} {
		cfg := testConfig(id)
		cfg.Concurrency = 4
		f.startWorker(cfg, res.resolve)
	}
	waitFor(t, "every row FINALIZED", 30*time.Second, func() bool { return f.count(Finalized, "") == total })

	var twice, workers, delivers int
	if err := f.db.Pool.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE n > 1), (SELECT count(DISTINCT worker_id) FROM dual_ledger_outbox_attempts WHERE kind = 'deliver'),
		       coalesce(sum(n), 0)
		  FROM (SELECT outbox_id, count(*) AS n FROM dual_ledger_outbox_attempts WHERE kind = 'deliver' GROUP BY outbox_id) x`).
		Scan(&twice, &workers, &delivers); err != nil {
		t.Fatal(err)
	}
	if twice != 0 || delivers != total {
		t.Errorf("%d deliver attempts for %d rows, %d rows delivered more than once", delivers, total, twice)
	}
	if workers != 2 {
		t.Errorf("deliveries by %d workers, want both", workers)
	}
	for _, r := range f.rows("") {
		if r.Attempts != 1 || r.LockedBy != nil {
			t.Errorf("row %d: attempts %d locked_by %v", r.ID, r.Attempts, deref(r.LockedBy))
		}
	}
	for _, s := range []*simSCB{s1, s2} {
		per := s.postsPerKey()
		if len(per) != total/2 {
			t.Errorf("%s got POSTs for %d keys, want %d", s.id, len(per), total/2)
		}
		for k, n := range per {
			if n != 1 {
				t.Errorf("%s: key %s POSTed %d times", s.id, k, n)
			}
		}
		if st := s.srv.Stats(false); st.Posts != total/2 || st.DuplicatePosts != 0 {
			t.Errorf("%s: %d posts, %d duplicates", s.id, st.Posts, st.DuplicatePosts)
		}
	}
}
