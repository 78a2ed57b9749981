// Package backfill imports ledger history (the seed's BACKFILL_STRATEGY, docs/backfill.md): a
// source reader, the transform, and a batch runner that posts through post_ledger_entries and
// commits its checkpoint in the same transaction as each batch, so that a run killed at any
// instant resumes with no gap and no duplicate. It also verifies and rolls back a run.
package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/backfill/source"
	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
	"dualledger/internal/money"
)

// Config is one run.
type Config struct {
	SourceType, SourceID string
	Ledger               string // rows that name no ledger
	BatchSize            int    // rows per batch (1..10000)
	CheckpointInterval   int    // batches between balance audits and progress lines
	MaxRetries           int    // transient errors per batch before giving up
	RetryDelay           time.Duration
	SkipDuplicates       bool
	ValidateBalances     bool
	ErrorsPath           string // the error report; "" = the checkpoint's, else a default
	MaxErrors            int64  // rejected rows of the source before the run fails; < 0: no limit
	Metadata             map[string]any
	// Workers transform a batch's rows in parallel; posting stays in source order, batches
	// committing one after the other, so a row is judged exactly as if posted alone at its place
	// in the source.
	Workers int
	// Progress is called after every committed batch.
	Progress func(Stats)
	Logger   *slog.Logger

	// beforePost, in tests, runs on a batch's goroutine before it begins (pipeline.go).
	beforePost func(pos string)
	// beforeAudit, in tests, runs before each periodic audit; beforeFinalAudit before the audit
	// at the end of the run.
	beforeAudit, beforeFinalAudit func()
}

// Stats are a run's counters.
type Stats struct {
	Processed  int64  `json:"processed"`
	Successful int64  `json:"successful"`
	Failed     int64  `json:"failed"`
	Skipped    int64  `json:"skipped"`
	Batches    int64  `json:"batches"`
	Position   string `json:"position"`
	// Source progress (bytes of a file, rows of a table); Total 0 when unknown.
	Done        int64 `json:"-"`
	Total       int64 `json:"-"`
	DoneAtStart int64 `json:"-"`
	// Where the time went (this run).
	Time Timings `json:"time"`
}

// Timings split a run's time by stage. Reading and transforming run one batch ahead, at the same
// time as the posting of the batch before, so the stages add up to more than the wall-clock time.
type Timings struct {
	Read       time.Duration `json:"read_ns"`       // reading the source (overlaps the posting)
	Transform  time.Duration `json:"transform_ns"`  // transform and validation in Go (overlaps the posting)
	Post       time.Duration `json:"post_ns"`       // post_ledger_entries calls
	Checkpoint time.Duration `json:"checkpoint_ns"` // report write and sync, backfill_checkpoint, commit
	Audit      time.Duration `json:"audit_ns"`      // balance audits
}

// Outcome of a run.
type Outcome struct {
	Checkpoint Checkpoint `json:"checkpoint"`
	ThisRun    Stats      `json:"this_run"`
	ErrorsFile string     `json:"errors_file"`
	// AlreadyCompleted: the source's run had completed before; nothing was posted.
	AlreadyCompleted bool `json:"already_completed"`
	// Paused: stopped by a signal at a batch boundary (status PAUSED).
	Paused bool `json:"paused"`
	// MaxErrorsExceeded: more rows were rejected than --max-errors allows (status FAILED).
	MaxErrorsExceeded bool `json:"max_errors_exceeded"`
	// BalanceProblems: the audit of the touched accounts found these (status FAILED).
	BalanceProblems []string `json:"balance_problems,omitempty"`
	// CutReportBytes: bytes of an uncommitted batch cut from the report's end on resume.
	CutReportBytes int64 `json:"cut_report_bytes,omitempty"`
}

// ErrLocked: another process runs (or rolls back) this source now.
var ErrLocked = errors.New("another backfill of this source is running")

// ErrRolledBack: the source's run was rolled back; it cannot post again.
var ErrRolledBack = errors.New("this source's run was rolled back")

// Opener opens the source after a checkpoint position ("" for the start).
type Opener func(ctx context.Context, after string) (source.Reader, error)

// runner is the state of one run.
type runner struct {
	pool   *pgxpool.Pool
	conn   *pgxpool.Conn // holds the lock; every batch runs on it, or on second (pipeline.go)
	second *pgxpool.Conn // the other connection of two batches in flight; nil: one at a time
	// pipelined: batches are posted one ahead on second (until a failure: then one at a time).
	pipelined bool
	cfg       Config
	tr        *transform.Transformer
	rep       *report
	cp        Checkpoint
	this      Stats
	log       *slog.Logger
	touch     map[string]map[string]bool // ledger -> accounts touched since the last audit
	allTch    map[string]map[string]bool // ledger -> accounts touched by this run
	resumed   bool                       // earlier runs of the source committed batches
	bases     map[string]*auditBase      // ledger -> balances at the last periodic audit
}

// setUpSession names a session of this run in pg_stat_activity (role: "" for the lock's, e.g.
// "ahead" for the second connection) and makes its backend check every second that the client is
// still there, so that a statement of a killed run ends (and its batch rolls back) within a
// second rather than when it next talks to the client.
func setUpSession(ctx context.Context, conn *pgxpool.Conn, role string) error {
	host, _ := os.Hostname()
	app := fmt.Sprintf("dualledger backfill pid=%d host=%s", os.Getpid(), host)
	if role != "" {
		app += " (" + role + ")"
	}
	if _, err := conn.Exec(ctx, `SELECT set_config('application_name', $1, false), set_config('client_connection_check_interval', '1s', false)`, app); err != nil {
		return fmt.Errorf("set up the backfill session: %w", err)
	}
	return nil
}

