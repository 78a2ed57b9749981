package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

func setupLedger(t *testing.T) (*pgtest.DB, string) {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	const L = "MASTER"
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", L); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, a := range []ledger.AccountInput{
		{ID: "issuance", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "alice", CurrencyCode: "USD", AssetType: "fiat"},
		{ID: "bob", CurrencyCode: "USD", AssetType: "fiat"},
		{ID: "jpy", CurrencyCode: "JPY", AssetType: "fiat"},
		{ID: "eur", CurrencyCode: "EUR", AssetType: "fiat"},
		{ID: "cbdc", CurrencyCode: "USD", AssetType: "cbdc"},
	} {
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", L, a); err != nil {
			t.Fatal(err)
		}
	}
	res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("issuance", "alice", "100.00", "USD", "fund-alice")}, false)
	if err != nil || res[0].Code != ledger.CodeCreated {
		t.Fatalf("fund: %v %+v", err, res)
	}
	return d, L
}

// TestPostResultCodes posts one entry per result code through the Go posting module, both as a
// plain batch and through group commit, and checks the code, the message and the details.
func TestPostResultCodes(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	poster := ledger.NewPoster(d.Pool, ledger.PosterConfig{})
	defer poster.Close()

	str := func(s string) *string { return &s }
	cases := []struct {
		name   string
		ledger string
		in     ledger.EntryInput
		code   string
		msg    string // substring of the message
		detail string // substring of the details JSON
	}{
		{"created", L, entry("alice", "bob", "10.00", "USD", "p1"), ledger.CodeCreated, "", ""},
		{"replayed", L, entry("alice", "bob", "10.00", "USD", "p1"), ledger.CodeReplayed, "", ""},
		{"replayed with trailing zeros", L, entry("alice", "bob", "10.000", "USD", "p1"), ledger.CodeReplayed, "", ""},
		{"reference_conflict", L, entry("alice", "bob", "11.00", "USD", "p1"), ledger.CodeReferenceConflict, "different amount", `"fields": ["amount"]`},
		{"insufficient_funds", L, entry("alice", "bob", "1000.00", "USD", "p2"), ledger.CodeInsufficientFunds, "available 90", `"available_balance": "90.00"`},
		{"unknown_account", L, entry("alice", "carol", "1.00", "USD", "p3"), ledger.CodeUnknownAccount, `unknown credit account "carol"`, `"missing_account_ids": ["carol"]`},
		{"unknown_ledger", "NOPE", entry("alice", "bob", "1.00", "USD", "p4"), ledger.CodeUnknownLedger, `unknown ledger "NOPE"`, ""},
		{"currency_mismatch", L, entry("alice", "eur", "1.00", "USD", "p5"), ledger.CodeCurrencyMismatch, `credit account "eur" holds EUR fiat`, ""},
		{"asset type mismatch", L, entry("alice", "cbdc", "1.00", "USD", "p5b"), ledger.CodeCurrencyMismatch, "holds USD cbdc", ""},
		{"same_account", L, entry("alice", "alice", "1.00", "USD", "p6"), ledger.CodeSameAccount, "same", ""},
		{"zero", L, entry("alice", "bob", "0", "USD", "p7"), ledger.CodeInvalidAmount, "greater than zero", `"field": "amount"`},
		{"negative", L, entry("alice", "bob", "-5.00", "USD", "p8"), ledger.CodeInvalidAmount, "greater than zero", ""},
		{"too many decimals", L, entry("alice", "bob", "1.001", "USD", "p9"), ledger.CodeInvalidAmount, "has 3 decimals but USD allows at most 2", ""},
		{"JPY decimals", L, entry("issuance", "jpy", "1.5", "JPY", "p10"), ledger.CodeInvalidAmount, "JPY allows at most 0", ""},
		{"exponent", L, entry("alice", "bob", "1e3", "USD", "p11"), ledger.CodeInvalidAmount, "not a plain decimal", ""},
		{"out of range", L, entry("alice", "bob", "123456789012345678901", "USD", "p12"), ledger.CodeInvalidAmount, "at most 20 integer digits", ""},
		{"unknown_currency", L, entry("alice", "bob", "1.00", "usd", "p13"), ledger.CodeUnknownCurrency, `unknown currency code "usd"`, ""},
		{"invalid_asset_type", L, func() ledger.EntryInput {
			e := entry("alice", "bob", "1.00", "USD", "p14")
			e.AssetType = "crypto"
			return e
		}(), ledger.CodeInvalidAssetType, `"crypto"`, ""},
		{"missing reference", L, entry("alice", "bob", "1.00", "USD", ""), ledger.CodeInvalidRequest, "reference_id is required", `"field": "reference_id"`},
		{"bad timestamp", L, func() ledger.EntryInput {
			e := entry("alice", "bob", "1.00", "USD", "p15")
			e.TimestampUTC = str("2025-02-30T00:00:00Z")
			return e
		}(), ledger.CodeInvalidRequest, "timestamp_utc", ""},
		{"metadata not an object", L, func() ledger.EntryInput {
			e := entry("alice", "bob", "1.00", "USD", "p16")
			e.Metadata = json.RawMessage(`[1]`)
			return e
		}(), ledger.CodeInvalidRequest, "metadata must be a JSON object", ""},
		{"unknown reversed entry", L, func() ledger.EntryInput {
			e := entry("bob", "alice", "1.00", "USD", "p17")
			n := int64(999999)
			e.ReversesEntryID = &n
			return e
		}(), ledger.CodeUnknownEntry, "reverses_entry_id 999999", ""},
	}
	for _, via := range []string{"batch", "group"} {
		for _, c := range cases {
			t.Run(via+"/"+c.name, func(t *testing.T) {
				in := c.in
				if via == "group" && in.ReferenceID != "" && c.code != ledger.CodeReplayed && c.code != ledger.CodeReferenceConflict && c.code != ledger.CodeCreated {
					in.ReferenceID += "-g"
				}
				var r ledger.Result
				if via == "batch" {
					res, err := ledger.PostBatch(ctx, d.Pool, c.ledger, []ledger.EntryInput{in}, false)
					if err != nil {
						t.Fatal(err)
					}
					r = res[0]
				} else {
					var err error
					r, err = poster.Post(ctx, c.ledger, in)
					if err != nil {
						t.Fatal(err)
					}
				}
				want := c.code
				if via == "group" && c.name == "created" {
					want = ledger.CodeReplayed // p1 was created by the batch pass
				}
				if r.Code != want {
					t.Fatalf("code %s (%s), want %s", r.Code, r.Message, want)
				}
				if !strings.Contains(r.Message, c.msg) {
					t.Errorf("message %q does not contain %q", r.Message, c.msg)
				}
				if !strings.Contains(string(r.Details), c.detail) {
					t.Errorf("details %s do not contain %s", r.Details, c.detail)
				}
				var le *ledger.Error
				if err := r.Err(); r.OK() != (err == nil) || (err != nil && (!errors.As(err, &le) || le.Code != want)) {
					t.Errorf("Err() = %v", err)
				}
			})
		}
	}

	// The replay returned the original entry.
	e, err := ledger.GetEntryByReference(ctx, d.Pool, L, "p1")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "10.00", "USD", "p1")}, false)
	if err != nil || res[0].EntryID != e.ID || res[0].BlockHash != e.BlockHash || res[0].DebitBalance != "90.00" || res[0].CreditBalance != "10.00" {
		t.Fatalf("replay: %v %+v, entry %+v", err, res, e)
	}
	// Nothing but p1 and the funding was written.
	es, err := ledger.ListEntries(ctx, d.Pool, L, 0, 100)
	if err != nil || len(es) != 2 {
		t.Fatalf("entries after the rejections: %d (%v), want 2", len(es), err)
	}
}

