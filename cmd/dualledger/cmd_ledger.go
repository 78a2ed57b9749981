package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"dualledger/internal/ledger"
	"dualledger/internal/pg"
)

func newMigrateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations (under an advisory lock; idempotent)",
		Long: `Apply the embedded schema under an advisory lock (several migrators at once are safe): the
migrations db/migrations/NNN_*.sql not applied yet, in order, then the function files
db/functions/*.sql that are new or changed (all of them after a migration ran). A migration's
checks (db/checks/NNN_*.before.sql, .after.sql) run before it and in its transaction; if one
returns rows (before 004: accounts that break the balance rules), migrate stops, prints them and
the fix, and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, release, err := a.adminConn(ctx, true)
			if err != nil {
				return err
			}
			defer release()
			migs, err := pg.LoadMigrations(dbFS())
			if err != nil {
				return err
			}
			before, err := pg.Status(ctx, conn, migs)
			if err != nil {
				return err
			}
			err = pg.Migrate(ctx, conn, migs, func(format string, args ...any) {
				if strings.HasPrefix(format, pg.WarnPrefix) {
					a.migrateLog(format, args...)
					return
				}
				if !a.jsonOut {
					fmt.Fprintf(a.out, format+"\n", args...)
				}
			})
			if err != nil {
				var ce *pg.CheckError
				if errors.As(err, &ce) {
					return findings("%w", err)
				}
				return err
			}
			after, err := pg.Status(ctx, conn, migs)
			if err != nil {
				return err
			}
			applied := 0
			for i := range after {
				if after[i].Applied && !before[i].Applied {
					applied++
				}
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"applied": applied, "migrations": after})
			}
			fmt.Fprintf(a.out, "%d migration(s) applied; schema is current (%d migrations)\n", applied, len(after))
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "List migrations and function files: applied, pending or changed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			conn, release, err := a.adminConn(ctx, false)
			if err != nil {
				return err
			}
			defer release()
			migs, err := pg.LoadMigrations(dbFS())
			if err != nil {
				return err
			}
			states, err := pg.Status(ctx, conn, migs)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(states)
			}
			for _, s := range states {
				fmt.Fprintf(a.out, "%-8s %s\n", s.State, s.Name)
			}
			return nil
		},
	})
	return cmd
}

func newLedgersCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledgers",
		Short: "List ledgers (subcommands: create, get)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			var ls []ledger.Ledger
			for after := ""; ; {
				page, err := ledger.ListLedgers(cmd.Context(), pool, after, 1000, nil)
				if err != nil {
					return err
				}
				ls = append(ls, page...)
				if len(page) < 1000 {
					break
				}
				after = page[len(page)-1].ID
			}
			if a.jsonOut {
				return a.printJSON(ls)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHEAD SEQ\tHEAD HASH")
			for _, l := range ls {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", l.ID, l.HeadSeq, l.HeadHash)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "create LEDGER_ID",
		Short: "Create an empty ledger",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{mayCreate: true})
			if err != nil {
				return err
			}
			defer release()
			l, err := ledger.CreateLedger(cmd.Context(), pool, a.cliActor(), args[0])
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(l)
			}
			fmt.Fprintf(a.out, "created ledger %s\n", l.ID)
			return nil
		},
	}, &cobra.Command{
		Use:   "get LEDGER_ID",
		Short: "Show a ledger and its chain head",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			l, err := ledger.GetLedger(cmd.Context(), pool, args[0])
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(l)
			}
			fmt.Fprintf(a.out, "ledger %s: head seq %d, head hash %s, created %s\n", l.ID, l.HeadSeq, l.HeadHash, l.CreatedAt.Format("2006-01-02T15:04:05Z"))
			return nil
		},
	})
	return cmd
}

func newAccountsCmd(a *app) *cobra.Command {
	var ledgerID string
	cmd := &cobra.Command{
		Use:   "accounts",
		Short: "List a ledger's accounts with balances (subcommands: create, get, update)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			var all []ledger.Account
			after := ""
			for {
				page, err := ledger.ListAccounts(cmd.Context(), pool, ledgerID, after, 1000, "")
				if err != nil {
					return rejection(err)
				}
				all = append(all, page...)
				if len(page) < 1000 {
					break
				}
				after = page[len(page)-1].ID
			}
			if a.jsonOut {
				return a.printJSON(all)
			}
			printAccounts(a, all)
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&ledgerID, "ledger", "MASTER", "ledger id")

	var in ledger.AccountInput
	var bankID, overdraft, metadata string
	create := &cobra.Command{
		Use:   "create ACCOUNT_ID",
		Short: "Create an account (zero balances)",
		Example: `  dualledger accounts create --ledger MASTER --currency USD SCB-1-settlement --bank SCB-1
  dualledger accounts create --ledger MASTER --currency USD issuance --overdraft unlimited`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in.ID = args[0]
			if cmd.Flags().Changed("bank") {
				in.BankID = &bankID
			}
			if cmd.Flags().Changed("overdraft") {
				in.OverdraftLimit = &overdraft
			}
			if metadata != "" {
				in.Metadata = json.RawMessage(metadata)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			acct, err := ledger.CreateAccount(cmd.Context(), pool, a.cliActor(), ledgerID, in)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(acct)
			}
			fmt.Fprintf(a.out, "created account %s/%s (%s %s, overdraft limit %s)\n", acct.LedgerID, acct.ID, acct.CurrencyCode, acct.AssetType, acct.OverdraftLimit)
			return nil
		},
	}
	create.Flags().StringVar(&in.CurrencyCode, "currency", "", "ISO 4217 currency code (required)")
	create.Flags().StringVar(&in.AssetType, "asset-type", "fiat", "fiat, cbdc, commodity or security")
	create.Flags().StringVar(&bankID, "bank", "", "member bank (SCB) that owns the account")
	create.Flags().StringVar(&overdraft, "overdraft", "0", `overdraft limit: a decimal, or "unlimited" (issuance and system accounts)`)
	create.Flags().StringVar(&metadata, "metadata", "", "JSON object")
	_ = create.MarkFlagRequired("currency")

	var asOf string
	get := &cobra.Command{
		Use:   "get ACCOUNT_ID [--as-of SEQ|TIME]",
		Short: "Show an account with balance, available and reserved balance, now or as of a seq or time",
		Long: `Show an account with its balances. With --as-of, the balances as of a point of the ledger, read
