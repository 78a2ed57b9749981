package outbox

// Test helpers: a migrated database per test, the Store reached as the worker's role (a plain
// member of dualledger_worker that SETs ROLE to it, like `dualledger worker` in production), a
// MASTER ledger with registered banks, and simulated SCBs (the real simulator handler) on
// loopback, each with a recording wrapper.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is a MASTER ledger whose accounts <bank>-USD belong to registered banks. The bank
// accounts may overdraw, so that settlements need no funding entries (which would add rows).
// db.Pool is the owner's (set-up, postings, inspection); store is the worker's, as
// dualledger_worker; owner is a Store on the owner's pool, for the operator's requeue.
type fixture struct {
	t     *testing.T
	db    *pgtest.DB
	store *Store
	owner *Store
}

func newFixture(t *testing.T, banks ...string) *fixture {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, `INSERT INTO ledgers (id) VALUES ('MASTER')`); err != nil {
		t.Fatal(err)
	}
	for _, b := range banks {
		if _, err := d.Pool.Exec(ctx, `INSERT INTO banks (id, name) VALUES ($1, $1 || ' central bank')`, b); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Pool.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type, overdraft_limit)
			VALUES ('MASTER', $1 || '-USD', $1, 'USD', 'fiat', NULL)`, b); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{t: t, db: d, store: NewStore(d.PoolAs(t, "dualledger_worker")), owner: NewStore(d.Pool)}
}

// settle posts n settlements from one bank to another (two outbox rows each) and returns their
// reference ids.
func (f *fixture) settle(n int, prefix, from, to string) []string {
	f.t.Helper()
	var batch []ledger.EntryInput
	var refs []string
	for i := range n {
		ref := fmt.Sprintf("%s-%04d", prefix, i)
		refs = append(refs, ref)
		batch = append(batch, ledger.EntryInput{DebitAccountID: from + "-USD", CreditAccountID: to + "-USD", Amount: "125.50",
			CurrencyCode: "USD", AssetType: "fiat", TransactionType: "GSS_SETTLEMENT", ReferenceID: ref})
	}
	res, err := ledger.PostBatch(context.Background(), f.db.Pool, "MASTER", batch, true)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range res {
		if r.Code != ledger.CodeCreated {
			f.t.Fatalf("settle: %+v", r)
		}
	}
	return refs
}

// outRow is an outbox row as the tests inspect it.
type outRow struct {
	ID            int64
	Ref           string
	ScbID         string
	Status        string
	Attempts      int
	AttemptsBase  int
	RequeueCount  int
	LockedBy      *string
	LeaseExpires  *time.Time
	LastCode      *int
	LastError     *string
	FailureReason *string
	ScbEntryID    *string
	ScbStatus     *string
	NextAttemptAt time.Time
	SentAt        *time.Time
	AckedAt       *time.Time
	FinalizedAt   *time.Time
	FailedAt      *time.Time
	UpdatedAt     time.Time
}

// rows returns the outbox rows (of one SCB if scbID is not empty), by id.
func (f *fixture) rows(scbID string) []outRow {
	f.t.Helper()
	rs, err := f.db.Pool.Query(context.Background(), `SELECT id, reference_id, scb_id, status, attempts, attempts_base, requeue_count,
			locked_by, lease_expires_at, last_status_code, last_error, failure_reason, scb_entry_id, scb_status, next_attempt_at,
			sent_at, acked_at, finalized_at, failed_at, updated_at
		  FROM dual_ledger_outbox WHERE $1 = '' OR scb_id = $1 ORDER BY id`, scbID)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (outRow, error) {
		var x outRow
		err := r.Scan(&x.ID, &x.Ref, &x.ScbID, &x.Status, &x.Attempts, &x.AttemptsBase, &x.RequeueCount, &x.LockedBy, &x.LeaseExpires,
			&x.LastCode, &x.LastError, &x.FailureReason, &x.ScbEntryID, &x.ScbStatus, &x.NextAttemptAt, &x.SentAt, &x.AckedAt,
			&x.FinalizedAt, &x.FailedAt, &x.UpdatedAt)
		return x, err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// count is the number of rows with status ("" = all) of scbID ("" = all).
func (f *fixture) count(status, scbID string) int {
	f.t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox
		WHERE ($1 = '' OR status = $1) AND ($2 = '' OR scb_id = $2)`, status, scbID).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// attempt is one row of dual_ledger_outbox_attempts.
type attempt struct {
	OutboxID int64
	Attempt  int
	Worker   string
	Kind     string
	Code     *int
	Outcome  string
	Error    *string
	Started  time.Time
}

