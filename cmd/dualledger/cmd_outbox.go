package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/pg"
	"dualledger/internal/settlement"
)

// workerOptions are the outbox worker's flags, shared by `worker` and `serve --worker`.
type workerOptions struct {
	cfg        outbox.Config
	scbConfig  string
	scbTimeout time.Duration
	// role is the database role the worker runs as: the worker command's --db-role;
	// dualledger_worker for `serve --worker`, whose --db-role is the API's.
	role string
}

func (o *workerOptions) bind(f *pflag.FlagSet, getenv func(string) string) {
	o.role = pg.WorkerRole
	f.DurationVar(&o.cfg.Lease, "lease", 30*time.Second, "how long a claimed row belongs to this worker; an expired lease returns it to QUEUED")
	f.DurationVar(&o.cfg.Backoff.Base, "backoff-base", time.Second, "first retry delay (exponential, full jitter)")
	f.DurationVar(&o.cfg.Backoff.Cap, "backoff-cap", 5*time.Minute, "largest retry delay")
	f.IntVar(&o.cfg.MaxAttempts, "max-attempts", 10, "attempts before a retryable failure becomes FAILED")
	f.IntVar(&o.cfg.Concurrency, "concurrency", 8, "deliveries and polls in flight per SCB")
	f.DurationVar(&o.cfg.PollEvery, "poll-every", 2*time.Second, "how often a SENT/ACKED row asks its SCB whether it is FINAL")
	f.DurationVar(&o.cfg.Grace, "grace", 10*time.Second, "on SIGTERM, how long in-flight deliveries may finish before they are released")
	f.StringVar(&o.cfg.WorkerID, "worker-id", "", "worker id recorded in leases and attempts (default host:pid)")
	f.StringVar(&o.scbConfig, "scb-config", getenv("DUALLEDGER_SCB_CONFIG"), "SCB config file (JSON or SCB_<ID>_API_URL=... lines); SCB_<ID>_API_URL / SCB_<ID>_API_KEY in the environment override it")
	f.DurationVar(&o.scbTimeout, "scb-timeout", 0, "timeout of one request to any SCB, overriding each SCB's own (config file timeout, default 10s); at most half of --lease")
}