// lock takes the source's advisory lock on a connection of its own, which then runs the whole
// job: the lock lasts exactly as long as the connection's session.
//
// A process killed with -9 closes its socket, but a backend in the middle of a statement notices
// only when it next talks to the client. client_connection_check_interval makes it look every
// second, abort the statement (the batch rolls back) and end the session, which drops the lock.
// Until then, a new run that finds the lock held by a process of this host that no longer exists
// waits for it (lockWait), instead of refusing.
//
// oldBackend, when not 0, is the server process of this run's own session that just broke: the
// new one waits for it to end too.
func lock(ctx context.Context, pool *pgxpool.Pool, sourceType, sourceID string, oldBackend uint32) (*pgxpool.Conn, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	host, _ := os.Hostname()
	if err := setUpSession(ctx, conn, ""); err != nil {
		conn.Release()
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	for {
		var ok bool
		var holder *string
		var holderPID *int64
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+lockKeySQL+`), h.application_name, h.pid FROM (SELECT 1) x LEFT JOIN LATERAL (SELECT a.application_name, a.pid::bigint AS pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted AND l.pid <> pg_backend_pid()
				  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
				  AND ((l.classid::bigint << 32) | l.objid::bigint) = `+lockKeySQL+` LIMIT 1) h ON true`, sourceType, sourceID).Scan(&ok, &holder, &holderPID)
		if err != nil {
			conn.Release()
			return nil, fmt.Errorf("take the backfill lock: %w", err)
		}
		if ok {
			return conn, nil
		}
		ours := oldBackend != 0 && holderPID != nil && uint32(*holderPID) == oldBackend
		if !(ours || holderGone(holder, host)) || time.Now().After(deadline) {
			conn.Release()
			who := "another process"
			if holder != nil && *holder != "" {
				who = *holder
			}
			return nil, fmt.Errorf("%w: %s/%s is held by %s (see `dualledger backfill status`)", ErrLocked, sourceType, sourceID, who)
		}
		select {
		case <-ctx.Done():
			conn.Release()
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lockWait bounds the wait for the session of a dead process to end (a few times
// client_connection_check_interval).
const lockWait = 15 * time.Second

// holderGone reports whether the lock's holder is a backfill process of this host that no
// longer exists.
func holderGone(app *string, host string) bool {
	if app == nil {
		return false
	}
	var pid int
	var h string
	if n, _ := fmt.Sscanf(*app, "dualledger backfill pid=%d host=%s", &pid, &h); n != 2 || h != host || pid <= 0 {
		return false
	}
	return pid != os.Getpid() && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func unlock(conn *pgxpool.Conn, sourceType, sourceID string) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock(`+lockKeySQL+`)`, sourceType, sourceID); err != nil {
		// The session's lock ends with the connection: close it rather than return it locked.
		_ = conn.Conn().Close(ctx)
	}
	conn.Release()
}

// Run imports a source: from its checkpoint to its end, in batches, each committed with its
// checkpoint. It stops at a batch boundary when ctx is cancelled (PAUSED).
func Run(ctx context.Context, pool *pgxpool.Pool, open Opener, tr *transform.Transformer, cfg Config) (Outcome, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize < 1 || cfg.BatchSize > ledger.MaxBatch {
		return Outcome{}, fmt.Errorf("batch size must be 1 to %d", ledger.MaxBatch)
	}
	if cfg.CheckpointInterval < 1 {
		cfg.CheckpointInterval = 1
	}
	conn, err := lock(ctx, pool, cfg.SourceType, cfg.SourceID, 0)
	if err != nil {
		return Outcome{}, err
	}
	r := &runner{pool: pool, conn: conn, cfg: cfg, tr: tr, log: cfg.Logger,
		touch: map[string]map[string]bool{}, allTch: map[string]map[string]bool{}, bases: map[string]*auditBase{}}
	defer func() { unlock(r.conn, cfg.SourceType, cfg.SourceID) }()
	return r.run(ctx, open)
}

func (r *runner) run(ctx context.Context, open Opener) (Outcome, error) {
	cfg := r.cfg
	bg := context.WithoutCancel(ctx) // a batch, once begun, ends (commits or rolls back) whatever the signal
	meta, _ := json.Marshal(cfg.Metadata)
	var errorsPath *string
	if cfg.ErrorsPath != "" {
		errorsPath = &cfg.ErrorsPath
	}
	cp, err := scanCheckpoint(r.conn.QueryRow(bg, `SELECT `+checkpointColumns+` FROM backfill_start($1, $2, $3, $4, $5)`,
		cfg.SourceType, cfg.SourceID, cfg.Ledger, errorsPath, meta))
	if err != nil {
		return Outcome{}, fmt.Errorf("start the checkpoint: %w", err)
	}
	r.cp = cp
	r.resumed = cp.Batches > 0
	out := Outcome{Checkpoint: cp}
	if cp.ErrorsFile != nil {
		out.ErrorsFile = *cp.ErrorsFile
	}
	if cp.RollbackStatus != nil {
		return out, fmt.Errorf("%w (rollback %s): import the corrected data under a new --source-id", ErrRolledBack, *cp.RollbackStatus)
	}
	if cp.Status == StatusCompleted {
		out.AlreadyCompleted = true
		return out, nil
	}
	if cfg.ErrorsPath != "" && cp.ErrorsFile != nil && *cp.ErrorsFile != cfg.ErrorsPath {
		return out, r.fail(bg, fmt.Errorf("--errors %s differs from this source's error report %s: resume with the same report (or leave --errors out)", cfg.ErrorsPath, *cp.ErrorsFile))
	}
	if cp.ErrorsFile == nil {
		return out, r.fail(bg, errors.New("no error report file: give --errors"))
	}
	rep, cut, err := openReport(*cp.ErrorsFile, cp.ErrorsOffset, cfg.SourceType, cfg.SourceID, recordedReportSum(cp.Metadata))
	if err != nil {
		return out, r.fail(bg, err)
	}
	defer rep.close()
	r.rep = rep
	out.CutReportBytes = cut
	if cut > 0 {
		r.log.Info("cut the error report's lines of a batch that did not commit", "bytes", cut)
	}
	if r.overMaxErrors() {
		// The count covers every run of the source: a run resumed with the same limit would
		// otherwise post one more batch each time before stopping again.
		return r.stopOverMaxErrors(bg, out)
	}
	after := ""
	if cp.LastProcessedID != nil {
		after = *cp.LastProcessedID
	}
	src, err := open(ctx, after)
	if err != nil {
		return out, r.fail(bg, fmt.Errorf("open the source: %w", err))
	}
	readerOwnsSource := false
	defer func() {
		if !readerOwnsSource {
			src.Close()
		}
	}()
	if h, ok := src.(interface{ Header() []string }); ok {
		if err := r.tr.CheckColumns(h.Header()); err != nil {
			return out, r.fail(bg, err)
		}
	}
	r.this.DoneAtStart, _ = src.Progress()
	if fp, ok := src.(source.Fingerprinter); ok && after != "" {
		var meta map[string]any
		_ = json.Unmarshal(cp.Metadata, &meta)
		if want, _ := meta["source_fingerprint"].(string); want != "" && want != fp.Fingerprint() {
			return out, r.fail(bg, fmt.Errorf("%w: the first %s rows of the source are not the ones the run read (a row was inserted, removed or edited before the checkpoint): resuming by position would skip or repeat rows; restore the original source, or import the new one under a new --source-id",
				source.ErrBadPosition, after))
		}
	}
	// The next batch is read and transformed while this one posts, by a goroutine one batch
	// ahead that from now on owns the source and closes it when it stops. The run does not wait
	// for it: a source that blocks (a pipe waiting for rows) must not keep a paused or failed run
	// from ending; what the reader took beyond the last checkpoint is read again on resume.
	ahead := make(chan prepared, 1)
	pctx, stopReading := context.WithCancel(bg)
	defer stopReading()
	readerOwnsSource = true
	go func() {
		defer src.Close()
		r.prepare(pctx, src, ahead)
	}()

	// Two batches in flight (pipeline.go) on a second connection, when the pool has one to spare.
	actx, cancelAcquire := context.WithTimeout(bg, 10*time.Second)
	second, err := r.pool.Acquire(actx)
	cancelAcquire()
	if err != nil {
		r.log.Warn("no second connection: posting one batch at a time", "error", err)
	} else if err := setUpSession(bg, second, "ahead"); err != nil {
		second.Release()
		r.log.Warn("no second connection: posting one batch at a time", "error", err)
	} else {
		r.second, r.pipelined = second, true
		defer func() { r.second.Release() }()
	}
	var (
		next    *lane     // the batch after the current one, posting ahead
		held    *prepared // a batch read but not posted yet (it could not go ahead)
		discard = map[*pgxpool.Conn]bool{}
	)
	// Every way out of the loop leaves no batch in flight (finish, fail and the final audit use
	// the lock's connection).
	defer func() { r.abandon(bg, next) }()
	for {
		if ctx.Err() != nil {
			r.abandon(bg, next)
			next = nil
			cp, err := r.finish(bg, StatusPaused, "stopped by a signal; run the same command to resume")
			out.Checkpoint, out.ThisRun, out.Paused = cp, r.this, true
			return out, err
		}
		var p prepared
		cur := next
		next = nil
		switch {
		case cur != nil:
			p = cur.p
		case held != nil:
			p, held = *held, nil
		default:
			var ok bool
			if p, ok = r.take(ctx, ahead); !ok {
				continue // a signal while the reader waits for rows (a pipe): paused above
			}
		}
		if p.err != nil {
			return r.outcome(out), r.fail(bg, fmt.Errorf("read the source after position %s: %w", r.position(), p.err))
		}
		if len(p.recs) > 0 {
			var err error
			var sb splitBatch
			if cur != nil {
				sb = cur.sb
			} else if sb = r.split(p); r.pipelined && pipelinable(sb) {
				cur = r.launch(bg, p, sb, nil)
				<-cur.locked // the batch after it may only go once it holds the head lock
			}
			if cur != nil {
				// The batch after this one goes ahead now, on the other connection, if the reader
				// has it ready: a source that waits for rows (a pipe) must not keep this batch
				// from committing.
				if q, ok := r.tryTake(ahead, p.eof); ok {
					if q.err == nil && len(q.recs) > 0 && r.pipelined {
						if qb := r.split(q); pipelinable(qb) && qb.ledgers[0] == cur.sb.ledgers[0] {
							next = r.launch(bg, q, qb, cur)
						}
					}
					if next == nil {
						held = &q
					}
				}
				err = r.land(bg, cur, &next, &held)
			} else {
				err = r.batch(bg, sb)
			}
			// The connection no batch is using now (a failure may have replaced r.conn).
			free := r.conn
			if next != nil {
				free = cur.conn
			}
			if err != nil {
				r.abandon(bg, next)
				next = nil
				return r.outcome(out), r.fail(bg, err)
			}
			r.this.Done, r.this.Total = p.done, p.total
			if cfg.Progress != nil {
				cfg.Progress(r.this)
			}
			if r.overMaxErrors() {
				r.abandon(bg, next)
				next = nil
				return r.stopOverMaxErrors(bg, out)
			}
			if b := r.cp.Batches; b&(b-1) == 0 || b%int64(cfg.CheckpointInterval) == 0 {
				// The posting function's statements were planned (and their plans cached for
				// this session) when the run's tables were smaller. A plan that suits a table of
				// a few pages (a scan of the ledger's entries per reference, say) would otherwise
				// stay until an ANALYZE invalidates it; with autovacuum late or off, an import
				// into a new ledger then slowed down with every batch (485 rows/s over 20,000
				// rows, docs/benchmarks.md). Dropping the plans after batches 1, 2, 4, 8, ...
				// and every --checkpoint-interval lets the next batch plan against the tables as
				// they are now, for a few milliseconds each time; on both connections, each
				// when it is free.
				discard[r.conn] = true
				if r.second != nil {
					discard[r.second] = true
				}
			}
			for _, c := range []*pgxpool.Conn{r.conn, r.second} {
				if c == nil || !discard[c] || (c != free && next != nil) {
					continue
				}
				if c.Conn().IsClosed() {
					// A second connection that broke (the run posts one batch at a time since):
					// nothing to discard on it, and nothing to warn about at every batch.
					delete(discard, c)
					continue
				}
				delete(discard, c)
				// Best effort: a broken connection is the next batch's to notice and recover.
				if _, err := c.Exec(bg, "DISCARD PLANS"); err != nil {
					r.log.Warn("could not discard the session's cached plans", "error", err)
				}
			}
			if cfg.ValidateBalances && r.cp.Batches%int64(cfg.CheckpointInterval) == 0 {
				if cfg.beforeAudit != nil {
					cfg.beforeAudit()
				}
				t0 := time.Now()
				probs, err := r.auditSince(bg, free)
				r.this.Time.Audit += time.Since(t0)
				if err != nil || len(probs) > 0 {
					r.abandon(bg, next)
					next = nil
					return r.auditFailed(bg, out, probs, err)
				}
			}
		}
		if p.eof {
			break
		}
	}
	if cfg.ValidateBalances {
		if cfg.beforeFinalAudit != nil {
			cfg.beforeFinalAudit()
		}
		t0 := time.Now()
		probs, err := r.finalAudit(bg)
		r.this.Time.Audit += time.Since(t0)
		if err != nil || len(probs) > 0 {
			return r.auditFailed(bg, out, probs, err)
		}
	}
	cp, err = r.finish(bg, StatusCompleted, "")
	out.Checkpoint, out.ThisRun = cp, r.this
	return out, err
}

// take receives the next batch from the reader, and counts its reading and transform time. It
// gives up (false) when ctx ends first: a source that waits for rows (a pipe, a slow API) must not
// keep a signal from pausing the run.
func (r *runner) take(ctx context.Context, ahead <-chan prepared) (prepared, bool) {
	select {
	case p := <-ahead:
		r.this.Time.Read += p.read
		r.this.Time.Transform += p.transform
		return p, true
	case <-ctx.Done():
		return prepared{}, false
	}
}

// tryTake is take if the reader has a batch ready (never after the last one, eof).
func (r *runner) tryTake(ahead <-chan prepared, eof bool) (prepared, bool) {
	if eof {
		return prepared{}, false
	}
	select {
	case p := <-ahead:
		r.this.Time.Read += p.read
		r.this.Time.Transform += p.transform
		return p, true
	default:
		return prepared{}, false
	}
}

func (r *runner) outcome(out Outcome) Outcome {
	out.Checkpoint, out.ThisRun = r.cp, r.this
	return out
}

func (r *runner) auditFailed(ctx context.Context, out Outcome, probs []string, err error) (Outcome, error) {
	if err != nil {
		return r.outcome(out), r.fail(ctx, fmt.Errorf("audit the touched accounts: %w", err))
	}
	out.BalanceProblems = probs
	cp, ferr := r.finish(ctx, StatusFailed, fmt.Sprintf("balance audit: %d account(s) do not match their entries: %s", len(probs), probs[0]))
	out.Checkpoint, out.ThisRun = cp, r.this
	return out, ferr
}

func (r *runner) position() string {
	if r.cp.LastProcessedID == nil {
		return "(start)"
	}
	return *r.cp.LastProcessedID
}

// prepared is a batch read and transformed ahead of its posting, with what the source said
// right after it was read (its progress and, for a Fingerprinter, the digest of the rows so far:
// the checkpoint records the digest of exactly the rows it covers).
type prepared struct {
	recs            []source.Record
	rows            []transform.Row
	rejs            []*ledger.Error
	eof             bool
	err             error // reading failed after recs, which are not posted
	done, total     int64
	fingerprint     string
	read, transform time.Duration
}

// prepare reads and transforms batches into out, one ahead of the posting, until the end of
// the source, a read error or ctx's end; it is the only reader of src while the run lasts.
func (r *runner) prepare(ctx context.Context, src source.Reader, out chan<- prepared) {
	for {
		t0 := time.Now()
		recs, eof, err := readBatch(ctx, src, r.cfg.BatchSize)
		p := prepared{recs: recs, eof: eof, err: err, read: time.Since(t0)}
		p.done, p.total = src.Progress()
		if fp, ok := src.(source.Fingerprinter); ok {
			p.fingerprint = fp.Fingerprint()
		}
		if err == nil && len(recs) > 0 {
			t1 := time.Now()
			p.rows, p.rejs = transformAll(r.tr, recs, r.cfg.Workers)
			p.transform = time.Since(t1)
		}
		select {
		case out <- p:
		case <-ctx.Done():
			return
		}
		if eof || err != nil {
			return
		}
	}
}

// readBatch reads up to n records.
func readBatch(ctx context.Context, src source.Reader, n int) ([]source.Record, bool, error) {
	recs := make([]source.Record, 0, n)
	for len(recs) < n {
		rec, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			return recs, true, nil
		}
		if err != nil {
			return recs, false, err
		}
		recs = append(recs, rec)
	}
	return recs, false, nil
}

// overMaxErrors says whether the source's rejected rows, over all its runs, are more than
// --max-errors allows.
func (r *runner) overMaxErrors() bool {
	return r.cfg.MaxErrors >= 0 && r.cp.TotalFailed > r.cfg.MaxErrors
}

// stopOverMaxErrors ends the run FAILED for --max-errors.
func (r *runner) stopOverMaxErrors(ctx context.Context, out Outcome) (Outcome, error) {
	out.MaxErrorsExceeded = true
	cp, err := r.finish(ctx, StatusFailed, fmt.Sprintf("%d rows rejected, more than --max-errors %d (see %s); to go on, fix the source or run again with a higher --max-errors",
		r.cp.TotalFailed, r.cfg.MaxErrors, r.rep.f.Name()))
	out.Checkpoint, out.ThisRun = cp, r.this
	return out, err
}

// finish records the run's end status.
func (r *runner) finish(ctx context.Context, status, msg string) (Checkpoint, error) {
	var m *string
	if msg != "" {
		m = &msg
	}
	cp, err := scanCheckpoint(r.conn.QueryRow(ctx, `SELECT `+checkpointColumns+` FROM backfill_finish($1, $2, $3, $4)`,
		r.cfg.SourceType, r.cfg.SourceID, status, m))
	if err != nil {
		return r.cp, fmt.Errorf("record %s: %w", status, err)
	}
	r.cp = cp
	return cp, nil
}

// fail records FAILED with the error (when the database can still be reached) and returns err.
// If the lock's connection is the one that broke (during an audit, say), it takes the lock again
// first: a run that has ended must not leave its source showing IN_PROGRESS.
func (r *runner) fail(ctx context.Context, err error) error {
	if r.conn == nil {
		return err
	}
	if rerr := r.relock(ctx); rerr != nil {
		r.log.Warn("could not record FAILED: the lock's connection broke and the lock could not be taken again", "error", rerr)
		return err
	}
	if _, ferr := r.finish(ctx, StatusFailed, err.Error()); ferr != nil {
		r.log.Warn("could not record FAILED", "error", ferr)
	}
	return err
}

// pending is one transformed row of a batch.
type pending struct {
	idx int
	rec source.Record
	row transform.Row
	ord int64 // the dry run's count of rows before this one
}

// splitBatch is a transformed batch as the posting needs it: its rows by ledger (ledgers in the
// order of their first row), the report lines of the rows the transform rejected, and what its
// checkpoint records.
type splitBatch struct {
	ledgers     []string
	byLed       map[string][]pending
	goLines     []ReportLine
	goRejected  int64
	processed   int64
	pos         string
	lastTS      *time.Time
	fingerprint string
}

func (r *runner) split(p prepared) splitBatch {
	sb := splitBatch{byLed: map[string][]pending{}, processed: int64(len(p.recs)), pos: p.recs[len(p.recs)-1].Pos,
		fingerprint: p.fingerprint}
	for i, rec := range p.recs {
		row, rej := p.rows[i], p.rejs[i]
		if rej != nil {
			l := r.line(rec, row, rej.Code, rej.Message, rej.Details)
			l.idx = i
			sb.goLines = append(sb.goLines, l)
			continue
		}
		if row.Time != nil {
			sb.lastTS = row.Time
		}
		if _, ok := sb.byLed[row.LedgerID]; !ok {
			sb.ledgers = append(sb.ledgers, row.LedgerID)
		}
		sb.byLed[row.LedgerID] = append(sb.byLed[row.LedgerID], pending{idx: i, rec: rec, row: row})
	}
	sb.goRejected = int64(len(sb.goLines))
	return sb
}

// batch posts and checkpoints one transformed batch, retrying transient failures.
func (r *runner) batch(ctx context.Context, sb splitBatch) error {
	pos := sb.pos
	for attempt := 1; ; attempt++ {
		err := r.post(ctx, sb)
		if err == nil {
			return nil
		}
		committed, rerr := r.committedAfterAll(ctx, sb)
		if rerr != nil {
			return fmt.Errorf("batch after position %s: %w (learning whether it committed: %v)", r.position(), err, rerr)
		}
		if committed {
			r.log.Warn("the batch had committed before the connection broke", "position", pos)
			return nil
		}
		if derr := r.rep.discard(); derr != nil {
			return fmt.Errorf("%w (and the error report: %v)", err, derr)
		}
		if !transient(err, r.conn) || attempt > r.cfg.MaxRetries {
			return fmt.Errorf("batch after position %s: %w", r.position(), err)
		}
		delay := r.cfg.RetryDelay << (attempt - 1)
		r.log.Warn("batch failed, retrying", "attempt", attempt, "in", delay, "error", err)
		time.Sleep(delay)
	}
}

// committedAfterAll says whether sb, the batch in flight, committed although its call or its
// COMMIT reported an error (its connection broke during COMMIT), from the checkpoint, which the
// run then adopts: read on the lock's connection, or, if that one broke (the lock went with it),
// after taking the lock again on a new one. Only then may the batch's report lines be cut.
func (r *runner) committedAfterAll(ctx context.Context, sb splitBatch) (bool, error) {
	if err := r.relock(ctx); err != nil {
		return false, err
	}
	cp, err := GetCheckpoint(ctx, r.conn, r.cfg.SourceType, r.cfg.SourceID)
	if err != nil {
		return false, err
	}
	return r.adopt(cp, sb), nil
}

// relock makes sure the run still holds the source's lock: if the lock's connection broke (closed,
// or no answer to a ping within 5 s), the lock ended with its session, and it is taken again on a
// new connection (reconnect).
func (r *runner) relock(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	broken := r.conn.Conn().IsClosed() || r.conn.Ping(pctx) != nil
	cancel()
	if !broken {
		return nil
	}
	return r.reconnect(ctx)
}

// reconnect takes the source's lock again on a new connection after the lock's connection broke
// (the lock ended with its session). ErrLocked: another run took it meanwhile.
func (r *runner) reconnect(ctx context.Context) error {
	old := r.conn.Conn().PgConn().PID()
	r.conn.Release()
	var conn *pgxpool.Conn
	var err error
	for i := 0; i <= r.cfg.MaxRetries; i++ {
		if conn, err = lock(ctx, r.pool, r.cfg.SourceType, r.cfg.SourceID, old); err == nil || errors.Is(err, ErrLocked) {
			break
		}
		time.Sleep(r.cfg.RetryDelay << i)
	}
	if err != nil {
		r.conn = nil // the caller stops; nothing to unlock
		return err
	}
	r.conn = conn
	return nil
}

// adopt takes the checkpoint as the run's state if it counts sb, the batch in flight (one batch
// more than the last one this run committed: it committed although its COMMIT reported an error),
// and says whether it did. Its totals and report length are then the checkpoint's (the report
// lines were written before the commit); every account its rows name counts as touched, for the
// audits (which of them it changed is not known here, and auditing one more is harmless).
func (r *runner) adopt(cp Checkpoint, sb splitBatch) bool {
	if cp.Batches != r.cp.Batches+1 {
		return false
	}
	for l, rows := range sb.byLed {
		accs := make([]string, 0, 2*len(rows))
		for _, p := range rows {
			accs = append(accs, p.row.Entry.DebitAccountID, p.row.Entry.CreditAccountID)
		}
		r.touched(l, accs)
	}
	r.this.Batches++
	r.this.Processed += cp.TotalProcessed - r.cp.TotalProcessed
	r.this.Successful += cp.TotalSuccessful - r.cp.TotalSuccessful
	r.this.Failed += cp.TotalFailed - r.cp.TotalFailed
	r.this.Skipped += cp.TotalSkipped - r.cp.TotalSkipped
	if cp.LastProcessedID != nil {
		r.this.Position = *cp.LastProcessedID
	}
	r.rep.commit(cp.ErrorsOffset)
	r.cp = cp
	return true
}

// transformAll transforms recs with up to workers goroutines; results keep the records' order.
func transformAll(tr *transform.Transformer, recs []source.Record, workers int) ([]transform.Row, []*ledger.Error) {
	rows := make([]transform.Row, len(recs))
	rejs := make([]*ledger.Error, len(recs))
	workers = max(1, min(workers, len(recs)/64))
	if workers == 1 {
		for i, rec := range recs {
			rows[i], rejs[i] = tr.Transform(rec)
		}
		return rows, rejs
	}
	var wg sync.WaitGroup
	chunk := (len(recs) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min(len(recs), (w+1)*chunk)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				rows[i], rejs[i] = tr.Transform(recs[i])
			}
		})
	}
	wg.Wait()
	return rows, rejs
}

// transient reports whether a batch may be run again: a lost serialization race, a deadlock, a
// broken connection, an unavailable server. The batch's transaction was rolled back (or, when the
// connection broke during commit, the checkpoint says whether it committed).
func transient(err error, conn *pgxpool.Conn) bool {
	if ledger.Retryable(err) || conn.Conn().IsClosed() || ledger.CodeOf(err) == ledger.CodeUnavailable {
		return true
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57") || pe.Code == "53300") {
		return true // connection failure, operator intervention (shutdown, terminated), too many connections
	}
	return errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err)
}

func (r *runner) line(rec source.Record, row transform.Row, code, msg string, details json.RawMessage) ReportLine {
	return ReportLine{SourceType: r.cfg.SourceType, SourceID: r.cfg.SourceID, Run: r.cp.Runs, Position: rec.Pos, Line: rec.Line,
		LedgerID: row.LedgerID, Reference: row.Entry.ReferenceID, Raw: rec.Raw, Code: code, Message: msg, Details: details}
}

// seqRange is what a batch created in one ledger.
type seqRange struct {
	LedgerID string `json:"ledger_id"`
	FirstSeq int64  `json:"first_seq"`
	LastSeq  int64  `json:"last_seq"`
	Created  int    `json:"created"`
}

// post runs one attempt of a batch in one transaction: every ledger's entries, the report lines,
// the checkpoint.
func (r *runner) post(ctx context.Context, sb splitBatch) error {
	tx, err := r.conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	posted, took, err := postLedgers(ctx, tx, sb)
	r.this.Time.Post += took
	if err != nil {
		return err
	}
	return r.commitBatch(ctx, tx, sb, posted, 0)
}

// ledgerResults is what post_ledger_entries answered for one ledger of a batch, or why it refused
// the ledger's rows as a whole (unknown ledger, invalid request).
type ledgerResults struct {
	results []ledger.Result
	refused error
}

// postLedgers posts each ledger's rows of the batch in tx. It touches no state of the runner,
// so a batch can be posted on a goroutine of its own (pipeline.go).
func postLedgers(ctx context.Context, tx pgx.Tx, sb splitBatch) ([]ledgerResults, time.Duration, error) {
	out := make([]ledgerResults, len(sb.ledgers))
	var took time.Duration
	for i, l := range sb.ledgers {
		rows := sb.byLed[l]
		entries := make([]ledger.EntryInput, len(rows))
		for j, p := range rows {
			entries[j] = p.row.Entry
		}
		t0 := time.Now()
		results, err := ledger.PostBatchOutcomesTx(ctx, tx, l, entries, false)
		took += time.Since(t0)
		if err != nil {
			if c := ledger.CodeOf(err); c == ledger.CodeUnknownLedger || c == ledger.CodeInvalidRequest {
				out[i].refused = err
				continue
			}
			return nil, took, err
		}
		out[i].results = results
	}
	return out, took, nil
}

// errOutOfTurn: the checkpoint did not count this batch right after the last committed one, so
// it must not commit (pipeline.go: a batch that got ahead of its predecessor).
var errOutOfTurn = errors.New("the batch is not the next one after the checkpoint")

// errLockLost: the lock's session ended while a batch on the second connection was in flight
// (pipeline.go); the batch must not commit, since another run may hold the source now.
var errLockLost = errors.New("the run's lock session ended before the batch could commit")

// commitBatch turns the batch's results into counts, report lines and ranges, writes the report,
// saves the checkpoint and commits tx; the checkpoint must count exactly one batch more than the
// last one this run committed (errOutOfTurn otherwise, and nothing commits). lockPID, when not 0,
// is the backend of the lock's session, tx being on another connection: the batch commits only
// while that session still holds the source's lock (errLockLost otherwise).
func (r *runner) commitBatch(ctx context.Context, tx pgx.Tx, sb splitBatch, posted []ledgerResults, lockPID uint32) error {
	var (
		created, skipped, failed int64
		ranges                   = []seqRange{}
		lines                    = append([]ReportLine(nil), sb.goLines...)
		touched                  = map[string][]string{}
	)
	for i, l := range sb.ledgers {
		rows := sb.byLed[l]
		if err := posted[i].refused; err != nil {
			// The batch as a whole was refused for this ledger: each row of it is.
			for _, p := range rows {
				rl := r.line(p.rec, p.row, ledger.CodeOf(err), errMessage(err), nil)
				rl.idx = p.idx
				lines = append(lines, rl)
				failed++
			}
			continue
		}
		rg := seqRange{LedgerID: l}
		for _, res := range posted[i].results {
			p := rows[res.Index]
			switch {
			case res.Code == ledger.CodeCreated:
				created++
				if rg.Created == 0 || res.Seq < rg.FirstSeq {
					rg.FirstSeq = res.Seq
				}
				rg.LastSeq = max(rg.LastSeq, res.Seq)
				rg.Created++
				touched[l] = append(touched[l], p.row.Entry.DebitAccountID, p.row.Entry.CreditAccountID)
			case (res.Code == ledger.CodeReplayed || ownDelivery(p.row, res)) && r.cfg.SkipDuplicates:
				skipped++
			case res.Code == ledger.CodeReplayed || ownDelivery(p.row, res):
				failed++
				rl := r.line(p.rec, p.row, ledger.CodeReplayed,
					fmt.Sprintf("reference_id %q is already in ledger %s with the same content (entry seq %d); --skip-duplicates=false refuses it", p.row.Entry.ReferenceID, l, res.Seq), nil)
				rl.idx = p.idx
				lines = append(lines, rl)
			default:
				failed++
				rl := r.line(p.rec, p.row, res.Code, res.Message, res.Details)
				rl.idx = p.idx
				lines = append(lines, rl)
			}
		}
		if rg.Created > 0 {
			if rg.LastSeq-rg.FirstSeq+1 != int64(rg.Created) {
				return fmt.Errorf("ledger %s: the batch's %d new entries are not consecutive (seq %d to %d)", l, rg.Created, rg.FirstSeq, rg.LastSeq)
			}
			ranges = append(ranges, rg)
		}
	}
	failed += sb.goRejected
	if created+skipped+failed != sb.processed {
		return fmt.Errorf("internal: %d rows read but %d created, %d skipped, %d rejected", sb.processed, created, skipped, failed)
	}
	sortLines(lines)
	for _, l := range lines {
		if err := r.rep.add(l); err != nil {
			return err
		}
	}
	t0 := time.Now()
	defer func() { r.this.Time.Checkpoint += time.Since(t0) }()
	// The report's lines are written after the checkpoint's UPDATE and its checks, and before the
	// commit: the UPDATE holds the checkpoint's row, so no other run of the source can be writing
	// to the report then (it would wait for this commit in backfill_start).
	offset := r.rep.length()
	rangesJSON, err := json.Marshal(ranges)
	if err != nil {
		return err
	}
	recorded := map[string]string{"report_sha256": r.rep.digest()} // the report with this batch's lines
	if sb.fingerprint != "" {
		recorded["source_fingerprint"] = sb.fingerprint
	}
	meta, err := json.Marshal(recorded)
	if err != nil {
		return err
	}
	cp, err := scanCheckpoint(tx.QueryRow(ctx, `SELECT `+checkpointColumns+` FROM backfill_checkpoint($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		r.cfg.SourceType, r.cfg.SourceID, sb.pos, sb.lastTS, sb.processed, created, failed, skipped, offset, rangesJSON, meta))
	if err != nil {
		return fmt.Errorf("save the checkpoint: %w", err)
	}
	if cp.Batches != r.cp.Batches+1 {
		return fmt.Errorf("%w (the checkpoint counts %d batches, the run expected %d)", errOutOfTurn, cp.Batches, r.cp.Batches+1)
	}
	if lockPID != 0 {
		// After the checkpoint's UPDATE, which holds its row until this commits: a run that took
		// the lock after this check waits for this commit in backfill_start and sees this batch.
		var held bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid = $3
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			  AND ((l.classid::bigint << 32) | l.objid::bigint) = `+lockKeySQL+`)`,
			r.cfg.SourceType, r.cfg.SourceID, int64(lockPID)).Scan(&held); err != nil {
			return fmt.Errorf("check the run's lock: %w", err)
		}
		if !held {
			return errLockLost
		}
	}
	if _, err := r.rep.flush(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	r.rep.commit(offset)
	r.cp = cp
	r.this.Batches++
	r.this.Processed += sb.processed
	r.this.Successful += created
	r.this.Failed += failed
	r.this.Skipped += skipped
	r.this.Position = sb.pos
	for l, accs := range touched {
		r.touched(l, accs)
	}
	return nil
}

// touched adds accounts of ledger l to those the audits check: the next periodic one and the
// final one.
func (r *runner) touched(l string, accs []string) {
	for _, set := range []map[string]map[string]bool{r.touch, r.allTch} {
		if set[l] == nil {
			set[l] = map[string]bool{}
		}
		for _, a := range accs {
			set[l][a] = true
		}
	}
}

// sortLines puts a batch's report lines in source order.
func sortLines(lines []ReportLine) {
	slices.SortStableFunc(lines, func(a, b ReportLine) int { return a.idx - b.idx })
}

func errMessage(err error) string {
	var le *ledger.Error
	if errors.As(err, &le) {
		return le.Message
	}
	return err.Error()
}

// audit checks that each touched account's balance equals Σ credits − Σ debits of all its
// entries (docs/design.md §2.3): one pass over the ledger's entries per ledger. Run at the end.
func (r *runner) audit(ctx context.Context, touched map[string]map[string]bool) ([]string, error) {
	var probs []string
	for l, set := range touched {
		ids := make([]string, 0, len(set))
		for a := range set {
			ids = append(ids, a)
		}
		p, err := AuditAccounts(ctx, r.conn, l, ids)
		if err != nil {
			return nil, err
		}
		probs = append(probs, p...)
	}
	return probs, nil
}

// finalAudit is the full audit at the end of a run: every account the source's entries touch.
// A resumed run adds, to the accounts it touched itself, those of the batches earlier runs
// committed (ledger_backfill_batches): a run killed during its final audit, after its last batch,
// resumed to COMPLETED having audited nothing (review of 2026-12-02).
func (r *runner) finalAudit(ctx context.Context) ([]string, error) {
	if !r.resumed {
		return r.audit(ctx, r.allTch)
	}
	rows, err := r.conn.Query(ctx, `SELECT DISTINCT b.ledger_id, v.account FROM ledger_backfill_batches b
		  JOIN ledger_entries e ON e.ledger_id = b.ledger_id AND e.seq BETWEEN b.first_seq AND b.last_seq
		 CROSS JOIN LATERAL (VALUES (e.debit_account_id), (e.credit_account_id)) AS v(account)
		 WHERE b.source_type = $1 AND b.source_id = $2`, r.cfg.SourceType, r.cfg.SourceID)
	if err != nil {
		return nil, fmt.Errorf("the accounts of the earlier runs' batches: %w", err)
	}
	all := map[string]map[string]bool{}
	for l, set := range r.allTch {
		all[l] = maps.Clone(set)
	}
	var l, a string
	if _, err := pgx.ForEachRow(rows, []any{&l, &a}, func() error {
		if all[l] == nil {
			all[l] = map[string]bool{}
		}
		all[l][a] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("the accounts of the earlier runs' batches: %w", err)
	}
	return r.audit(ctx, all)
}

// auditBase is a ledger's state at the last periodic audit: its head and the balances of the
// accounts the run had touched by then.
type auditBase struct {
	head     int64
	balances map[string]money.Amount
}

// auditSince is the periodic audit (--validate-balances every --checkpoint-interval batches),
// incremental so that its cost does not grow with the ledger: for each account with a balance
// at the last audit, the change of its balance since must equal the sum of the entries posted
// since (by anyone: seqs above the last audit's head, a range of the primary key). One
// REPEATABLE READ snapshot sees head, balances and entries as one posting left them. An account
// touched for the first time gets its base now; its earlier entries are covered by the full
// audit at the end of the run.
func (r *runner) auditSince(ctx context.Context, conn *pgxpool.Conn) ([]string, error) {
	var probs []string
	for l, set := range r.touch {
		base := r.bases[l]
		ids := make([]string, 0, len(set))
		for a := range set {
			ids = append(ids, a)
		}
		if base != nil {
			for a := range base.balances {
				if !set[a] {
					ids = append(ids, a)
				}
			}
		}
		next := &auditBase{balances: map[string]money.Amount{}}
		deltas := map[string]money.Amount{}
		err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, `SELECT head_seq FROM ledgers WHERE id = $1`, l).Scan(&next.head); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT id, balance::text FROM bank_accounts WHERE ledger_id = $1 AND id = ANY($2)`, l, ids)
			if err != nil {
				return err
			}
			var id, v string
			if _, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error {
				a, err := money.ParseAmount(v)
				next.balances[id] = a
				return err
			}); err != nil {
				return err
			}
			if base == nil {
				return nil
			}
			rows, err = tx.Query(ctx, `SELECT x.account_id, sum(x.delta)::text
				  FROM ledger_entries e
				 CROSS JOIN LATERAL (VALUES (e.credit_account_id, e.amount), (e.debit_account_id, -e.amount)) AS x(account_id, delta)
				 WHERE e.ledger_id = $1 AND e.seq > $2 AND e.seq <= $3
				 GROUP BY x.account_id`, l, base.head, next.head)
			if err != nil {
				return err
			}
			_, err = pgx.ForEachRow(rows, []any{&id, &v}, func() error {
				a, err := money.ParseAmount(v)
				deltas[id] = a
				return err
			})
			return err
		})
		if err != nil {
			return nil, err
		}
		if base != nil {
			for id, was := range base.balances {
				now, ok := next.balances[id]
				if !ok {
					continue
				}
				if got := now.Sub(was); !got.Equal(deltas[id]) {
					probs = append(probs, fmt.Sprintf("%s/%s: balance moved by %s since seq %d but the entries since sum to %s", l, id, got, base.head, deltas[id]))
				}
			}
		}
		r.bases[l] = next
	}
	r.touch = map[string]map[string]bool{}
	return probs, nil
}

