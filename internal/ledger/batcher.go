package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// PosterConfig tunes group commit.
type PosterConfig struct {
	// MaxBatch caps how many single postings go into one transaction (default 1000).
	MaxBatch int
	// MaxDelay is how long the first posting of a batch may wait for company (default 0: a batch
	// leaves as soon as a flusher is free; under load the queue fills while the previous batch
	// commits, so batches grow by themselves and an idle server adds no latency).
	MaxDelay time.Duration
	// Flushers is the number of group-commit batches per ledger in flight at once (default 1:
	// the ledger head serialises them anyway, and one flusher makes the batches larger).
	Flushers int
	// Slots is the number of posting transactions per ledger in flight at once from this
	// process, group commits and PostBatch calls together (default 2: one can parse while the
	// other holds the ledger head).
	Slots int
	// Timeout bounds one batch's database call (default 30s).
	Timeout time.Duration
	// IdleTimeout is how long a ledger's queue and flushers stay without postings before they are
	// released (default 1m): a process that has posted to many ledgers keeps only the busy ones.
	IdleTimeout time.Duration
	// Observe, if set, is told about every batch (for metrics).
	Observe func(ledgerID string, size int, took time.Duration, err error)
}

// ErrPosterClosed is returned by Post after Close.
var ErrPosterClosed = errors.New("poster is shut down")

// Poster posts single entries through per-ledger group commit (docs/design.md §6): concurrent Post calls
// for one ledger share one post_ledger_entries call, so throughput is set by entries per
// transaction rather than by fsyncs per request. Each posting still gets its own result; the batch
// is not atomic, so one rejection does not affect the others.
type Poster struct {
	db  *pgxpool.Pool
	cfg PosterConfig

	// mu guards queues and closed. Post holds it shared while it hands a posting over, Close
	// exclusively while it shuts down, so no posting can be queued after the flushers' last drain.
	mu     sync.RWMutex
	queues map[string]*ledgerQueue
	closed bool
	done   chan struct{} // closed by Close: flushers drain their queue and stop
	wg     sync.WaitGroup
	// flushers counts the running flusher goroutines (idle ledgers must not keep any).
	flushers atomic.Int64
}

// ledgerQueue is one ledger's group-commit queue and its admission slots: at most Slots
// posting transactions per ledger are in flight from this process (group commits and direct
// batches together). The ledger head serialises them in the database anyway; more would only wait
// there, each holding a snapshot that keeps vacuum from pruning the account rows they all update.
type ledgerQueue struct {
	q     chan *postRequest
	slots chan struct{}
}

type postRequest struct {
	ctx   context.Context
	entry EntryInput
	done  chan postReply
}

type postReply struct {
	res Result
	err error
}

// NewPoster starts a group-commit poster on db.
func NewPoster(db *pgxpool.Pool, cfg PosterConfig) *Poster {
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > MaxBatch {
		cfg.MaxBatch = 1000
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = 1
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 2
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	return &Poster{db: db, cfg: cfg, queues: make(map[string]*ledgerQueue), done: make(chan struct{})}
}

// Post posts one entry. A rejection is a Result with its code (Result.Err); an error means the
// posting could not be run, or ctx ended first. If ctx ends after the posting was handed to the
// database it may still commit: retry with the same reference_id to learn the outcome (replayed).
func (p *Poster) Post(ctx context.Context, ledgerID string, e EntryInput) (Result, error) {
	req := &postRequest{ctx: ctx, entry: e, done: make(chan postReply, 1)}
	if err := p.enqueue(ctx, ledgerID, req); err != nil {
		return Result{}, err
	}
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

func (p *Poster) enqueue(ctx context.Context, ledgerID string, req *postRequest) error {
	for {
		if _, err := p.ledger(ledgerID); err != nil {
			return err
		}
		// The queue is looked up and fed under the same read lock: an idle queue is released
		// only under the write lock, so a posting never lands in a queue nobody drains.
		p.mu.RLock()
		lq, ok := p.queues[ledgerID]
		if p.closed {
			p.mu.RUnlock()
			return ErrPosterClosed
		}
		if !ok {
			p.mu.RUnlock()
			continue // released just now: make a new one
		}
		select {
		case lq.q <- req:
			p.mu.RUnlock()
			return nil
		case <-ctx.Done():
			p.mu.RUnlock()
			return ctx.Err()
		}
	}
}

// ledger returns the ledger's queue, starting its flushers on first use.
func (p *Poster) ledger(ledgerID string) (*ledgerQueue, error) {
	p.mu.RLock()
	lq, ok := p.queues[ledgerID]
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		return nil, ErrPosterClosed
	}
	if ok {
		return lq, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPosterClosed
	}
	if lq, ok = p.queues[ledgerID]; !ok {
		lq = &ledgerQueue{q: make(chan *postRequest, 4*p.cfg.MaxBatch), slots: make(chan struct{}, p.cfg.Slots)}
		p.queues[ledgerID] = lq
		for i := 0; i < p.cfg.Flushers; i++ {
			p.wg.Add(1)
			p.flushers.Add(1)
			go p.flush(ledgerID, lq)
		}
	}
	return lq, nil
}

// PostBatch posts a whole batch (see the package function PostBatch) within the ledger's
// admission limit shared with group commit.
func (p *Poster) PostBatch(ctx context.Context, ledgerID string, entries []EntryInput, atomic bool) ([]Result, error) {
	lq, err := p.ledger(ledgerID)
	if err != nil {
		return nil, err
	}
	select {
	case lq.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-lq.slots }()
	return PostBatch(ctx, p.db, ledgerID, entries, atomic)
}

// Close stops accepting postings, lets the queued ones finish and waits for the flushers.
func (p *Poster) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Poster) flush(ledgerID string, lq *ledgerQueue) {
	q := lq.q
	defer p.wg.Done()
	defer p.flushers.Add(-1)
	batch := make([]*postRequest, 0, p.cfg.MaxBatch)
	idle := time.NewTimer(p.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		var first *postRequest
		idle.Reset(p.cfg.IdleTimeout)
		select {
		case first = <-q:
		case <-idle.C:
			if p.release(ledgerID, lq) {
				return
			}
			continue
		case <-p.done:
			// No Post can enqueue any more (Close holds the lock before closing done): drain.
			for {
				select {
				case first = <-q:
				default:
					return
				}
				batch = append(batch[:0], first)
				batch = p.gather(q, batch)
				p.run(ledgerID, lq, batch)
			}
		}
		batch = append(batch[:0], first)
		batch = p.gather(q, batch)
		p.run(ledgerID, lq, batch)
	}
}

