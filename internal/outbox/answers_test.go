package outbox

// What the worker may record about an SCB's answer (migration 010): FINALIZED only with the SCB's
// FINAL answer and its scb_entry_id, the same entry id from acceptance to finality, and every
// transition through the outbox functions, which the worker's role may call and nothing more.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"dualledger/internal/scb"
)

// scriptedSCB is an SCB over real HTTP whose answers the test writes, for answers the simulator
// never gives (a FINAL without an entry id, an entry id that changes).
type scriptedSCB struct {
	ts *httptest.Server
	mu sync.Mutex
	// post and get answer POST /v1/entries and GET /v1/entries/{ref}: status code and body.
	post, get func() (int, string)
	// onGet, when set, runs first for every GET, with the reference.
	onGet func(ref string)
	// getRetryAfter, when set, is the Retry-After header of every GET's answer.
	getRetryAfter string
}

func startScripted(t *testing.T) *scriptedSCB {
	t.Helper()
	s := &scriptedSCB{}
	s.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		onGet := s.onGet
		s.mu.Unlock()
		if r.Method == http.MethodGet && onGet != nil {
			onGet(strings.TrimPrefix(r.URL.Path, "/v1/entries/"))
		}
		s.mu.Lock()
		f := s.get
		if r.Method == http.MethodPost {
			f = s.post
		} else if s.getRetryAfter != "" {
			w.Header().Set("Retry-After", s.getRetryAfter)
		}
		s.mu.Unlock()
		code, body := http.StatusServiceUnavailable, `{"error":{"code":"unavailable","message":"not scripted"}}`
		if f != nil {
			code, body = f()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.ts.Close)
	return s
}

