package backfill_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dualledger/internal/backfill"
	"dualledger/internal/backfill/source"
	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// dropConn forwards a COMMIT to the server, lets it commit, then breaks the socket: the client
// sees an error although the batch committed (a network failure during COMMIT).
type dropConn struct {
	net.Conn
	arm  *atomic.Int64
	dead atomic.Bool
}

func (c *dropConn) Read(b []byte) (int, error) {
	if c.dead.Load() {
		time.Sleep(300 * time.Millisecond) // the server commits meanwhile
		c.Conn.Close()
		return 0, &net.OpError{Op: "read", Net: "unix", Err: fmt.Errorf("connection reset (test)")}
	}
	return c.Conn.Read(b)
}

func (c *dropConn) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == 'Q' && bytes.Contains(b, []byte("commit\x00")) {
		if c.arm.Load() > 0 && c.arm.Add(-1) == 0 {
			c.dead.Store(true)
			return c.Conn.Write(b)
		}
	}
	return c.Conn.Write(b)
}

func commitDropDB(t *testing.T, arm *atomic.Int64) *pgtest.DB {
	d := pgtest.NewWithConfig(t, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &dropConn{Conn: c, arm: arm}, nil
		}
	})
	return setupLedger(t, d)
}

// TestRunCommitLostKeepsReportExact: the connection breaks while a batch's COMMIT is on its way
// back (the server has committed), at the k-th commit of the run, whichever of the run's two
// connections carries it. Every 10th row is rejected (unknown account), so each batch writes
// report lines. The run must learn from the checkpoint that the batch committed, keep its report
// lines, and end with a report that matches the checkpoint byte for byte. (An adversarial review
// found the report cut before the check, and a stretch of NUL bytes after it.)
func TestRunCommitLostKeepsReportExact(t *testing.T) {
	for _, k := range []int64{2, 3, 4, 5, 6, 7} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			var arm atomic.Int64
			d := commitDropDB(t, &arm)
			ctx := context.Background()
			src := &funcSource{n: 1000, row: func(i int) map[string]string {
				if i == 150 {
					arm.Store(k) // the k-th COMMIT from now on is cut
				}
				to := "a"
				if i%10 == 0 {
					to = "nosuch"
				}
				return map[string]string{"debit_account_id": "issuance", "credit_account_id": to, "amount": "1.00", "currency_code": "USD",
					"transaction_type": "t", "reference_id": fmt.Sprintf("R-%05d", i)}
			}}
			ep := filepath.Join(t.TempDir(), "e.jsonl")
			cfg := backfill.Config{SourceType: "csv", SourceID: "drop", Ledger: "MASTER", BatchSize: 50, CheckpointInterval: 3, MaxRetries: 3,
				SkipDuplicates: true, ValidateBalances: true, MaxErrors: -1, ErrorsPath: ep,
				Logger: slog.New(slog.DiscardHandler)}
			open := func(context.Context, string) (source.Reader, error) { return src, nil }
			out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "drop", "MASTER"), cfg)
			t.Logf("run: err=%v", err)
			cp := out.Checkpoint
			b, _ := os.ReadFile(ep)
			lines := 0
			rerr := backfill.ReadReport(ep, func(backfill.ReportLine) error { lines++; return nil })
			t.Logf("status %s processed %d ok %d failed %d batches %d offset %d; file %d bytes, NULs %d, %d lines, read err %v",
				cp.Status, cp.TotalProcessed, cp.TotalSuccessful, cp.TotalFailed, cp.Batches, cp.ErrorsOffset, len(b), bytes.Count(b, []byte{0}), lines, rerr)
			if int64(len(b)) != cp.ErrorsOffset || bytes.IndexByte(b, 0) >= 0 || rerr != nil || int64(lines) != cp.TotalFailed {
				t.Errorf("error report does not match the checkpoint")
			}
		})
	}
}

