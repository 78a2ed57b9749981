// Package bench measures posting throughput and latency (`dualledger bench`, docs/benchmarks.md).
//
// Every scenario runs against the real database with synchronous_commit=on (durable). The naive
// baseline is a plain one-call-per-posting PL/pgSQL function (two balance UPDATEs and an INSERT,
// no hash chain, no batching), created in its own schema, so both are measured in the same run.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/ledger"
)

// Mode is how postings reach the database.
type Mode string

const (
	// ModeNaive: one call per transaction of the plain baseline function.
	ModeNaive Mode = "naive"
	// ModeSingle: one post_ledger_entry call per transaction (the seeds' function, docs/design.md §10.1; psql's path).
	ModeSingle Mode = "single"
	// ModeGroup: one posting per caller through the Go posting module's group commit (the API's path).
	ModeGroup Mode = "group"
	// ModeBatch100 and ModeBatch1000: post_ledger_entries with batches of 100 / 1000.
	ModeBatch100  Mode = "batch100"
	ModeBatch1000 Mode = "batch1000"
	// ModeHTTP: one POST /v1/ledgers/{l}/entries per posting through a real HTTP server over
	// loopback TCP with keep-alive connections (Config.HTTP): JSON, access control, admission
	// and group commit included, as a client sees them.
	ModeHTTP Mode = "http"
	// ModeHTTPBatch1000: POST /v1/ledgers/{l}/entries/batch with 1000 entries per request.
	ModeHTTPBatch1000 Mode = "http-batch1000"
)

// AllModes in report order.
var AllModes = []Mode{ModeNaive, ModeSingle, ModeGroup, ModeHTTP, ModeBatch100, ModeBatch1000, ModeHTTPBatch1000}

// perCall is how many postings one call of the mode carries.
func (m Mode) perCall() int {
	switch m {
	case ModeBatch100:
		return 100
	case ModeBatch1000, ModeHTTPBatch1000:
		return 1000
	}
	return 1
}

// overHTTP says whether the mode needs Config.HTTP.
func (m Mode) overHTTP() bool { return m == ModeHTTP || m == ModeHTTPBatch1000 }

// Spread and Hot are the account distributions.
const (
	Spread = "spread"
	Hot    = "hot"
)

// Config of a run.
type Config struct {
	Modes    []Mode
	Clients  []int
	Dists    []string
	Duration time.Duration // per scenario
	Accounts int           // accounts of the spread distribution
	// Ledgers is how many ledgers each scenario posts to at once (default 1): client c posts to
	// ledger c mod Ledgers, so ledgers scale only as far as their heads are independent.
	Ledgers  int
	HTTP     *HTTPTarget  // the server of the http modes (required by them)
	Progress func(Result) // called after each scenario (may be nil)
}

// HTTPTarget is a running server the http modes post to: its base URL and a token with the post
// scope on the bench ledgers (the caller creates both; `dualledger bench` starts one in process).
type HTTPTarget struct {
	URL   string
	Token string
}

