package integrity_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"dualledger/internal/integrity"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

func TestVerifyChainClean(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "MASTER")
	createLedger(t, d.Pool, "SOVEREIGN")
	createLedger(t, d.Pool, "EMPTY")
	post(t, d.Pool, "MASTER", genEntries(0, 37))
	post(t, d.Pool, "SOVEREIGN", genEntries(100, 3))

	var seen []string
	reps, err := integrity.VerifyChains(ctx, d.Pool, nil, integrity.VerifyOptions{PageSize: 10},
		func(r integrity.ChainReport) { seen = append(seen, r.LedgerID) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"EMPTY", "MASTER", "SOVEREIGN"}; !slices.Equal(seen, want) {
		t.Fatalf("verified %v, want %v (every ledger, by id)", seen, want)
	}
	want := map[string]int64{"EMPTY": 0, "MASTER": 37, "SOVEREIGN": 3}
	for _, r := range reps {
		if !r.Intact || r.Problem != nil {
			t.Errorf("%s: not intact: %+v", r.LedgerID, r.Problem)
		}
		if r.Entries != want[r.LedgerID] || r.HeadSeq != want[r.LedgerID] {
			t.Errorf("%s: %d entries, head %d; want %d", r.LedgerID, r.Entries, r.HeadSeq, want[r.LedgerID])
		}
		l, err := ledger.GetLedger(ctx, d.Pool, r.LedgerID)
		if err != nil {
			t.Fatal(err)
		}
		if r.HeadHash != l.HeadHash {
			t.Errorf("%s: head hash %s, ledger says %s", r.LedgerID, r.HeadHash, l.HeadHash)
		}
	}

	_, err = integrity.VerifyChain(ctx, d.Pool, "NOPE", integrity.VerifyOptions{})
	if ledger.CodeOf(err) != ledger.CodeUnknownLedger {
		t.Fatalf("unknown ledger: got %v, want code %s", err, ledger.CodeUnknownLedger)
	}
}

