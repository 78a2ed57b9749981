package httpapi

// GSS settlements over HTTP (issue 3): POST answers DBIS-first with the entry and its outbox rows
// written in one transaction; GET shows each SCB's sync and SETTLED once all rows are FINALIZED.
// The rows are driven by the real outbox worker against simulated SCBs on loopback.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dualledger/internal/auth"
	"dualledger/internal/outbox"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// stlSetup: ledger MASTER; banks SCB-1 and SCB-2 with USD settlement accounts; SCB-1 funded with
// 1,000,000.00 from an issuance account (that funding has one outbox row, for SCB-1).
func stlSetup(e *env) {
	e.t.Helper()
	e.createLedger("MASTER")
	for _, b := range []string{"SCB-1", "SCB-2"} {
		e.mustStatus(e.do("POST", "/v1/banks", map[string]any{"id": b, "name": b + " central bank"}), http.StatusCreated)
		e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/accounts", map[string]any{"id": b + "-USD", "currency_code": "USD",
			"asset_type": "fiat", "bank_id": b}), http.StatusCreated)
	}
	e.createAccount("MASTER", "issuance", "USD", "fiat", "unlimited")
	e.mustStatus(e.post("MASTER", entry("fund-1", "issuance", "SCB-1-USD", "1000000.00")), http.StatusCreated)
}

func stlBody(ref, from, to, amount string) map[string]any {
	return map[string]any{"node_id": "node-7", "source_bank_id": from, "destination_bank_id": to, "amount": amount,
		"currency_code": "USD", "asset_type": "fiat", "reference_id": ref}
}

// stlOutboxRows counts the outbox rows of a reference.
func stlOutboxRows(e *env, ref string) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox WHERE ledger_id = 'MASTER' AND reference_id = $1`, ref).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// stlSync returns scb_id -> status of GET /v1/settlements/{ref}'s sync rows.
func stlSync(r *resp) map[string]string {
	out := map[string]string{}
	list, _ := r.get("sync").([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		id, _ := m["scb_id"].(string)
		st, _ := m["status"].(string)
		out[id] = st
	}
	return out
}

func TestSettlementPostedDBISFirstAndReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stlSetup(e)
	r := e.mustStatus(e.do("POST", "/v1/settlements", stlBody("gss-1", "SCB-1", "SCB-2", "250.00")), http.StatusAccepted)
	if r.str("status") != "DBIS_COMMITTED" || r.get("replayed") != false || r.str("reference_id") != "gss-1" || r.str("ledger_id") != "MASTER" {
		t.Fatalf("settlement: %s", r.raw)
	}
	if r.str("entry", "debit_account_id") != "SCB-1-USD" || r.str("entry", "credit_account_id") != "SCB-2-USD" ||
		r.str("entry", "amount") != "250.00" || r.str("entry", "transaction_type") != "GSS_SETTLEMENT" ||
		r.str("entry", "metadata", "node_id") != "node-7" || r.str("entry", "metadata", "source_bank_id") != "SCB-1" ||
		r.str("entry", "metadata", "destination_bank_id") != "SCB-2" || r.str("entry", "currency_code") != "USD" {
		t.Errorf("entry: %s", r.raw)
	}
	if got := stlSync(r); len(got) != 2 || got["SCB-1"] != "QUEUED" || got["SCB-2"] != "QUEUED" {
		t.Errorf("sync %v, want SCB-1 and SCB-2 QUEUED", got)
	}
	entryID := r.get("entry", "id")

	// Entry and both outbox rows were written by one transaction (same xmin; nothing has
	// touched the rows since).
	var sameTx, rows int
	if err := e.db.Pool.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE o.xmin = e.xmin AND o.entry_id = e.id AND o.entry_seq = e.seq), count(*)
		  FROM dual_ledger_outbox o JOIN ledger_entries e ON e.ledger_id = o.ledger_id AND e.reference_id = o.reference_id
		 WHERE o.ledger_id = 'MASTER' AND o.reference_id = 'gss-1'`).Scan(&sameTx, &rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || sameTx != 2 {
		t.Errorf("%d outbox rows, %d written by the entry's transaction; want 2 and 2", rows, sameTx)
	}
	if b := e.balance("MASTER", "SCB-1-USD"); b != "999750.00" {
		t.Errorf("SCB-1-USD balance %s", b)
	}
	if b := e.balance("MASTER", "SCB-2-USD"); b != "250.00" {
		t.Errorf("SCB-2-USD balance %s", b)
	}

	// A retry with the same body is a replay: 200, the same entry, nothing new.
	r2 := e.mustStatus(e.do("POST", "/v1/settlements", stlBody("gss-1", "SCB-1", "SCB-2", "250.00")), http.StatusOK)
	if r2.get("replayed") != true || r2.get("entry", "id") != entryID || r2.str("status") != "DBIS_COMMITTED" || len(stlSync(r2)) != 2 {
		t.Errorf("replay: %s", r2.raw)
	}
	if n := stlOutboxRows(e, "gss-1"); n != 2 {
		t.Errorf("%d outbox rows after the replay, want 2", n)
	}
	if b := e.balance("MASTER", "SCB-2-USD"); b != "250.00" {
		t.Errorf("SCB-2-USD balance %s after the replay", b)
	}

	// The same reference with another amount is a conflict.
	r3 := e.mustStatus(e.do("POST", "/v1/settlements", stlBody("gss-1", "SCB-1", "SCB-2", "251.00")), http.StatusConflict)
	if r3.errCode() != "reference_conflict" {
		t.Errorf("conflict: %s", r3.raw)
	}

	// GET shows the same settlement.
	g := e.mustStatus(e.do("GET", "/v1/settlements/gss-1", nil), http.StatusOK)
	if g.get("entry", "id") != entryID || g.str("status") != "DBIS_COMMITTED" || g.get("replayed") != false {
		t.Errorf("GET: %s", g.raw)
	}
	if r := e.mustStatus(e.do("GET", "/v1/settlements/no-such-ref", nil), http.StatusNotFound); r.errCode() != "not_found" {
		t.Errorf("GET unknown: %s", r.raw)
	}
}

