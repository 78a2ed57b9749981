package backfill_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"dualledger/internal/backfill"
	"dualledger/internal/backfill/source"
	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
)

// list is an in-memory source of the given rows, positions 1, 2, ...
type list struct {
	rows []map[string]string
	i    int
}

func (l *list) Next(context.Context) (source.Record, error) {
	if l.i >= len(l.rows) {
		return source.Record{}, io.EOF
	}
	f := l.rows[l.i]
	l.i++
	raw, _ := json.Marshal(f)
	return source.Record{Pos: fmt.Sprint(l.i), Fields: f, Raw: raw}, nil
}
func (l *list) Progress() (int64, int64) { return int64(l.i), int64(len(l.rows)) }
func (l *list) Close() error             { return nil }

// listOpener opens rows after a position, as a resumed run asks.
func listOpener(rows []map[string]string) backfill.Opener {
	return func(_ context.Context, after string) (source.Reader, error) {
		n := 0
		if after != "" {
			fmt.Sscan(after, &n)
		}
		return &list{rows: rows, i: n}, nil
	}
}

func payment(ref, from, to, typ string) map[string]string {
	return map[string]string{"debit_account_id": from, "credit_account_id": to, "amount": "1.00", "currency_code": "USD",
		"transaction_type": typ, "reference_id": ref}
}

