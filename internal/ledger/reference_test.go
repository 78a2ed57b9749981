package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"dualledger/internal/ledger"
)

// oddReferences are references that look unusual but are valid: every one must be accepted on
// every path and be readable back by URL (the HTTP and SCB tests use the same list).
var oddReferences = []string{
	`a"b'c`, "(paren)", "100%", "what?", "#hash", "a/b", "a/../b", "/leading-slash", "trailing-slash/",
	"spaces inside ok", "a..b", "...", ".a", "a.", "Grüße-Köln", "日本語-参照", "مرحبا-1", "emoji-😀",
	"é-composed", "\u0301-lone-combining-mark", "%2F-literal", "a+b=c&d", "semi;colon,comma", "back\\slash",
	"<tag>", "{json}", "[x]", "~tilde`", "*", strings.Repeat("x", 128), strings.Repeat("é", 128),
	strings.Repeat("😀", 128),
}

func TestValidateReferenceAccepts(t *testing.T) {
	for _, ref := range oddReferences {
		if err := ledger.ValidateReference("reference_id", ref); err != nil {
			t.Errorf("%q refused: %v", ref, err)
		}
	}
}

// refusedReferences are references each rule refuses, with what ValidateReference says (the
// SQL side of the rules is held to the same verdicts: TestReferenceRulesAgree).
var refusedReferences = []struct {
	name, ref string
	rule      string
	message   string // substring
	character int    // details.character, 0 = none
}{
	{"empty", "", ledger.RefRuleRequired, "reference_id is required: 1 to 128 characters", 0},
	{"invalid UTF-8", "ab\xffcd", ledger.RefRuleUTF8, "not valid UTF-8", 0},
	{"truncated UTF-8", "ab\xc3", ledger.RefRuleUTF8, "not valid UTF-8", 0},
	{"surrogate as UTF-8", "a\xed\xa0\x80", ledger.RefRuleUTF8, "not valid UTF-8", 0},
	{"129 characters", strings.Repeat("x", 129), ledger.RefRuleLength, "is 129 characters long: at most 128", 0},
	{"129 runes of 4 bytes", strings.Repeat("😀", 129), ledger.RefRuleLength, "is 129 characters long", 0},
	{"dot", ".", ledger.RefRulePathSegment, `may not be "."`, 0},
	{"dot dot", "..", ledger.RefRulePathSegment, `may not be ".."`, 0},
	{"slash", "/", ledger.RefRulePathSegment, `may not be "/"`, 0},
	{"leading space", " a", ledger.RefRuleLeadingWhitespace, "starts with whitespace (U+0020 SPACE) at character 1", 1},
	{"trailing space", "a ", ledger.RefRuleTrailingWhitespace, "ends with whitespace (U+0020 SPACE) at character 2", 2},
	{"only a space", " ", ledger.RefRuleLeadingWhitespace, "starts with whitespace", 1},
	{"leading tab", "\ta", ledger.RefRuleLeadingWhitespace, "U+0009 CHARACTER TABULATION", 1},
	{"trailing newline", "a\n", ledger.RefRuleTrailingWhitespace, "U+000A LINE FEED", 2},
	{"trailing no-break space", "a\u00a0", ledger.RefRuleTrailingWhitespace, "U+00A0 NO-BREAK SPACE", 2},
	{"leading ideographic space", "\u3000a", ledger.RefRuleLeadingWhitespace, "U+3000", 1},
	{"tab inside", "a\tb", ledger.RefRuleControl, "control character (U+0009 CHARACTER TABULATION) at character 2", 2},
	{"newline inside", "a\nb", ledger.RefRuleControl, "U+000A", 2},
	{"NUL", "a\x00b", ledger.RefRuleControl, "U+0000", 2},
	{"bell", "a\ab", ledger.RefRuleControl, "U+0007", 2},
	{"escape", "a\x1bb", ledger.RefRuleControl, "U+001B", 2},
	{"DEL", "a\x7fb", ledger.RefRuleControl, "U+007F DELETE", 2},
	{"C1 NEL", "a\u0085b", ledger.RefRuleControl, "U+0085 NEXT LINE", 2},
	{"C1 CSI", "a\u009bb", ledger.RefRuleControl, "U+009B", 2},
	{"zero width space", "ref\u200b1", ledger.RefRuleInvisible, `"ref\u200b1" contains an invisible character (U+200B ZERO WIDTH SPACE) at character 4`, 4},
	{"zero width joiner", "a\u200db", ledger.RefRuleInvisible, "U+200D ZERO WIDTH JOINER", 2},
	{"zero width non-joiner", "a\u200cb", ledger.RefRuleInvisible, "U+200C", 2},
	{"word joiner", "a\u2060b", ledger.RefRuleInvisible, "U+2060 WORD JOINER", 2},
	{"BOM first", "\ufeffabc", ledger.RefRuleInvisible, "U+FEFF ZERO WIDTH NO-BREAK SPACE (BYTE ORDER MARK)", 1},
	{"BOM inside", "ab\ufeffc", ledger.RefRuleInvisible, "U+FEFF", 3},
	{"right-to-left override", "abc\u202edcba", ledger.RefRuleInvisible, "U+202E RIGHT-TO-LEFT OVERRIDE", 4},
	{"left-to-right override", "a\u202db", ledger.RefRuleInvisible, "U+202D", 2},
	{"right-to-left isolate", "a\u2067b\u2069", ledger.RefRuleInvisible, "U+2067", 2},
	{"left-to-right mark", "a\u200eb", ledger.RefRuleInvisible, "U+200E", 2},
	{"soft hyphen", "pay\u00admentid", ledger.RefRuleInvisible, "U+00AD SOFT HYPHEN", 4},
	{"variation selector", "ref-1\ufe0f", ledger.RefRuleInvisible, "U+FE0F VARIATION SELECTOR-16", 6},
	{"combining grapheme joiner", "a\u034fb", ledger.RefRuleInvisible, "U+034F", 2},
	{"hangul filler", "a\u3164b", ledger.RefRuleInvisible, "U+3164 HANGUL FILLER", 2},
	{"tag character", "a\U000E0041b", ledger.RefRuleInvisible, "U+E0041", 2},
	{"mongolian vowel separator", "a\u180eb", ledger.RefRuleInvisible, "U+180E", 2},
	{"interlinear annotation", "a\ufff9b", ledger.RefRuleInvisible, "U+FFF9", 2},
	{"line separator", "a\u2028b", ledger.RefRuleSeparator, "line or paragraph separator (U+2028 LINE SEPARATOR)", 2},
	{"paragraph separator", "a\u2029b", ledger.RefRuleSeparator, "U+2029 PARAGRAPH SEPARATOR", 2},
	{"no-break space inside", "a\u00a0b", ledger.RefRuleWhitespace, "whitespace other than the ASCII space (U+00A0 NO-BREAK SPACE)", 2},
	{"thin space inside", "a\u2009b", ledger.RefRuleWhitespace, "U+2009 THIN SPACE", 2},
	{"narrow no-break space inside", "a\u202fb", ledger.RefRuleWhitespace, "U+202F", 2},
	{"ideographic space inside", "a\u3000b", ledger.RefRuleWhitespace, "U+3000 IDEOGRAPHIC SPACE", 2},
	{"ogham space mark inside", "a\u1680b", ledger.RefRuleWhitespace, "U+1680", 2},
	{"private use", "a\ue000b", ledger.RefRuleNotPrintable, "private-use or unassigned code point (U+E000)", 2},
	{"unassigned", "a\U000e0080b", ledger.RefRuleInvisible, "U+E0080", 2}, // default-ignorable, though unassigned
	{"noncharacter", "a\uffffb", ledger.RefRuleNotPrintable, "U+FFFF", 2},
	{"unassigned plane 3", "a\U0003fffdb", ledger.RefRuleNotPrintable, "U+3FFFD", 2},
	{"decomposed é", "cafe\u0301", ledger.RefRuleNFC, `"cafe\u0301" is not in Unicode normalization form NFC: send it as "caf\u00e9"`, 0},
	{"ohm sign", "\u2126", ledger.RefRuleNFC, `send it as "\u03a9"`, 0},
	{"angstrom sign", "10\u212b", ledger.RefRuleNFC, "NFC", 0},
	{"hangul jamo", "\u1100\u1161", ledger.RefRuleNFC, `"\uac00"`, 0},
	{"first problem wins", "a\u200bb\u0000", ledger.RefRuleInvisible, "at character 2", 2},
}