func (f *fixture) attempts(outboxID int64) []attempt {
	f.t.Helper()
	rs, err := f.db.Pool.Query(context.Background(), `SELECT outbox_id, attempt, worker_id, kind, status_code, outcome, error, started_at
		FROM dual_ledger_outbox_attempts WHERE $1 = 0 OR outbox_id = $1 ORDER BY id`, outboxID)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (attempt, error) {
		var a attempt
		err := r.Scan(&a.OutboxID, &a.Attempt, &a.Worker, &a.Kind, &a.Code, &a.Outcome, &a.Error, &a.Started)
		return a, err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// kinds lists "kind/outcome" of a row's attempts, in order.
func kinds(as []attempt) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Kind+"/"+a.Outcome)
	}
	return out
}

// fakeClock is the simulator's clock, moved by the test (an entry's ACCEPTED -> POSTED -> FINAL).
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// simSCB is a simulated SCB on loopback. The handler in front of the simulator records every
// POST body per Idempotency-Key and may answer a request itself (intercept).
type simSCB struct {
	id, key string
	srv     *sim.Server
	ts      *httptest.Server
	clock   *fakeClock

	mu        sync.Mutex
	bodies    map[string][][]byte // POST bodies per Idempotency-Key, in arrival order
	posts     map[string]int      // POST requests per key
	intercept func(w http.ResponseWriter, r *http.Request, nth int) bool
}

type simOpts struct {
	initial    string        // ACCEPTED (default), POSTED, FINAL
	finalAfter time.Duration // 0 = FINAL at once
	faults     sim.Faults
}

func startSim(t *testing.T, id, key string, o simOpts) *simSCB {
	t.Helper()
	s := &simSCB{id: id, key: key, clock: &fakeClock{}, bodies: map[string][][]byte{}, posts: map[string]int{}}
	srv, err := sim.New(sim.Config{ID: id, APIKey: key, DataDir: filepath.Join(t.TempDir(), id), InitialStatus: o.initial,
		FinalAfter: o.finalAfter, Faults: o.faults, Seed: 11, Now: s.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	h := srv.Handler()
	s.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/entries" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			k := r.Header.Get("Idempotency-Key")
			s.mu.Lock()
			s.bodies[k] = append(s.bodies[k], body)
			s.posts[k]++
			nth := s.posts[k]
			icpt := s.intercept
			s.mu.Unlock()
			if icpt != nil && icpt(w, r, nth) {
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { s.ts.Close(); _ = srv.Close() })
	return s
}

func (s *simSCB) setIntercept(f func(w http.ResponseWriter, r *http.Request, nth int) bool) {
	s.mu.Lock()
	s.intercept = f
	s.mu.Unlock()
}

func (s *simSCB) postsPerKey() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.posts))
	for k, n := range s.posts {
		out[k] = n
	}
	return out
}

func (s *simSCB) bodiesOf(key string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies[key]...)
}

// client returns a client of the simulator with key (the simulator's own key if "").
func (s *simSCB) client(t *testing.T, key string) *scb.Client {
	t.Helper()
	if key == "" {
		key = s.key
	}
	tr := scb.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := scb.NewClient(scb.Config{ID: s.id, BaseURL: s.ts.URL, APIKey: key, Timeout: 3 * time.Second}, tr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// resolver is a Resolver whose set of configured SCBs a test may change while the worker runs.
type resolver struct {
	mu      sync.Mutex
	clients map[string]SCB
}

func newResolver(clients map[string]SCB) *resolver { return &resolver{clients: clients} }

func (r *resolver) resolve(id string) (SCB, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.clients[id]
	return c, ok
}

func (r *resolver) set(id string, c SCB) {
	r.mu.Lock()
	r.clients[id] = c
	r.mu.Unlock()
}

// testConfig is a worker configuration with short delays.
func testConfig(id string) Config {
	return Config{WorkerID: id, Lease: 10 * time.Second, Backoff: Backoff{Base: 5 * time.Millisecond, Cap: 20 * time.Millisecond},
		MaxAttempts: 10, Concurrency: 8, Idle: 10 * time.Millisecond, PollEvery: 20 * time.Millisecond, Grace: 2 * time.Second}
}

// running is a worker started by startWorker.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startWorker runs a Worker until stop (or the end of the test).
func (f *fixture) startWorker(cfg Config, res Resolver) *running {
	f.t.Helper()
	w := NewWorker(f.store, res, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	f.t.Cleanup(func() { r.stop(f.t) })
	return r
}

// stop cancels the worker and waits for Run to return (at most 15 s).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(15 * time.Second):
			r.err = fmt.Errorf("worker did not stop within 15s")
			t.Error(r.err)
		}
	})
	return r.err
}

// waitFor polls cond every 10 ms until it holds or limit passes.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
