package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"dualledger/internal/bench"
)

func newBenchCmd(a *app) *cobra.Command {
	var (
		modes    string
		clients  string
		dists    string
		duration time.Duration
		accounts int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure posting throughput and p50/p99 latency against the naive baseline (durable commits)",
		Long: `Measure posting throughput (entries/s) and latency (p50/p99 of one call) with
synchronous_commit=on, for each mode x distribution x client count:

  naive      one call per transaction of a plain PL/pgSQL posting function (baseline; no chain)
  single     one post_ledger_entry call per transaction (the seed's function)
  group      one posting per caller through the posting module's group commit (the API path)
  batch100   post_ledger_entries with 100 entries per transaction
  batch1000  post_ledger_entries with 1000 entries per transaction

Distributions: spread (random pairs of --accounts accounts) and hot (2 accounts).
Each run uses a fresh ledger BENCH-<id> in the configured database. docs/benchmarks.md has
the results of this machine and how to read them.`,
		Example: `  dualledger bench                                   # the full matrix (about 3 minutes)
  dualledger bench --modes batch1000 --clients 8 --duration 10s`,
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
					return usage("unknown mode %q (modes: naive, single, group, batch100, batch1000)", mode)
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
			maxClients := 0
			for _, c := range cfg.Clients {
				maxClients = max(maxClients, c)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{maxConns: int32(maxClients + 4)})
			if err != nil {
				return err
			}
			defer release()
			if !a.jsonOut {
				cfg.Progress = func(r bench.Result) {
					fmt.Fprintf(a.errOut, "%-6s %-9s %3d clients: %8.0f entries/s  p50 %7.2f ms  p99 %7.2f ms  errors %d %s\n",
						r.Dist, r.Mode, r.Clients, r.EntriesPerS, r.P50Ms, r.P99Ms, r.Errors, r.FirstError)
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
	f := cmd.Flags()
	f.StringVar(&modes, "modes", "naive,single,group,batch100,batch1000", "comma-separated modes")
	f.StringVar(&clients, "clients", "1,8,32", "comma-separated client counts")
	f.StringVar(&dists, "distributions", "spread,hot", "comma-separated distributions")
	f.DurationVar(&duration, "duration", 5*time.Second, "duration of each scenario")
	f.IntVar(&accounts, "accounts", 1000, "accounts in the spread distribution")
	return cmd
}