func TestValidateReferenceRefuses(t *testing.T) {
	for _, c := range refusedReferences {
		t.Run(c.name, func(t *testing.T) {
			err := ledger.ValidateReference("reference_id", c.ref)
			var le *ledger.Error
			if !errors.As(err, &le) {
				t.Fatalf("%q: got %v, want an *ledger.Error", c.ref, err)
			}
			if le.Code != ledger.CodeInvalidRequest || !strings.Contains(le.Message, c.message) {
				t.Errorf("%q: %s %q, want invalid_request containing %q", c.ref, le.Code, le.Message, c.message)
			}
			if !strings.HasPrefix(le.Message, "reference_id ") {
				t.Errorf("message does not start with the field: %q", le.Message)
			}
			var d map[string]any
			if err := json.Unmarshal(le.Details, &d); err != nil {
				t.Fatalf("details %s: %v", le.Details, err)
			}
			if d["field"] != "reference_id" || d["rule"] != c.rule {
				t.Errorf("%q: details %s, want field reference_id and rule %s", c.ref, le.Details, c.rule)
			}
			if c.character != 0 && d["character"] != float64(c.character) {
				t.Errorf("%q: details %s, want character %d", c.ref, le.Details, c.character)
			}
			// The message shows invisible and look-alike characters escaped, never raw.
			for _, r := range le.Message {
				if r != '…' && (r > unicode.MaxASCII || !unicode.IsPrint(r)) {
					t.Errorf("message holds %U: %q", r, le.Message)
				}
			}
		})
	}
	// The field name is the caller's.
	err := ledger.ValidateReference("entries[3].reference_id", " x")
	var le *ledger.Error
	if !errors.As(err, &le) || !strings.HasPrefix(le.Message, "entries[3].reference_id ") ||
		!strings.Contains(string(le.Details), `"field":"entries[3].reference_id"`) {
		t.Errorf("field name: %v (%s)", err, le.Details)
	}
	// A long reference is cut in the message.
	err = ledger.ValidateReference("reference_id", strings.Repeat("x", 100)+"\u200b")
	if !errors.As(err, &le) || len(le.Message) > 200 || !strings.Contains(le.Message, "…") {
		t.Errorf("long reference in the message: %q", le.Message)
	}
	// Valid: a nil error, not a typed nil.
	if err := ledger.ValidateReference("reference_id", "ok"); err != nil {
		t.Errorf("valid reference: %#v", err)
	}
}