// TestAtomicBatch: all or nothing, with not_applied naming the rejected entry.
func TestAtomicBatch(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	batch := []ledger.EntryInput{
		entry("alice", "bob", "60.00", "USD", "a1"),
		entry("alice", "bob", "60.00", "USD", "a2"), // overdraws after a1
		entry("bob", "alice", "1.00", "USD", "a3"),
	}
	res, err := ledger.PostBatch(ctx, d.Pool, L, batch, true)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{res[0].Code, res[1].Code, res[2].Code}
	want := []string{ledger.CodeNotApplied, ledger.CodeInsufficientFunds, ledger.CodeNotApplied}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("atomic batch: %v, want %v", got, want)
	}
	if !strings.Contains(res[0].Message, "entry 2") {
		t.Errorf("not_applied message %q should name entry 2", res[0].Message)
	}
	acct, err := ledger.GetAccount(ctx, d.Pool, L, "alice")
	if err != nil || acct.Balance != "100.00" {
		t.Fatalf("alice after a rejected atomic batch: %+v %v", acct, err)
	}
	// The same batch, non-atomic: the first and third go through.
	res, err = ledger.PostBatch(ctx, d.Pool, L, batch, false)
	if err != nil {
		t.Fatal(err)
	}
	got = []string{res[0].Code, res[1].Code, res[2].Code}
	want = []string{ledger.CodeCreated, ledger.CodeInsufficientFunds, ledger.CodeCreated}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("plain batch: %v, want %v", got, want)
	}
	// In-batch retry: the same reference twice in one batch is a replay of the first.
	res, err = ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", "d1"), entry("alice", "bob", "1.00", "USD", "d1"), entry("alice", "bob", "2.00", "USD", "d1")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Code != ledger.CodeCreated || res[1].Code != ledger.CodeReplayed || res[1].EntryID != res[0].EntryID || res[2].Code != ledger.CodeReferenceConflict {
		t.Fatalf("in-batch duplicates: %+v", res)
	}
}