// TestSettlementConcurrentRetries: the same settlement sent eight times at once is posted once:
// one 202, seven 200 replays, one entry, two outbox rows.
func TestSettlementConcurrentRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{GroupCommitDelay: 2 * time.Millisecond})
	stlSetup(e)
	body, _ := json.Marshal(stlBody("gss-conc", "SCB-1", "SCB-2", "10.00"))
	var created, replayed, other atomic.Int32
	var ids sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			res, err := e.client.Post(e.ts.URL+"/v1/settlements", "application/json", bytes.NewReader(body))
			if err != nil {
				other.Add(1)
				return
			}
			defer res.Body.Close()
			var out struct {
				Entry struct{ ID int64 } `json:"entry"`
			}
			_ = json.NewDecoder(res.Body).Decode(&out)
			ids.Store(out.Entry.ID, true)
			switch res.StatusCode {
			case http.StatusAccepted:
				created.Add(1)
			case http.StatusOK:
				replayed.Add(1)
			default:
				other.Add(1)
			}
		})
	}
	wg.Wait()
	n := 0
	ids.Range(func(any, any) bool { n++; return true })
	if created.Load() != 1 || replayed.Load() != 7 || other.Load() != 0 || n != 1 {
		t.Errorf("%d created, %d replayed, %d other, %d distinct entries; want 1, 7, 0, 1", created.Load(), replayed.Load(), other.Load(), n)
	}
	if rows := stlOutboxRows(e, "gss-conc"); rows != 2 {
		t.Errorf("%d outbox rows, want 2", rows)
	}
}

func TestSettlementRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stlSetup(e)
	// SCB-3: registered, no USD account. SCB-4: registered, two USD fiat accounts.
	for _, b := range []string{"SCB-3", "SCB-4"} {
		e.mustStatus(e.do("POST", "/v1/banks", map[string]any{"id": b, "name": b}), http.StatusCreated)
	}
	e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/accounts", map[string]any{"id": "SCB-3-EUR", "currency_code": "EUR", "asset_type": "fiat", "bank_id": "SCB-3"}), http.StatusCreated)
	for _, id := range []string{"SCB-4-USD-a", "SCB-4-USD-b"} {
		e.mustStatus(e.do("POST", "/v1/ledgers/MASTER/accounts", map[string]any{"id": id, "currency_code": "USD", "asset_type": "fiat", "bank_id": "SCB-4"}), http.StatusCreated)
	}
	var outboxBefore int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox`).Scan(&outboxBefore); err != nil {
		t.Fatal(err)
	}
	headBefore := e.headSeq("MASTER")

	without := func(field string) map[string]any {
		b := stlBody("gss-bad", "SCB-1", "SCB-2", "1.00")
		delete(b, field)
		return b
	}
	numberAmount := stlBody("gss-bad", "SCB-1", "SCB-2", "")
	numberAmount["amount"] = 1.5
	controlNode := stlBody("gss-bad", "SCB-1", "SCB-2", "1.00")
	controlNode["node_id"] = "node\n7"
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"unknown source bank", stlBody("gss-bad", "SCB-9", "SCB-2", "1.00"), 404, "unknown_bank", "source_bank_id"},
		{"unknown destination bank", stlBody("gss-bad", "SCB-1", "SCB-9", "1.00"), 404, "unknown_bank", "destination_bank_id"},
		{"no settlement account", stlBody("gss-bad", "SCB-1", "SCB-3", "1.00"), 422, "settlement_account_not_found", "destination_bank_id"},
		{"two settlement accounts", stlBody("gss-bad", "SCB-4", "SCB-1", "1.00"), 422, "ambiguous_settlement_account", "source_bank_id"},
		{"insufficient funds", stlBody("gss-bad", "SCB-2", "SCB-1", "1.00"), 422, "insufficient_funds", ""},
		{"missing node_id", without("node_id"), 400, "invalid_request", "node_id"},
		{"control character in node_id", controlNode, 400, "invalid_request", "node_id"},
		{"missing reference_id", without("reference_id"), 400, "invalid_request", "reference_id"},
		{"missing amount", without("amount"), 400, "invalid_amount", "amount"},
		{"amount as a JSON number", numberAmount, 400, "invalid_amount", "amount"},
		{"same bank twice", stlBody("gss-bad", "SCB-1", "SCB-1", "1.00"), 400, "same_account", ""},
		{"negative amount", stlBody("gss-bad", "SCB-1", "SCB-2", "-1.00"), 400, "invalid_amount", ""},
		{"unknown field", map[string]any{"node_id": "n", "source_bank_id": "SCB-1", "destination_bank_id": "SCB-2", "amount": "1.00",
			"currency_code": "USD", "reference_id": "gss-bad", "priority": "high"}, 400, "invalid_request", ""},
	}
	for _, c := range cases {
		r := e.do("POST", "/v1/settlements", c.body)
		if r.status != c.status || r.errCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, r.status, r.raw, c.status, c.code)
			continue
		}
		if c.field != "" && r.str("error", "details", "field") != c.field {
			t.Errorf("%s: details %s, want field %s", c.name, r.raw, c.field)
		}
	}
	// A member bank's key learns that the destination cannot take the settlement, not which
	// accounts that other bank has (review of 2026-12-02); the operator's admin key above does.
	bank1 := "SCB-1"
	scb1 := e.newKey(auth.Spec{Name: "scb1", Scopes: []string{auth.ScopeSettle}, BankID: &bank1})
	if r := e.as(scb1, "POST", "/v1/settlements", stlBody("gss-bad", "SCB-1", "SCB-4", "1.00")); r.errCode() != "ambiguous_settlement_account" ||
		r.str("error", "details", "field") != "destination_bank_id" || strings.Contains(string(r.raw), "SCB-4-USD") {
		t.Errorf("a member bank's key, another bank's ambiguous accounts: %d %s", r.status, r.raw)
	}
	var outboxAfter int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox`).Scan(&outboxAfter); err != nil {
		t.Fatal(err)
	}
	if outboxAfter != outboxBefore || e.headSeq("MASTER") != headBefore || stlOutboxRows(e, "gss-bad") != 0 {
		t.Errorf("rejected settlements wrote something: outbox %d -> %d rows, head %v -> %v", outboxBefore, outboxAfter, headBefore, e.headSeq("MASTER"))
	}
	if r := e.do("GET", "/v1/settlements/gss-bad", nil); r.status != http.StatusNotFound {
		t.Errorf("GET of a rejected settlement: %d %s", r.status, r.raw)
	}
}

