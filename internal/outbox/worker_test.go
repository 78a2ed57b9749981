package outbox

// The in-process Worker against the real Store and simulated SCBs on loopback (docs/design.md §4, §5).

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// TestDeliveryStatusMapping: the SCB's answer decides the row's status (ACCEPTED -> SENT,
// POSTED -> ACKED, FINAL -> FINALIZED at once), and polling moves SENT/ACKED rows on as the SCB's
// view changes, never skipping the record of what happened.
func TestDeliveryStatusMapping(t *testing.T) {
	t.Parallel()
	const hour = time.Hour
	t.Run("ACCEPTED", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, "SCB-1", "SCB-2")
		s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusAccepted, finalAfter: hour})
		s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusAccepted, finalAfter: hour})
		f.settle(3, "acc", "SCB-1", "SCB-2")
		f.startWorker(testConfig("w-acc"), newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")}).resolve)

		waitFor(t, "every row SENT", 10*time.Second, func() bool { return f.count(Sent, "") == 6 })
		// The SCB's clock stands still: polls see ACCEPTED and change nothing.
		time.Sleep(100 * time.Millisecond)
		if n := f.count(Sent, ""); n != 6 {
			t.Fatalf("%d rows SENT while the SCB still says ACCEPTED, want 6", n)
		}
		for _, r := range f.rows("") {
			if r.SentAt == nil || r.AckedAt != nil || r.FinalizedAt != nil || r.ScbEntryID == nil || *r.ScbStatus != scb.StatusAccepted {
				t.Errorf("row %d SENT: sent_at %v acked_at %v finalized_at %v scb_entry_id %v scb_status %v",
					r.ID, r.SentAt, r.AckedAt, r.FinalizedAt, r.ScbEntryID, deref(r.ScbStatus))
			}
		}
		s1.clock.advance(31 * time.Minute) // past FinalAfter/2: POSTED
		s2.clock.advance(31 * time.Minute)
		waitFor(t, "every row ACKED after the SCB posted", 10*time.Second, func() bool { return f.count(Acked, "") == 6 })
		s1.clock.advance(30 * time.Minute) // FINAL
		s2.clock.advance(30 * time.Minute)
		waitFor(t, "every row FINALIZED after the SCB finalised", 10*time.Second, func() bool { return f.count(Finalized, "") == 6 })
		for _, r := range f.rows("") {
			got := kinds(f.attempts(r.ID))
			want := []string{"deliver/accepted", "poll/posted", "poll/final"}
			if !slices.Equal(got, want) {
				t.Errorf("row %d attempts %v, want %v", r.ID, got, want)
			}
			if r.Attempts != 1 || r.AckedAt == nil || r.FinalizedAt == nil || *r.ScbStatus != scb.StatusFinal {
				t.Errorf("row %d: attempts %d acked_at %v finalized_at %v scb_status %v", r.ID, r.Attempts, r.AckedAt, r.FinalizedAt, deref(r.ScbStatus))
			}
		}
	})
	t.Run("POSTED", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, "SCB-1", "SCB-2")
		s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusPosted, finalAfter: hour})
		s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusPosted, finalAfter: hour})
		f.settle(3, "pst", "SCB-1", "SCB-2")
		f.startWorker(testConfig("w-pst"), newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")}).resolve)
		waitFor(t, "every row ACKED", 10*time.Second, func() bool { return f.count(Acked, "") == 6 })
		time.Sleep(100 * time.Millisecond)
		if n := f.count(Acked, ""); n != 6 {
			t.Fatalf("%d rows ACKED while the SCB still says POSTED, want 6", n)
		}
		s1.clock.advance(hour)
		s2.clock.advance(hour)
		waitFor(t, "every row FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "") == 6 })
		for _, r := range f.rows("") {
			if got, want := kinds(f.attempts(r.ID)), []string{"deliver/posted", "poll/final"}; !slices.Equal(got, want) {
				t.Errorf("row %d attempts %v, want %v", r.ID, got, want)
			}
			if r.SentAt == nil || r.AckedAt == nil {
				t.Errorf("row %d: sent_at %v acked_at %v", r.ID, r.SentAt, r.AckedAt)
			}
		}
	})
	t.Run("FINAL", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, "SCB-1", "SCB-2")
		s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal})
		s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusFinal})
		f.settle(3, "fin", "SCB-1", "SCB-2")
		f.startWorker(testConfig("w-fin"), newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")}).resolve)
		waitFor(t, "every row FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "") == 6 })
		for _, r := range f.rows("") {
			if got, want := kinds(f.attempts(r.ID)), []string{"deliver/final"}; !slices.Equal(got, want) {
				t.Errorf("row %d attempts %v, want %v", r.ID, got, want)
			}
			if r.Attempts != 1 || r.SentAt == nil || r.AckedAt == nil || r.FinalizedAt == nil || r.LockedBy != nil || r.LeaseExpires != nil {
				t.Errorf("row %d: %+v", r.ID, r)
			}
		}
		for _, s := range []*simSCB{s1, s2} {
			if st := s.srv.Stats(false); st.Posts != 3 || st.DuplicatePosts != 0 {
				t.Errorf("%s posted %d entries (%d keys twice), want 3", s.id, st.Posts, st.DuplicatePosts)
			}
		}
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestPermanentErrorFails: a 4xx other than 408/425/429 is a fact about the request: the row is
// FAILED after one attempt, with the reason, and never retried.
func TestPermanentErrorFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "right-key", simOpts{initial: scb.StatusFinal})
	s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusFinal})
	refs := f.settle(2, "perm", "SCB-1", "SCB-2")

	// SCB-2 already holds another entry under the first settlement's key: 409.
	other := scb.Entry{ReferenceID: refs[0], LedgerID: "MASTER", DebitAccountID: "x", CreditAccountID: "y", Amount: "1",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "other", DBISEntryID: 999999,
		BlockHash: strings.Repeat("ab", 32), TimestampUTC: time.Now().UTC()}
	if _, err := s2.client(t, "").Post(context.Background(), other); err != nil {
		t.Fatalf("pre-post the conflicting entry: %v", err)
	}

	// SCB-1 is called with a wrong key: 401.
	f.startWorker(testConfig("w-perm"), newResolver(map[string]SCB{"SCB-1": s1.client(t, "wrong-key"), "SCB-2": s2.client(t, "")}).resolve)
	waitFor(t, "SCB-1's rows FAILED and the conflicting SCB-2 row FAILED", 10*time.Second, func() bool {
		return f.count(Failed, "SCB-1") == 2 && f.count(Failed, "SCB-2") == 1 && f.count(Finalized, "SCB-2") == 1
	})
	time.Sleep(100 * time.Millisecond) // a retry would show now
	for _, r := range f.rows("") {
		if r.Status != Failed {
			continue
		}
		want := "401"
		if r.ScbID == "SCB-2" {
			want = "409"
		}
		if r.Attempts != 1 || r.FailureReason == nil || !strings.Contains(*r.FailureReason, want) || r.FailedAt == nil ||
			r.LastCode == nil || *r.LastCode != map[string]int{"401": 401, "409": 409}[want] {
			t.Errorf("row %d (%s) FAILED: attempts %d, failure_reason %v, last_status_code %v; want 1 attempt and %s named",
				r.ID, r.ScbID, r.Attempts, deref(r.FailureReason), deref(r.LastCode), want)
		}
		if r.FailureReason != nil && strings.Contains(*r.FailureReason, "wrong-key") {
			t.Errorf("failure reason shows the API key: %q", *r.FailureReason)
		}
		if got := kinds(f.attempts(r.ID)); !slices.Equal(got, []string{"deliver/permanent"}) {
			t.Errorf("row %d attempts %v, want one permanent failure", r.ID, got)
		}
	}
	if n := s1.srv.Stats(false).Requests; n != 2 {
		t.Errorf("SCB-1 got %d requests for 2 rows that fail permanently, want 2", n)
	}
}

