package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"dualledger/internal/statement"
)

func newStatementCmd(a *app) *cobra.Command {
	var ledgerID, accountID, from, to, format, output string
	cmd := &cobra.Command{
		Use:   "statement --ledger L --account A --from YYYY-MM-DD --to YYYY-MM-DD [--format json|csv|camt053]",
		Short: "An account statement: opening balance, every entry with its running balance, closing balance",
		Long: `Write the statement of one account for the booking dates --from to --to (UTC, both included): the
opening balance, every entry booked in the range with the account's balance after it, and the
closing balance, as JSON (default), CSV (a row per entry between an opening and a closing row)
or ISO 20022 camt.053.001.08 (BankToCustomerStatement: Bal OPBD and CLBD, one Ntry per entry;
amounts with at most 5 decimals). Balances are the stored balances-after of the entries, read in
one snapshot. To standard output unless --output FILE (created, never overwritten).
--json is the same as --format json.`,
		Example: `  dualledger statement --ledger MASTER --account SCB-1-USD --from 2026-11-01 --to 2026-11-30
  dualledger statement --ledger MASTER --account SCB-1-USD --from 2026-11-30 --to 2026-11-30 --format camt053 --output stmt.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ledgerID == "" || accountID == "" || from == "" || to == "" {
				return usage("--ledger, --account, --from and --to are required")
			}
			if a.jsonOut {
				format = string(statement.JSON)
			}
			f, err := statement.ParseFormat(format)
			if err != nil {
				return usage("--format: %v", err)
			}
			fromT, toT, err := statement.Dates(from, to)
			if err != nil {
				return usage("%v", err)
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			st, err := statement.Build(ctx, pool, ledgerID, accountID, fromT, toT)
			if err != nil {
				return rejection(err)
			}
			if output == "" {
				if err := statement.Write(a.out, st, f); err != nil {
					return rejection(fmt.Errorf("write the statement: %w", err))
				}
				return nil
			}
			file, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
			if err != nil {
				return usage("--output: %v", err)
			}
			bw := bufio.NewWriter(file)
			err = statement.Write(bw, st, f)
			if err == nil {
				err = bw.Flush()
			}
			if err == nil {
				err = file.Sync()
			}
			if cerr := file.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				_ = os.Remove(output) // no half statement left behind
				return rejection(fmt.Errorf("write the statement to %s: %w", output, err))
			}
			if !a.jsonOut {
				fmt.Fprintf(a.errOut, "statement of %s/%s, %s..%s: %d entries, opening %s, closing %s -> %s\n", ledgerID, accountID, st.From, st.To,
					st.Count, st.OpeningBalance, st.ClosingBalance, output)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&ledgerID, "ledger", "", "the ledger")
	fl.StringVar(&accountID, "account", "", "the account")
	fl.StringVar(&from, "from", "", "first booking date, YYYY-MM-DD (UTC)")
	fl.StringVar(&to, "to", "", "last booking date, YYYY-MM-DD (UTC)")
	fl.StringVar(&format, "format", "json", "json, csv or camt053")
	fl.StringVar(&output, "output", "", "write to this new file instead of standard output")
	return cmd
}