from stored rows (docs/holds.md): an entry seq (digits; the ledger as it was while that entry was
its head) or an RFC 3339 time (the last entry recorded at or before it).`,
		Example: `  dualledger accounts get SCB-1-USD --as-of 1200
  dualledger accounts get SCB-1-USD --as-of 2025-01-20T18:00:00Z --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var seqText, atText string
			if asOf != "" {
				if strings.Trim(asOf, "0123456789") == "" {
					seqText = asOf
				} else {
					atText = asOf
				}
			}
			seq, at, err := ledger.ParseAsOf(seqText, atText)
			if err != nil {
				return usage("--as-of %q: want an entry seq (digits) or an RFC 3339 time (%v)", asOf, err)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			var acct ledger.AccountAsOf
			if seq != nil || at != nil {
				acct, err = ledger.GetAccountAsOf(cmd.Context(), pool, ledgerID, args[0], seq, at)
			} else {
				acct.Account, err = ledger.GetAccount(cmd.Context(), pool, ledgerID, args[0])
			}
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(acct)
			}
			printAccounts(a, []ledger.Account{acct.Account})
			if acct.AsOfSeq != nil {
				fmt.Fprintf(a.out, "balances as of seq %d\n", *acct.AsOfSeq)
			}
			return nil
		},
	}
	get.Flags().StringVar(&asOf, "as-of", "", "balances as of this entry seq (digits) or RFC 3339 time")
	var upd ledger.AccountUpdate
	var newOverdraft, newStatus string
	update := &cobra.Command{
		Use:   "update ACCOUNT_ID --reason TEXT [--overdraft X|unlimited] [--status active|frozen|closed]",
		Short: "Change an account's overdraft limit or status (recorded in the operator log with the reason)",
		Long: `Change an account's overdraft limit and/or status. The change, the actor (cli:<OS user> and
the database role) and the reason go into the operator log in the same transaction. Postings
racing the change are refused and retried, so none moves money past the new rule. A frozen or
closed account takes part in no new posting (account_inactive).`,
		Example: `  dualledger accounts update --ledger MASTER SCB-1-USD --status frozen --reason "sanctions review"
  dualledger accounts update --ledger MASTER SCB-1-USD --overdraft 5000000.00 --reason "intraday credit line, ticket 4711"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("overdraft") {
				upd.OverdraftLimit = &newOverdraft
			}
			if cmd.Flags().Changed("status") {
				upd.Status = &newStatus
			}
			if upd.OverdraftLimit == nil && upd.Status == nil {
				return usage("give --overdraft and/or --status")
			}
			if strings.TrimSpace(upd.Reason) == "" {
				return usage("--reason is required: say why, for the operator log")
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			acct, err := ledger.UpdateAccount(cmd.Context(), pool, a.cliActor(), ledgerID, args[0], upd)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(acct)
			}
			printAccounts(a, []ledger.Account{acct})
			return nil
		},
	}
	update.Flags().StringVar(&newOverdraft, "overdraft", "", `new overdraft limit: a decimal, or "unlimited"`)
	update.Flags().StringVar(&newStatus, "status", "", "new status: active, frozen or closed")
	update.Flags().StringVar(&upd.Reason, "reason", "", "why (required; goes into the operator log)")
	cmd.AddCommand(create, get, update)
	return cmd
}

func printAccounts(a *app, accts []ledger.Account) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ACCOUNT\tBANK\tCCY\tBALANCE\tAVAILABLE\tRESERVED\tOVERDRAFT\tSTATUS\t")
	for _, acct := range accts {
		bank := "-"
		if acct.BankID != nil {
			bank = *acct.BankID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", acct.ID, bank, acct.CurrencyCode, acct.Balance,
			acct.AvailableBalance, acct.ReservedBalance, acct.OverdraftLimit, acct.Status)
	}
	_ = tw.Flush()
}

func newBanksCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "banks",
		Short: "List registered member banks (SCBs) whose ledgers are mirrored (subcommand: register)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			var banks []ledger.Bank
			for after := ""; ; {
				page, err := ledger.ListBanks(cmd.Context(), pool, after, 1000, "")
				if err != nil {
					return err
				}
				banks = append(banks, page...)
				if len(page) < 1000 {
					break
				}
				after = page[len(page)-1].ID
			}
			if a.jsonOut {
				return a.printJSON(banks)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BANK\tNAME\tREGISTERED")
			for _, b := range banks {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", b.ID, b.Name, b.CreatedAt.Format("2006-01-02T15:04:05Z"))
			}
			return tw.Flush()
		},
	}
	var name string
	reg := &cobra.Command{
		Use:   "register BANK_ID",
		Short: "Register a member bank: postings touching its accounts get outbox rows",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{mayCreate: true})
			if err != nil {
				return err
			}
			defer release()
			if name == "" {
				name = args[0]
			}
			b, err := ledger.RegisterBank(cmd.Context(), pool, a.cliActor(), args[0], name)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(b)
			}
			fmt.Fprintf(a.out, "registered bank %s (%s)\n", b.ID, b.Name)
			return nil
		},
	}
	reg.Flags().StringVar(&name, "name", "", "display name (default: the id)")
	cmd.AddCommand(reg)
	return cmd
}

func newPostCmd(a *app) *cobra.Command {
	var (
		ledgerID string
		in       ledger.EntryInput
		fx, meta string
		ts       string
		reverses int64
	)
	cmd := &cobra.Command{
		Use:   "post",
		Short: "Post one entry: amount moves from the debit account to the credit account",
		Long: `Post one entry through the posting function. Re-posting the same --ref with the same content
answers "replayed" with the original entry (exit 0); with other content it is a
reference_conflict (exit 1). Every rejection prints its code and exits 1.`,
		Example: `  dualledger post --ledger MASTER --debit issuance --credit SCB-1-settlement --amount 1000.00 --currency USD --type funding --ref fund-1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fx != "" {
				in.FxRate = &fx
			}
			if meta != "" {
				in.Metadata = json.RawMessage(meta)
			}
			if ts != "" {
				in.TimestampUTC = &ts
			}
			if reverses != 0 {
				in.ReversesEntryID = &reverses
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			res, err := ledger.PostBatch(cmd.Context(), pool, ledgerID, []ledger.EntryInput{in}, false)
			if err != nil {
				return err
			}
			r := res[0]
			if !r.OK() {
				return rejection(r.Err())
			}
			e, err := ledger.EntryFromResult(ledgerID, in, r)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"result": r.Code, "replayed": r.Code == ledger.CodeReplayed, "entry": e})
			}
			fmt.Fprintf(a.out, "%s: entry %d seq %d %s %s %s -> %s (block %s)\n  balances after: %s %s, %s %s\n",
				r.Code, e.ID, e.Seq, e.Amount, e.CurrencyCode, e.DebitAccountID, e.CreditAccountID, shortHash(e.BlockHash),
				e.DebitAccountID, deref(e.DebitBalanceAfter), e.CreditAccountID, deref(e.CreditBalanceAfter))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ledgerID, "ledger", "MASTER", "ledger id")
	f.StringVar(&in.DebitAccountID, "debit", "", "debit account (pays)")
	f.StringVar(&in.CreditAccountID, "credit", "", "credit account (receives)")
	f.StringVar(&in.Amount, "amount", "", `amount, a decimal string such as "100.00"`)
	f.StringVar(&in.CurrencyCode, "currency", "", "ISO 4217 code")
	f.StringVar(&in.AssetType, "asset-type", "fiat", "fiat, cbdc, commodity or security")
	f.StringVar(&in.TransactionType, "type", "", "transaction type")
	f.StringVar(&in.ReferenceID, "ref", "", "reference id (idempotency key, unique per ledger)")
	f.StringVar(&fx, "fx-rate", "", "FX rate, if any")
	f.StringVar(&meta, "metadata", "", "JSON object")
	f.StringVar(&ts, "timestamp", "", "business time, RFC 3339 (default: now)")
	f.Int64Var(&reverses, "reverses", 0, "id of the entry this one reverses")
	for _, req := range []string{"debit", "credit", "amount", "currency", "type", "ref"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

func newEntriesCmd(a *app) *cobra.Command {
	var (
		ledgerID string
		after    int64
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "entries",
		Short: "List a ledger's entries in seq order (subcommand: get)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 || after < 0 {
				return usage("--limit must be from 1 to 10000 and --after-seq not negative")
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			es, err := ledger.ListEntries(cmd.Context(), pool, ledgerID, after, limit)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(es)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tID\tREFERENCE\tDEBIT\tCREDIT\tAMOUNT\tCCY\tTYPE\tBLOCK")
			for _, e := range es {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.ID, e.ReferenceID, e.DebitAccountID,
					e.CreditAccountID, e.Amount, e.CurrencyCode, e.TransactionType, shortHash(e.BlockHash))
			}
			return tw.Flush()
		},
	}
	cmd.PersistentFlags().StringVar(&ledgerID, "ledger", "MASTER", "ledger id")
	cmd.Flags().Int64Var(&after, "after-seq", 0, "list entries with seq greater than this")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many entries")
	cmd.AddCommand(&cobra.Command{
		Use:   "get REFERENCE_ID",
		Short: "Show one entry by reference id, with seq, previous_hash and block_hash",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			e, err := ledger.GetEntryByReference(cmd.Context(), pool, ledgerID, args[0])
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(e)
			}
			b, _ := json.MarshalIndent(e, "", "  ")
			fmt.Fprintln(a.out, string(b))
			return nil
		},
	})
	return cmd
}

// rejection marks a ledger rule's answer (not an infrastructure failure) with exit code 1.
func rejection(err error) error {
	code := ledger.CodeOf(err)
	if code == ledger.CodeInternal || code == ledger.CodeUnavailable {
		return err
	}
	return &exitError{code: exitFindings, err: err}
}

func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return strings.TrimSpace(h)
}

// deref is s, or "-" when there is none.
func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