// TestRetryExhaustedThenRequeue: retryable failures are retried with backoff until max attempts,
// then FAILED with "gave up after N attempts"; an operator requeue gives the row a fresh budget
// (attempts_base), is recorded as an attempt, and a healthy SCB then gets the entry once.
func TestRetryExhaustedThenRequeue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal, faults: sim.Faults{ErrorRate: 1}})
	s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusFinal})
	f.settle(1, "exh", "SCB-1", "SCB-2")
	cfg := testConfig("w-exh")
	cfg.MaxAttempts = 3
	f.startWorker(cfg, newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")}).resolve)

	waitFor(t, "the SCB-1 row FAILED", 10*time.Second, func() bool { return f.count(Failed, "SCB-1") == 1 })
	r := f.rows("SCB-1")[0]
	if r.Attempts != 3 || r.AttemptsBase != 0 || r.FailureReason == nil || !strings.Contains(*r.FailureReason, "gave up after 3 attempts") {
		t.Fatalf("after 3 retryable failures: attempts %d base %d reason %v", r.Attempts, r.AttemptsBase, deref(r.FailureReason))
	}
	if got, want := kinds(f.attempts(r.ID)), []string{"deliver/retry", "deliver/retry", "deliver/exhausted"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}

	// Requeue while the SCB still fails: three more attempts, then FAILED again.
	n, err := f.owner.Requeue(context.Background(), "cli:operator-1", r.ID, false, "", false)
	if err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitFor(t, "FAILED again after a fresh budget", 10*time.Second, func() bool {
		r := f.rows("SCB-1")[0]
		return r.Status == Failed && r.Attempts == 6
	})
	r = f.rows("SCB-1")[0]
	if r.AttemptsBase != 3 || r.RequeueCount != 1 || !strings.Contains(deref2(r.FailureReason), "gave up after 3 attempts") {
		t.Errorf("after requeue: base %d requeues %d reason %q", r.AttemptsBase, r.RequeueCount, deref2(r.FailureReason))
	}
	as := f.attempts(r.ID)
	if got, want := kinds(as), []string{"deliver/retry", "deliver/retry", "deliver/exhausted", "requeue/requeued",
		"deliver/retry", "deliver/retry", "deliver/exhausted"}; !slices.Equal(got, want) {
		t.Fatalf("attempts %v, want %v", got, want)
	}
	if as[3].Worker != "cli:operator-1" || as[3].Attempt != 3 {
		t.Errorf("requeue recorded as %+v, want by cli:operator-1 after attempt 3", as[3])
	}

	// The SCB recovers; requeue all FAILED rows of SCB-1: delivered, once.
	zero := 0.0
	if _, err := s1.srv.SetFaults(sim.FaultsUpdate{ErrorRate: &zero}); err != nil {
		t.Fatal(err)
	}
	if n, err := f.owner.Requeue(context.Background(), "cli:operator-1", 0, true, "SCB-1", false); err != nil || n != 1 {
		t.Fatalf("requeue --all-failed --scb SCB-1: %d %v", n, err)
	}
	waitFor(t, "delivered after the requeue", 10*time.Second, func() bool { return f.count(Finalized, "") == 2 })
	r = f.rows("SCB-1")[0]
	if r.Attempts != 7 || r.AttemptsBase != 6 || r.RequeueCount != 2 || r.FailureReason != nil {
		t.Errorf("finalized row: attempts %d base %d requeues %d reason %v", r.Attempts, r.AttemptsBase, r.RequeueCount, deref(r.FailureReason))
	}
	if st := s1.srv.Stats(false); st.Posts != 1 || st.Requests != 7 {
		t.Errorf("SCB-1: %d posts from %d requests, want 1 from 7", st.Posts, st.Requests)
	}
	if _, err := f.owner.Requeue(context.Background(), "cli:op", 0, false, "", false); err == nil {
		t.Error("requeue without an id or --all-failed: want an error")
	}
	if n, err := f.owner.Requeue(context.Background(), "cli:op", r.ID, false, "", false); err != nil || n != 0 {
		t.Errorf("requeue of a FINALIZED row: %d rows, %v; want 0 (only FAILED rows are requeued)", n, err)
	}
}

