package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/reconcile"
	"dualledger/internal/scb"
)

// reconcileOptions are the flags of `reconcile scb` and `reconcile all`.
type reconcileOptions struct {
	ledgerID   string
	full       bool
	grace      time.Duration
	scbConfig  string
	scbTimeout time.Duration
}

func (o *reconcileOptions) bind(f *pflag.FlagSet, getenv func(string) string) {
	f.StringVar(&o.ledgerID, "ledger", "", "compare only this ledger (the SCB's list is read whole either way)")
	f.BoolVar(&o.full, "full", false, "reread the SCB's whole list (finds entries it lost or changed since they were read; forgets what it no longer lists)")
	f.DurationVar(&o.grace, "grace", 5*time.Minute, "deliveries younger than this are not yet expected at the SCB, nor FINALIZED here")
	f.StringVar(&o.scbConfig, "scb-config", getenv("DUALLEDGER_SCB_CONFIG"), "SCB config file (as for the worker); SCB_<ID>_API_URL / SCB_<ID>_API_KEY in the environment override it")
	f.DurationVar(&o.scbTimeout, "scb-timeout", 0, "timeout of one request to an SCB (0 = each SCB's own, default 10s)")
}

func (o *reconcileOptions) validate() error {
	if o.grace < 0 || o.grace > 7*24*time.Hour {
		return usage("--grace must be from 0 to 168h")
	}
	if o.scbTimeout < 0 {
		return usage("--scb-timeout must not be negative")
	}
	return nil
}

func newReconcileCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Compare our deliveries with each member bank's ledger and record the discrepancies",
		Long: `Read a member bank's (SCB's) entries through its API (GET /v1/entries?since=&limit=) and compare
them with the entries we delivered to it (an outbox row for that SCB), matched by (ledger,
reference). Each difference becomes a discrepancy: missing_on_scb, missing_on_dbis,
amount_mismatch, field_mismatch, hash_mismatch, status_mismatch, delivery_failed. A finding
seen again updates the same discrepancy; one no longer seen is marked cleared; none is ever
deleted. Work through them with dualledger discrepancies. docs/reconciliation.md.

Runs are incremental: the SCB's list is read from where the last good run stopped, and the
entries not FINAL there or with a live discrepancy are asked about again one by one. --full
rereads the whole list (an SCB that lost or changed an old entry is found this way). One run per
SCB at a time, across processes. Exit status 1 when discrepancies that are not RESOLVED remain.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var o1, o2 reconcileOptions
	var scbID string
	one := &cobra.Command{
		Use:     "scb --scb ID",
		Short:   "Reconcile one SCB",
		Example: "  dualledger reconcile scb --scb SCB-1\n  dualledger reconcile scb --scb SCB-1 --ledger MASTER --full --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scbID == "" {
				return usage("--scb is required")
			}
			return runReconcile(cmd.Context(), a, o1, []string{scbID})
		},
	}
	one.Flags().StringVar(&scbID, "scb", "", "the SCB (a registered bank id)")
	o1.bind(one.Flags(), a.getenv)
	all := &cobra.Command{
		Use:     "all",
		Short:   "Reconcile every registered SCB, one after the other",
		Example: "  dualledger reconcile all\n  dualledger reconcile all --full",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReconcile(cmd.Context(), a, o2, nil)
		},
	}
	o2.bind(all.Flags(), a.getenv)
	cmd.AddCommand(one, all, newReconcileRunsCmd(a))
	return cmd
}

// newReconcileRunsCmd lists the latest reconciliation runs: which SCB, full or incremental, who
// ran it, how it ended and why (the first place to look when the alert on the last good run fires).
func newReconcileRunsCmd(a *app) *cobra.Command {
	var (
		scbID string
		limit int
	)
	cmd := &cobra.Command{
		Use:   "runs [--scb ID] [--limit 20]",
		Short: "List the latest reconciliation runs, newest first: SCB, full or incremental, who ran it, status, counts, error",
		Long: `List the latest reconciliation runs, newest first (of one SCB with --scb): whether the run reread
