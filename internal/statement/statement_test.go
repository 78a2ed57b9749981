package statement_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moov-io/iso20022/pkg/camt_v08"
	"github.com/moov-io/iso20022/pkg/document"
	"github.com/shopspring/decimal"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
	"dualledger/internal/statement"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// posted is an entry as the test posted it, for the independent expectation.
type posted struct {
	seq            int64
	debit, credit  string
	amount         decimal.Decimal
	booked         time.Time
	debitBalAfter  decimal.Decimal
	creditBalAfter decimal.Decimal
}

// randomLedger posts n random entries between accounts a0..a3 (a0 may overdraw) and spreads
// their booking times over days: recorded_at is the commit time, so the test, as superuser,
// moves it back to base + seq × 7h (monotonic in seq, as commits are).
func randomLedger(t *testing.T, rng *rand.Rand, n int) (*pgtest.DB, []posted, time.Time) {
	t.Helper()
	d := pgtest.New(t)
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "L"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for i := range 4 {
		in := ledger.AccountInput{ID: fmt.Sprintf("a%d", i), CurrencyCode: "USD", AssetType: "fiat"}
		if i == 0 {
			in.OverdraftLimit = &unlimited
		}
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "L", in); err != nil {
			t.Fatal(err)
		}
	}
	var batch []ledger.EntryInput
	for i := range n {
		from, to := rng.IntN(4), rng.IntN(3)
		if to >= from {
			to++
		}
		if i < 3 { // fund first
			from, to = 0, i+1
		}
		amount := fmt.Sprintf("%d.%02d", rng.IntN(1000), rng.IntN(100))
		if i < 3 {
			amount = "1000000.00"
		}
		batch = append(batch, ledger.EntryInput{DebitAccountID: fmt.Sprintf("a%d", from), CreditAccountID: fmt.Sprintf("a%d", to),
			Amount: amount, CurrencyCode: "USD", AssetType: "fiat", TransactionType: "t", ReferenceID: fmt.Sprintf("r%d", i)})
	}
	res, err := ledger.PostBatch(ctx, d.Pool, "L", batch, false)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 5, 0, 0, 0, time.UTC)
	conn := d.Conn(t)
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE ledger_entries SET recorded_at = $1::timestamptz + seq * interval '7 hours' WHERE ledger_id = 'L'`, base); err != nil {
		t.Fatal(err)
	}
	var out []posted
	for i, r := range res {
		if !r.OK() { // refused for funds: not in the ledger
			continue
		}
		out = append(out, posted{seq: r.Seq, debit: batch[i].DebitAccountID, credit: batch[i].CreditAccountID,
			amount: decimal.RequireFromString(batch[i].Amount), booked: base.Add(time.Duration(r.Seq) * 7 * time.Hour),
			debitBalAfter: decimal.RequireFromString(r.DebitBalance), creditBalAfter: decimal.RequireFromString(r.CreditBalance)})
	}
	return d, out, base
}

// TestStatementAddsUp: for random ranges of a random ledger, opening + Σ entries = closing, each
// equal to what the posted entries say independently, and each line's balance the running one.
func TestStatementAddsUp(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)
	d, entries, base := randomLedger(t, rng, 300)
	ctx := context.Background()
	days := int(time.Duration(len(entries)+1)*7*time.Hour/(24*time.Hour)) + 2
	for range 40 {
		acct := fmt.Sprintf("a%d", rng.IntN(4))
		f := base.AddDate(0, 0, rng.IntN(days)-1).Truncate(24 * time.Hour)
		to := f.AddDate(0, 0, rng.IntN(10))
		st, err := statement.Build(ctx, d.Pool, "L", acct, f, to)
		if err != nil {
			t.Fatal(err)
		}
		if err := statement.Check(st); err != nil {
			t.Fatalf("%s %s..%s: %v", acct, st.From, st.To, err)
		}
		// Independently: the running balance from the posted amounts.
		bal, opening := decimal.Zero, decimal.Zero
		var want []int64
		for _, e := range entries {
			if e.debit != acct && e.credit != acct {
				continue
			}
			if e.booked.Before(f) {
				opening = opening.Add(signedFor(e, acct))
			} else if e.booked.Before(to.AddDate(0, 0, 1)) {
				want = append(want, e.seq)
			}
			bal = bal.Add(signedFor(e, acct))
		}
		closing := opening
		for i, seq := range want {
			for _, e := range entries {
				if e.seq == seq {
					closing = closing.Add(signedFor(e, acct))
				}
			}
			if i < len(st.Entries) && (st.Entries[i].Seq != seq || !decimal.RequireFromString(st.Entries[i].Balance).Equal(closing)) {
				t.Fatalf("%s line %d: %+v, want seq %d balance %s", acct, i, st.Entries[i], seq, closing)
			}
		}
		if len(st.Entries) != len(want) || !decimal.RequireFromString(st.OpeningBalance).Equal(opening) ||
			!decimal.RequireFromString(st.ClosingBalance).Equal(closing) {
			t.Fatalf("%s %s..%s: %d entries opening %s closing %s, want %d, %s, %s", acct, st.From, st.To, len(st.Entries),
				st.OpeningBalance, st.ClosingBalance, len(want), opening, closing)
		}
	}
	// The whole history ends at the account's balance.
	for i := range 4 {
		acct := fmt.Sprintf("a%d", i)
		st, err := statement.Build(ctx, d.Pool, "L", acct, base.AddDate(0, 0, -1), base.AddDate(0, 0, days))
		if err != nil {
			t.Fatal(err)
		}
		a, err := ledger.GetAccount(ctx, d.Pool, "L", acct)
		if err != nil {
			t.Fatal(err)
		}
		if !decimal.RequireFromString(st.ClosingBalance).Equal(decimal.RequireFromString(a.Balance)) || st.OpeningBalance != "0.00" {
			t.Errorf("%s: whole history %s..%s, balance %s", acct, st.OpeningBalance, st.ClosingBalance, a.Balance)
		}
	}
	if _, err := statement.Build(ctx, d.Pool, "L", "nope", base, base); ledger.CodeOf(err) != ledger.CodeNotFound && ledger.CodeOf(err) != ledger.CodeUnknownAccount {
		t.Errorf("unknown account: %v", err)
	}
}

func signedFor(e posted, acct string) decimal.Decimal {
	if e.credit == acct {
		return e.amount
	}
	return e.amount.Neg()
}

// TestCamt053Valid: the camt.053 output parses as a camt.053.001.08 document with
// github.com/moov-io/iso20022's types and passes their validation (patterns, enumerations,
// required elements), carries OPBD and CLBD and one Ntry per entry, and reads back equal.
func TestCamt053Valid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	d, _, base := randomLedger(t, rng, 60)
	st, err := statement.Build(context.Background(), d.Pool, "L", "a1", base, base.AddDate(0, 0, 6))
	if err != nil || st.Count == 0 {
		t.Fatalf("%v %+v", err, st)
	}
	var buf bytes.Buffer
	if err := statement.Write(&buf, st, statement.Camt053); err != nil {
		t.Fatal(err)
	}
	// The library's types: the document is recognised by its namespace and every element we
	// write lands in its field. (Its whole-message Validate cannot be used: it treats each XSD
	// choice, e.g. the account's IBAN | Othr, as requiring all alternatives; the values are
	// validated one by one below, and the whole document against the official XSD when xmllint
	// is installed, TestCamt053AgainstXSD.)
	doc, err := document.ParseIso20022Document(buf.Bytes())
	if err != nil {
		t.Fatalf("parse with moov-io/iso20022: %v\n%s", err, buf.String())
	}
	if doc.NameSpace() != statement.Camt053Namespace {
		t.Fatalf("namespace %s", doc.NameSpace())
	}
	msg, ok := doc.InspectMessage().(*camt_v08.BankToCustomerStatementV08)
	if !ok || len(msg.Stmt) != 1 {
		t.Fatalf("message %T", doc.InspectMessage())
	}
	if err := msg.GrpHdr.Validate(); err != nil {
		t.Errorf("GrpHdr: %v", err)
	}
	s := msg.Stmt[0]
	if len(s.Bal) != 2 || string(s.Bal[0].Tp.CdOrPrtry.Cd) != "OPBD" || string(s.Bal[1].Tp.CdOrPrtry.Cd) != "CLBD" || len(s.Ntry) != st.Count {
		t.Fatalf("balances %+v, %d entries (want %d)", s.Bal, len(s.Ntry), st.Count)
	}
	if err := errors.Join(s.Id.Validate(), s.Acct.Id.Othr.Id.Validate(), s.Acct.Ccy.Validate()); err != nil || string(s.Acct.Id.Othr.Id) != "a1" {
		t.Errorf("Stmt Id / account: %v", err)
	}
	for i, b := range s.Bal {
		if err := errors.Join(b.Tp.CdOrPrtry.Cd.Validate(), b.Amt.Validate(), b.CdtDbtInd.Validate()); err != nil || time.Time(b.Dt.Dt).IsZero() {
			t.Errorf("Bal %d: %v", i, err)
		}
	}
	for i, n := range s.Ntry {
		if err := errors.Join(n.Amt.Validate(), n.CdtDbtInd.Validate(), n.Sts.Cd.Validate(),
			n.NtryRef.Validate(), n.AcctSvcrRef.Validate(), n.BkTxCd.Prtry.Validate()); err != nil || time.Time(n.BookgDt.DtTm).IsZero() {
			t.Errorf("Ntry %d: %v", i, err)
		}
		if float64(n.Amt.Value) <= 0 || string(n.CdtDbtInd) != map[string]string{"credit": "CRDT", "debit": "DBIT"}[st.Entries[i].Direction] {
			t.Errorf("Ntry %d: %v %s, line %+v", i, n.Amt.Value, n.CdtDbtInd, st.Entries[i])
		}
	}
	back, err := statement.ParseCamt053(bytes.NewReader(buf.Bytes()))
	if err != nil || len(back) != 1 {
		t.Fatalf("read back: %v", err)
	}
	b := back[0]
	if !decimal.RequireFromString(b.OpeningBalance).Equal(decimal.RequireFromString(st.OpeningBalance)) ||
		!decimal.RequireFromString(b.ClosingBalance).Equal(decimal.RequireFromString(st.ClosingBalance)) || b.Count != st.Count {
		t.Errorf("read back %+v", b)
	}
	if err := statement.Check(b); err != nil {
		t.Errorf("the statement read back does not add up: %v", err)
	}
	for i, l := range b.Entries {
		if l.Seq != st.Entries[i].Seq || l.ReferenceID != st.Entries[i].ReferenceID || l.Direction != st.Entries[i].Direction ||
			!decimal.RequireFromString(l.Amount).Equal(decimal.RequireFromString(st.Entries[i].Amount)) {
			t.Errorf("entry %d read back %+v, wrote %+v", i, l, st.Entries[i])
		}
	}

	// CSV: header, opening, the entries, closing.
	buf.Reset()
	if err := statement.Write(&buf, st, statement.CSV); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != st.Count+3 || rows[1][0] != "opening" || rows[len(rows)-1][0] != "closing" ||
		rows[len(rows)-1][13] != st.ClosingBalance {
		t.Fatalf("csv: %v %v", err, rows)
	}
}

// TestCamt053RefusesTooPrecise: camt.053 carries at most 5 decimals; an amount with more is an
// error, not a rounded number.
func TestCamt053RefusesTooPrecise(t *testing.T) {
	st := statement.Statement{LedgerID: "L", AccountID: "a", CurrencyCode: "XAU", From: "2026-01-01", To: "2026-01-01",
		OpeningBalance: "0", ClosingBalance: "0.000001", Entries: []statement.Line{{Seq: 1, Amount: "0.000001", Direction: statement.Credit,
			ReferenceID: "r", TransactionType: "t", Balance: "0.000001"}}}
	if err := statement.Write(&bytes.Buffer{}, st, statement.Camt053); err == nil || !strings.Contains(err.Error(), "5 decimals") {
		t.Fatalf("%v", err)
	}
}

// TestCamt053AgainstXSD validates the camt.053 output against the official schema
// (camt.053.001.08.xsd, shipped in the github.com/moov-io/iso20022 module) with xmllint. It is
// skipped, saying so, where xmllint is not installed (Debian: libxml2-utils).
func TestCamt053AgainstXSD(t *testing.T) {
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint not installed (apt-get install libxml2-utils): the schema check is skipped; TestCamt053Valid still runs")
	}
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/moov-io/iso20022").Output()
	if err != nil {
		t.Skipf("locate the iso20022 module: %v", err)
	}
	xsd := filepath.Join(strings.TrimSpace(string(dir)), "docs", "specifications", "banktocustomer_cash_management_8", "camt.053.001.08.xsd")
	if _, err := os.Stat(xsd); err != nil {
		t.Skipf("schema not found: %v", err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	d, _, base := randomLedger(t, rng, 40)
	for _, acct := range []string{"a0", "a2"} { // a0 overdraws: negative balances are DBIT
		st, err := statement.Build(context.Background(), d.Pool, "L", acct, base, base.AddDate(0, 0, 30))
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), acct+".xml")
		var buf bytes.Buffer
		if err := statement.Write(&buf, st, statement.Camt053); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(xmllint, "--noout", "--schema", xsd, file).CombinedOutput(); err != nil {
			t.Errorf("%s: xmllint: %v\n%s", acct, err, out)
		}
	}
}