func deref2(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// TestRetryAfterHonoured: a 429 with Retry-After: 2 schedules the next attempt no earlier than 2 s
// later, although the backoff alone would retry within milliseconds.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal,
		faults: sim.Faults{RateLimitRate: 1, RetryAfter: sim.Duration(2 * time.Second)}})
	f.settle(3, "ra", "SCB-1", "SCB-2")
	// SCB-2 is not configured: only SCB-1's three rows move.
	f.startWorker(testConfig("w-ra"), newResolver(map[string]SCB{"SCB-1": s1.client(t, "")}).resolve)
	waitFor(t, "one 429 per row", 5*time.Second, func() bool { return len(f.attempts(0)) == 3 })
	time.Sleep(500 * time.Millisecond) // the 5 ms backoff would have retried many times by now
	if n := s1.srv.Stats(false).Requests; n != 3 {
		t.Errorf("%d requests to SCB-1 within 0.5 s of a Retry-After of 2 s, want 3", n)
	}
	for _, r := range f.rows("SCB-1") {
		as := f.attempts(r.ID)
		if len(as) != 1 || as[0].Code == nil || *as[0].Code != 429 || as[0].Outcome != "retry" {
			t.Fatalf("row %d attempts %+v, want one retry after 429", r.ID, as)
		}
		if r.Status != Queued || r.NextAttemptAt.Before(as[0].Started.Add(2*time.Second)) {
			t.Errorf("row %d: status %s next_attempt_at %s, want QUEUED and at least %s (started + Retry-After)",
				r.ID, r.Status, r.NextAttemptAt, as[0].Started.Add(2*time.Second))
		}
	}
}

