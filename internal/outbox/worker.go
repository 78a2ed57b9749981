package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"dualledger/internal/scb"
)

// SCB is one member bank's API as the worker uses it (*scb.Client).
type SCB interface {
	Post(ctx context.Context, e scb.Entry) (scb.Response, error)
	GetInLedger(ctx context.Context, ledgerID, referenceID string) (scb.Response, error)
}

// Resolver finds the client of an SCB; false means the SCB is not configured (its rows wait).
type Resolver func(scbID string) (SCB, bool)

// Config of a worker.
type Config struct {
	WorkerID    string        // recorded as locked_by and in every attempt (default host:pid)
	Lease       time.Duration // how long a claimed row is ours (default 30s)
	Backoff     Backoff       // retry delays (default base 1s, cap 5m)
	MaxAttempts int           // attempts before a retryable failure becomes FAILED (default 10)
	Concurrency int           // deliveries and polls in flight per SCB (default 8)
	Idle        time.Duration // pause when nothing was due (default 200ms)
	PollEvery   time.Duration // how often a SENT/ACKED row asks the SCB for news (default 2s)
	Grace       time.Duration // on shutdown, how long in-flight deliveries may finish (default 10s)
	Logger      *slog.Logger
	Metrics     *Metrics // may be nil
	// Problem, if set, says why an SCB without a client has none although settings were given
	// (Clients.Problem); "" means none were given.
	Problem func(scbID string) string
}

func (c *Config) defaults() {
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.Backoff.Base <= 0 {
		c.Backoff.Base = time.Second
	}
	if c.Backoff.Cap <= 0 {
		c.Backoff.Cap = 5 * time.Minute
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Idle <= 0 {
		c.Idle = 200 * time.Millisecond
	}
	if c.PollEvery <= 0 {
		c.PollEvery = 2 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Worker delivers the outbox. Several workers (processes) may run at once against one database:
// claims use FOR UPDATE SKIP LOCKED and every state change is guarded by the lease, so no row is
// ever delivered by two workers at the same time, and a dead worker's rows come back when its
// lease expires.
type Worker struct {
	store   *Store
	resolve Resolver
	cfg     Config

	mu       sync.Mutex
	slots    map[string]chan struct{} // per SCB
	held     map[rowKey]Row           // rows in PROCESSING that we hold
	polling  map[rowKey]struct{}      // rows whose poll is in flight in this worker
	warned   map[string]bool          // unconfigured SCBs already logged
	next     map[string]string        // per SCB and kind of claim: the ledger the next round starts with
	wakeup   chan struct{}
	delivery sync.WaitGroup
}

// rowKey names an outbox row as the functions do: by its ledger and its id.
type rowKey struct {
	ledgerID string
	id       int64
}

func (r Row) key() rowKey { return rowKey{r.LedgerID, r.ID} }

// NewWorker returns a worker; Run starts it.
func NewWorker(store *Store, resolve Resolver, cfg Config) *Worker {
	cfg.defaults()
	return &Worker{store: store, resolve: resolve, cfg: cfg, slots: map[string]chan struct{}{},
		held: map[rowKey]Row{}, polling: map[rowKey]struct{}{}, warned: map[string]bool{}, next: map[string]string{}, wakeup: make(chan struct{}, 1)}
}

// Run delivers until ctx ends, then stops claiming, gives in-flight deliveries Grace to finish,
// cancels the rest and returns their rows to QUEUED.
func (w *Worker) Run(ctx context.Context) error {
	log := w.cfg.Logger.With("worker", w.cfg.WorkerID)
	log.Info("outbox worker started", "lease", w.cfg.Lease, "max_attempts", w.cfg.MaxAttempts, "concurrency", w.cfg.Concurrency)
	// Deliveries run on their own context: a shutdown first lets them finish.
	dctx, cancelDeliveries := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDeliveries()

	reapDone := make(chan struct{})
	go func() {
		defer close(reapDone)
		w.reapLoop(ctx, log)
	}()

	for ctx.Err() == nil {
		scbs, err := w.store.ScbsWithWork(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Error("outbox: list SCBs with work", "err", err)
			w.sleep(ctx, w.cfg.Idle*5)
			continue
		}
		claimed := 0
		for _, id := range scbs {
			client, ok := w.resolve(id)
			if !ok {
				w.warnUnconfigured(log, id)
				continue
			}
			w.configured(id)
			// The claims are per (SCB, ledger): one claim per ledger with due rows, sharing the
			// SCB's free slots among them (dispatch).
			due, err := w.store.DueLedgers(ctx, id)
			if err != nil {
				if ctx.Err() == nil {
					log.Error("outbox: list ledgers with due rows", "scb", id, "err", err)
				}
				continue
			}
			var deliver, poll []string
			for _, d := range due {
				if d.Deliver {
					deliver = append(deliver, d.LedgerID)
				}
				if d.Poll {
					poll = append(poll, d.LedgerID)
				}
			}
			n, err := w.claimAndDeliver(ctx, dctx, log, id, deliver, client)
			if err != nil && ctx.Err() == nil {
				log.Error("outbox: claim", "scb", id, "err", err)
			}
			claimed += n
			// Polls share the SCB's slots with deliveries; a row is polled at most every PollEvery.
			n, err = w.claimAndPoll(ctx, dctx, log, id, poll, client)
			if err != nil && ctx.Err() == nil {
				log.Error("outbox: claim for poll", "scb", id, "err", err)
			}
			claimed += n
		}
		if claimed == 0 {
			w.sleep(ctx, w.cfg.Idle)
		}
	}

	// Shutdown: finish what we hold, within the grace period; then cancel and release the rest.
	done := make(chan struct{})
	go func() { w.delivery.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.Grace):
		cancelDeliveries()
		<-done
	}
	<-reapDone
	w.mu.Lock()
	held := make([]Row, 0, len(w.held))
	for _, r := range w.held {
		held = append(held, r)
	}
	w.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n, err := w.store.Release(rctx, w.cfg.WorkerID, held)
	if err != nil {
		return fmt.Errorf("release held rows on shutdown: %w", err)
	}
	log.Info("outbox worker stopped", "released", n)
	return nil
}

func (w *Worker) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-w.wakeup:
	}
}

