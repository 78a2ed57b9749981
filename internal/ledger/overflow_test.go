package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// wantOutOfRange checks FromDB's answer to SQLSTATE 22003: invalid_amount with a message that
// says an amount or balance is out of range, none of the database's text, the cause kept.
func wantOutOfRange(t *testing.T, what string, err error) {
	t.Helper()
	var le *ledger.Error
	if !errors.As(err, &le) || le.Code != ledger.CodeInvalidAmount {
		t.Fatalf("%s: %#v, want invalid_amount", what, err)
	}
	if !strings.Contains(le.Message, "amount or balance is out of range") {
		t.Errorf("%s: message %q does not say an amount or balance is out of range", what, le.Message)
	}
	for _, leak := range []string{"numeric field overflow", "precision", "10^20", "()"} {
		if strings.Contains(le.Message, leak) {
			t.Errorf("%s: message %q passes on the database's text (%q)", what, le.Message, leak)
		}
	}
	if le.Details != nil {
		t.Errorf("%s: details %s, want none", what, le.Details)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22003" {
		t.Errorf("%s: the cause (for the log) is lost: %v", what, errors.Unwrap(err))
	}
	if got := ledger.HTTPStatus(le.Code); got != 400 {
		t.Errorf("%s: HTTP %d, want 400", what, got)
	}
}

// TestFromDBNumericOutOfRange: SQLSTATE 22003 (numeric_value_out_of_range), which the posting and
// hold functions no longer let a balance reach but which stays possible elsewhere, is answered
// invalid_amount with a fixed message, not invalid_request "the request breaks a rule of the
// ledger ()".
func TestFromDBNumericOutOfRange(t *testing.T) {
	wantOutOfRange(t, "constructed", ledger.FromDB(&pgconn.PgError{Code: "22003", Severity: "ERROR",
		Message: "numeric field overflow", Detail: "A field with precision 38, scale 18 must round to an absolute value less than 10^20."}))

	// The real thing, from the database.
	d := pgtest.New(t)
	var v string
	err := d.Pool.QueryRow(context.Background(), `SELECT ($1::numeric + 0.01)::numeric(38,18)::text`, "99999999999999999999.99").Scan(&v)
	wantOutOfRange(t, "from PostgreSQL", ledger.FromDB(err))
}

