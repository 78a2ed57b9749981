package scb

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func testEntry(ref string) Entry {
	return Entry{
		ReferenceID: ref, LedgerID: "MASTER", DebitAccountID: "scb1-usd", CreditAccountID: "scb2-usd",
		Amount: "1000.00", CurrencyCode: "USD", AssetType: "fiat", TransactionType: "settlement",
		DBISEntryID: 42, BlockHash: strings.Repeat("ab", 32),
		TimestampUTC: time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC),
	}
}

func newTestClient(t *testing.T, url string, timeout time.Duration) *Client {
	t.Helper()
	c, err := NewClient(Config{ID: "SCB-1", BaseURL: url, APIKey: secret, Timeout: timeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fixed answers every request with one status, headers and body.
func fixed(code int, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func TestEntryBodyIsCanonical(t *testing.T) {
	e := testEntry("r1")
	a, err := e.Body()
	if err != nil {
		t.Fatal(err)
	}
	e.TimestampUTC = e.TimestampUTC.In(time.FixedZone("X", 5*3600)) // same instant, other zone
	b, _ := e.Body()
	if !bytes.Equal(a, b) {
		t.Fatalf("same entry, different bytes:\n%s\n%s", a, b)
	}
	want := `{"reference_id":"r1","ledger_id":"MASTER","debit_account_id":"scb1-usd","credit_account_id":"scb2-usd","amount":"1000.00","currency_code":"USD","asset_type":"fiat","transaction_type":"settlement","dbis_entry_id":42,"block_hash":"` + strings.Repeat("ab", 32) + `","timestamp_utc":"2025-03-01T12:00:00.123456Z"}`
	if string(a) != want {
		t.Fatalf("body\n%s\nwant\n%s", a, want)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Entry{Amount: "0.00", CurrencyCode: "usd", BlockHash: "XYZ"}
	if err := bad.Validate(); err == nil || strings.Count(err.Error(), "\n") < 8 {
		t.Fatalf("Validate must list every problem: %v", err)
	}
}

func TestPostSendsHeadersAndSameBody(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var hdrs []http.Header
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, hdrs = append(bodies, b), append(hdrs, r.Header.Clone())
		mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/prefix/v1/entries" {
			http.Error(w, "wrong path "+r.URL.Path, http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"scb_entry_id":"X-1","status":"POSTED"}`)
	}))
	defer ts.Close()
	c := newTestClient(t, ts.URL+"/prefix/", time.Second)
	e := testEntry("ref/with space")
	for range 2 {
		res, err := c.Post(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 201 || res.SCBEntryID != "X-1" || res.Status != StatusPosted {
			t.Fatalf("response %+v", res)
		}
	}
	want, _ := e.Body()
	for i, h := range hdrs {
		if got := h.Get("Authorization"); got != "Bearer "+secret {
			t.Errorf("Authorization = %q", got)
		}
		if got := h.Get("Idempotency-Key"); got != "MASTER:ref/with space" {
			t.Errorf("Idempotency-Key = %q", got)
		}
		if got := h.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q", got)
		}
		if !bytes.Equal(bodies[i], want) {
			t.Errorf("body %d = %s, want %s", i, bodies[i], want)
		}
	}
}

// TestStatusClassification is the table of docs/design.md §5 and docs/state-machine.md: what every answer of an SCB means.
func TestStatusClassification(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	type want struct {
		ok        bool
		status    string
		retryable bool
		notFound  bool
		after     time.Duration // 0 = none; -1 = about 90s (HTTP-date)
		reason    string
		class     string
	}
	cases := []struct {
		name string
		get  bool
		h    http.HandlerFunc
		want want
	}{
		{"201 ACCEPTED", false, fixed(201, `{"scb_entry_id":"1","status":"ACCEPTED"}`), want{ok: true, status: StatusAccepted}},
		{"201 FINAL", false, fixed(201, `{"scb_entry_id":"1","status":"FINAL"}`), want{ok: true, status: StatusFinal}},
		{"200 POSTED (replay)", false, fixed(200, `{"scb_entry_id":"1","status":"POSTED"}`), want{ok: true, status: StatusPosted}},
		{"202 no body", false, fixed(202, ``), want{ok: true, status: StatusAccepted}},
		{"202 with status", false, fixed(202, `{"scb_entry_id":"1","status":"POSTED"}`), want{ok: true, status: StatusPosted}},
		{"201 unknown status", false, fixed(201, `{"scb_entry_id":"1","status":"DONE"}`), want{retryable: true, class: ClassBadAnswer, reason: `201 Created from SCB-1 with an unknown status "DONE"`}},
		{"201 unparseable", false, fixed(201, `<html>ok</html>`), want{retryable: true, class: ClassBadAnswer, reason: "201 Created from SCB-1 with an unreadable body"}},
		{"204", false, fixed(204, ``), want{retryable: true, class: ClassBadAnswer, reason: "204 No Content"}},
		{"400", false, fixed(400, `{"error":{"code":"bad_json","message":"the body is not valid JSON"}}`), want{class: ClassBadRequest, reason: `400 Bad Request from SCB-1 (the SCB cannot read our request): the SCB said "the body is not valid JSON"`}},
		{"401", false, fixed(401, `{"error":{"code":"unauthorized","message":"invalid API key"}}`), want{class: ClassAuth, reason: `401 Unauthorized from SCB-1 (the SCB refused our API key): the SCB said "invalid API key"`}},
		{"403", false, fixed(403, `{"error":"forbidden"}`), want{class: ClassAuth, reason: `403 Forbidden from SCB-1 (the SCB refused our API key): the SCB said "forbidden"`}},
		{"404 on POST", false, fixed(404, `404 page not found`, "Content-Type", "text/plain"), want{class: ClassNotFound, reason: `404 Not Found from SCB-1 (no such endpoint: check the SCB's API URL): the SCB said "404 page not found"`}},
		{"409", false, fixed(409, ``), want{class: ClassConflict, reason: "409 Conflict from SCB-1 (the SCB holds a different entry under this Idempotency-Key)"}},
		{"422", false, fixed(422, `{"message":"amount must be positive"}`), want{class: ClassInvalidEntry, reason: `422 Unprocessable Entity from SCB-1 (the SCB refused the entry): the SCB said "amount must be positive"`}},
		{"413", false, fixed(413, ``), want{class: ClassBadRequest, reason: "413"}},
		{"301", false, fixed(301, ``, "Location", "http://elsewhere/"), want{class: ClassRedirect, reason: "redirect to http://elsewhere/; fix the SCB's API URL"}},
		{"408", false, fixed(408, ``), want{retryable: true, class: ClassTimeout, reason: "408"}},
		{"425", false, fixed(425, ``), want{retryable: true, class: ClassUnavailable, reason: "425"}},
		{"429 Retry-After seconds", false, fixed(429, ``, "Retry-After", "7"), want{retryable: true, class: ClassRateLimited, after: 7 * time.Second, reason: "429 Too Many Requests"}},
		{"503 Retry-After date", false, fixed(503, ``, "Retry-After", date), want{retryable: true, class: ClassUnavailable, after: -1, reason: "503"}},
		{"500", false, fixed(500, `{"error":{"code":"internal_error","message":"boom"}}`), want{retryable: true, class: ClassServerError, reason: `500 Internal Server Error from SCB-1 (the SCB failed): the SCB said "boom"`}},
		{"502", false, fixed(502, ``), want{retryable: true, class: ClassUnavailable, reason: "502"}},
		{"504", false, fixed(504, ``), want{retryable: true, class: ClassTimeout, reason: "504"}},
		{"GET 200", true, fixed(200, `{"scb_entry_id":"1","reference_id":"r","status":"FINAL","amount":"1.00"}`), want{ok: true, status: StatusFinal}},
		{"GET 404", true, fixed(404, `{"error":{"code":"not_found","message":"no entry r"}}`), want{notFound: true, class: ClassNotFound, reason: `404 Not Found from SCB-1 (the SCB does not know this entry): the SCB said "no entry r"`}},
		{"GET 200 unknown status", true, fixed(200, `{"status":"?"}`), want{retryable: true, class: ClassBadAnswer}},
		{"GET 503", true, fixed(503, ``, "Retry-After", "3"), want{retryable: true, class: ClassUnavailable, after: 3 * time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(tc.h)
			defer ts.Close()
			c := newTestClient(t, ts.URL, 2*time.Second)
			var res Response
			var err error
			if tc.get {
				res, err = c.GetInLedger(context.Background(), "MASTER", "r")
			} else {
				res, err = c.Post(context.Background(), testEntry("r"))
			}
			if tc.want.ok {
				if err != nil || res.Status != tc.want.status {
					t.Fatalf("got %+v, %v; want status %s", res, err, tc.want.status)
				}
				if tc.get && (res.Entry == nil || res.Entry.Amount != "1.00") {
					t.Fatalf("Get must return the SCB's view: %+v", res.Entry)
				}
				return
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("got %+v, %v; want a *DeliveryError", res, err)
			}
			if de.Retryable != tc.want.retryable || IsRetryable(err) != tc.want.retryable {
				t.Errorf("Retryable = %v, want %v (%v)", de.Retryable, tc.want.retryable, err)
			}
			if errors.Is(err, ErrNotFound) != tc.want.notFound || de.NotFound != tc.want.notFound {
				t.Errorf("NotFound = %v, want %v", de.NotFound, tc.want.notFound)
			}
			switch a := tc.want.after; {
			case a == -1 && (de.RetryAfter < 85*time.Second || de.RetryAfter > 95*time.Second):
				t.Errorf("RetryAfter = %v, want about 90s", de.RetryAfter)
			case a >= 0 && de.RetryAfter != a:
				t.Errorf("RetryAfter = %v, want %v", de.RetryAfter, a)
			}
			if !strings.Contains(de.Reason, tc.want.reason) {
				t.Errorf("Reason = %q, want it to contain %q", de.Reason, tc.want.reason)
			}
			if de.StatusCode == 0 {
				t.Errorf("StatusCode not set: %+v", de)
			}
			if de.Class != tc.want.class {
				t.Errorf("Class = %q, want %q", de.Class, tc.want.class)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                                  0,
		"5":                                 5 * time.Second,
		" 120 ":                             2 * time.Minute,
		"0":                                 0,
		"-3":                                0,
		"soon":                              0,
		"Wed, 01 Jan 2025 00:00:30 GMT":     30 * time.Second, // IMF-fixdate
		"Wednesday, 01-Jan-25 00:01:00 GMT": time.Minute,      // RFC 850
		"Tue, 31 Dec 2024 23:59:00 GMT":     0,                // in the past
		"999999999":                         24 * time.Hour,   // clamped
	}
	for in, want := range cases {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestListPage(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("since") != "7" || r.URL.Query().Get("limit") != "2" {
			http.Error(w, "bad query "+r.URL.RawQuery, 400)
			return
		}
		_, _ = io.WriteString(w, `{"entries":[{"scb_entry_id":"a","reference_id":"r8","status":"FINAL"},{"scb_entry_id":"b","reference_id":"r9","status":"POSTED"}],"next_since":"9","has_more":true}`)
	}))
	defer ts.Close()
	p, err := newTestClient(t, ts.URL, time.Second).List(context.Background(), "7", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != 2 || p.Entries[1].ReferenceID != "r9" || p.NextSince != "9" || !p.HasMore {
		t.Fatalf("page %+v", p)
	}
}

// TestNetworkFailures: no answer is retryable, and says briefly what happened.
func TestNetworkFailures(t *testing.T) {
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	}))
	defer hangup.Close()
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, _ := http.NewResponseController(w).Hijack()
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	defer reset.Close()
	halfBody := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(201)
		_, _ = io.WriteString(w, `{"scb_entry_id":`)
	}))
	defer halfBody.Close()

	// An answer that is not HTTP, quoting our key: the transport's error quotes the line.
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, _ := http.NewResponseController(w).Hijack()
		_, _ = buf.WriteString("HTTP/1.1 " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + " OK\r\n\r\n")
		_ = buf.Flush()
		conn.Close()
	}))
	defer garbage.Close()

	cases := []struct {
		name, url, reason, class string
		is                       error
	}{
		{"refused", deadURL, "POST to SCB-1: connection refused", ClassUnavailable, syscall.ECONNREFUSED},
		{"timeout", slow.URL, "POST to SCB-1: timeout after 200ms", ClassTimeout, context.DeadlineExceeded},
		{"closed", hangup.URL, "connection closed without a complete answer", ClassNetwork, io.EOF},
		{"reset", reset.URL, "connection reset", ClassNetwork, syscall.ECONNRESET},
		{"truncated body", halfBody.URL, "connection closed without a complete answer", ClassNetwork, io.ErrUnexpectedEOF},
		{"not HTTP", garbage.URL, `malformed HTTP status code "[redacted]"`, ClassNetwork, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, tc.url, 200*time.Millisecond)
			start := time.Now()
			_, err := c.Post(context.Background(), testEntry("r"))
			var de *DeliveryError
			if !errors.As(err, &de) || !de.Retryable {
				t.Fatalf("err = %v, want a retryable *DeliveryError", err)
			}
			if !strings.Contains(de.Reason, tc.reason) {
				t.Errorf("Reason = %q, want %q", de.Reason, tc.reason)
			}
			if de.Class != tc.class {
				t.Errorf("Class = %q, want %q", de.Class, tc.class)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			// Neither the reason nor any cause quotes what the SCB sent with our key in it.
			for e := error(de); e != nil; e = errors.Unwrap(e) {
				if strings.Contains(e.Error(), secret) {
					t.Errorf("the key is in %T: %v", e, e)
				}
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("took %v: the timeout was not applied", time.Since(start))
			}
		})
	}
}

