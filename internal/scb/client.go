package scb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds what we read of an SCB's answer: a page of 1,000 entries fits easily.
const maxBody = 8 << 20

// NewTransport returns the http.Transport to share between the clients of all SCBs: bounded
// connection set-up times, keep-alive, and enough idle connections per host for the worker's
// per-SCB concurrency. The per-request timeout is the Client's, not the transport's.
func NewTransport() *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		MaxConnsPerHost:       128, // a safety net; the worker limits concurrency per SCB itself
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Client talks to one SCB. It is safe for concurrent use.
type Client struct {
	// cfg has no APIKey: the key lives behind a pointer, which fmt prints as an address, so
	// even %#v of a struct holding a Client cannot show it.
	cfg  Config
	key  *string
	base string // BaseURL without a trailing slash
	http *http.Client
	now  func() time.Time // for Retry-After dates
}

// NewClient returns a client for cfg using transport (nil: a new NewTransport()). Pass one
// transport to the clients of all SCBs to share connections.
func NewClient(cfg Config, transport http.RoundTripper) (*Client, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if transport == nil {
		transport = NewTransport()
	}
	key := cfg.APIKey
	cfg.APIKey = ""
	return &Client{
		cfg:  cfg,
		key:  &key,
		base: strings.TrimRight(cfg.BaseURL, "/"),
		http: &http.Client{
			Transport: transport,
			// A redirect is a misconfigured URL; following it would re-send the entry (and, to
			// the same host, the key) somewhere we were not told about.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: time.Now,
	}, nil
}

// NewClients returns a client per config, all sharing transport (nil: one new NewTransport()).
func NewClients(cfgs map[string]Config, transport http.RoundTripper) (map[string]*Client, error) {
	if transport == nil {
		transport = NewTransport()
	}
	out := make(map[string]*Client, len(cfgs))
	for id, c := range cfgs {
		cl, err := NewClient(c, transport)
		if err != nil {
			return nil, err
		}
		out[id] = cl
	}
	return out, nil
}

// ID is the SCB's id.
func (c *Client) ID() string { return c.cfg.ID }

// String describes the client without its key.
func (c *Client) String() string {
	cfg := c.cfg
	cfg.APIKey = *c.key // Config.String shows only whether a key is set
	return "scb.Client for " + cfg.String()
}

// GoString is String, for %#v.
func (c *Client) GoString() string { return c.String() }

// Response is a successful answer of the SCB.
type Response struct {
	StatusCode int
	SCBEntryID string
	Status     string        // StatusAccepted, StatusPosted or StatusFinal
	RetryAfter time.Duration // Retry-After of the answer if any (a hint for the next poll)
	Replayed   bool          // POST: the SCB answered from its idempotency store (header Idempotent-Replayed)
	Entry      *EntryView    // Get: the SCB's view of the entry
}

// Post delivers e (POST /v1/entries) under the Idempotency-Key e.IdempotencyKey(). Any error is
// a *DeliveryError; retrying the same e is always safe.
func (c *Client) Post(ctx context.Context, e Entry) (Response, error) {
	if e.LedgerID == "" || e.ReferenceID == "" {
		return Response{}, &DeliveryError{SCB: c.cfg.ID, Op: "POST", Class: ClassClient, Reason: "POST to " + c.cfg.ID + ": entry without ledger_id or reference_id: no idempotency key"}
	}
	body, err := e.Body()
	if err != nil {
		return Response{}, &DeliveryError{SCB: c.cfg.ID, Op: "POST", Class: ClassClient, Reason: "POST to " + c.cfg.ID + ": " + c.excerpt(err.Error(), 240), cause: err}
	}
	res, err := c.do(ctx, "POST", http.MethodPost, "/v1/entries", body, e.IdempotencyKey())
	if err != nil {
		return Response{}, err
	}
	switch res.code {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted:
		var pr PostResult
		if err := json.Unmarshal(res.body, &pr); err != nil && res.code != http.StatusAccepted {
			return Response{}, c.badBody("POST", res, "an unreadable body")
		}
		if pr.Status == "" && res.code == http.StatusAccepted {
			pr.Status = StatusAccepted // 202 means accepted, whatever the body says or not
		}
		if !ValidStatus(pr.Status) {
			return Response{}, c.badBody("POST", res, c.unknownStatus(pr.Status))
		}
		return Response{StatusCode: res.code, SCBEntryID: pr.SCBEntryID, Status: pr.Status,
			RetryAfter: res.retryAfter, Replayed: res.header.Get("Idempotent-Replayed") == "true"}, nil
	}
	return Response{}, c.statusError("POST", res)
}

// Get asks for the SCB's view of the entry with referenceID (GET /v1/entries/{reference_id}).
// A 404 is a permanent *DeliveryError with NotFound set (errors.Is(err, ErrNotFound)). Reference
// ids are unique per ledger only: GetInLedger says which ledger's entry is meant.
func (c *Client) Get(ctx context.Context, referenceID string) (Response, error) {
	return c.GetInLedger(ctx, "", referenceID)
}

// GetInLedger is Get for the entry of ledgerID ("" = any ledger; the SCB answers 409 if several
// ledgers have referenceID).
func (c *Client) GetInLedger(ctx context.Context, ledgerID, referenceID string) (Response, error) {
	return c.getInLedger(ctx, ledgerID, referenceID, true)
}

// ReadInLedger is GetInLedger for a reader that compares the SCB's copy rather than acting on it
// (reconciliation): a status outside ACCEPTED, POSTED and FINAL is returned as the SCB gave it,
// as its list returns it, instead of refused. The worker, which moves a row by the status, must
// refuse it; a reconciliation that refused it failed on that one entry, run after run, and never
// reported it.
func (c *Client) ReadInLedger(ctx context.Context, ledgerID, referenceID string) (Response, error) {
	return c.getInLedger(ctx, ledgerID, referenceID, false)
}

func (c *Client) getInLedger(ctx context.Context, ledgerID, referenceID string, knownStatus bool) (Response, error) {
	if referenceID == "" {
		return Response{}, &DeliveryError{SCB: c.cfg.ID, Op: "GET", Class: ClassClient, Reason: "GET to " + c.cfg.ID + ": empty reference_id"}
	}
	path := "/v1/entries/" + url.PathEscape(referenceID)
	if ledgerID != "" {
		path += "?ledger_id=" + url.QueryEscape(ledgerID)
	}
	res, err := c.do(ctx, "GET", http.MethodGet, path, nil, "")
	if err != nil {
		return Response{}, err
	}
	switch res.code {
	case http.StatusOK:
		var v EntryView
		if err := json.Unmarshal(res.body, &v); err != nil {
			return Response{}, c.badBody("GET", res, "an unreadable body")
		}
		if knownStatus && !ValidStatus(v.Status) {
			return Response{}, c.badBody("GET", res, c.unknownStatus(v.Status))
		}
		return Response{StatusCode: res.code, SCBEntryID: v.SCBEntryID, Status: v.Status, RetryAfter: res.retryAfter, Entry: &v}, nil
	case http.StatusNotFound:
		de := c.statusError("GET", res)
		de.NotFound = true
		return Response{}, de
	}
	return Response{}, c.statusError("GET", res)
}

// List reads one page of the SCB's entries in its post order (GET /v1/entries?since=&limit=),
// starting after the cursor since ("" = from the first). limit <= 0 lets the SCB choose.
func (c *Client) List(ctx context.Context, since string, limit int) (Page, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/entries"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	res, err := c.do(ctx, "LIST", http.MethodGet, path, nil, "")
	if err != nil {
		return Page{}, err
	}
	if res.code != http.StatusOK {
		return Page{}, c.statusError("LIST", res)
	}
	var p Page
	if err := json.Unmarshal(res.body, &p); err != nil {
		return Page{}, c.badBody("LIST", res, c.listProblem(res.body))
	}
	return p, nil
}

// listProblem says what of an unreadable LIST body could not be read: the first entry that
// cannot, by its position and reference_id, and its first field that cannot, so that the SCB's
// operator is told what to fix (one bad entry stops every run until it is fixed).
func (c *Client) listProblem(body []byte) string {
	var raw struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if json.Unmarshal(body, &raw) != nil {
		return "an unreadable body"
	}
	for i, e := range raw.Entries {
		var v EntryView
		if json.Unmarshal(e, &v) == nil {
			continue
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(e, &fields) != nil {
			return fmt.Sprintf("an unreadable body: entry %d of the page is not a JSON object", i+1)
		}
		var ref string
		_ = json.Unmarshal(fields["reference_id"], &ref)
		for _, name := range slices.Sorted(maps.Keys(fields)) {
			one, _ := json.Marshal(map[string]json.RawMessage{name: fields[name]})
			if json.Unmarshal(one, &v) != nil {
				return fmt.Sprintf("an unreadable body: entry %d of the page (reference_id %q) has an unreadable %s: %s",
					i+1, c.excerpt(ref, 80), c.excerpt(name, 40), c.excerpt(string(fields[name]), 60))
			}
		}
		return fmt.Sprintf("an unreadable body: entry %d of the page (reference_id %q) cannot be read", i+1, c.excerpt(ref, 80))
	}
	return "an unreadable body"
}

// result is a response that arrived, read in full.
type result struct {
	code       int
	header     http.Header
	body       []byte
	retryAfter time.Duration
}

// do sends one request under the client's timeout and reads the whole answer. Errors are
// *DeliveryErrors; every HTTP status is returned as a result for the caller to interpret.
func (c *Client) do(ctx context.Context, op, method, path string, body []byte, idemKey string) (*result, error) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body) // gives the request a GetBody, so the transport may replay it
	}
	req, err := http.NewRequestWithContext(rctx, method, c.base+path, rd)
	if err != nil {
		return nil, &DeliveryError{SCB: c.cfg.ID, Op: op, Class: ClassClient, Reason: op + " to " + c.cfg.ID + ": cannot build the request: " + c.excerpt(err.Error(), 240)}
	}
	req.Header.Set("Authorization", "Bearer "+*c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dualledger-scb-client/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idemKey != "" {
		// With this header Go's transport may also resend the request by itself once, on a
		// reused connection that the server closed before answering: safe for the same reason.
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.networkError(ctx, op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		// The status line arrived but the body did not: whatever the status, we do not know
		// the answer, so it is worth asking again.
		de := c.networkError(ctx, op, err)
		de.StatusCode = resp.StatusCode
		return nil, de
	}
	return &result{code: resp.StatusCode, header: resp.Header, body: data,
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now())}, nil
}