func (w *Worker) warnUnconfigured(log *slog.Logger, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.warned[id] {
		w.warned[id] = true
		if p := w.problem(id); p != "" {
			log.Error("outbox: SCB has rows to deliver but its configuration was refused; its rows wait",
				"scb", id, "reason", p)
		} else {
			log.Warn("outbox: SCB has rows to deliver but no API configuration; its rows wait",
				"scb", id, "configure", "SCB_"+scb.EnvName(id)+"_API_URL and SCB_"+scb.EnvName(id)+"_API_KEY")
		}
	}
	if w.cfg.Metrics != nil {
		w.cfg.Metrics.unconfigured.WithLabelValues(id).Set(1)
	}
}

func (w *Worker) problem(id string) string {
	if w.cfg.Problem == nil {
		return ""
	}
	return w.cfg.Problem(id)
}

// configured clears an earlier "not configured" warning once the SCB has a client.
func (w *Worker) configured(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.warned[id] {
		delete(w.warned, id)
		if w.cfg.Metrics != nil {
			w.cfg.Metrics.unconfigured.WithLabelValues(id).Set(0)
		}
	}
}

// slotsFor returns the SCB's semaphore.
func (w *Worker) slotsFor(id string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.slots[id]
	if !ok {
		s = make(chan struct{}, w.cfg.Concurrency)
		w.slots[id] = s
	}
	return s
}

// take reserves up to n free slots of an SCB without waiting.
func take(s chan struct{}, n int) int {
	got := 0
	for got < n {
		select {
		case s <- struct{}{}:
			got++
		default:
			return got
		}
	}
	return got
}

