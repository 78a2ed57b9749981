package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/auth"
	"dualledger/internal/bench"
	"dualledger/internal/httpapi"
)

func newBenchCmd(a *app) *cobra.Command {
	var (
		modes    string
		clients  string
		dists    string
		duration time.Duration
		accounts int
		ledgers  int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure posting throughput and p50/p99 latency against the naive baseline (durable commits)",
		Long: `Measure posting throughput (entries/s) and latency (p50/p99 of one call) with
synchronous_commit=on, for each mode x distribution x client count:

  naive      one call per transaction of a plain PL/pgSQL posting function (baseline; no chain)
  single     one post_ledger_entry call per transaction (the seeds' function, docs/design.md §10.1)
  group      one posting per caller through the posting module's group commit (in process)
  http       one POST /v1/ledgers/{l}/entries per posting to a real HTTP server on loopback
             (keep-alive connections; JSON, API key, admission and group commit included)
  batch100   post_ledger_entries with 100 entries per transaction
  batch1000  post_ledger_entries with 1000 entries per transaction
  http-batch1000  POST /v1/ledgers/{l}/entries/batch with 1000 entries per request

Distributions: spread (random pairs of --accounts accounts) and hot (2 accounts).
--ledgers N posts to N ledgers at once (client c to ledger c mod N; the naive baseline has one
table). Each run uses fresh ledgers BENCH-<id>-<n> in the configured database. The http modes
start the API server in this process on 127.0.0.1 (a random port) as the role dualledger_api,
with a key of scope post on the bench ledgers that is revoked when the run ends; the server and
this load generator share the machine's CPUs. docs/benchmarks.md has the results of this machine
and how to read them. To drive a server running elsewhere, see bench http.`,
		Example: `  dualledger bench                                   # the full matrix (about 4 minutes)
  dualledger bench --modes naive,http --clients 32 --duration 10s
  dualledger bench --modes http,batch1000 --ledgers 4 --clients 32`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := bench.Config{Duration: duration, Accounts: accounts}
			for _, m := range strings.Split(modes, ",") {
				mode := bench.Mode(strings.TrimSpace(m))
				ok := false
				for _, known := range bench.AllModes {
					ok = ok || known == mode
				}
				if !ok {
					return usage("unknown mode %q (modes: naive, single, group, http, batch100, batch1000, http-batch1000)", mode)
				}
				cfg.Modes = append(cfg.Modes, mode)
			}
			for _, c := range strings.Split(clients, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(c))
				if err != nil || n < 1 || n > 256 {
					return usage("--clients: %q is not a number of clients between 1 and 256", c)
				}
				cfg.Clients = append(cfg.Clients, n)
			}
			for _, d := range strings.Split(dists, ",") {
				d = strings.TrimSpace(d)
				if d != bench.Spread && d != bench.Hot {
					return usage("unknown distribution %q (spread, hot)", d)
				}
				cfg.Dists = append(cfg.Dists, d)
			}
			if ledgers < 1 || ledgers > 64 {
				return usage("--ledgers must be from 1 to 64")
			}
			cfg.Ledgers = ledgers
			maxClients := 0
			for _, c := range cfg.Clients {
				maxClients = max(maxClients, c)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{maxConns: int32(maxClients + 4), mayCreate: true})
			if err != nil {
				return err
			}
			defer release()
			if slices.ContainsFunc(cfg.Modes, func(m bench.Mode) bool { return m == bench.ModeHTTP || m == bench.ModeHTTPBatch1000 }) {
				target, stop, err := startBenchServer(cmd.Context(), a, pool, maxClients)
				if err != nil {
					return err
				}
				defer stop()
				cfg.HTTP = target
			}
			if !a.jsonOut {
				cfg.Progress = func(r bench.Result) {
					fmt.Fprintf(a.errOut, "%-6s %-14s %d ledger(s) %3d clients: %8.0f entries/s  p50 %7.2f ms  p99 %7.2f ms  p999 %7.2f ms  errors %d %s\n",
						r.Dist, r.Mode, r.Ledgers, r.Clients, r.EntriesPerS, r.P50Ms, r.P99Ms, r.P999Ms, r.Errors, r.FirstError)
				}
			}
			results, err := bench.Run(cmd.Context(), pool, cfg)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(results)
			}
			fmt.Fprint(a.out, bench.Table(results))
			return nil
		},
	}
	cmd.AddCommand(newBenchHTTPCmd(a))
	f := cmd.Flags()
	f.StringVar(&modes, "modes", "naive,single,group,http,batch100,batch1000,http-batch1000", "comma-separated modes")
	f.IntVar(&ledgers, "ledgers", 1, "ledgers posted to at once (client c posts to ledger c mod N)")
	f.StringVar(&clients, "clients", "1,8,32", "comma-separated client counts")
	f.StringVar(&dists, "distributions", "spread,hot", "comma-separated distributions")
	f.DurationVar(&duration, "duration", 5*time.Second, "duration of each scenario")
	f.IntVar(&accounts, "accounts", 1000, "accounts in the spread distribution")
	return cmd
}

