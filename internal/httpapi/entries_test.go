package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestPostEntryCreatedThenReplayed(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()

	body := entry("fund-1", "issuance", "alice", "100.50")
	body["metadata"] = map[string]any{"note": "first"}
	created := e.mustStatus(e.post("L", body), http.StatusCreated)
	if created.str("result") != "created" || created.get("replayed") != false {
		t.Fatalf("created: %s", created.raw)
	}
	if loc := created.header.Get("Location"); loc != "/v1/ledgers/L/entries/fund-1" {
		t.Errorf("Location %q", loc)
	}
	ent := created.get("entry").(map[string]any)
	for k, want := range map[string]any{
		"ledger_id": "L", "seq": 1.0, "amount": "100.50", "currency_code": "USD", "asset_type": "fiat",
		"debit_account_id": "issuance", "credit_account_id": "alice", "reference_id": "fund-1",
		"previous_hash": strings.Repeat("0", 64), "debit_balance_after": "-100.50", "credit_balance_after": "100.50",
		"fx_rate": nil, "reverses_entry_id": nil,
	} {
		if !reflect.DeepEqual(ent[k], want) {
			t.Errorf("entry.%s = %#v, want %#v", k, ent[k], want)
		}
	}
	if h, _ := ent["block_hash"].(string); len(h) != 64 {
		t.Errorf("block_hash %q", h)
	}

	// The identical retry: 200, replayed, and the original entry, field for field.
	replay := e.mustStatus(e.post("L", body), http.StatusOK)
	if replay.str("result") != "replayed" || replay.get("replayed") != true {
		t.Fatalf("replay: %s", replay.raw)
	}
	if !reflect.DeepEqual(replay.get("entry"), created.get("entry")) {
		t.Errorf("replayed entry differs from the original:\n got %v\nwant %v", replay.get("entry"), created.get("entry"))
	}
	// "100.500" is the same amount: still a replay.
	body["amount"] = "100.500"
	e.mustStatus(e.post("L", body), http.StatusOK)

	// Posted once: the balance moved once, the chain has one entry, and GET agrees with POST.
	if b := e.balance("L", "alice"); b != "100.50" {
		t.Errorf("alice balance %s", b)
	}
	if s := e.headSeq("L"); s != 1 {
		t.Errorf("head_seq %v", s)
	}
	got := e.mustStatus(e.do("GET", "/v1/ledgers/L/entries/fund-1", nil), http.StatusOK)
	if !reflect.DeepEqual(got.body, created.get("entry")) {
		t.Errorf("GET entry differs from POST's:\n got %v\nwant %v", got.body, created.get("entry"))
	}
	head := e.mustStatus(e.do("GET", "/v1/ledgers/L", nil), http.StatusOK)
	if head.str("head_hash") != ent["block_hash"] {
		t.Errorf("head_hash %s, block_hash %s", head.str("head_hash"), ent["block_hash"])
	}
}

func TestPostEntryReferenceConflictNamesFields(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	first := e.mustStatus(e.post("L", entry("r-1", "issuance", "alice", "10.00")), http.StatusCreated)

	other := entry("r-1", "issuance", "alice", "11.00")
	other["metadata"] = map[string]any{"x": 1}
	r := e.mustStatus(e.post("L", other), http.StatusConflict)
	if r.errCode() != "reference_conflict" {
		t.Fatalf("%s", r.raw)
	}
	if f := r.get("error", "details", "fields"); !reflect.DeepEqual(f, []any{"amount", "metadata"}) {
		t.Errorf("fields %v", f)
	}
	if id := r.get("error", "details", "existing_entry_id"); id != first.get("entry", "id") {
		t.Errorf("existing_entry_id %v, want %v", id, first.get("entry", "id"))
	}
	if !strings.Contains(r.str("error", "message"), "amount, metadata") {
		t.Errorf("message %q", r.str("error", "message"))
	}
}