func (w *Worker) claimAndDeliver(ctx, dctx context.Context, log *slog.Logger, id string, ledgers []string, client SCB) (int, error) {
	return w.dispatch(ctx, id, "deliver", ledgers, func(ctx context.Context, ledgerID string, n int) ([]Row, error) {
		return w.store.Claim(ctx, id, ledgerID, w.cfg.WorkerID, w.cfg.Lease, n)
	}, func(r Row) { w.deliver(dctx, log, client, r) })
}

// claimAndPoll polls the SENT/ACKED rows whose next poll is due. A claim moves a row's next poll
// PollEvery ahead, but a poll of a slow SCB can take longer than that (up to the SCB's timeout),
// and the row is then claimed again while its first poll is in flight. This worker never asks an
// SCB about a row twice at once: such a row is dropped from the claim (its slot given back), and
// the poll in flight answers for it. Without this, an SCB answering slowly was asked about each
// row up to timeout/PollEvery times at once, just when it struggled, and a stale answer could be
// recorded after a newer one.
func (w *Worker) claimAndPoll(ctx, dctx context.Context, log *slog.Logger, id string, ledgers []string, client SCB) (int, error) {
	return w.dispatch(ctx, id, "poll", ledgers, func(ctx context.Context, ledgerID string, n int) ([]Row, error) {
		rows, err := w.store.ClaimForPoll(ctx, id, ledgerID, w.cfg.PollEvery, n)
		return w.startPolls(rows), err
	}, func(r Row) {
		defer w.endPoll(r)
		w.poll(dctx, log, client, r)
	})
}

// startPolls returns the rows of a claim that this worker is not polling already, and marks them
// as being polled.
func (w *Worker) startPolls(rows []Row) []Row {
	w.mu.Lock()
	defer w.mu.Unlock()
	fresh := rows[:0]
	for _, r := range rows {
		if _, busy := w.polling[r.key()]; busy {
			w.cfg.Metrics.pollSkipped(r.ScbID)
			continue
		}
		w.polling[r.key()] = struct{}{}
		fresh = append(fresh, r)
	}
	return fresh
}

func (w *Worker) endPoll(r Row) {
	w.mu.Lock()
	delete(w.polling, r.key())
	w.mu.Unlock()
}

// dispatch claims as many rows as the SCB has free slots, one claim per ledger with due rows
// (ledgers, in ledger order), and handles each row in its own goroutine, which gives its slot
// back when done. Held rows (deliveries) are remembered for the shutdown.
//
// Fairness between ledgers: each ledger's claim asks for an equal share of the slots still free
// (rounded up), so a ledger with a large backlog takes no more than its share while another has
// due rows, and what a ledger leaves unused goes to the ledgers after it. The round starts where
// the previous one stopped (the first ledger not asked, or the one after the previous start), so
// when there are more ledgers than free slots, each ledger's turn comes.
func (w *Worker) dispatch(ctx context.Context, id, kind string, ledgers []string, claim func(context.Context, string, int) ([]Row, error), handle func(Row)) (int, error) {
	if len(ledgers) == 0 {
		return 0, nil
	}
	slots := w.slotsFor(id)
	free := take(slots, w.cfg.Concurrency)
	if free == 0 {
		return 0, nil
	}
	cursor := kind + "\x00" + id
	w.mu.Lock()
	start, _ := slices.BinarySearch(ledgers, w.next[cursor])
	w.mu.Unlock()
	start %= len(ledgers)
	order := append(slices.Clone(ledgers[start:]), ledgers[:start]...)
	next := order[1%len(order)]
	claimed := 0
	var errs []error
	for i, ledgerID := range order {
		left := free - claimed
		if left == 0 {
			next = ledgerID
			break
		}
		share := (left + len(order) - i - 1) / (len(order) - i)
		// The claim runs to completion even if shutdown starts meanwhile: a claim committed but
		// never read back would strand its rows in PROCESSING until their lease expired.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		rows, err := claim(cctx, ledgerID, share)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("ledger %s: %w", ledgerID, err))
			continue
		}
		claimed += len(rows)
		if kind == "deliver" {
			w.mu.Lock()
			for _, r := range rows {
				w.held[r.key()] = r
			}
			w.mu.Unlock()
		}
		for _, r := range rows {
			w.delivery.Add(1)
			go func(r Row) {
				defer w.delivery.Done()
				defer func() { <-slots; w.poke() }()
				handle(r)
			}(r)
		}
	}
	for range free - claimed {
		<-slots // give back what we did not use
	}
	w.mu.Lock()
	w.next[cursor] = next
	w.mu.Unlock()
	return claimed, errors.Join(errs...)
}

