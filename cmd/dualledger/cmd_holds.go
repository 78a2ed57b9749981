package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"dualledger/internal/ledger"
)

// newHoldsCmd is `dualledger holds`: reserve funds (create), then capture, void or let expire
// (docs/holds.md). Every subcommand goes through the database's hold functions, as the API does.
func newHoldsCmd(a *app) *cobra.Command {
	var (
		ledgerID string
		status   string
		account  string
		afterID  int64
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "holds",
		Short: "List a ledger's holds (subcommands: create, get, capture, void, expire)",
		Long: `A hold reserves an amount on a debit account towards a credit account: reserved_balance goes up,
available_balance down, balance is unchanged and nothing is posted. It is later captured (an entry
for all or part of it; the rest is released), voided (released) or expired (released by the
sweeper once expires_at has passed: 'serve' runs one, 'holds expire' is the same for cron).
States: PENDING -> CAPTURED | VOIDED | EXPIRED, each at most once. See docs/holds.md.

Without a subcommand: list the ledger's holds by id (--status, --account filter).`,
		Example: `  dualledger holds --ledger MASTER --status PENDING
  dualledger holds create --ledger MASTER --debit SCB-1-USD --credit SCB-2-USD --amount 250.00 --currency USD --type payment --ref pay-1 --expires-at 2030-01-01T00:00:00Z
  dualledger holds capture pay-1 --ref pay-1-capture --amount 200.00
  dualledger holds void pay-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 || afterID < 0 {
				return usage("--limit must be from 1 to 10000 and --after-id not negative")
			}
			if status != "" && !slices.Contains(ledger.HoldStatuses, status) {
				return usage("--status must be one of %v", ledger.HoldStatuses)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			hs, err := ledger.ListHolds(cmd.Context(), pool, ledgerID, ledger.HoldFilter{Status: status, Account: account, AfterID: afterID, Limit: limit})
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(hs)
			}
			printHolds(a, hs)
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&ledgerID, "ledger", "MASTER", "ledger id")
	cmd.Flags().StringVar(&status, "status", "", "only holds in this state: PENDING, CAPTURED, VOIDED, EXPIRED")
	cmd.Flags().StringVar(&account, "account", "", "only holds whose debit or credit account is this one")
	cmd.Flags().Int64Var(&afterID, "after-id", 0, "list holds with id greater than this")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many holds")

	cmd.AddCommand(newHoldsCreateCmd(a, &ledgerID), newHoldsGetCmd(a, &ledgerID), newHoldsCaptureCmd(a, &ledgerID),
		newHoldsVoidCmd(a, &ledgerID), newHoldsExpireCmd(a, &ledgerID))
	return cmd
}

func newHoldsCreateCmd(a *app, ledgerID *string) *cobra.Command {
	var (
		in                ledger.HoldInput
		fx, meta, ts, exp string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Reserve an amount on the debit account towards the credit account",
		Long: `Reserve --amount on --debit towards --credit (create_ledger_hold). Refused with
insufficient_funds when the debit account's available balance (with its overdraft limit) does
not cover it. The same --ref with the same terms answers "replayed" (exit 0); with other terms,
reference_conflict (exit 1). Hold references are their own namespace, apart from entries'.`,
		Example: `  dualledger holds create --debit SCB-1-USD --credit SCB-2-USD --amount 250.00 --currency USD --type payment --ref pay-1 --expires-at 2030-01-01T00:00:00Z`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, dst := range map[string]**string{"fx-rate": &in.FxRate, "timestamp": &in.TimestampUTC, "expires-at": &in.ExpiresAt} {
				if cmd.Flags().Changed(flag) {
					v, _ := cmd.Flags().GetString(flag)
					*dst = &v
				}
			}
			if meta != "" {
				in.Metadata = json.RawMessage(meta)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			res, err := ledger.CreateHold(cmd.Context(), pool, *ledgerID, in)
			if err != nil {
				return err
			}
			return printHoldResult(a, res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.DebitAccountID, "debit", "", "debit account (its funds are reserved)")
	f.StringVar(&in.CreditAccountID, "credit", "", "credit account (receives on capture)")
	f.StringVar(&in.Amount, "amount", "", `amount, a decimal string such as "100.00"`)
	f.StringVar(&in.CurrencyCode, "currency", "", "ISO 4217 code")
	f.StringVar(&in.AssetType, "asset-type", "fiat", "fiat, cbdc, commodity or security")
	f.StringVar(&in.TransactionType, "type", "", "transaction type (of the entry a capture posts)")
	f.StringVar(&in.ReferenceID, "ref", "", "the hold's reference id (idempotency key, unique per ledger among holds)")
	f.StringVar(&fx, "fx-rate", "", "FX rate, if any")
	f.StringVar(&meta, "metadata", "", "JSON object")
	f.StringVar(&ts, "timestamp", "", "business time, RFC 3339 (default: now)")
	f.StringVar(&exp, "expires-at", "", "RFC 3339 time after which the hold can no longer be captured (default: never)")
	for _, req := range []string{"debit", "credit", "amount", "currency", "type", "ref"} {
		_ = cmd.MarkFlagRequired(req)
	}
	return cmd
}

func newHoldsGetCmd(a *app, ledgerID *string) *cobra.Command {
	return &cobra.Command{
		Use:   "get HOLD_REFERENCE_ID",
		Short: "Show one hold: its terms, status and how it ended",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			h, err := ledger.GetHold(cmd.Context(), pool, *ledgerID, args[0])
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(h)
			}
			printHolds(a, []ledger.Hold{h})
			return nil
		},
	}
}

