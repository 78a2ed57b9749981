package settlement

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newService: MASTER with banks SCB-1 and SCB-2, each with a USD settlement account; SCB-1 funded.
// The set-up is the owner's (d.Pool); the service and its postings run as dualledger_api, logged
// in as a plain member of it, as `dualledger serve` does.
func newService(t *testing.T) (*Service, *pgtest.DB) {
	t.Helper()
	d := pgtest.New(t)
	api := d.PoolAs(t, "dualledger_api")
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "MASTER")
	must(err)
	for _, b := range []string{"SCB-1", "SCB-2"} {
		_, err = ledger.RegisterBank(ctx, d.Pool, "system:test", b, b)
		must(err)
		id := b
		_, err = ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: b + "-USD", CurrencyCode: "USD", AssetType: "fiat", BankID: &id})
		must(err)
	}
	unlimited := "unlimited"
	_, err = ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "issuance", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited})
	must(err)
	post := func(ctx context.Context, ledgerID string, e ledger.EntryInput) (ledger.Result, error) {
		res, err := ledger.PostBatch(ctx, api, ledgerID, []ledger.EntryInput{e}, false)
		if err != nil {
			return ledger.Result{}, err
		}
		return res[0], nil
	}
	res, err := post(ctx, "MASTER", ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: "SCB-1-USD", Amount: "1000.00",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding", ReferenceID: "fund"})
	if err != nil || !res.OK() {
		t.Fatalf("fund: %v %+v", err, res)
	}
	return New(api, "MASTER", post), d
}

func req(ref, amount string) Request {
	return Request{NodeID: "node-1", SourceBankID: "SCB-1", DestinationBankID: "SCB-2", Amount: amount, CurrencyCode: "USD", ReferenceID: ref}
}

func codeOf(err error) string {
	var le *ledger.Error
	if errors.As(err, &le) {
		return le.Code
	}
	return ""
}

// TestSettledOnlyWhenEveryRowFinalized: DBIS_COMMITTED until the last of the two rows is
// FINALIZED (rows moved through legal transitions only, as the worker does).
func TestSettledOnlyWhenEveryRowFinalized(t *testing.T) {
	t.Parallel()
	s, d := newService(t)
	ctx := context.Background()
	out, err := s.Settle(ctx, req("s-1", "100.00"))
	if err != nil {
		t.Fatal(err)
	}
	if out.Status != StatusDBISCommitted || out.Replayed || out.Entry.TransactionType != TransactionType || len(out.Sync) != 2 ||
		out.Entry.DebitAccountID != "SCB-1-USD" || out.Entry.CreditAccountID != "SCB-2-USD" || out.Entry.AssetType != "fiat" {
		t.Fatalf("settle: %+v", out)
	}
	var meta map[string]string
	if err := json.Unmarshal(out.Entry.Metadata, &meta); err != nil || meta["node_id"] != "node-1" {
		t.Errorf("metadata %s", out.Entry.Metadata)
	}
	conn := d.Conn(t)
	step := func(scb, sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql+` WHERE reference_id = 's-1' AND scb_id = $1`, scb); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		t.Helper()
		g, err := s.Get(ctx, "s-1")
		if err != nil {
			t.Fatal(err)
		}
		return g.Status
	}
	claim := `UPDATE dual_ledger_outbox SET status = 'PROCESSING', locked_by = 'w', lease_expires_at = now() + interval '1 minute', attempts = attempts + 1`
	step("SCB-1", claim)
	step("SCB-1", `UPDATE dual_ledger_outbox SET status = 'FINALIZED', locked_by = NULL, lease_expires_at = NULL, finalized_at = now(),
		scb_entry_id = 'SCB-1-1', scb_status = 'FINAL'`)
	if st := status(); st != StatusDBISCommitted {
		t.Errorf("one row FINALIZED, the other QUEUED: %s", st)
	}
	step("SCB-2", claim)
	step("SCB-2", `UPDATE dual_ledger_outbox SET status = 'SENT', locked_by = NULL, lease_expires_at = NULL, next_poll_at = now()`)
	if st := status(); st != StatusDBISCommitted {
		t.Errorf("one row FINALIZED, the other SENT: %s", st)
	}
	step("SCB-2", `UPDATE dual_ledger_outbox SET status = 'ACKED'`)
	if st := status(); st != StatusDBISCommitted {
		t.Errorf("one row FINALIZED, the other ACKED: %s", st)
	}
	step("SCB-2", `UPDATE dual_ledger_outbox SET status = 'FINALIZED', finalized_at = now(), scb_entry_id = 'SCB-2-1', scb_status = 'FINAL'`)
	if st := status(); st != StatusSettled {
		t.Errorf("both rows FINALIZED: %s", st)
	}
	again, err := s.Settle(ctx, req("s-1", "100.00"))
	if err != nil || !again.Replayed || again.Status != StatusSettled || again.Entry.ID != out.Entry.ID {
		t.Errorf("replay after settlement: %+v %v", again, err)
	}
}

