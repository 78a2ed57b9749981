package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"dualledger/internal/httpapi"
	"dualledger/internal/ledger"
)

func newServeCmd(a *app) *cobra.Command {
	var (
		addr         string
		role         string
		withWorker   bool
		wopts        workerOptions
		poolSize     int32
		maxBody      = httpapi.ByteSize(httpapi.DefaultMaxBody)
		maxBatchBody = httpapi.ByteSize(httpapi.DefaultMaxBatchBody)
		cfg          = httpapi.Config{
			MaxBatch:        httpapi.DefaultMaxBatch,
			GroupCommitMax:  httpapi.DefaultGroupCommitMax,
			ShutdownTimeout: httpapi.DefaultShutdownTimeout,
		}
	)
	defaultAddr := os.Getenv("DUALLEDGER_ADDR")
	if defaultAddr == "" {
		defaultAddr = httpapi.DefaultAddr
	}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the HTTP API (ledgers, accounts, entries, banks; /healthz, /readyz, /metrics, /openapi.json)",
		Long: `Serve the JSON API of DESIGN §9 until SIGTERM or SIGINT, then shut down gracefully: stop
accepting connections, let in-flight requests finish (up to --shutdown-timeout), flush the
group commit and close the database pool.

Single-entry postings from concurrent clients are committed together per ledger (group commit):
--group-commit-delay lets the first posting of a batch wait for company (default 0: batches grow
by themselves under load), --group-commit-max caps a batch. The server connects as the restricted
role dualledger_app (--db-role; "" keeps the login role), which can post only through the posting
functions. The API is described at GET /openapi.json. With --worker the outbox worker runs in the same
process (see dualledger worker --help for its flags); without it, run dualledger worker
separately.`,
		Example: `  dualledger serve
  DUALLEDGER_ADDR=0.0.0.0:8080 dualledger serve --pool-size 32 -v
  curl -s localhost:8080/v1/ledgers -H 'Content-Type: application/json' -d '{"id":"MASTER"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if cfg.ShutdownTimeout <= 0 {
				return usage("--shutdown-timeout must be positive")
			}
			if withWorker {
				if err := wopts.validate(); err != nil {
					return err
				}
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

			pool, release, err := a.open(ctx, openOptions{role: role, maxConns: poolSize})
			if err != nil {
				return err
			}
			defer release() // after Serve: the pool closes only once the Poster has flushed

			srv, err := httpapi.New(pool, cfg)
			if err != nil {
				return err
			}
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
				fmt.Fprintf(a.errOut, "dualledger serve: listening on http://%s (SIGTERM or Ctrl-C to stop)\n", ln.Addr())
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
	f.StringVar(&role, "db-role", "dualledger_app", `database role to SET ROLE to after connecting ("" = the login role)`)
	f.Int32Var(&poolSize, "pool-size", 0, "maximum database connections (0 = pgx's default, max(4, CPUs))")
	f.Var(&maxBody, "max-body", "largest request body, except batches (e.g. 1MiB)")
	f.Var(&maxBatchBody, "max-batch-body", "largest body of POST .../entries/batch")
	f.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "most entries in one batch request")
	f.DurationVar(&cfg.GroupCommitDelay, "group-commit-delay", 0, "how long a single posting may wait for others to share its transaction")
	f.IntVar(&cfg.GroupCommitMax, "group-commit-max", cfg.GroupCommitMax, "most single postings in one group-commit transaction")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
	f.StringVar(&cfg.MasterLedger, "master-ledger", "MASTER", "the ledger of GSS settlements (POST /v1/settlements)")
	f.BoolVar(&withWorker, "worker", false, "also run the outbox worker in this process (same flags as the worker command)")
	wopts.bind(f)
	return cmd
}