// FuzzValidateReference: ValidateReference never panics; what it accepts has every property the
// rules promise (and survives a URL path unchanged), and what it refuses is an invalid_request
// that names the field and a rule.
func FuzzValidateReference(f *testing.F) {
	for _, s := range oddReferences {
		f.Add(s)
	}
	for _, s := range []string{"", ".", "..", " a", "a ", "a\tb", "a\u200bb", "\ufeff", "a\u2028", "cafe\u0301", "\xff",
		"a\u00a0b", "\ue000", strings.Repeat("x", 129), "a\u202eb", "\u0000", "%2e%2e", "./", "/.", "a\u3164", "/", "//", "%2F"} {
		f.Add(s)
	}
	rules := []string{ledger.RefRuleRequired, ledger.RefRuleUTF8, ledger.RefRuleLength, ledger.RefRulePathSegment,
		ledger.RefRuleLeadingWhitespace, ledger.RefRuleTrailingWhitespace, ledger.RefRuleControl, ledger.RefRuleInvisible,
		ledger.RefRuleSeparator, ledger.RefRuleWhitespace, ledger.RefRuleNotPrintable, ledger.RefRuleNFC}
	router := http.NewServeMux()
	router.HandleFunc("GET /v1/ledgers/{ledger_id}/entries/{reference_id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.PathValue("reference_id"))
	})
	f.Fuzz(func(t *testing.T, ref string) {
		err := ledger.ValidateReference("reference_id", ref)
		if err != nil {
			var le *ledger.Error
			if !errors.As(err, &le) || le.Code != ledger.CodeInvalidRequest || le.Message == "" {
				t.Fatalf("%q: %#v", ref, err)
			}
			var d map[string]any
			if json.Unmarshal(le.Details, &d) != nil || d["field"] != "reference_id" || !slices.Contains(rules, d["rule"].(string)) {
				t.Fatalf("%q: details %s", ref, le.Details)
			}
			if !utf8.ValidString(le.Message) || strings.ContainsAny(le.Message, "\n\r\u2028\u202e\u200b\ufeff") {
				t.Fatalf("%q: message %q", ref, le.Message)
			}
			return
		}
		n := utf8.RuneCountInString(ref)
		switch {
		case !utf8.ValidString(ref) || n < 1 || n > ledger.MaxReferenceLength:
			t.Fatalf("accepted %q: not 1-128 characters of UTF-8", ref)
		case !norm.NFC.IsNormalString(ref):
			t.Fatalf("accepted %q: not NFC", ref)
		case ref == "." || ref == ".." || ref == "/":
			t.Fatalf("accepted %q", ref)
		case strings.TrimFunc(ref, unicode.IsSpace) != ref:
			t.Fatalf("accepted %q: leading or trailing whitespace", ref)
		}
		for _, r := range ref {
			if !unicode.IsGraphic(r) || unicode.Is(unicode.Cf, r) || (unicode.IsSpace(r) && r != ' ') ||
				unicode.Is(unicode.Variation_Selector, r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) {
				t.Fatalf("accepted %q with %U", ref, r)
			}
		}
		// As a path segment it survives escaping, path cleaning and a router's matching: the
		// entry can be read back by URL, from our API and from the SCB's.
		p := "/v1/ledgers/L/entries/" + url.PathEscape(ref)
		if path.Clean(p) != p {
			t.Fatalf("accepted %q: the path %s is cleaned to %s", ref, p, path.Clean(p))
		}
		if back, err := url.PathUnescape(url.PathEscape(ref)); err != nil || back != ref {
			t.Fatalf("accepted %q: escaping does not round-trip (%q, %v)", ref, back, err)
		}
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, httptest.NewRequest("GET", "http://x"+p, nil))
		if rec.Code != http.StatusOK || rec.Body.String() != ref {
			t.Fatalf("accepted %q: GET %s routes to %d %q", ref, p, rec.Code, rec.Body.String())
		}
	})
}

