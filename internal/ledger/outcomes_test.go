package ledger_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"dualledger/internal/ledger"
)

// TestPostBatchOutcomesAgreesWithPostBatch: the same mixed batch (created, a retry inside the
// batch, a conflict, a rejection, a bad reference), posted once through PostBatchOutcomesTx and
// once through PostBatchTx into identical ledgers (a transaction each, rolled back), answers the
// same Index, Code, Seq, Message and Details for every entry, and the outcomes carry nothing else.
func TestPostBatchOutcomesAgreesWithPostBatch(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	batch := []ledger.EntryInput{
		entry("alice", "bob", "10.00", "USD", "o1"),
		entry("alice", "bob", "10.00", "USD", "o1"),     // the same again: replayed
		entry("alice", "bob", "11.00", "USD", "o1"),     // reference_conflict
		entry("alice", "bob", "1000.00", "USD", "o2"),   // insufficient_funds
		entry("alice", "carol", "1.00", "USD", "o3"),    // unknown_account
		entry("alice", "bob", "1.00", "USD", " padded"), // a reference the rules refuse
		entry("issuance", "bob", "5.00", "USD", "o4"),
	}
	post := func(f func(context.Context, ledger.DBTX, string, []ledger.EntryInput, bool) ([]ledger.Result, error)) []ledger.Result {
		t.Helper()
		tx, err := d.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // read-only use of the results
		res, err := f(ctx, tx, L, batch, false)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	full := post(ledger.PostBatchTx)
	outs := post(ledger.PostBatchOutcomesTx)
	if len(full) != len(batch) || len(outs) != len(batch) {
		t.Fatalf("%d and %d results for %d entries", len(full), len(outs), len(batch))
	}
	// Entry ids come from a sequence, which a rollback does not give back: the two runs' ids
	// differ, so the texts are compared with each id they name written as its entry's position.
	idRef := regexp.MustCompile(`(entry id |"existing_entry_id": )([0-9]+)`)
	named := func(rs []ledger.Result) func(string) string {
		pos := map[string]string{}
		for i, r := range rs {
			if r.Code == ledger.CodeCreated {
				pos[fmt.Sprint(r.EntryID)] = fmt.Sprintf("<entry %d>", i)
			}
		}
		return func(s string) string {
			return idRef.ReplaceAllStringFunc(s, func(m string) string {
				sub := idRef.FindStringSubmatch(m)
				return sub[1] + pos[sub[2]]
			})
		}
	}
	fn, on := named(full), named(outs)
	created := 0
	for i := range batch {
		f, o := full[i], outs[i]
		if o.Index != f.Index || o.Code != f.Code || o.Seq != f.Seq || (o.EntryID == 0) != (f.EntryID == 0) ||
			on(o.Message) != fn(f.Message) || on(string(o.Details)) != fn(string(f.Details)) {
			t.Errorf("entry %d: outcome %+v, full result %+v", i, o, f)
		}
		if o.BlockHash != "" || o.PreviousHash != "" || !o.TimestampUTC.IsZero() || !o.RecordedAt.IsZero() ||
			o.DebitBalance != "" || o.CreditBalance != "" || o.Metadata != nil {
			t.Errorf("entry %d: the outcome carries more than its outcome: %+v", i, o)
		}
		if f.Code == ledger.CodeCreated {
			created++
			if f.BlockHash == "" || f.DebitBalance == "" {
				t.Errorf("entry %d: the full result lacks its hash or balance: %+v", i, f)
			}
		}
	}
	if want := []string{ledger.CodeCreated, ledger.CodeReplayed, ledger.CodeReferenceConflict, ledger.CodeInsufficientFunds,
		ledger.CodeUnknownAccount}; created != 2 || full[0].Code != want[0] || full[1].Code != want[1] || full[2].Code != want[2] ||
		full[3].Code != want[3] || full[4].Code != want[4] {
		t.Errorf("codes %v: the batch did not exercise the outcomes it should", codes(full))
	}
}

func codes(rs []ledger.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Code
	}
	return out
}