// Every rejection of a single posting, through HTTP, with its status, code and details; none
// of them writes anything.
func TestPostEntryRejections(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	e.createAccount("L", "eur", "EUR", "fiat", "")
	e.createAccount("L", "frozen", "USD", "fiat", "")
	// Freezing an account is the owner's act: the server's role may not change accounts.
	if _, err := e.db.Conn(t).Exec(t.Context(), `UPDATE bank_accounts SET status = 'frozen' WHERE ledger_id = 'L' AND id = 'frozen'`); err != nil {
		t.Fatal(err)
	}
	e.mustStatus(e.post("L", entry("seed", "issuance", "alice", "50.00")), http.StatusCreated)

	with := func(m map[string]any, kv ...any) map[string]any {
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	cases := []struct {
		name    string
		ledger  string
		body    any
		status  int
		code    string
		details map[string]any // expected subset of error.details
		message string         // expected substring of error.message
	}{
		{"insufficient funds", "L", entry("r1", "alice", "bob", "50.01"), 422, "insufficient_funds",
			map[string]any{"account_id": "alice", "available_balance": "50.00", "amount": "50.01", "overdraft_limit": "0.00"}, "insufficient funds"},
		{"unknown debit account", "L", entry("r2", "nobody", "bob", "1"), 404, "unknown_account",
			map[string]any{"missing_account_ids": []any{"nobody"}}, "nobody"},
		{"unknown ledger", "NOPE", entry("r3", "alice", "bob", "1"), 404, "unknown_ledger",
			map[string]any{"ledger_id": "NOPE"}, "NOPE"},
		{"currency mismatch", "L", entry("r4", "alice", "eur", "1"), 422, "currency_mismatch",
			map[string]any{"currency_code": "USD"}, "EUR"},
		{"account inactive", "L", entry("r5", "alice", "frozen", "1"), 422, "account_inactive",
			map[string]any{"account_id": "frozen", "status": "frozen"}, "frozen"},
		{"same account", "L", entry("r6", "alice", "alice", "1"), 400, "same_account", nil, "same"},
		{"zero amount", "L", entry("r7", "alice", "bob", "0"), 400, "invalid_amount", map[string]any{"field": "amount"}, "greater than zero"},
		{"negative amount", "L", entry("r8", "alice", "bob", "-5"), 400, "invalid_amount", map[string]any{"field": "amount"}, "greater than zero"},
		{"too many decimals for USD", "L", entry("r9", "alice", "bob", "1.001"), 400, "invalid_amount", map[string]any{"field": "amount"}, "USD allows at most 2"},
		{"amount as JSON number", "L", `{"debit_account_id":"alice","credit_account_id":"bob","amount":100.5,"currency_code":"USD","asset_type":"fiat","transaction_type":"t","reference_id":"r10"}`,
			400, "invalid_amount", map[string]any{"field": "amount"}, "decimal string"},
		{"amount not a decimal", "L", entry("r11", "alice", "bob", "1e3"), 400, "invalid_amount", map[string]any{"field": "amount"}, "plain decimal"},
		{"unknown currency", "L", with(entry("r12", "alice", "bob", "1"), "currency_code", "ZZZ"), 400, "unknown_currency",
			map[string]any{"field": "currency_code"}, "ZZZ"},
		{"invalid asset type", "L", with(entry("r13", "alice", "bob", "1"), "asset_type", "gold"), 400, "invalid_asset_type",
			map[string]any{"field": "asset_type"}, "gold"},
		{"unknown reversed entry", "L", with(entry("r14", "alice", "bob", "1"), "reverses_entry_id", 987654), 404, "unknown_entry",
			map[string]any{"field": "reverses_entry_id"}, "987654"},
		{"missing reference_id", "L", with(entry("", "alice", "bob", "1"), "reference_id", nil), 400, "invalid_request",
			map[string]any{"field": "reference_id"}, "reference_id is required"},
		{"bad timestamp", "L", with(entry("r15", "alice", "bob", "1"), "timestamp_utc", "yesterday"), 400, "invalid_request",
			map[string]any{"field": "timestamp_utc"}, "RFC 3339"},
		{"fx_rate as number", "L", with(entry("r16", "alice", "bob", "1"), "fx_rate", 1.1), 400, "invalid_request",
			map[string]any{"field": "fx_rate"}, "decimal string"},
		{"metadata not an object", "L", with(entry("r17", "alice", "bob", "1"), "metadata", []int{1}), 400, "invalid_request",
			map[string]any{"field": "metadata"}, "JSON object"},
		{"unknown field", "L", with(entry("r18", "alice", "bob", "1"), "ledger", "L"), 400, "invalid_request",
			map[string]any{"field": "ledger"}, `unknown field "ledger"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.post(c.ledger, c.body)
			if r.status != c.status || r.errCode() != c.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.errCode(), c.status, c.code, r.raw)
			}
			for k, want := range c.details {
				if got := r.get("error", "details", k); !reflect.DeepEqual(got, want) {
					t.Errorf("details.%s = %#v, want %#v (%s)", k, got, want, r.raw)
				}
			}
			if !strings.Contains(r.str("error", "message"), c.message) {
				t.Errorf("message %q does not mention %q", r.str("error", "message"), c.message)
			}
			if strings.Contains(string(r.raw), "SQLSTATE") || strings.Contains(string(r.raw), "pgx") {
				t.Errorf("database internals leak: %s", r.raw)
			}
		})
	}
	if s := e.headSeq("L"); s != 1 {
		t.Errorf("rejections wrote entries: head_seq %v", s)
	}
	if b := e.balance("L", "alice"); b != "50.00" {
		t.Errorf("alice balance %s", b)
	}
}

func TestEntriesPagination(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	for i := range 25 {
		e.mustStatus(e.post("L", entry("p-"+string(rune('a'+i)), "issuance", "alice", "1")), http.StatusCreated)
	}
	var seqs []float64
	after := ""
	pages := 0
	for {
		q := "/v1/ledgers/L/entries?limit=10"
		if after != "" {
			q += "&after_seq=" + after
		}
		r := e.mustStatus(e.do("GET", q, nil), http.StatusOK)
		pages++
		for _, it := range r.get("entries").([]any) {
			seqs = append(seqs, it.(map[string]any)["seq"].(float64))
		}
		next := r.get("next_after_seq")
		if next == nil {
			break
		}
		after = jsonNumber(next)
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if pages != 3 || len(seqs) != 25 || !slices.IsSorted(seqs) || seqs[0] != 1 || seqs[24] != 25 {
		t.Errorf("pages %d, seqs %v", pages, seqs)
	}
	// An exact multiple of the limit ends without an empty page.
	r := e.mustStatus(e.do("GET", "/v1/ledgers/L/entries?after_seq=20&limit=5", nil), http.StatusOK)
	if len(r.get("entries").([]any)) != 5 || r.get("next_after_seq") != nil {
		t.Errorf("last full page: %s", r.raw)
	}
	// Default limit, and an empty ledger.
	e.createLedger("EMPTY")
	r = e.mustStatus(e.do("GET", "/v1/ledgers/EMPTY/entries", nil), http.StatusOK)
	if string(mustJSON(t, r.get("entries"))) != "[]" || r.get("next_after_seq") != nil {
		t.Errorf("empty ledger: %s", r.raw)
	}

	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "after_seq=-1", "afterseq=3", "limit=1&limit=2", "after_seq=%zz"} {
		r := e.do("GET", "/v1/ledgers/L/entries?"+q, nil)
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_request" {
			t.Errorf("?%s: %d %s", q, r.status, r.raw)
		}
	}
	if r := e.do("GET", "/v1/ledgers/NOPE/entries", nil); r.status != 404 || r.errCode() != "unknown_ledger" {
		t.Errorf("unknown ledger: %d %s", r.status, r.raw)
	}
}

func TestGetEntryByReference(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	ref := "inv/2025 #7 ü"
	e.mustStatus(e.post("L", entry(ref, "issuance", "alice", "3")), http.StatusCreated)
	r := e.mustStatus(e.do("GET", "/v1/ledgers/L/entries/inv%2F2025%20%237%20%C3%BC", nil), http.StatusOK)
	if r.str("reference_id") != ref || r.get("seq") != 1.0 || len(r.str("previous_hash")) != 64 || len(r.str("block_hash")) != 64 {
		t.Errorf("entry: %s", r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/L/entries/missing", nil); r.status != 404 || r.errCode() != "not_found" {
		t.Errorf("missing entry: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/NOPE/entries/x", nil); r.status != 404 || r.errCode() != "unknown_ledger" {
		t.Errorf("unknown ledger: %d %s", r.status, r.raw)
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A NUL (%00) in a path or query parameter is refused as what it is: NUL is valid UTF-8, but the
// database cannot store it in text. Bytes that are not UTF-8 are still called so. Both are 400
// invalid_request naming the parameter.
func TestNULInPathOrQueryParameter(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	for _, c := range []struct{ path, field, says string }{
		{"/v1/ledgers/L/entries/a%00b", "reference_id", "NUL character"},
		{"/v1/ledgers/L%00/accounts", "ledger_id", "NUL character"},
		{"/v1/ledgers/L/accounts?after=a%00b", "after", "NUL character"},
		{"/v1/ledgers/L/holds?account=%00", "account", "NUL character"},
		{"/v1/ledgers/L/entries/a%FFb", "reference_id", "not valid UTF-8"},
		{"/v1/ledgers/L/accounts?after=a%FFb", "after", "not valid UTF-8"},
		{"/v1/ledgers/L/accounts?after=a%C3%28", "after", "not valid UTF-8"},
	} {
		r := e.do("GET", c.path, nil)
		msg := r.str("error", "message")
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_request" || r.str("error", "details", "field") != c.field ||
			!strings.Contains(msg, c.says) || !strings.Contains(msg, c.field) {
			t.Errorf("GET %s: %d %s; want 400 invalid_request, field %s, a message saying %q", c.path, r.status, r.raw, c.field, c.says)
		}
		if c.says == "NUL character" && strings.Contains(msg, "UTF-8") {
			t.Errorf("GET %s: %s calls a NUL invalid UTF-8", c.path, msg)
		}
	}
}
