package ledger

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// walWaiter releases the results of committed group-commit batches once they are durable. A
// flusher hands its batch over right after the commit (postCommitted) and goes on with the next
// batch while this goroutine waits for the WAL flush; one flush transaction (waitDurable) covers
// every batch handed over before it began, so under load one fsync wait serves the batches of all
// ledgers committed meanwhile, and no flusher ever waits for the disk.
type walWaiter struct {
	db      *pgxpool.Pool
	timeout time.Duration

	mu      sync.Mutex
	pending []func(error)
	closed  bool
	wake    chan struct{} // capacity 1: "something is pending"
	stop    chan struct{} // closed by close: drain and return
	stopped chan struct{} // closed when run has returned
}

func newWALWaiter(db *pgxpool.Pool, timeout time.Duration) *walWaiter {
	w := &walWaiter{db: db, timeout: timeout, wake: make(chan struct{}, 1),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go w.run()
	return w
}

// after calls release once every transaction committed before this call is durable, with nil,
// or with the error that left durability unknown. release runs on the waiter's goroutine and
// must not block.
func (w *walWaiter) after(release func(error)) {
	w.mu.Lock()
	if w.closed {
		// Stopped (a Poster.PostBatch racing Close): wait here instead.
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		defer cancel()
		release(waitDurable(ctx, w.db))
		return
	}
	w.pending = append(w.pending, release)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *walWaiter) run() {
	defer close(w.stopped)
	for {
		stopping := false
		select {
		case <-w.wake:
		case <-w.stop:
			stopping = true
		}
		// Taken before the flush begins: each of these batches committed before it.
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		w.mu.Unlock()
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
			err := waitDurable(ctx, w.db)
			cancel()
			for _, release := range batch {
				release(err)
			}
		}
		if stopping {
			return
		}
	}
}

// close releases what is pending and stops the waiter; what is handed over later waits on the
// caller's goroutine.
func (w *walWaiter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.stopped
}
