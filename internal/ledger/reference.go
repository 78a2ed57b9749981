package ledger

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxReferenceLength is the longest reference id, in characters (Unicode code points).
const MaxReferenceLength = 128

// Rules a reference id can break, as details.rule of the error (for programs; the message says
// the same for people).
const (
	RefRuleRequired           = "required"
	RefRuleUTF8               = "utf8"
	RefRuleLength             = "length"
	RefRulePathSegment        = "path_segment"
	RefRuleLeadingWhitespace  = "leading_whitespace"
	RefRuleTrailingWhitespace = "trailing_whitespace"
	RefRuleControl            = "control_character"
	RefRuleInvisible          = "invisible_character"
	RefRuleSeparator          = "line_separator"
	RefRuleWhitespace         = "whitespace"
	RefRuleNotPrintable       = "not_printable"
	RefRuleNFC                = "nfc"
)

// ValidateReference checks a reference id and returns nil or an *Error with code
// invalid_request, a message that says what is wrong (and where), and details naming field
// (plus rule, and character / code_point / length where they apply).
//
// A reference id is the caller's idempotency key for an entry, and it travels further than the
// ledger: it is a path segment of GET /v1/ledgers/{l}/entries/{reference_id} and of the SCB's
// poll URL, part of the SCB's Idempotency-Key header, and people compare it by eye in statements
// and logs. So it must be one unambiguous, visible string:
//
//   - 1 to MaxReferenceLength characters of valid UTF-8;
//   - no leading or trailing whitespace, and no whitespace inside other than the ASCII space;
//   - no control characters (C0, DEL, C1), no invisible characters (Unicode format characters
//     such as zero-width spaces and joiners, bidi overrides and isolates, the BOM, soft hyphens,
//     and the other default-ignorable code points such as variation selectors), no line or
//     paragraph separators, no private-use or unassigned code points;
//   - in Unicode normalization form NFC, so that "é" has one spelling, not two that look alike;
//   - not "." or "..", which a URL path resolves away, nor "/", which routers (Go's ServeMux
//     among them) take for a trailing slash even when escaped: the entry could not be read back.
//
// Everything else printable stays allowed: quotes, parentheses, %, ?, #, /, letters and marks
// of any script, symbols and emoji.
func ValidateReference(field, ref string) error {
	if e := checkReference(field, ref); e != nil {
		return e
	}
	return nil // not a nil *Error in an error interface
}

func checkReference(field, ref string) *Error {
	fail := func(rule, format string, args ...any) *Error {
		d := map[string]any{"field": field, "rule": rule}
		return Errorf(CodeInvalidRequest, format, args...).WithDetails(d)
	}
	if ref == "" {
		return fail(RefRuleRequired, "%s is required: 1 to %d characters", field, MaxReferenceLength)
	}
	if !utf8.ValidString(ref) {
		return fail(RefRuleUTF8, "%s is not valid UTF-8", field)
	}
	n := utf8.RuneCountInString(ref)
	if n > MaxReferenceLength {
		return Errorf(CodeInvalidRequest, "%s is %d characters long: at most %d", field, n, MaxReferenceLength).
			WithDetails(map[string]any{"field": field, "rule": RefRuleLength, "length": n, "max_length": MaxReferenceLength})
	}
	switch ref {
	case ".", "..":
		return fail(RefRulePathSegment, "%s may not be %q: a URL path resolves it away, so the entry could not be read back", field, ref)
	case "/":
		return fail(RefRulePathSegment, "%s may not be \"/\": as a URL path segment (%%2F) routers take it for a trailing slash, so the entry could not be read back", field)
	}
	if plainASCII(ref) {
		return nil
	}
	return checkRunes(field, ref, n)
}

// checkRunes applies the per-character rules and the NFC rule to ref, n runes of valid UTF-8.
func checkRunes(field, ref string, n int) *Error {
	i := 0
	for _, r := range ref {
		if rule := runeRule(r, i, n); rule != "" {
			return Errorf(CodeInvalidRequest, "%s %s %s (%s) at character %d", field, quoteRef(ref), refRulePhrase[rule], describeRune(r), i+1).
				WithDetails(map[string]any{"field": field, "rule": rule, "character": i + 1, "code_point": fmt.Sprintf("U+%04X", r)})
		}
		i++
	}
	if !norm.NFC.IsNormalString(ref) {
		nfc := norm.NFC.String(ref)
		return Errorf(CodeInvalidRequest, "%s %s is not in Unicode normalization form NFC: send it as %s (the same text, composed)",
			field, quoteRef(ref), quoteRef(nfc)).
			WithDetails(map[string]any{"field": field, "rule": RefRuleNFC, "nfc": nfc})
	}
	return nil
}