// AuditAccounts returns one line per account of ids in ledgerID whose stored balance differs
// from the sum of its entries.
func AuditAccounts(ctx context.Context, db ledger.DBTX, ledgerID string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := db.Query(ctx, `
		WITH ids AS (SELECT DISTINCT unnest($2::text[]) AS id),
		sums AS (
			SELECT x.account_id, sum(x.delta) AS net
			  FROM ledger_entries e
			 CROSS JOIN LATERAL (VALUES (e.credit_account_id, e.amount), (e.debit_account_id, -e.amount)) AS x(account_id, delta)
			  JOIN ids ON ids.id = x.account_id
			 WHERE e.ledger_id = $1
			 GROUP BY x.account_id)
		SELECT format('%s/%s: balance %s but its entries sum to %s', a.ledger_id, a.id, trim_scale(a.balance), trim_scale(coalesce(s.net, 0)))
		  FROM bank_accounts a JOIN ids ON ids.id = a.id LEFT JOIN sums s ON s.account_id = a.id
		 WHERE a.ledger_id = $1 AND a.balance <> coalesce(s.net, 0)
		 ORDER BY a.id`, ledgerID, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ownDelivery reports whether res, a row's result, is a reference conflict with the entry that
// DBIS delivered to the SCB whose history the row comes from: the SCB's copy lacks the fields
// the delivery does not carry (metadata, fx_rate, the reversal's link), so it never equals our
// entry, and every settlement (whose metadata names the node) came back as a conflict. It is a
// duplicate, skipped like one (transform.OwnDelivery says when).
func ownDelivery(row transform.Row, res ledger.Result) bool {
	if res.Code != ledger.CodeReferenceConflict || row.OwnEntryID == 0 {
		return false
	}
	var d struct {
		ExistingEntryID int64    `json:"existing_entry_id"`
		Fields          []string `json:"fields"`
	}
	return json.Unmarshal(res.Details, &d) == nil && transform.OwnDelivery(row, d.ExistingEntryID, d.Fields)
}
