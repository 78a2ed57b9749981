package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
	"dualledger/internal/money"
	"dualledger/internal/pg/pgtest"
)

// holdFixture is a ledger H with a funded USD account "payer" (1000.00, no overdraft), a payee,
// and an issuance account.
func holdFixture(t *testing.T) (*pgxpool.Pool, context.Context) {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	db := d.Pool
	if _, err := ledger.CreateLedger(ctx, db, "system:test", "H"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, a := range []ledger.AccountInput{
		{ID: "issuance", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "payer", CurrencyCode: "USD", AssetType: "fiat"},
		{ID: "payee", CurrencyCode: "USD", AssetType: "fiat"},
	} {
		if _, err := ledger.CreateAccount(ctx, db, "system:test", "H", a); err != nil {
			t.Fatal(err)
		}
	}
	mustPost(t, db, "H", ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "payer", Amount: "1000.00",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: "fund"})
	return db, ctx
}

func mustPost(t *testing.T, db *pgxpool.Pool, l string, e ledger.EntryInput) ledger.Result {
	t.Helper()
	rs, err := ledger.PostBatch(context.Background(), db, l, []ledger.EntryInput{e}, false)
	if err != nil {
		t.Fatal(err)
	}
	return rs[0]
}

func hold(ref, amount string) ledger.HoldInput {
	return ledger.HoldInput{DebitAccountID: "payer", CreditAccountID: "payee", Amount: amount, CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: "payment", ReferenceID: ref}
}

// balances returns balance, available and reserved of an account as stored.
func balances(t *testing.T, db *pgxpool.Pool, l, id string) [3]string {
	t.Helper()
	a, err := ledger.GetAccount(context.Background(), db, l, id)
	if err != nil {
		t.Fatal(err)
	}
	return [3]string{a.Balance, a.AvailableBalance, a.ReservedBalance}
}

func wantCode(t *testing.T, what string, r ledger.HoldResult, err error, code string) ledger.HoldResult {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if r.Code != code {
		t.Fatalf("%s: %s (%s %s), want %s", what, r.Code, r.Message, r.Details, code)
	}
	return r
}