// runeRule is the rule that character r breaks at position i (from 0) of a reference of n
// characters, or "" if it breaks none; the first rule that applies wins, in this order. The
// posting function applies the same rules to psql callers: db/functions/reference_rules.sql is
// generated from this function (ReferenceRulesSQL).
func runeRule(r rune, i, n int) string {
	space := unicode.Is(unicode.White_Space, r)
	switch {
	case space && i == 0:
		return RefRuleLeadingWhitespace
	case space && i == n-1:
		return RefRuleTrailingWhitespace
	case unicode.IsControl(r):
		return RefRuleControl
	case invisible(r):
		return RefRuleInvisible
	case r == '\u2028' || r == '\u2029':
		return RefRuleSeparator
	case space && r != ' ':
		return RefRuleWhitespace
	case !unicode.IsGraphic(r):
		return RefRuleNotPrintable
	}
	return ""
}

// refRulePhrase says what a character that breaks a rule of runeRule does, for the message.
var refRulePhrase = map[string]string{
	RefRuleLeadingWhitespace:  "starts with whitespace",
	RefRuleTrailingWhitespace: "ends with whitespace",
	RefRuleControl:            "contains a control character",
	RefRuleInvisible:          "contains an invisible character",
	RefRuleSeparator:          "contains a line or paragraph separator",
	RefRuleWhitespace:         "contains whitespace other than the ASCII space",
	RefRuleNotPrintable:       "contains a private-use or unassigned code point",
}

// plainASCII reports a reference of printable ASCII (space to tilde) that neither starts nor
// ends with a space: it passes every rule of the loop below (ASCII holds no control other than
// those refused here, no format, invisible or separator character, and is NFC), so the common
// case skips the per-rune Unicode table look-ups.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return s != "" && s[0] != ' ' && s[len(s)-1] != ' '
}

// invisible reports the characters that show as nothing: format characters (Cf: zero-width
// space, joiners, bidi marks, overrides and isolates, the BOM, the soft hyphen, ...) and the
// other default-ignorable code points (variation selectors, the combining grapheme joiner,
// Hangul fillers, tag characters).
func invisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || unicode.Is(unicode.Variation_Selector, r) ||
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r)
}

// quoteRef quotes a reference for a message with every non-ASCII character escaped, so that
// what is invisible or looks alike shows as its code point; long ones are cut.
func quoteRef(s string) string {
	const show = 40
	if utf8.RuneCountInString(s) > show {
		r := []rune(s)
		return strconv.QuoteToASCII(string(r[:show])) + "…"
	}
	return strconv.QuoteToASCII(s)
}

// describeRune is "U+200B ZERO WIDTH SPACE" for the characters people meet in references by
// accident, "U+XXXX" for the rest.
func describeRune(r rune) string {
	cp := fmt.Sprintf("U+%04X", r)
	if name := runeName(r); name != "" {
		return cp + " " + name
	}
	return cp
}