// release drops an idle ledger queue, if nothing is queued and no posting is being handed over
// (TryLock: a sender blocked on a full queue holds the read lock, and this flusher is the one
// that would drain it), and reports whether the calling flusher may stop. The first idle flusher
// takes the queue out of the map; from then on no posting can be put in it (Post feeds only the
// queue in the map, under the read lock), so the queue stays empty and its other flushers
// (PosterConfig.Flushers > 1) stop at their own idle timeout. Before, a queue with several
// flushers was never released. The next posting to the ledger makes a new queue.
func (p *Poster) release(ledgerID string, lq *ledgerQueue) bool {
	if !p.mu.TryLock() {
		return false
	}
	defer p.mu.Unlock()
	if p.closed || len(lq.q) > 0 {
		return false
	}
	if p.queues[ledgerID] == lq {
		delete(p.queues, ledgerID)
	}
	return true
}

// gather adds whatever is already queued, then waits up to MaxDelay for more.
func (p *Poster) gather(q chan *postRequest, batch []*postRequest) []*postRequest {
	var timer *time.Timer
	for len(batch) < p.cfg.MaxBatch {
		select {
		case r := <-q:
			batch = append(batch, r)
			continue
		default:
		}
		if p.cfg.MaxDelay <= 0 {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(p.cfg.MaxDelay)
			defer timer.Stop()
		}
		select {
		case r := <-q:
			batch = append(batch, r)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

func (p *Poster) run(ledgerID string, lq *ledgerQueue, batch []*postRequest) {
	// Postings whose caller already gave up are not sent: nobody would learn their outcome.
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- postReply{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	entries := make([]EntryInput, len(live))
	for i, r := range live {
		entries[i] = r.entry
	}
	lq.slots <- struct{}{}
	defer func() { <-lq.slots }()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	start := time.Now()
	results, err := PostBatch(ctx, p.db, ledgerID, entries, false)
	if err != nil && len(entries) > 1 && CodeOf(err) != CodeUnavailable {
		// The database refused the batch as a whole (a payload it could not even parse, say):
		// post each one on its own, so that one caller's bad input cannot fail the others.
		results, err = postEach(ctx, p.db, ledgerID, entries)
	}
	cancel()
	if p.cfg.Observe != nil {
		p.cfg.Observe(ledgerID, len(live), time.Since(start), err)
	}
	for i, r := range live {
		if err != nil {
			r.done <- postReply{err: err}
			continue
		}
		res := asOwnResult(results[i], r.entry.ReferenceID)
		r.done <- postReply{res: res}
	}
}

// postEach posts entries one transaction each; an entry whose own call fails gets a rejection
// result with the error's code.
func postEach(ctx context.Context, db *pgxpool.Pool, ledgerID string, entries []EntryInput) ([]Result, error) {
	out := make([]Result, len(entries))
	for i, e := range entries {
		res, err := PostBatch(ctx, db, ledgerID, []EntryInput{e}, false)
		if err != nil {
			if CodeOf(err) == CodeUnavailable {
				return nil, err
			}
			var le *Error
			if !errors.As(err, &le) {
				le = &Error{Code: CodeInternal, Message: "internal error"}
			}
			out[i] = Result{Index: i, Code: le.Code, Message: le.Message, Details: le.Details}
			continue
		}
		out[i] = res[0]
		out[i].Index = i
	}
	return out, nil
}

// asOwnResult turns one entry's result in a group-commit batch into the answer to its own single
// posting. The batch is the flusher's, not the caller's: a reference used by another caller's
// entry earlier in the same batch is answered as if that entry had committed first (it commits
// with this batch), without the batch position, which means nothing to this caller ("entry 3 of
// this batch" named another client's request).
func asOwnResult(res Result, ref string) Result {
	res.Index = 0
	if res.Code != CodeReferenceConflict || !bytes.Contains(res.Details, []byte(`"batch_entry"`)) {
		return res
	}
	var d struct {
		ExistingEntryID int64    `json:"existing_entry_id"`
		Fields          []string `json:"fields"`
	}
	if err := json.Unmarshal(res.Details, &d); err != nil || d.ExistingEntryID == 0 {
		return res
	}
	// The reference quoted as the database's to_jsonb quotes it (no HTML escaping).
	var q bytes.Buffer
	enc := json.NewEncoder(&q)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(ref)
	res.Message = fmt.Sprintf("reference_id %s was already used for entry %d with a different %s",
		bytes.TrimSpace(q.Bytes()), d.ExistingEntryID, strings.Join(d.Fields, ", "))
	res.Details, _ = json.Marshal(map[string]any{"reference_id": ref, "existing_entry_id": d.ExistingEntryID, "fields": d.Fields})
	return res
}