func TestCallerCancellation(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // the server notices a gone client only once the body is read
		<-r.Context().Done()
	}))
	defer ts.Close()
	c := newTestClient(t, ts.URL, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Post(ctx, testEntry("r"))
	if !errors.Is(err, context.Canceled) || !IsRetryable(err) {
		t.Fatalf("err = %v, want retryable and context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
}

// TestKeyNeverInErrors makes requests fail in every way, with SCBs that echo the request
// (Authorization header included) back, and checks that the key is in no error text.
func TestKeyNeverInErrors(t *testing.T) {
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var b bytes.Buffer
			_ = r.Header.Write(&b)
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Location", "http://x/?k="+r.Header.Get("Authorization"))
			w.WriteHeader(code)
			fmt.Fprintf(&b, "\nyour key is %s", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			_, _ = w.Write(b.Bytes())
		}
	}
	jsonEcho := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"code":"x","message":"bad key %s"}}`, r.Header.Get("Authorization"))
		}
	}
	// Every form of the key the issue names, in a text body, a JSON message and a Location.
	formsEcho := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			forms := strings.Join(keyForms(key), " | ")
			w.Header().Set("Location", "https://x/?k="+url.QueryEscape(key)+"&b="+base64.StdEncoding.EncodeToString([]byte("Bearer "+key)))
			if code%2 == 0 {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(code)
				fmt.Fprintf(w, "<html><body>%s<br>%s</body></html>", html.EscapeString(key), forms)
				return
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "x", "message": forms}})
		}
	}
	var handlers []http.HandlerFunc
	for _, code := range []int{200, 201, 204, 301, 302, 400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503} {
		handlers = append(handlers, echo(code), jsonEcho(code), formsEcho(code))
	}
	var errs []error
	for _, h := range handlers {
		ts := httptest.NewServer(h)
		c := newTestClient(t, ts.URL, 300*time.Millisecond)
		_, err := c.Post(context.Background(), testEntry("r"))
		errs = append(errs, err)
		_, err = c.Get(context.Background(), "r")
		errs = append(errs, err)
		_, err = c.List(context.Background(), "", 10)
		errs = append(errs, err)
		ts.Close()
	}
	// Failures without an answer.
	c := newTestClient(t, "http://127.0.0.1:1", 300*time.Millisecond)
	_, err := c.Post(context.Background(), testEntry("r"))
	errs = append(errs, err)
	c = newTestClient(t, "https://unresolvable.invalid", 300*time.Millisecond)
	_, err = c.Get(context.Background(), "r")
	errs = append(errs, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Post(ctx, testEntry("r"))
	errs = append(errs, err)
	_, err = c.Post(context.Background(), Entry{})
	errs = append(errs, err)

	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		var de *DeliveryError
		if !errors.As(err, &de) {
			t.Fatalf("not a *DeliveryError: %v", err)
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err), de.Reason} {
			if strings.Contains(s, secret) || strings.Contains(strings.ToUpper(s), "TOPSECRET") {
				t.Errorf("the key leaked: %s", s)
			}
			for _, f := range keyForms(secret) {
				if containsFold(s, f) {
					t.Errorf("the key leaked as %q: %s", f, s)
				}
			}
		}
		if strings.ContainsAny(de.Reason, "\r\n") || len(de.Reason) > 600 {
			t.Errorf("reason is not one short line: %q", de.Reason)
		}
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("the key leaked in a cause: %s", e)
			}
		}
	}
	if n < len(errs)-6 { // the 2xx echo cases of Get may succeed or fail; most must fail
		t.Fatalf("only %d of %d calls failed", n, len(errs))
	}
}

// TestUnreadableListNamesTheEntry: one entry of a LIST page that cannot be read stops every
// reconciliation run until the SCB fixes it, so the error names the entry and the field.
func TestUnreadableListNamesTheEntry(t *testing.T) {
	ts := httptest.NewServer(fixed(200, `{"entries": [
		{"scb_entry_id": "1", "reference_id": "ok-1", "ledger_id": "L", "amount": "1.00", "status": "FINAL"},
		{"scb_entry_id": "2", "reference_id": "bad-2", "ledger_id": "L", "timestamp_utc": "yesterday", "status": "FINAL"}],
		"next_since": "2", "has_more": false}`))
	defer ts.Close()
	_, err := newTestClient(t, ts.URL, time.Second).List(context.Background(), "", 10)
	var de *DeliveryError
	if !errors.As(err, &de) || !de.Retryable {
		t.Fatalf("got %v, want a retryable *DeliveryError", err)
	}
	for _, want := range []string{"entry 2 of the page", `"bad-2"`, "timestamp_utc", "yesterday"} {
		if !strings.Contains(de.Reason, want) {
			t.Errorf("reason %q does not name %s", de.Reason, want)
		}
	}
}

// TestReadInLedgerReturnsAnyStatus: the worker's GetInLedger refuses a status outside the
// contract (it moves a row by the status); reconciliation's ReadInLedger returns the copy as the
// SCB gave it, to report it.
func TestReadInLedgerReturnsAnyStatus(t *testing.T) {
	ts := httptest.NewServer(fixed(200, `{"scb_entry_id":"7","status":"REVERSED","ledger_id":"L","reference_id":"r"}`))
	defer ts.Close()
	c := newTestClient(t, ts.URL, time.Second)
	if _, err := c.GetInLedger(context.Background(), "L", "r"); err == nil || !strings.Contains(err.Error(), `unknown status "REVERSED"`) {
		t.Errorf("GetInLedger: %v, want the unknown status refused", err)
	}
	res, err := c.ReadInLedger(context.Background(), "L", "r")
	if err != nil || res.Status != "REVERSED" || res.Entry == nil || res.Entry.Status != "REVERSED" || res.SCBEntryID != "7" {
		t.Errorf("ReadInLedger: %+v %v", res, err)
	}
}
