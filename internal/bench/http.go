package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"dualledger/internal/ledger"
)

// HTTPConfig drives a running server (`dualledger serve`) through its real HTTP API with
// keep-alive connections: closed loop (Clients callers, each sending its next request when the
// previous one answered) or open loop (Rate requests per second on a fixed schedule, whatever the
// answers; latency counted from each request's intended send time, so a slow server cannot hide
// its queue by slowing the generator down).
type HTTPConfig struct {
	URL      string        // base URL, e.g. http://127.0.0.1:8080
	Token    string        // an admin key (the run creates its ledger and accounts)
	Clients  int           // closed loop: concurrent callers; open loop: most connections
	Rate     float64       // > 0: open loop at this many requests per second
	Duration time.Duration // how long to send
	Accounts int           // accounts of the spread distribution
	Dist     string        // Spread or Hot
}

// HTTPResult is one HTTP run.
type HTTPResult struct {
	Mode        string         `json:"mode"` // closed or open
	Dist        string         `json:"distribution"`
	Clients     int            `json:"clients"`
	OfferedPerS float64        `json:"offered_per_second,omitempty"`
	Sent        int64          `json:"sent"`
	Seconds     float64        `json:"seconds"`
	Statuses    map[string]int `json:"statuses"` // "201", "429", "error" ...
	CreatedPerS float64        `json:"created_per_second"`
	P50Ms       float64        `json:"p50_ms"` // of the created (admitted) postings
	P99Ms       float64        `json:"p99_ms"`
	P999Ms      float64        `json:"p999_ms"`
	ShedP99Ms   float64        `json:"shed_p99_ms,omitempty"` // of the 429 answers
	// Open loop only: the created postings' p50/p99 from the moment the request was written to
	// its connection to the answer (the server's and the database's share); the difference to
	// P50Ms/P99Ms is time spent in this generator waiting for a connection or a CPU.
	SentP50Ms  float64 `json:"sent_p50_ms,omitempty"`
	SentP99Ms  float64 `json:"sent_p99_ms,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
}

// RunHTTP sets up a fresh ledger through the API and runs one scenario.
func RunHTTP(ctx context.Context, cfg HTTPConfig) (HTTPResult, error) {
	if cfg.Clients < 1 {
		cfg.Clients = 32
	}
	if cfg.Accounts < 4 {
		cfg.Accounts = 1000
	}
	c := newHTTPClient(cfg.URL, cfg.Token, cfg.Clients)
	defer c.close()

	run := fmt.Sprintf("%x", time.Now().UnixNano())
	ledgerID := benchLedger + "-HTTP-" + run
	accounts, err := c.setup(ctx, ledgerID, cfg.Accounts)
	if err != nil {
		return HTTPResult{}, err
	}
	if cfg.Dist == Hot {
		accounts = accounts[:2]
	}

	res := HTTPResult{Mode: "closed", Dist: cfg.Dist, Clients: cfg.Clients, Statuses: map[string]int{}}
	var (
		mu       sync.Mutex
		created  []time.Duration
		sent     []time.Duration
		shed     []time.Duration
		seq      atomic.Int64
		firstErr atomic.Value
	)
	record := func(status int, took, fromSend time.Duration, err error) {
		key := fmt.Sprint(status)
		if err != nil {
			key = "error"
			firstErr.CompareAndSwap(nil, err.Error())
		}
		mu.Lock()
		res.Statuses[key]++
		switch status {
		case http.StatusCreated:
			created = append(created, took)
			sent = append(sent, fromSend)
		case http.StatusTooManyRequests:
			shed = append(shed, took)
		}
		mu.Unlock()
	}
	body := func(rng *rand.Rand) []byte {
		n := seq.Add(1)
		i := rng.IntN(len(accounts))
		j := (i + 1 + rng.IntN(len(accounts)-1)) % len(accounts)
		b, _ := json.Marshal(map[string]any{
			"debit_account_id": accounts[i], "credit_account_id": accounts[j], "amount": "1.00", "currency_code": "USD",
			"asset_type": "fiat", "transaction_type": "bench", "reference_id": fmt.Sprintf("h-%s-%d", run, n)})
		return b
	}
	path := "/v1/ledgers/" + ledgerID + "/entries"

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	if cfg.Rate <= 0 {
		for g := range cfg.Clients {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), uint64(start.UnixNano())))
				for runCtx.Err() == nil {
					t0 := time.Now()
					st, err := c.post(ctx, path, body(rng))
					record(st, time.Since(t0), time.Since(t0), err)
				}
			})
		}
	} else {
		res.Mode, res.OfferedPerS = "open", cfg.Rate
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		rng := rand.New(rand.NewPCG(1, uint64(start.UnixNano())))
		for i := 0; ; i++ {
			intended := start.Add(time.Duration(i) * interval)
			if d := time.Until(intended); d > 0 {
				select {
				case <-runCtx.Done():
				case <-time.After(d):
				}
			}
			if runCtx.Err() != nil {
				break
			}
			b := body(rng)
			wg.Go(func() {
				var wrote time.Time
				st, err := c.post(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
					WroteRequest: func(httptrace.WroteRequestInfo) { wrote = time.Now() },
				}), path, b)
				onWire := time.Duration(0)
				if !wrote.IsZero() {
					onWire = time.Since(wrote)
				}
				record(st, time.Since(intended), onWire, err) // from the intended send time
			})
		}
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Sent = seq.Load()
	res.CreatedPerS = float64(len(created)) / res.Seconds
	res.P50Ms, res.P99Ms, res.P999Ms = pct(created, 0.50), pct(created, 0.99), pct(created, 0.999)
	res.ShedP99Ms = pct(shed, 0.99)
	if res.Mode == "open" {
		res.SentP50Ms, res.SentP99Ms = pct(sent, 0.50), pct(sent, 0.99)
	}
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	return res, nil
}

func pct(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[min(int(float64(len(d))*q), len(d)-1)].Microseconds()) / 1000
}

type httpClient struct {
	base, token string
	hc          *http.Client
	raw         *rawConns // the postings of the closed-loop modes, for a plain http:// base (rawhttp.go)
}

// newHTTPClient keeps up to conns keep-alive connections to base.
func newHTTPClient(base, token string, conns int) *httpClient {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	base = strings.TrimRight(base, "/")
	return &httpClient{base: base, token: token, hc: &http.Client{Transport: tr, Timeout: time.Minute},
		raw: newRawConns(base, token, conns)}
}

// close closes the idle connections of both clients.
func (c *httpClient) close() {
	c.hc.CloseIdleConnections()
	if c.raw != nil {
		c.raw.close()
	}
}

// postEntries posts one entry (POST .../entries) or a batch (POST .../entries/batch, not atomic)
// and returns how many were rejected. The body is written by hand: the generator shares the
// machine with the server and the database, and encoding/json's reflection would be its largest
// cost. The bench's ids, amounts and references need no escaping.
func (c *httpClient) postEntries(ctx context.Context, ledgerID string, batch []ledger.EntryInput) (int, error) {
	path := "/v1/ledgers/" + ledgerID + "/entries"
	b := make([]byte, 0, 256*len(batch)+32)
	if len(batch) > 1 {
		path += "/batch"
		b = append(b, `{"entries":[`...)
	}
	for i, e := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"debit_account_id":"`...)
		b = append(b, e.DebitAccountID...)
		b = append(b, `","credit_account_id":"`...)
		b = append(b, e.CreditAccountID...)
		b = append(b, `","amount":"`...)
		b = append(b, e.Amount...)
		b = append(b, `","currency_code":"`...)
		b = append(b, e.CurrencyCode...)
		b = append(b, `","asset_type":"`...)
		b = append(b, e.AssetType...)
		b = append(b, `","transaction_type":"`...)
		b = append(b, e.TransactionType...)
		b = append(b, `","reference_id":"`...)
		b = append(b, e.ReferenceID...)
		b = append(b, `"}`...)
	}
	if len(batch) > 1 {
		b = append(b, `]}`...)
	}
	status, answer, err := c.postAll(ctx, path, b)
	if err != nil {
		return 0, err
	}
	switch {
	case len(batch) == 1 && status == http.StatusCreated:
		return 0, nil
	case len(batch) == 1 && status == http.StatusUnprocessableEntity:
		return 1, nil
	case len(batch) > 1 && status == http.StatusOK:
		var r struct {
			Rejected int `json:"rejected"`
		}
		if err := json.Unmarshal(answer, &r); err != nil {
			return 0, fmt.Errorf("POST %s: read the answer: %w", path, err)
		}
		return r.Rejected, nil
	}
	return 0, fmt.Errorf("POST %s: status %d: %s", path, status, answer[:min(len(answer), 512)])
}

