package oplog_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"dualledger/internal/oplog"
	"dualledger/internal/pg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The operator log's test vector (docs/hash-chain.md): the same bytes and hash in Go and in SQL.
func TestCanonicalVector(t *testing.T) {
	reason := "sanctions review"
	a := oplog.Action{Seq: 7, At: time.Date(2026, 12, 1, 9, 30, 0, 123456000, time.UTC), Actor: "cli:alice",
		DBLogin: "ops_login", DBRole: "dualledger_api", Action: "account.update", Target: "MASTER/SCB-1-USD",
		Before: json.RawMessage(`{"status": "active"}`), After: json.RawMessage(`{"status": "frozen"}`), Reason: &reason}
	prev := make([]byte, 32)
	wantCanonical := "DLO1\x1f7\x1f2026-12-01T09:30:00.123456Z\x1fcli:alice\x1fops_login\x1fdualledger_api\x1faccount.update\x1f" +
		"MASTER/SCB-1-USD\x1f{\"status\": \"active\"}\x1f{\"status\": \"frozen\"}\x1fsanctions review"
	if got := string(oplog.Canonical(a)); got != wantCanonical {
		t.Fatalf("canonical %q\nwant      %q", got, wantCanonical)
	}
	const wantHash = "9a3c70e06b7e0f8ca7993938cb57006cfd499968895a4d23b8a832974a26737b" // docs/hash-chain.md
	goHash := hex.EncodeToString(oplog.Hash(prev, a))

	d := pgtest.New(t)
	var sqlHash string
	err := d.Pool.QueryRow(context.Background(), `SELECT encode(sha256($1::bytea || operator_action_canonical(7,
		'2026-12-01T09:30:00.123456Z', 'cli:alice', 'ops_login', 'dualledger_api', 'account.update', 'MASTER/SCB-1-USD',
		'{"status":"active"}'::jsonb, '{"status":"frozen"}'::jsonb, 'sanctions review')), 'hex')`, prev).Scan(&sqlHash)
	if err != nil {
		t.Fatal(err)
	}
	if goHash != sqlHash {
		t.Fatalf("Go %s, SQL %s", goHash, sqlHash)
	}
	if goHash != wantHash {
		t.Fatalf("hash %s, the documented vector is %s", goHash, wantHash)
	}
}

// Every row the administrative functions write verifies in Go as it does in SQL.
func TestListedRowsVerify(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	for _, q := range []string{
		`SELECT create_ledger('cli:alice', 'L')`,
		`SELECT register_bank('cli:alice', 'SCB-1', 'Bank "one"')`,
		`SELECT create_account('key:key_aaaaaaaaaaaaaaaa', 'L', 'a/b@c', 'USD', 'fiat', 'SCB-1', 12.5, false, '{"x": [1, 2]}')`,
		`SELECT update_account('cli:bob', 'L', 'a/b@c', NULL, true, true, 'frozen', 'review ünïcode')`,
	} {
		if _, err := d.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rows, err := oplog.List(ctx, d.Pool, oplog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}
	prev := make([]byte, 32)
	for _, r := range rows {
		if r.PreviousHash != hex.EncodeToString(prev) {
			t.Fatalf("seq %d: previous_hash %s", r.Seq, r.PreviousHash)
		}
		h := oplog.Hash(prev, r)
		if hex.EncodeToString(h) != r.Hash {
			t.Fatalf("seq %d: Go hash %x, stored %s\ncanonical %q", r.Seq, h, r.Hash, oplog.Canonical(r))
		}
		prev = h
	}
	if rows[3].Reason == nil || *rows[3].Reason != "review ünïcode" || rows[2].Actor != "key:key_aaaaaaaaaaaaaaaa" {
		t.Errorf("rows: %+v", rows)
	}
	since, err := oplog.List(ctx, d.Pool, oplog.Filter{AfterSeq: 2, Limit: 1})
	if err != nil || len(since) != 1 || since[0].Seq != 3 {
		t.Errorf("after seq 2, limit 1: %+v %v", since, err)
	}
}
