package scb

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxExcerpt is the most of an SCB's own text (bytes) that an error, a log line or the outbox's
// last_error keeps.
const MaxExcerpt = 200

// excerptWindow is how much of a text Excerpt reads: far more than it shows, so that an
// excerpt is not empty because the text starts with a page of white space, and bounded, so that
// an 8 MiB error page costs no more than a short one.
const excerptWindow = 8 << 10

// redactedMark stands where a secret was.
const redactedMark = "[redacted]"

// withheld is the whole excerpt when the secrets cannot be kept out otherwise (a secret that is
// a piece of the mark itself, say).
const withheld = "(text withheld: it could not be shown without the API key)"

// Excerpt is what we keep of text an SCB sent us (an error body, a message, a header): at most
// MaxExcerpt bytes on one line, printable characters only (control, format and bidi characters
// and line breaks become spaces, runs of white space one space, invalid UTF-8 "?"), cut with
// "…", and with every form of every secret replaced by "[redacted]". The forms of a secret s are
// s itself, its URL encodings (query and path), its HTML and JSON escapings, its hex, and its
// base64 in the standard and URL alphabets, padded or not, at any alignment (so also inside
// the base64 of "Bearer s" or of a whole echoed header), each in any letter case, and each
// found even when the SCB split it with line breaks, white space or invisible characters.
//
// An SCB may echo our request, Authorization header included, in an error page; nothing it
// sends is stored or shown except through Excerpt.
func Excerpt(body []byte, secrets ...string) string {
	return excerpt(body, MaxExcerpt, secrets...)
}

// excerpt is Excerpt with another length limit (at least 16 bytes).
func excerpt(body []byte, limit int, secrets ...string) string {
	limit = max(limit, 16)
	forms := secretForms(secrets)
	src := body[:min(len(body), excerptWindow)]
	mask := matchForms(src, forms)
	maskPartial(src, forms, mask)

	var b strings.Builder
	space := true // at the start, or after a space: no further space
	i := 0
	for i < len(src) && b.Len() <= limit {
		if mask[i] {
			for i < len(mask) && mask[i] {
				i++
			}
			b.WriteString(redactedMark)
			space = false
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		i += size
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteByte('?')
			space = false
		case unicode.IsSpace(r) || !unicode.IsPrint(r):
			// Control, format (bidi overrides, zero-width), separators, private use: a space,
			// never nothing, so that dropping them cannot join two pieces into a secret.
			if !space {
				b.WriteByte(' ')
				space = true
			}
		default:
			b.WriteRune(r)
			space = false
		}
	}
	out := strings.TrimRight(b.String(), " ")
	if out != "" && (len(out) > limit || i < len(body)) {
		out = cut(out, limit)
	}
	// The mask found every form in the text; this makes sure that what we built from it (cut,
	// spaces, marks) does not spell one again.
	if slices.Contains(matchForms([]byte(out), forms), true) {
		if slices.Contains(matchForms([]byte(withheld), forms), true) {
			return "" // a secret so short that even the notice spells it
		}
		return withheld
	}
	return out
}

// cut shortens s to at most limit bytes, on a rune boundary, and ends it with "…" (counted).
func cut(s string, limit int) string {
	const ell = "…"
	if len(s)+len(ell) <= limit {
		return s + ell
	}
	n := limit - len(ell)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimRight(s[:n], " ") + ell
}

// minPartial is the shortest piece of a form at either end of the text that is taken for a
// secret cut short (by the SCB, or by the window Excerpt reads).
const minPartial = 4

// maskPartial marks a start of data that is the end of a form, and an end of data that is the
// start of one: a secret the text cuts through.
func maskPartial(data []byte, forms []string, mask []bool) {
	v := viewOf(data)
	if v.text == "" {
		return
	}
	for _, f := range forms {
		for k := min(len(f)-1, len(v.text)); k >= minPartial; k-- {
			if strings.HasSuffix(v.text, f[:k]) {
				for j := v.src[len(v.text)-k]; j < len(data); j++ {
					mask[j] = true
				}
				break
			}
		}
		for k := min(len(f)-1, len(v.text)); k >= minPartial; k-- {
			if strings.HasPrefix(v.text, f[len(f)-k:]) {
				for j := 0; j < v.end[k-1]; j++ {
					mask[j] = true
				}
				break
			}
		}
	}
}

// secretForms returns the spellings of secrets to look for, folded (see fold) and without the
// characters that matching skips, longest first.
func secretForms(secrets []string) []string {
	var raw []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		raw = append(raw, s, url.QueryEscape(s), url.PathEscape(s), html.EscapeString(s))
		if j, err := json.Marshal(s); err == nil { // with \u003c etc., as encoding/json writes it
			raw = append(raw, string(j[1:len(j)-1]))
		}
		raw = append(raw, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)) // plain JSON escaping
		raw = append(raw, hex.EncodeToString([]byte(s)))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			raw = append(raw, enc.EncodeToString([]byte(s)), enc.EncodeToString([]byte("Bearer "+s)))
		}
		// Inside a longer base64 text the secret starts at any byte offset mod 3; the characters
		// that depend on its bytes only are the same whatever surrounds it.
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			for pad := range 3 {
				e := enc.EncodeToString(append(make([]byte, pad), s...))
				from, to := (8*pad+5)/6, 8*(pad+len(s))/6
				if to-from >= minCore {
					raw = append(raw, e[from:to])
				}
			}
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range raw {
		v := viewOf([]byte(f)).text
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// minCore is the shortest aligned base64 piece looked for on its own: shorter ones would match
// by chance (the whole encodings are always looked for).
const minCore = 8

// view is a text as matching sees it: letters folded to one case, and white space, control and
// invisible characters left out. src and end map each byte of text back to its rune in the
// original.
type view struct {
	text     string
	src, end []int
}

func viewOf(data []byte) view {
	var b strings.Builder
	var src, end []int
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if skipped(r, size) {
			i += size
			continue
		}
		f := fold(r)
		n := utf8.RuneLen(f)
		if f == utf8.RuneError {
			n = 3
		}
		b.WriteRune(f)
		for range n {
			src, end = append(src, i), append(end, i+size)
		}
		i += size
	}
	return view{text: b.String(), src: src, end: end}
}

// skipped: characters an SCB could put inside a secret without changing what a reader (or a
// decoder) takes it for: white space and line breaks (base64 is often wrapped), control and
// format characters (zero-width, bidi).
func skipped(r rune, size int) bool {
	if r == utf8.RuneError && size <= 1 {
		return false
	}
	return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// fold maps a rune to one representative of its case-folding orbit (the smallest), so that
// "SK", "sk", "ſK" and "sK" (Kelvin sign) all compare equal.
func fold(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// matchForms marks the bytes of data that belong to an occurrence of a form.
func matchForms(data []byte, forms []string) []bool {
	mask := make([]bool, len(data))
	if len(forms) == 0 {
		return mask
	}
	v := viewOf(data)
	for _, f := range forms {
		for from := 0; from+len(f) <= len(v.text); {
			k := strings.Index(v.text[from:], f)
			if k < 0 {
				break
			}
			at := from + k
			for j := v.src[at]; j < v.end[at+len(f)-1]; j++ {
				mask[j] = true
			}
			from = at + 1
		}
	}
	return mask
}

// excerpt is Excerpt with this client's key.
func (c *Client) excerpt(s string, limit int) string {
	return excerpt([]byte(s), limit, *c.key)
}