// TestReplayAfterAccountChange: a retry of a committed settlement must answer the original entry
// (docs/design.md §2.1; the posting function checks idempotency before anything else for this reason).
// Settle resolves the banks' settlement accounts before posting, so once a bank has a second
// account for the currency the retry is refused as ambiguous_settlement_account instead.
func TestReplayAfterAccountChange(t *testing.T) {
	t.Parallel()
	s, d := newService(t)
	ctx := context.Background()
	out, err := s.Settle(ctx, req("s-2", "10.00"))
	if err != nil {
		t.Fatal(err)
	}
	bank := "SCB-2"
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "SCB-2-USD-new", CurrencyCode: "USD", AssetType: "fiat", BankID: &bank}); err != nil {
		t.Fatal(err)
	}
	again, err := s.Settle(ctx, req("s-2", "10.00"))
	if err != nil || !again.Replayed || again.Entry.ID != out.Entry.ID {
		t.Errorf("retry of committed settlement s-2 after SCB-2 opened a second USD account: %v (code %q), want the original entry replayed",
			err, codeOf(err))
	}
}

// TestClosedAccountIsNotASettlementAccount: a bank that closed its old USD account and opened a
// new one has one settlement account, the open one; Settle counts the closed one too and refuses
// every settlement as ambiguous.
func TestClosedAccountIsNotASettlementAccount(t *testing.T) {
	t.Parallel()
	s, d := newService(t)
	ctx := context.Background()
	bank := "SCB-2"
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "SCB-2-USD-2", CurrencyCode: "USD", AssetType: "fiat", BankID: &bank}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Conn(t).Exec(ctx, `UPDATE bank_accounts SET status = 'closed' WHERE ledger_id = 'MASTER' AND id = 'SCB-2-USD'`); err != nil {
		t.Fatal(err)
	}
	out, err := s.Settle(ctx, req("s-3", "10.00"))
	if err != nil || out.Entry.CreditAccountID != "SCB-2-USD-2" {
		t.Errorf("settle to a bank with one open and one closed USD account: %v (code %q), credit %q; want the open account SCB-2-USD-2",
			err, codeOf(err), out.Entry.CreditAccountID)
	}
}

// TestSettleRejectionsWriteNothing: the service's own checks, before any posting.
func TestSettleRejectionsWriteNothing(t *testing.T) {
	t.Parallel()
	s, d := newService(t)
	ctx := context.Background()
	for _, c := range []struct {
		r    Request
		code string
	}{
		{Request{SourceBankID: "SCB-1", DestinationBankID: "SCB-2", Amount: "1", CurrencyCode: "USD", ReferenceID: "x"}, ledger.CodeInvalidRequest},
		{Request{NodeID: "n", SourceBankID: "SCB-1", DestinationBankID: "SCB-2", CurrencyCode: "USD", ReferenceID: "x"}, ledger.CodeInvalidAmount},
		{Request{NodeID: "n", SourceBankID: "SCB-1", DestinationBankID: "SCB-1", Amount: "1", CurrencyCode: "USD", ReferenceID: "x"}, ledger.CodeSameAccount},
		{Request{NodeID: string(make([]byte, 65)), SourceBankID: "SCB-1", DestinationBankID: "SCB-2", Amount: "1", CurrencyCode: "USD", ReferenceID: "x"}, ledger.CodeInvalidRequest},
		{Request{NodeID: "n", SourceBankID: "NOPE", DestinationBankID: "SCB-2", Amount: "1", CurrencyCode: "USD", ReferenceID: "x"}, CodeUnknownBank},
		{Request{NodeID: "n", SourceBankID: "SCB-1", DestinationBankID: "SCB-2", Amount: "1", CurrencyCode: "EUR", ReferenceID: "x"}, CodeSettlementAccountNotFound},
		{Request{NodeID: "n", SourceBankID: "SCB-2", DestinationBankID: "SCB-1", Amount: "1", CurrencyCode: "USD", ReferenceID: "x"}, ledger.CodeInsufficientFunds},
	} {
		if _, err := s.Settle(ctx, c.r); codeOf(err) != c.code {
			t.Errorf("%+v: %v, want %s", c.r, err, c.code)
		}
	}
	var entries, rows int
	if err := d.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ledger_entries WHERE reference_id = 'x'), (SELECT count(*) FROM dual_ledger_outbox WHERE reference_id = 'x')`).Scan(&entries, &rows); err != nil {
		t.Fatal(err)
	}
	if entries != 0 || rows != 0 {
		t.Errorf("rejections wrote %d entries and %d outbox rows", entries, rows)
	}
	if _, err := s.Get(ctx, "x"); codeOf(err) != ledger.CodeNotFound {
		t.Errorf("Get of nothing: %v", err)
	}
}
