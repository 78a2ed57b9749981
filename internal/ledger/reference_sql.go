package ledger

import (
	"fmt"
	"strings"
	"unicode"
)

// ReferenceRulesSQL renders db/functions/reference_rules.sql: the reference-id rules of
// ValidateReference as SQL functions, so that the posting function holds psql callers to the
// rules the Go paths apply, from one source. The character classes are computed here from
// runeRule over every code point, with Go's Unicode tables, so the two sides agree on which
// characters each rule refuses (TestReferenceRulesAgree compares the two sides at the edges of
// every class); only NFC is the database's own (IS NFC NORMALIZED: TestReferenceNFCAgrees).
// A Go release with newer Unicode tables changes the file (TestReferenceRulesFile says so).
func ReferenceRulesSQL() string {
	classes := map[string]*runeRanges{}
	bad, space := &runeRanges{}, &runeRanges{}
	for r := rune(1); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue // surrogates: no UTF-8 text holds them
		}
		if unicode.Is(unicode.White_Space, r) {
			space.add(r)
		}
		// A character in the middle of a reference (neither first nor last).
		if rule := runeRule(r, 1, 3); rule != "" {
			bad.add(r)
			if classes[rule] == nil {
				classes[rule] = &runeRanges{}
			}
			classes[rule].add(r)
		}
	}
	order := []string{RefRuleControl, RefRuleInvisible, RefRuleSeparator, RefRuleWhitespace, RefRuleNotPrintable}
	if len(classes) != len(order) {
		panic("runeRule and ReferenceRulesSQL do not have the same per-character rules")
	}
	var b strings.Builder
	b.WriteString(`-- Generated from internal/ledger/reference.go (Go's Unicode ` + unicode.Version + ` tables); do not edit.
-- After changing the rules:
--   go test ./internal/ledger -run TestReferenceRulesFile -update
--
-- The reference-id rules (docs/security.md, "Reference ids") for the posting function, which
-- applies them to every entry whatever its caller: the API and the other Go paths check them
-- first (ledger.ValidateReference, with the characters' names in the message), psql callers of
-- post_ledger_entry and post_ledger_entries meet them here. Only the parse stage (PL/pgSQL) calls
-- these functions, so this file may be applied after posting.sql.

-- The rule one character breaks in the middle of a reference (it breaks one).
CREATE OR REPLACE FUNCTION dl_reference_rune_rule(p_c text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
`)
	for _, rule := range order {
		if classes[rule] == nil {
			panic("reference rule " + rule + " refuses no character")
		}
		fmt.Fprintf(&b, "    WHEN p_c ~ '^[%s]$' THEN %s\n", classes[rule].String(), sqlQuote(rule))
	}
	b.WriteString(`END;
REVOKE ALL ON FUNCTION dl_reference_rune_rule(text) FROM PUBLIC;

`)
	badClass := bad.String()
	spaceClass := "[" + space.String() + "]"
	fmt.Fprintf(&b, `-- The first character refused in the middle of a reference (its position from 1), or length + 1.
CREATE OR REPLACE FUNCTION dl_reference_first_refused(p_ref text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN length(substring(p_ref FROM '^[^%[1]s]*')) + 1;
REVOKE ALL ON FUNCTION dl_reference_first_refused(text) FROM PUBLIC;

-- The per-character rules and NFC, for a reference that is not plain ASCII, in the order of the Go
-- loop: whitespace first or last, else the first character refused in the middle.
CREATE OR REPLACE FUNCTION dl_reference_character_rule(p_ref text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT CASE
            WHEN p_ref ~ '^%[2]s' THEN %[3]s
            WHEN c.k < c.n THEN dl_reference_rune_rule(substr(p_ref, c.k, 1))
            WHEN p_ref ~ '%[2]s$' THEN %[4]s
            WHEN c.k = c.n THEN dl_reference_rune_rule(substr(p_ref, c.k, 1))
            WHEN p_ref IS NOT NFC NORMALIZED THEN %[5]s
        END
          FROM (SELECT dl_reference_first_refused(p_ref) AS k, length(p_ref) AS n) c);
REVOKE ALL ON FUNCTION dl_reference_character_rule(text) FROM PUBLIC;

-- The rule a reference breaks (ledger.RefRule*), NULL if none: the first in the order of
-- ledger.ValidateReference.
CREATE OR REPLACE FUNCTION dl_reference_rule(p_ref text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN p_ref IS NULL OR p_ref = '' THEN %[6]s
    WHEN length(p_ref) > %[7]d THEN %[8]s
    WHEN p_ref IN ('.', '..', '/') THEN %[9]s
    -- printable ASCII that neither starts nor ends with a space breaks no other rule
    WHEN p_ref ~ '^[!-~](?:[ -~]*[!-~])?$' THEN NULL
    ELSE dl_reference_character_rule(p_ref)
END;
REVOKE ALL ON FUNCTION dl_reference_rule(text) FROM PUBLIC;

`, badClass, spaceClass, sqlQuote(RefRuleLeadingWhitespace), sqlQuote(RefRuleTrailingWhitespace), sqlQuote(RefRuleNFC),
		sqlQuote(RefRuleRequired), MaxReferenceLength, sqlQuote(RefRuleLength), sqlQuote(RefRulePathSegment))

	// The message and details: the words of ValidateReference, without the characters' names.
	b.WriteString(`-- A reference in a message, as Go's strconv.QuoteToASCII writes it (ledger's quoteRef): every
-- character that is not printable ASCII escaped, so that what is invisible or looks alike shows
-- as its code point; cut after 40 characters.
CREATE OR REPLACE FUNCTION dl_reference_quote(p_ref text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '"' || coalesce((SELECT string_agg(CASE
                 WHEN u.c IN ('"', '\') THEN '\' || u.c
                 WHEN u.n = 7 THEN '\a' WHEN u.n = 8 THEN '\b' WHEN u.n = 12 THEN '\f' WHEN u.n = 10 THEN '\n'
                 WHEN u.n = 13 THEN '\r' WHEN u.n = 9 THEN '\t' WHEN u.n = 11 THEN '\v'
                 WHEN u.n < 32 OR u.n = 127 THEN '\x' || lpad(to_hex(u.n), 2, '0')
                 WHEN u.n < 127 THEN u.c
                 WHEN u.n < 65536 THEN '\u' || lpad(to_hex(u.n), 4, '0')
                 ELSE '\U' || lpad(to_hex(u.n), 8, '0') END, '' ORDER BY u.k)
          FROM (SELECT t.c, ascii(t.c) AS n, t.k
                  FROM regexp_split_to_table(left(p_ref, 40), '') WITH ORDINALITY AS t(c, k)) u), '')
       || '"' || CASE WHEN length(p_ref) > 40 THEN '…' ELSE '' END;
REVOKE ALL ON FUNCTION dl_reference_quote(text) FROM PUBLIC;

`)
	fmt.Fprintf(&b, `-- Where a refused reference goes wrong: its rule, and the character at fault (position from 1)
-- for the per-character rules. p_raw is the entry's reference_id as JSON (a string, or not).
CREATE OR REPLACE FUNCTION dl_reference_fault(p_raw jsonb, OUT ref text, OUT rule text, OUT k integer, OUT code_point text)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    h text;
BEGIN
    IF jsonb_typeof(p_raw) = 'string' THEN
        ref := p_raw #>> '{}';
    END IF;
    rule := dl_reference_rule(ref);
    k := CASE WHEN rule = %[1]s THEN 1
              WHEN rule = %[2]s THEN length(ref)
              WHEN rule IN (%[3]s) THEN dl_reference_first_refused(ref) END;
    IF k IS NOT NULL THEN
        h := upper(to_hex(ascii(substr(ref, k, 1))));
        code_point := 'U+' || lpad(h, greatest(4, length(h)), '0');
    END IF;
END $$;
REVOKE ALL ON FUNCTION dl_reference_fault(jsonb) FROM PUBLIC;

`, sqlQuote(RefRuleLeadingWhitespace), sqlQuote(RefRuleTrailingWhitespace), sqlList(order))
	b.WriteString(`-- The message for a refused reference (called only for a rejection).
CREATE OR REPLACE FUNCTION dl_reference_message(p_raw jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT CASE f.rule
`)
	fmt.Fprintf(&b, "            WHEN %s THEN format('reference_id is required: a string of 1 to %d characters, got %%s', coalesce(left(p_raw::text, 300), 'nothing'))\n",
		sqlQuote(RefRuleRequired), MaxReferenceLength)
	fmt.Fprintf(&b, "            WHEN %s THEN format('reference_id is %%s characters long: at most %d', length(f.ref))\n",
		sqlQuote(RefRuleLength), MaxReferenceLength)
	fmt.Fprintf(&b, "            WHEN %s THEN format('reference_id may not be %%s: a URL path resolves it away or takes it for a trailing slash, so the entry could not be read back', p_raw)\n",
		sqlQuote(RefRulePathSegment))
	fmt.Fprintf(&b, "            WHEN %s THEN format('reference_id %%s is not in Unicode normalization form NFC: send it as %%s (the same text, composed)', dl_reference_quote(f.ref), dl_reference_quote(normalize(f.ref, NFC)))\n",
		sqlQuote(RefRuleNFC))
	b.WriteString("            ELSE format('reference_id %s %s (%s) at character %s', dl_reference_quote(f.ref),\n                        CASE f.rule")
	for _, rule := range append([]string{RefRuleLeadingWhitespace, RefRuleTrailingWhitespace}, order...) {
		fmt.Fprintf(&b, "\n                          WHEN %s THEN %s", sqlQuote(rule), sqlQuote(refRulePhrase[rule]))
	}
	b.WriteString(` END,
                        f.code_point, f.k)
        END
          FROM dl_reference_fault(p_raw) f WHERE f.rule IS NOT NULL);
REVOKE ALL ON FUNCTION dl_reference_message(jsonb) FROM PUBLIC;

-- The details of a refused reference, as ledger.ValidateReference gives them: field and rule, the
-- character and its code point where one is at fault, the length and its limit, the composed form
-- for nfc.
CREATE OR REPLACE FUNCTION dl_reference_details(p_raw jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (SELECT jsonb_strip_nulls(jsonb_build_object('field', 'reference_id', 'rule', f.rule, 'character', f.k,
                                                    'code_point', f.code_point,
`)
	fmt.Fprintf(&b, "                                                    'length', CASE WHEN f.rule = %[1]s THEN length(f.ref) END,\n"+
		"                                                    'max_length', CASE WHEN f.rule = %[1]s THEN %[2]d END,\n", sqlQuote(RefRuleLength), MaxReferenceLength)
	fmt.Fprintf(&b, "                                                    'nfc', CASE WHEN f.rule = %s THEN normalize(f.ref, NFC) END))\n", sqlQuote(RefRuleNFC))
	b.WriteString(`          FROM dl_reference_fault(p_raw) f WHERE f.rule IS NOT NULL);
REVOKE ALL ON FUNCTION dl_reference_details(jsonb) FROM PUBLIC;
`)
	return b.String()
}

func sqlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = sqlQuote(s)
	}
	return strings.Join(q, ", ")
}

// runeRanges collects code points, added in increasing order, as ranges.
type runeRanges struct{ lo, hi []rune }

func (rr *runeRanges) add(r rune) {
	if n := len(rr.hi); n > 0 && rr.hi[n-1] == r-1 {
		rr.hi[n-1] = r
		return
	}
	rr.lo = append(rr.lo, r)
	rr.hi = append(rr.hi, r)
}

// String is the ranges as the inside of a PostgreSQL regular expression bracket, every character
// written as an escape (\uXXXX, \UXXXXXXXX), so that none is read as syntax.
func (rr *runeRanges) String() string {
	var b strings.Builder
	for i := range rr.lo {
		b.WriteString(regexpEscape(rr.lo[i]))
		if rr.hi[i] != rr.lo[i] {
			b.WriteByte('-')
			b.WriteString(regexpEscape(rr.hi[i]))
		}
	}
	return b.String()
}

func regexpEscape(r rune) string {
	if r <= 0xFFFF {
		return fmt.Sprintf(`\u%04x`, r)
	}
	return fmt.Sprintf(`\U%08x`, r)
}
