// Package demo is `dualledger demo`: a guided tour of the ledger on a real database. It posts,
// refuses and verifies entries on a MASTER ledger, prints what happens at each step, and fails
// loudly if the ledger ever answers something other than what the step expects.
package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/integrity"
	"dualledger/internal/ledger"
)

// Ledger is the ledger the demo uses.
const Ledger = "MASTER"

// actor names the demo's own setup in the operator log.
const actor = "system:demo"

// Runner prints the tour to Out.
type Runner struct {
	DB  *pgxpool.Pool
	Out io.Writer
	// Run is a prefix for this run's reference ids, so that the demo can run again on the same
	// data dir (each run adds its own postings to MASTER).
	Run string
}

func (r *Runner) say(format string, args ...any) { fmt.Fprintf(r.Out, format+"\n", args...) }

func (r *Runner) step(n int, title string) { r.say("\n%d. %s", n, title) }

// Ledger runs the core tour: accounts, funding, payments, a replay, a conflicting reuse, an
// overdraft, the hash chain and the balances.
func (r *Runner) Ledger(ctx context.Context) error {
	db := r.DB
	r.step(1, "A master ledger, two registered member banks and their settlement accounts, an issuance account")
	if _, err := ledger.GetLedger(ctx, db, Ledger); err != nil {
		if _, err := ledger.CreateLedger(ctx, db, actor, Ledger); err != nil {
			return err
		}
		r.say("   created ledger %s", Ledger)
	} else {
		r.say("   ledger %s exists (a previous demo run); this run adds to it", Ledger)
	}
	unlimited := "unlimited"
	scb1, scb2 := "SCB-1", "SCB-2"
	for _, b := range []string{scb1, scb2} {
		_, err := ledger.RegisterBank(ctx, db, actor, b, "Sovereign central bank "+b[len(b)-1:])
		switch {
		case err == nil:
			r.say("   registered member bank %s: postings touching its accounts are mirrored to its ledger", b)
		case ledger.CodeOf(err) != ledger.CodeBankExists:
			return err
		}
	}
	for _, a := range []ledger.AccountInput{
		{ID: "DBIS-ISSUANCE-USD", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "SCB-1-SETTLEMENT-USD", CurrencyCode: "USD", AssetType: "fiat", BankID: &scb1},
		{ID: "SCB-2-SETTLEMENT-USD", CurrencyCode: "USD", AssetType: "fiat", BankID: &scb2},
	} {
		acct, err := ledger.CreateAccount(ctx, db, actor, Ledger, a)
		switch {
		case err == nil:
			r.say("   account %-22s %s %s, overdraft limit %s", acct.ID, acct.CurrencyCode, acct.AssetType, acct.OverdraftLimit)
		case ledger.CodeOf(err) == ledger.CodeAccountExists:
			r.say("   account %-22s exists", a.ID)
		default:
			return err
		}
	}

	r.step(2, "Fund SCB-1's settlement account from the issuance account (debit pays, credit receives)")
	fund := r.entry("DBIS-ISSUANCE-USD", "SCB-1-SETTLEMENT-USD", "1000000.00", "funding", "fund")
	if _, err := r.expect(ctx, fund, ledger.CodeCreated); err != nil {
		return err
	}

	r.step(3, "Payments from SCB-1 to SCB-2, posted as one batch (one transaction)")
	batch := []ledger.EntryInput{
		r.entry("SCB-1-SETTLEMENT-USD", "SCB-2-SETTLEMENT-USD", "250000.00", "payment", "pay-1"),
		r.entry("SCB-1-SETTLEMENT-USD", "SCB-2-SETTLEMENT-USD", "125000.50", "payment", "pay-2"),
		r.entry("SCB-2-SETTLEMENT-USD", "SCB-1-SETTLEMENT-USD", "5000.25", "payment", "pay-3"),
	}
	res, err := ledger.PostBatch(ctx, db, Ledger, batch, true)
	if err != nil {
		return err
	}
	for i, x := range res {
		if x.Code != ledger.CodeCreated {
			return fmt.Errorf("demo: payment %s answered %s: %s", batch[i].ReferenceID, x.Code, x.Message)
		}
		r.say("   %-8s %s  seq %d  %s -> %s  %s USD  block %s…", x.Code, batch[i].ReferenceID, x.Seq,
			batch[i].DebitAccountID, batch[i].CreditAccountID, batch[i].Amount, x.BlockHash[:16])
	}

	r.step(4, "A client retries pay-1 (network timeout): the same reference and content is a replay")
	orig := res[0]
	rep, err := r.expect(ctx, batch[0], ledger.CodeReplayed)
	if err != nil {
		return err
	}
	if rep.EntryID != orig.EntryID || rep.BlockHash != orig.BlockHash {
		return fmt.Errorf("demo: the replay returned entry %d, the original is %d", rep.EntryID, orig.EntryID)
	}
	r.say("   the original entry %d came back; nothing was written", rep.EntryID)

	r.step(5, "The same reference with a different amount is refused")
	conflict := batch[0]
	conflict.Amount = "250001.00"
	if _, err := r.expect(ctx, conflict, ledger.CodeReferenceConflict); err != nil {
		return err
	}

	r.step(6, "SCB-2 tries to pay more than it holds (overdraft limit 0)")
	acct, err := ledger.GetAccount(ctx, db, Ledger, "SCB-2-SETTLEMENT-USD")
	if err != nil {
		return err
	}
	over := r.entry("SCB-2-SETTLEMENT-USD", "SCB-1-SETTLEMENT-USD", "999999999.00", "payment", "overdraft")
	if _, err := r.expect(ctx, over, ledger.CodeInsufficientFunds); err != nil {
		return err
	}
	r.say("   (available was %s)", acct.AvailableBalance)

	r.step(7, "Verify the hash chain: every block_hash recomputed from the entries")
	rep2, err := integrity.VerifyChain(ctx, db, Ledger, integrity.VerifyOptions{})
	if err != nil {
		return err
	}
	if rep2.Problem != nil {
		return fmt.Errorf("demo: the chain is broken: %s", rep2.Problem.Message)
	}
	r.say("   ledger %s: %d entries, chain intact, head seq %d hash %s…", Ledger, rep2.Entries, rep2.HeadSeq, rep2.HeadHash[:16])

	r.step(8, "Balances (balance = credits - debits; the issuance account is the only negative one)")
	accts, err := ledger.ListAccounts(ctx, db, Ledger, "", 100, "")
	if err != nil {
		return err
	}
	for _, a := range accts {
		r.say("   %-22s balance %20s  available %20s", a.ID, a.Balance, a.AvailableBalance)
	}
	return nil
}

