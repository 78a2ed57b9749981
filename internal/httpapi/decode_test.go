package httpapi

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"dualledger/internal/ledger"
)

const validEntry = `{"debit_account_id":"a","credit_account_id":"b","amount":"1.00","currency_code":"USD",` +
	`"asset_type":"fiat","transaction_type":"t","reference_id":"r"}`

func TestDecodeEntry(t *testing.T) {
	with := func(extra string) string { return strings.TrimSuffix(validEntry, "}") + "," + extra + "}" }
	cases := []struct {
		name, body string
		code       string // "" = accepted
		field      string
		message    string
	}{
		{"valid", validEntry, "", "", ""},
		{"all fields", with(`"fx_rate":"1.1","metadata":{"k":[1,2,{"z":null}]},"timestamp_utc":"2025-01-20T10:00:00Z","reverses_entry_id":7`), "", "", ""},
		{"nulls for optional fields", with(`"fx_rate":null,"metadata":null,"timestamp_utc":null,"reverses_entry_id":null`), "", "", ""},
		{"unicode", `{"reference_id":"ü €𝄞 \u00e9\ud834\udd1e"}`, "", "", ""},
		{"empty", "  \n", "invalid_request", "", "empty"},
		{"not an object", `["x"]`, "invalid_request", "", "must be a JSON object"},
		{"null", `null`, "invalid_request", "", "must be a JSON object"},
		{"trailing object", validEntry + ` {}`, "invalid_request", "", "after the JSON object"},
		{"trailing garbage", validEntry + `x`, "invalid_request", "", "after the JSON object"},
		{"truncated", `{"amount":"1"`, "invalid_request", "", "ends before"},
		{"syntax", `{"amount" "1"}`, "invalid_request", "", "not valid JSON"},
		{"unknown field", with(`"memo":"x"`), "invalid_request", "memo", `unknown field "memo"`},
		{"field in other case", `{"Amount":"1"}`, "invalid_request", "Amount", `unknown field "Amount"`},
		{"duplicate field", `{"amount":"1","amount":"1000"}`, "invalid_request", "amount", "duplicate field"},
		{"duplicate by escape", `{"amount":"1","\u0061mount":"2"}`, "invalid_request", "amount", "duplicate field"},
		{"duplicate in metadata", `{"metadata":{"a":{"b":1,"b":2}}}`, "invalid_request", "metadata.a.b", "duplicate field"},
		{"amount number", `{"amount":100}`, "invalid_amount", "amount", "decimal string"},
		{"amount huge number", `{"amount":1e400}`, "invalid_amount", "amount", "not a JSON number"},
		{"amount bool", `{"amount":true}`, "invalid_amount", "amount", "not a JSON bool"},
		{"amount object", `{"amount":{"v":"1"}}`, "invalid_amount", "amount", "not a JSON object"},
		{"fx_rate number", `{"fx_rate":1.5}`, "invalid_request", "fx_rate", "decimal string"},
		{"string for integer", `{"reverses_entry_id":"7"}`, "invalid_request", "reverses_entry_id", "must be a JSON integer"},
		{"fraction for integer", `{"reverses_entry_id":7.5}`, "invalid_request", "reverses_entry_id", "got number 7.5"},
		{"number for string", `{"reference_id":12}`, "invalid_request", "reference_id", "must be a JSON string"},
		{"NUL escape", `{"reference_id":"a\u0000b"}`, "invalid_request", "", "NUL"},
		{"NUL in a key", `{"metadata":{"\u0000":1}}`, "invalid_request", "", "NUL"},
		{"lone high surrogate", `{"reference_id":"\ud800"}`, "invalid_request", "", "surrogate"},
		{"lone low surrogate", `{"metadata":{"k":"\udc00x"}}`, "invalid_request", "", "surrogate"},
		{"reversed surrogates", `{"reference_id":"\udc00\ud800"}`, "invalid_request", "", "surrogate"},
		{"escaped backslash is not an escape", `{"reference_id":"\\ud800"}`, "", "", ""},
		{"invalid UTF-8", "{\"reference_id\":\"\xff\"}", "invalid_request", "", "UTF-8"},
		{"deep nesting", `{"metadata":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`, "invalid_request", "", "nested"},
		{"long number", `{"metadata":{"n":` + strings.Repeat("1", 65) + `}}`, "invalid_request", "metadata.n", "64 characters"},
		{"big exponent", `{"metadata":{"n":[1,2e301]}}`, "invalid_request", "metadata.n[1]", "exponent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, err := DecodeEntry(strings.NewReader(c.body))
			if c.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var le *ledger.Error
			if !errors.As(err, &le) {
				t.Fatalf("got %#v (%v), want a *ledger.Error %s", in, err, c.code)
			}
			if le.Code != c.code || !strings.Contains(le.Message, c.message) {
				t.Errorf("got %s %q, want %s containing %q", le.Code, le.Message, c.code, c.message)
			}
			if c.field != "" && !strings.Contains(string(le.Details), `"field":"`+c.field+`"`) {
				t.Errorf("details %s, want field %q", le.Details, c.field)
			}
		})
	}
}

func TestDecodeEntryValues(t *testing.T) {
	in, err := DecodeEntry(strings.NewReader(`{"amount":"1.50","fx_rate":"2","metadata": { "b" : [1, 2],"a":"x" },"reverses_entry_id":9,"reference_id":"\ud834\udd1e"}`))
	if err != nil {
		t.Fatal(err)
	}
	if in.Amount != "1.50" || *in.FxRate != "2" || *in.ReversesEntryID != 9 || in.ReferenceID != "𝄞" {
		t.Errorf("decoded %#v", in)
	}
	// Metadata is compacted, keys in the client's order.
	if string(in.Metadata) != `{"b":[1,2],"a":"x"}` {
		t.Errorf("metadata %s", in.Metadata)
	}
}

