package db_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sqlState returns the SQLSTATE of err, or "" if it is not a PostgreSQL error.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// setup creates a ledger with an issuance account, two accounts of bank SCB-1 / SCB-2 and one
// posting between them, so that the outbox has rows.
func setup(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO ledgers (id) VALUES ('MASTER')`,
		`INSERT INTO banks (id, name) VALUES ('SCB-1', 'One'), ('SCB-2', 'Two')`,
		`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit) VALUES ('MASTER', 'issuance', 'USD', 'fiat', NULL)`,
		`INSERT INTO bank_accounts (ledger_id, id, bank_id, currency_code, asset_type) VALUES ('MASTER', 'scb1', 'SCB-1', 'USD', 'fiat'), ('MASTER', 'scb2', 'SCB-2', 'USD', 'fiat')`,
		`SELECT * FROM post_ledger_entry('MASTER', 'issuance', 'scb1', 1000, 'USD', 'fiat', 'funding', 'fund-1', NULL, NULL)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

var outboxStates = []string{"QUEUED", "PROCESSING", "SENT", "ACKED", "FINALIZED", "FAILED"}

// legal is docs/design.md §4 (docs/state-machine.md), written out independently of the SQL.
var legal = map[[2]string]bool{
	{"QUEUED", "PROCESSING"}:    true,
	{"PROCESSING", "QUEUED"}:    true,
	{"PROCESSING", "SENT"}:      true,
	{"PROCESSING", "ACKED"}:     true,
	{"PROCESSING", "FINALIZED"}: true,
	{"PROCESSING", "FAILED"}:    true,
	{"SENT", "ACKED"}:           true,
	{"SENT", "FINALIZED"}:       true,
	{"ACKED", "FINALIZED"}:      true,
	{"FAILED", "QUEUED"}:        true,
}

// pathTo lists legal transitions from QUEUED to s.
var pathTo = map[string][]string{
	"QUEUED":     nil,
	"PROCESSING": {"PROCESSING"},
	"SENT":       {"PROCESSING", "SENT"},
	"ACKED":      {"PROCESSING", "ACKED"},
	"FINALIZED":  {"PROCESSING", "FINALIZED"},
	"FAILED":     {"PROCESSING", "FAILED"},
}

// setStatus moves row id to status with whatever else the table's constraints require (a lease
// exactly while PROCESSING, the SCB's FINAL answer with FINALIZED).
func setStatus(ctx context.Context, conn *pgx.Conn, id int64, status string) error {
	_, err := conn.Exec(ctx, `UPDATE dual_ledger_outbox
		SET status = $2,
		    locked_by = CASE WHEN $2 = 'PROCESSING' THEN 'test' END,
		    lease_expires_at = CASE WHEN $2 = 'PROCESSING' THEN now() + interval '1 minute' END,
		    failure_reason = CASE WHEN $2 = 'FAILED' THEN 'test' END,
		    next_poll_at = CASE WHEN $2 IN ('SENT', 'ACKED') THEN now() END,
		    scb_entry_id = CASE WHEN $2 = 'FINALIZED' THEN 'SCB-' || id ELSE scb_entry_id END,
		    scb_status = CASE WHEN $2 = 'FINALIZED' THEN 'FINAL' ELSE scb_status END
		WHERE id = $1`, id, status)
	return err
}