the SCB's whole list (full) or went on from the last good run's cursor, who ran it (cli:..., or
system:worker-reconcile@... for a worker's schedule), its status (running, ok, failed, abandoned),
when it started and how long it took, what it read and found, and a failed run's error. Reading
only; docs/reconciliation.md.`,
		Example: "  dualledger reconcile runs\n  dualledger reconcile runs --scb SCB-1 --limit 5 --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 1000 {
				return usage("--limit must be from 1 to 1000")
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			if err := checkFilters(ctx, pool, "", scbID); err != nil {
				return err // a typo must not read as "no runs"
			}
			runs, err := reconcile.LastRuns(ctx, pool, scbID, limit)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"runs": runs})
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tSCB\tKIND\tSTATUS\tSTARTED\tTOOK\tREAD\tFOUND\tNEW\tCLEARED\tACTOR\tERROR")
			for _, r := range runs {
				kind, took, errText := "incremental", "-", ""
				if r.Full {
					kind = "full"
				}
				if r.LedgerFilter != nil {
					kind += " (" + *r.LedgerFilter + ")"
				}
				if r.FinishedAt != nil {
					took = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
				}
				if r.Error != nil {
					errText = *r.Error
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.SCBID, kind, r.Status,
					r.StartedAt.UTC().Format(time.RFC3339), took, r.SCBEntriesRead, r.Found, r.NewFound, r.Cleared, r.Actor, errText)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&scbID, "scb", "", "only this SCB's runs")
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs (1 to 1000)")
	return cmd
}

// runReconcile reconciles the SCBs ids (nil: every registered bank).
func runReconcile(ctx context.Context, a *app, o reconcileOptions, ids []string) error {
	if err := o.validate(); err != nil {
		return err
	}
	pool, release, err := a.open(ctx, openOptions{maxConns: 4})
	if err != nil {
		return err
	}
	defer release()
	if err := checkFilters(ctx, pool, o.ledgerID, ""); err != nil {
		return err
	}
	if ids == nil {
		banks, err := ledger.ListBanks(ctx, pool, "", 10000, "")
		if err != nil {
			return err
		}
		for _, b := range banks {
			ids = append(ids, b.ID)
		}
	}
	clients, err := outbox.NewClients(ctx, pool, a.environ, o.scbConfig, o.scbTimeout, 0, a.logger)
	if err != nil {
		return &exitError{code: exitInfra, err: err}
	}
	type result struct {
		SCB        string         `json:"scb_id"`
		Run        *reconcile.Run `json:"run,omitempty"`
		Unresolved int            `json:"unresolved"`
		Error      *ledger.Error  `json:"error,omitempty"`
		err        error
	}
	var (
		results                 []result
		infra, busy, unresolved int
	)
	for _, id := range ids {
		r := result{SCB: id}
		c, ok := clients.Resolve(id)
		rc, _ := c.(reconcile.SCB)
		if !ok || rc == nil {
			r.err = &exitError{code: exitInfra, err: fmt.Errorf("SCB %s: no API configured (SCB_%s_API_URL and SCB_%s_API_KEY, or --scb-config)", id, scb.EnvName(id), scb.EnvName(id))}
			if p := clients.Problem(id); p != "" {
				r.err = &exitError{code: exitInfra, err: fmt.Errorf("SCB %s: its configuration was refused: %s", id, p)}
			}
			if banks, err := ledger.ListBanks(ctx, pool, "", 10000, id); err == nil && len(banks) == 0 {
				r.err = usage("SCB %s is not registered (dualledger banks)", id)
			}
		} else {
			run, err := reconcile.Reconcile(ctx, pool, rc, reconcile.Options{Actor: a.cliActor(), SCBID: id, LedgerID: o.ledgerID, Full: o.full, Grace: o.grace})
			if run.ID != 0 {
				r.Run = &run
			}
			r.err = err
		}
		// Counted after a failed run too: what is still unresolved does not depend on this run.
		ds, err := reconcile.List(ctx, pool, reconcile.Filter{SCBID: id, LedgerID: o.ledgerID, Limit: 100000})
		if err != nil && r.err == nil {
			return err
		}
		if err == nil {
			for _, d := range ds {
				if d.Status != reconcile.StatusResolved {
					r.Unresolved++
				}
			}
			if r.Unresolved > 0 {
				unresolved++
			}
		}
		var le *ledger.Error
		var ee *exitError
		switch {
		case r.err == nil:
		case ledger.CodeOf(r.err) == ledger.CodeReconciliationInProgress:
			busy++
		case errors.As(r.err, &ee) && ee.code == exitUsage:
			return r.err
		default:
			infra++
		}
		if errors.As(r.err, &le) {
			r.Error = le
		} else if r.err != nil {
			r.Error = ledger.Errorf(ledger.CodeUnavailable, "%v", r.err)
		}
		results = append(results, r)
	}
	if a.jsonOut {
		if err := a.printJSON(map[string]any{"results": results}); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SCB\tRUN\tREAD\tREREAD\tCOMPARED\tFOUND\tNEW\tCLEARED\tUNRESOLVED\tRESULT")
		for _, r := range results {
			res := "ok"
			if r.err != nil {
				res = r.err.Error()
			}
			if r.Run == nil {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", r.SCB, res)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.SCB, r.Run.ID, r.Run.SCBEntriesRead, r.Run.SCBEntriesReread,
				r.Run.DBISRowsCompared, r.Run.Found, r.Run.NewFound, r.Run.Cleared, r.Unresolved, res)
		}
		_ = tw.Flush()
	}
	switch {
	case infra > 0:
		return &exitError{code: exitInfra, err: fmt.Errorf("reconciliation failed for %d of %d SCB(s)", infra, len(results))}
	case busy > 0:
		return &exitError{code: exitFindings, err: fmt.Errorf("%d SCB(s) are being reconciled by another process", busy)}
	case unresolved > 0:
		return findings("unresolved discrepancies with %d of %d SCB(s): dualledger discrepancies list", unresolved, len(results))
	}
	return nil
}

func newDiscrepanciesCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "discrepancies",
		Short: "The findings of reconciliation: list, show, acknowledge, resolve (requeue, correct, explained)",
		Long: `Discrepancies go OPEN -> ACKNOWLEDGED -> RESOLVED, each step with its actor (cli:<user>), time and
reason, recorded in the operator log. A discrepancy is never deleted; one whose cause disappeared
is marked cleared by the run that no longer saw it. docs/reconciliation.md has a runbook per kind.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDiscrepanciesListCmd(a), newDiscrepanciesShowCmd(a), newDiscrepanciesAckCmd(a), newDiscrepanciesResolveCmd(a))
	return cmd
}

