package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"dualledger/internal/integrity"
	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/scb"
)

func newCheckpointCmd(a *app) *cobra.Command {
	var (
		keyPath, dir, ledgerID string
	)
	cmd := &cobra.Command{
		Use:   "checkpoint --key FILE --dir DIR",
		Short: "Sign each ledger's head (seq, head hash, time) with a key kept outside the database, into an append-only directory",
		Long: `Write one signed checkpoint per ledger (all, or --ledger): its head seq and head hash and the time,
signed with the Ed25519 private key --key (PEM; make one with dualledger checkpoint keygen), as a
new file DIR/<ledger>/<seq>-<time>.json (mode 0444, never overwritten, fsynced). Keep the key and
the directory away from the database's administrators (another host, a WORM bucket, a ticket):
dualledger verify-chain --checkpoints DIR --checkpoint-key KEY.pub then proves that the chain still
contains every signed head, which a rewrite of the chain in the database cannot fake.
Run it on a schedule (cron, a systemd timer), e.g. after every audit.`,
		Example: `  dualledger checkpoint keygen --out /etc/dualledger/checkpoint.key
  dualledger checkpoint --key /etc/dualledger/checkpoint.key --dir /var/lib/dualledger/checkpoints`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyPath == "" || dir == "" {
				return usage("--key and --dir are required")
			}
			key, err := integrity.LoadPrivateKey(keyPath)
			if err != nil {
				return usage("--key: %v", err)
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			var ids []string
			if ledgerID != "" {
				ids = []string{ledgerID}
			}
			cps, err := integrity.WriteCheckpoints(ctx, pool, dir, key, ids)
			if err != nil {
				return rejection(err)
			}
			if a.jsonOut {
				return a.printJSON(map[string]any{"checkpoints": cps})
			}
			for _, c := range cps {
				fmt.Fprintf(a.out, "ledger %s: seq %d %s signed at %s\n", c.LedgerID, c.Seq, c.HeadHash, c.At.Format("2006-01-02T15:04:05.000Z"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "the Ed25519 private key (PKCS #8 PEM) to sign with")
	cmd.Flags().StringVar(&dir, "dir", "", "the append-only directory of checkpoints")
	cmd.Flags().StringVar(&ledgerID, "ledger", "", "only this ledger (default: all)")
	var out string
	keygen := &cobra.Command{
		Use:     "keygen --out FILE",
		Short:   "Make a new Ed25519 signing key: FILE (private, 0600) and FILE.pub (public)",
		Example: "  dualledger checkpoint keygen --out /etc/dualledger/checkpoint.key",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usage("--out is required")
			}
			if err := integrity.GenerateKey(out); err != nil {
				if errors.Is(err, fs.ErrExist) {
					// The operator's argument, not the infrastructure: a key is never overwritten.
					return usage("%s or %s.pub exists: a key is never overwritten (move it away, or choose another --out)", out, out)
				}
				return &exitError{code: exitInfra, err: err}
			}
			fmt.Fprintf(a.out, "private key %s, public key %s.pub\n", out, out)
			return nil
		},
	}
	keygen.Flags().StringVar(&out, "out", "", "where to write the private key (never overwritten)")
	cmd.AddCommand(keygen)
	return cmd
}

// verifyAgainstSCBs checks the block_hash every registered SCB holds against ours and returns
// the contradictions ("LEDGER seq N (SCB ...)"), printing the report, and the SCBs it could not
// read with why ("SCB-3: ..."): one SCB that cannot be read does not hide what the others say.
func verifyAgainstSCBs(ctx context.Context, a *app, pool *pgxpool.Pool, ledgerID, scbConfig string, scbTimeout time.Duration) ([]string, []integrity.WitnessReport, []string, error) {
	banks, err := ledger.ListBanks(ctx, pool, "", 10000, "")
	if err != nil {
		return nil, nil, nil, err
	}
	clients, err := outbox.NewClients(ctx, pool, a.environ, scbConfig, scbTimeout, 0, a.logger)
	if err != nil {
		return nil, nil, nil, &exitError{code: exitInfra, err: err}
	}
	var out, unread []string
	var reports []integrity.WitnessReport
	skip := func(id string, err error) {
		unread = append(unread, fmt.Sprintf("%s: %v", id, err))
		if !a.jsonOut {
			fmt.Fprintf(a.out, "%s: NOT READ: %v\n", id, err)
		}
	}
	for _, b := range banks {
		c, ok := clients.Resolve(b.ID)
		l, isLister := c.(integrity.Lister)
		if !ok || !isLister {
			if p := clients.Problem(b.ID); p != "" {
				skip(b.ID, fmt.Errorf("its configuration was refused: %s", p))
			} else {
				skip(b.ID, fmt.Errorf("no API configured (SCB_%s_API_URL and SCB_%s_API_KEY, or --scb-config)", scb.EnvName(b.ID), scb.EnvName(b.ID)))
			}
			continue
		}
		rep, err := integrity.VerifyAgainstSCB(ctx, pool, b.ID, integrity.AskingAgain(l), 1000)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, nil, &exitError{code: exitInfra, err: err}
			}
			skip(b.ID, err)
			continue
		}
		reports = append(reports, rep)
		for _, id := range sortedKeys(rep.Contradictions) {
			c := rep.Contradictions[id]
			if ledgerID != "" && id != ledgerID {
				continue
			}
			out = append(out, fmt.Sprintf("ledger %s seq %d (%s holds another block_hash)", id, c.Seq, b.ID))
			if !a.jsonOut {
				fmt.Fprintf(a.out, "ledger %s: CONTRADICTED by %s at seq %d (reference %s): ours %s, %s's %s\n", id, b.ID, c.Seq, c.ReferenceID, c.Ours, b.ID, c.Theirs)
				if c.Count > 1 {
					fmt.Fprintf(a.out, "ledger %s: %s contradicts %d entries in all, the last at seq %d\n", id, b.ID, c.Count, c.LastSeq)
				}
			}
		}
		if !a.jsonOut {
			for _, id := range sortedKeys(rep.Confirmed) {
				switch {
				case ledgerID != "" && id != ledgerID:
				case rep.Contradictions[id].Count > 0:
					// Not "up to": an entry below it is contradicted (printed above).
					fmt.Fprintf(a.out, "ledger %s: %s holds our block_hash for the entries it does not contradict, the highest at seq %d\n",
						id, b.ID, rep.Confirmed[id])
				default:
					fmt.Fprintf(a.out, "ledger %s: %s confirms block_hashes up to seq %d\n", id, b.ID, rep.Confirmed[id])
				}
			}
			fmt.Fprintf(a.out, "%s: %d entries compared, %d not ours (see reconcile)\n", b.ID, rep.Compared, rep.Unmatched)
		}
	}
	return out, reports, unread, nil
}