// TestShutdownReleasesHeldRows: a worker stopped while the SCB holds its requests gives in-flight
// deliveries the grace period, then cancels them and returns their rows to QUEUED, due now; none
// stays PROCESSING. A new worker delivers them, once.
func TestShutdownReleasesHeldRows(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	slow := sim.Faults{Latency: sim.Duration(20 * time.Second)}
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal, faults: slow})
	s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusFinal, faults: slow})
	f.settle(4, "rel", "SCB-1", "SCB-2")
	res := newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")})
	cfg := testConfig("w-rel")
	cfg.Grace = 200 * time.Millisecond
	w := f.startWorker(cfg, res.resolve)
	waitFor(t, "every row held by the worker", 5*time.Second, func() bool { return f.count(Processing, "") == 8 })
	waitFor(t, "every request at the SCBs", 5*time.Second, func() bool {
		return s1.srv.Stats(false).Requests+s2.srv.Stats(false).Requests == 8
	})

	start := time.Now()
	if err := w.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %s with a grace of 200ms", took)
	}
	for _, r := range f.rows("") {
		if r.Status != Queued || r.LockedBy != nil || r.LeaseExpires != nil || !strings.Contains(deref2(r.LastError), "released by worker w-rel") {
			t.Errorf("row %d after shutdown: status %s locked_by %v last_error %q", r.ID, r.Status, deref(r.LockedBy), deref2(r.LastError))
		}
		if r.NextAttemptAt.After(time.Now()) {
			t.Errorf("row %d released but due only at %s", r.ID, r.NextAttemptAt)
		}
	}
	if st := s1.srv.Stats(false); st.Posts != 0 {
		t.Errorf("SCB-1 posted %d entries of cancelled requests", st.Posts)
	}

	// A successor delivers everything, once.
	zero := sim.Duration(0)
	for _, s := range []*simSCB{s1, s2} {
		if _, err := s.srv.SetFaults(sim.FaultsUpdate{Latency: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	f.startWorker(testConfig("w-rel-2"), res.resolve)
	waitFor(t, "every row FINALIZED by the successor", 10*time.Second, func() bool { return f.count(Finalized, "") == 8 })
	for _, s := range []*simSCB{s1, s2} {
		if st := s.srv.Stats(false); st.Posts != 4 || st.DuplicatePosts != 0 {
			t.Errorf("%s: %d posts (%d keys twice), want 4", s.id, st.Posts, st.DuplicatePosts)
		}
	}
}

// TestShutdownFinishesWithinGrace: deliveries that complete within the grace period are recorded
// (not released and redelivered).
func TestShutdownFinishesWithinGrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	lat := sim.Faults{Latency: sim.Duration(300 * time.Millisecond)}
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal, faults: lat})
	s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusFinal, faults: lat})
	f.settle(2, "grace", "SCB-1", "SCB-2")
	w := f.startWorker(testConfig("w-grace"), newResolver(map[string]SCB{"SCB-1": s1.client(t, ""), "SCB-2": s2.client(t, "")}).resolve)
	waitFor(t, "every row held", 5*time.Second, func() bool { return f.count(Processing, "") == 4 })
	if err := w.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := f.count(Finalized, ""); n != 4 {
		t.Errorf("%d of 4 rows FINALIZED after a graceful stop (grace 2s, SCB answers in 300ms)", n)
	}
}

