package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

func batchCodes(r *resp) []string {
	var out []string
	for _, it := range r.get("results").([]any) {
		out = append(out, it.(map[string]any)["result"].(string))
	}
	return out
}

func TestBatchNonAtomic(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	e.mustStatus(e.post("L", entry("old", "issuance", "alice", "5")), http.StatusCreated)

	r := e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"entries": []any{
		entry("b1", "issuance", "alice", "10"),
		entry("old", "issuance", "alice", "5"),   // replay of an earlier posting
		entry("b2", "alice", "bob", "100"),       // more than alice has
		entry("b3", "ghost", "bob", "1"),         // unknown account
		entry("b1", "issuance", "alice", "10"),   // retry inside the batch
		entry("b4", "alice", "bob", "15"),        // alice has 15 by now
		entry("b1", "issuance", "alice", "10.5"), // same reference, other amount
	}}), http.StatusOK)
	want := []string{"created", "replayed", "insufficient_funds", "unknown_account", "replayed", "created", "reference_conflict"}
	if got := batchCodes(r); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("results %v, want %v", got, want)
	}
	if r.get("applied") != true || r.get("atomic") != false || r.get("created") != 2.0 || r.get("replayed") != 2.0 || r.get("rejected") != 3.0 {
		t.Errorf("summary: %s", r.raw)
	}
	for i, it := range r.get("results").([]any) {
		res := it.(map[string]any)
		if res["index"] != float64(i) {
			t.Errorf("result %d has index %v", i, res["index"])
		}
		_, hasEntry := res["entry"]
		_, hasErr := res["error"]
		if ok := want[i] == "created" || want[i] == "replayed"; hasEntry != ok || hasErr == ok {
			t.Errorf("result %d (%s): entry %v, error %v", i, want[i], hasEntry, hasErr)
		}
	}
	if id0, id4 := r.get("results", "0", "entry", "id"), r.get("results", "4", "entry", "id"); id0 != id4 {
		t.Errorf("in-batch replay has entry %v, original %v", id4, id0)
	}
	// Positions in details: batch_entry counts from 1 (as messages do), batch_index is the index
	// of the result it names in this array.
	if r.get("results", "6", "error", "details", "batch_entry") != 1.0 || r.get("results", "6", "error", "details", "batch_index") != 0.0 ||
		r.get("results", "6", "error", "details", "existing_entry_id") != r.get("results", "0", "entry", "id") {
		t.Errorf("in-batch conflict: %v", r.get("results", "6"))
	}
	if r.str("results", "2", "error", "code") != "insufficient_funds" || r.str("results", "2", "error", "details", "account_id") != "alice" {
		t.Errorf("insufficient_funds result: %v", r.get("results", "2"))
	}
	if b := e.balance("L", "bob"); b != "15.00" {
		t.Errorf("bob %s", b)
	}
	if s := e.headSeq("L"); s != 3 {
		t.Errorf("head_seq %v", s)
	}
}

func TestBatchAtomic(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()

	r := e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"atomic": true, "entries": []any{
		entry("a1", "issuance", "alice", "10"),
		entry("a2", "alice", "bob", "11"),
		entry("a3", "issuance", "bob", "1"),
	}}), http.StatusUnprocessableEntity)
	if got := strings.Join(batchCodes(r), ","); got != "not_applied,insufficient_funds,not_applied" {
		t.Errorf("results %s", got)
	}
	if r.errCode() != "batch_rejected" || r.get("error", "details", "index") != 1.0 || r.str("error", "details", "result") != "insufficient_funds" {
		t.Errorf("error: %v", r.get("error"))
	}
	// The message counts from 1, as the not_applied results do ("entry 2 of this atomic batch");
	// details.index is the 0-based array index.
	if msg := r.str("error", "message"); !strings.Contains(msg, "entry 2 was rejected") || !strings.Contains(r.str("results", "0", "error", "message"), "entry 2 of this atomic batch") {
		t.Errorf("positions: %q / %q", msg, r.str("results", "0", "error", "message"))
	}
	if r.get("results", "0", "error", "details", "rejected_entry") != 2.0 || r.get("results", "2", "error", "details", "rejected_index") != 1.0 {
		t.Errorf("not_applied positions: %v / %v", r.get("results", "0"), r.get("results", "2"))
	}
	if r.get("applied") != false || r.get("atomic") != true {
		t.Errorf("summary: %s", r.raw)
	}
	if s := e.headSeq("L"); s != 0 {
		t.Fatalf("a rejected atomic batch wrote entries: head_seq %v", s)
	}

	r = e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"atomic": true, "entries": []any{
		entry("a1", "issuance", "alice", "10"),
		entry("a2", "alice", "bob", "10"),
	}}), http.StatusOK)
	if got := strings.Join(batchCodes(r), ","); got != "created,created" || r.get("applied") != true {
		t.Errorf("results %s: %s", got, r.raw)
	}
	// Retrying the whole committed batch answers replayed for each entry.
	r = e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"atomic": true, "entries": []any{
		entry("a1", "issuance", "alice", "10"),
		entry("a2", "alice", "bob", "10"),
	}}), http.StatusOK)
	if got := strings.Join(batchCodes(r), ","); got != "replayed,replayed" {
		t.Errorf("retry: %s", got)
	}
	if s := e.headSeq("L"); s != 2 {
		t.Errorf("head_seq %v", s)
	}
}

func TestBatchRequestErrors(t *testing.T) {
	e := newEnv(t, Config{MaxBatch: 3})
	e.setupUSD()
	four := []any{entry("x1", "issuance", "alice", "1"), entry("x2", "issuance", "alice", "1"),
		entry("x3", "issuance", "alice", "1"), entry("x4", "issuance", "alice", "1")}
	for _, c := range []struct {
		name   string
		ledger string
		body   any
		status int
		code   string
		field  string
	}{
		{"over --max-batch", "L", map[string]any{"entries": four}, 400, "invalid_request", "entries"},
		{"empty", "L", map[string]any{"entries": []any{}}, 400, "invalid_request", "entries"},
		{"no entries", "L", map[string]any{"atomic": true}, 400, "invalid_request", "entries"},
		{"entries not an array", "L", `{"entries":{}}`, 400, "invalid_request", "entries"},
		{"atomic not a boolean", "L", `{"atomic":"yes","entries":[]}`, 400, "invalid_request", "atomic"},
		{"number amount in entry 1", "L", `{"entries":[{"reference_id":"a"},{"amount":1}]}`, 400, "invalid_amount", "entries[1].amount"},
		{"unknown field in entry 0", "L", `{"entries":[{"amout":"1"}]}`, 400, "invalid_request", "entries[0].amout"},
		{"entry not an object", "L", `{"entries":[null]}`, 400, "invalid_request", ""},
		{"unknown top-level field", "L", `{"entries":[],"dry_run":true}`, 400, "invalid_request", "dry_run"},
		{"unknown ledger", "NOPE", map[string]any{"entries": four[:1]}, 404, "unknown_ledger", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/v1/ledgers/"+c.ledger+"/entries/batch", c.body)
			if r.status != c.status || r.errCode() != c.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.errCode(), c.status, c.code, r.raw)
			}
			if c.field != "" && r.str("error", "details", "field") != c.field {
				t.Errorf("details.field %q, want %q (%s)", r.str("error", "details", "field"), c.field, r.raw)
			}
		})
	}
	if s := e.headSeq("L"); s != 0 {
		t.Errorf("head_seq %v", s)
	}
}
