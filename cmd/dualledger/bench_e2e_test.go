package main

import (
	"encoding/json"
	"strings"
	"testing"

	"dualledger/internal/auth"
	"dualledger/internal/bench"
	"dualledger/internal/pg/pgtest"
)

// The bench's http modes drive a real server in process, on several ledgers, and leave no live
// key behind: every posting it counts was created, in the same run as the naive baseline.
func TestBenchHTTPModesPostThroughTheAPIAndRevokeTheirKey(t *testing.T) {
	d := pgtest.New(t)
	out, stderr, code := cli(t, d.ConnStr, "bench", "--modes", "naive,http,http-batch1000", "--clients", "2",
		"--distributions", "spread", "--ledgers", "2", "--accounts", "20", "--duration", "400ms", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	var results []bench.Result
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("bench --json: %v: %s", err, out)
	}
	if len(results) != 3 {
		t.Fatalf("want 3 scenarios, got %d: %s", len(results), out)
	}
	for _, r := range results {
		if r.Entries == 0 || r.Errors != 0 || r.Ledgers != 2 || r.P999Ms < r.P99Ms || r.P99Ms < r.P50Ms {
			t.Errorf("%s: %+v", r.Mode, r)
		}
	}
	// Rows written, not answers counted: the http modes' entries are in the bench ledgers.
	var posted int64
	if err := d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM ledger_entries
		WHERE ledger_id LIKE 'BENCH-%' AND transaction_type = 'bench'`).Scan(&posted); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, r := range results {
		if r.Mode != bench.ModeNaive {
			want += r.Entries
		}
	}
	if posted != want {
		t.Errorf("ledger holds %d bench entries, the http modes counted %d", posted, want)
	}
	keys, err := auth.List(t.Context(), d.Pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k.Name, "bench") && k.RevokedAt == nil {
			t.Errorf("the bench left key %s (%s) live", k.ID, k.Name)
		}
	}
	if _, stderr, code := cli(t, d.ConnStr, "bench", "--modes", "http", "--ledgers", "0"); code != 2 {
		t.Errorf("--ledgers 0: exit %d %s", code, stderr)
	}
}