// TestPostBatchChecksReferences: the Go posting path refuses bad references itself. A single
// posting and a non-atomic batch give the bad entry its own invalid_request and post the rest;
// an atomic batch writes nothing, and the others answer not_applied naming the bad entry.
func TestPostBatchChecksReferences(t *testing.T) {
	d, L := setupLedger(t)
	ctx := context.Background()
	poster := ledger.NewPoster(d.Pool, ledger.PosterConfig{})
	defer poster.Close()

	head := func() int64 {
		t.Helper()
		var seq int64
		if err := d.Pool.QueryRow(ctx, `SELECT head_seq FROM ledgers WHERE id = $1`, L).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	checkBad := func(r ledger.Result, i int, rule string) {
		t.Helper()
		if r.Code != ledger.CodeInvalidRequest || r.Index != i || r.EntryID != 0 || !strings.HasPrefix(r.Message, "reference_id ") ||
			!strings.Contains(string(r.Details), `"rule":"`+rule+`"`) || !strings.Contains(string(r.Details), `"field":"reference_id"`) {
			t.Errorf("entry %d: %+v, want invalid_request for rule %s", i, r, rule)
		}
	}

	// Single postings, through PostBatch and through group commit.
	before := head()
	for _, ref := range []string{" lead", "trail ", "zw\u200bsp", "cafe\u0301", "..", strings.Repeat("r", 129)} {
		res, err := ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", ref)}, false)
		if err != nil || len(res) != 1 || res[0].Code != ledger.CodeInvalidRequest {
			t.Errorf("PostBatch %q: %v %+v", ref, err, res)
		}
		r, err := poster.Post(ctx, L, entry("alice", "bob", "1.00", "USD", ref))
		if err != nil || r.Code != ledger.CodeInvalidRequest || !strings.Contains(string(r.Details), `"field":"reference_id"`) {
			t.Errorf("Poster.Post %q: %v %+v", ref, err, r)
		}
	}
	if head() != before {
		t.Fatal("a bad reference was written")
	}

	// Non-atomic: the bad ones are refused, the rest posted, and a duplicate reference in the
	// batch is still reported with the database's own positions.
	batch := []ledger.EntryInput{
		entry("alice", "bob", "1.00", "USD", "nb-1"),
		entry("alice", "bob", "1.00", "USD", "nb-\u202e2"),
		entry("alice", "bob", "1.00", "USD", "nb-3"),
		entry("alice", "bob", "2.00", "USD", "nb-1"), // conflicts with entry 1 (1-based) of this batch
		entry("alice", "bob", "1.00", "USD", "nb-5 "),
	}
	res, err := ledger.PostBatch(ctx, d.Pool, L, batch, false)
	if err != nil || len(res) != len(batch) {
		t.Fatalf("non-atomic: %v %+v", err, res)
	}
	if res[0].Code != ledger.CodeCreated || res[2].Code != ledger.CodeCreated {
		t.Errorf("valid entries: %+v / %+v", res[0], res[2])
	}
	checkBad(res[1], 1, ledger.RefRuleInvisible)
	checkBad(res[4], 4, ledger.RefRuleTrailingWhitespace)
	if res[3].Code != ledger.CodeReferenceConflict || !strings.Contains(string(res[3].Details), `"batch_entry": 1`) {
		t.Errorf("in-batch conflict: %+v", res[3])
	}
	if got := head(); got != before+2 {
		t.Errorf("head %d, want %d", got, before+2)
	}

	// Atomic: nothing written; the valid entries are not_applied because of the first bad one.
	before = head()
	batch = []ledger.EntryInput{
		entry("alice", "bob", "1.00", "USD", "ab-1"),
		entry("alice", "bob", "1.00", "USD", "ab-2\u00a0x"),
		entry("alice", "bob", "1.00", "USD", "ab-3"),
		entry("alice", "bob", "1.00", "USD", "."),
	}
	res, err = ledger.PostBatch(ctx, d.Pool, L, batch, true)
	if err != nil || len(res) != len(batch) {
		t.Fatalf("atomic: %v %+v", err, res)
	}
	for _, i := range []int{0, 2} {
		if res[i].Code != ledger.CodeNotApplied || !strings.Contains(string(res[i].Details), `"rejected_entry": 2`) ||
			!strings.Contains(string(res[i].Details), `"rejected_result": "invalid_request"`) {
			t.Errorf("atomic entry %d: %+v", i, res[i])
		}
	}
	checkBad(res[1], 1, ledger.RefRuleWhitespace)
	checkBad(res[3], 3, ledger.RefRulePathSegment)
	if head() != before {
		t.Error("an atomic batch with a bad reference wrote something")
	}
	// An earlier real rejection is still the one the others name.
	batch[0] = entry("alice", "nobody", "1.00", "USD", "ab-0")
	res, err = ledger.PostBatch(ctx, d.Pool, L, batch, true)
	if err != nil || res[0].Code != ledger.CodeUnknownAccount || !strings.Contains(string(res[2].Details), `"rejected_entry": 1`) {
		t.Errorf("atomic with an earlier rejection: %v %+v", err, res)
	}
	checkBad(res[1], 1, ledger.RefRuleWhitespace)

	// Every entry bad, and a batch to an unknown ledger (unknown_ledger comes first).
	res, err = ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", "x\n"), entry("alice", "bob", "1.00", "USD", "\u2028")}, true)
	if err != nil || len(res) != 2 {
		t.Fatalf("all bad: %v %+v", err, res)
	}
	checkBad(res[0], 0, ledger.RefRuleTrailingWhitespace)
	checkBad(res[1], 1, ledger.RefRuleLeadingWhitespace)
	res, err = ledger.PostBatch(ctx, d.Pool, "NOPE", []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", "x\n")}, false)
	if err != nil || res[0].Code != ledger.CodeUnknownLedger {
		t.Errorf("unknown ledger: %v %+v", err, res)
	}
	// A missing reference is still the database's answer, in its precedence.
	res, err = ledger.PostBatch(ctx, d.Pool, L, []ledger.EntryInput{entry("alice", "bob", "1.00", "USD", "")}, false)
	if err != nil || res[0].Code != ledger.CodeInvalidRequest || !strings.Contains(res[0].Message, "reference_id is required") {
		t.Errorf("missing reference: %v %+v", err, res)
	}

	// Every odd but valid reference posts, and reads back by itself.
	for i, ref := range oddReferences {
		r, err := poster.Post(ctx, L, entry("alice", "bob", "0.01", "USD", ref))
		if err != nil || r.Code != ledger.CodeCreated {
			t.Errorf("odd reference %d %q: %v %+v", i, ref, err, r)
			continue
		}
		e, err := ledger.GetEntryByReference(ctx, d.Pool, L, ref)
		if err != nil || e.ReferenceID != ref || e.ID != r.EntryID {
			t.Errorf("read back %q: %v %+v", ref, err, e)
		}
	}
}