func (o *workerOptions) validate() error {
	switch {
	case o.cfg.Lease < time.Second:
		return usage("--lease must be at least 1s")
	case o.scbTimeout < 0 || o.scbTimeout > o.cfg.Lease/2:
		return usage("--scb-timeout must be at most half of --lease (%s), so that an answer is recorded before the lease ends; 0 keeps each SCB's own", o.cfg.Lease/2)
	case o.cfg.Backoff.Base <= 0 || o.cfg.Backoff.Cap < o.cfg.Backoff.Base:
		return usage("--backoff-base must be positive and --backoff-cap at least as large")
	case o.cfg.MaxAttempts < 1:
		return usage("--max-attempts must be at least 1")
	case o.cfg.Concurrency < 1 || o.cfg.Concurrency > 1024:
		return usage("--concurrency must be from 1 to 1024")
	}
	if o.cfg.WorkerID == "" {
		host, _ := os.Hostname()
		o.cfg.WorkerID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	return nil
}

// buildWorker builds a worker on pool with its SCB clients and metrics on reg.
func (o *workerOptions) buildWorker(ctx context.Context, a *app, pool *pgxpool.Pool, reg prometheus.Registerer) (*outbox.Worker, error) {
	clients, err := outbox.NewClients(ctx, pool, a.environ, o.scbConfig, o.scbTimeout, o.cfg.Lease/2, a.logger)
	if err != nil {
		return nil, &exitError{code: exitInfra, err: err}
	}
	cfg := o.cfg
	cfg.Logger = a.logger
	cfg.Metrics = outbox.NewMetrics(reg)
	cfg.Problem = clients.Problem
	return outbox.NewWorker(outbox.NewStore(pool), clients.Resolve, cfg), nil
}

// newWorker builds the in-process worker of `serve --worker`. It does not use the API's pool
// (the third argument): the API's role has no privilege on the outbox beyond SELECT, so the worker gets a
// pool of its own as dualledger_worker, with the same login checks as `dualledger worker`. The
// pool is closed when Run returns (or when ctx ends, if Run never started).
func (o *workerOptions) newWorker(ctx context.Context, a *app, _ *pgxpool.Pool, reg prometheus.Registerer) (*inProcessWorker, error) {
	pool, release, err := a.open(ctx, openOptions{role: o.role, maxConns: int32(4 + 2*o.cfg.Concurrency), service: true, mayCreate: true})
	if err != nil {
		return nil, err
	}
	w, err := o.buildWorker(ctx, a, pool, reg)
	if err != nil {
		release()
		return nil, err
	}
	iw := &inProcessWorker{w: w, release: release}
	context.AfterFunc(ctx, iw.releaseUnlessRunning)
	return iw, nil
}

// inProcessWorker is an outbox worker that owns its database pool.
type inProcessWorker struct {
	w       *outbox.Worker
	release func()

	mu       sync.Mutex
	started  bool
	released bool
}

// Run runs the worker until ctx ends, then closes its pool.
func (iw *inProcessWorker) Run(ctx context.Context) error {
	iw.mu.Lock()
	if iw.released {
		// The command was stopped before the server started its tasks: nothing to deliver.
		iw.mu.Unlock()
		return nil
	}
	iw.started = true
	iw.mu.Unlock()
	defer iw.release()
	return iw.w.Run(ctx)
}

// releaseUnlessRunning closes the pool of a worker whose Run was never called.
func (iw *inProcessWorker) releaseUnlessRunning() {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if !iw.started && !iw.released {
		iw.released = true
		iw.release()
	}
}

func newWorkerCmd(a *app) *cobra.Command {
	var (
		o           workerOptions
		recon       scheduleOptions
		metricsAddr string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Deliver the dual-ledger outbox to the member banks' ledgers (SCBs) until SIGTERM",
		Long: `Claims due outbox rows (FOR UPDATE SKIP LOCKED, with a lease), delivers each to its SCB
(POST /v1/entries with Idempotency-Key <ledger_id>:<reference_id>), records every attempt, retries
retryable failures with exponential backoff and full jitter (Retry-After honoured), moves
permanent failures and exhausted rows to FAILED, returns rows of dead workers (expired leases) to
QUEUED, and polls SENT/ACKED rows until the SCB says FINAL. Any number of workers may run at
once. On SIGTERM it stops claiming, lets in-flight deliveries finish (--grace) and returns the
rest to QUEUED.

SCBs are the registered banks (dualledger banks register); each needs SCB_<ID>_API_URL and
SCB_<ID>_API_KEY (the id as written, e.g. SCB-1, or with '-' replaced by '_': SCB_SCB_1_API_URL),
or an entry in --scb-config.

Every --reconcile-every (default 24h; 0 = off) it also reconciles each SCB whose last good run is
older than that (as dualledger reconcile scb: incremental, and a full reread once the last good
full run is older than --reconcile-full-every, default 168h; one run per SCB at a time across
processes, so several workers and serve take turns; docs/reconciliation.md).

It runs as the database role dualledger_worker (--db-role), which changes the outbox only through
the outbox functions. The login role of DATABASE_URL must be a plain member of it, never a
superuser or the schema's owner (refused unless --allow-owner; docs/security.md). The embedded
cluster logs in as dualledger_worker_login, which it creates.`,
		Example:     `  SCB_SCB_1_API_URL=http://127.0.0.1:9001 SCB_SCB_1_API_KEY=k1 dualledger worker --metrics-addr 127.0.0.1:9464`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{"daemon": "worker"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if err := recon.validate(); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{role: o.role, maxConns: int32(4 + 2*o.cfg.Concurrency), service: true, mayCreate: true})
			if err != nil {
				return err
			}
			defer release()
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
				outbox.NewCollector(pool))
			w, err := o.buildWorker(ctx, a, pool, reg)
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				ln, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return &exitError{code: exitInfra, err: fmt.Errorf("listen on %s: %w", metricsAddr, err)}
				}
				mux := http.NewServeMux()
				mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, `{"status":"ok"}`) })
				srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
				fmt.Fprintf(a.errOut, "dualledger worker: metrics on http://%s/metrics\n", ln.Addr())
			}
			var sched sync.WaitGroup
			sctx, stopSchedule := context.WithCancel(ctx)
			defer stopSchedule()
			if recon.every > 0 {
				// The worker's own role may write the reconciliation tables, and it holds the SCBs'
				// settings: the schedule's natural home (serve's API login usually cannot).
				s, err := newReconcileSchedule(ctx, a, o, recon, "worker")
				if err != nil {
					return err
				}
				sched.Go(func() { _ = s.Run(sctx) })
			}
			fmt.Fprintf(a.errOut, "dualledger worker %s: delivering (SIGTERM or Ctrl-C to stop)\n", o.cfg.WorkerID)
			err = w.Run(ctx)
			// A reconciliation in progress stops with the worker: recorded failed, or left running
			// and marked abandoned by the next run; either way the next one starts from the last
			// good run's cursor (docs/reconciliation.md).
			stopSchedule()
			sched.Wait()
			if err != nil {
				return &exitError{code: exitInfra, err: err}
			}
			fmt.Fprintln(a.errOut, "dualledger worker: stopped")
			return nil
		},
	}
	o.bind(cmd.Flags(), a.getenv)
	recon.bind(cmd.Flags())
	cmd.Flags().StringVar(&o.role, "db-role", pg.WorkerRole, `database role to SET ROLE to after connecting ("" = the login role), see docs/security.md`)
	cmd.Flags().BoolVar(&a.allowOwner, "allow-owner", false, "run even if the database login role is a superuser or can act as the schema's owner (development only)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on HOST:PORT (off by default)")
	return cmd
}

func newOutboxCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Inspect and repair the dual-ledger outbox (status, list, requeue, retry-now, acknowledge)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newOutboxStatusCmd(a), newOutboxListCmd(a), newOutboxRequeueCmd(a), newOutboxRetryNowCmd(a),
		newOutboxAcknowledgeCmd(a))
	return cmd
}

func newOutboxStatusCmd(a *app) *cobra.Command {
	var failOver struct {
		queued int64
		failed int64
		lag    time.Duration
	}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Outbox depth by status and SCB, oldest queued age, failures, delivery time, DBIS_COMMITTED vs SETTLED",
		Long: `The seeds' monitor-outbox (docs/design.md §10.2): rows by status per SCB, the age of the
oldest QUEUED row, the sync lag (age of the oldest row neither FINALIZED nor an acknowledged
failure), the average time from commit to FINAL over the last hour, and how many entries are
DBIS_COMMITTED (some SCB not FINAL yet) or SETTLED. FAILED rows an operator acknowledged (outbox
acknowledge) are counted in FAILED and again in FAILED ACKNOWLEDGED; they are left out of the
sync lag and of --alert-failed.
With --alert-* thresholds it exits 1 when one is crossed (for cron or a probe).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			rep, err := outbox.NewStore(pool).Status(cmd.Context())
			if err != nil {
				return err
			}
			alerts := []string{}
			if failOver.queued >= 0 && rep.Total.ByStatus[outbox.Queued] > failOver.queued {
				alerts = append(alerts, fmt.Sprintf("%d QUEUED > %d", rep.Total.ByStatus[outbox.Queued], failOver.queued))
			}
			if open := rep.Total.ByStatus[outbox.Failed] - rep.Total.FailedAcknowledged; failOver.failed >= 0 && open > failOver.failed {
				alerts = append(alerts, fmt.Sprintf("%d FAILED (not acknowledged) > %d", open, failOver.failed))
			}
			if failOver.lag > 0 && rep.SyncLagSeconds > failOver.lag.Seconds() {
				alerts = append(alerts, fmt.Sprintf("sync lag %.0fs > %s", rep.SyncLagSeconds, failOver.lag))
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"report": rep, "alerts": alerts}); err != nil {
					return err
				}
			} else {
				printOutboxReport(a, rep)
				for _, al := range alerts {
					fmt.Fprintln(a.out, "ALERT:", al)
				}
			}
			if len(alerts) > 0 {
				return findings("outbox: %s", strings.Join(alerts, "; "))
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&failOver.queued, "alert-queued", -1, "exit 1 if more rows than this are QUEUED (-1: no check; the suggested threshold is 100)")
	cmd.Flags().Int64Var(&failOver.failed, "alert-failed", -1, "exit 1 if more rows than this are FAILED and not acknowledged (-1: no check; 0 alerts on any; the suggested threshold is 10)")
	cmd.Flags().DurationVar(&failOver.lag, "alert-lag", 0, "exit 1 if the sync lag is longer than this (0: no check)")
	return cmd
}

func printOutboxReport(a *app, rep outbox.Report) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	// FAILED ACKNOWLEDGED is the last column, so that the columns before it keep their places.
	fmt.Fprintln(tw, "SCB\tQUEUED\tPROCESSING\tSENT\tACKED\tFINALIZED\tFAILED\tOLDEST QUEUED\tSYNC LAG\tAVG DELIVERY (1h)\tFAILED ACKNOWLEDGED\t")
	line := func(s outbox.ScbStatus) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t\n", s.ScbID, s.ByStatus[outbox.Queued], s.ByStatus[outbox.Processing],
			s.ByStatus[outbox.Sent], s.ByStatus[outbox.Acked], s.ByStatus[outbox.Finalized], s.ByStatus[outbox.Failed],
			secs(s.OldestQueuedAgeSec), secs(s.OldestUnfinalized), secs(s.AvgDeliverySec), s.FailedAcknowledged)
	}
	for _, s := range rep.Scbs {
		line(s)
	}
	if len(rep.Scbs) != 1 {
		line(rep.Total)
	}
	_ = tw.Flush()
	fmt.Fprintf(a.out, "entries: %d DBIS_COMMITTED (waiting for an SCB), %d SETTLED\n", rep.DBISCommitted, rep.Settled)
}

func secs(s float64) string {
	if s == 0 {
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func newOutboxListCmd(a *app) *cobra.Command {
	var f outbox.ListFilter
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List outbox rows (e.g. --status FAILED), with attempts, the next attempt and the last error",
		Long: `Lists outbox rows, oldest first (FAILED: the latest attempt first). NEXT ATTEMPT is when a
QUEUED row is due ("due", or "in 4m10s" while it waits for its backoff or an SCB's Retry-After; by
the database's clock): outbox retry-now makes waiting rows due once their SCB is back. For a SENT
or ACKED row it is when the worker next asks the SCB whether the entry is FINAL ("poll in 1m30s":
every --poll-every, longer after failed polls, at most the backoff cap). A --ledger
or --scb that names no ledger or registered bank is an error, not an empty list.`,
		Example: `  dualledger outbox list --status FAILED --scb SCB-1
  dualledger outbox list --status QUEUED --ledger MASTER --limit 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.Status = strings.ToUpper(f.Status)
			if f.Status != "" && !contains(outbox.Statuses, f.Status) {
				return usage("--status %q is not one of %s", f.Status, strings.Join(outbox.Statuses, ", "))
			}
			if f.Limit < 1 || f.Limit > maxListLimit {
				return usage("--limit must be 1 to %d, got %d", maxListLimit, f.Limit)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			if err := checkFilters(cmd.Context(), pool, f.LedgerID, f.ScbID); err != nil {
				return err
			}
			rows, err := outbox.NewStore(pool).List(cmd.Context(), f)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(rows)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSCB\tSTATUS\tLEDGER\tREFERENCE\tATTEMPTS\tNEXT ATTEMPT\tLAST CODE\tLAST ERROR / FAILURE")
			for _, r := range rows {
				msg := ""
				if r.FailureReason != nil {
					msg = *r.FailureReason
				} else if r.LastError != nil {
					msg = *r.LastError
				}
				code := "-"
				if r.LastStatus != nil {
					code = fmt.Sprint(*r.LastStatus)
				}
				status := r.Status
				if r.AcknowledgedAt != nil {
					status += " (acknowledged)"
					msg = fmt.Sprintf("acknowledged by %s: %s; %s", *r.AcknowledgedBy, *r.AcknowledgedReason, msg)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.ScbID, status, r.LedgerID, r.ReferenceID, r.Attempts,
					nextAttempt(r), code, msg)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&f.Status, "status", "", "only rows with this status")
	cmd.Flags().StringVar(&f.ScbID, "scb", "", "only rows of this SCB")
	cmd.Flags().StringVar(&f.LedgerID, "ledger", "", "only rows of this ledger")
	cmd.Flags().IntVar(&f.Limit, "limit", 100, fmt.Sprintf("at most this many rows (1 to %d)", maxListLimit))
	return cmd
}

// maxListLimit bounds outbox list --limit: a screen or a script's page, not the whole table.
const maxListLimit = 10000

// nextAttempt says when a QUEUED row is due: "due", or "in 4m10s" while it waits (its backoff, an
// SCB's Retry-After); for a SENT or ACKED row, when it is next polled ("poll due", "poll in 2m").
// Other statuses have no next attempt.
func nextAttempt(r outbox.ListedRow) string {
	in, prefix := r.NextAttemptIn, ""
	switch {
	case r.Status == outbox.Queued:
	case (r.Status == outbox.Sent || r.Status == outbox.Acked) && r.NextPollIn != nil:
		in, prefix = *r.NextPollIn, "poll "
	default:
		return "-"
	}
	if in <= 0 {
		return prefix + "due"
	}
	return prefix + "in " + time.Duration(in*float64(time.Second)).Round(time.Second).String()
}

// checkFilters refuses a --ledger or --scb that names no ledger or registered bank (exit 1,
// unknown_ledger / unknown_bank): a typo would otherwise select no rows, and "0 row(s) requeued"
// reads like "nothing to do".
func checkFilters(ctx context.Context, pool *pgxpool.Pool, ledgerID, scbID string) error {
	var ledgerOK, bankOK bool
	err := pool.QueryRow(ctx, `SELECT $1 = '' OR EXISTS (SELECT 1 FROM ledgers WHERE id = $1),
	                                 $2 = '' OR EXISTS (SELECT 1 FROM banks WHERE id = $2)`, ledgerID, scbID).Scan(&ledgerOK, &bankOK)
	switch {
	case err != nil:
		return fmt.Errorf("look up --ledger and --scb: %w", err)
	case !ledgerOK:
		return rejection(ledger.Errorf(ledger.CodeUnknownLedger, "unknown ledger %q (--ledger)", ledgerID).
			WithDetails(map[string]string{"ledger_id": ledgerID}))
	case !bankOK:
		return rejection(ledger.Errorf(ledger.CodeUnknownBank, "%q is not a registered bank (--scb; dualledger banks lists them)", scbID).
			WithDetails(map[string]string{"scb_id": scbID}))
	}
	return nil
}

func newOutboxRequeueCmd(a *app) *cobra.Command {
	var (
		id               int64
		allFailed        bool
		scbID            string
		ledgerID         string
		includeConflicts bool
		reason           string
	)
	cmd := &cobra.Command{
		Use:   "requeue (--id N | --all-failed [--scb ID]) [--ledger L]",
		Short: "Return FAILED rows to QUEUED with a fresh attempt budget (after fixing the cause)",
		Long: `Moves FAILED rows back to QUEUED, due now, with a fresh budget of --max-attempts, and records
the requeue in the row's attempts and in the operator log (with --reason). Runs as the schema's
owner (the service roles may not requeue). Fix the cause first (the SCB's key or URL, the SCB's data):
docs/runbooks/stuck-outbox.md. --all-failed leaves rows that failed on a 409 conflict alone
unless --include-conflicts: the SCB holds another body under our idempotency key, and sending
ours again cannot help. It always leaves acknowledged rows alone (outbox acknowledge); a
requeue by --id sends one again and clears its acknowledgement. --ledger limits either to one ledger's rows (the outbox is keyed by ledger
and id: with --id it names the row's ledger, so the look-up touches that ledger alone; without it,
--id finds the row in whichever ledger holds it, ids being drawn from one sequence).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.openForRowAct(cmd.Context(), id, allFailed, "--all-failed", scbID, ledgerID, reason)
			if err != nil {
				return err
			}
			defer release()
			store := outbox.NewStore(pool)
			var cleared *outbox.ListedRow
			if id != 0 {
				if cleared, err = store.Acknowledgement(cmd.Context(), ledgerID, id); err != nil {
					return err
				}
			}
			n, err := store.RequeueRows(cmd.Context(), outbox.RequeueRequest{Actor: a.cliActor(), LedgerID: ledgerID, ID: id, AllFailed: allFailed,
				ScbID: scbID, IncludeConflicts: includeConflicts, Reason: reason})
			if err != nil {
				return rejection(err) // exit 1 for a refusal (resolution_not_applicable), 3 for a failure
			}
			var skipped, acknowledged int64
			if allFailed && !includeConflicts {
				if skipped, err = store.CountFailedConflicts(cmd.Context(), ledgerID, scbID); err != nil {
					return err
				}
			}
			if allFailed {
				if acknowledged, err = store.CountAcknowledged(cmd.Context(), ledgerID, scbID); err != nil {
					return err
				}
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"requeued": n, "skipped_conflicts": skipped, "skipped_acknowledged": acknowledged,
					"cleared_acknowledgement": n > 0 && cleared != nil}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.out, "%d row(s) requeued\n", n)
				if n > 0 && cleared != nil {
					fmt.Fprintf(a.out, "its acknowledgement (by %s at %s: %s) is cleared: it will be delivered\n",
						*cleared.AcknowledgedBy, cleared.AcknowledgedAt.UTC().Format(time.RFC3339), *cleared.AcknowledgedReason)
				}
				if skipped > 0 {
					fmt.Fprintf(a.out, "%d FAILED row(s) left alone: they failed on 409 (the SCB holds another body under our key); investigate, then --include-conflicts or --id\n", skipped)
				}
				if acknowledged > 0 {
					fmt.Fprintf(a.out, "%d acknowledged FAILED row(s) left alone (outbox list --status FAILED shows why); requeue one by --id to send it again\n", acknowledged)
				}
			}
			if n == 0 && id != 0 {
				return findings("there is no FAILED outbox row with id %d (see dualledger outbox list --status FAILED)", id)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&id, "id", 0, "the outbox row to requeue")
	cmd.Flags().BoolVar(&allFailed, "all-failed", false, "requeue every FAILED row")
	cmd.Flags().StringVar(&scbID, "scb", "", "with --all-failed: only this SCB's rows")
	cmd.Flags().StringVar(&ledgerID, "ledger", "", "only this ledger's rows (with --id: the row's ledger)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the operator log with the requeue)")
	cmd.Flags().BoolVar(&includeConflicts, "include-conflicts", false, "with --all-failed: also rows that failed on 409 (the SCB holds another body under our key; investigate first)")
	return cmd
}

func newOutboxRetryNowCmd(a *app) *cobra.Command {
	var (
		id       int64
		all      bool
		scbID    string
		ledgerID string
		reason   string
	)
	cmd := &cobra.Command{
		Use:   "retry-now (--id N | --all [--scb ID]) [--ledger L] [--reason TEXT]",
		Short: "Make rows that wait for their next attempt or poll (backoff, an SCB's Retry-After) due now",
		Long: `A QUEUED row waits until its next_attempt_at: the worker's backoff after a retryable error, or
the time an SCB asked for with Retry-After (up to 24 hours). A SENT or ACKED row whose polls failed
waits for its next poll the same way (next_poll_at). Once the cause is gone (the SCB is back from
its outage), this makes them due now: the status and the attempt budget do not change, and the
act goes into the operator log (with --reason). Runs as the schema's owner. FAILED rows are
outbox requeue's; rows being delivered, and SENT/ACKED rows polled on schedule, are left alone.
docs/runbooks/stuck-outbox.md.`,
		Example: `  dualledger outbox retry-now --all --scb SCB-1 --reason "SCB-1 back from its maintenance window"
  dualledger outbox retry-now --id 42`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.openForRowAct(cmd.Context(), id, all, "--all", scbID, ledgerID, reason)
			if err != nil {
				return err
			}
			defer release()
			n, err := outbox.NewStore(pool).RetryNow(cmd.Context(), outbox.RequeueRequest{Actor: a.cliActor(), LedgerID: ledgerID,
				ID: id, ScbID: scbID, Reason: reason})
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]int64{"due_now": n}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.out, "%d row(s) due now\n", n)
			}
			if n == 0 && id != 0 {
				return findings("there is no outbox row %d waiting for its next attempt (QUEUED) or, after failed polls, for its next poll (SENT, ACKED): see dualledger outbox list", id)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&id, "id", 0, "the outbox row")
	cmd.Flags().BoolVar(&all, "all", false, "every row waiting for its next attempt (QUEUED) or, after failed polls, its next poll (SENT, ACKED)")
	cmd.Flags().StringVar(&scbID, "scb", "", "with --all: only this SCB's rows")
	cmd.Flags().StringVar(&ledgerID, "ledger", "", "only this ledger's rows (with --id: the row's ledger)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the operator log)")
	return cmd
}

func newOutboxAcknowledgeCmd(a *app) *cobra.Command {
	var (
		id       int64
		ledgerID string
		reason   string
	)
	cmd := &cobra.Command{
		Use:     "acknowledge --id N --reason TEXT [--ledger L]",
		Aliases: []string{"ack"},
		Short:   "Acknowledge a FAILED row that will not be delivered (it leaves the FAILED alerts and the sync lag)",
		Long: `A FAILED row that will never be delivered: the SCB holds another entry under our key (409),
or refuses ours for good, and the two sides settled the difference another way (a reversal and a
new entry here, or the SCB's own correction; docs/runbooks/stuck-outbox.md). Acknowledging it
records who gave up on it and why (--reason is required: the incident and how it was settled),
in the row's attempts and in the operator log. The row stays FAILED and its entry is still not at
that SCB; outbox status counts it under FAILED and ACKNOWLEDGED, but the sync lag, outbox status
--alert-failed and the FAILED alerts leave it out, and requeue --all-failed leaves it alone.
outbox requeue --id N sends it again and clears the acknowledgement. Runs as the schema's owner.`,
		Example: `  dualledger outbox acknowledge --id 143 --reason "INC-2231: SCB-3 holds its own stl3-1; reversed here as stl3-1-rev, reposted as stl3-1b"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id <= 0 {
				return usage("--id must be an outbox row's id (positive), got %d", id)
			}
			if strings.TrimSpace(reason) == "" {
				return usage("--reason is required: the incident, and how the two ledgers were settled")
			}
			pool, release, err := a.openForRowAct(cmd.Context(), id, false, "", "", ledgerID, reason)
			if err != nil {
				return err
			}
			defer release()
			if err := outbox.NewStore(pool).Acknowledge(cmd.Context(), a.cliActor(), ledgerID, id, reason); err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"acknowledged": id})
			}
			fmt.Fprintf(a.out, "outbox row %d acknowledged: it stays FAILED, out of the alerts and the sync lag (outbox requeue --id %d sends it again)\n", id, id)
			return nil
		},
	}
	cmd.Flags().Int64Var(&id, "id", 0, "the FAILED outbox row")
	cmd.Flags().StringVar(&ledgerID, "ledger", "", "the row's ledger (optional: ids are unique across ledgers)")
	cmd.Flags().StringVar(&reason, "reason", "", "why it will not be delivered: the incident, and how it was settled (required; recorded)")
	return cmd
}

// openForRowAct checks the arguments requeue and retry-now share (a positive --id, or the flag
// allFlag that all stands for, not both; --scb only with allFlag; --reason) and opens the pool,
// refusing a --ledger or --scb that names nothing.
func (a *app) openForRowAct(ctx context.Context, id int64, all bool, allFlag, scbID, ledgerID, reason string) (*pgxpool.Pool, func(), error) {
	switch {
	case id < 0:
		return nil, nil, usage("--id must be an outbox row's id (positive), got %d", id)
	case (id == 0) == !all:
		return nil, nil, usage("give exactly one of --id N or %s", allFlag)
	case scbID != "" && !all:
		return nil, nil, usage("--scb goes with %s", allFlag)
	}
	if err := checkReason(reason); err != nil {
		return nil, nil, err
	}
	pool, release, err := a.open(ctx, openOptions{})
	if err != nil {
		return nil, nil, err
	}
	if err := checkFilters(ctx, pool, ledgerID, scbID); err != nil {
		release()
		return nil, nil, err
	}
	return pool, release, nil
}

// checkReason refuses a --reason the operator log would refuse (at most 1000 characters, no
// control character), as a usage error before anything is read.
func checkReason(reason string) error {
	if utf8.RuneCountInString(reason) > 1000 || strings.ContainsFunc(reason, unicode.IsControl) {
		return usage("--reason must be at most 1000 characters without control characters")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func newSettleCmd(a *app) *cobra.Command {
	var (
		req      settlement.Request
		ledgerID string
	)
	cmd := &cobra.Command{
		Use:   "settle",
		Short: "Post a GSS settlement between two member banks on the master ledger (DBIS-first)",
		Long: `Posts the settlement on the master ledger from the source bank's settlement account (its
account there for the currency and asset type) to the destination's, with one outbox row per
SCB in the same transaction, and returns at once with status DBIS_COMMITTED. The worker mirrors
it to both SCBs; it is SETTLED when both have it FINAL (dualledger settlements get REF).`,
		Example: `  dualledger settle --node SSN-1 --from SCB-1 --to SCB-2 --amount 1000.00 --currency USD --ref stl-1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			svc := settlement.New(pool, ledgerID, postOne(pool))
			s, err := svc.Settle(cmd.Context(), req)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(s)
			}
			printSettlement(a, s)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.NodeID, "node", "", "settlement node id (node_id)")
	f.StringVar(&req.SourceBankID, "from", "", "source bank (pays)")
	f.StringVar(&req.DestinationBankID, "to", "", "destination bank (receives)")
	f.StringVar(&req.Amount, "amount", "", "amount, a decimal string")
	f.StringVar(&req.CurrencyCode, "currency", "", "ISO 4217 code")
	f.StringVar(&req.AssetType, "asset-type", "fiat", "fiat, cbdc, commodity or security")
	f.StringVar(&req.ReferenceID, "ref", "", "reference id (idempotency key)")
	f.StringVar(&ledgerID, "ledger", "MASTER", "the master ledger")
	for _, r := range []string{"node", "from", "to", "amount", "currency", "ref"} {
		_ = cmd.MarkFlagRequired(r)
	}
	return cmd
}

func newSettlementsCmd(a *app) *cobra.Command {
	var ledgerID string
	cmd := &cobra.Command{
		Use:   "settlements",
		Short: "Show settlements (subcommand: get)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&ledgerID, "ledger", "MASTER", "the master ledger")
	cmd.AddCommand(&cobra.Command{
		Use:   "get REFERENCE_ID",
		Short: "A settlement's entry and each SCB's sync status (DBIS_COMMITTED or SETTLED)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			s, err := settlement.New(pool, ledgerID, postOne(pool)).Get(cmd.Context(), args[0])
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(s)
			}
			printSettlement(a, s)
			return nil
		},
	})
	return cmd
}

