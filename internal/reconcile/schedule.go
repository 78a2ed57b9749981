package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
)

// Resolver finds the client of an SCB; false means it is not configured.
type Resolver func(scbID string) (SCB, bool)

// Schedule runs reconciliations on a timer (`--reconcile-every` of `worker` and `serve`).
type Schedule struct {
	Pool    *pgxpool.Pool // as dualledger_worker
	Clients Resolver
	Every   time.Duration // how old the last good run of an SCB may be before the next one
	// FullEvery is how old the last good full run (the SCB's whole list reread, Options.Full) may
	// be before the next run is a full one (0: never): an incremental run reads only what the SCB
	// listed since the last one, so only a full run finds an old entry the SCB lost or changed.
	// After a full run that failed, the next full attempt waits Every (the runs in between are
	// incremental), so an SCB whose whole list cannot be read still gets its daily run.
	FullEvery time.Duration
	Actor     string // e.g. system:worker-reconcile@host:pid
	Grace     time.Duration
	Logger    *slog.Logger
	// Check is how often the schedule looks for due SCBs (default min(Every, 1m)).
	Check time.Duration

	unconfigured map[string]time.Time // SCBs without a client, when last warned about
}

// Run checks for due SCBs until ctx ends. An SCB is due when its last good run started longer
// ago than Every (or never ran), or a full run is due (FullEvery). Several processes may run a
// Schedule on one database: the SCB's advisory lock lets one run at a time, and a schedule that
// gets the lock checks again that the SCB is still due, so a run another process finished
// meanwhile is not repeated.
func (s *Schedule) Run(ctx context.Context) error {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	check := s.Check
	if check <= 0 {
		check = min(s.Every, time.Minute)
	}
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		s.RunDue(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// dueSQL lists the due SCBs ($3: only this one; NULL: all) and whether their run is a full one.
// $1 is Every, $2 FullEvery (0: full runs are never due).
const dueSQL = `SELECT d.id, d.full FROM (
    SELECT b.id,
           $2::interval > '0' AND NOT EXISTS (
               SELECT 1 FROM reconcile_full_runs() f
                WHERE f.scb_id = b.id
                  AND (f.last_ok_started_at > now() - $2::interval
                       -- a full run that did not succeed, within Every: incremental until then
                       OR (f.last_started_at > now() - $1::interval
                           AND f.last_started_at IS DISTINCT FROM f.last_ok_started_at))) AS full,
           NOT EXISTS (SELECT 1 FROM reconcile_last_ok_runs() r
                        WHERE r.scb_id = b.id AND r.started_at > now() - $1::interval) AS incremental
      FROM banks b
     WHERE $3::text IS NULL OR b.id = $3) d
 WHERE d.full OR d.incremental
 ORDER BY d.id`

type dueSCB struct {
	ID   string
	Full bool
}

// due lists the due SCBs (only scbID unless it is "") on db.
func (s *Schedule) due(ctx context.Context, db ledger.DBTX, scbID string) ([]dueSCB, error) {
	var only *string
	if scbID != "" {
		only = &scbID
	}
	rows, err := db.Query(ctx, dueSQL, s.Every, s.FullEvery, only)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[dueSCB])
}

// RunDue runs one reconciliation of every due SCB, one after the other, and returns the runs.
func (s *Schedule) RunDue(ctx context.Context) []Run {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	due, err := s.due(ctx, s.Pool, "")
	if err != nil {
		s.Logger.Error("reconcile: list due SCBs", "err", err)
		return nil
	}
	var out []Run
	for _, d := range due {
		if ctx.Err() != nil {
			break
		}
		id := d.ID
		client, ok := s.Clients(id)
		if !ok {
			// Once per Every, not at every check: the alert on the last good run says it too.
			if last, seen := s.unconfigured[id]; !seen || time.Since(last) >= s.Every {
				s.Logger.Warn("reconcile: SCB has no client configured (SCB_<ID>_API_URL / --scb-config); not reconciled", "scb", id)
				if s.unconfigured == nil {
					s.unconfigured = map[string]time.Time{}
				}
				s.unconfigured[id] = time.Now()
			}
			continue
		}
		delete(s.unconfigured, id)
		opts := Options{Actor: s.Actor, SCBID: id, Grace: s.Grace, Full: d.Full,
			// Under the SCB's lock: another process may have run it since the list above.
			Recheck: func(ctx context.Context, conn *pgx.Conn) (bool, bool, error) {
				again, err := s.due(ctx, conn, id)
				if err != nil || len(again) == 0 {
					return false, false, err
				}
				return true, again[0].Full, nil
			}}
		run, err := Reconcile(ctx, s.Pool, client, opts)
		switch {
		case errors.Is(err, ErrNotDue):
			s.Logger.Debug("reconcile: another process has just reconciled this SCB", "scb", id)
		case ledger.CodeOf(err) == ledger.CodeReconciliationInProgress:
			s.Logger.Info("reconcile: another process is reconciling this SCB", "scb", id)
		case err != nil:
			s.Logger.Error("reconcile: run failed", "scb", id, "run", run.ID, "full", run.Full, "err", err)
		default:
			s.Logger.Info("reconcile: run done", "scb", id, "run", run.ID, "full", run.Full, "read", run.SCBEntriesRead, "found", run.Found,
				"new", run.NewFound, "cleared", run.Cleared)
			out = append(out, run)
		}
	}
	return out
}