// TestOutboxStateMachine tries every (from, to) pair of statuses with plain SQL: the legal
// transitions of docs/design.md §4 are accepted and every other one is refused by the trigger.
func TestOutboxStateMachine(t *testing.T) {
	d := pgtest.New(t)
	conn := d.Conn(t)
	ctx := context.Background()
	setup(t, conn)

	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM dual_ledger_outbox WHERE status = 'QUEUED'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("outbox rows after a posting to SCB-1: %d, %v (want 1 QUEUED)", n, err)
	}
	ref := 0
	for _, from := range outboxStates {
		for _, to := range outboxStates {
			if from == to {
				continue
			}
			t.Run(from+"->"+to, func(t *testing.T) {
				// A fresh outbox row for each pair: post scb1 -> scb2 (two SCBs, two rows; use SCB-2's).
				ref++
				r := fmt.Sprintf("sm-%d", ref)
				if _, err := conn.Exec(ctx, `SELECT * FROM post_ledger_entry('MASTER', 'issuance', 'scb2', 1, 'USD', 'fiat', 't', $1, NULL, NULL)`, r); err != nil {
					t.Fatal(err)
				}
				var id int64
				if err := conn.QueryRow(ctx, `SELECT id FROM dual_ledger_outbox WHERE reference_id = $1 AND scb_id = 'SCB-2'`, r).Scan(&id); err != nil {
					t.Fatal(err)
				}
				for _, s := range pathTo[from] {
					if err := setStatus(ctx, conn, id, s); err != nil {
						t.Fatalf("reaching %s via %s: %v", from, s, err)
					}
				}
				err := setStatus(ctx, conn, id, to)
				if legal[[2]string{from, to}] {
					if err != nil {
						t.Fatalf("legal transition %s -> %s refused: %v", from, to, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("illegal transition %s -> %s accepted", from, to)
				}
				if sqlState(err) != "DL110" {
					t.Fatalf("illegal transition %s -> %s: want SQLSTATE DL110, got %v", from, to, err)
				}
			})
		}
	}

	t.Run("insert must be QUEUED", func(t *testing.T) {
		_, err := conn.Exec(ctx, `INSERT INTO dual_ledger_outbox (ledger_id, entry_id, entry_seq, reference_id, scb_id, status)
			SELECT ledger_id, id, seq, reference_id, 'SCB-1', 'SENT' FROM ledger_entries WHERE reference_id = 'fund-1'`)
		if sqlState(err) != "DL110" {
			t.Fatalf("insert as SENT: want DL110, got %v", err)
		}
	})
	t.Run("finalized is immutable", func(t *testing.T) {
		var id int64
		if err := conn.QueryRow(ctx, `SELECT id FROM dual_ledger_outbox WHERE status = 'FINALIZED' LIMIT 1`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		_, err := conn.Exec(ctx, `UPDATE dual_ledger_outbox SET last_error = 'x' WHERE id = $1`, id)
		if sqlState(err) != "DL110" {
			t.Fatalf("update of a FINALIZED row: want DL110, got %v", err)
		}
	})
	t.Run("delete refused", func(t *testing.T) {
		_, err := conn.Exec(ctx, `DELETE FROM dual_ledger_outbox`)
		if sqlState(err) != "DL100" {
			t.Fatalf("delete: want DL100, got %v", err)
		}
	})
	t.Run("lease only while PROCESSING", func(t *testing.T) {
		_, err := conn.Exec(ctx, `UPDATE dual_ledger_outbox SET status = 'PROCESSING' WHERE status = 'QUEUED'`)
		if sqlState(err) != "23514" {
			t.Fatalf("claim without a lease: want check_violation 23514, got %v", err)
		}
	})
}

// TestEntriesAppendOnly: UPDATE, DELETE and TRUNCATE of entries are refused, whoever asks, and a
// direct INSERT outside the posting functions is refused too.
func TestEntriesAppendOnly(t *testing.T) {
	d := pgtest.New(t)
	conn := d.Conn(t)
	ctx := context.Background()
	setup(t, conn)
	for _, q := range []string{
		`UPDATE ledger_entries SET amount = amount + 1`,
		`DELETE FROM ledger_entries`,
		`TRUNCATE ledger_entries CASCADE`,
	} {
		if _, err := conn.Exec(ctx, q); sqlState(err) != "DL100" {
			t.Errorf("%s: want DL100, got %v", q, err)
		}
	}
	_, err := conn.Exec(ctx, `INSERT INTO ledger_entries (ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code,
		asset_type, transaction_type, reference_id, timestamp_utc, previous_hash, block_hash, debit_balance_after, credit_balance_after)
		SELECT 'MASTER', 2, 'issuance', 'scb1', 5, 'USD', 'fiat', 't', 'hand', now(), block_hash, block_hash, 0, 0
		  FROM ledger_entries WHERE seq = 1`)
	if sqlState(err) != "DL101" {
		t.Errorf("direct INSERT: want DL101, got %v", err)
	}
	// Even with the posting flag forged, the chain check refuses a wrong entry.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT set_config('dualledger.posting', 'on', true)`); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO ledger_entries (ledger_id, seq, debit_account_id, credit_account_id, amount, currency_code,
		asset_type, transaction_type, reference_id, timestamp_utc, previous_hash, block_hash, debit_balance_after, credit_balance_after)
		SELECT 'MASTER', 2, 'issuance', 'scb1', 5, 'USD', 'fiat', 't', 'hand', now(), block_hash, block_hash, 0, 0
		  FROM ledger_entries WHERE seq = 1`)
	if sqlState(err) != "DL102" {
		t.Errorf("forged INSERT: want chain violation DL102, got %v", err)
	}
}

// TestBalanceConstraints: the CHECK constraints of migration 004 exist and hold even for a
// superuser who bypasses the posting functions' guard.
func TestBalanceConstraints(t *testing.T) {
	d := pgtest.New(t)
	conn := d.Conn(t)
	ctx := context.Background()
	setup(t, conn)

	var names []string
	rows, err := conn.Query(ctx, `SELECT constraint_name FROM information_schema.table_constraints
		WHERE table_name = 'bank_accounts' AND constraint_name LIKE '%balance%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bank_accounts_available_balance_consistent", "bank_accounts_available_balance_within_overdraft", "bank_accounts_reserved_balance_nonnegative"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("balance constraints %v, want %v", names, want)
	}

	cases := map[string]string{
		"available below -overdraft":    `UPDATE bank_accounts SET balance = -1, available_balance = -1 WHERE id = 'scb2'`,
		"available <> balance-reserved": `UPDATE bank_accounts SET available_balance = available_balance + 1 WHERE id = 'scb1'`,
		"reserved negative":             `UPDATE bank_accounts SET reserved_balance = -1, available_balance = balance + 1 WHERE id = 'scb1'`,
	}
	for name, q := range cases {
		t.Run(name, func(t *testing.T) {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, `SELECT set_config('dualledger.posting', 'on', true)`); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, q); sqlState(err) != "23514" {
				t.Fatalf("want check_violation, got %v", err)
			}
		})
	}
	t.Run("balance change outside posting refused", func(t *testing.T) {
		if _, err := conn.Exec(ctx, `UPDATE bank_accounts SET balance = balance WHERE id = 'scb1'`); sqlState(err) != "DL101" {
			t.Fatalf("want DL101, got %v", err)
		}
	})
	t.Run("account created with a balance refused", func(t *testing.T) {
		_, err := conn.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, balance, available_balance) VALUES ('MASTER', 'rich', 'USD', 'fiat', 100, 100)`)
		if sqlState(err) != "DL101" {
			t.Fatalf("want DL101, got %v", err)
		}
	})
	t.Run("account currency immutable", func(t *testing.T) {
		if _, err := conn.Exec(ctx, `UPDATE bank_accounts SET currency_code = 'EUR' WHERE id = 'scb1'`); sqlState(err) != "DL101" {
			t.Fatalf("want DL101, got %v", err)
		}
	})
	t.Run("account delete refused", func(t *testing.T) {
		if _, err := conn.Exec(ctx, `DELETE FROM bank_accounts WHERE id = 'scb2'`); sqlState(err) != "DL100" {
			t.Fatalf("want DL100, got %v", err)
		}
	})
	t.Run("ledger head moves only by posting", func(t *testing.T) {
		if _, err := conn.Exec(ctx, `UPDATE ledgers SET head_seq = 0`); sqlState(err) != "DL101" {
			t.Fatalf("want DL101, got %v", err)
		}
	})
}

// TestSeedVerification runs the seeds' own verification queries (docs/design.md §10.1) ("Verify Database Constraints").
func TestSeedVerification(t *testing.T) {
	d := pgtest.New(t)
	conn := d.Conn(t)
	ctx := context.Background()

	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.table_constraints
		WHERE constraint_name = 'ledger_entries_unique_ledger_reference'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("idempotency constraint: %d rows, %v", n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM dual_ledger_outbox`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("outbox count: %d, %v", n, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.routines WHERE routine_name = 'post_ledger_entry'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("posting function: %d, %v", n, err)
	}
	for _, q := range []string{
		`INSERT INTO ledgers (id) VALUES ('Test')`,
		`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit) VALUES ('Test', 'issuance', 'USD', 'fiat', NULL), ('Test', 'account1', 'USD', 'fiat', 0), ('Test', 'account2', 'USD', 'fiat', 0)`,
		`SELECT * FROM post_ledger_entry('Test', 'issuance', 'account1', 1000, 'USD', 'fiat', 'funding', 'fund', NULL, NULL)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var (
		entryID, seq int64
		hash         string
		dbal, cbal   string
	)
	err := conn.QueryRow(ctx, `SELECT entry_id, seq, block_hash, debit_balance::text, credit_balance::text FROM post_ledger_entry(
		'Test'::TEXT, 'account1'::TEXT, 'account2'::TEXT, 100::NUMERIC, 'USD'::TEXT, 'fiat'::TEXT,
		'Type_A'::TEXT, 'test-ref-456'::TEXT, NULL::NUMERIC, NULL::JSONB)`).Scan(&entryID, &seq, &hash, &dbal, &cbal)
	if err != nil {
		t.Fatal(err)
	}
	if seq != 2 || len(hash) != 64 || dbal != "900.000000000000000000" || cbal != "100.000000000000000000" {
		t.Fatalf("got entry %d seq %d hash %q balances %s %s", entryID, seq, hash, dbal, cbal)
	}
	// The same call again: a duplicate reference raises 23505, as the seeds' backfill expects.
	_, err = conn.Exec(ctx, `SELECT * FROM post_ledger_entry('Test', 'account1', 'account2', 100, 'USD', 'fiat', 'Type_A', 'test-ref-456', NULL, NULL)`)
	if sqlState(err) != "23505" || !strings.HasPrefix(err.(*pgconn.PgError).Message, "replayed:") {
		t.Fatalf("duplicate: want 23505 replayed, got %v", err)
	}
	_, err = conn.Exec(ctx, `SELECT * FROM post_ledger_entry('Test', 'account1', 'account2', 101, 'USD', 'fiat', 'Type_A', 'test-ref-456', NULL, NULL)`)
	if sqlState(err) != "23505" || !strings.HasPrefix(err.(*pgconn.PgError).Message, "reference_conflict:") {
		t.Fatalf("conflict: want 23505 reference_conflict, got %v", err)
	}
	// Every other rejection has its own SQLSTATE and the code first in the message.
	for q, want := range map[string]string{
		`SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', 1000, 'USD', 'fiat', 't', 'r1', NULL, NULL)`:  "DL001 insufficient_funds",
		`SELECT * FROM post_ledger_entry('Test', 'nobody', 'account1', 1, 'USD', 'fiat', 't', 'r2', NULL, NULL)`:       "DL002 unknown_account",
		`SELECT * FROM post_ledger_entry('Nope', 'account2', 'account1', 1, 'USD', 'fiat', 't', 'r3', NULL, NULL)`:     "DL003 unknown_ledger",
		`SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', 1, 'EUR', 'fiat', 't', 'r4', NULL, NULL)`:     "DL004 currency_mismatch",
		`SELECT * FROM post_ledger_entry('Test', 'account1', 'account1', 1, 'USD', 'fiat', 't', 'r5', NULL, NULL)`:     "DL005 same_account",
		`SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', 0.001, 'USD', 'fiat', 't', 'r6', NULL, NULL)`: "DL006 invalid_amount",
		`SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', -1, 'USD', 'fiat', 't', 'r7', NULL, NULL)`:    "DL006 invalid_amount",
		`SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', 1, 'XYZ', 'fiat', 't', 'r8', NULL, NULL)`:     "DL007 unknown_currency",
		`SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', 1, 'USD', 'crypto', 't', 'r9', NULL, NULL)`:   "DL008 invalid_asset_type",
	} {
		_, err := conn.Exec(ctx, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Errorf("%s: want %s, got %v", q, want, err)
			continue
		}
		parts := strings.SplitN(want, " ", 2)
		if pgErr.Code != parts[0] || !strings.HasPrefix(pgErr.Message, parts[1]+": ") {
			t.Errorf("%s: want %s, got %s %q", q, want, pgErr.Code, pgErr.Message)
		}
	}
}
