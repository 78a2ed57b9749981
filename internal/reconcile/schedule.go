package reconcile

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
)

// Resolver finds the client of an SCB; false means it is not configured.
type Resolver func(scbID string) (SCB, bool)

// Schedule runs reconciliations on a timer (`serve --reconcile-every`).
type Schedule struct {
	Pool    *pgxpool.Pool // as dualledger_worker
	Clients Resolver
	Every   time.Duration // how old the last good run of an SCB may be before the next one
	// FullEvery is how old the last good full run (the SCB's whole list reread, Options.Full) may
	// be before the next run is a full one (0: never): an incremental run reads only what the SCB
	// listed since the last one, so only a full run finds an old entry the SCB lost or changed.
	FullEvery time.Duration
	Actor     string // e.g. system:serve@host:pid
	Grace     time.Duration
	Logger    *slog.Logger
	// Check is how often the schedule looks for due SCBs (default min(Every, 1m)).
	Check time.Duration
}

// Run checks for due SCBs until ctx ends. An SCB is due when its last good run started longer
// ago than Every (or never ran). Several processes may run a Schedule on one database: the SCB's
// advisory lock lets one run at a time, and the others see its run and wait for the next.
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

// RunDue runs one reconciliation of every due SCB, one after the other, and returns the runs.
func (s *Schedule) RunDue(ctx context.Context) []Run {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	// $2 = 0: full runs are never due.
	rows, err := s.Pool.Query(ctx, `SELECT b.id,
	       $2::interval > '0' AND NOT EXISTS (SELECT 1 FROM reconcile_last_ok_full_runs() f
	                                           WHERE f.scb_id = b.id AND f.started_at > now() - $2::interval) AS full
	  FROM banks b
	 WHERE NOT EXISTS (SELECT 1 FROM reconcile_last_ok_runs() r WHERE r.scb_id = b.id AND r.started_at > now() - $1::interval)
	    OR ($2::interval > '0' AND NOT EXISTS (SELECT 1 FROM reconcile_last_ok_full_runs() f
	                                            WHERE f.scb_id = b.id AND f.started_at > now() - $2::interval))
	 ORDER BY b.id`, s.Every, s.FullEvery)
	if err != nil {
		s.Logger.Error("reconcile: list due SCBs", "err", err)
		return nil
	}
	type dueSCB struct {
		ID   string
		Full bool
	}
	due, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dueSCB])
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
			s.Logger.Warn("reconcile: SCB has no client configured (SCB_<ID>_API_URL / --scb-config); not reconciled", "scb", id)
			continue
		}
		run, err := Reconcile(ctx, s.Pool, client, Options{Actor: s.Actor, SCBID: id, Grace: s.Grace, Full: d.Full})
		switch {
		case ledger.CodeOf(err) == ledger.CodeReconciliationInProgress:
			s.Logger.Info("reconcile: another process is reconciling this SCB", "scb", id)
		case err != nil:
			s.Logger.Error("reconcile: run failed", "scb", id, "run", run.ID, "err", err)
		default:
			s.Logger.Info("reconcile: run done", "scb", id, "run", run.ID, "full", run.Full, "read", run.SCBEntriesRead, "found", run.Found,
				"new", run.NewFound, "cleared", run.Cleared)
			out = append(out, run)
		}
	}
	return out
}