func (s *scriptedSCB) script(post, get func() (int, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if post != nil {
		s.post = post
	}
	if get != nil {
		s.get = get
	}
}

func (s *scriptedSCB) client(t *testing.T, id string) *scb.Client {
	t.Helper()
	c, err := scb.NewClient(scb.Config{ID: id, BaseURL: s.ts.URL, APIKey: "k", Timeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func answer(code int, body string) func() (int, string) {
	return func() (int, string) { return code, body }
}

func sqlstate(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestFinalWithoutEntryIDIsNotFinal: an SCB that answers FINAL without naming its entry is not
// believed: the delivery is retried like any 2xx the worker cannot use, and the row ends FAILED
// once the budget is spent, never FINALIZED.
func TestFinalWithoutEntryIDIsNotFinal(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s := startScripted(t)
	s.script(answer(201, `{"status":"FINAL"}`), nil)
	f.settle(1, "noid", "SCB-1", "SCB-2")
	cfg := testConfig("w-noid")
	cfg.MaxAttempts = 2
	f.startWorker(cfg, newResolver(map[string]SCB{"SCB-1": s.client(t, "SCB-1")}).resolve)
	waitFor(t, "the row FAILED", 10*time.Second, func() bool { return f.count(Failed, "SCB-1") == 1 })
	r := f.rows("SCB-1")[0]
	if r.FinalizedAt != nil || r.ScbStatus != nil || !strings.Contains(deref2(r.FailureReason), "FINAL without scb_entry_id") {
		t.Errorf("row after FINAL answers without an entry id: %s, scb_status %v, reason %q", r.Status, deref(r.ScbStatus), deref2(r.FailureReason))
	}
	if got, want := kinds(f.attempts(r.ID)), []string{"deliver/retry", "deliver/exhausted"}; !slices.Equal(got, want) {
		t.Errorf("attempts %v, want %v", got, want)
	}
}

// TestPollEntryIDMustNotChange: an SCB that accepted an entry as A and then reports FINAL for B is
// not confirming our entry: the row stays SENT, the poll is recorded as scb_entry_id_mismatch and
// backs off. Once the SCB names A again the row is FINALIZED, and the poll that ends the run of
// failures is recorded as well.
func TestPollEntryIDMustNotChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s := startScripted(t)
	s.script(answer(201, `{"scb_entry_id":"A","status":"ACCEPTED"}`), answer(200, `{"scb_entry_id":"B","status":"FINAL"}`))
	f.settle(1, "mism", "SCB-1", "SCB-2")
	f.startWorker(testConfig("w-mism"), newResolver(map[string]SCB{"SCB-1": s.client(t, "SCB-1")}).resolve)
	waitFor(t, "a refused poll", 10*time.Second, func() bool {
		return slices.Contains(kinds(f.attempts(f.rows("SCB-1")[0].ID)), "poll/scb_entry_id_mismatch")
	})
	r := f.rows("SCB-1")[0]
	if r.Status != Sent || deref2(r.ScbEntryID) != "A" || !strings.Contains(deref2(r.LastError), "accepted the entry as A") {
		t.Fatalf("row after a FINAL for another entry id: %s, scb_entry_id %q, last_error %q", r.Status, deref2(r.ScbEntryID), deref2(r.LastError))
	}
	// An ACCEPTED answer after the failures ends the run (recorded), then FINAL for A finalises.
	s.script(nil, answer(200, `{"scb_entry_id":"A","status":"ACCEPTED"}`))
	waitFor(t, "the recovery recorded", 10*time.Second, func() bool {
		return slices.Contains(kinds(f.attempts(r.ID)), "poll/recovered")
	})
	s.script(nil, answer(200, `{"scb_entry_id":"A","status":"FINAL"}`))
	waitFor(t, "the row FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "SCB-1") == 1 })
	as := f.attempts(r.ID)
	// The last attempt even with PollEvery at 20 ms and polls slower than that (the race detector
	// on a loaded machine): the worker never polls a row twice at once, so no stale answer can be
	// recorded after the final one (TestSlowPollsDoNotOverlap).
	if got := kinds(as); got[0] != "deliver/accepted" || got[len(got)-1] != "poll/final" {
		t.Errorf("attempts %v", got)
	}
	if got := f.rows("SCB-1")[0]; got.Status != Finalized || deref2(got.ScbEntryID) != "A" {
		t.Errorf("row after FINAL for A: %s, scb_entry_id %q", got.Status, deref2(got.ScbEntryID))
	}
	var entryID, status *string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT scb_entry_id, scb_status FROM dual_ledger_outbox_attempts
		WHERE outbox_id = $1 AND outcome = 'final'`, r.ID).Scan(&entryID, &status); err != nil || deref2(entryID) != "A" || deref2(status) != "FINAL" {
		t.Errorf("the final attempt records the SCB's answer: %v %v %v", deref(entryID), deref(status), err)
	}
}

// TestForgedResultsRefused: the worker's role, holding the lease, still cannot record a
// transition the SCB's answer does not support; each refusal changes nothing and records nothing.
func TestForgedResultsRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(1, "forge", "SCB-1", "SCB-2")
	ctx := context.Background()
	rows, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 1)
	if err != nil || len(rows) != 1 {
		t.Fatal(rows, err)
	}
	row := rows[0]
	for name, r := range map[string]Result{
		"FINALIZED with a made-up id and no FINAL answer": {NewStatus: Finalized, StatusCode: 201, ScbEntryID: "made-up", Outcome: "final"},
		"FINALIZED on an ACCEPTED answer":                 {NewStatus: Finalized, StatusCode: 201, ScbEntryID: "made-up", ScbStatus: "ACCEPTED", Outcome: "final"},
		"FINALIZED on FINAL without an entry id":          {NewStatus: Finalized, StatusCode: 201, ScbStatus: "FINAL", Outcome: "final"},
		"ACKED on an ACCEPTED answer":                     {NewStatus: Acked, StatusCode: 201, ScbStatus: "ACCEPTED", Outcome: "posted"},
		"SENT on a FINAL answer":                          {NewStatus: Sent, StatusCode: 201, ScbEntryID: "x", ScbStatus: "FINAL", Outcome: "accepted"},
		"QUEUED with an SCB answer":                       {NewStatus: Queued, StatusCode: 201, ScbStatus: "FINAL", Outcome: "retry"},
	} {
		r.Kind, r.Started = "deliver", time.Now()
		if err := f.store.Finish(ctx, row, "w", r); sqlstate(err) != "DL111" {
			t.Errorf("%s: %v, want DL111", name, err)
		}
	}
	for name, r := range map[string]Result{
		"back to PROCESSING": {NewStatus: Processing, Outcome: "x"},
		"no status":          {Outcome: "x"},
		"FAILED without why": {NewStatus: Failed, Outcome: "permanent"},
		"a bad outcome":      {NewStatus: Queued, Outcome: "Retry; DROP"},
		"a delay of a year":  {NewStatus: Queued, Outcome: "retry", Error: "x", Delay: 365 * 24 * time.Hour},
	} {
		if err := f.store.Finish(ctx, row, "w", r); sqlstate(err) != "DL009" {
			t.Errorf("%s: %v, want DL009", name, err)
		}
	}
	if got := f.rows("SCB-1")[0]; got.Status != Processing || got.ScbEntryID != nil || len(f.attempts(row.ID)) != 0 {
		t.Fatalf("refused results changed the row: %s, scb_entry_id %v, %d attempts", got.Status, deref(got.ScbEntryID), len(f.attempts(row.ID)))
	}
	// The genuine answer goes through.
	if err := f.store.Finish(ctx, row, "w", Result{Kind: "deliver", NewStatus: Finalized, StatusCode: 201, ScbEntryID: "SCB-1-7",
		ScbStatus: "FINAL", Outcome: "final"}); err != nil {
		t.Fatal(err)
	}
	if got := f.rows("SCB-1")[0]; got.Status != Finalized || deref2(got.ScbEntryID) != "SCB-1-7" || deref2(got.ScbStatus) != "FINAL" {
		t.Errorf("after the FINAL answer: %+v", got)
	}
}

// TestRequeueIsAnOperatorAct: only the owner may requeue (the worker's role cannot), the actor
// must say who it is, and the act is in the operator log with its reason, in the same transaction.
func TestRequeueIsAnOperatorAct(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(2, "rqa", "SCB-1", "SCB-2")
	ctx := context.Background()
	claimed, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 2)
	if err != nil || len(claimed) != 2 {
		t.Fatal(claimed, err)
	}
	for _, r := range claimed {
		if err := f.store.Finish(ctx, r, "w", Result{Kind: "deliver", NewStatus: Failed, StatusCode: 401, Outcome: "permanent", Error: "401 from SCB-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.store.RequeueRows(ctx, RequeueRequest{Actor: "cli:op", AllFailed: true}); sqlstate(err) != "42501" {
		t.Errorf("requeue as the worker's role: %v, want 42501", err)
	}
	for _, actor := range []string{"op", "", "sql:op", "cli:"} {
		if _, err := f.owner.RequeueRows(ctx, RequeueRequest{Actor: actor, AllFailed: true}); sqlstate(err) != "DL009" {
			t.Errorf("requeue by actor %q: %v, want DL009", actor, err)
		}
	}
	if f.count(Failed, "SCB-1") != 2 {
		t.Fatal("a refused requeue changed rows")
	}
	n, err := f.owner.RequeueRows(ctx, RequeueRequest{Actor: "cli:alice", ID: claimed[0].ID, Reason: "key fixed at the SCB"})
	if err != nil || n != 1 {
		t.Fatalf("requeue by id: %d %v", n, err)
	}
	if n, err := f.owner.RequeueRows(ctx, RequeueRequest{Actor: "cli:alice", AllFailed: true, ScbID: "SCB-1"}); err != nil || n != 1 {
		t.Fatalf("requeue of the rest: %d %v", n, err)
	}
	if n, err := f.owner.RequeueRows(ctx, RequeueRequest{Actor: "cli:alice", AllFailed: true}); err != nil || n != 0 {
		t.Fatalf("requeue of nothing: %d %v", n, err)
	}
	type act struct{ actor, action, target, reason, after string }
	rs, err := f.db.Pool.Query(ctx, `SELECT actor, action, target, coalesce(reason, ''), after::text FROM operator_actions
		WHERE action = 'outbox.requeue' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var acts []act
	for rs.Next() {
		var a act
		if err := rs.Scan(&a.actor, &a.action, &a.target, &a.reason, &a.after); err != nil {
			t.Fatal(err)
		}
		acts = append(acts, a)
	}
	if rs.Err() != nil || len(acts) != 2 || acts[0].actor != "cli:alice" || acts[0].reason != "key fixed at the SCB" ||
		acts[0].target != "outbox/"+strconv.FormatInt(claimed[0].ID, 10) || acts[1].target != "outbox/FAILED/SCB-1" || !strings.Contains(acts[1].after, `"requeued": 1`) {
		t.Errorf("operator log of the requeues (an empty requeue logs nothing): %+v %v", acts, rs.Err())
	}
}

// TestRetryNowIsAnOperatorAct: QUEUED rows waiting for their next attempt (here an SCB's
// Retry-After of ten hours) are made due now by the owner alone, the status and the attempt budget
// unchanged, and the act is in the operator log with the rows' ids. Before, nothing but waiting
// (or editing the row by hand, which the runbooks forbid) made them due.
func TestRetryNowIsAnOperatorAct(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	f.settle(2, "rtn", "SCB-1", "SCB-2")
	ctx := context.Background()
	claimed, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w", time.Minute, 2)
	if err != nil || len(claimed) != 2 {
		t.Fatal(claimed, err)
	}
	for _, r := range claimed {
		if err := f.store.Finish(ctx, r, "w", Result{Kind: "deliver", NewStatus: Queued, StatusCode: 503, Outcome: "retry",
			Error: "503 from SCB-1", Delay: 10 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	waiting := func() int {
		var n int
		if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox WHERE scb_id = 'SCB-1' AND status = 'QUEUED'
			AND next_attempt_at > now() + interval '1 hour'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if waiting() != 2 {
		t.Fatal("the rows do not wait")
	}
	// outbox list shows how long each waits, by the database's clock, and filters by ledger.
	listed, err := f.store.List(ctx, ListFilter{Status: Queued, ScbID: "SCB-1", LedgerID: "MASTER", Limit: 10})
	if err != nil || len(listed) != 2 || listed[0].NextAttemptIn < 9*3600 || listed[1].NextAttemptIn < 9*3600 {
		t.Errorf("list of the waiting rows: %+v %v", listed, err)
	}
	if other, err := f.store.List(ctx, ListFilter{LedgerID: "OTHER", Limit: 10}); err != nil || len(other) != 0 {
		t.Errorf("list of another ledger's rows: %+v %v", other, err)
	}
	if _, err := f.store.RetryNow(ctx, RequeueRequest{Actor: "cli:op", ScbID: "SCB-1"}); sqlstate(err) != "42501" {
		t.Errorf("retry now as the worker's role: %v, want 42501", err)
	}
	for _, actor := range []string{"op", "", "sql:op", "cli:"} {
		if _, err := f.owner.RetryNow(ctx, RequeueRequest{Actor: actor, ScbID: "SCB-1"}); sqlstate(err) != "DL009" {
			t.Errorf("retry now by actor %q: %v, want DL009", actor, err)
		}
	}
	if _, err := f.owner.RetryNow(ctx, RequeueRequest{Actor: "cli:op", ScbID: "SCB-1", Reason: "a\nb"}); sqlstate(err) != "DL009" {
		t.Errorf("retry now with a control character in the reason: %v, want DL009", err)
	}
	if n, err := f.owner.RetryNow(ctx, RequeueRequest{Actor: "cli:alice", ScbID: "SCB-2"}); err != nil || n != 0 {
		t.Errorf("another SCB's rows: %d %v", n, err)
	}
	n, err := f.owner.RetryNow(ctx, RequeueRequest{Actor: "cli:alice", ID: claimed[0].ID, Reason: "SCB-1 is back"})
	if err != nil || n != 1 || waiting() != 1 {
		t.Fatalf("retry now by id: %d %v, %d still waiting", n, err, waiting())
	}
	if n, err := f.owner.RetryNow(ctx, RequeueRequest{Actor: "cli:alice", ScbID: "SCB-1"}); err != nil || n != 1 || waiting() != 0 {
		t.Fatalf("retry now of the rest: %d %v", n, err)
	}
	for _, r := range f.rows("SCB-1") {
		if r.Status != Queued || r.Attempts != 1 {
			t.Errorf("row %d: %s, %d attempts", r.ID, r.Status, r.Attempts)
		}
	}
	if listed, err := f.store.List(ctx, ListFilter{Status: Queued, ScbID: "SCB-1", Limit: 10}); err != nil || len(listed) != 2 ||
		listed[0].NextAttemptIn > 0 || listed[1].NextAttemptIn > 0 {
		t.Errorf("list after retry now: %+v %v", listed, err)
	}
	due, err := f.store.Claim(ctx, "SCB-1", "MASTER", "w2", time.Minute, 10)
	if err != nil || len(due) != 2 {
		t.Errorf("claim after retry now: %d rows, %v", len(due), err)
	}
	var acts int
	if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM operator_actions WHERE action = 'outbox.retry_now' AND actor = 'cli:alice'
		AND before -> 'queued_ids' @> to_jsonb($1::bigint)`, claimed[0].ID).Scan(&acts); err != nil || acts != 1 {
		t.Errorf("operator log: %d acts naming row %d, %v", acts, claimed[0].ID, err)
	}
}

// TestSlowPollsDoNotOverlap: an SCB that answers polls slower than PollEvery (here 15 times
// slower) is never asked about one row twice at once by a worker: the rows claimed again while
// their poll is in flight are dropped from the claim (and counted), and the answers are recorded
// in the order they were asked.
func TestSlowPollsDoNotOverlap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s := startScripted(t)
	var (
		mu               sync.Mutex
		inFlight         = map[string]int{}
		maxInFlight, got int
	)
	slowGet := func(ref string) {
		mu.Lock()
		inFlight[ref]++
		maxInFlight = max(maxInFlight, inFlight[ref])
		got++
		mu.Unlock()
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		inFlight[ref]--
		mu.Unlock()
	}
	s.script(answer(201, `{"scb_entry_id":"A","status":"ACCEPTED"}`), nil)
	s.mu.Lock()
	s.onGet = slowGet
	s.mu.Unlock()
	f.settle(3, "slow", "SCB-1", "SCB-2")
	s.script(nil, answer(200, `{"scb_entry_id":"A","status":"ACCEPTED"}`))
	cfg := testConfig("w-slow")
	cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	f.startWorker(cfg, newResolver(map[string]SCB{"SCB-1": s.client(t, "SCB-1")}).resolve)
	waitFor(t, "polls", 10*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return got >= 9 })
	if v := testutil.ToFloat64(cfg.Metrics.pollsSkipped.WithLabelValues("SCB-1")); v == 0 {
		t.Errorf("no claim of a row in flight counted: the test did not make polls overlap")
	}
	// The SCB finalises; the answers recorded for each row end with the final one.
	s.script(nil, answer(200, `{"scb_entry_id":"A","status":"FINAL"}`))
	waitFor(t, "the rows FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "SCB-1") == 3 })
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight != 1 {
		t.Errorf("the SCB was asked about one row %d times at once", maxInFlight)
	}
	for _, r := range f.rows("SCB-1") {
		if k := kinds(f.attempts(r.ID)); k[len(k)-1] != "poll/final" {
			t.Errorf("row %d: attempts %v, want poll/final last", r.ID, k)
		}
	}
}

// TestRetryNowReleasesParkedPolls: an SCB answering a poll 503 with "Retry-After: 86400" (a
// maintenance page) parks the row's next poll for a day, as it asked; outbox list shows when, and
// outbox retry-now makes the poll due once the SCB is back (it once moved QUEUED rows only, and
// nothing could release a parked SENT row). A SENT row polled on schedule is left alone.
func TestRetryNowReleasesParkedPolls(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s := startScripted(t)
	s.script(answer(201, `{"scb_entry_id":"A","status":"ACCEPTED"}`), answer(503, `{"error":{"code":"maintenance","message":"back tomorrow"}}`))
	s.mu.Lock()
	s.getRetryAfter = "86400"
	s.mu.Unlock()
	f.settle(1, "park", "SCB-1", "SCB-2")
	r := f.startWorker(testConfig("w-park"), newResolver(map[string]SCB{"SCB-1": s.client(t, "SCB-1")}).resolve)
	waitFor(t, "a failed poll", 10*time.Second, func() bool {
		return slices.Contains(kinds(f.attempts(f.rows("SCB-1")[0].ID)), "poll/poll_error")
	})
	r.stop(t)
	ctx := context.Background()
	list := func() ListedRow {
		t.Helper()
		rows, err := f.store.List(ctx, ListFilter{ScbID: "SCB-1", Limit: 10})
		if err != nil || len(rows) != 1 || rows[0].NextPollIn == nil {
			t.Fatalf("list: %+v %v", rows, err)
		}
		return rows[0]
	}
	if in := *list().NextPollIn; in < 80000 {
		t.Fatalf("next poll in %.0f s after Retry-After: 86400", in)
	}
	owner := NewStore(f.db.Pool)
	if n, err := owner.RetryNow(ctx, RequeueRequest{Actor: "cli:test", AllFailed: true, ScbID: "SCB-1", Reason: "SCB-1 is back"}); err != nil || n != 1 {
		t.Fatalf("retry-now: %d %v", n, err)
	}
	if in := *list().NextPollIn; in > 1 {
		t.Errorf("next poll in %.0f s after retry-now", in)
	}
	// The operator log says it was a poll that was made due, not a QUEUED row's attempt.
	var acts int
	if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM operator_actions WHERE action = 'outbox.retry_now'
		AND before -> 'polled_ids' @> to_jsonb($1::bigint) AND before -> 'queued_ids' = '[]' AND after ->> 'polled' = '1'`,
		list().ID).Scan(&acts); err != nil || acts != 1 {
		t.Errorf("operator log: %d acts naming the polled row, %v", acts, err)
	}
	// The SCB answers again: the row is polled to FINAL.
	s.mu.Lock()
	s.getRetryAfter = ""
	s.mu.Unlock()
	s.script(nil, answer(200, `{"scb_entry_id":"A","status":"FINAL"}`))
	f.startWorker(testConfig("w-park2"), newResolver(map[string]SCB{"SCB-1": s.client(t, "SCB-1")}).resolve)
	waitFor(t, "the row FINALIZED", 10*time.Second, func() bool { return f.count(Finalized, "SCB-1") == 1 })
	// Nothing waits any more.
	if n, err := owner.RetryNow(ctx, RequeueRequest{Actor: "cli:test", AllFailed: true, ScbID: "SCB-1"}); err != nil || n != 0 {
		t.Errorf("retry-now with nothing parked: %d %v", n, err)
	}
}

// TestStalePollFailureNotRecorded: a poll claimed before an operator delivered the row again
// (redelivery: another attempt, and the SCB's new entry id to come) answers about a delivery
// that no longer stands; its failure is not recorded against the new one (it read as an
// scb_entry_id mismatch with the entry the SCB had just accepted afresh).
func TestStalePollFailureNotRecorded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "SCB-1", "SCB-2")
	s := startScripted(t)
	s.script(answer(201, `{"scb_entry_id":"A","status":"ACCEPTED"}`), answer(200, `{"scb_entry_id":"A","status":"ACCEPTED"}`))
	f.settle(1, "stale", "SCB-1", "SCB-2")
	r := f.startWorker(testConfig("w-stale"), newResolver(map[string]SCB{"SCB-1": s.client(t, "SCB-1")}).resolve)
	waitFor(t, "the row SENT", 10*time.Second, func() bool { return f.count(Sent, "SCB-1") == 1 })
	r.stop(t)
	ctx := context.Background()
	id := f.rows("SCB-1")[0].ID
	if _, err := f.db.Pool.Exec(ctx, `UPDATE dual_ledger_outbox SET next_poll_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	claimed, err := f.store.ClaimForPoll(ctx, "SCB-1", "MASTER", time.Minute, 1)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim for poll: %v %v", claimed, err)
	}
	if _, err := f.db.Pool.Exec(ctx, `SELECT outbox_redeliver('cli:test', 'MASTER', $1, 'the SCB lost it')`, id); err != nil {
		t.Fatal(err)
	}
	before := len(f.attempts(id))
	res := Result{Kind: "poll", Started: time.Now(), Outcome: "scb_entry_id_mismatch", Error: "200 from SCB-1: FINAL B, but it accepted the entry as A", Delay: time.Second}
	if err := f.store.RecordPollError(ctx, claimed[0], "w-stale", res); !errors.Is(err, ErrStalePoll) {
		t.Fatalf("a poll claimed before the redelivery: %v, want ErrStalePoll", err)
	}
	if after := len(f.attempts(id)); after != before {
		t.Errorf("the stale poll was recorded: %d attempts, was %d", after, before)
	}
}