func newDiscrepanciesListCmd(a *app) *cobra.Command {
	var f reconcile.Filter
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List discrepancies (live ones; --cleared adds those a later run no longer saw)",
		Example: "  dualledger discrepancies list --scb SCB-1 --status OPEN\n  dualledger discrepancies list --kind hash_mismatch --cleared --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFilter(f); err != nil {
				return err
			}
			pool, release, err := a.open(cmd.Context(), openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			if err := checkFilters(cmd.Context(), pool, f.LedgerID, f.SCBID); err != nil {
				return err // a typo must not read as "no discrepancies"
			}
			ds, err := reconcile.List(cmd.Context(), pool, f)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"discrepancies": ds})
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSCB\tLEDGER\tREFERENCE\tKIND\tSTATUS\tFIRST SEEN\tLAST SEEN\tSEEN")
			for _, d := range ds {
				status := d.Status
				if d.Cleared {
					status += " (cleared)"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", d.ID, d.SCBID, d.LedgerID, d.ReferenceID, d.Kind, status,
					d.FirstSeenAt.UTC().Format(time.RFC3339), d.LastSeenAt.UTC().Format(time.RFC3339), d.SeenCount)
			}
			_ = tw.Flush()
			if len(ds) == 0 {
				fmt.Fprintln(a.out, "no discrepancies")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.SCBID, "scb", "", "only this SCB")
	fl.StringVar(&f.LedgerID, "ledger", "", "only this ledger")
	fl.StringVar(&f.Kind, "kind", "", "only this kind ("+strings.Join(reconcile.Kinds(), ", ")+")")
	fl.StringVar(&f.Status, "status", "", "only this status (OPEN, ACKNOWLEDGED, RESOLVED)")
	fl.BoolVar(&f.Cleared, "cleared", false, "include the discrepancies a later run no longer saw")
	fl.Int64Var(&f.AfterID, "after", 0, "only ids after this one (paging)")
	fl.IntVar(&f.Limit, "limit", 100, "at most this many")
	return cmd
}