func TestHoldLifecycle(t *testing.T) {
	db, ctx := holdFixture(t)

	r, err := ledger.CreateHold(ctx, db, "H", hold("h1", "300.00"))
	r = wantCode(t, "create", r, err, ledger.CodeCreated)
	if r.Hold == nil || r.Hold.Status != ledger.HoldPending || r.Hold.Amount != "300.00" {
		t.Fatalf("created hold = %+v", r.Hold)
	}
	if got := balances(t, db, "H", "payer"); got != [3]string{"1000.00", "700.00", "300.00"} {
		t.Fatalf("after hold: balance/available/reserved = %v", got)
	}
	// Replay: same body answers the original; another body is a conflict.
	r, err = ledger.CreateHold(ctx, db, "H", hold("h1", "300.00"))
	wantCode(t, "replay", r, err, ledger.CodeReplayed)
	r, err = ledger.CreateHold(ctx, db, "H", hold("h1", "301.00"))
	r = wantCode(t, "conflict", r, err, ledger.CodeReferenceConflict)
	if !strings.Contains(string(r.Details), `"amount"`) {
		t.Errorf("conflict details %s: want the field amount", r.Details)
	}
	// A plain posting cannot spend reserved funds.
	res := mustPost(t, db, "H", ledger.EntryInput{DebitAccountID: "payer", CreditAccountID: "payee", Amount: "700.01",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "payment", ReferenceID: "too-much"})
	if res.Code != ledger.CodeInsufficientFunds {
		t.Fatalf("posting over available: %s", res.Code)
	}
	// Nor can another hold.
	r, err = ledger.CreateHold(ctx, db, "H", hold("h2", "700.01"))
	wantCode(t, "second hold over available", r, err, ledger.CodeInsufficientFunds)

	// Capture more than held: invalid_amount. Partial capture: posts 120, releases 300.
	over := "300.01"
	r, err = ledger.CaptureHold(ctx, db, "H", "h1", ledger.CaptureInput{ReferenceID: "h1-cap", Amount: &over})
	wantCode(t, "over-capture", r, err, ledger.CodeInvalidAmount)
	part := "120.00"
	r, err = ledger.CaptureHold(ctx, db, "H", "h1", ledger.CaptureInput{ReferenceID: "h1-cap", Amount: &part})
	r = wantCode(t, "capture", r, err, ledger.CodeCreated)
	if r.Entry == nil || r.Entry.Amount != "120.00" || r.Entry.ReferenceID != "h1-cap" || r.Hold.Status != ledger.HoldCaptured {
		t.Fatalf("capture: entry %+v hold %+v", r.Entry, r.Hold)
	}
	if !strings.Contains(string(r.Entry.Metadata), `"hold_reference_id": "h1"`) {
		t.Errorf("capture entry metadata %s: want hold_reference_id", r.Entry.Metadata)
	}
	if got := balances(t, db, "H", "payer"); got != [3]string{"880.00", "880.00", "0.00"} {
		t.Fatalf("after capture: %v", got)
	}
	if got := balances(t, db, "H", "payee"); got != [3]string{"120.00", "120.00", "0.00"} {
		t.Fatalf("payee after capture: %v", got)
	}
	// Replays of the capture.
	r2, err := ledger.CaptureHold(ctx, db, "H", "h1", ledger.CaptureInput{ReferenceID: "h1-cap", Amount: &part})
	r2 = wantCode(t, "capture replay", r2, err, ledger.CodeReplayed)
	if r2.Entry == nil || r2.Entry.ID != r.Entry.ID {
		t.Fatalf("capture replay entry %+v, want %d", r2.Entry, r.Entry.ID)
	}
	r, err = ledger.CaptureHold(ctx, db, "H", "h1", ledger.CaptureInput{ReferenceID: "h1-cap"})
	wantCode(t, "capture replay with other amount", r, err, ledger.CodeReferenceConflict)
	r, err = ledger.CaptureHold(ctx, db, "H", "h1", ledger.CaptureInput{ReferenceID: "h1-cap-2"})
	wantCode(t, "second capture", r, err, ledger.CodeHoldNotPending)
	r, err = ledger.VoidHold(ctx, db, "H", "h1")
	wantCode(t, "void after capture", r, err, ledger.CodeHoldNotPending)

	// Void: releases, replays, and a capture afterwards is refused.
	r, err = ledger.CreateHold(ctx, db, "H", hold("h3", "50"))
	wantCode(t, "create h3", r, err, ledger.CodeCreated)
	r, err = ledger.VoidHold(ctx, db, "H", "h3")
	r = wantCode(t, "void", r, err, ledger.CodeCreated)
	if r.Hold.Status != ledger.HoldVoided {
		t.Fatalf("void: %+v", r.Hold)
	}
	r, err = ledger.VoidHold(ctx, db, "H", "h3")
	wantCode(t, "void replay", r, err, ledger.CodeReplayed)
	r, err = ledger.CaptureHold(ctx, db, "H", "h3", ledger.CaptureInput{ReferenceID: "h3-cap"})
	wantCode(t, "capture after void", r, err, ledger.CodeHoldNotPending)
	if got := balances(t, db, "H", "payer"); got != [3]string{"880.00", "880.00", "0.00"} {
		t.Fatalf("after void: %v", got)
	}

	// A capture reference that an entry already has.
	r, err = ledger.CreateHold(ctx, db, "H", hold("h4", "10"))
	wantCode(t, "create h4", r, err, ledger.CodeCreated)
	r, err = ledger.CaptureHold(ctx, db, "H", "h4", ledger.CaptureInput{ReferenceID: "fund"})
	wantCode(t, "capture under an entry's reference", r, err, ledger.CodeReferenceConflict)

	// Unknown hold, unknown ledger.
	r, err = ledger.CaptureHold(ctx, db, "H", "nope", ledger.CaptureInput{ReferenceID: "x"})
	wantCode(t, "unknown hold", r, err, ledger.CodeUnknownHold)
	r, err = ledger.VoidHold(ctx, db, "NOPE", "h4")
	wantCode(t, "unknown ledger", r, err, ledger.CodeUnknownLedger)
	r, err = ledger.CreateHold(ctx, db, "NOPE", hold("h9", "1"))
	wantCode(t, "hold in unknown ledger", r, err, ledger.CodeUnknownLedger)
	bad := hold("h9", "1")
	bad.DebitAccountID = "ghost"
	r, err = ledger.CreateHold(ctx, db, "H", bad)
	wantCode(t, "unknown account", r, err, ledger.CodeUnknownAccount)
	bad = hold("h9", "1.001")
	r, err = ledger.CreateHold(ctx, db, "H", bad)
	wantCode(t, "minor unit", r, err, ledger.CodeInvalidAmount)
	past := "2001-01-01T00:00:00Z"
	bad = hold("h9", "1")
	bad.ExpiresAt = &past
	r, err = ledger.CreateHold(ctx, db, "H", bad)
	wantCode(t, "expiry in the past", r, err, ledger.CodeInvalidRequest)
	garbage := "tomorrow"
	bad.ExpiresAt = &garbage
	r, err = ledger.CreateHold(ctx, db, "H", bad)
	r = wantCode(t, "expiry not a time", r, err, ledger.CodeInvalidRequest)
	if !strings.Contains(string(r.Details), "expires_at") {
		t.Errorf("details %s: want field expires_at", r.Details)
	}
	checkHoldAudit(t, db)
}