func newHoldsCaptureCmd(a *app, ledgerID *string) *cobra.Command {
	var (
		c      ledger.CaptureInput
		amount string
	)
	cmd := &cobra.Command{
		Use:   "capture HOLD_REFERENCE_ID --ref ENTRY_REFERENCE_ID [--amount X]",
		Short: "Capture a hold: post its entry (all, or --amount of it) and release the reservation",
		Long: `Post the hold's entry for --amount (default: the whole hold) under --ref, the entry's own
reference id, and release the whole reservation (capture_ledger_hold). Refused with
hold_expired after expires_at, hold_not_pending when the hold was captured under another
reference, voided or expired, invalid_amount above the hold's amount (exit 1). The same --ref
and amount again answers "replayed" with the original entry (exit 0).`,
		Example: `  dualledger holds capture pay-1 --ref pay-1-capture --amount 200.00`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("amount") {
				c.Amount = &amount
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			res, err := ledger.CaptureHold(cmd.Context(), pool, *ledgerID, args[0], c)
			if err != nil {
				return err
			}
			return printHoldResult(a, res)
		},
	}
	cmd.Flags().StringVar(&c.ReferenceID, "ref", "", "reference id of the entry the capture posts (required)")
	cmd.Flags().StringVar(&amount, "amount", "", "amount to post (default: the whole hold)")
	_ = cmd.MarkFlagRequired("ref")
	return cmd
}