// TestRunDoesNotCommitAfterLosingItsLock: the head lock is held from outside while the run's
// second batch (on its second connection) waits for it; the run's lock session is killed, and a
// second run of the source starts and takes the lock. When the head is released, the first run's
// batch must not commit (it checks, under the checkpoint's row, that its lock session still holds
// the source's lock), and after a clean resume the report matches the checkpoint. (An adversarial
// review found the batch committed without the lock, and the report corrupted.)
func TestRunDoesNotCommitAfterLosingItsLock(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	admin := d.Conn(t)
	killer := d.Conn(t)
	rowf := func(i int) map[string]string {
		to := "a"
		if i%10 == 0 {
			to = "nosuch"
		}
		return map[string]string{"debit_account_id": "issuance", "credit_account_id": to, "amount": "1.00", "currency_code": "USD",
			"transaction_type": "t", "reference_id": fmt.Sprintf("R-%05d", i)}
	}
	open := func(_ context.Context, after string) (source.Reader, error) {
		start := 0
		if after != "" {
			start, _ = strconv.Atoi(after)
		}
		return &funcSource{n: 400, i: start, row: rowf}, nil
	}
	ep := filepath.Join(t.TempDir(), "e.jsonl")
	mk := func(name string) backfill.Config {
		return backfill.Config{SourceType: "csv", SourceID: "nolock", Ledger: "MASTER", BatchSize: 50, CheckpointInterval: 100, MaxRetries: 0,
			SkipDuplicates: true, ValidateBalances: false, MaxErrors: -1, ErrorsPath: ep,
			Logger: slog.New(slog.DiscardHandler).With("run", name)}
	}
	var held pgx.Tx
	locked := make(chan struct{})
	cfgA := mk("A")
	backfill.SetBeforePost(&cfgA, func(pos string) {
		if pos == "100" && held == nil {
			for {
				var b int64
				if err := admin.QueryRow(ctx, `SELECT batches FROM ledger_backfill_checkpoints WHERE source_id = 'nolock'`).Scan(&b); err == nil && b >= 1 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			tx, err := admin.Begin(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := tx.Exec(ctx, `SELECT 1 FROM ledgers WHERE id = 'MASTER' FOR UPDATE`); err != nil {
				t.Error(err)
			}
			held = tx
			close(locked)
		}
	})
	type res struct {
		out backfill.Outcome
		err error
	}
	aDone, bDone := make(chan res, 1), make(chan res, 1)
	go func() {
		out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "nolock", "MASTER"), cfgA)
		aDone <- res{out, err}
	}()
	<-locked
	time.Sleep(500 * time.Millisecond) // batch 2 (second conn) and batch 3 (lock conn) wait for the head
	var n int
	if err := killer.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name LIKE 'dualledger backfill pid=%' AND application_name NOT LIKE '%(ahead)' AND datname = current_database()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %d lock session(s)", n)
	time.Sleep(300 * time.Millisecond)
	go func() {
		out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "nolock", "MASTER"), mk("B"))
		bDone <- res{out, err}
	}()
	time.Sleep(700 * time.Millisecond) // B started, its first batch waits for the head
	if err := held.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := <-aDone, <-bDone
	t.Logf("A: err=%v cp=%+v", a.err, a.out.Checkpoint.Batches)
	t.Logf("B: err=%v cp=%+v", b.err, b.out.Checkpoint.Batches)
	// Resume to the end.
	c, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "nolock", "MASTER"), mk("C"))
	cp := c.Checkpoint
	bs, _ := os.ReadFile(ep)
	lines := 0
	_ = backfill.ReadReport(ep, func(backfill.ReportLine) error { lines++; return nil })
	t.Logf("C: err=%v cut=%d status %s processed %d failed %d offset %d; file %d bytes (NULs %d), %d lines", err, c.CutReportBytes, cp.Status, cp.TotalProcessed, cp.TotalFailed, cp.ErrorsOffset, len(bs), bytes.Count(bs, []byte{0}), lines)
	if int64(lines) != cp.TotalFailed || int64(len(bs)) != cp.ErrorsOffset {
		t.Errorf("error report does not match the checkpoint: %d lines for %d rejected rows", lines, cp.TotalFailed)
	}
}