// TestUnconfiguredSCBWaits: an SCB without configuration keeps its rows QUEUED and untouched (no
// attempt spent) while the others are delivered; once configured, they go through.
func TestUnconfiguredSCBWaits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal})
	s2 := startSim(t, "SCB-2", "k2", simOpts{initial: scb.StatusFinal})
	f.settle(5, "unc", "SCB-1", "SCB-2")
	res := newResolver(map[string]SCB{"SCB-1": s1.client(t, "")})
	f.startWorker(testConfig("w-unc"), res.resolve)
	waitFor(t, "SCB-1's rows FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "SCB-1") == 5 })
	time.Sleep(100 * time.Millisecond)
	for _, r := range f.rows("SCB-2") {
		if r.Status != Queued || r.Attempts != 0 || r.LastError != nil || len(f.attempts(r.ID)) != 0 {
			t.Errorf("row %d of the unconfigured SCB: status %s attempts %d last_error %v", r.ID, r.Status, r.Attempts, deref(r.LastError))
		}
	}
	if n := s2.srv.Stats(false).Requests; n != 0 {
		t.Errorf("the unconfigured SCB got %d requests", n)
	}
	res.set("SCB-2", s2.client(t, ""))
	waitFor(t, "SCB-2's rows FINALIZED once configured", 10*time.Second, func() bool { return f.count(Finalized, "SCB-2") == 5 })
}

