package reconcile_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/pg/pgtest"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is a migrated database with ledger MASTER, an issuance account and member banks, each
// with an account and a simulated SCB behind a real HTTP server.
type env struct {
	t       *testing.T
	ctx     context.Context
	d       *pgtest.DB
	pool    *pgxpool.Pool
	sims    map[string]*sim.Server
	clients map[string]*scb.Client
}

func newEnv(t *testing.T, banks ...string) *env {
	t.Helper()
	return newEnvWith(t, nil, banks...)
}

// newEnvWith is newEnv with each simulated SCB's configuration changed by tweak.
func newEnvWith(t *testing.T, tweak func(*sim.Config), banks ...string) *env {
	t.Helper()
	d := pgtest.New(t)
	e := &env{t: t, ctx: context.Background(), d: d, pool: d.Pool, sims: map[string]*sim.Server{}, clients: map[string]*scb.Client{}}
	e.exec(`INSERT INTO ledgers (id) VALUES ('MASTER')`)
	e.exec(`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit) VALUES ('MASTER', 'issuance', 'USD', 'fiat', NULL)`)
	for _, b := range banks {
		e.exec(`INSERT INTO banks (id, name) VALUES ($1, $1)`, b)
		e.exec(`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type) VALUES ('MASTER', $1 || '-USD', $1, 'USD', 'fiat')`, b)
		e.exec(`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type) VALUES ('MASTER', $1 || '-OTHER', $1, 'USD', 'fiat')`, b)
		cfg := sim.Config{ID: b, APIKey: "key-" + b, DataDir: t.TempDir()}
		if tweak != nil {
			tweak(&cfg)
		}
		srv, err := sim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		t.Cleanup(func() { _ = srv.Close() })
		c, err := scb.NewClient(scb.Config{ID: b, BaseURL: ts.URL, APIKey: "key-" + b, Timeout: 5 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.sims[b], e.clients[b] = srv, c
	}
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// post posts ref: issuance -> <bank>-USD, amount.
func (e *env) post(bank, ref, amount string) ledger.Result {
	e.t.Helper()
	res, err := ledger.PostBatch(e.ctx, e.pool, "MASTER", []ledger.EntryInput{{DebitAccountID: "issuance", CreditAccountID: bank + "-USD",
		Amount: amount, CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: ref}}, true)
	if err != nil || !res[0].OK() {
		e.t.Fatalf("post %s: %v %+v", ref, err, res)
	}
	return res[0]
}

// deliver runs a worker until no outbox row is QUEUED, PROCESSING, SENT or ACKED (with
// maxAttempts, a row the SCB refuses ends FAILED).
func (e *env) deliver(maxAttempts int) {
	e.t.Helper()
	e.runWorker(maxAttempts, `status NOT IN ('FINALIZED', 'FAILED')`)
}

// send runs a worker until every row has had the SCB's first answer (none QUEUED or PROCESSING).
func (e *env) send() {
	e.t.Helper()
	e.runWorker(3, `status IN ('QUEUED', 'PROCESSING')`)
}

// runWorker runs a worker until no outbox row matches pending (an SQL condition).
func (e *env) runWorker(maxAttempts int, pending string) {
	e.t.Helper()
	w := outbox.NewWorker(outbox.NewStore(e.d.PoolAs(e.t, "dualledger_worker")), func(id string) (outbox.SCB, bool) {
		c, ok := e.clients[id]
		return c, ok
	}, outbox.Config{WorkerID: "test-worker", MaxAttempts: maxAttempts, Backoff: outbox.Backoff{Base: time.Millisecond, Cap: 5 * time.Millisecond},
		Idle: 10 * time.Millisecond, PollEvery: 20 * time.Millisecond, Lease: 10 * time.Second})
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		stop()
		<-done
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM dual_ledger_outbox WHERE `+pending).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatal("the outbox did not settle within 30s")
}

// failDeliveries runs post with every request to the banks' SCBs failing, delivers with a budget
// of one attempt, then lets the SCBs answer again: what post posted for them ends FAILED.
func (e *env) failDeliveries(banks []string, post func()) {
	e.t.Helper()
	for _, b := range banks {
		if _, err := e.sims[b].SetFaults(sim.FaultsUpdate{ErrorRate: ptr(1.0)}); err != nil {
			e.t.Fatal(err)
		}
	}
	post()
	e.deliver(1)
	for _, b := range banks {
		if _, err := e.sims[b].SetFaults(sim.FaultsUpdate{Reset: true}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) outboxStatus(ref, bank string) string {
	e.t.Helper()
	var s string
	if err := e.pool.QueryRow(e.ctx, `SELECT status FROM dual_ledger_outbox WHERE ledger_id = 'MASTER' AND reference_id = $1 AND scb_id = $2`,
		ref, bank).Scan(&s); err != nil {
		e.t.Fatalf("outbox row %s/%s: %v", ref, bank, err)
	}
	return s
}

func (e *env) tamper(bank string, t sim.Tamper) {
	e.t.Helper()
	if _, err := e.sims[bank].Tamper(t); err != nil {
		e.t.Fatalf("tamper %+v: %v", t, err)
	}
}

func strp(s string) *string { return &s }

// yesterday moves the runs a day back and the outbox rows two (they were delivered the day before
// the first run), as the superuser with triggers off (the state-machine trigger sets updated_at):
// time passing between runs.
func (e *env) yesterday() {
	e.t.Helper()
	conn := e.d.Conn(e.t)
	for _, q := range []string{`SET session_replication_role = replica`,
		`UPDATE dual_ledger_outbox SET updated_at = updated_at - interval '2 days', created_at = created_at - interval '2 days'`,
		`UPDATE reconciliation_runs SET started_at = started_at - interval '1 day', finished_at = finished_at - interval '1 day'`} {
		if _, err := conn.Exec(e.ctx, q); err != nil {
			e.t.Fatalf("%s: %v", q, err)
		}
	}
}