// stlSim is a simulated SCB on loopback with a clock the test moves.
type stlSim struct {
	srv    *sim.Server
	ts     *httptest.Server
	offset atomic.Int64
}

func stlStartSim(t *testing.T, id, initial string, finalAfter time.Duration, faults sim.Faults) *stlSim {
	t.Helper()
	s := &stlSim{}
	srv, err := sim.New(sim.Config{ID: id, APIKey: "key-" + id, DataDir: filepath.Join(t.TempDir(), id), InitialStatus: initial,
		FinalAfter: finalAfter, Faults: faults, Seed: 3, Now: func() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	h := srv.Handler()
	// The body is read before the simulator sees the request: only then does net/http watch the
	// connection and cancel the request's context when the client gives up, which the
	// simulator's latency fault waits on.
	s.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { _ = srv.Close(); s.ts.Close() })
	return s
}

func (s *stlSim) client(t *testing.T, id string) *scb.Client {
	t.Helper()
	tr := scb.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := scb.NewClient(scb.Config{ID: id, BaseURL: s.ts.URL, APIKey: "key-" + id, Timeout: 2 * time.Second}, tr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stlResolver is an outbox.Resolver whose SCBs the test configures while the worker runs.
type stlResolver struct {
	mu sync.Mutex
	m  map[string]outbox.SCB
}

func (r *stlResolver) resolve(id string) (outbox.SCB, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[id]
	return c, ok
}

func (r *stlResolver) set(id string, c outbox.SCB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[id] = c
}

// stlWorker runs an outbox worker in-process on the test's database until the test ends.
func stlWorker(e *env, id string, res outbox.Resolver, grace time.Duration) (stop func()) {
	e.t.Helper()
	w := outbox.NewWorker(outbox.NewStore(workerPool(e.t, e.db)), res, outbox.Config{WorkerID: id, Lease: 10 * time.Second,
		Backoff: outbox.Backoff{Base: 5 * time.Millisecond, Cap: 20 * time.Millisecond}, Idle: 10 * time.Millisecond,
		PollEvery: 20 * time.Millisecond, Grace: grace})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("worker: %v", err)
				}
			case <-time.After(15 * time.Second):
				e.t.Error("worker did not stop")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func stlWait(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSettlementBecomesSettled: the settlement stays DBIS_COMMITTED while any SCB has not
// FINALIZED it (QUEUED at an unconfigured SCB, then SENT and ACKED) and reads SETTLED once both
// rows are FINALIZED.
func TestSettlementBecomesSettled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stlSetup(e)
	s1 := stlStartSim(t, "SCB-1", scb.StatusFinal, 0, sim.Faults{})
	s2 := stlStartSim(t, "SCB-2", scb.StatusAccepted, time.Hour, sim.Faults{})
	e.mustStatus(e.do("POST", "/v1/settlements", stlBody("gss-s", "SCB-1", "SCB-2", "75.25")), http.StatusAccepted)

	res := &stlResolver{m: map[string]outbox.SCB{"SCB-1": s1.client(t, "SCB-1")}} // SCB-2 not configured yet
	stlWorker(e, "w-settle", res.resolve, 2*time.Second)
	get := func() *resp { return e.mustStatus(e.do("GET", "/v1/settlements/gss-s", nil), http.StatusOK) }
	stlWait(t, "SCB-1 FINALIZED", 10*time.Second, func() bool { return stlSync(get())["SCB-1"] == "FINALIZED" })
	time.Sleep(50 * time.Millisecond)
	if g := get(); g.str("status") != "DBIS_COMMITTED" || stlSync(g)["SCB-2"] != "QUEUED" {
		t.Fatalf("one SCB FINALIZED, the other unconfigured: %s", g.raw)
	}

	res.set("SCB-2", s2.client(t, "SCB-2"))
	stlWait(t, "SCB-2 SENT", 10*time.Second, func() bool { return stlSync(get())["SCB-2"] == "SENT" })
	if g := get(); g.str("status") != "DBIS_COMMITTED" {
		t.Fatalf("SCB-2 SENT: %s", g.raw)
	}
	s2.offset.Add(int64(31 * time.Minute))
	stlWait(t, "SCB-2 ACKED", 10*time.Second, func() bool { return stlSync(get())["SCB-2"] == "ACKED" })
	if g := get(); g.str("status") != "DBIS_COMMITTED" {
		t.Fatalf("SCB-2 ACKED: %s", g.raw)
	}
	s2.offset.Add(int64(30 * time.Minute))
	stlWait(t, "SETTLED", 10*time.Second, func() bool { return get().str("status") == "SETTLED" })
	g := get()
	if sy := stlSync(g); sy["SCB-1"] != "FINALIZED" || sy["SCB-2"] != "FINALIZED" {
		t.Errorf("SETTLED with sync %v", sy)
	}
	list, _ := g.get("sync").([]any)
	for _, x := range list {
		m := x.(map[string]any)
		if m["finalized_at"] == nil || m["scb_entry_id"] == nil || m["attempts"] != float64(1) || m["next_attempt_at"] != nil {
			t.Errorf("sync row %v", m)
		}
	}
	// A late retry of the client now answers the settled state.
	if r := e.mustStatus(e.do("POST", "/v1/settlements", stlBody("gss-s", "SCB-1", "SCB-2", "75.25")), http.StatusOK); r.str("status") != "SETTLED" {
		t.Errorf("replay after settlement: %s", r.raw)
	}
}

// TestSettlementAnswersWhileSCBsAreDown: DBIS-first. With a worker running and both SCBs
// hanging (every request held 20 s) or in an outage, POST /v1/settlements answers at once.
func TestSettlementAnswersWhileSCBsAreDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	stlSetup(e)
	hang := stlStartSim(t, "SCB-1", scb.StatusFinal, 0, sim.Faults{Latency: sim.Duration(20 * time.Second)})
	down := stlStartSim(t, "SCB-2", scb.StatusFinal, 0, sim.Faults{OutageUntil: time.Now().Add(time.Hour)})
	res := &stlResolver{m: map[string]outbox.SCB{"SCB-1": hang.client(t, "SCB-1"), "SCB-2": down.client(t, "SCB-2")}}
	stop := stlWorker(e, "w-down", res.resolve, 100*time.Millisecond)
	stlWait(t, "the funding row held by the worker at the hanging SCB", 5*time.Second, func() bool {
		return hang.srv.Stats(false).Requests > 0
	})
	for i, ref := range []string{"gss-d1", "gss-d2", "gss-d3"} {
		start := time.Now()
		r := e.mustStatus(e.do("POST", "/v1/settlements", stlBody(ref, "SCB-1", "SCB-2", "5.00")), http.StatusAccepted)
		if took := time.Since(start); took > time.Second {
			t.Errorf("settlement %d took %s while the SCBs are down", i, took)
		}
		if r.str("status") != "DBIS_COMMITTED" {
			t.Errorf("%s: %s", ref, r.raw)
		}
	}
	stlWait(t, "the SCBs asked for the new settlements", 5*time.Second, func() bool {
		return down.srv.Stats(false).Requests >= 3 && hang.srv.Stats(false).Requests >= 4
	})
	g := e.mustStatus(e.do("GET", "/v1/settlements/gss-d1", nil), http.StatusOK)
	if g.str("status") != "DBIS_COMMITTED" {
		t.Errorf("GET while down: %s", g.raw)
	}
	stop()
	var stuck int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dual_ledger_outbox WHERE status NOT IN ('QUEUED')`).Scan(&stuck); err != nil {
		t.Fatal(err)
	}
	if stuck != 0 {
		t.Errorf("%d rows not QUEUED after the worker stopped with both SCBs down", stuck)
	}
	if st := hang.srv.Stats(false); st.Posts != 0 {
		t.Errorf("the hanging SCB posted %d entries", st.Posts)
	}
}