// The decoder reads the batch envelope as batchWire but documents it as BatchRequest.
func TestBatchWireMatchesBatchRequest(t *testing.T) {
	a, b := structFields(reflect.TypeFor[BatchRequest]()), structFields(reflect.TypeFor[batchWire]())
	if len(a) != len(b) {
		t.Fatalf("%v vs %v", a, b)
	}
	for i := range a {
		if a[i].name != b[i].name || a[i].optional != b[i].optional {
			t.Errorf("field %d: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestRequestBodyRules(t *testing.T) {
	e := newEnv(t, Config{MaxBody: 1024, MaxBatchBody: 2048})
	e.setupUSD()
	big := `{"debit_account_id":"` + strings.Repeat("x", 2000) + `"}`

	// 413: declared too large, and too large without a declared length.
	r := e.post("L", big)
	if r.status != 413 || r.errCode() != "body_too_large" || r.get("error", "details", "max_bytes") != 1024.0 {
		t.Errorf("declared length: %d %s", r.status, r.raw)
	}
	req, _ := http.NewRequest("POST", e.ts.URL+"/v1/ledgers/L/entries", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = -1 // chunked
	if r := e.send(req); r.status != 413 || r.errCode() != "body_too_large" {
		t.Errorf("chunked: %d %s", r.status, r.raw)
	}
	// The batch endpoint has its own, larger limit.
	batch := `{"entries":[` + strings.TrimSuffix(strings.Repeat(validEntry+",", 10), ",") + `]}`
	if r := e.do("POST", "/v1/ledgers/L/entries/batch", batch); r.status != 200 {
		t.Errorf("batch within its limit: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/v1/ledgers/L/entries/batch", `{"entries":[`+big+`,`+big+`]}`); r.status != 413 {
		t.Errorf("batch over its limit: %d %s", r.status, r.raw)
	}

	// 415.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "application/json+x", ""} {
		r := e.do("POST", "/v1/ledgers/L/entries", validEntry, "Content-Type", ct)
		if r.status != 415 || r.errCode() != "unsupported_media_type" {
			t.Errorf("Content-Type %q: %d %s", ct, r.status, r.raw)
		}
	}
	if r := e.do("POST", "/v1/ledgers/L/entries", entry("ct", "issuance", "alice", "1"), "Content-Type", "Application/JSON; charset=UTF-8"); r.status != 201 {
		t.Errorf("media type with charset: %d %s", r.status, r.raw)
	}

	// 400s of the decoder, through HTTP.
	for body, field := range map[string]string{
		strings.TrimSuffix(validEntry, "}") + `,"extra":1}`: "extra",
		validEntry + `{}`:        "",
		validEntry + ` trailing`: "",
		`{"amount":5}`:           "amount",
	} {
		r := e.post("L", body)
		if r.status != 400 || (field != "" && r.str("error", "details", "field") != field) {
			t.Errorf("%s: %d %s", body, r.status, r.raw)
		}
	}
	if s := e.headSeq("L"); s != 1 { // the batch's entries name accounts that do not exist
		t.Errorf("head_seq %v", s)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1": 1, "1MiB": 1 << 20, "16 MiB": 16 << 20, "512K": 512 << 10, "2GiB": 2 << 30, "100B": 100} {
		var b ByteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d %v", in, b, err)
		}
	}
	for _, in := range []string{"", "0", "-1", "1.5MiB", "MiB", "1TiB", "9999999GiB"} {
		var b ByteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	if s := ByteSize(16 << 20).String(); s != "16MiB" {
		t.Errorf("String %s", s)
	}
	if s := ByteSize(1000).String(); s != "1000" {
		t.Errorf("String %s", s)
	}
}

// What the decoder accepts at its limits, PostgreSQL's jsonb accepts too: a posting with such
// metadata commits (a refusal there would fail a whole group-commit transaction). The metadata
// caps are set as far as they go (MaxMetadataDepthLimit levels, 1 MiB).
func TestDecoderLimitsFitJSONB(t *testing.T) {
	e := newEnv(t, Config{MaxMetadataDepth: MaxMetadataDepthLimit, MaxMetadataBytes: 1 << 20})
	e.setupUSD()
	deep := strings.Repeat(`{"d":`, maxJSONDepth-2) + `1` + strings.Repeat(`}`, maxJSONDepth-2)
	meta := `{"big":1e300,"small":-1E-300,"long":` + strings.Repeat("9", 63) + `,"frac":0.` + strings.Repeat("1", 62) +
		`,"s":"\u2028 \ud834\udd1e ü <&> \" \\ \/ \t","empty":{},"arr":[[],[null,true,false]],"deep":` + deep + `}`
	body := strings.TrimSuffix(validEntry, "}") + `,"metadata":` + meta + `}`
	body = strings.NewReplacer(`"a"`, `"issuance"`, `"b"`, `"alice"`).Replace(body)
	r := e.post("L", body)
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	got := e.mustStatus(e.do("GET", "/v1/ledgers/L/entries/r", nil), 200)
	if got.get("metadata", "s") != "\u2028 \U0001D11E ü <&> \" \\ / \t" {
		t.Errorf("metadata.s %q", got.get("metadata", "s"))
	}
}