// TestRunAuditsABatchAdoptedAfterALostCommit: the third batch's COMMIT is cut on its way back
// (the server committed it), and that batch is the only one that moves money into account "b".
// The run learns from the checkpoint that the batch committed; its accounts must then be audited
// like those of any batch. "b" is tampered with after that batch: the final audit must find it.
// (Before, an adopted batch's accounts were left out of the audits, and the run completed.)
func TestRunAuditsABatchAdoptedAfterALostCommit(t *testing.T) {
	var arm atomic.Int64
	arm.Store(3) // the third COMMIT of the run: batch 3 (no periodic audit commits before it)
	d := commitDropDB(t, &arm)
	ctx := context.Background()
	if _, err := ledger.CreateAccount(ctx, d.Pool, "system:test", "MASTER", ledger.AccountInput{ID: "b", CurrencyCode: "USD", AssetType: "fiat"}); err != nil {
		t.Fatal(err)
	}
	admin := d.Conn(t)
	var tampered atomic.Bool
	src := &funcSource{n: 400, row: func(i int) map[string]string {
		if i == 300 {
			// The reader is at most three batches ahead: by the time batch 3 has committed, it
			// waits here. Tamper with "b" once batch 3 is in the checkpoint.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				var b int64
				if err := admin.QueryRow(ctx, `SELECT batches FROM ledger_backfill_checkpoints WHERE source_id = 'adopt'`).Scan(&b); err == nil && b >= 3 {
					break
				}
			}
			if _, err := admin.Exec(ctx, `SELECT 1 FROM ledgers WHERE id = 'MASTER' FOR UPDATE;
				ALTER TABLE bank_accounts DISABLE TRIGGER USER;
				UPDATE bank_accounts SET balance = balance + 1, available_balance = available_balance + 1 WHERE ledger_id = 'MASTER' AND id = 'b';
				ALTER TABLE bank_accounts ENABLE TRIGGER USER`); err != nil {
				t.Error(err)
			}
			tampered.Store(true)
		}
		to := "a"
		if i > 100 && i <= 150 {
			to = "b"
		}
		return map[string]string{"debit_account_id": "issuance", "credit_account_id": to, "amount": "1.00", "currency_code": "USD",
			"transaction_type": "t", "reference_id": fmt.Sprintf("R-%05d", i)}
	}}
	cfg := backfill.Config{SourceType: "csv", SourceID: "adopt", Ledger: "MASTER", BatchSize: 50, CheckpointInterval: 1000, MaxRetries: 3,
		SkipDuplicates: true, ValidateBalances: true, MaxErrors: -1, ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl"),
		Logger: slog.New(slog.DiscardHandler)}
	out, err := backfill.Run(ctx, d.Pool, func(context.Context, string) (source.Reader, error) { return src, nil },
		transform.New(nil, "csv", "adopt", "MASTER"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if arm.Load() != 0 || !tampered.Load() {
		t.Fatalf("the test did not set up its case (arm %d, tampered %v)", arm.Load(), tampered.Load())
	}
	if out.Checkpoint.TotalSuccessful != 400 || out.Checkpoint.Status != backfill.StatusFailed ||
		len(out.BalanceProblems) != 1 || !strings.Contains(out.BalanceProblems[0], "MASTER/b") {
		t.Fatalf("want every row created once and the final audit failing on MASTER/b; got %s, %d created, problems %v",
			out.Checkpoint.Status, out.Checkpoint.TotalSuccessful, out.BalanceProblems)
	}
}

// TestRunRecordsFailedWhenItsLockConnectionBreaks: both of the run's sessions are ended just
// before a periodic audit, so the audit fails and the run ends. It must record FAILED (taking the
// source's lock again on a new connection), not leave the source IN_PROGRESS; the same command
// then resumes and completes with every row once.
func TestRunRecordsFailedWhenItsLockConnectionBreaks(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	killer := d.Conn(t)
	open := transfers(600, "R")
	mk := func() backfill.Config { return auditedConfig(t, "broken", 4) }
	cfg := mk()
	killed := 0
	backfill.SetBeforeAudit(&cfg, func() {
		if killed > 0 {
			return
		}
		// The sessions are gone before the audit uses one of them.
		killed = endBackfillSessions(t, ctx, killer)
	})
	_, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "broken", "MASTER"), cfg)
	if killed == 0 || err == nil {
		t.Fatalf("the test did not break the run (killed %d sessions, err %v)", killed, err)
	}
	cp, gerr := backfill.GetCheckpoint(ctx, d.Pool, "csv", "broken")
	if gerr != nil {
		t.Fatal(gerr)
	}
	t.Logf("run: %v; checkpoint %s after %d batches", err, cp.Status, cp.Batches)
	if cp.Status != backfill.StatusFailed || cp.ErrorMessage == nil || !strings.Contains(*cp.ErrorMessage, "audit") {
		t.Fatalf("want FAILED naming the audit, got %s (%v)", cp.Status, cp.ErrorMessage)
	}
	rcfg := mk()
	rcfg.ErrorsPath = *cp.ErrorsFile
	out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "broken", "MASTER"), rcfg)
	if err != nil || out.Checkpoint.Status != backfill.StatusCompleted || out.Checkpoint.TotalSuccessful != 600 {
		t.Fatalf("resume: %v, %s with %d created", err, out.Checkpoint.Status, out.Checkpoint.TotalSuccessful)
	}
	var n int
	if err := killer.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE ledger_id = 'MASTER'`).Scan(&n); err != nil || n != 600 {
		t.Fatalf("%d entries (%v), want 600", n, err)
	}
}

// TestResumedRunAuditsTheWholeSource (review of 2026-12-02): a run broken just before its final
// audit, after its last batch committed, left nothing for the resumed run to read, and the
// resumed run audited only the accounts it had touched itself: none. A balance changed behind
// the ledger's back in between then passed, and the run ended COMPLETED. The resumed run audits
// every account of the source's batches.
func TestResumedRunAuditsTheWholeSource(t *testing.T) {
	d := setup(t)
	ctx := context.Background()
	killer := d.Conn(t)
	open := transfers(200, "F")
	mk := func() backfill.Config { return auditedConfig(t, "final", 100) }
	cfg := mk()
	backfill.SetBeforeFinalAudit(&cfg, func() {
		// The run "dies" here: its sessions end, as a kill -9 of the process ends them.
		endBackfillSessions(t, ctx, killer)
	})
	if _, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "final", "MASTER"), cfg); err == nil {
		t.Fatal("the test did not break the run before its final audit")
	}
	cp, err := backfill.GetCheckpoint(ctx, d.Pool, "csv", "final")
	if err != nil || cp.TotalSuccessful != 200 || cp.Status == backfill.StatusCompleted {
		t.Fatalf("after the break: %+v %v", cp, err)
	}
	// Behind the ledger's back, between the two runs.
	for _, q := range []string{`SET session_replication_role = replica`,
		`UPDATE bank_accounts SET balance = balance + 1000, available_balance = available_balance + 1000 WHERE ledger_id = 'MASTER' AND id = 'a'`,
		`SET session_replication_role = origin`} {
		if _, err := killer.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rcfg := mk()
	rcfg.ErrorsPath = *cp.ErrorsFile
	out, err := backfill.Run(ctx, d.Pool, open, transform.New(nil, "csv", "final", "MASTER"), rcfg)
	if out.Checkpoint.Status != backfill.StatusFailed || len(out.BalanceProblems) == 0 || !strings.Contains(strings.Join(out.BalanceProblems, "; "), "MASTER/a") {
		t.Fatalf("the resumed run: %s, problems %v, err %v; want FAILED naming MASTER/a", out.Checkpoint.Status, out.BalanceProblems, err)
	}
}

// transfers opens a source of n rows, issuance -> a, 1.00 each, references prefix-00000...,
// resumable after a position.
func transfers(n int, prefix string) backfill.Opener {
	return func(_ context.Context, after string) (source.Reader, error) {
		start := 0
		if after != "" {
			start, _ = strconv.Atoi(after)
		}
		return &funcSource{n: n, i: start, row: func(i int) map[string]string {
			return map[string]string{"debit_account_id": "issuance", "credit_account_id": "a", "amount": "1.00", "currency_code": "USD",
				"transaction_type": "t", "reference_id": fmt.Sprintf("%s-%05d", prefix, i)}
		}}, nil
	}
}

// endBackfillSessions ends every session of a backfill run in the test's database, as a kill -9
// of its process would, and waits until they are gone; it returns how many it ended.
func endBackfillSessions(t *testing.T, ctx context.Context, killer *pgx.Conn) int {
	t.Helper()
	var killed int
	if err := killer.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name LIKE 'dualledger backfill pid=%' AND datname = current_database()`).Scan(&killed); err != nil {
		t.Error(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var n int
		if err := killer.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name LIKE 'dualledger backfill pid=%' AND datname = current_database()`).Scan(&n); err != nil || n == 0 {
			break
		}
	}
	return killed
}

// auditedConfig is the configuration of the fault tests that break a run around its audits:
// source csv/sourceID into MASTER, batches of 50, balances validated every interval batches.
func auditedConfig(t *testing.T, sourceID string, interval int) backfill.Config {
	return backfill.Config{SourceType: "csv", SourceID: sourceID, Ledger: "MASTER", BatchSize: 50, CheckpointInterval: interval, MaxRetries: 0,
		SkipDuplicates: true, ValidateBalances: true, MaxErrors: -1, ErrorsPath: filepath.Join(t.TempDir(), "e.jsonl"),
		Logger: slog.New(slog.DiscardHandler)}
}