// postAll POSTs body to path and returns the status and the whole answer, through the lean
// client when there is one.
func (c *httpClient) postAll(ctx context.Context, path string, body []byte) (int, []byte, error) {
	if c.raw != nil {
		return c.raw.post(ctx, path, body)
	}
	resp, err := c.send(ctx, path, body)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("POST %s: read the answer: %w", path, err)
	}
	return resp.StatusCode, answer, nil
}

// send POSTs body to path with the key; the caller reads and closes the answer.
func (c *httpClient) send(ctx context.Context, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	return c.hc.Do(req)
}

func (c *httpClient) post(ctx context.Context, path string, body []byte) (int, error) {
	resp, err := c.send(ctx, path, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // read to the end, so the connection is reused
	return resp.StatusCode, nil
}

// setup creates the run's ledger, an unlimited issuance account and n funded accounts through
// the API (the token must be an admin's: issuance has an unlimited overdraft).
func (c *httpClient) setup(ctx context.Context, ledgerID string, n int) ([]string, error) {
	must := func(path string, v any, want int) error {
		b, _ := json.Marshal(v)
		st, err := c.post(ctx, path, b)
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		if st != want {
			return fmt.Errorf("POST %s: status %d, want %d (is the token an admin key?)", path, st, want)
		}
		return nil
	}
	if err := must("/v1/ledgers", map[string]any{"id": ledgerID}, http.StatusCreated); err != nil {
		return nil, err
	}
	acct := "/v1/ledgers/" + ledgerID + "/accounts"
	if err := must(acct, map[string]any{"id": "issuance", "currency_code": "USD", "asset_type": "fiat", "overdraft_limit": "unlimited"}, http.StatusCreated); err != nil {
		return nil, err
	}
	ids := make([]string, n)
	var entries []any
	for i := range ids {
		ids[i] = fmt.Sprintf("h%05d", i)
		if err := must(acct, map[string]any{"id": ids[i], "currency_code": "USD", "asset_type": "fiat"}, http.StatusCreated); err != nil {
			return nil, err
		}
		entries = append(entries, map[string]any{"debit_account_id": "issuance", "credit_account_id": ids[i], "amount": "1000000000.00",
			"currency_code": "USD", "asset_type": "fiat", "transaction_type": "funding", "reference_id": "fund-" + ids[i]})
	}
	for len(entries) > 0 {
		k := min(len(entries), 1000)
		if err := must("/v1/ledgers/"+ledgerID+"/entries/batch", map[string]any{"atomic": true, "entries": entries[:k]}, http.StatusOK); err != nil {
			return nil, err
		}
		entries = entries[k:]
	}
	return ids, nil
}
