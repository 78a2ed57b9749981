package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"dualledger/internal/ledger"
)

// answers is a stand-in server for the generator's own tests: 201 for a single entry, 422 for
// reference "reject", 200 with {"rejected":1} (chunked, as the real server sends a large answer)
// for a batch, and it checks what it is sent.
func answers(t testing.TB, seen *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" ||
			r.ContentLength != int64(len(body)) || !strings.HasPrefix(string(body), "{") {
			t.Errorf("request %s %s %v: %q", r.Method, r.URL.Path, r.Header, body)
		}
		seen.Add(1)
		switch {
		case strings.HasSuffix(r.URL.Path, "/batch"):
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"rejected":1,"results":[`+strings.Repeat(`{"result":"created"},`, 200)+`{"result":"insufficient_funds"}]}`)
		case strings.Contains(string(body), `"reference_id":"reject"`):
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"error":{"code":"insufficient_funds"}}`)
		default:
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"result":"created","entry":{"id":"1"}}`)
		}
	}))
}

func entryFor(ref string) ledger.EntryInput {
	return ledger.EntryInput{DebitAccountID: "a", CreditAccountID: "b", Amount: "1.00", CurrencyCode: "USD",
		AssetType: "fiat", TransactionType: "t", ReferenceID: ref}
}

// The lean client and net/http's answer the same: created, rejected, a chunked batch answer, and
// an error status, over reused connections.
func TestRawClientAgreesWithNetHTTP(t *testing.T) {
	var seen atomic.Int64
	srv := answers(t, &seen)
	defer srv.Close()
	ctx := context.Background()
	raw := newHTTPClient(srv.URL, "tok", 2)
	std := newHTTPClient(srv.URL, "tok", 2)
	std.raw = nil
	if raw.raw == nil {
		t.Fatal("no lean client for a plain http URL")
	}
	defer raw.close()
	defer std.close()
	for _, c := range []struct {
		batch []ledger.EntryInput
		rej   int
	}{
		{[]ledger.EntryInput{entryFor("x1")}, 0},
		{[]ledger.EntryInput{entryFor("reject")}, 1},
		{[]ledger.EntryInput{entryFor("x2"), entryFor("x3")}, 1},
		{[]ledger.EntryInput{entryFor("x4")}, 0},
	} {
		for _, hc := range []*httpClient{raw, std} {
			got, err := hc.postEntries(ctx, "L", c.batch)
			if err != nil || got != c.rej {
				t.Errorf("raw=%v %d entries: rejected %d, %v; want %d", hc.raw != nil, len(c.batch), got, err, c.rej)
			}
		}
	}
	if n := seen.Load(); n != 8 {
		t.Errorf("server saw %d requests, want 8", n)
	}
	if newRawConns("https://example.com", "tok", 1) != nil || newRawConns("http://h:1/prefix", "tok", 1) != nil {
		t.Error("the lean client must leave https and path prefixes to net/http")
	}
}

// BenchmarkClient is the generator's own cost per single-entry POST against a trivial server:
// go test ./internal/bench -run '^$' -bench BenchmarkClient -benchmem
func BenchmarkClient(b *testing.B) {
	var seen atomic.Int64
	srv := answers(b, &seen)
	defer srv.Close()
	for _, lean := range []bool{false, true} {
		name := "net-http"
		if lean {
			name = "lean"
		}
		b.Run(name, func(b *testing.B) {
			hc := newHTTPClient(srv.URL, "tok", 1)
			if !lean {
				hc.raw = nil
			}
			defer hc.close()
			batch := []ledger.EntryInput{entryFor("r")}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := hc.postEntries(ctx, "L", batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