// checkFilter refuses an unknown kind or status (a typo would list nothing and look fine).
func checkFilter(f reconcile.Filter) error {
	if f.Kind != "" && !contains(reconcile.Kinds(), f.Kind) {
		return usage("--kind must be one of %s", strings.Join(reconcile.Kinds(), ", "))
	}
	if f.Status != "" && !contains([]string{reconcile.StatusOpen, reconcile.StatusAcknowledged, reconcile.StatusResolved}, f.Status) {
		return usage("--status must be OPEN, ACKNOWLEDGED or RESOLVED")
	}
	if f.Limit < 1 || f.Limit > 10000 {
		return usage("--limit must be from 1 to 10000")
	}
	return nil
}

func discrepancyID(arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id < 1 {
		return 0, usage("the discrepancy id must be a positive integer, not %q", arg)
	}
	return id, nil
}

func newDiscrepanciesShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show one discrepancy with both sides' values and its history",
		Example: "  dualledger discrepancies show 12",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := discrepancyID(args[0])
			if err != nil {
				return err
			}
			pool, release, err := a.open(cmd.Context(), openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			d, err := reconcile.Get(cmd.Context(), pool, id)
			if err != nil {
				return rejection(err)
			}
			return printDiscrepancy(a, d)
		},
	}
}