// TestBalanceOverflowRejectsOnlyThatEntry: a posting that would push a balance beyond
// NUMERIC(38,18) is rejected on its own (invalid_amount); the rest of the batch goes through.
func TestBalanceOverflowRejectsOnlyThatEntry(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{
		entry("issuance", "bob", "99999999999999999000", "USD", "o1"), // bob just below 10^20
		entry("issuance", "bob", "1000", "USD", "o2"),                 // bob would reach 10^20
		entry("alice", "bob", "1.00", "USD", "o3"),
	}, false)
	if err != nil {
		t.Fatalf("the batch failed as a whole: %v", err)
	}
	if res[0].Code != ledger.CodeCreated || res[1].Code != ledger.CodeInvalidAmount || res[2].Code != ledger.CodeCreated {
		t.Fatalf("results %s %s %s (%s)", res[0].Code, res[1].Code, res[2].Code, res[1].Message)
	}
	if !strings.Contains(res[1].Message, `account "issuance"`) {
		t.Errorf("message %q should name the account", res[1].Message)
	}
}

// TestReversals: a reversal moves (part of) an entry back between the same accounts; never the
// wrong way round, in another currency, or more in total than the entry moved (across batches and
// within one).
func TestReversals(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	orig, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "30.00", "USD", "r-orig")}, false)
	if err != nil || orig[0].Code != ledger.CodeCreated {
		t.Fatalf("original: %v %+v", err, orig)
	}
	id := orig[0].EntryID
	rev := func(debit, credit, amount, ref string) ledger.EntryInput {
		e := entry(debit, credit, amount, "USD", ref)
		e.ReversesEntryID = &id
		return e
	}
	res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{
		rev("alice", "bob", "1.00", "r1"),  // the same direction: not a reversal
		rev("bob", "alice", "10.00", "r2"), // a partial reversal
		rev("bob", "alice", "15.00", "r3"), // 25 of 30 reversed
		rev("bob", "alice", "5.01", "r4"),  // would exceed 30
		rev("bob", "alice", "5.00", "r5"),  // exactly the rest
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ledger.CodeInvalidReversal, ledger.CodeCreated, ledger.CodeCreated, ledger.CodeInvalidReversal, ledger.CodeCreated}
	for i, w := range want {
		if res[i].Code != w {
			t.Errorf("reversal %d: %s (%s), want %s", i+1, res[i].Code, res[i].Message, w)
		}
	}
	if !strings.Contains(res[0].Message, "must move it back") || !strings.Contains(res[3].Message, "at most 5.00 more") {
		t.Errorf("messages: %q / %q", res[0].Message, res[3].Message)
	}
	// Fully reversed now: nothing more, in a later batch either.
	res, err = ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{rev("bob", "alice", "0.01", "r6")}, false)
	if err != nil || res[0].Code != ledger.CodeInvalidReversal {
		t.Fatalf("reversal beyond the entry in a later batch: %v %+v", err, res)
	}
}