// TestARowPostgreSQLCannotStoreIsOnlyThatRow: a row with a NUL byte in the middle of a batch is
// rejected into the report and the run completes with every other row posted. Before, the
// batch's statement failed on it (jsonb refuses \u0000), the checkpoint then failed on the
// aborted transaction, and every run of the source stopped FAILED at the same batch.
func TestARowPostgreSQLCannotStoreIsOnlyThatRow(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	var rows []map[string]string
	for i := 1; i <= 30; i++ {
		rows = append(rows, payment(fmt.Sprintf("N-%02d", i), "issuance", "a", "t"))
	}
	rows[12]["transaction_type"] = "t\x00t"
	rows[20]["metadata"] = `{"note":"\u0000"}`
	cfg := backfill.Config{SourceType: "csv", SourceID: "nul", Ledger: "MASTER", BatchSize: 10, MaxErrors: -1,
		ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	out, err := backfill.Run(ctx, d.Pool, listOpener(rows), transform.New(nil, "csv", "nul", "MASTER"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cp := out.Checkpoint
	if cp.Status != backfill.StatusCompleted || cp.TotalSuccessful != 28 || cp.TotalFailed != 2 {
		t.Errorf("%s: %d posted, %d rejected", cp.Status, cp.TotalSuccessful, cp.TotalFailed)
	}
}

// TestMaxErrorsCountsEveryRun: a source already over --max-errors stops before it posts, run
// after run; before, each run with the same limit posted one more batch before stopping again.
func TestMaxErrorsCountsEveryRun(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	var rows []map[string]string
	for i := 1; i <= 50; i++ {
		r := payment(fmt.Sprintf("M-%02d", i), "issuance", "a", "t")
		if i%5 == 0 {
			r["currency_code"] = "XYZ"
		}
		rows = append(rows, r)
	}
	cfg := backfill.Config{SourceType: "csv", SourceID: "mx", Ledger: "MASTER", BatchSize: 10, MaxErrors: 1,
		ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	tr := transform.New(nil, "csv", "mx", "MASTER")
	var posted int64
	for run := 1; run <= 3; run++ {
		out, err := backfill.Run(ctx, d.Pool, listOpener(rows), tr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !out.MaxErrorsExceeded || out.Checkpoint.Status != backfill.StatusFailed {
			t.Fatalf("run %d: %+v", run, out)
		}
		if run == 1 {
			posted = out.Checkpoint.TotalSuccessful
		} else if out.Checkpoint.TotalSuccessful != posted || out.ThisRun.Done != 0 {
			t.Errorf("run %d posted again: %d entries, %d before; read %d", run, out.Checkpoint.TotalSuccessful, posted, out.ThisRun.Done)
		}
	}
	var n int64
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE ledger_id = 'MASTER'`).Scan(&n); err != nil || n != posted {
		t.Errorf("%d entries (%v), want %d", n, err, posted)
	}
	// A higher limit goes on from the checkpoint.
	cfg.MaxErrors = 100
	out, err := backfill.Run(ctx, d.Pool, listOpener(rows), tr, cfg)
	if err != nil || out.Checkpoint.Status != backfill.StatusCompleted || out.Checkpoint.TotalSuccessful != 40 {
		t.Errorf("with a higher limit: %v %+v", err, out.Checkpoint)
	}
}

// TestVerifyFindsAnUnfinishedRollback: a rollback that FAILED (a reversal refused for want of
// funds) leaves entries of the run in force; verify says so (before, it printed the status and
// "verified: no problem found").
func TestVerifyFindsAnUnfinishedRollback(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "b", CurrencyCode: "USD", AssetType: "fiat"}); err != nil {
		t.Fatal(err)
	}
	rows := []map[string]string{payment("V-1", "issuance", "a", "t"), payment("V-2", "issuance", "a", "t"), payment("V-3", "issuance", "a", "t")}
	cfg := backfill.Config{SourceType: "csv", SourceID: "rb", Ledger: "MASTER", BatchSize: 10, MaxErrors: -1,
		ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	if _, err := backfill.Run(ctx, d.Pool, listOpener(rows), transform.New(nil, "csv", "rb", "MASTER"), cfg); err != nil {
		t.Fatal(err)
	}
	// "a" spends two of its three, so only one reversal can take its money back.
	if _, err := ledger.PostBatch(ctx, d.Pool, "MASTER", []ledger.EntryInput{{DebitAccountID: "a", CreditAccountID: "b", Amount: "2.00",
		CurrencyCode: "USD", AssetType: "fiat", TransactionType: "spend", ReferenceID: "spend-1"}}, true); err != nil {
		t.Fatal(err)
	}
	out, err := backfill.Rollback(ctx, d.Pool, "csv", "rb", "cli:test", "wrong file", 1, nil)
	if err != nil || out.Checkpoint.RollbackStatus == nil || *out.Checkpoint.RollbackStatus != "FAILED" {
		t.Fatalf("rollback: %v %+v", err, out.Checkpoint)
	}
	v, err := backfill.Verify(ctx, d.Pool, "csv", "rb", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() || !strings.Contains(strings.Join(v.Problems, "\n"), "the rollback is FAILED: 2 of the run's entries are not fully reversed") {
		t.Errorf("verify after a failed rollback: %q", v.Problems)
	}
}

// TestDatabaseKeyThatIsNotUnique: rows sharing a key were lost for good when the key was the
// last of a page (the next page asked for key > last); the reader now stops on the second row of
// a key, across a page boundary, inside a page, and for keys equal by their type but not as text.
func TestDatabaseKeyThatIsNotUnique(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, `CREATE TABLE src (id numeric, amount text);
		INSERT INTO src VALUES (1, 'a'), (2, 'b'), (2, 'c'), (3, 'd'), (4, 'e'), (5, 'f'), (5.0, 'g'), (6, 'h')`); err != nil {
		t.Fatal(err)
	}
	read := func(size int, after, where string) ([]string, error) {
		o := source.DatabaseOptions{Query: "SELECT * FROM src " + where, PageSize: size}
		db, err := source.OpenDatabase(ctx, d.ConnStr, o, after)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		var got []string
		for {
			r, err := db.Next(ctx)
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			got = append(got, r.Fields["amount"])
		}
	}
	for _, c := range []struct {
		size         int
		after, where string
		want         string
	}{
		{2, "", "", `"2" is the key of more than one row`},                      // 1,2 | 2,... : across a page
		{3, "", "", `"2" is the key of more than one row`},                      // inside a page
		{10, "", "WHERE id > 2", `is the key of more than one row`},             // 5 and 5.0
		{2, "", "WHERE id NOT IN (2)", `"5.0" is the key of more than one row`}, // 3,4 | 5,5.0
	} {
		_, err := read(c.size, c.after, c.where)
		if !errors.Is(err, source.ErrUnusable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("page %d %s: %v, want %q", c.size, c.where, err, c.want)
		}
	}
	// A NULL key anywhere (the pages after the first, key >= last, never read it) stops the run
	// before its first row, from the start and on resume.
	if _, err := d.Pool.Exec(ctx, `CREATE TABLE src_null AS SELECT g AS id, 'x' AS amount FROM generate_series(1, 10) g UNION ALL SELECT NULL, 'lost'`); err != nil {
		t.Fatal(err)
	}
	for _, after := range []string{"", "5"} {
		_, err := source.OpenDatabase(ctx, d.ConnStr, source.DatabaseOptions{Table: "src_null", PageSize: 3}, after)
		if !errors.Is(err, source.ErrUnusable) || !strings.Contains(err.Error(), "NULL key") {
			t.Errorf("a NULL key, after %q: %v", after, err)
		}
	}
	if db, err := source.OpenDatabase(ctx, d.ConnStr, source.DatabaseOptions{Table: "src"}, ""); err != nil || strings.Join(db.Header(), ",") != "amount" {
		t.Errorf("the columns but the key: %v %v", db, err)
	} else {
		db.Close()
	}
	// A unique key reads every row once, from the start and after a position, page after page.
	for _, size := range []int{1, 2, 3, 100} {
		got, err := read(size, "", "WHERE id NOT IN (2, 5)")
		if err != nil || strings.Join(got, "") != "adeh" {
			t.Errorf("page %d: %q %v", size, got, err)
		}
		got, err = read(size, "3", "WHERE id NOT IN (2, 5)")
		if err != nil || strings.Join(got, "") != "eh" {
			t.Errorf("page %d after 3: %q %v", size, got, err)
		}
	}
}

// TestRollbackAgainKeepsTheFirst: running a completed rollback again reverses nothing twice and
// leaves the checkpoint's reason and completion time those of the rollback that did the work (the
// operator log records every run with its own reason).
func TestRollbackAgainKeepsTheFirst(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	rows := []map[string]string{payment("K-1", "issuance", "a", "t"), payment("K-2", "issuance", "a", "t")}
	cfg := backfill.Config{SourceType: "csv", SourceID: "rb2", Ledger: "MASTER", BatchSize: 10, MaxErrors: -1,
		ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	if _, err := backfill.Run(ctx, d.Pool, listOpener(rows), transform.New(nil, "csv", "rb2", "MASTER"), cfg); err != nil {
		t.Fatal(err)
	}
	first, err := backfill.Rollback(ctx, d.Pool, "csv", "rb2", "cli:test", "wrong file", 10, nil)
	if err != nil || first.Reversed != 2 {
		t.Fatalf("rollback: %v %+v", err, first)
	}
	again, err := backfill.Rollback(ctx, d.Pool, "csv", "rb2", "cli:test", "just checking", 10, nil)
	if err != nil || again.Reversed != 0 {
		t.Fatalf("again: %v %+v", err, again)
	}
	a, b := first.Checkpoint, again.Checkpoint
	if *b.RollbackStatus != "COMPLETED" || *b.RollbackReason != "wrong file" || !b.RollbackCompletedAt.Equal(*a.RollbackCompletedAt) || b.TotalReversed != 2 {
		t.Errorf("after a second rollback: %s %q %v (first %v) %d", *b.RollbackStatus, *b.RollbackReason, b.RollbackCompletedAt, a.RollbackCompletedAt, b.TotalReversed)
	}
	var acts int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM operator_actions WHERE action = 'backfill.rollback'`).Scan(&acts); err != nil || acts != 2 {
		t.Errorf("%d rollbacks in the operator log (%v), want 2", acts, err)
	}
}