func (w *Worker) poke() {
	select {
	case w.wakeup <- struct{}{}:
	default:
	}
}

// Entry is the body an outbox row sends: always the same bytes for the same row.
func (r Row) SCBEntry() scb.Entry {
	return scb.Entry{
		ReferenceID: r.ReferenceID, LedgerID: r.LedgerID,
		DebitAccountID: r.Entry.DebitAccountID, CreditAccountID: r.Entry.CreditAccountID,
		Amount: r.Entry.Amount, CurrencyCode: r.Entry.CurrencyCode, AssetType: r.Entry.AssetType,
		TransactionType: r.Entry.TransactionType, DBISEntryID: r.Entry.ID, BlockHash: r.Entry.BlockHash,
		TimestampUTC: r.Entry.TimestampUTC,
	}
}

func (w *Worker) deliver(ctx context.Context, log *slog.Logger, client SCB, r Row) {
	start := time.Now()
	resp, err := client.Post(ctx, r.SCBEntry())
	took := time.Since(start)
	res := Result{Kind: "deliver", Started: start}
	var de *scb.DeliveryError
	switch {
	case err == nil && resp.Status == scb.StatusFinal && resp.SCBEntryID == "":
		// FINAL is recorded only with the SCB's id of the entry (the database refuses it
		// otherwise): an answer without one cannot be trusted as final, and is asked again
		// like any 2xx we cannot use (the idempotency key makes that safe).
		res.StatusCode = resp.StatusCode
		w.retry(&res, r, fmt.Sprintf("%d from %s: FINAL without scb_entry_id", resp.StatusCode, r.ScbID), resp.RetryAfter)
	case err == nil:
		res.StatusCode, res.ScbEntryID, res.ScbStatus = resp.StatusCode, resp.SCBEntryID, resp.Status
		switch resp.Status {
		case scb.StatusFinal:
			res.NewStatus, res.Outcome = Finalized, "final"
		case scb.StatusPosted:
			res.NewStatus, res.Outcome = Acked, "posted"
		default:
			res.NewStatus, res.Outcome, res.ScbStatus = Sent, "accepted", scb.StatusAccepted
		}
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Shutdown cut the request: the row goes back to QUEUED (Run releases it).
		w.cfg.Metrics.attempt(r.ScbID, "deliver", "interrupted", 0, took)
		return
	case errors.As(err, &de) && de.Retryable:
		res.StatusCode = de.StatusCode
		w.retry(&res, r, de.Reason, de.RetryAfter)
	case errors.As(err, &de):
		res.NewStatus, res.Outcome, res.StatusCode, res.Error = Failed, "permanent", de.StatusCode, de.Reason
	default:
		// Not an answer from the SCB (a transport error the client did not classify): retried
		// like a retryable one, within the same budget.
		w.retry(&res, r, scb.Reason(err), 0)
	}
	w.cfg.Metrics.attempt(r.ScbID, "deliver", res.Outcome, res.StatusCode, took)

	fctx, cancel := w.recordContext(ctx)
	defer cancel()
	ferr := w.store.Finish(fctx, r, w.cfg.WorkerID, res)
	w.mu.Lock()
	if h, ok := w.held[r.key()]; ok && h.Attempts == r.Attempts {
		delete(w.held, r.key()) // (a later claim of the same row by this worker stays held)
	}
	w.mu.Unlock()
	switch {
	case errors.Is(ferr, ErrLeaseLost):
		log.Warn("outbox: lease lost before the result was recorded (another worker redelivers, idempotently)",
			"scb", r.ScbID, "row", r.ID, "reference_id", r.ReferenceID)
	case ferr != nil:
		// The row stays PROCESSING under our lease; when it expires it is delivered again.
		log.Error("outbox: record delivery result", "scb", r.ScbID, "row", r.ID, "err", ferr)
	default:
		if res.NewStatus == Finalized {
			w.cfg.Metrics.finalized(r.ScbID, time.Since(r.CreatedAt))
		}
		if res.NewStatus == Failed {
			log.Warn("outbox: row FAILED", "scb", r.ScbID, "row", r.ID, "reference_id", r.ReferenceID, "reason", res.Error)
		}
	}
}