// TestClientsSayWhyRefused: an SCB whose settings were given but refused is told apart from one
// with none (an operator was sent to set variables that were set, while the real cause, a bad
// timeout or a world-readable config file, was only in another log line).
func TestClientsSayWhyRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	ctx := context.Background()
	environ := []string{"SCB_SCB_1_API_URL=http://127.0.0.1:1", "SCB_SCB_1_API_KEY=k", "SCB_SCB_1_TIMEOUT=bogus"}
	c, err := NewClients(ctx, f.db.Pool, environ, "", 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Resolve("SCB-1"); ok {
		t.Fatal("SCB-1 has a client with a bogus timeout")
	}
	if p := c.Problem("SCB-1"); !strings.Contains(p, "bogus") {
		t.Errorf("SCB-1's problem %q", p)
	}
	if p := c.Problem("SCB-2"); p != "" {
		t.Errorf("SCB-2 (no settings) has a problem: %q", p)
	}
	path := filepath.Join(t.TempDir(), "scbs.json")
	if err := os.WriteFile(path, []byte(`{"scbs": {"SCB-2": {"url": "http://127.0.0.1:1", "api_key": "k"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = NewClients(ctx, f.db.Pool, nil, path, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Problem("SCB-2"); p == "" {
		t.Error("a world-readable config file: no problem reported")
	}
}

// TestBodyIdenticalAcrossRetries: every delivery of one row sends the same bytes, across
// retries and an operator requeue; otherwise the SCB would answer 409 to the retry of an entry
// it committed.
func TestBodyIdenticalAcrossRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal})
	// The first four POSTs of every key fail: 502, 503 with Retry-After 0, a dropped connection,
	// 500. With max attempts 3 the row is FAILED, requeued, and delivered at the 5th attempt.
	s1.setIntercept(func(w http.ResponseWriter, r *http.Request, nth int) bool {
		switch nth {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
		case 2:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 3:
			panic(http.ErrAbortHandler) // the connection drops without an answer
		case 4:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			return false
		}
		return true
	})
	refs := f.settle(2, "body", "SCB-1", "SCB-2")
	cfg := testConfig("w-body")
	cfg.MaxAttempts = 3
	f.startWorker(cfg, newResolver(map[string]SCB{"SCB-1": s1.client(t, "")}).resolve)
	waitFor(t, "both rows FAILED", 10*time.Second, func() bool { return f.count(Failed, "SCB-1") == 2 })
	if n, err := f.owner.Requeue(context.Background(), "cli:op", 0, true, "", false); err != nil || n != 2 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitFor(t, "both rows FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "SCB-1") == 2 })

	for _, ref := range refs {
		bodies := s1.bodiesOf("MASTER:" + ref)
		if len(bodies) != 5 {
			t.Fatalf("%s: %d POSTs, want 5", ref, len(bodies))
		}
		for i, b := range bodies[1:] {
			if !bytes.Equal(b, bodies[0]) {
				t.Errorf("%s: body of POST %d differs from the first:\n%s\n%s", ref, i+2, b, bodies[0])
			}
		}
		var e scb.Entry
		if err := json.Unmarshal(bodies[0], &e); err != nil {
			t.Fatal(err)
		}
		if e.LedgerID != "MASTER" || e.ReferenceID != ref || e.DebitAccountID != "SCB-1-USD" || e.CreditAccountID != "SCB-2-USD" ||
			e.CurrencyCode != "USD" || e.TransactionType != "GSS_SETTLEMENT" || len(e.BlockHash) != 64 || e.DBISEntryID == 0 {
			t.Errorf("%s: body %s", ref, bodies[0])
		}
	}
	if st := s1.srv.Stats(false); st.Posts != 2 || st.Conflicts != 0 {
		t.Errorf("SCB-1: %d posts, %d conflicts; want 2 and 0", st.Posts, st.Conflicts)
	}
}

// TestPollBacksOffDuringOutage: an SCB in an outage answers polls 503 with Retry-After (here one
// hour). docs/design.md §5 says to honour Retry-After, but polling of SENT/ACKED rows has no backoff at
// all: every row is asked again every PollEvery for as long as the outage lasts, and every failed
// poll adds a row to dual_ledger_outbox_attempts.
func TestPollBacksOffDuringOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusAccepted, finalAfter: time.Hour})
	f.settle(2, "pollra", "SCB-1", "SCB-2")
	f.startWorker(testConfig("w-pollra"), newResolver(map[string]SCB{"SCB-1": s1.client(t, "")}).resolve)
	waitFor(t, "SCB-1's rows SENT", 5*time.Second, func() bool { return f.count(Sent, "SCB-1") == 2 })
	hour := sim.Duration(time.Hour)
	if _, err := s1.srv.SetFaults(sim.FaultsUpdate{OutageFor: &hour}); err != nil {
		t.Fatal(err)
	}
	// Each row learns of the outage from one poll's 503 and its Retry-After: its next poll is then
	// an hour away. (How many polls that takes is timing: a row is claimed again 20 ms after its
	// last claim, so on a loaded machine a poll still on its way can overlap the next one.)
	waitFor(t, "both rows' next poll an hour away", 5*time.Second, func() bool {
		var n int
		if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox
			WHERE scb_id = 'SCB-1' AND status = 'SENT' AND next_poll_at > now() + interval '30 minutes'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 2
	})
	time.Sleep(200 * time.Millisecond) // a poll that was on its way ends
	before := s1.srv.Stats(false).Requests
	time.Sleep(500 * time.Millisecond) // 25 poll intervals of 20 ms
	if polls := s1.srv.Stats(false).Requests - before; polls != 0 {
		t.Errorf("%d polls of 2 SENT rows in 0.5 s after the SCB answered 503 with Retry-After: 3600", polls)
	}
}

// TestReleaseIsRecorded: a delivery interrupted by shutdown was sent to the SCB and counted in
// attempts, but Release records nothing in dual_ledger_outbox_attempts (an expired lease is
// recorded, as 'lease_expired'), so the audit log skips that attempt number.
func TestReleaseIsRecorded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s1 := startSim(t, "SCB-1", "k1", simOpts{initial: scb.StatusFinal, faults: sim.Faults{Latency: sim.Duration(20 * time.Second)}})
	f.settle(1, "relrec", "SCB-1", "SCB-2")
	cfg := testConfig("w-relrec")
	cfg.Grace = 50 * time.Millisecond
	w := f.startWorker(cfg, newResolver(map[string]SCB{"SCB-1": s1.client(t, "")}).resolve)
	waitFor(t, "the request at the SCB", 5*time.Second, func() bool { return s1.srv.Stats(false).Requests == 1 })
	if err := w.stop(t); err != nil {
		t.Fatal(err)
	}
	r := f.rows("SCB-1")[0]
	if r.Status != Queued || r.Attempts != 1 {
		t.Fatalf("row after shutdown: %s, %d attempts", r.Status, r.Attempts)
	}
	if as := f.attempts(r.ID); len(as) != 1 || as[0].Attempt != 1 {
		t.Errorf("attempts log %v for a row with 1 attempt (interrupted and released on shutdown): want that attempt recorded", kinds(as))
	}
}