func runeName(r rune) string {
	switch r {
	case '\t':
		return "CHARACTER TABULATION"
	case '\n':
		return "LINE FEED"
	case '\v':
		return "LINE TABULATION"
	case '\f':
		return "FORM FEED"
	case '\r':
		return "CARRIAGE RETURN"
	case ' ':
		return "SPACE"
	case 0x7F:
		return "DELETE"
	case 0x85:
		return "NEXT LINE"
	case 0xA0:
		return "NO-BREAK SPACE"
	case 0xAD:
		return "SOFT HYPHEN"
	case 0x34F:
		return "COMBINING GRAPHEME JOINER"
	case 0x1680:
		return "OGHAM SPACE MARK"
	case 0x180E:
		return "MONGOLIAN VOWEL SEPARATOR"
	case 0x2007:
		return "FIGURE SPACE"
	case 0x2009:
		return "THIN SPACE"
	case 0x200B:
		return "ZERO WIDTH SPACE"
	case 0x200C:
		return "ZERO WIDTH NON-JOINER"
	case 0x200D:
		return "ZERO WIDTH JOINER"
	case 0x200E:
		return "LEFT-TO-RIGHT MARK"
	case 0x200F:
		return "RIGHT-TO-LEFT MARK"
	case 0x2028:
		return "LINE SEPARATOR"
	case 0x2029:
		return "PARAGRAPH SEPARATOR"
	case 0x202A:
		return "LEFT-TO-RIGHT EMBEDDING"
	case 0x202B:
		return "RIGHT-TO-LEFT EMBEDDING"
	case 0x202C:
		return "POP DIRECTIONAL FORMATTING"
	case 0x202D:
		return "LEFT-TO-RIGHT OVERRIDE"
	case 0x202E:
		return "RIGHT-TO-LEFT OVERRIDE"
	case 0x202F:
		return "NARROW NO-BREAK SPACE"
	case 0x205F:
		return "MEDIUM MATHEMATICAL SPACE"
	case 0x2060:
		return "WORD JOINER"
	case 0x2066:
		return "LEFT-TO-RIGHT ISOLATE"
	case 0x2067:
		return "RIGHT-TO-LEFT ISOLATE"
	case 0x2068:
		return "FIRST STRONG ISOLATE"
	case 0x2069:
		return "POP DIRECTIONAL ISOLATE"
	case 0x3000:
		return "IDEOGRAPHIC SPACE"
	case 0x3164:
		return "HANGUL FILLER"
	case 0xFE0F:
		return "VARIATION SELECTOR-16"
	case 0xFEFF:
		return "ZERO WIDTH NO-BREAK SPACE (BYTE ORDER MARK)"
	}
	return ""
}

// referenceErrors checks the reference of every entry of a batch (PostBatch: every Go path to
// the posting function, HTTP, CLI, settlements and group commit alike). It returns nil when all
// are valid, else one error per entry (nil for the valid ones). A missing (empty) reference is
// left to the database, which answers it with the other shape errors in its documented
// precedence (docs/error-codes.md).
func referenceErrors(entries []EntryInput) []*Error {
	var out []*Error
	for i, e := range entries {
		if e.ReferenceID == "" {
			continue
		}
		if err := checkReference("reference_id", e.ReferenceID); err != nil {
			if out == nil {
				out = make([]*Error, len(entries))
			}
			out[i] = err
		}
	}
	return out
}

// encodeBatch is the JSON array the posting function receives. An entry with an invalid
// reference goes as JSON null: the function refuses a non-object at its position without
// writing it, so the positions, the atomic rule (nothing written, the others not_applied naming
// the first rejected entry) and every other entry's result stay exactly the database's;
// withReferenceErrors then puts the reference's own error in its place.
func encodeBatch(entries []EntryInput, bad []*Error) ([]byte, error) {
	if bad == nil {
		return json.Marshal(entries)
	}
	items := make([]any, len(entries))
	for i := range entries {
		if bad[i] == nil {
			items[i] = entries[i]
		}
	}
	return json.Marshal(items)
}

// withReferenceErrors replaces the database's "not a JSON object" result of each entry that was
// sent as null by its reference error. A result the database gave for another reason that comes
// first (unknown_ledger for a batch to a ledger that does not exist) is kept.
func withReferenceErrors(results []Result, bad []*Error) []Result {
	if bad == nil {
		return results
	}
	for i := range results {
		r := &results[i]
		if r.Index < 0 || r.Index >= len(bad) || bad[r.Index] == nil || r.Code != CodeInvalidRequest {
			continue
		}
		e := bad[r.Index]
		*r = Result{Index: r.Index, Code: e.Code, Message: e.Message, Details: e.Details}
	}
	return results
}

// reservedPrefixes are the reference_id prefixes of entries that only the operator's own tools
// post: reconciliation's corrections (recon-<discrepancy id>), backfill rollbacks' reversals
// (backfill-reversal:seq-<n>) and the ids backfill generates for rows without one (BACKFILL-...).
// Those tools compute the reference in advance, so an API client that posted it first would block
// the correction, the rollback or the import; the API refuses them (ReservedReference).
var reservedPrefixes = []string{"recon-", "backfill-reversal:", "BACKFILL-"}

// ReservedReference reports whether ref starts with a prefix reserved for the operator's tools,
// and which.
func ReservedReference(ref string) (string, bool) {
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(ref, p) {
			return p, true
		}
	}
	return "", false
}