func TestHoldExpiry(t *testing.T) {
	db, ctx := holdFixture(t)
	soon := time.Now().Add(2 * time.Second).UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	h := hold("e1", "100")
	h.ExpiresAt = &soon
	r, err := ledger.CreateHold(ctx, db, "H", h)
	wantCode(t, "create", r, err, ledger.CodeCreated)
	waitDue(t, db, "e1")
	// Due but not swept: capture refused, funds still reserved.
	r, err = ledger.CaptureHold(ctx, db, "H", "e1", ledger.CaptureInput{ReferenceID: "e1-cap"})
	wantCode(t, "capture after expiry", r, err, ledger.CodeHoldExpired)
	if got := balances(t, db, "H", "payer"); got[2] != "100.00" {
		t.Fatalf("before sweep: %v", got)
	}
	exp, err := ledger.ExpireHolds(ctx, db, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(exp) != 1 || exp[0].ReferenceID != "e1" || exp[0].Amount != "100.00" {
		t.Fatalf("expired %+v", exp)
	}
	if got := balances(t, db, "H", "payer"); got != [3]string{"1000.00", "1000.00", "0.00"} {
		t.Fatalf("after sweep: %v", got)
	}
	r, err = ledger.CaptureHold(ctx, db, "H", "e1", ledger.CaptureInput{ReferenceID: "e1-cap"})
	wantCode(t, "capture after sweep", r, err, ledger.CodeHoldExpired)
	r, err = ledger.VoidHold(ctx, db, "H", "e1")
	wantCode(t, "void after sweep", r, err, ledger.CodeHoldExpired)
	exp, err = ledger.ExpireHolds(ctx, db, nil, 10)
	if err != nil || len(exp) != 0 {
		t.Fatalf("second sweep: %v %v", exp, err)
	}

	// A sweep whose transaction began before the hold was due (it waited for the head lock)
	// records the hold resolved when it expired, never before (review of 2026-12-02).
	soon = time.Now().Add(time.Second).UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	h = hold("e2", "10")
	h.ExpiresAt = &soon
	r, err = ledger.CreateHold(ctx, db, "H", h)
	wantCode(t, "create e2", r, err, ledger.CodeCreated)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var started time.Time
	if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&started); err != nil {
		t.Fatal(err)
	}
	waitDue(t, db, "e2")
	var swept int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM expire_ledger_holds('H', 10)`).Scan(&swept); err != nil || swept != 1 {
		t.Fatalf("sweep of e2: %d %v", swept, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var early bool
	if err := db.QueryRow(ctx, `SELECT resolved_at < expires_at OR resolved_at < $1 FROM ledger_holds WHERE reference_id = 'e2'`, started).Scan(&early); err != nil || early {
		t.Errorf("e2 resolved before it expired: %v %v", early, err)
	}
	checkHoldAudit(t, db)
}

// waitDue polls the database clock until hold ref is due (no wall-clock assertion).
func waitDue(t *testing.T, db *pgxpool.Pool, ref string) {
	t.Helper()
	for {
		var due bool
		if err := db.QueryRow(context.Background(), `SELECT expires_at <= clock_timestamp() FROM ledger_holds WHERE reference_id = $1`, ref).Scan(&due); err != nil {
			t.Fatal(err)
		}
		if due {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHoldRaces: capture vs void, capture vs expiry sweep, two captures of one hold, from many
// goroutines at once, many rounds. Exactly one transition wins each hold; the losers get
// hold_not_pending or hold_expired; balances end as the winners say.
func TestHoldRaces(t *testing.T) {
	db, ctx := holdFixture(t)
	const rounds = 40
	type outcome struct{ capture, void, capture2 string }
	outcomes := make([]outcome, rounds)
	// The holds of every third round are due before the race starts: their capture races the
	// sweeper and must lose (hold_expired) whichever runs first. Their expiry is set far enough
	// ahead for a loaded machine to create them all in time, then the test waits until it passed.
	soon := time.Now().Add(3 * time.Second).UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	for i := range rounds {
		ref := fmt.Sprintf("race-%d", i)
		h := hold(ref, "5")
		if i%3 == 2 {
			h.ExpiresAt = &soon
		}
		r, err := ledger.CreateHold(ctx, db, "H", h)
		wantCode(t, "create "+ref, r, err, ledger.CodeCreated)
	}
	waitDue(t, db, "race-2")
	var wg sync.WaitGroup
	for i := range rounds {
		ref := fmt.Sprintf("race-%d", i)
		kind := i % 3
		wg.Add(2)
		go func() {
			defer wg.Done()
			r, err := ledger.CaptureHold(ctx, db, "H", ref, ledger.CaptureInput{ReferenceID: ref + "-a"})
			if err != nil {
				t.Error(err)
			}
			outcomes[i].capture = r.Code
		}()
		go func() {
			defer wg.Done()
			switch kind {
			case 0:
				r, err := ledger.VoidHold(ctx, db, "H", ref)
				if err != nil {
					t.Error(err)
				}
				outcomes[i].void = r.Code
			case 1:
				r, err := ledger.CaptureHold(ctx, db, "H", ref, ledger.CaptureInput{ReferenceID: ref + "-b"})
				if err != nil {
					t.Error(err)
				}
				outcomes[i].capture2 = r.Code
			case 2:
				if _, err := ledger.ExpireHolds(ctx, db, []string{"H"}, 100); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	captured := 0
	for i, o := range outcomes {
		switch i % 3 {
		case 0, 1:
			other := o.void
			if i%3 == 1 {
				other = o.capture2
			}
			wins := 0
			for _, c := range []string{o.capture, other} {
				switch c {
				case ledger.CodeCreated:
					wins++
				case ledger.CodeHoldNotPending:
				default:
					t.Errorf("round %d: unexpected result %s", i, c)
				}
			}
			if wins != 1 {
				t.Errorf("round %d: %d winners (%+v), want exactly one", i, wins, o)
			}
			if o.capture == ledger.CodeCreated || o.capture2 == ledger.CodeCreated {
				captured++
			}
		case 2:
			if o.capture != ledger.CodeHoldExpired {
				t.Errorf("round %d: capture of an expired hold answered %s", i, o.capture)
			}
		}
	}
	if _, err := ledger.ExpireHolds(ctx, db, nil, 100); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d.00", 1000-5*captured)
	if got := balances(t, db, "H", "payer"); got != [3]string{want, want, "0.00"} {
		t.Fatalf("payer after races: %v, want %s with nothing reserved", got, want)
	}
	checkHoldAudit(t, db)
}

// TestHoldGroupAtomic: a group of hold operations is all or nothing.
func TestHoldGroupAtomic(t *testing.T) {
	db, ctx := holdFixture(t)
	a, b := hold("g1", "600"), hold("g2", "600") // together more than the 1000 available
	rs, err := ledger.HoldOps(ctx, db, "H", []ledger.HoldOp{{Create: &a}, {Create: &b}})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Code != ledger.CodeNotApplied || rs[1].Code != ledger.CodeInsufficientFunds {
		t.Fatalf("group: %s, %s", rs[0].Code, rs[1].Code)
	}
	if got := balances(t, db, "H", "payer"); got != [3]string{"1000.00", "1000.00", "0.00"} {
		t.Fatalf("after a rejected group: %v", got)
	}
	if _, err := ledger.GetHold(ctx, db, "H", "g1"); ledger.CodeOf(err) != ledger.CodeUnknownHold {
		t.Fatalf("g1 after a rejected group: %v", err)
	}
	checkHoldAudit(t, db)
}

// checkHoldAudit runs the holds' audit checks on the database (reserved = Σ pending holds,
// available = balance − reserved, the hold chain) and fails on any finding.
func checkHoldAudit(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM bank_accounts a
		WHERE a.reserved_balance <> coalesce((SELECT sum(h.amount) FROM ledger_holds h WHERE h.ledger_id = a.ledger_id
		          AND h.debit_account_id = a.id AND h.status = 'PENDING'), 0)
		   OR a.available_balance <> a.balance - a.reserved_balance`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d accounts whose reserved balance is not the sum of their pending holds", n)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM ledger_hold_events e WHERE e.hash <> ledger_hold_event_hash(e)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d hold events whose hash does not recompute", n)
	}
	var raw []byte
	if err := db.QueryRow(ctx, `SELECT coalesce(json_agg(x), '[]') FROM (SELECT h.reference_id, h.status, array_agg(e.event ORDER BY e.seq) AS ev
		FROM ledger_holds h JOIN ledger_hold_events e ON e.ledger_id = h.ledger_id AND e.hold_id = h.id
		GROUP BY h.ledger_id, h.reference_id, h.status
		HAVING NOT (array_agg(e.event ORDER BY e.seq) = CASE h.status WHEN 'PENDING' THEN ARRAY['created']
		            ELSE ARRAY['created', lower(h.status)] END)) x`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var bad []json.RawMessage
	_ = json.Unmarshal(raw, &bad)
	if len(bad) != 0 {
		t.Errorf("holds whose events do not match their status: %s", raw)
	}
}

