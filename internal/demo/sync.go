package demo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
	"dualledger/internal/settlement"
)

// bankSim is one simulated member bank and the worker's client for it.
type bankSim struct {
	id, key string
	srv     *sim.Server
	http    *http.Server
	url     string
}

// clientSet is the worker's SCB configuration; the demo changes a key on the fly.
type clientSet struct {
	mu      sync.Mutex
	clients map[string]outbox.SCB
}

func (c *clientSet) resolve(id string) (outbox.SCB, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.clients[id]
	return cl, ok
}

func (c *clientSet) set(b *bankSim, key string) error {
	cl, err := scb.NewClient(scb.Config{ID: b.id, BaseURL: b.url, APIKey: key, Timeout: 2 * time.Second}, nil)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.clients[b.id] = cl
	c.mu.Unlock()
	return nil
}

// Sync runs the dual-ledger part of the tour: two simulated SCBs on loopback and the outbox
// worker in this process; settlements go QUEUED -> ... -> FINALIZED and SETTLED; a row that fails
// (wrong API key) is requeued after the fix and delivered.
func (r *Runner) Sync(ctx context.Context) error {
	db := r.DB
	r.step(9, "Two member banks' own ledgers (simulated SCBs on loopback) and the outbox worker")
	dir, err := os.MkdirTemp("", "dualledger-demo-scb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var banks []*bankSim
	for _, id := range []string{"SCB-1", "SCB-2"} {
		b, err := startBank(ctx, id, filepath.Join(dir, id))
		if err != nil {
			return err
		}
		defer b.stop()
		banks = append(banks, b)
		r.say("   %s listening on %s (durable log, idempotent by key; entries turn FINAL after 600 ms)", id, b.url)
	}
	clients := &clientSet{clients: map[string]outbox.SCB{}}
	for _, b := range banks {
		if err := clients.set(b, b.key); err != nil {
			return err
		}
	}
	store := outbox.NewStore(db)
	w := outbox.NewWorker(store, clients.resolve, outbox.Config{
		WorkerID: "demo-worker", Lease: 10 * time.Second, Backoff: outbox.Backoff{Base: 100 * time.Millisecond, Cap: time.Second},
		MaxAttempts: 5, Concurrency: 4, Idle: 50 * time.Millisecond, PollEvery: 150 * time.Millisecond, Grace: 2 * time.Second,
	})
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() { workerDone <- w.Run(wctx) }()
	defer func() {
		stopWorker()
		<-workerDone
	}()
	r.say("   worker started; the postings of steps 2-3 touched both banks' accounts, so their rows are delivered too")

	svc := settlement.New(db, Ledger, func(ctx context.Context, ledgerID string, e ledger.EntryInput) (ledger.Result, error) {
		res, err := ledger.PostBatch(ctx, db, ledgerID, []ledger.EntryInput{e}, false)
		if err != nil {
			return ledger.Result{}, err
		}
		return res[0], nil
	})

	r.step(10, "GSS settlement SCB-1 -> SCB-2: DBIS-first, answered before any SCB has it")
	s, err := svc.Settle(ctx, settlement.Request{NodeID: "SSN-1", SourceBankID: "SCB-1", DestinationBankID: "SCB-2",
		Amount: "50000.00", CurrencyCode: "USD", AssetType: "fiat", ReferenceID: r.Run + "-stl-1"})
	if err != nil {
		return err
	}
	r.say("   %s: entry %d seq %d, %s", s.ReferenceID, s.Entry.ID, s.Entry.Seq, s.Status)
	if err := r.watch(ctx, svc, s.ReferenceID, 15*time.Second); err != nil {
		return err
	}

	r.step(11, "SCB-2's API key is rotated at the bank but not in our configuration: its delivery fails")
	if err := clients.set(banks[1], "an-old-key"); err != nil {
		return err
	}
	s, err = svc.Settle(ctx, settlement.Request{NodeID: "SSN-1", SourceBankID: "SCB-2", DestinationBankID: "SCB-1",
		Amount: "1250.75", CurrencyCode: "USD", AssetType: "fiat", ReferenceID: r.Run + "-stl-2"})
	if err != nil {
		return err
	}
	r.say("   %s: entry %d, %s", s.ReferenceID, s.Entry.ID, s.Status)
	failedID, err := r.waitFailed(ctx, svc, s.ReferenceID, "SCB-2", 10*time.Second)
	if err != nil {
		return err
	}
	list, err := store.List(ctx, outbox.ListFilter{Status: outbox.Failed, ScbID: "SCB-2", Limit: 10})
	if err != nil {
		return err
	}
	for _, row := range list {
		reason := ""
		if row.FailureReason != nil {
			reason = *row.FailureReason
		}
		r.say("   FAILED row %d (%s, %d attempt): %s", row.ID, row.ReferenceID, row.Attempts, reason)
	}

	r.step(12, "Fix the key and requeue the FAILED row (dualledger outbox requeue --id N): delivered, SETTLED")
	if err := clients.set(banks[1], banks[1].key); err != nil {
		return err
	}
	n, err := store.Requeue(ctx, actor, failedID, false, "", false)
	if err != nil {
		return err
	}
	r.say("   requeued %d row", n)
	if err := r.watch(ctx, svc, s.ReferenceID, 15*time.Second); err != nil {
		return err
	}

	r.step(13, "Every SCB posted every key exactly once, and this run's postings are all SETTLED")
	if err := r.waitRunSettled(ctx, 15*time.Second); err != nil {
		return err
	}
	for _, b := range banks {
		st := b.srv.Stats(false)
		r.say("   %s: %d keys, %d posts, %d posted twice, %d requests (%d replays)", b.id, st.Keys, st.Posts, st.DuplicatePosts, st.Requests, st.Replays)
		if st.DuplicatePosts != 0 {
			return fmt.Errorf("demo: %s posted %d keys more than once", b.id, st.DuplicatePosts)
		}
	}
	rep, err := store.Status(ctx)
	if err != nil {
		return err
	}
	for _, sc := range rep.Scbs {
		r.say("   outbox %s: %d FINALIZED, %d QUEUED, %d FAILED", sc.ScbID, sc.ByStatus[outbox.Finalized], sc.ByStatus[outbox.Queued], sc.ByStatus[outbox.Failed])
	}
	r.say("   entries in the ledger: %d SETTLED, %d DBIS_COMMITTED", rep.Settled, rep.DBISCommitted)
	return nil
}

// watch prints each SCB's status as it changes until the settlement is SETTLED.
func (r *Runner) watch(ctx context.Context, svc *settlement.Service, ref string, limit time.Duration) error {
	seen := map[string]string{}
	deadline := time.Now().Add(limit)
	for {
		s, err := svc.Get(ctx, ref)
		if err != nil {
			return err
		}
		for _, x := range s.Sync {
			if seen[x.ScbID] != x.Status {
				path := x.Status
				if prev := seen[x.ScbID]; prev != "" {
					path = prev + " -> " + x.Status
				}
				r.say("   %-6s %s", x.ScbID, path)
				seen[x.ScbID] = x.Status
			}
		}
		if s.Status == settlement.StatusSettled {
			r.say("   %s is %s", ref, s.Status)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s not SETTLED after %s", ref, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(40 * time.Millisecond):
		}
	}
}

func (r *Runner) waitFailed(ctx context.Context, svc *settlement.Service, ref, scbID string, limit time.Duration) (int64, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		s, err := svc.Get(ctx, ref)
		if err != nil {
			return 0, err
		}
		for _, x := range s.Sync {
			if x.ScbID == scbID && x.Status == outbox.Failed {
				return x.OutboxID, nil
			}
		}
		time.Sleep(40 * time.Millisecond)
	}
	return 0, fmt.Errorf("demo: %s's row of %s did not fail", scbID, ref)
}

// waitRunSettled waits until every outbox row of this run's postings is FINALIZED (rows of
// earlier runs or other clients of the database are not the demo's business).
func (r *Runner) waitRunSettled(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		pending, err := outbox.UnfinalizedReferences(ctx, r.DB, Ledger, r.Run+"-")
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: still DBIS_COMMITTED after %s: %s (is another worker with other SCB settings running on this database?)",
				limit, strings.Join(pending, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startBank(ctx context.Context, id, dir string) (*bankSim, error) {
	key := "demo-key-" + strings.ToLower(id)
	srv, err := sim.New(sim.Config{ID: id, APIKey: key, DataDir: dir, InitialStatus: scb.StatusAccepted, FinalAfter: 600 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, err
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the demo notices through failed deliveries
		}
	}()
	return &bankSim{id: id, key: key, srv: srv, http: hs, url: "http://" + ln.Addr().String()}, nil
}

func (b *bankSim) stop() {
	_ = b.http.Close()
	b.srv.Close()
}
