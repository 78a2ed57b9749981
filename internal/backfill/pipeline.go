package backfill

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Two batches in flight (docs/backfill.md, "Two batches in flight").
//
// A batch's call of post_ledger_entries first parses its rows and looks their references up, then
// takes the ledger's head lock, walks and writes. The head lock is held until the batch commits.
// With one connection the backend did all of it in turn, and the second core mostly waited. Here
// batches alternate between two connections: while batch k walks and writes on one, batch k+1 is
// already sent on the other, so that its parse and look-ups run on a second backend; it then waits
// for the head lock, which batch k releases when it commits. Batch k+2 is sent when k has
// committed, by which time k+1 holds the lock, so the order of the source is kept.
//
// A batch launched with none before it in flight takes the head lock before its parse, and the
// next is launched only then. What guarantees the order is not timing but checks:
//   - a batch whose call returns before its predecessor's got the head lock first (its predecessor
//     was held up before it began); it is rolled back at once and posted again after it;
//   - a batch on the second connection commits only while the lock's session holds the source's
//     lock (commitBatch, errLockLost), checked under the checkpoint's row;
//   - every batch commits only if backfill_checkpoint counts it one batch after the last one this
//     run committed (commitBatch, errOutOfTurn): a guard against any other writer of it.
// Each batch is still one transaction with its checkpoint: a kill at any instant resumes with no
// gap and no duplicate. After any failure the run goes on one batch at a time.

// lane is one batch posting on a connection of its own; posted is closed when its call is done,
// locked when it holds the ledger's head lock (or has failed), for a lane launched with none before
// it.
type lane struct {
	p      prepared
	sb     splitBatch
	conn   *pgxpool.Conn
	tx     pgx.Tx
	locked chan struct{}
	posted chan struct{}
	res    []ledgerResults
	took   time.Duration
	err    error
}

// pipelinable says whether a batch may be posted ahead: its rows (those the transform accepted)
// are all of one ledger (two ledgers' head locks taken in different orders could deadlock).
func pipelinable(sb splitBatch) bool { return len(sb.ledgers) == 1 }

// launch begins a transaction on the connection that busy is not using and posts the batch in it,
// on a goroutine: postLedgers touches nothing else of the runner. A lane launched with no batch
// before it in flight (busy nil) takes the ledger's head lock first, before its parse, so that the
// lane launched after it (once locked is closed) cannot take the lock before it.
func (r *runner) launch(ctx context.Context, p prepared, sb splitBatch, busy *lane) *lane {
	conn := r.conn
	if busy != nil && busy.conn == conn {
		conn = r.second
	}
	l := &lane{p: p, sb: sb, conn: conn, locked: make(chan struct{}), posted: make(chan struct{})}
	go func() {
		defer close(l.posted)
		lockedOnce := sync.OnceFunc(func() { close(l.locked) })
		defer lockedOnce()
		if r.cfg.beforePost != nil {
			r.cfg.beforePost(sb.pos)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			l.err = err
			return
		}
		l.tx = tx
		if busy == nil {
			// (A ledger that does not exist locks nothing; its rows are refused as a whole.)
			if _, err := tx.Exec(ctx, `SELECT 1 FROM ledgers WHERE id = $1 FOR UPDATE`, sb.ledgers[0]); err != nil {
				l.err = err
				return
			}
		}
		lockedOnce()
		l.res, l.took, l.err = postLedgers(ctx, tx, sb)
	}()
	return l
}

// land waits for cur's call and commits it with its checkpoint. If *next (the batch after it,
// posted ahead) returns first, it had taken the head lock first: it is rolled back and handed
// back in *held, to be posted again. On a failure the batch is posted again the usual way
// (r.batch, which retries), after next is rolled back, and the run posts one batch at a time
// from then on.
func (r *runner) land(ctx context.Context, cur *lane, next **lane, held **prepared) error {
	if n := *next; n != nil {
		select {
		case <-cur.posted:
		case <-n.posted:
			if n.err != nil {
				// Not a race: the batch ahead failed (its connection, say). Posted again after
				// this one, and from then on one batch at a time.
				r.log.Warn("a batch posted ahead failed; posting one batch at a time from now on", "position", n.sb.pos, "error", n.err)
				r.pipelined = false
			} else {
				r.log.Debug("a batch took the ledger's head lock before the batch before it; posting it again after", "position", n.sb.pos)
			}
			r.abandon(ctx, n)
			*next, *held = nil, &n.p
			<-cur.posted
		}
	} else {
		<-cur.posted
	}
	r.this.Time.Post += cur.took
	err := cur.err
	if err == nil {
		var lockPID uint32
		if cur.conn != r.conn {
			lockPID = r.conn.Conn().PgConn().PID()
		}
		err = r.commitBatch(ctx, cur.tx, cur.sb, cur.res, lockPID)
	}
	if err == nil {
		return nil
	}
	r.abandon(ctx, cur)
	if n := *next; n != nil {
		r.abandon(ctx, n)
		*next, *held = nil, &n.p
	}
	if errors.Is(err, errOutOfTurn) {
		// Never guessed at: the run stops (FAILED), and a new run resumes from the checkpoint.
		return errors.Join(err, r.rep.discard())
	}
	// Did it commit after all (the connection broke during COMMIT)? The checkpoint says; then its
	// report lines are committed too, so they are cut only if it did not.
	if cur.conn == r.second && cur.conn.Conn().IsClosed() && !r.conn.Conn().IsClosed() {
		// Its backend may still be committing: end it, and read the checkpoint after it is gone.
		r.waitGone(ctx, cur.conn.Conn().PgConn().PID())
	}
	committed, cerr := r.committedAfterAll(ctx, cur.sb)
	if cerr != nil {
		return errors.Join(err, cerr)
	}
	if committed {
		r.log.Warn("the batch had committed before its connection broke", "position", cur.sb.pos)
		return nil
	}
	if derr := r.rep.discard(); derr != nil {
		return errors.Join(err, derr)
	}
	r.log.Warn("a batch posted ahead failed; posting it again, one batch at a time from now on", "position", cur.sb.pos, "error", err)
	r.pipelined = false
	return r.batch(ctx, cur.sb)
}

// abandon waits for a lane's call to end and rolls its transaction back.
func (r *runner) abandon(ctx context.Context, l *lane) {
	if l == nil {
		return
	}
	<-l.posted
	if l.tx != nil {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = l.tx.Rollback(rctx) // a broken connection rolled it back already
		cancel()
	}
}

// waitGone terminates a backend of this run whose connection broke and waits (up to 15 s) until it
// has ended, so that whatever it was committing has committed or rolled back.
func (r *runner) waitGone(ctx context.Context, pid uint32) {
	_, _ = r.conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, int64(pid))
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var alive bool
		if err := r.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int64(pid)).Scan(&alive); err != nil || !alive {
			return
		}
	}
}