// verifyCheckpoints checks the signed checkpoints in dir against the chain.
func verifyCheckpoints(ctx context.Context, a *app, pool *pgxpool.Pool, ledgerID, dir, keyPath string) ([]string, integrity.CheckpointReport, error) {
	pub, err := integrity.LoadPublicKey(keyPath)
	if err != nil {
		return nil, integrity.CheckpointReport{}, usage("--checkpoint-key: %v", err)
	}
	rep, err := integrity.VerifyCheckpoints(ctx, pool, dir, pub)
	if err != nil {
		return nil, rep, &exitError{code: exitInfra, err: err}
	}
	var out []string
	for _, p := range rep.Problems {
		if ledgerID != "" && p.LedgerID != ledgerID {
			continue
		}
		if !a.jsonOut {
			fmt.Fprintf(a.out, "checkpoint %s: %s: %s\n", p.File, p.Kind, p.Message)
		}
		if p.Kind != "hash_mismatch" && p.Kind != "missing_entry" {
			out = append(out, fmt.Sprintf("checkpoint %s %s", p.File, p.Kind))
		}
	}
	for _, id := range sortedKeys(rep.First) {
		if ledgerID != "" && id != ledgerID {
			continue
		}
		p := rep.First[id]
		out = append(out, fmt.Sprintf("ledger %s seq %d (signed checkpoint contradicted; still held up to seq %d)", id, p.Seq, rep.Holds[id]))
	}
	if !a.jsonOut {
		fmt.Fprintf(a.out, "checkpoints: %d verified signatures\n", rep.Checked)
		for _, id := range sortedKeys(rep.Holds) {
			if ledgerID == "" || id == ledgerID {
				fmt.Fprintf(a.out, "ledger %s: the chain holds the signed heads up to seq %d\n", id, rep.Holds[id])
			}
		}
	}
	return out, rep, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
