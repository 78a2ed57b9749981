package sim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"dualledger/internal/scb"
)

// TestTamperDurable: lose, alter, hold and invent change what GET and the list answer, survive a
// restart (they are lines of the log), and a lost entry posted again is a post, not a double post.
func TestTamperDurable(t *testing.T) {
	dir := t.TempDir()
	e := startSim(t, dir, Config{FinalAfter: 0})
	ctx := context.Background()
	for _, ref := range []string{"a", "b", "c", "d"} {
		if _, err := e.client.Post(ctx, entry(ref)); err != nil {
			t.Fatal(err)
		}
	}
	amount, hash := "999.00", ""
	steps := []Tamper{
		{Action: "lose", LedgerID: "MASTER", ReferenceID: "a"},
		{Action: "alter", LedgerID: "MASTER", ReferenceID: "b", Amount: &amount, BlockHash: &hash},
		{Action: "hold", LedgerID: "MASTER", ReferenceID: "c", Status: "POSTED"},
		{Action: "invent", Entry: func() *scb.Entry { x := entry("z"); return &x }()},
	}
	for _, s := range steps {
		if _, err := e.srv.Tamper(s); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
	}
	check := func(when string) {
		t.Helper()
		if _, err := e.client.GetInLedger(ctx, "MASTER", "a"); !errors.Is(err, scb.ErrNotFound) {
			t.Errorf("%s: lost a: %v", when, err)
		}
		b, err := e.client.GetInLedger(ctx, "MASTER", "b")
		if err != nil || b.Entry.Amount != "999.00" || b.Entry.BlockHash == entry("b").BlockHash || len(b.Entry.BlockHash) != 64 {
			t.Errorf("%s: altered b: %+v %v", when, b.Entry, err)
		}
		if c, err := e.client.GetInLedger(ctx, "MASTER", "c"); err != nil || c.Status != scb.StatusPosted {
			t.Errorf("%s: held c: %+v %v", when, c, err)
		}
		p, err := e.client.List(ctx, "", 100)
		if err != nil || len(p.Entries) != 4 || p.Entries[3].ReferenceID != "z" {
			t.Errorf("%s: list %+v %v", when, p, err)
		}
		if st := e.stats(); st.Keys != 3 || st.DuplicatePosts != 0 {
			t.Errorf("%s: stats %+v (the invented entry is not one of our posts)", when, st)
		}
	}
	check("before the restart")
	e.stop()
	e = startSim(t, dir, Config{FinalAfter: 0})
	check("after the restart")

	// The lost entry is delivered again: posted once more, not a duplicate post; and the replay of
	// the original body of the altered entry is still a replay.
	if res, err := e.client.Post(ctx, entry("a")); err != nil || res.Replayed {
		t.Fatalf("redelivery of a: %+v %v", res, err)
	}
	if res, err := e.client.Post(ctx, entry("b")); err != nil || !res.Replayed {
		t.Fatalf("replay of b: %+v %v", res, err)
	}
	if st := e.stats(); st.DuplicatePosts != 0 || st.Keys != 4 {
		t.Errorf("after the redelivery: %+v", st)
	}
	for _, bad := range []Tamper{{Action: "lose", LedgerID: "MASTER", ReferenceID: "nope"}, {Action: "explode", LedgerID: "MASTER", ReferenceID: "b"},
		{Action: "hold", LedgerID: "MASTER", ReferenceID: "b", Status: "FINAL"}, {Action: "alter", LedgerID: "MASTER", ReferenceID: "b"},
		{Action: "invent"}, {Action: "invent", Entry: func() *scb.Entry { x := entry("b"); return &x }()}} {
		if _, err := e.srv.Tamper(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if code, _, _ := e.raw(http.MethodPost, "/v1/admin/tamper", apiKey+"x", nil, []byte(`{"action":"lose"}`)); code != http.StatusUnauthorized {
		t.Errorf("tamper without the admin key: %d", code)
	}
	if code, _, b := e.raw(http.MethodPost, "/v1/admin/tamper", adminKey, nil, []byte(`{"action":"lose","ledger_id":"MASTER","reference_id":"c"}`)); code != 200 {
		t.Errorf("tamper over HTTP: %d %s", code, b)
	}
}

// FuzzTamperBody: any body of POST /v1/admin/tamper is answered 200, 400, 404 or 422, never a panic.
func FuzzTamperBody(f *testing.F) {
	for _, s := range []string{`{"action":"lose","ledger_id":"MASTER","reference_id":"a"}`, `{"action":"alter","ledger_id":"MASTER","reference_id":"a","amount":"1"}`,
		`{"action":"hold","ledger_id":"MASTER","reference_id":"a","status":"ACCEPTED"}`, `{"action":"invent","entry":{}}`, `{"x":1}`, `[`, ``} {
		f.Add([]byte(s))
	}
	e := startSim(f, f.TempDir(), Config{})
	if _, err := e.client.Post(context.Background(), entry("a")); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/admin/tamper", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200, 400, 404, 422:
		default:
			t.Fatalf("%s: %d %s", body, resp.StatusCode, b)
		}
	})
}
