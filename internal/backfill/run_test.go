package backfill_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dualledger/internal/backfill"
	"dualledger/internal/backfill/source"
	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// rows is an in-memory source; hook runs before row i is returned.
type rows struct {
	n, i int
	hook func(i int)
}

func (r *rows) Next(context.Context) (source.Record, error) {
	if r.i >= r.n {
		return source.Record{}, io.EOF
	}
	if r.hook != nil {
		r.hook(r.i)
	}
	r.i++
	f := map[string]string{"debit_account_id": "issuance", "credit_account_id": "a", "amount": "1.00", "currency_code": "USD",
		"transaction_type": "t", "reference_id": fmt.Sprintf("R-%05d", r.i)}
	raw, _ := json.Marshal(f)
	return source.Record{Pos: fmt.Sprint(r.i), Fields: f, Raw: raw}, nil
}
func (r *rows) Progress() (int64, int64) { return int64(r.i), int64(r.n) }
func (r *rows) Close() error             { return nil }

func setup(t *testing.T) *pgtest.DB {
	t.Helper()
	return setupLedger(t, pgtest.New(t))
}

// setupLedger creates MASTER with "issuance" (no overdraft limit) and "a" in d.
func setupLedger(t *testing.T, d *pgtest.DB) *pgtest.DB {
	t.Helper()
	ctx := context.Background()
	if _, err := ledger.CreateLedger(ctx, d.Pool, "system:test", "MASTER"); err != nil {
		t.Fatal(err)
	}
	unlimited := "unlimited"
	for _, a := range []ledger.AccountInput{{ID: "issuance", OverdraftLimit: &unlimited}, {ID: "a"}} {
		a.CurrencyCode, a.AssetType = "USD", "fiat"
		if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", a); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestRunSurvivesItsConnectionKilled: the server ends the run's session (the lock's and the
// batches') in the middle of the import, several times; the run takes its lock again, finds out
// whether the batch in flight committed, and ends with every row exactly once.
func TestRunSurvivesItsConnectionKilled(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	admin := d.Conn(t)
	killed := 0
	kill := func(i int) {
		if i == 250 || i == 620 || i == 1333 {
			// Only this test's database: the test cluster is shared with other packages' tests,
			// whose backfill runs have the same application_name.
			var n int
			if err := admin.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name LIKE 'dualledger backfill pid=%' AND datname = current_database()`).Scan(&n); err != nil {
				t.Error(err)
			}
			killed += n
		}
	}
	src := &rows{n: 2000, hook: kill}
	cfg := backfill.Config{SourceType: "csv", SourceID: "killed", Ledger: "MASTER", BatchSize: 100, CheckpointInterval: 5, MaxRetries: 3,
		SkipDuplicates: true, ValidateBalances: true, MaxErrors: -1, ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	open := func(context.Context, string) (source.Reader, error) { return src, nil }
	out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "killed", "MASTER"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Each time the run's lock session, and its second connection (two batches in flight) while
	// it has one.
	if killed < 3 || killed > 6 {
		t.Errorf("%d sessions of the run killed, want 3 to 6", killed)
	}
	cp := out.Checkpoint
	if cp.Status != backfill.StatusCompleted || cp.TotalProcessed != 2000 || cp.TotalSuccessful != 2000 || cp.Batches != 20 {
		t.Errorf("%+v", cp)
	}
	var n int
	var bal string
	if err := d.Pool.QueryRow(ctx, `SELECT count(*), (SELECT balance::text FROM bank_accounts WHERE id = 'a') FROM ledger_entries`).Scan(&n, &bal); err != nil {
		t.Fatal(err)
	}
	if n != 2000 || bal != "2000.000000000000000000" {
		t.Errorf("%d entries, balance %s", n, bal)
	}
}

// TestRunRefusesASecondRun: a source is run by one process at a time.
func TestRunRefusesASecondRun(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	cfg := backfill.Config{SourceType: "csv", SourceID: "twice", Ledger: "MASTER", BatchSize: 10, MaxErrors: -1,
		ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	tr := transform.New(nil, "csv", "twice", "MASTER")
	var second error
	src := &rows{n: 50, hook: func(i int) {
		if i == 20 {
			_, second = backfill.Run(ctx, d.Pool, func(context.Context, string) (source.Reader, error) { return &rows{n: 1}, nil }, tr, cfg)
		}
	}}
	if _, err := backfill.Run(ctx, d.Pool, func(context.Context, string) (source.Reader, error) { return src, nil }, tr, cfg); err != nil {
		t.Fatal(err)
	}
	if second == nil || !isLocked(second) {
		t.Errorf("second run: %v", second)
	}
}

func isLocked(err error) bool {
	for e := err; e != nil; {
		if e == backfill.ErrLocked {
			return true
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		e = u.Unwrap()
	}
	return false
}

// TestRunAuditFindsABalanceThatDrifted: a balance changed behind the posting function's back
// (as the owner, guard triggers off) in the middle of a run is found by the next periodic audit;
// the run stops FAILED and says which account.
func TestRunAuditFindsABalanceThatDrifted(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	admin := d.Conn(t)
	src := &rows{n: 1000, hook: func(i int) {
		if i == 650 {
			// The source is read up to three batches ahead of the one committing (two batches in
			// flight and one read ahead), so row 650 is read after the first periodic audit (batch
			// 2), which gives "a" its base: the drift is a change since a base, as the audit sees
			// it. The tamper takes the ledger head first, as every change of a balance does, so
			// that it is not a concurrent update that the posting's own UPDATE (from the balance
			// it read under the head) would undo.
			if _, err := admin.Exec(ctx, `SELECT 1 FROM ledgers WHERE id = 'MASTER' FOR UPDATE;
				ALTER TABLE bank_accounts DISABLE TRIGGER USER;
				UPDATE bank_accounts SET balance = balance + 1, available_balance = available_balance + 1 WHERE ledger_id = 'MASTER' AND id = 'a';
				ALTER TABLE bank_accounts ENABLE TRIGGER USER`); err != nil {
				t.Error(err)
			}
		}
	}}
	cfg := backfill.Config{SourceType: "csv", SourceID: "drift", Ledger: "MASTER", BatchSize: 100, CheckpointInterval: 2,
		SkipDuplicates: true, ValidateBalances: true, MaxErrors: -1, ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	out, err := backfill.Run(ctx, d.Pool, func(context.Context, string) (source.Reader, error) { return src, nil },
		transform.New(nil, "csv", "drift", "MASTER"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.BalanceProblems) == 0 || out.Checkpoint.Status != backfill.StatusFailed || out.Checkpoint.TotalProcessed >= 1000 {
		t.Fatalf("%+v", out)
	}
	if !strings.Contains(out.BalanceProblems[0], "MASTER/a") {
		t.Errorf("%v", out.BalanceProblems)
	}
}

// TestSeedMonitoringQueries: the seed's monitoring queries run unchanged, as the reporting role,
// and see a run that is in progress, one that stalled, and the generated references.
func TestSeedMonitoringQueries(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	cfg := backfill.Config{SourceType: "csv", SourceID: "mon", Ledger: "MASTER", BatchSize: 10, MaxErrors: -1,
		ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	ro := d.PoolAs(t, "dualledger_readonly")
	var progress, stalled, completion int
	src := &rows{n: 30, hook: func(i int) {
		if i != 15 {
			return
		}
		// The seed's queries, verbatim (BACKFILL_STRATEGY, "Monitoring Queries").
		if err := ro.QueryRow(ctx, `SELECT count(*) FROM (
SELECT
source_id,
source_type,
status,
total_processed,
total_successful,
total_failed,
last_checkpoint_at,
NOW() - last_checkpoint_at as time_since_last_checkpoint
FROM ledger_backfill_checkpoints
WHERE status = 'IN_PROGRESS') q`).Scan(&progress); err != nil {
			t.Error(err)
		}
		if err := ro.QueryRow(ctx, `SELECT count(*) FROM (
SELECT *
FROM ledger_backfill_checkpoints
WHERE status = 'IN_PROGRESS'
AND last_checkpoint_at < NOW() - INTERVAL '1 hour') q`).Scan(&stalled); err != nil {
			t.Error(err)
		}
	}}
	if _, err := backfill.Run(ctx, d.Pool, func(context.Context, string) (source.Reader, error) { return src, nil },
		transform.New(nil, "csv", "mon", "MASTER"), cfg); err != nil {
		t.Fatal(err)
	}
	if err := ro.QueryRow(ctx, `SELECT count(*) FROM (
SELECT
COUNT(*) as total_entries,
MIN(timestamp_utc) as earliest,
MAX(timestamp_utc) as latest
FROM ledger_entries
WHERE reference_id LIKE 'BACKFILL-%') q`).Scan(&completion); err != nil {
		t.Fatal(err)
	}
	if progress != 1 || stalled != 0 || completion != 1 {
		t.Errorf("in progress %d, stalled %d, completion rows %d", progress, stalled, completion)
	}
}

// TestRunPlansAgainstTheGrowingLedger: the run's session plans the posting function's statements
// on its first batch, when a new database's entries table is empty. Before migration 015 an empty
// table made the planner indifferent between the reference index and an account index (led by
// ledger_id too) for the look-up of each reference, and a run that kept that plan read about n²/2
// entries (12.5 million for 5,000 rows). Since 015 and the statements' own forms (db/plans_test.go)
// the plans made on an empty table are the right ones; the run also plans again after batches 1,
// 2, 4, 8, ... (DISCARD PLANS), for whatever other statement a tiny table could mislead. With
// autovacuum off for the table (nothing else invalidates the plans), everything the run reads
// through the table's indexes, its audits included, must stay far below n²/2.
func TestRunPlansAgainstTheGrowingLedger(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	if _, err := d.Pool.Exec(ctx, `ALTER TABLE ledger_entries SET (autovacuum_enabled = off)`); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	cfg := backfill.Config{SourceType: "csv", SourceID: "growing", Ledger: "MASTER", BatchSize: 100, CheckpointInterval: 10,
		MaxErrors: -1, ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl")}
	open := func(context.Context, string) (source.Reader, error) { return &rows{n: n}, nil }
	out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "growing", "MASTER"), cfg)
	if err != nil || out.Checkpoint.TotalSuccessful != n {
		t.Fatalf("%v %+v", err, out.Checkpoint)
	}
	d.Pool.Reset() // the run's backend exits, and its statistics with it
	var read int64
	if err := d.Pool.QueryRow(ctx, `SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes
		WHERE relname = 'ledger_entries'`).Scan(&read); err != nil {
		t.Fatal(err)
	}
	if read > n*n/8 {
		t.Errorf("the indexes of ledger_entries read %d entries while %d were imported: the run kept plans made for an empty table", read, n)
	}
}

// funcSource is an in-memory source whose row i (1-based) is row(i).
type funcSource struct {
	n, i int
	row  func(i int) map[string]string
}

func (s *funcSource) Next(context.Context) (source.Record, error) {
	if s.i >= s.n {
		return source.Record{}, io.EOF
	}
	s.i++
	f := s.row(s.i)
	raw, _ := json.Marshal(f)
	return source.Record{Pos: fmt.Sprint(s.i), Fields: f, Raw: raw}, nil
}
func (s *funcSource) Progress() (int64, int64) { return int64(s.i), int64(s.n) }
func (s *funcSource) Close() error             { return nil }

// TestRunKeepsOrderWhenABatchGetsAhead: batches go two at a time (the next one posted while the
// one before it walks), and odd batches are held back before they begin, so that the batch after
// them takes the ledger's head lock first. Every even batch moves out of account "a" (no
// overdraft) exactly what the odd batch before it moved in: posted out of order, each of its rows
// would be refused. The run must roll the early batch back, post it after its predecessor, and
// end with every row created once.
func TestRunKeepsOrderWhenABatchGetsAhead(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "b", CurrencyCode: "USD", AssetType: "fiat"}); err != nil {
		t.Fatal(err)
	}
	const batch, batches = 50, 8
	src := &funcSource{n: batch * batches, row: func(i int) map[string]string {
		from, to := "issuance", "a"
		if ((i-1)/batch)%2 == 1 {
			from, to = "a", "b"
		}
		return map[string]string{"debit_account_id": from, "credit_account_id": to, "amount": "1.00", "currency_code": "USD",
			"transaction_type": "t", "reference_id": fmt.Sprintf("O-%05d", i)}
	}}
	var logs strings.Builder
	var mu sync.Mutex
	cfg := backfill.Config{SourceType: "csv", SourceID: "order", Ledger: "MASTER", BatchSize: batch, CheckpointInterval: 3, MaxRetries: 1,
		SkipDuplicates: true, ValidateBalances: true, MaxErrors: -1, ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl"),
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	backfill.SetBeforePost(&cfg, func(pos string) {
		// pos is the batch's last row: odd batches wait, so that the even one after them gets ahead.
		if n, _ := strconv.Atoi(pos); (n/batch)%2 == 1 {
			time.Sleep(300 * time.Millisecond)
		}
	})
	open := func(context.Context, string) (source.Reader, error) { return src, nil }
	out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "order", "MASTER"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cp := out.Checkpoint
	if cp.Status != backfill.StatusCompleted || cp.TotalProcessed != batch*batches || cp.TotalSuccessful != batch*batches || cp.TotalFailed != 0 || cp.Batches != batches {
		t.Errorf("checkpoint %+v", cp)
	}
	var n, ordered int
	var a, b string
	if err := d.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE substr(reference_id, 3)::int = seq),
		(SELECT balance::text FROM bank_accounts WHERE ledger_id = 'MASTER' AND id = 'a'),
		(SELECT balance::text FROM bank_accounts WHERE ledger_id = 'MASTER' AND id = 'b') FROM ledger_entries WHERE ledger_id = 'MASTER'`).Scan(&n, &ordered, &a, &b); err != nil {
		t.Fatal(err)
	}
	if n != batch*batches || ordered != n || a != "0.000000000000000000" || b != fmt.Sprintf("%d.000000000000000000", batch*batches/2) {
		t.Errorf("%d entries, %d in source order, balance of a %s, of b %s", n, ordered, a, b)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "before the batch before it") {
		t.Errorf("no batch got ahead (the test did not test the race):\n%s", logs.String())
	}
}

// lockedWriter serialises writes from the run's goroutines.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