// Result of one scenario.
type Result struct {
	Mode         Mode    `json:"mode"`
	Dist         string  `json:"distribution"`
	Clients      int     `json:"clients"`
	Ledgers      int     `json:"ledgers"`
	Entries      int64   `json:"entries"`
	Calls        int64   `json:"calls"`
	Seconds      float64 `json:"seconds"`
	EntriesPerS  float64 `json:"entries_per_second"`
	P50Ms        float64 `json:"p50_ms"` // latency of one call (one posting, or one batch)
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	Rejected     int64   `json:"rejected"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	AvgGroupSize float64 `json:"avg_group_size,omitempty"` // group commit: postings per transaction
}

const benchLedger = "BENCH"

// Run sets up the bench ledger (fresh each run) and runs every scenario.
func Run(ctx context.Context, pool *pgxpool.Pool, cfg Config) ([]Result, error) {
	if cfg.Accounts < 4 {
		cfg.Accounts = 1000
	}
	if cfg.Ledgers < 1 {
		cfg.Ledgers = 1
	}
	for _, m := range cfg.Modes {
		if m.overHTTP() && cfg.HTTP == nil {
			return nil, fmt.Errorf("mode %s needs a server (Config.HTTP)", m)
		}
	}
	var sc string
	if err := pool.QueryRow(ctx, "SHOW synchronous_commit").Scan(&sc); err != nil {
		return nil, fmt.Errorf("read synchronous_commit: %w", err)
	}
	if sc != "on" {
		return nil, fmt.Errorf("synchronous_commit is %q: the benchmark measures durable commits only", sc)
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	ledgers := make([]string, cfg.Ledgers)
	for i := range ledgers {
		ledgers[i] = fmt.Sprintf("%s-%s-%d", benchLedger, run, i+1)
		if err := setup(ctx, pool, ledgers[i], cfg.Accounts); err != nil {
			return nil, err
		}
	}
	var hc *httpClient
	if cfg.HTTP != nil {
		hc = newHTTPClient(cfg.HTTP.URL, cfg.HTTP.Token, slices.Max(cfg.Clients))
		defer hc.close()
	}
	var out []Result
	for _, dist := range cfg.Dists {
		for _, mode := range cfg.Modes {
			for _, clients := range cfg.Clients {
				if err := ctx.Err(); err != nil {
					return out, err
				}
				r, err := scenario(ctx, pool, hc, ledgers, run, mode, dist, clients, cfg)
				if err != nil {
					return out, fmt.Errorf("%s/%s/%d clients: %w", mode, dist, clients, err)
				}
				out = append(out, r)
				if cfg.Progress != nil {
					cfg.Progress(r)
				}
			}
		}
	}
	return out, nil
}

// setup creates the bench ledger with funded accounts, and the naive baseline's schema.
func setup(ctx context.Context, pool *pgxpool.Pool, ledgerID string, accounts int) error {
	if _, err := ledger.CreateLedger(ctx, pool, "system:bench", ledgerID); err != nil {
		return fmt.Errorf("create bench ledger: %w", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
		SELECT $1, 'acct-' || g, 'USD', 'fiat', 0 FROM generate_series(1, $2) g
		UNION ALL SELECT $1, 'issuance', 'USD', 'fiat', NULL`, ledgerID, accounts); err != nil {
		return fmt.Errorf("create bench accounts: %w", err)
	}
	// Fund every account so that transfers of 0.01 never run dry (the funds check still runs).
	var fund []ledger.EntryInput
	for i := 1; i <= accounts; i++ {
		fund = append(fund, ledger.EntryInput{DebitAccountID: "issuance", CreditAccountID: fmt.Sprintf("acct-%d", i),
			Amount: "1000000000.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "funding",
			ReferenceID: fmt.Sprintf("fund-%d", i)})
	}
	res, err := ledger.PostBatch(ctx, pool, ledgerID, fund, true)
	if err != nil {
		return fmt.Errorf("fund bench accounts: %w", err)
	}
	if !res[0].OK() {
		return fmt.Errorf("fund bench accounts: %s: %s", res[0].Code, res[0].Message)
	}
	_, err = pool.Exec(ctx, naiveSchema)
	if err != nil {
		return fmt.Errorf("create naive baseline: %w", err)
	}
	_, err = pool.Exec(ctx, `TRUNCATE bench_naive.entries, bench_naive.accounts`)
	if err == nil {
		_, err = pool.Exec(ctx, `INSERT INTO bench_naive.accounts (id, balance)
			SELECT 'acct-' || g, 1000000000 FROM generate_series(1, $1) g`, accounts)
	}
	if err != nil {
		return fmt.Errorf("fund naive baseline: %w", err)
	}
	// Statistics now rather than at autovacuum's next round. On a new database the posting
	// function's plans were made for an empty ledger_entries, where an account index looks as good
	// as the reference index for a reference's look-up (and reads the whole ledger per reference
	// once it has grown); ANALYZE invalidates them, so every scenario runs with the plans of a live
	// database, not only those after autovacuum's first round. Best effort: a role that does not
	// own the tables gets a warning, and autovacuum heals the plans as before.
	if _, err := pool.Exec(ctx, `ANALYZE ledger_entries, bank_accounts, bench_naive.entries, bench_naive.accounts`); err != nil {
		return fmt.Errorf("analyze the bench tables: %w", err)
	}
	return nil
}

