package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"dualledger/internal/ledger"
)

// nested is a metadata object nested depth levels deep (the object itself is level 1).
func nested(depth int) string {
	if depth < 1 {
		return "{}"
	}
	return strings.Repeat(`{"d":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
}

// sized is a metadata object of exactly n bytes (n >= 10).
func sized(n int) string {
	return `{"p":"` + strings.Repeat("x", n-8) + `"}`
}

func withMeta(meta string) string {
	return strings.TrimSuffix(validEntry, "}") + `,"metadata":` + meta + `}`
}

func wantMetaError(t *testing.T, err error, field string, details map[string]float64) {
	t.Helper()
	var le *ledger.Error
	if !errors.As(err, &le) || le.Code != ledger.CodeInvalidRequest {
		t.Fatalf("got %v, want invalid_request", err)
	}
	var d map[string]any
	if err := json.Unmarshal(le.Details, &d); err != nil {
		t.Fatal(err)
	}
	if d["field"] != field {
		t.Errorf("details %s, want field %q", le.Details, field)
	}
	for k, v := range details {
		if d[k] != v {
			t.Errorf("details %s, want %s = %v", le.Details, k, v)
		}
		// The message says the limit and what was sent.
		if !strings.Contains(le.Message, strconv.Itoa(int(v))) {
			t.Errorf("message %q does not say %s %v", le.Message, k, v)
		}
	}
	if !strings.Contains(le.Message, "metadata") {
		t.Errorf("message %q does not name the metadata", le.Message)
	}
}

// TestMetadataLimitsDecode: the default caps (16 KiB as received, 8 levels) and configured ones,
// for a single entry, each entry of a batch (naming its index) and an account.
func TestMetadataLimitsDecode(t *testing.T) {
	def := defaultMetadataLimits()
	if def.maxBytes != 16<<10 || def.maxDepth != 8 {
		t.Fatalf("defaults %+v", def)
	}
	// At the limits: accepted. One past: refused with the limit and the size or depth.
	if _, err := decodeEntryBytes([]byte(withMeta(sized(16 << 10)))); err != nil {
		t.Errorf("16 KiB of metadata refused: %v", err)
	}
	_, err := decodeEntryBytes([]byte(withMeta(sized(16<<10 + 1))))
	wantMetaError(t, err, "metadata", map[string]float64{"max_bytes": 16384, "bytes": 16385})
	if _, err := decodeEntryBytes([]byte(withMeta(nested(8)))); err != nil {
		t.Errorf("8 levels refused: %v", err)
	}
	_, err = decodeEntryBytes([]byte(withMeta(nested(9))))
	wantMetaError(t, err, "metadata", map[string]float64{"max_depth": 8, "depth": 9})
	_, err = decodeEntryBytes([]byte(withMeta(`{"a":[1,[2,[3,[4,[5,[6,[7,[8,[9]]]]]]]]]}`)))
	wantMetaError(t, err, "metadata", map[string]float64{"max_depth": 8, "depth": 10})

	// The size is the JSON as received: white space counts (it is compacted only afterwards).
	spaced := `{"p":` + strings.Repeat(" ", 16<<10) + `1}`
	_, err = decodeEntryBytes([]byte(withMeta(spaced)))
	wantMetaError(t, err, "metadata", map[string]float64{"bytes": float64(len(spaced))})
	// Brackets in strings are not nesting.
	if _, err := decodeEntryBytes([]byte(withMeta(`{"s":"[[[[[[[[[[{{{{{{{{{{","t":"\"[[[[[[[[[["}`))); err != nil {
		t.Errorf("brackets in strings: %v", err)
	}
	// A metadata that is not an object is still capped (the database refuses it anyway).
	_, err = decodeEntryBytes([]byte(withMeta(`"` + strings.Repeat("x", 16<<10) + `"`)))
	wantMetaError(t, err, "metadata", map[string]float64{"max_bytes": 16384})

	// Configured caps.
	small := metadataLimits{maxBytes: 100, maxDepth: 2}
	if _, err := decodeEntryLimits([]byte(withMeta(`{"a":{"b":1}}`)), small); err != nil {
		t.Errorf("within configured caps: %v", err)
	}
	_, err = decodeEntryLimits([]byte(withMeta(`{"a":{"b":[1]}}`)), small)
	wantMetaError(t, err, "metadata", map[string]float64{"max_depth": 2, "depth": 3})
	_, err = decodeEntryLimits([]byte(withMeta(sized(101))), small)
	wantMetaError(t, err, "metadata", map[string]float64{"max_bytes": 100, "bytes": 101})
	var le *ledger.Error
	if errors.As(err, &le) && !strings.Contains(le.Message, "at most 100 are allowed") {
		t.Errorf("message %q", le.Message)
	}
	big := metadataLimits{maxBytes: 1 << 20, maxDepth: MaxMetadataDepthLimit}
	if _, err := decodeEntryLimits([]byte(withMeta(nested(MaxMetadataDepthLimit))), big); err != nil {
		t.Errorf("the deepest configurable metadata: %v", err)
	}

	// In a batch: the entry's index and path.
	body := `{"entries":[` + validEntry + `,` + withMeta(nested(3)) + `,` + withMeta(nested(9)) + `]}`
	_, _, err = decodeBatch([]byte(body), 10)
	wantMetaError(t, err, "entries[2].metadata", map[string]float64{"index": 2, "max_depth": 8, "depth": 9})
	_, _, err = decodeBatchLimits([]byte(body), 10, metadataLimits{maxBytes: 1000, maxDepth: 2})
	wantMetaError(t, err, "entries[1].metadata", map[string]float64{"index": 1, "max_depth": 2, "depth": 3})
	if errors.As(err, &le) && !strings.HasPrefix(le.Message, "entries[1].metadata: metadata is nested 3 levels deep") {
		t.Errorf("batch message %q", le.Message)
	}

	// An account's metadata, through decodeJSON; other bodies have none to cap.
	var acc ledger.AccountInput
	err = decodeJSON(strings.NewReader(`{"id":"a","currency_code":"USD","asset_type":"fiat","metadata":`+sized(16<<10+1)+`}`), &acc)
	wantMetaError(t, err, "metadata", map[string]float64{"max_bytes": 16384, "bytes": 16385})
	err = decodeJSONLimits(strings.NewReader(`{"id":"a","metadata":`+nested(3)+`}`), &acc, small)
	wantMetaError(t, err, "metadata", map[string]float64{"max_depth": 2, "depth": 3})
	if err := decodeJSON(strings.NewReader(`{"id":"a","metadata":`+nested(8)+`}`), &acc); err != nil {
		t.Errorf("account metadata within the caps: %v", err)
	}
}

func TestMetadataConfig(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.MaxMetadataBytes != DefaultMaxMetadataBytes || c.MaxMetadataDepth != DefaultMaxMetadataDepth {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if _, err := (Config{MaxMetadataDepth: MaxMetadataDepthLimit + 1}).withDefaults(); err == nil {
		t.Error("a metadata depth past the JSON nesting limit was accepted")
	}
	if c, err := (Config{MaxMetadataBytes: 1 << 20, MaxMetadataDepth: MaxMetadataDepthLimit}).withDefaults(); err != nil ||
		c.MaxMetadataBytes != 1<<20 || c.MaxMetadataDepth != MaxMetadataDepthLimit {
		t.Errorf("configured: %+v %v", c, err)
	}
}

// TestMetadataLimitsHTTP: the caps through the API, with the defaults. Refused with 400
// invalid_request naming the field, the limit and the size or depth; nothing is written.
func TestMetadataLimitsHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	post := func(ref, meta string) *resp {
		body := entry(ref, "issuance", "alice", "1.00")
		body["metadata"] = json.RawMessage(meta)
		return e.post("L", body)
	}
	e.mustStatus(post("m-ok-size", sized(16<<10)), http.StatusCreated)
	e.mustStatus(post("m-ok-depth", nested(8)), http.StatusCreated)

	r := e.mustStatus(post("m-big", sized(16<<10+1)), http.StatusBadRequest)
	if r.errCode() != "invalid_request" || r.str("error", "details", "field") != "metadata" ||
		r.get("error", "details", "max_bytes") != 16384.0 || r.get("error", "details", "bytes") != 16385.0 {
		t.Errorf("too big: %s", r.raw)
	}
	r = e.mustStatus(post("m-deep", nested(9)), http.StatusBadRequest)
	if r.errCode() != "invalid_request" || r.str("error", "details", "field") != "metadata" ||
		r.get("error", "details", "max_depth") != 8.0 || r.get("error", "details", "depth") != 9.0 {
		t.Errorf("too deep: %s", r.raw)
	}

	// A batch: refused whole, naming the entry.
	ok := entry("m-b-1", "issuance", "alice", "1.00")
	bad := entry("m-b-2", "issuance", "alice", "1.00")
	bad["metadata"] = json.RawMessage(nested(12))
	r = e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"entries": []any{ok, bad}}), http.StatusBadRequest)
	if r.str("error", "details", "field") != "entries[1].metadata" || r.get("error", "details", "index") != 1.0 ||
		r.get("error", "details", "depth") != 12.0 {
		t.Errorf("batch: %s", r.raw)
	}

	// An account.
	r = e.mustStatus(e.do("POST", "/v1/ledgers/L/accounts", map[string]any{"id": "m-acc", "currency_code": "USD", "asset_type": "fiat",
		"metadata": json.RawMessage(sized(16<<10 + 1))}), http.StatusBadRequest)
	if r.errCode() != "invalid_request" || r.str("error", "details", "field") != "metadata" || r.get("error", "details", "bytes") != 16385.0 {
		t.Errorf("account: %s", r.raw)
	}
	e.mustStatus(e.do("GET", "/v1/ledgers/L/accounts/m-acc", nil), http.StatusNotFound)

	if s := e.headSeq("L"); s != 2 {
		t.Errorf("head_seq %v, want the 2 accepted postings only", s)
	}
}

// TestMetadataLimitsConfigured: Config.MaxMetadataBytes and MaxMetadataDepth reach the
// decoders of entries, batches and accounts (serve --max-metadata, --max-metadata-depth).
func TestMetadataLimitsConfigured(t *testing.T) {
	e := newEnv(t, Config{MaxMetadataBytes: 64, MaxMetadataDepth: 2})
	e.setupUSD()
	post := func(ref, meta string) *resp {
		body := entry(ref, "issuance", "alice", "1.00")
		body["metadata"] = json.RawMessage(meta)
		return e.post("L", body)
	}
	e.mustStatus(post("c-ok", `{"a":{"b":1}}`), http.StatusCreated)
	r := e.mustStatus(post("c-deep", nested(3)), http.StatusBadRequest)
	if r.get("error", "details", "max_depth") != 2.0 || r.get("error", "details", "depth") != 3.0 {
		t.Errorf("deep: %s", r.raw)
	}
	r = e.mustStatus(post("c-big", sized(65)), http.StatusBadRequest)
	if r.get("error", "details", "max_bytes") != 64.0 || r.get("error", "details", "bytes") != 65.0 {
		t.Errorf("big: %s", r.raw)
	}
	bad := entry("c-b-1", "issuance", "alice", "1.00")
	bad["metadata"] = json.RawMessage(nested(3))
	r = e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"entries": []any{bad}}), http.StatusBadRequest)
	if r.str("error", "details", "field") != "entries[0].metadata" || r.get("error", "details", "max_depth") != 2.0 {
		t.Errorf("batch: %s", r.raw)
	}
	r = e.mustStatus(e.do("POST", "/v1/ledgers/L/accounts", map[string]any{"id": "c-acc", "currency_code": "USD", "asset_type": "fiat",
		"metadata": json.RawMessage(nested(3))}), http.StatusBadRequest)
	if r.str("error", "details", "field") != "metadata" || r.get("error", "details", "max_depth") != 2.0 {
		t.Errorf("account: %s", r.raw)
	}
}