// retry sets res to another attempt after a backoff, or to FAILED when the row's attempt budget
// (MaxAttempts since it was last requeued) is spent.
func (w *Worker) retry(res *Result, r Row, reason string, retryAfter time.Duration) {
	budget := r.Attempts - r.AttemptsBase
	if budget >= w.cfg.MaxAttempts {
		res.NewStatus, res.Outcome = Failed, "exhausted"
		res.Error = fmt.Sprintf("gave up after %d attempts; last: %s", budget, reason)
		return
	}
	res.NewStatus, res.Outcome, res.Error = Queued, "retry", reason
	res.Delay = w.cfg.Backoff.Delay(budget, retryAfter)
}

// recordContext is the context of the database write that records an SCB's answer: it survives
// a shutdown (the answer is worth keeping) but must end well before the lease does (the SCB
// request itself may take up to half the lease, cmd/dualledger checks); a result recorded after
// the lease expired is refused anyway (ErrLeaseLost).
func (w *Worker) recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), min(10*time.Second, w.cfg.Lease/4))
}

func (w *Worker) poll(ctx context.Context, log *slog.Logger, client SCB, r Row) {
	start := time.Now()
	resp, err := client.GetInLedger(ctx, r.LedgerID, r.ReferenceID)
	took := time.Since(start)
	res := Result{Kind: "poll", Started: start}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		var de *scb.DeliveryError
		res.Outcome, res.Error = "poll_error", scb.Reason(err)
		if !errors.As(err, &de) {
			de = nil
		}
		if de != nil {
			res.StatusCode, res.Error = de.StatusCode, de.Reason
			if de.NotFound {
				// The SCB accepted the entry earlier and now does not know it: its ledger lost
				// it. The row stays where it is (SENT/ACKED cannot go back to QUEUED) and the
				// reconciliation report shows it; an operator decides.
				res.Outcome = "unknown_at_scb"
				res.Error = "the SCB no longer knows this entry although it accepted it: " + de.Reason
				log.Error("outbox: SCB lost an accepted entry", "scb", r.ScbID, "row", r.ID, "reference_id", r.ReferenceID)
			}
		}
		w.cfg.Metrics.attempt(r.ScbID, "poll", res.Outcome, res.StatusCode, took)
		// Failed polls back off like deliveries (and honour Retry-After, up to a day), so an SCB
		// outage is not polled for every SENT row every PollEvery. `outbox retry-now` makes such
		// a parked poll due once the SCB is back.
		var retryAfter time.Duration
		if de != nil {
			retryAfter = de.RetryAfter
		}
		res.Delay = max(w.cfg.PollEvery, w.cfg.Backoff.Delay(r.PollFailures+1, retryAfter))
		fctx, cancel := w.recordContext(ctx)
		defer cancel()
		w.recordPollError(fctx, log, r, res)
		return
	}
	res.StatusCode, res.ScbEntryID, res.ScbStatus = resp.StatusCode, resp.SCBEntryID, resp.Status
	// An answer the database would refuse is a failed poll, recorded as such, so that the row
	// backs off and the attempts log shows what the SCB said.
	switch {
	case resp.Status == scb.StatusFinal && resp.SCBEntryID == "":
		w.pollAnswerRefused(ctx, log, r, res, took, "poll_error", fmt.Sprintf("%d from %s: FINAL without scb_entry_id", resp.StatusCode, r.ScbID))
		return
	case resp.SCBEntryID != "" && r.ScbEntryID != "" && resp.SCBEntryID != r.ScbEntryID:
		log.Error("outbox: the SCB names another entry than the one it accepted", "scb", r.ScbID, "row", r.ID,
			"reference_id", r.ReferenceID, "accepted_as", r.ScbEntryID, "now", resp.SCBEntryID)
		w.pollAnswerRefused(ctx, log, r, res, took, "scb_entry_id_mismatch",
			fmt.Sprintf("%d from %s: %s %s, but it accepted the entry as %s", resp.StatusCode, r.ScbID, resp.Status, resp.SCBEntryID, r.ScbEntryID))
		return
	}
	switch resp.Status {
	case scb.StatusFinal:
		res.NewStatus, res.Outcome = Finalized, "final"
	case scb.StatusPosted:
		res.NewStatus, res.Outcome = Acked, "posted"
	default:
		w.cfg.Metrics.attempt(r.ScbID, "poll", "unchanged", res.StatusCode, took)
		fctx, cancel := w.recordContext(ctx)
		defer cancel()
		if err := w.store.PollSucceeded(fctx, r, w.cfg.WorkerID, res); err != nil {
			log.Error("outbox: record poll result", "row", r.ID, "err", err)
		}
		return
	}
	w.cfg.Metrics.attempt(r.ScbID, "poll", res.Outcome, res.StatusCode, took)
	fctx, cancel := w.recordContext(ctx)
	defer cancel()
	changed, err := w.store.Advance(fctx, r, w.cfg.WorkerID, res)
	if err != nil {
		log.Error("outbox: record poll result", "row", r.ID, "err", err)
		return
	}
	switch {
	case changed && res.NewStatus == Finalized:
		w.cfg.Metrics.finalized(r.ScbID, time.Since(r.CreatedAt))
	case !changed:
		// POSTED again for an ACKED row: no news, but an answer all the same.
		if err := w.store.PollSucceeded(fctx, r, w.cfg.WorkerID, res); err != nil {
			log.Error("outbox: record poll result", "row", r.ID, "err", err)
		}
	}
}

