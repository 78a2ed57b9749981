package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"dualledger/internal/demo"
	"dualledger/internal/pg"
)

func newDemoCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "A guided tour: post, refuse and verify entries on a real master ledger",
		Long: `Runs a short, checked tour of the ledger on the configured database (by default the private
PostgreSQL in ./.dualledger/pg, started for the occasion): a MASTER ledger with settlement
accounts of two member banks, a funding entry from an issuance account, a batch of payments, a
replayed duplicate, a conflicting reuse of a reference, a refused overdraft, the hash chain
verified and the balances printed; then two simulated member-bank ledgers (SCBs) on loopback
and the outbox worker: settlements go QUEUED -> SENT -> ACKED -> FINALIZED and SETTLED, and a
delivery that fails (a wrong API key) is requeued after the fix and delivered. It can run again
on the same data dir: each run uses its own references. It exits non-zero if any step gets an
answer other than the one it expects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			pool, release, err := a.open(cmd.Context(), openOptions{mayCreate: true})
			if err != nil {
				return err
			}
			defer release()
			r := &demo.Runner{DB: pool, Out: a.out, Run: demo.RunID(start)}
			fmt.Fprintf(a.out, "dualledger demo (run %s)\n", r.Run)
			if err := r.Ledger(cmd.Context()); err != nil {
				return findings("%w", err)
			}
			if err := r.Sync(cmd.Context()); err != nil {
				return findings("%w", err)
			}
			// The commands to try next reach the same database: the same --data-dir when it is
			// not the default (without it they would find no cluster and say so).
			prog, where := os.Args[0], a.dataDir
			switch {
			case a.getenv("DATABASE_URL") != "":
				where = "the database of DATABASE_URL"
			case a.dataDir != pg.DefaultDataDir:
				prog += " --data-dir " + a.dataDir
			}
			fmt.Fprintf(a.out, "\ndemo finished in %.1fs; the data stays in %s: try `%s accounts`, `%s outbox status`, `%s operator-log`, or the demo again\n",
				time.Since(start).Seconds(), where, prog, prog, prog)
			fmt.Fprintf(a.out, "the HTTP API needs a key: TOKEN=$(%s keys create ops --scopes admin), then %s serve and curl -H \"Authorization: Bearer $TOKEN\" localhost:8080/v1/ledgers\n",
				prog, prog)
			return nil
		},
	}
}