// TestOverflowThroughTheGoPaths: the black-box tester's reproduction through PostBatch and
// CreateHold: with maxUSD reserved on U (balance 0), another hold or entry out of U would take its
// available_balance to -10^20. Each is rejected on its own with invalid_amount naming U's
// available_balance; the good entry of a non-atomic batch is posted.
func TestOverflowThroughTheGoPaths(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	db := d.Pool
	if _, err := ledger.CreateLedger(ctx, db, "system:test", "OTHER"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, a := range []ledger.AccountInput{
		{ID: "U", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "V", CurrencyCode: "USD", AssetType: "fiat", OverdraftLimit: &unlimited},
		{ID: "X", CurrencyCode: "USD", AssetType: "fiat"},
		{ID: "Z", CurrencyCode: "USD", AssetType: "fiat"},
	} {
		if _, err := ledger.CreateAccount(ctx, db, "system:test", "OTHER", a); err != nil {
			t.Fatal(err)
		}
	}
	in := func(ref, debit, credit, amount string) ledger.EntryInput {
		return ledger.EntryInput{DebitAccountID: debit, CreditAccountID: credit, Amount: amount, CurrencyCode: "USD",
			AssetType: "fiat", TransactionType: "transfer", ReferenceID: ref}
	}
	holdIn := func(ref, amount string) ledger.HoldInput {
		return ledger.HoldInput{DebitAccountID: "U", CreditAccountID: "X", Amount: amount, CurrencyCode: "USD",
			AssetType: "fiat", TransactionType: "transfer", ReferenceID: ref}
	}
	wantOverflow := func(what, code, msg string, details json.RawMessage) {
		t.Helper()
		var det map[string]any
		_ = json.Unmarshal(details, &det)
		if code != ledger.CodeInvalidAmount || !strings.Contains(msg, `would take the available_balance of account "U" beyond NUMERIC(38,18)`) ||
			det["account_id"] != "U" || det["balance"] != "available_balance" || det["field"] != "amount" {
			t.Errorf("%s: %s %q %s, want invalid_amount naming U's available_balance", what, code, msg, details)
		}
	}

	r, err := ledger.CreateHold(ctx, db, "OTHER", holdIn("r1", "99999999999999999999.99"))
	wantCode(t, "hold r1", r, err, ledger.CodeCreated)
	r, err = ledger.CreateHold(ctx, db, "OTHER", holdIn("r2", "0.01"))
	if err != nil {
		t.Fatalf("hold r2: %v", err)
	}
	wantOverflow("hold r2", r.Code, r.Message, r.Details)

	rs, err := ledger.PostBatch(ctx, db, "OTHER", []ledger.EntryInput{in("r3", "U", "X", "0.01")}, false)
	if err != nil {
		t.Fatalf("entry r3: %v", err)
	}
	wantOverflow("entry r3", rs[0].Code, rs[0].Message, rs[0].Details)

	rs, err = ledger.PostBatch(ctx, db, "OTHER", []ledger.EntryInput{in("r6", "V", "Z", "1.00"), in("r7", "U", "X", "0.01")}, false)
	if err != nil {
		t.Fatalf("non-atomic batch: %v", err)
	}
	if rs[0].Code != ledger.CodeCreated {
		t.Errorf("r6: %s %s, want created", rs[0].Code, rs[0].Message)
	}
	wantOverflow("r7", rs[1].Code, rs[1].Message, rs[1].Details)
	if got := balances(t, db, "OTHER", "Z"); got[0] != "1.00" {
		t.Errorf("Z after the batch: %v, want balance 1.00", got)
	}
	if got := balances(t, db, "OTHER", "U"); got != [3]string{"0.00", "-99999999999999999999.99", "99999999999999999999.99"} {
		t.Errorf("U: %v", got)
	}
}

// TestFromDBConnectionLost (review of 2026-12-02: a backend killed under load answered 500
// internal for postings that had committed): a connection that breaks under a statement, and the
// server's crash or connection-exception SQLSTATEs, are unavailable (503: retry with the same
// reference_id), never internal.
func TestFromDBConnectionLost(t *testing.T) {
	for name, err := range map[string]error{
		"unexpected EOF":     fmt.Errorf("read: %w", io.ErrUnexpectedEOF),
		"connection reset":   &net.OpError{Op: "read", Net: "unix", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
		"crash shutdown":     &pgconn.PgError{Code: "57P02", Severity: "FATAL", Message: "terminating connection because of crash of another server process"},
		"connection failure": &pgconn.PgError{Code: "08006", Severity: "FATAL", Message: "connection failure"},
	} {
		if got := ledger.FromDB(err); ledger.CodeOf(got) != ledger.CodeUnavailable {
			t.Errorf("%s: %v, want unavailable", name, got)
		}
	}
	if got := ledger.FromDB(errors.New("something else")); ledger.CodeOf(got) != ledger.CodeInternal {
		t.Errorf("an unknown error: %v, want internal", got)
	}
}

// TestFromDBEntryKeyTakenTwice: a unique violation on an entry's own keys (its seq, its id) is
// the server's fault (a sequence set back by hand), not the client's reference: internal, with
// the cause kept for the log; the reference's own constraint stays reference_conflict.
func TestFromDBEntryKeyTakenTwice(t *testing.T) {
	for name, want := range map[string]string{
		"ledger_entries_pkey":                    ledger.CodeInternal,
		"ledger_entries_id_ledger_id_key":        ledger.CodeInternal,
		"ledger_entries_unique_ledger_reference": ledger.CodeReferenceConflict,
	} {
		err := ledger.FromDB(&pgconn.PgError{Code: "23505", Severity: "ERROR", Message: "duplicate key value violates unique constraint", ConstraintName: name})
		var pe *pgconn.PgError
		if ledger.CodeOf(err) != want || !errors.As(err, &pe) {
			t.Errorf("%s: %v (code %s), want %s with the cause kept", name, err, ledger.CodeOf(err), want)
		}
	}
}