func newHoldsVoidCmd(a *app, ledgerID *string) *cobra.Command {
	return &cobra.Command{
		Use:   "void HOLD_REFERENCE_ID",
		Short: "Void a pending hold: release its reservation, post nothing",
		Long: `Release a PENDING hold (void_ledger_hold). Voiding a voided hold answers "replayed" (exit 0);
a captured one hold_not_pending, an expired one hold_expired (exit 1).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			res, err := ledger.VoidHold(cmd.Context(), pool, *ledgerID, args[0])
			if err != nil {
				return err
			}
			return printHoldResult(a, res)
		},
	}
}

func newHoldsExpireCmd(a *app, ledgerID *string) *cobra.Command {
	var (
		all   bool
		batch int
	)
	cmd := &cobra.Command{
		Use:   "expire",
		Short: "Release every pending hold whose expires_at has passed (the sweeper, for cron)",
		Long: `Release the PENDING holds whose expires_at has passed, on the database clock: of --ledger, or of
every ledger with --all, --batch holds per transaction (expire_ledger_holds). Each becomes
EXPIRED and its funds go back to available. 'serve' runs the same sweep every --hold-sweep
interval; this command is for deployments without it. Prints what it released; exit 0 even
when nothing was due.`,
		Example: `  dualledger holds expire --all
  dualledger holds expire --ledger MASTER --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch < 1 || batch > 100000 {
				return usage("--batch must be from 1 to 100000")
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			var ids []string
			if !all {
				ids = []string{*ledgerID}
			}
			expired, err := ledger.ExpireHolds(cmd.Context(), pool, ids, batch)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"expired": expired})
			}
			for _, e := range expired {
				fmt.Fprintf(a.out, "expired %s/%s: %s released on %s (expires_at %s)\n", e.LedgerID, e.ReferenceID, e.Amount,
					e.AccountID, e.ExpiresAt.Format("2006-01-02T15:04:05.000000Z07:00"))
			}
			fmt.Fprintf(a.out, "%d hold(s) expired\n", len(expired))
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every ledger (default: --ledger only)")
	cmd.Flags().IntVar(&batch, "batch", 1000, "holds released per transaction")
	return cmd
}

// printHoldResult prints a hold operation's answer; a rejection exits 1.
func printHoldResult(a *app, r ledger.HoldResult) error {
	if !r.OK() {
		return rejection(r.Err())
	}
	if a.jsonOut {
		out := map[string]any{"result": r.Code, "replayed": r.Code == ledger.CodeReplayed, "hold": r.Hold}
		if r.Entry != nil {
			out["entry"] = r.Entry
		}
		return a.printJSON(out)
	}
	h := r.Hold
	fmt.Fprintf(a.out, "%s: hold %s is %s: %s %s %s -> %s\n", r.Code, h.ReferenceID, h.Status, h.Amount, h.CurrencyCode,
		h.DebitAccountID, h.CreditAccountID)
	if e := r.Entry; e != nil {
		fmt.Fprintf(a.out, "  entry %d seq %d %s %s (ref %s, block %s)\n", e.ID, e.Seq, e.Amount, e.CurrencyCode, e.ReferenceID,
			shortHash(e.BlockHash))
	}
	return nil
}

func printHolds(a *app, hs []ledger.Hold) {
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREFERENCE\tSTATUS\tDEBIT\tCREDIT\tAMOUNT\tCCY\tEXPIRES\tCAPTURED\tCAPTURE REF")
	for _, h := range hs {
		exp := "-"
		if h.ExpiresAt != nil {
			exp = h.ExpiresAt.Format("2006-01-02T15:04:05Z07:00")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.ReferenceID, h.Status, h.DebitAccountID,
			h.CreditAccountID, h.Amount, h.CurrencyCode, exp, deref(h.CapturedAmount), deref(h.CaptureReferenceID))
	}
	_ = tw.Flush()
}

// holdSweeper is serve's task that releases expired holds every interval (ledger.ExpireHolds, as
// `holds expire --all` does). A failed sweep is logged and tried again at the next tick: a
// capture after expires_at is refused by the database whether or not the sweep has run, so a
// late sweep only delays the release of the funds.
func holdSweeper(a *app, pool *pgxpool.Pool, every time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			expired, err := ledger.ExpireHolds(ctx, pool, nil, 1000)
			if err != nil && ctx.Err() == nil {
				a.logger.Warn("hold sweep failed; retrying at the next tick", slog.Any("error", err))
			}
			if len(expired) > 0 {
				a.logger.Info("holds expired", slog.Int("count", len(expired)))
			}
		}
	}
}