// TestAtomicBatchInBatchConflict: an atomic batch whose second entry reuses the first one's
// reference with other content is rejected because of that conflict: the first is not_applied,
// the second keeps its reference_conflict (naming the batch entry), and neither shows an entry.
func TestAtomicBatchInBatchConflict(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{
		entry("alice", "bob", "1.00", "USD", "dup"), entry("alice", "bob", "2.00", "USD", "dup"),
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Code != ledger.CodeNotApplied || res[1].Code != ledger.CodeReferenceConflict {
		t.Fatalf("results %s, %s", res[0].Code, res[1].Code)
	}
	if res[1].EntryID != 0 || strings.Contains(string(res[1].Details), "existing_entry_id") || !strings.Contains(string(res[1].Details), `"batch_entry": 1`) {
		t.Errorf("conflict result shows an entry that was not written: %+v", res[1])
	}
	if !strings.Contains(res[0].Message, "entry 2") || !strings.Contains(res[0].Message, "reference_conflict") {
		t.Errorf("not_applied message %q", res[0].Message)
	}
}

// TestGroupCommitConflictIsTheCallersOwn: two single postings with one reference and different
// amounts that group commit puts into one batch. The second is a reference conflict with the
// first, answered as a conflict with a committed entry: no "entry 1 of this batch" (the flusher's
// batch, another client's request) and no batch_entry in its details.
func TestGroupCommitConflictIsTheCallersOwn(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	var mu sync.Mutex
	var sizes []int
	poster := ledger.NewPoster(d.Pool, ledger.PosterConfig{MaxBatch: 2, MaxDelay: 2 * time.Second,
		Observe: func(_ string, size int, _ time.Duration, _ error) {
			mu.Lock()
			sizes = append(sizes, size)
			mu.Unlock()
		}})
	defer poster.Close()
	var wg sync.WaitGroup
	res := make([]ledger.Result, 2)
	for i, amt := range []string{"1.00", "2.00"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := poster.Post(ctx, L, entry("alice", "bob", amt, "USD", "gc-dup<&>"))
			if err != nil {
				t.Error(err)
			}
			res[i] = r
		}()
	}
	wg.Wait()
	if !slices.Equal(sizes, []int{2}) {
		t.Fatalf("batches %v: the two postings were not one group commit", sizes)
	}
	created, conflict := res[0], res[1]
	if created.Code != ledger.CodeCreated {
		created, conflict = conflict, created
	}
	if created.Code != ledger.CodeCreated || conflict.Code != ledger.CodeReferenceConflict {
		t.Fatalf("results %s, %s", res[0].Code, res[1].Code)
	}
	want := fmt.Sprintf(`reference_id "gc-dup<&>" was already used for entry %d with a different amount`, created.EntryID)
	if conflict.Message != want || conflict.Index != 0 {
		t.Errorf("message %q (index %d), want %q", conflict.Message, conflict.Index, want)
	}
	var det map[string]any
	if err := json.Unmarshal(conflict.Details, &det); err != nil {
		t.Fatal(err)
	}
	if _, ok := det["batch_entry"]; ok || det["existing_entry_id"] != float64(created.EntryID) || det["reference_id"] != "gc-dup<&>" ||
		fmt.Sprint(det["fields"]) != "[amount]" {
		t.Errorf("details %s", conflict.Details)
	}
}

// TestAccountOfUnregisteredBank: bank_id must name a registered bank (a typo would otherwise
// leave the account's postings unmirrored without a word).
func TestAccountOfUnregisteredBank(t *testing.T) {
	d, L := setupLedger(t)
	ghost := "GHOST"
	_, err := ledger.CreateAccount(context.Background(), d.Pool, "system:test", L, ledger.AccountInput{ID: "g", CurrencyCode: "USD", AssetType: "fiat", BankID: &ghost})
	if ledger.CodeOf(err) != ledger.CodeUnknownBank || !strings.Contains(err.Error(), `"GHOST" is not registered`) {
		t.Fatalf("account of an unregistered bank: %v", err)
	}
}

// A batch that loses a serialization race was rolled back whole, so PostBatch runs it again (up
// to three times) and only then answers unavailable. The race is staged with a trigger that
// fails the first N inserts with SQLSTATE 40001; a sequence counts them because it is not rolled
// back with the failed statement.
func TestPostRetriesSerializationFailures(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	flaky := func(failures int) {
		t.Helper()
		if _, err := d.Pool.Exec(ctx, `
			DROP TRIGGER IF EXISTS flaky ON ledger_entries;
			DROP SEQUENCE IF EXISTS flaky_seq;
			CREATE SEQUENCE flaky_seq;
			CREATE OR REPLACE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF nextval('flaky_seq') <= `+fmt.Sprint(failures)+` THEN
					RAISE EXCEPTION 'staged serialization failure' USING ERRCODE = '40001';
				END IF;
				RETURN NULL;
			END $$;
			CREATE TRIGGER flaky AFTER INSERT ON ledger_entries FOR EACH STATEMENT EXECUTE FUNCTION flaky();`); err != nil {
			t.Fatal(err)
		}
	}
	attempts := func() int64 {
		var n int64
		if err := d.Pool.QueryRow(ctx, "SELECT last_value FROM flaky_seq").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	flaky(2)
	res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", "retry-1")}, false)
	if err != nil || res[0].Code != ledger.CodeCreated {
		t.Fatalf("after two staged failures: %v %+v", err, res)
	}
	if n := attempts(); n != 3 {
		t.Fatalf("statement ran %d times, want 3", n)
	}

	flaky(3)
	_, err = ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", "retry-2")}, false)
	if ledger.CodeOf(err) != ledger.CodeUnavailable {
		t.Fatalf("after three staged failures: %v, want unavailable", err)
	}
	if n := attempts(); n != 3 {
		t.Fatalf("statement ran %d times, want 3", n)
	}
	var count int
	if err := d.Pool.QueryRow(ctx, "SELECT count(*) FROM ledger_entries WHERE reference_id = 'retry-2'").Scan(&count); err != nil || count != 0 {
		t.Fatalf("retry-2 rows %d %v: a failed batch wrote something", count, err)
	}
}