// TestVerifyChainPages runs over more than one default page (10000 entries), and over page sizes
// that divide the chain exactly (the last page is full and an empty page ends the walk) or not.
func TestVerifyChainPages(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "BIG")
	const n = 12345
	post(t, d.Pool, "BIG", genEntries(0, n))

	for _, size := range []int{0, 1000, 4115, n, n + 1} {
		var progress []int64
		r, err := integrity.VerifyChain(ctx, d.Pool, "BIG", integrity.VerifyOptions{
			PageSize: size,
			Progress: func(id string, seq int64) {
				if id != "BIG" {
					t.Errorf("progress for %s", id)
				}
				progress = append(progress, seq)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Intact || r.Entries != n {
			t.Fatalf("page size %d: intact %v, %d entries, problem %+v", size, r.Intact, r.Entries, r.Problem)
		}
		eff := size
		if eff == 0 {
			eff = integrity.DefaultPageSize
		}
		if pages := (n + eff - 1) / eff; len(progress) != pages || progress[len(progress)-1] != n {
			t.Fatalf("page size %d: progress %v, want %d pages ending at %d", size, progress, pages, n)
		}
	}
}

// TestTamper changes entries behind the database's back (triggers off, as superuser) and checks
// that VerifyChain names the first broken seq and what is wrong, and that the audit fails
// exactly the checks the change breaks.
func TestTamper(t *testing.T) {
	const n = 20 // with page size 4: seqs 4/5, 8/9, ... straddle page boundaries
	forged := `'\x` + strings.Repeat("ab", 32) + `'::bytea`
	cases := []struct {
		name    string
		stmts   []string
		kind    string
		seq     int64
		failing []string
	}{
		{
			name:    "amount changed",
			stmts:   []string{`UPDATE ledger_entries SET amount = amount + 1 WHERE ledger_id = 'L' AND seq = 9`},
			kind:    integrity.ProblemHashMismatch,
			seq:     9,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckHashChain, integrity.CheckBalanceAfter},
		},
		{
			name:    "amount changed in the first entry",
			stmts:   []string{`UPDATE ledger_entries SET amount = amount - 0.01 WHERE ledger_id = 'L' AND seq = 1`},
			kind:    integrity.ProblemHashMismatch,
			seq:     1,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckHashChain, integrity.CheckBalanceAfter},
		},
		{
			name:    "amount changed at the end of a page",
			stmts:   []string{`UPDATE ledger_entries SET amount = 1000 WHERE ledger_id = 'L' AND seq = 8`},
			kind:    integrity.ProblemHashMismatch,
			seq:     8,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckHashChain, integrity.CheckBalanceAfter},
		},
		{
			name:    "amount changed in the last entry",
			stmts:   []string{`UPDATE ledger_entries SET amount = amount * 2 WHERE ledger_id = 'L' AND seq = 20`},
			kind:    integrity.ProblemHashMismatch,
			seq:     20,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckHashChain, integrity.CheckBalanceAfter},
		},
		{
			name:    "middle entry deleted",
			stmts:   []string{`DELETE FROM ledger_entries WHERE ledger_id = 'L' AND seq = 9`},
			kind:    integrity.ProblemGap,
			seq:     9,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckGaplessSeq, integrity.CheckHashChain, integrity.CheckBalanceAfter},
		},
		{
			name: "metadata values swapped",
			stmts: []string{`UPDATE ledger_entries e SET metadata = jsonb_set(e.metadata, '{memo}', o.metadata -> 'memo')
				FROM ledger_entries o WHERE e.ledger_id = 'L' AND o.ledger_id = 'L' AND
				((e.seq = 13 AND o.seq = 14) OR (e.seq = 14 AND o.seq = 13))`},
			kind:    integrity.ProblemHashMismatch,
			seq:     13,
			failing: []string{integrity.CheckHashChain},
		},
		{
			name:    "previous_hash changed",
			stmts:   []string{`UPDATE ledger_entries SET previous_hash = ` + forged + ` WHERE ledger_id = 'L' AND seq = 5`},
			kind:    integrity.ProblemLink,
			seq:     5,
			failing: []string{integrity.CheckHashChain},
		},
		{
			name: "entry changed and rehashed: caught at the next link",
			stmts: []string{
				`UPDATE ledger_entries SET amount = amount + 1 WHERE ledger_id = 'L' AND seq = 9`,
				`UPDATE ledger_entries e SET block_hash = ledger_entry_block_hash(e) WHERE ledger_id = 'L' AND seq = 9`,
			},
			kind:    integrity.ProblemLink,
			seq:     10,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckHashChain, integrity.CheckBalanceAfter},
		},
		{
			name:    "head moved back",
			stmts:   []string{`UPDATE ledgers SET head_seq = 19 WHERE id = 'L'`},
			kind:    integrity.ProblemHead,
			seq:     20,
			failing: []string{integrity.CheckGaplessSeq, integrity.CheckLedgerHead},
		},
		{
			name:    "head hash changed",
			stmts:   []string{`UPDATE ledgers SET head_hash = ` + forged + ` WHERE id = 'L'`},
			kind:    integrity.ProblemHead,
			seq:     20,
			failing: []string{integrity.CheckLedgerHead},
		},
		{
			name: "well-formed entry appended behind the head",
			stmts: []string{
				`INSERT INTO ledger_entries (id, ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code, asset_type,
				        transaction_type, reference_id, fx_rate, metadata, timestamp_utc, previous_hash, block_hash,
				        debit_balance_after, credit_balance_after)
				 SELECT 999999, ledger_id, 21, debit_account_id, credit_account_id, amount, currency_code, asset_type,
				        transaction_type, 'forged', fx_rate, metadata, timestamp_utc, block_hash, block_hash,
				        debit_balance_after, credit_balance_after
				   FROM ledger_entries WHERE ledger_id = 'L' AND seq = 20`,
				`UPDATE ledger_entries e SET block_hash = ledger_entry_block_hash(e) WHERE ledger_id = 'L' AND seq = 21`,
			},
			kind:    integrity.ProblemHead,
			seq:     21,
			failing: []string{integrity.CheckBalancesMatchEntries, integrity.CheckGaplessSeq, integrity.CheckBalanceAfter},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := pgtest.New(t)
			ctx := context.Background()
			createLedger(t, d.Pool, "L")
			createLedger(t, d.Pool, "OTHER")
			post(t, d.Pool, "L", genEntries(0, n))
			post(t, d.Pool, "OTHER", genEntries(0, 5))
			tamper(t, d, tc.stmts...)

			r, err := integrity.VerifyChain(ctx, d.Pool, "L", integrity.VerifyOptions{PageSize: 4})
			if err != nil {
				t.Fatal(err)
			}
			if r.Intact || r.Problem == nil {
				t.Fatalf("tampered chain verifies as intact (%d entries)", r.Entries)
			}
			p := r.Problem
			if p.Kind != tc.kind || p.Seq != tc.seq {
				t.Fatalf("problem %s at seq %d (%s), want %s at seq %d", p.Kind, p.Seq, p.Message, tc.kind, tc.seq)
			}
			if p.Kind != integrity.ProblemHead && r.Entries != tc.seq-1 {
				t.Errorf("%d entries verified before the problem, want %d", r.Entries, tc.seq-1)
			}
			if p.Message == "" || (p.Kind != integrity.ProblemGap && p.Stored == p.Expected) {
				t.Errorf("problem does not say what is wrong: %+v", p)
			}
			if p.Kind == integrity.ProblemHashMismatch {
				if _, err := hex.DecodeString(p.Stored); err != nil || len(p.Stored) != 64 || len(p.Expected) != 64 {
					t.Errorf("hash mismatch without stored/recomputed hashes: %+v", p)
				}
			}
			// The same page walk with another page size finds the same first problem.
			r2, err := integrity.VerifyChain(ctx, d.Pool, "L", integrity.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r2.Problem == nil || *r2.Problem != *p {
				t.Errorf("default page size: problem %+v, with page size 4: %+v", r2.Problem, p)
			}
			// The other ledger is untouched.
			other, err := integrity.VerifyChain(ctx, d.Pool, "OTHER", integrity.VerifyOptions{})
			if err != nil || !other.Intact {
				t.Errorf("ledger OTHER: %+v, %v", other.Problem, err)
			}

			a, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("verify-chain: %s at seq %d: %s (stored %s, expected %s)\naudit:\n%s", p.Kind, p.Seq, p.Message, p.Stored, p.Expected, describe(a))
			failed := a.Failed()
			if a.OK || !slices.Equal(sorted(failed), sorted(tc.failing)) {
				t.Fatalf("audit failed %v, want %v\n%s", failed, tc.failing, describe(a))
			}
			for _, c := range a.Checks {
				if c.Status != integrity.StatusFail {
					continue
				}
				for _, f := range c.Findings {
					if !strings.HasPrefix(f.Message, "L") {
						t.Errorf("%s: finding outside ledger L: %s", c.Name, f.Message)
					}
				}
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func describe(r integrity.AuditReport) string {
	var b strings.Builder
	for _, c := range r.Checks {
		b.WriteString(c.Status + " " + c.Name + "\n")
		for _, f := range c.Findings {
			b.WriteString("    " + f.Message + "\n")
		}
	}
	return b.String()
}

// TestVerifyWhilePosting: VerifyChain and Audit read one snapshot each, so postings committed
// meanwhile (head moved, entries appended, balances changed) never make them report a problem.
// (Without the snapshot the walk would read entries committed after it read the head.)
func TestVerifyWhilePosting(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "LIVE")
	post(t, d.Pool, "LIVE", genEntries(0, 200))

	const batches = 40
	posted := make(chan error, 1)
	go func() {
		defer close(posted)
		for i := 1; i <= batches; i++ {
			body, err := json.Marshal(genEntries(i*1000, 20))
			if err == nil {
				_, err = d.Pool.Exec(ctx, `SELECT * FROM post_ledger_entries('LIVE', $1::jsonb, true)`, body)
			}
			if err != nil {
				posted <- err
				return
			}
		}
	}()
	for rounds := 0; ; rounds++ {
		r, err := integrity.VerifyChain(ctx, d.Pool, "LIVE", integrity.VerifyOptions{PageSize: 30})
		if err != nil || !r.Intact {
			t.Fatalf("verify while posting: %+v, %v", r.Problem, err)
		}
		a, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
		if err != nil || !a.OK {
			t.Fatalf("audit while posting: %v\n%s", err, describe(a))
		}
		select {
		case err := <-posted:
			if err != nil {
				t.Fatalf("posting: %v", err)
			}
			t.Logf("%d rounds of verify-chain and audit while %d batches were posted", rounds+1, batches)
			return
		default:
		}
	}
}