func (r *Runner) entry(debit, credit, amount, ttype, ref string) ledger.EntryInput {
	return ledger.EntryInput{DebitAccountID: debit, CreditAccountID: credit, Amount: amount, CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: ttype, ReferenceID: r.Run + "-" + ref}
}

// expect posts one entry and checks the result code, printing the answer.
func (r *Runner) expect(ctx context.Context, in ledger.EntryInput, want string) (ledger.Result, error) {
	res, err := ledger.PostBatch(ctx, r.DB, Ledger, []ledger.EntryInput{in}, false)
	if err != nil {
		return ledger.Result{}, err
	}
	x := res[0]
	if x.Code != want {
		return x, fmt.Errorf("demo: %s answered %s (%s), expected %s", in.ReferenceID, x.Code, x.Message, want)
	}
	if x.OK() {
		r.say("   %-8s %s  entry %d seq %d  balances after: %s %s, %s %s", x.Code, in.ReferenceID, x.EntryID, x.Seq,
			in.DebitAccountID, x.DebitBalance, in.CreditAccountID, x.CreditBalance)
	} else {
		r.say("   %s: %s", x.Code, x.Message)
	}
	return x, nil
}

// RunID is a short id for this run's references.
func RunID(now time.Time) string {
	return "demo-" + strings.ToLower(now.UTC().Format("20060102T150405"))
}