// TestBalancesAsOfEverySeq: a random run of postings and holds (created, captured in part or in
// full, voided), then for every seq of the ledger and every account, the balances as of that seq
// equal the sums replayed from the entries and the holds' own created_seq / resolved_seq.
func TestBalancesAsOfEverySeq(t *testing.T) {
	db, ctx := holdFixture(t)
	accounts := []string{"issuance", "payer", "payee"}
	rng := rand.New(rand.NewPCG(1, 2))
	var pending []string
	for i := range 150 {
		switch k := rng.IntN(10); {
		case k < 4:
			from, to := "payer", "payee"
			if rng.IntN(2) == 0 {
				from, to = "payee", "payer"
			}
			if rng.IntN(5) == 0 {
				from = "issuance"
			}
			mustPost(t, db, "H", ledger.EntryInput{DebitAccountID: from, CreditAccountID: to, Amount: fmt.Sprintf("%d.%02d", rng.IntN(30), rng.IntN(100)+1),
				CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: fmt.Sprintf("p%d", i)})
		case k < 7:
			in := hold(fmt.Sprintf("h%d", i), fmt.Sprintf("%d.%02d", rng.IntN(40), rng.IntN(100)+1))
			if rng.IntN(2) == 0 {
				in.DebitAccountID, in.CreditAccountID = "payee", "payer"
			}
			if r, err := ledger.CreateHold(ctx, db, "H", in); err != nil {
				t.Fatal(err)
			} else if r.Code == ledger.CodeCreated {
				pending = append(pending, in.ReferenceID)
			}
		case len(pending) > 0:
			j := rng.IntN(len(pending))
			ref := pending[j]
			pending = append(pending[:j], pending[j+1:]...)
			var (
				r   ledger.HoldResult
				err error
			)
			switch rng.IntN(3) {
			case 0:
				r, err = ledger.VoidHold(ctx, db, "H", ref)
			case 1:
				r, err = ledger.CaptureHold(ctx, db, "H", ref, ledger.CaptureInput{ReferenceID: ref + "-cap"})
			default:
				part := "0.01"
				r, err = ledger.CaptureHold(ctx, db, "H", ref, ledger.CaptureInput{ReferenceID: ref + "-cap", Amount: &part})
			}
			wantCode(t, "end "+ref, r, err, ledger.CodeCreated)
		}
	}
	l, err := ledger.GetLedger(ctx, db, "H")
	if err != nil {
		t.Fatal(err)
	}
	// The replay, from the entries and the holds' own columns.
	type key struct {
		seq  int64
		acct string
	}
	balance := map[key]money.Amount{}
	running := map[string]money.Amount{}
	entries, err := ledger.ListEntries(ctx, db, "H", 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	bySeq := map[int64]ledger.Entry{}
	for _, e := range entries {
		bySeq[e.Seq] = e
	}
	holds, err := ledger.ListHolds(ctx, db, "H", ledger.HoldFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for n := int64(0); n <= l.HeadSeq; n++ {
		if e, ok := bySeq[n]; ok {
			amt := mustAmount(t, e.Amount)
			running[e.DebitAccountID] = running[e.DebitAccountID].Sub(amt)
			running[e.CreditAccountID] = running[e.CreditAccountID].Add(amt)
		}
		for _, acct := range accounts {
			balance[key{n, acct}] = running[acct]
			reserved := money.Amount{}
			for _, h := range holds {
				if h.DebitAccountID == acct && h.CreatedSeq <= n && (h.ResolvedSeq == nil || *h.ResolvedSeq > n) {
					reserved = reserved.Add(mustAmount(t, h.Amount))
				}
			}
			seq := n
			got, err := ledger.GetAccountAsOf(ctx, db, "H", acct, &seq, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !mustAmount(t, got.Balance).Equal(running[acct]) || !mustAmount(t, got.ReservedBalance).Equal(reserved) ||
				!mustAmount(t, got.AvailableBalance).Equal(running[acct].Sub(reserved)) {
				t.Fatalf("%s as of seq %d: balance %s reserved %s available %s; replayed balance %s reserved %s",
					acct, n, got.Balance, got.ReservedBalance, got.AvailableBalance, running[acct], reserved)
			}
			checked++
		}
	}
	// The head equals the account as stored now.
	for _, acct := range accounts {
		head := l.HeadSeq
		got, err := ledger.GetAccountAsOf(ctx, db, "H", acct, &head, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := balances(t, db, "H", acct)
		if [3]string{got.Balance, got.AvailableBalance, got.ReservedBalance} != now {
			t.Fatalf("%s as of the head %v, stored %v", acct, got, now)
		}
	}
	// Past the head, and both parameters: refused.
	past := l.HeadSeq + 1
	if _, err := ledger.GetAccountAsOf(ctx, db, "H", "payer", &past, nil); ledger.CodeOf(err) != ledger.CodeInvalidRequest {
		t.Fatalf("as of a seq past the head: %v", err)
	}
	// As of a time: now is the head; before the ledger existed is all zero.
	now := time.Now().Add(time.Hour)
	got, err := ledger.GetAccountAsOf(ctx, db, "H", "payer", nil, &now)
	if err != nil || got.AsOfSeq == nil || *got.AsOfSeq != l.HeadSeq {
		t.Fatalf("as of a time after the run: %+v %v", got, err)
	}
	long := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	got, err = ledger.GetAccountAsOf(ctx, db, "H", "payer", nil, &long)
	if err != nil || *got.AsOfSeq != 0 || got.Balance != "0.00" || got.ReservedBalance != "0.00" {
		t.Fatalf("as of 2000: %+v %v", got, err)
	}
	t.Logf("%d account balances as of %d seqs checked", checked, l.HeadSeq+1)
}

func mustAmount(t *testing.T, s string) money.Amount {
	t.Helper()
	a, err := money.ParseAmount(s)
	if err != nil {
		t.Fatalf("amount %q: %v", s, err)
	}
	return a
}
