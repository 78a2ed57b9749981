package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"dualledger/internal/integrity"
)

func newVerifyChainCmd(a *app) *cobra.Command {
	var (
		ledgerID      string
		pageSize      int
		progress      bool
		againstSCBs   bool
		checkpointDir string
		checkpointKey string
		scbConfig     string
		scbTimeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify-chain",
		Short: "Recompute every entry's block_hash and check seq, links and the ledger head (exit 1 if broken)",
		Long: `Walk each ledger's entries in seq order (all ledgers, or --ledger), recompute every block_hash
in Go from the canonical encoding (docs/hash-chain.md) and check that seq runs 1, 2, 3, ...
without gaps, that each previous_hash is the block_hash before it (32 zero bytes for seq 1), and
that the ledger head (head_seq, head_hash) is the last entry. Then the same for the ledger's hold
events (their own chain: hold_head_seq, hold_head_hash; docs/hash-chain.md, "Hold events").

Entries are read in pages (keyset on the primary key), so memory stays flat for any chain length;
each ledger is read from one consistent snapshot, so postings may continue meanwhile.

A ledger's first problem is reported with its seq and what is wrong (hash_mismatch: stored vs
recomputed block_hash; link: previous_hash vs the prior block_hash; gap: a missing seq;
head_mismatch: the head is not the last entry), and the command exits 1.

The chain alone proves nothing against whoever can rewrite it whole (an entry changed, every later
block_hash, the head and the balances recomputed): that passes the walk above and audit. Two
witnesses outside the database find it (docs/hash-chain.md, "Witnesses"):

  --against-scbs        read every registered SCB's entries (GET /v1/entries) and check the
                        block_hash each holds against ours; names the first seq an SCB contradicts
                        (only hashes: missing or changed entries are reconcile's findings)
  --checkpoints DIR     check every signed checkpoint in DIR (dualledger checkpoint) with the public
                        key --checkpoint-key: the chain must still hold each signed head hash at its
                        seq; names the lowest signed seq it no longer holds (the rewrite is at or
                        before it, after the highest seq that still holds)`,
		Example: `  dualledger verify-chain
  dualledger verify-chain --ledger MASTER --json
  dualledger verify-chain --against-scbs
  dualledger verify-chain --checkpoints /var/lib/dualledger/checkpoints --checkpoint-key /etc/dualledger/checkpoint.key.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pageSize < 0 {
				return usage("--page-size must be positive")
			}
			if (checkpointDir == "") != (checkpointKey == "") {
				return usage("--checkpoints and --checkpoint-key go together")
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()

			opts := integrity.VerifyOptions{PageSize: pageSize}
			if progress {
				opts.Progress = throttledProgress(a)
			}
			var ids []string
			if ledgerID != "" {
				ids = []string{ledgerID}
			}
			var broken []string
			reports, err := integrity.VerifyChains(ctx, pool, ids, opts, func(r integrity.ChainReport) {
				if !r.Intact {
					broken = append(broken, fmt.Sprintf("%s at %s seq %d (%s)", r.LedgerID, r.Problem.Chain, r.Problem.Seq, r.Problem.Kind))
				}
				if !a.jsonOut {
					printChainReport(a, r)
				}
			})
			if err != nil {
				return rejection(err)
			}
			// One JSON document: the chains, then what the witnesses say.
			doc := map[string]any{"ok": len(broken) == 0, "ledgers": reports}
			if !a.jsonOut && len(reports) == 0 {
				fmt.Fprintln(a.out, "no ledgers")
			}
			var witnessed, unread []string
			if len(broken) == 0 && againstSCBs {
				w, reps, u, err := verifyAgainstSCBs(ctx, a, pool, ledgerID, scbConfig, scbTimeout)
				if err != nil {
					return err
				}
				witnessed, doc["against_scbs"], unread = append(witnessed, w...), reps, u
				doc["scbs_not_read"] = unread
			}
			if len(broken) == 0 && checkpointDir != "" {
				w, rep, err := verifyCheckpoints(ctx, a, pool, ledgerID, checkpointDir, checkpointKey)
				if err != nil {
					return err
				}
				witnessed, doc["checkpoints"] = append(witnessed, w...), rep
			}
			if a.jsonOut {
				doc["ok"] = len(broken) == 0 && len(witnessed) == 0 && len(unread) == 0
				doc["witnesses_contradict"] = witnessed
				if err := a.printJSON(doc); err != nil {
					return err
				}
			}
			if len(broken) > 0 {
				return findings("hash chain broken in %d of %d ledger(s): %s", len(broken), len(reports), strings.Join(broken, ", "))
			}
			if len(witnessed) > 0 {
				if len(unread) > 0 {
					return findings("the chain is contradicted by its witnesses: %s (and %d SCB(s) could not be read: %s)",
						strings.Join(witnessed, "; "), len(unread), strings.Join(unread, "; "))
				}
				return findings("the chain is contradicted by its witnesses: %s", strings.Join(witnessed, "; "))
			}
			if len(unread) > 0 {
				return &exitError{code: exitInfra, err: fmt.Errorf("%d SCB(s) could not be read, the others confirm the chain: %s",
					len(unread), strings.Join(unread, "; "))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&againstSCBs, "against-scbs", false, "also check every block_hash the registered SCBs hold against ours")
	cmd.Flags().StringVar(&checkpointDir, "checkpoints", "", "also check the signed checkpoints in this directory (dualledger checkpoint)")
	cmd.Flags().StringVar(&checkpointKey, "checkpoint-key", "", "the Ed25519 public key (PEM) the checkpoints must be signed with")
	cmd.Flags().StringVar(&scbConfig, "scb-config", a.getenv("DUALLEDGER_SCB_CONFIG"), "SCB config file (as for the worker), for --against-scbs")
	cmd.Flags().DurationVar(&scbTimeout, "scb-timeout", 0, "timeout of one request to an SCB (0 = each SCB's own)")
	cmd.Flags().StringVar(&ledgerID, "ledger", "", "verify only this ledger (default: all ledgers)")
	cmd.Flags().IntVar(&pageSize, "page-size", integrity.DefaultPageSize, "entries read per query")
	cmd.Flags().BoolVar(&progress, "progress", false, "report progress on stderr about once a second")
	return cmd
}

// throttledProgress prints "LEDGER: N entries verified" on stderr at most once a second, so a
// long verification shows it is alive without flooding the terminal.
func throttledProgress(a *app) func(ledgerID string, seq int64) {
	var last time.Time
	return func(ledgerID string, seq int64) {
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		fmt.Fprintf(a.errOut, "%s: %d entries verified\n", ledgerID, seq)
	}
}

func printChainReport(a *app, r integrity.ChainReport) {
	if r.Intact {
		fmt.Fprintf(a.out, "ledger %s: %d entries and %d hold events, chains intact, head %d %s\n", r.LedgerID, r.Entries,
			r.HoldEvents, r.HeadSeq, r.HeadHash)
		return
	}
	p := r.Problem
	fmt.Fprintf(a.out, "ledger %s: BROKEN at %s seq %d (%s): %s\n", r.LedgerID, p.Chain, p.Seq, p.Kind, p.Message)
	if p.EntryID != 0 {
		fmt.Fprintf(a.out, "  entry     %d, reference_id %q\n", p.EntryID, p.ReferenceID)
	}
	switch p.Kind {
	case integrity.ProblemHashMismatch:
		fmt.Fprintf(a.out, "  stored     block_hash %s\n  recomputed block_hash %s\n", p.Stored, p.Expected)
	case integrity.ProblemLink:
		fmt.Fprintf(a.out, "  stored previous_hash      %s\n  block_hash of seq %-8d %s\n", p.Stored, p.Seq-1, p.Expected)
	case integrity.ProblemHead:
		fmt.Fprintf(a.out, "  ledger head  %s\n  last entry   %s\n", p.Stored, p.Expected)
	}
	fmt.Fprintf(a.out, "  %d entries before it verified; head %d %s\n", r.Entries, r.HeadSeq, r.HeadHash)
}

func newAuditCmd(a *app) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check balances, sequences, heads, the hash chain and the schema with set-based SQL (exit 1 on any finding)",
		Long: `Run the audit checks, each one set-based SQL over whole tables, all in one consistent snapshot:

  column_names            the snake_case columns, constraint and function the code relies on exist
  account_rules           reserved >= 0, available = balance - reserved, available >= -overdraft_limit
  reserved_holds          reserved = Σ pending holds of the account, available = balance - reserved
  duplicate_references    one entry per (ledger_id, reference_id)
  entry_accounts          both accounts of an entry exist with its currency and asset type
  balances_match_entries  balance = Σ credits − Σ debits
  zero_sum                balances sum to 0 per (ledger, currency, asset type)
  gapless_seq             count(*) = max(seq) = head_seq per ledger
  ledger_head             head_hash is the block_hash of entry head_seq
  hash_chain              block_hash and previous_hash recomputed in SQL
  balance_after           each entry's balance-after is the account's running balance
  operator_log            the operator log's hash chain, seq and head
  hold_chain              the hold events' hash chain, seq and hold head, recomputed in SQL
  hold_states             each hold's events match its state; a capture's entry matches the hold
  function_definitions    every function (body, settings, privileges) is as the last migrate left it
  table_privileges        no direct write grant on the ledger's tables; no trigger on them disabled

scripts/audit-balances.sql and scripts/verify-column-names.sql run the same checks with psql.
Each check prints ok, FAIL with its first findings (--limit), or skip with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return usage("--limit must be at least 1")
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{maxConns: 2, asItIs: true})
			if err != nil {
				return err
			}
			defer release()
			r, err := integrity.Audit(ctx, pool, integrity.AuditOptions{Limit: limit})
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else if err := printAudit(a, r); err != nil {
				return err
			}
			if failed := r.Failed(); len(failed) > 0 {
				return findings("audit failed %d of %d checks: %s", len(failed), len(r.Checks), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", integrity.DefaultFindingLimit, "findings listed per check (all are counted)")
	return cmd
}

func printAudit(a *app, r integrity.AuditReport) error {
	for _, c := range r.Checks {
		switch c.Status {
		case integrity.StatusOK:
			fmt.Fprintf(a.out, "ok    %-22s  %s\n", c.Name, c.Description)
		case integrity.StatusSkipped:
			fmt.Fprintf(a.out, "skip  %-22s  %s\n", c.Name, c.Note)
		default:
			fmt.Fprintf(a.out, "FAIL  %-22s  %d finding(s): %s\n", c.Name, c.Total, c.Description)
			for _, f := range c.Findings {
				fmt.Fprintf(a.out, "        %s\n", f.Message)
			}
			if more := c.Total - int64(len(c.Findings)); more > 0 {
				fmt.Fprintf(a.out, "        … and %d more (--limit to list more, --json for details)\n", more)
			}
		}
	}
	if failed := r.Failed(); len(failed) > 0 {
		fmt.Fprintf(a.out, "audit: %d of %d checks FAILED (%s)\n", len(failed), len(r.Checks), r.Duration.Round(time.Millisecond))
	} else {
		fmt.Fprintf(a.out, "audit: all checks passed (%s)\n", r.Duration.Round(time.Millisecond))
	}
	return nil
}
