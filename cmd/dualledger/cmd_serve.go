package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"dualledger/internal/httpapi"
	"dualledger/internal/ledger"
	"dualledger/internal/reconcile"
)

func newServeCmd(a *app) *cobra.Command {
	var (
		addr         string
		role         string
		withWorker   bool
		recon        scheduleOptions
		metricsAddr  string
		tlsCert      string
		tlsKey       string
		wopts        workerOptions
		holdSweep    time.Duration
		poolSize     int32
		maxBody      = httpapi.ByteSize(httpapi.DefaultMaxBody)
		maxBatchBody = httpapi.ByteSize(httpapi.DefaultMaxBatchBody)
		maxMetadata  = httpapi.ByteSize(httpapi.DefaultMaxMetadataBytes)
		cfg          = httpapi.Config{
			MaxBatch:        httpapi.DefaultMaxBatch,
			GroupCommitMax:  httpapi.DefaultGroupCommitMax,
			ShutdownTimeout: httpapi.DefaultShutdownTimeout,
		}
	)
	defaultAddr := a.getenv("DUALLEDGER_ADDR")
	if defaultAddr == "" {
		defaultAddr = httpapi.DefaultAddr
	}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (ledgers, accounts, entries, banks; /healthz, /readyz, /openapi.json; /metrics on --metrics-addr)",
		Long: `Serve the JSON API of docs/design.md §9 until SIGTERM or SIGINT, then shut down gracefully: stop
accepting connections, let in-flight requests finish (up to --shutdown-timeout), flush the
group commit and close the database pool.

Single-entry postings from concurrent clients are committed together per ledger (group commit):
--group-commit-delay lets the first posting of a batch wait for company (default 0: batches grow
by themselves under load), --group-commit-max caps a batch. The server runs as the restricted
role dualledger_api (--db-role; "" keeps the login role), which writes only through the posting and
administrative functions; the login role must be a plain member of it, never a superuser or the
schema's owner (refused unless --allow-owner; the embedded cluster logs in as dualledger_api_login,
which it creates). The in-process worker (--worker) runs as dualledger_worker. The API is described at GET /openapi.json. With --worker the outbox worker runs in the same
process (see dualledger worker --help for its flags); without it, run dualledger worker
separately. Every --reconcile-every (default 24h; 0 = off) the server reconciles each registered
SCB whose last good run is older than that (incremental, or full per --reconcile-full-every; as
dualledger_worker, with the SCBs' settings of the worker flags --scb-config / SCB_<ID>_API_URL; one
run per SCB at a time across processes; docs/reconciliation.md). dualledger worker runs the same
schedule; if this login cannot become dualledger_worker, serve leaves it to the worker and says so
in its log.`,
		Example: `  dualledger serve --metrics-addr 127.0.0.1:9463
  DUALLEDGER_ADDR=0.0.0.0:8443 dualledger serve --tls-cert tls.crt --tls-key tls.key --pool-size 32
  TOKEN=$(dualledger keys create ops --scopes admin)
  curl -s localhost:8080/v1/ledgers -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"id":"BOOKS"}'`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{"daemon": "serve"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (tlsCert == "") != (tlsKey == "") {
				return usage("--tls-cert and --tls-key go together")
			}
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return usage("--tls-cert/--tls-key: %v", err)
				}
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			if cfg.MaxInFlight < 1 || cfg.MaxConns < 1 || cfg.MaxInFlightPerKey < 0 {
				return usage("--max-in-flight and --max-conns must be at least 1, --max-in-flight-per-key not negative")
			}
			if cfg.ReadTimeout <= 0 || cfg.IdleTimeout <= 0 {
				return usage("--read-timeout and --idle-timeout must be positive")
			}
			if cfg.MaxMetadataDepth < 1 || cfg.MaxMetadataDepth > httpapi.MaxMetadataDepthLimit {
				return usage("--max-metadata-depth must be from 1 to %d", httpapi.MaxMetadataDepthLimit)
			}
			if maxMetadata < 2 || maxMetadata > httpapi.MaxMetadataBytesLimit {
				return usage("--max-metadata must be from 2 bytes ({}) to 1MiB (the database's limit for every caller)")
			}
			cfg.MaxMetadataBytes = int(maxMetadata)
			if cfg.MaxBatch < 1 || cfg.MaxBatch > ledger.MaxBatch {
				return usage("--max-batch must be from 1 to %d", ledger.MaxBatch)
			}
			if cfg.GroupCommitMax < 1 || cfg.GroupCommitMax > ledger.MaxBatch {
				return usage("--group-commit-max must be from 1 to %d", ledger.MaxBatch)
			}
			if cfg.GroupCommitDelay < 0 || cfg.GroupCommitDelay > time.Second {
				return usage("--group-commit-delay must be from 0 to 1s")
			}
			if poolSize < 0 {
				return usage("--pool-size must not be negative")
			}
			if holdSweep < 0 {
				return usage("--hold-sweep must not be negative (0 turns the sweeper off)")
			}
			if cfg.ShutdownTimeout <= 0 {
				return usage("--shutdown-timeout must be positive")
			}
			if withWorker || recon.every > 0 {
				if err := wopts.validate(); err != nil {
					return err
				}
			}
			if err := recon.validate(); err != nil {
				return err
			}
			cfg.MaxBody = int64(maxBody)
			cfg.MaxBatchBody = int64(maxBatchBody)
			cfg.Logger = a.logger

			ctx := cmd.Context()
			// Listen before touching the database: a taken port is the likeliest mistake and
			// should not cost a cluster start.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return &exitError{code: exitInfra, err: fmt.Errorf("listen on %s: %w", addr, err)}
			}
			defer ln.Close()

			pool, release, err := a.open(ctx, openOptions{role: role, maxConns: poolSize, service: true, mayCreate: true, api: true})
			if err != nil {
				return err
			}
			defer release() // after Serve: the pool closes only once the Poster has flushed

			srv, err := httpapi.New(pool, cfg)
			if err != nil {
				return err
			}
			if metricsAddr != "" {
				// Metrics never share the API's port: the API is exposed to clients, metrics
				// only to the monitoring network (deploy/ binds them to loopback).
				mln, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return &exitError{code: exitInfra, err: fmt.Errorf("listen on %s (--metrics-addr): %w", metricsAddr, err)}
				}
				srv.Go("metrics", serveMetrics(mln, srv.MetricsHandler()))
				if !a.jsonOut {
					fmt.Fprintf(a.errOut, "dualledger serve: metrics on http://%s/metrics\n", mln.Addr())
				}
			}
			// Reconciliation's gauges are read from the database on each scrape, whichever process ran it.
			if err := srv.Registry().Register(reconcile.NewCollector(pool, a.logger)); err != nil {
				return &exitError{code: exitInfra, err: err}
			}
			if recon.every > 0 {
				sched, err := newReconcileSchedule(ctx, a, wopts, recon, "serve")
				switch {
				case err == nil:
					srv.Go("reconcile", sched.Run)
				case cmd.Flags().Changed("reconcile-every"):
					return err
				default:
					// The default schedule must not keep the API down: the API's login usually
					// cannot become dualledger_worker, and `dualledger worker` (which can) runs the
					// same schedule. If no worker does, the alert on the last good run fires.
					a.logger.Warn("reconciliation schedule not started in serve (it runs as dualledger_worker, with the SCBs' settings); dualledger worker runs it (--reconcile-every); pass --reconcile-every 0 to leave it to the workers", "err", err)
				}
			}
			if holdSweep > 0 {
				srv.Go("hold-sweeper", holdSweeper(a, pool, holdSweep))
			}
			srv.Go("statistics", newTableStatistics(a, pool, time.Second))
			if withWorker {
				// The in-process outbox worker shares the server's lifetime and metrics.
				w, err := wopts.newWorker(ctx, a, pool, srv.Registry())
				if err != nil {
					return err
				}
				srv.Go("outbox-worker", w.Run)
			}

			if a.jsonOut {
				if err := a.printJSON(map[string]string{"listening": ln.Addr().String()}); err != nil {
					return err
				}
			} else {
				scheme := "http"
				if cfg.TLS != nil {
					scheme = "https"
				}
				fmt.Fprintf(a.errOut, "dualledger serve: listening on %s://%s (SIGTERM or Ctrl-C to stop); every /v1 request needs an API key (dualledger keys create)\n", scheme, ln.Addr())
			}
			if err := srv.Serve(ctx, ln); err != nil {
				return &exitError{code: exitInfra, err: err}
			}
			if !a.jsonOut {
				fmt.Fprintln(a.errOut, "dualledger serve: stopped")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", defaultAddr, "listen address HOST:PORT (env DUALLEDGER_ADDR)")
	f.StringVar(&role, "db-role", "dualledger_api", `database role to SET ROLE to after connecting ("" = the login role), see docs/security.md`)
	f.BoolVar(&a.allowOwner, "allow-owner", false, "run even if the database login role is a superuser or can act as the schema's owner (development only)")
	f.Int32Var(&poolSize, "pool-size", 0, "maximum database connections (0 = pgx's default, max(4, CPUs))")
	f.Var(&maxBody, "max-body", "largest request body, except batches (e.g. 1MiB)")
	f.Var(&maxBatchBody, "max-batch-body", "largest body of POST .../entries/batch")
	f.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "most entries in one batch request")
	f.DurationVar(&cfg.GroupCommitDelay, "group-commit-delay", 0, "how long a single posting may wait for others to share its transaction")
	f.IntVar(&cfg.GroupCommitMax, "group-commit-max", cfg.GroupCommitMax, "most single postings in one group-commit transaction")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
	f.StringVar(&cfg.MasterLedger, "master-ledger", "MASTER", "the ledger of GSS settlements (POST /v1/settlements)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and the Go profiler /debug/pprof/ on this HOST:PORT, a listener of its own (off by default; keep it on loopback or the monitoring network)")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (chain) file, with --tls-key")
	f.StringVar(&tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	f.Var(&maxMetadata, "max-metadata", "largest metadata of an entry or account, as sent (e.g. 16KiB)")
	f.IntVar(&cfg.MaxMetadataDepth, "max-metadata-depth", httpapi.DefaultMaxMetadataDepth, "deepest nesting of metadata, the object itself counting 1")
	f.IntVar(&cfg.MaxInFlight, "max-in-flight", httpapi.DefaultMaxInFlight, "most /v1 requests in flight at once; more are answered 429 at once")
	f.IntVar(&cfg.MaxInFlightPerKey, "max-in-flight-per-key", 0, "most /v1 requests of one API key in flight at once (0: half of --max-in-flight, at least 32)")
	f.IntVar(&cfg.MaxConns, "max-conns", httpapi.DefaultMaxConns, "most open client connections (past it, idle ones are closed to make room; with none idle, new ones are refused)")
	f.DurationVar(&cfg.ReadTimeout, "read-timeout", httpapi.DefaultReadTimeout, "how long reading one request (body included) may take")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", httpapi.DefaultIdleTimeout, "how long a keep-alive connection may stay idle")
	f.DurationVar(&holdSweep, "hold-sweep", 5*time.Second, "how often to release the holds whose expires_at has passed (0: never; then run dualledger holds expire from cron)")
	f.BoolVar(&withWorker, "worker", false, "also run the outbox worker in this process (same flags as the worker command)")
	recon.bind(f)
	wopts.bind(f, a.getenv)
	return cmd
}