// startBenchServer serves the API in this process on a loopback port, as the role the real
// server uses (dualledger_api), with a fresh key of scope post that stop revokes. The bench
// ledgers do not exist yet, so the key is not limited to them; it is revoked when the run ends.
func startBenchServer(ctx context.Context, a *app, owner *pgxpool.Pool, clients int) (*bench.HTTPTarget, func(), error) {
	apiPool, releaseAPI, err := a.open(ctx, openOptions{role: "dualledger_api", maxConns: 16, mayCreate: true})
	if err != nil {
		return nil, nil, err
	}
	nk, err := auth.Create(ctx, owner, "system:bench", auth.Spec{Name: "bench-http", Scopes: []string{auth.ScopePost}})
	if err != nil {
		releaseAPI()
		return nil, nil, fmt.Errorf("create the bench's API key: %w", err)
	}
	cfg := httpapi.Config{
		MaxBatch:          httpapi.DefaultMaxBatch,
		GroupCommitMax:    httpapi.DefaultGroupCommitMax,
		ShutdownTimeout:   httpapi.DefaultShutdownTimeout,
		MaxInFlight:       max(httpapi.DefaultMaxInFlight, 2*clients),
		MaxInFlightPerKey: max(httpapi.DefaultMaxInFlight, 2*clients) / 2,
		// Only warnings: an access log line per request would measure the terminal.
		Logger: slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	srv, err := httpapi.NewServer(httpapi.Deps{Pool: apiPool}, cfg)
	if err == nil {
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan error, 1)
			go func() { done <- srv.Serve(sctx, ln) }()
			stop := func() {
				cancel()
				if err := <-done; err != nil {
					fmt.Fprintln(a.errOut, "dualledger bench: server:", err)
				}
				if _, err := auth.Revoke(context.WithoutCancel(ctx), owner, "system:bench", nk.ID, "bench run ended"); err != nil {
					fmt.Fprintln(a.errOut, "dualledger bench: revoke the bench key:", err)
				}
				releaseAPI()
			}
			return &bench.HTTPTarget{URL: "http://" + ln.Addr().String(), Token: nk.Token}, stop, nil
		}
	}
	if _, rerr := auth.Revoke(context.WithoutCancel(ctx), owner, "system:bench", nk.ID, "bench server did not start"); rerr != nil {
		err = errors.Join(err, rerr)
	}
	releaseAPI()
	return nil, nil, fmt.Errorf("start the bench's API server: %w", err)
}

