package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"dualledger/internal/ledger"
)

// oddReferences look unusual but are valid: the API accepts each, and each reads back by URL.
var oddReferences = []string{
	`say "hi"`, `it's`, "(parens)", "[brackets]", "{braces}", "100%", "100%25", "%2F", "%", "what?", "a?b=c&d=e", "#fragment",
	"a#b", "a/b", "/lead", "trail/", "a//b", "a/./b", "a/../b", "../x", "x/..", "a..b", "...", ".hidden", "end.",
	"spaces inside are fine", "a + b", "tab-free", "semi;colon", "comma,", "back\\slash", "<script>", "a&b", "~user",
	"caret^", "pipe|", "at@x", "$dollar", "!bang", "*", "+", "=", "Grüße aus Köln", "日本語の参照", "مرحبا", "Ελληνικά",
	"emoji 😀", "é", "\u0301 lone mark", "ﬁ ligature", "①", "x\u00b2", strings.Repeat("r", 128), strings.Repeat("é", 128),
	strings.Repeat("😀", 128), strings.Repeat("/", 128),
}

// badReferences break one rule each (the rule is in details.rule).
var badReferences = map[string]string{
	" lead": ledger.RefRuleLeadingWhitespace, "trail ": ledger.RefRuleTrailingWhitespace, "a\tb": ledger.RefRuleControl,
	"a\nb": ledger.RefRuleControl, "a\u0085b": ledger.RefRuleControl, "a\u200bb": ledger.RefRuleInvisible,
	"a\u202eb": ledger.RefRuleInvisible, "\ufeffa": ledger.RefRuleInvisible, "a\u2028b": ledger.RefRuleSeparator,
	"a\u00a0b": ledger.RefRuleWhitespace, "cafe\u0301": ledger.RefRuleNFC, ".": ledger.RefRulePathSegment,
	"..": ledger.RefRulePathSegment, "/": ledger.RefRulePathSegment, strings.Repeat("r", 129): ledger.RefRuleLength, "a\ue000": ledger.RefRuleNotPrintable,
	"a\ufe0f": ledger.RefRuleInvisible,
}

// TestDecodeEntryReference: the decoder applies ledger.ValidateReference; in a batch the error
// names the entry (details.index, field entries[i].reference_id) as every entry error does.
func TestDecodeEntryReference(t *testing.T) {
	body := func(ref string) string {
		b, _ := json.Marshal(ref)
		return strings.Replace(validEntry, `"reference_id":"r"`, `"reference_id":`+string(b), 1)
	}
	for _, ref := range oddReferences {
		in, err := decodeEntryBytes([]byte(body(ref)))
		if err != nil || in.ReferenceID != ref {
			t.Errorf("%q: %v (%q)", ref, err, in.ReferenceID)
		}
	}
	for ref, rule := range badReferences {
		_, err := decodeEntryBytes([]byte(body(ref)))
		le, d := checkDecodeError(t, err, ledger.CodeInvalidRequest)
		if d["field"] != "reference_id" || d["rule"] != rule || !strings.HasPrefix(le.Message, "reference_id ") {
			t.Errorf("%q: %v %s, want field reference_id and rule %s", ref, le, le.Details, rule)
		}
		batch := `{"atomic":true,"entries":[` + validEntry + `,` + validEntry + `,` + body(ref) + `]}`
		_, _, err = decodeBatch([]byte(batch), 10)
		le, d = checkDecodeError(t, err, ledger.CodeInvalidRequest)
		if d["field"] != "entries[2].reference_id" || d["index"] != 2.0 || d["rule"] != rule ||
			!strings.HasPrefix(le.Message, "entries[2].reference_id: reference_id ") {
			t.Errorf("%q in a batch: %v %s", ref, le, le.Details)
		}
	}
	// A missing reference is the database's to answer (its precedence among the shape errors).
	if _, err := decodeEntryBytes([]byte(`{"amount":"1"}`)); err != nil {
		t.Errorf("missing reference refused by the decoder: %v", err)
	}
}