// naiveSchema is the baseline: what a plain posting function looks like without batching,
// hash chain or ledger head. It keeps the balance check and the unique reference, so the
// comparison is about the design, not about skipped work.
const naiveSchema = `
CREATE SCHEMA IF NOT EXISTS bench_naive;
CREATE TABLE IF NOT EXISTS bench_naive.accounts (id text PRIMARY KEY, balance numeric(38,18) NOT NULL CHECK (balance >= 0));
CREATE TABLE IF NOT EXISTS bench_naive.entries (
    id bigserial PRIMARY KEY, debit text NOT NULL, credit text NOT NULL, amount numeric(38,18) NOT NULL CHECK (amount > 0),
    reference_id text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION bench_naive.post(p_debit text, p_credit text, p_amount numeric, p_ref text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    -- Both rows locked in id order first, as any correct posting function must (otherwise two
    -- opposite transfers deadlock).
    PERFORM 1 FROM bench_naive.accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE;
    UPDATE bench_naive.accounts SET balance = balance - p_amount WHERE id = p_debit AND balance >= p_amount;
    IF NOT FOUND THEN RAISE EXCEPTION 'insufficient funds'; END IF;
    UPDATE bench_naive.accounts SET balance = balance + p_amount WHERE id = p_credit;
    INSERT INTO bench_naive.entries (debit, credit, amount, reference_id) VALUES (p_debit, p_credit, p_amount, p_ref)
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;`