// recordPollError records a failed poll, unless the row was delivered again since it was claimed.
func (w *Worker) recordPollError(ctx context.Context, log *slog.Logger, r Row, res Result) {
	switch err := w.store.RecordPollError(ctx, r, w.cfg.WorkerID, res); {
	case errors.Is(err, ErrStalePoll):
		log.Info("outbox: a poll's failure not recorded: the row was delivered again since the poll was claimed",
			"scb", r.ScbID, "row", r.ID, "outcome", res.Outcome)
	case err != nil:
		log.Error("outbox: record poll error", "row", r.ID, "err", err)
	}
}

// pollAnswerRefused records a poll answer that cannot be applied as a failed poll (with backoff).
func (w *Worker) pollAnswerRefused(ctx context.Context, log *slog.Logger, r Row, res Result, took time.Duration, outcome, why string) {
	res.Outcome, res.Error = outcome, why
	res.NewStatus, res.ScbEntryID, res.ScbStatus = "", "", ""
	w.cfg.Metrics.attempt(r.ScbID, "poll", res.Outcome, res.StatusCode, took)
	res.Delay = max(w.cfg.PollEvery, w.cfg.Backoff.Delay(r.PollFailures+1, 0))
	fctx, cancel := w.recordContext(ctx)
	defer cancel()
	w.recordPollError(fctx, log, r, res)
}

func (w *Worker) reapLoop(ctx context.Context, log *slog.Logger) {
	every := w.cfg.Lease / 3
	if every < time.Second {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := w.store.ReapExpiredLeases(ctx, w.cfg.WorkerID, w.cfg.MaxAttempts)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("outbox: reap expired leases", "err", err)
			}
			continue
		}
		if n > 0 {
			log.Warn("outbox: rows of a dead or stuck worker reclaimed (back to QUEUED, or FAILED once their attempt budget is spent)", "rows", n)
			w.cfg.Metrics.reaped(n)
			w.poke()
		}
	}
}