func newBenchHTTPCmd(a *app) *cobra.Command {
	var (
		cfg      = bench.HTTPConfig{Clients: 32, Duration: 10 * time.Second, Accounts: 1000, Dist: bench.Spread}
		tokenEnv string
	)
	cmd := &cobra.Command{
		Use:   "http --url URL",
		Short: "Drive a running server through its HTTP API: closed loop at N clients, or open loop at a fixed rate",
		Long: `Post single entries to a running dualledger serve through its real HTTP API with keep-alive
connections, on a fresh ledger BENCH-HTTP-<id> that the run creates through the API (so the key
must be an admin key: DUALLEDGER_TOKEN, or the variable named by --token-env).

Closed loop (default): --clients callers, each sending its next posting when the previous one
answered. Open loop (--rate R): R postings per second on a fixed schedule whatever the answers,
over at most --clients connections; latency is counted from each posting's intended send time,
so queueing anywhere (client, server, database) shows. Reports created postings per second,
p50/p99/p999 of the created ones, every status (429: shed by the server's limits) and the p99
of the 429 answers.`,
		Example: `  TOKEN=$(dualledger keys create bench --scopes admin)
  dualledger serve &
  DUALLEDGER_TOKEN=$TOKEN dualledger bench http --url http://127.0.0.1:8080 --clients 32 --duration 20s
  DUALLEDGER_TOKEN=$TOKEN dualledger bench http --url http://127.0.0.1:8080 --rate 60000 --clients 512`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.URL == "" {
				return usage("--url is required (the base URL of a running dualledger serve)")
			}
			cfg.Token = a.getenv(tokenEnv)
			if cfg.Token == "" {
				return usage("no token: set %s to an admin key (dualledger keys create bench --scopes admin)", tokenEnv)
			}
			if cfg.Clients < 1 || cfg.Clients > 4096 {
				return usage("--clients must be from 1 to 4096")
			}
			if cfg.Rate < 0 || cfg.Duration <= 0 {
				return usage("--rate must not be negative and --duration must be positive")
			}
			if cfg.Dist != bench.Spread && cfg.Dist != bench.Hot {
				return usage("unknown distribution %q (spread, hot)", cfg.Dist)
			}
			r, err := bench.RunHTTP(cmd.Context(), cfg)
			if err != nil {
				return &exitError{code: exitInfra, err: err}
			}
			if a.jsonOut {
				return a.printJSON(r)
			}
			offered := ""
			if r.OfferedPerS > 0 {
				offered = fmt.Sprintf(" offered %.0f/s,", r.OfferedPerS)
			}
			fmt.Fprintf(a.out, "%s loop, %s, %d clients,%s sent %d in %.1fs: created %.0f/s  p50 %.2f ms  p99 %.2f ms  p999 %.2f ms  statuses %v",
				r.Mode, r.Dist, r.Clients, offered, r.Sent, r.Seconds, r.CreatedPerS, r.P50Ms, r.P99Ms, r.P999Ms, r.Statuses)
			if r.SentP99Ms > 0 {
				fmt.Fprintf(a.out, "  on the wire: p50 %.2f ms p99 %.2f ms", r.SentP50Ms, r.SentP99Ms)
			}
			if r.ShedP99Ms > 0 {
				fmt.Fprintf(a.out, "  429 p99 %.2f ms", r.ShedP99Ms)
			}
			if r.FirstError != "" {
				fmt.Fprintf(a.out, "  first error: %s", r.FirstError)
			}
			fmt.Fprintln(a.out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "base URL of the server, e.g. http://127.0.0.1:8080 (required)")
	f.StringVar(&tokenEnv, "token-env", "DUALLEDGER_TOKEN", "environment variable that holds an admin key's token (never a flag: it would show in ps)")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "closed loop: concurrent callers; open loop: most connections")
	f.Float64Var(&cfg.Rate, "rate", 0, "open loop at this many postings per second (0: closed loop)")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send")
	f.IntVar(&cfg.Accounts, "accounts", cfg.Accounts, "accounts of the spread distribution")
	f.StringVar(&cfg.Dist, "distribution", cfg.Dist, "spread or hot (2 accounts)")
	return cmd
}