func printDiscrepancy(a *app, d reconcile.Discrepancy) error {
	if a.jsonOut {
		return a.printJSON(d)
	}
	fmt.Fprintf(a.out, "discrepancy %d: %s, %s %s/%s\n", d.ID, d.Kind, d.SCBID, d.LedgerID, d.ReferenceID)
	fmt.Fprintf(a.out, "  status      %s", d.Status)
	if d.Cleared {
		fmt.Fprintf(a.out, " (cleared by run %d at %s)", *d.ClearedRunID, d.ClearedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(a.out)
	fmt.Fprintf(a.out, "  seen        %d time(s), runs %d..%d, %s .. %s\n", d.SeenCount, d.FirstRunID, d.LastRunID,
		d.FirstSeenAt.UTC().Format(time.RFC3339), d.LastSeenAt.UTC().Format(time.RFC3339))
	if len(d.Fields) > 0 {
		fmt.Fprintf(a.out, "  differs in  %s\n", strings.Join(d.Fields, ", "))
	}
	fmt.Fprintf(a.out, "  ours        %s\n", rawOrNone(d.DBIS))
	fmt.Fprintf(a.out, "  SCB's       %s\n", rawOrNone(d.SCB))
	if d.AcknowledgedAt != nil {
		fmt.Fprintf(a.out, "  acknowledged by %s at %s: %s\n", *d.AcknowledgedBy, d.AcknowledgedAt.UTC().Format(time.RFC3339), deref(d.AcknowledgeReason))
	}
	if d.ResolvedAt != nil {
		fmt.Fprintf(a.out, "  resolved    %s by %s at %s: %s\n", *d.Resolution, *d.ResolvedBy, d.ResolvedAt.UTC().Format(time.RFC3339), deref(d.ResolutionReason))
		if d.ResolutionOutboxID != nil {
			fmt.Fprintf(a.out, "  outbox row  %d\n", *d.ResolutionOutboxID)
		}
		if d.CorrectionEntrySeq != nil {
			fmt.Fprintf(a.out, "  correction  seq %d, reference %s\n", *d.CorrectionEntrySeq, *d.CorrectionReferenceID)
		}
	}
	return nil
}

func rawOrNone(r json.RawMessage) string {
	if len(r) == 0 {
		return "(none)"
	}
	return string(r)
}

func newDiscrepanciesAckCmd(a *app) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "ack ID",
		Short:   "Acknowledge a discrepancy (OPEN -> ACKNOWLEDGED): someone is on it",
		Example: "  dualledger discrepancies ack 12 --reason 'asked SCB-1, ticket 4711'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := discrepancyID(args[0])
			if err != nil {
				return err
			}
			pool, release, err := a.open(cmd.Context(), openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			d, err := reconcile.Acknowledge(cmd.Context(), pool, a.cliActor(), id, reason)
			if err != nil {
				return rejection(err)
			}
			return printDiscrepancy(a, d)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the operator log)")
	return cmd
}

func newDiscrepanciesResolveCmd(a *app) *cobra.Command {
	var (
		resolution, reason string
		reverse            bool
		amount             string
		in                 ledger.EntryInput
	)
	cmd := &cobra.Command{
		Use:   "resolve ID --resolution requeue|correct|explained --reason TEXT",
		Short: "Resolve a discrepancy: redeliver it, post a correcting entry, or record why it stands",
		Long: `Resolve a discrepancy (OPEN or ACKNOWLEDGED -> RESOLVED), once: a second resolution is refused.

  requeue    deliver the entry to the SCB again through the outbox (missing_on_scb, delivery_failed,
             status_mismatch): a FAILED row is requeued, a SENT/ACKED/FINALIZED row whose entry the
             SCB lost is redelivered (recorded in the row's attempts and the operator log).
  correct    post a correcting entry through the posting function, reference recon-<ID>, linked to
             the discrepancy: --reverse reverses our entry (--amount for part of it), or give the
             entry (--debit, --credit, --amount, --currency, --asset-type, --type). It brings our
             ledger to what the discrepancy's SCB holds, so it is not sent to that SCB (which would
             book the difference twice): its outbox row is closed as waived (FAILED, acknowledged);
             the entry's other SCBs get it. So it must be exactly that state: the SCB's entry
             (missing_on_dbis), the difference of amounts (amount_mismatch: --reverse --amount
             DIFF when the SCB holds less), the full reversal of an entry the SCB does not hold
             (missing_on_scb, delivery_failed); other kinds are fixed by the SCB or explained.
             Another SCB with the same finding is resolved with the same correction. Running the
             same command again after a failure replays the posting: nothing is posted twice.
  explained  no action; --reason says why the difference stands.`,
		Example: `  dualledger discrepancies resolve 12 --resolution requeue --reason 'SCB-1 restored a backup'
  dualledger discrepancies resolve 13 --resolution correct --reverse --amount 1.00 --reason 'SCB-1 booked 9.00; 9.00 is agreed'
  dualledger discrepancies resolve 14 --resolution explained --reason 'SCB rounds to cents, ticket 99'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := discrepancyID(args[0])
			if err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usage("--reason is required")
			}
			res := reconcile.Resolution{Kind: resolution, Reason: reason}
			entryGiven := in.DebitAccountID != "" || in.CreditAccountID != "" || in.CurrencyCode != "" || in.TransactionType != ""
			switch resolution {
			case reconcile.ResolutionRequeue, reconcile.ResolutionExplained:
				if reverse || entryGiven || amount != "" {
					return usage("--reverse and the entry flags go only with --resolution correct")
				}
			case reconcile.ResolutionCorrect:
				switch {
				case reverse && entryGiven:
					return usage("--reverse or a correcting entry, not both")
				case reverse:
					res.Correction = &reconcile.Correction{Reverse: true, Amount: amount}
				case entryGiven:
					e := in
					e.Amount = amount
					if e.AssetType == "" {
						e.AssetType = "fiat"
					}
					res.Correction = &reconcile.Correction{Entry: &e}
				default:
					return usage("--resolution correct needs --reverse or the correcting entry (--debit, --credit, --amount, --currency, --type)")
				}
			default:
				return usage("--resolution must be requeue, correct or explained")
			}
			pool, release, err := a.open(cmd.Context(), openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			d, posted, err := reconcile.Resolve(cmd.Context(), pool, a.cliActor(), id, res)
			if err != nil {
				return rejection(err)
			}
			if posted != nil && !a.jsonOut {
				fmt.Fprintf(a.out, "correcting entry %s: seq %d (%s)\n", reconcile.CorrectionReference(id), posted.Seq, posted.Code)
				if d.ResolutionOutboxID != nil {
					fmt.Fprintf(a.out, "not sent to %s, which holds this state already (outbox row %d, an acknowledged FAILED row); the entry's other SCBs get it\n",
						d.SCBID, *d.ResolutionOutboxID)
				}
			}
			return printDiscrepancy(a, d)
		},
	}
	f := cmd.Flags()
	f.StringVar(&resolution, "resolution", "", "requeue, correct or explained")
	f.StringVar(&reason, "reason", "", "why (required; recorded with the resolution and in the operator log)")
	f.BoolVar(&reverse, "reverse", false, "correct: reverse our entry of the discrepancy")
	f.StringVar(&amount, "amount", "", "correct: the amount (of the correcting entry, or of a partial reversal)")
	f.StringVar(&in.DebitAccountID, "debit", "", "correct: the correcting entry's debit account")
	f.StringVar(&in.CreditAccountID, "credit", "", "correct: the correcting entry's credit account")
	f.StringVar(&in.CurrencyCode, "currency", "", "correct: the correcting entry's currency")
	f.StringVar(&in.AssetType, "asset-type", "", "correct: the correcting entry's asset type (default fiat)")
	f.StringVar(&in.TransactionType, "type", "", "correct: the correcting entry's transaction type")
	return cmd
}

// scheduleOptions are the flags of the reconciliation schedule, shared by `worker` and `serve`.
type scheduleOptions struct {
	every     time.Duration
	fullEvery time.Duration
	grace     time.Duration
}

func (o *scheduleOptions) bind(f *pflag.FlagSet) {
	f.DurationVar(&o.every, "reconcile-every", 24*time.Hour, "reconcile every registered SCB whose last good run is older than this (incremental, or full per --reconcile-full-every; as dualledger_worker; one run per SCB at a time across processes); 0 = off")
	f.DurationVar(&o.fullEvery, "reconcile-full-every", 7*24*time.Hour, "make a scheduled run a full one (the SCB's whole list reread, as reconcile --full: finds old entries the SCB lost or changed) when the SCB's last good full run is older than this; 0 = never")
	f.DurationVar(&o.grace, "reconcile-grace", 5*time.Minute, "deliveries younger than this are not yet expected at the SCB (see reconcile --grace)")
}

func (o *scheduleOptions) validate() error {
	if o.every < 0 || (o.every > 0 && o.every < time.Minute) {
		return usage("--reconcile-every must be 0 (off) or at least 1m")
	}
	if o.fullEvery < 0 || (o.fullEvery > 0 && o.fullEvery < time.Minute) {
		return usage("--reconcile-full-every must be 0 (never) or at least 1m")
	}
	if o.grace < 0 || o.grace > 7*24*time.Hour {
		return usage("--reconcile-grace must be from 0 to 168h")
	}
	return nil
}

// reconcileSchedule is `--reconcile-every` of `worker` and `serve`: reconciliation on a timer, on a
// pool of its own as dualledger_worker (the API's role may not write the reconciliation tables),
// closed when Run returns.
type reconcileSchedule struct {
	s       *reconcile.Schedule
	release func()
}

// newReconcileSchedule opens the schedule's pool; who ("worker", "serve") names it in the runs'
// actor.
func newReconcileSchedule(ctx context.Context, a *app, wopts workerOptions, ropts scheduleOptions, who string) (*reconcileSchedule, error) {
	pool, release, err := a.open(ctx, openOptions{role: wopts.role, maxConns: 2, service: true})
	if err != nil {
		return nil, err
	}
	clients, err := outbox.NewClients(ctx, pool, a.environ, wopts.scbConfig, wopts.scbTimeout, 0, a.logger)
	if err != nil {
		release()
		return nil, &exitError{code: exitInfra, err: err}
	}
	resolve := func(id string) (reconcile.SCB, bool) {
		c, ok := clients.Resolve(id)
		rc, isSCB := c.(reconcile.SCB)
		return rc, ok && isSCB
	}
	return &reconcileSchedule{release: release, s: &reconcile.Schedule{Pool: pool, Clients: resolve, Every: ropts.every, FullEvery: ropts.fullEvery, Grace: ropts.grace,
		Actor: "system:" + who + "-reconcile@" + wopts.cfg.WorkerID, Logger: a.logger}}, nil
}

// Run runs the schedule until ctx ends, then closes its pool.
func (r *reconcileSchedule) Run(ctx context.Context) error {
	defer r.release()
	return r.s.Run(ctx)
}