// serveMetrics returns a task that serves h at /metrics on ln until its context ends, and the
// Go profiler at /debug/pprof/ beside it: the operations listener is the one place an operator
// can ask a live server where its time goes (docs/benchmarks.md), and it is never the API's port.
func serveMetrics(ln net.Listener, h http.Handler) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", h)
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = ms.Shutdown(sctx)
		}()
		if err := ms.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics listener: %w", err)
		}
		return nil
	}
}

// newTableStatistics has the ledger tables of a new database analysed once each has 16 pages
// (ledger.AnalyzeNewTables), instead of at autovacuum's next round. It stops when no table is
// waiting any more, or after newTableStatisticsFor: a table that stays empty (no holds, say) never
// stops waiting, and by then autovacuum has analysed any table with rows. It never stops the
// server: a failure is logged (the first, then once a minute) and tried again at the next tick.
func newTableStatistics(a *app, pool *pgxpool.Pool, every time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		stop := time.After(newTableStatisticsFor)
		var lastWarn time.Time
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-stop:
				return nil
			case <-t.C:
			}
			pending, err := ledger.AnalyzeNewTables(ctx, pool)
			switch {
			case err != nil && ctx.Err() == nil && time.Since(lastWarn) >= time.Minute:
				lastWarn = time.Now()
				a.logger.Warn("statistics for the new tables failed; retrying every second (logged once a minute)", slog.Any("error", err))
			case err == nil && pending == 0:
				return nil
			}
		}
	}
}

// newTableStatisticsFor bounds how long serve looks after the statistics of new tables.
const newTableStatisticsFor = 15 * time.Minute