func printSettlement(a *app, s settlement.Settlement) {
	e := s.Entry
	replay := ""
	if s.Replayed {
		replay = " (replayed)"
	}
	fmt.Fprintf(a.out, "settlement %s: %s%s\n  entry %d seq %d on %s: %s %s %s -> %s, block %s\n", s.ReferenceID, s.Status, replay,
		e.ID, e.Seq, s.LedgerID, e.Amount, e.CurrencyCode, e.DebitAccountID, e.CreditAccountID, shortHash(e.BlockHash))
	for _, x := range s.Sync {
		extra := ""
		if x.LastError != nil && x.Status != outbox.Finalized {
			extra = " — " + *x.LastError
		}
		if x.AcknowledgedBy != nil && x.AcknowledgedReason != nil {
			extra += " — acknowledged by " + *x.AcknowledgedBy + ": " + *x.AcknowledgedReason
		}
		fmt.Fprintf(a.out, "  %-8s %-10s attempts %d%s\n", x.ScbID, x.Status, x.Attempts, extra)
	}
}

// postOne posts a single entry as a batch of one (CLI commands run no group commit).
func postOne(pool *pgxpool.Pool) func(ctx context.Context, ledgerID string, e ledger.EntryInput) (ledger.Result, error) {
	return func(ctx context.Context, ledgerID string, e ledger.EntryInput) (ledger.Result, error) {
		res, err := ledger.PostBatch(ctx, pool, ledgerID, []ledger.EntryInput{e}, false)
		if err != nil {
			return ledger.Result{}, err
		}
		return res[0], nil
	}
}