// TestReferencesOverHTTP: every odd but valid reference posts (alone and in a batch) and reads
// back with GET /v1/ledgers/{l}/entries/{reference_id}, percent-encoded, and its Location works;
// every bad one is 400 invalid_request naming the field, alone or in a batch, and writes nothing.
func TestReferencesOverHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	e.mustStatus(e.post("L", entry("fund", "issuance", "alice", "1000.00")), http.StatusCreated)

	get := func(ref string) *resp {
		return e.do("GET", "/v1/ledgers/L/entries/"+url.PathEscape(ref), nil)
	}
	for i, ref := range oddReferences {
		r := e.post("L", entry(ref, "alice", "bob", "0.01"))
		if r.status != http.StatusCreated {
			t.Errorf("post %q: %d %s", ref, r.status, r.raw)
			continue
		}
		id := r.get("entry", "id")
		g := get(ref)
		if g.status != http.StatusOK || g.str("reference_id") != ref || g.get("id") != id {
			t.Errorf("GET %q (%s): %d %s", ref, url.PathEscape(ref), g.status, g.raw)
		}
		// Location is the same URL.
		loc := r.header.Get("Location")
		if want := "/v1/ledgers/L/entries/" + url.PathEscape(ref); loc != want {
			t.Errorf("%q: Location %q, want %q", ref, loc, want)
		} else if g := e.do("GET", loc, nil); g.status != http.StatusOK || g.get("id") != id {
			t.Errorf("GET Location %s: %d %s", loc, g.status, g.raw)
		}
		// Another spelling of the same URL: every byte percent-encoded, as a cautious client may.
		if i%3 == 0 {
			var all strings.Builder
			for _, b := range []byte(ref) {
				fmt.Fprintf(&all, "%%%02X", b)
			}
			if g := e.do("GET", "/v1/ledgers/L/entries/"+all.String(), nil); g.status != http.StatusOK || g.get("id") != id {
				t.Errorf("GET %q fully escaped: %d %s", ref, g.status, g.raw)
			}
		}
		// A replay with the same reference answers replayed.
		if r := e.post("L", entry(ref, "alice", "bob", "0.01")); r.status != http.StatusOK || r.str("result") != "replayed" {
			t.Errorf("replay %q: %d %s", ref, r.status, r.raw)
		}
	}
	// In a batch, then read back.
	var entries []any
	for _, ref := range oddReferences {
		r := []rune(ref)
		entries = append(entries, entry("b:"+string(r[:min(len(r), 100)]), "alice", "bob", "0.01"))
	}
	r := e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"atomic": true, "entries": entries}), http.StatusOK)
	for i := range oddReferences {
		ref := entries[i].(map[string]any)["reference_id"].(string)
		if r.str("results", strconv.Itoa(i), "result") != "created" && r.str("results", strconv.Itoa(i), "result") != "replayed" {
			t.Errorf("batch %q: %v", ref, r.get("results", strconv.Itoa(i)))
		}
		if g := get(ref); g.status != http.StatusOK || g.str("reference_id") != ref {
			t.Errorf("GET batch entry %q: %d %s", ref, g.status, g.raw)
		}
	}

	seq := e.headSeq("L")
	for ref, rule := range badReferences {
		r := e.post("L", entry(ref, "alice", "bob", "0.01"))
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_request" || r.str("error", "details", "field") != "reference_id" ||
			r.str("error", "details", "rule") != rule || !strings.HasPrefix(r.str("error", "message"), "reference_id ") {
			t.Errorf("post %q: %d %s", ref, r.status, r.raw)
		}
		r = e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"entries": []any{entry("ok-"+rule, "alice", "bob", "0.01"), entry(ref, "alice", "bob", "0.01")}})
		if r.status != http.StatusBadRequest || r.str("error", "details", "field") != "entries[1].reference_id" || r.get("error", "details", "index") != 1.0 {
			t.Errorf("batch %q: %d %s", ref, r.status, r.raw)
		}
		// The settlement API answers the same (before it looks at banks).
		r = e.do("POST", "/v1/settlements", map[string]any{"node_id": "n", "source_bank_id": "SCB-X", "destination_bank_id": "SCB-Y",
			"amount": "1.00", "currency_code": "USD", "reference_id": ref})
		if r.status != http.StatusBadRequest || r.str("error", "details", "field") != "reference_id" {
			t.Errorf("settlement %q: %d %s", ref, r.status, r.raw)
		}
	}
	if got := e.headSeq("L"); got != seq {
		t.Errorf("bad references wrote entries: head_seq %v -> %v", seq, got)
	}
}