func scenario(ctx context.Context, pool *pgxpool.Pool, hc *httpClient, ledgers []string, run string, mode Mode, dist string, clients int, cfg Config) (Result, error) {
	res := Result{Mode: mode, Dist: dist, Clients: clients, Ledgers: len(ledgers)}
	per := mode.perCall()
	// Every mode but the SQL-level ones goes through the posting module, as the API does: group
	// commit for single postings, and the per-ledger admission limit for batches.
	var groups, grouped atomic.Int64
	poster := ledger.NewPoster(pool, ledger.PosterConfig{Observe: func(_ string, size int, _ time.Duration, _ error) {
		groups.Add(1)
		grouped.Add(int64(size))
	}})
	defer poster.Close()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		entries   atomic.Int64
		calls     atomic.Int64
		rejected  atomic.Int64
		errs      atomic.Int64
		firstErr  atomic.Value
	)
	deadline := time.Now().Add(cfg.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			var local []time.Duration
			n := 0
			for time.Now().Before(deadline) && ctx.Err() == nil {
				batch := make([]ledger.EntryInput, per)
				for i := range batch {
					n++
					d, cr := pick(rng, dist, cfg.Accounts)
					batch[i] = ledger.EntryInput{DebitAccountID: d, CreditAccountID: cr, Amount: "0.01", CurrencyCode: "USD",
						AssetType: "fiat", TransactionType: "bench", ReferenceID: fmt.Sprintf("%s-%s-%s-%d-%d", run, mode, dist, clients, c*100000000+n)}
				}
				t0 := time.Now()
				var (
					rej int
					err error
				)
				if mode.overHTTP() {
					rej, err = hc.postEntries(ctx, ledgers[c%len(ledgers)], batch)
				} else {
					rej, err = call(ctx, pool, poster, mode, ledgers[c%len(ledgers)], batch)
				}
				local = append(local, time.Since(t0))
				calls.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				rejected.Add(int64(rej))
				entries.Add(int64(len(batch) - rej))
			}
			mu.Lock()
			latencies = append(latencies, local...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.Seconds = elapsed.Seconds()
	res.Entries = entries.Load()
	res.Calls = calls.Load()
	res.Rejected = rejected.Load()
	res.Errors = errs.Load()
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	res.EntriesPerS = float64(res.Entries) / elapsed.Seconds()
	slices.Sort(latencies)
	res.P50Ms, res.P99Ms, res.P999Ms = pct(latencies, 0.50), pct(latencies, 0.99), pct(latencies, 0.999)
	if g := groups.Load(); g > 0 {
		res.AvgGroupSize = float64(grouped.Load()) / float64(g)
	}
	return res, nil
}

func pick(rng *rand.Rand, dist string, accounts int) (string, string) {
	if dist == Hot {
		if rng.IntN(2) == 0 {
			return "acct-1", "acct-2"
		}
		return "acct-2", "acct-1"
	}
	d := 1 + rng.IntN(accounts)
	c := 1 + rng.IntN(accounts-1)
	if c >= d {
		c++
	}
	return fmt.Sprintf("acct-%d", d), fmt.Sprintf("acct-%d", c)
}

// call posts one unit of work and returns how many postings were rejected.
func call(ctx context.Context, pool *pgxpool.Pool, poster *ledger.Poster, mode Mode, ledgerID string, batch []ledger.EntryInput) (int, error) {
	switch mode {
	case ModeNaive:
		e := batch[0]
		_, err := pool.Exec(ctx, `SELECT bench_naive.post($1, $2, $3::numeric, $4)`, e.DebitAccountID, e.CreditAccountID, e.Amount, e.ReferenceID)
		return 0, err
	case ModeSingle:
		e := batch[0]
		var id int64
		err := pool.QueryRow(ctx, `SELECT entry_id FROM post_ledger_entry($1, $2, $3, $4::numeric, $5, $6, $7, $8, NULL, NULL)`,
			ledgerID, e.DebitAccountID, e.CreditAccountID, e.Amount, e.CurrencyCode, e.AssetType, e.TransactionType, e.ReferenceID).Scan(&id)
		return 0, err
	case ModeGroup:
		r, err := poster.Post(ctx, ledgerID, batch[0])
		if err != nil {
			return 0, err
		}
		if !r.OK() {
			return 1, nil
		}
		return 0, nil
	default:
		res, err := poster.PostBatch(ctx, ledgerID, batch, false)
		if err != nil {
			return 0, err
		}
		rej := 0
		for _, r := range res {
			if !r.OK() {
				rej++
			}
		}
		return rej, nil
	}
}

// Table renders results as a Markdown table.
func Table(rs []Result) string {
	var b strings.Builder
	b.WriteString("| distribution | mode | ledgers | clients | entries/s | p50 ms | p99 ms | p999 ms | postings/txn | entries | errors |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	sorted := slices.Clone(rs)
	order := map[Mode]int{}
	for i, m := range AllModes {
		order[m] = i
	}
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Dist != sorted[j].Dist {
			return sorted[i].Dist > sorted[j].Dist // spread before hot
		}
		if sorted[i].Mode != sorted[j].Mode {
			return order[sorted[i].Mode] < order[sorted[j].Mode]
		}
		return sorted[i].Clients < sorted[j].Clients
	})
	for _, r := range sorted {
		per := strconv.Itoa(r.Mode.perCall())
		switch r.Mode {
		case ModeGroup:
			per = fmt.Sprintf("%.1f", r.AvgGroupSize)
		case ModeHTTP:
			per = "group commit" // in the server: its metrics say how large
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %s | %d | %d |\n",
			r.Dist, r.Mode, r.Ledgers, r.Clients, r.EntriesPerS, r.P50Ms, r.P99Ms, r.P999Ms, per, r.Entries, r.Errors)
	}
	return b.String()
}

// JSON renders results as JSON.
func JSON(rs []Result) ([]byte, error) { return json.MarshalIndent(rs, "", "  ") }
