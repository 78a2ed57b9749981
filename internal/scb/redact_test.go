package scb

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// keyForms are the spellings of a key that must never survive Excerpt, as the issue lists them:
// plain, URL-encoded (query and path), HTML-escaped, base64 (standard and URL alphabets, padded
// and raw, of the key and of "Bearer <key>") and hex; each in any letter case.
func keyForms(key string) []string {
	out := []string{key, url.QueryEscape(key), url.PathEscape(key), html.EscapeString(key), hex.EncodeToString([]byte(key))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		out = append(out, enc.EncodeToString([]byte(key)), enc.EncodeToString([]byte("Bearer "+key)))
	}
	return out
}

// containsFold reports whether s contains sub under Unicode simple case folding.
func containsFold(s, sub string) bool {
	n := utf8.RuneCountInString(sub)
	for i := range s {
		if !utf8.RuneStart(s[i]) {
			continue
		}
		j, k := i, 0
		for j < len(s) && k < n {
			_, size := utf8.DecodeRuneInString(s[j:])
			j += size
			k++
		}
		if k == n && strings.EqualFold(s[i:j], sub) {
			return true
		}
	}
	return false
}

// checkExcerpt: the shape every excerpt has, and no form of any key in it.
func checkExcerpt(t *testing.T, out string, keys ...string) {
	t.Helper()
	if len(out) > MaxExcerpt || !utf8.ValidString(out) || out != strings.TrimSpace(out) || strings.Contains(out, "  ") {
		t.Fatalf("excerpt %q: not at most %d bytes of trimmed, valid UTF-8", out, MaxExcerpt)
	}
	for _, r := range out {
		if !unicode.IsPrint(r) && r != ' ' {
			t.Fatalf("excerpt %q holds %U", out, r)
		}
	}
	for _, k := range keys {
		for _, f := range keyForms(k) {
			if containsFold(out, f) {
				t.Fatalf("excerpt %q holds the key as %q", out, f)
			}
		}
	}
}

func TestExcerptRemovesEveryForm(t *testing.T) {
	const key = "sk_live_TOPSECRET_0123456789"
	odd := `k/e+y=1&2 "<q>" 'x' %41 ü` // a key with characters every encoding treats differently
	b64 := func(enc *base64.Encoding, s string) string { return enc.EncodeToString([]byte(s)) }
	wrap := func(s string, n int) string { // base64 as MIME wraps it
		var b strings.Builder
		for len(s) > n {
			b.WriteString(s[:n] + "\r\n")
			s = s[n:]
		}
		return b.String() + s
	}
	cases := []struct {
		name, key, text string
	}{
		{"plain", key, "invalid API key " + key + " for this account"},
		{"upper case", key, "KEY=" + strings.ToUpper(key)},
		{"lower case", key, "key: " + strings.ToLower(key)},
		{"mixed case", key, "Sk_LiVe_tOpSeCrEt_0123456789"},
		{"long s", key, "\u017fk_live_TOPSECRET_0123456789"},
		{"Kelvin sign", key, "s\u212a_live_TOPSECRET_0123456789"},
		{"bearer header echoed", key, "Authorization: Bearer " + key + "\r\nAccept: */*"},
		{"JSON echo", key, `{"error":{"message":"bad key","echo":{"Authorization":["Bearer ` + key + `"]}}}`},
		{"query escape", odd, "GET /?key=" + url.QueryEscape(odd)},
		{"path escape", odd, "GET /keys/" + url.PathEscape(odd) + "/x"},
		{"query escape, lower-case hex", odd, "k=" + strings.ToLower(url.QueryEscape(odd))},
		{"HTML escape", odd, "<p>your key " + html.EscapeString(odd) + " is wrong</p>"},
		{"JSON escape as encoding/json writes it", odd, `{"key":"k/e+y=1\u00262 \"\u003cq\u003e\" 'x' %41 ü"}`},
		{"JSON escape", odd, `{"key":"k/e+y=1&2 \"<q>\" 'x' %41 ü"}`},
		{"hex", key, "hex " + hex.EncodeToString([]byte(key))},
		{"HEX", key, "HEX " + strings.ToUpper(hex.EncodeToString([]byte(key)))},
		{"base64", key, "b64 " + b64(base64.StdEncoding, key)},
		{"base64 raw", key, "b64 " + b64(base64.RawStdEncoding, key)},
		{"base64 url", odd, "b64 " + b64(base64.URLEncoding, odd)},
		{"base64 raw url", odd, "b64 " + b64(base64.RawURLEncoding, odd)},
		{"base64 of Bearer", key, "auth " + b64(base64.StdEncoding, "Bearer "+key)},
		{"base64 of Bearer, URL alphabet", odd, "auth " + b64(base64.RawURLEncoding, "Bearer "+odd)},
		{"base64 of a whole header, offset 1", key, b64(base64.StdEncoding, "Authorization: Bearer "+key+"\r\n")},
		{"base64 of a whole header, offset 2", key, b64(base64.StdEncoding, "X: Bearer "+key)},
		{"base64 of JSON", key, b64(base64.StdEncoding, `{"token":"`+key+`"}`)},
		{"base64 wrapped", key, wrap(b64(base64.StdEncoding, strings.Repeat("x", 50)+key+strings.Repeat("y", 50)), 20)},
		{"base64 in upper case", key, strings.ToUpper(b64(base64.StdEncoding, key))},
		{"split by zero-width spaces", key, "sk_live_\u200bTOPSECRET\u200b_0123456789"},
		{"split by a line break", key, "sk_live_TOP\nSECRET_0123456789"},
		{"split by bidi controls", key, "sk_live\u202e_TOPSECRET_0123456789\u202c"},
		{"cut off at the end", key, "the key was " + key[:20]},
		{"cut off at the start", key, key[10:] + " was the key"},
		{"many times", key, strings.Repeat(key+" ", 30)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := Excerpt([]byte(c.text), c.key)
			checkExcerpt(t, out, c.key)
			if !strings.Contains(out, "[redacted]") {
				t.Errorf("%q -> %q: nothing redacted", c.text, out)
			}
			if strings.Contains(strings.ToLower(out), "topsecret") || strings.Contains(out, "e+y=") || strings.Contains(out, "k%2Fe") {
				t.Errorf("%q -> %q: a piece of the key is left", c.text, out)
			}
		})
	}
}

func TestExcerptShape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"  \n\t ", ""},
		{"simple message", "simple message"},
		{"two\nlines\r\n\tand tabs", "two lines and tabs"},
		{"bidi \u202eevil\u202c and zero\u200bwidth", "bidi evil and zero width"},
		{"bad \xff\xfe bytes", "bad ?? bytes"},
		{"nul\x00byte and \x1b[31mansi", "nul byte and [31mansi"},
		{"line\u2028sep", "line sep"},
		{"ünïcödé ✓ 😀", "ünïcödé ✓ 😀"},
	} {
		if got := Excerpt([]byte(c.in)); got != c.want {
			t.Errorf("Excerpt(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// Long text is cut to MaxExcerpt bytes, on a rune boundary, with "…".
	long := strings.Repeat("é", 500)
	out := Excerpt([]byte(long))
	if len(out) > MaxExcerpt || !strings.HasSuffix(out, "…") || !utf8.ValidString(out) || len(out) < MaxExcerpt-4 {
		t.Errorf("long text: %d bytes %q", len(out), out)
	}
	// A key that straddles the cut is redacted before the cut, never shown in part.
	text := strings.Repeat("a", MaxExcerpt-10) + " " + secret + " tail"
	out = Excerpt([]byte(text), secret)
	checkExcerpt(t, out, secret)
	if strings.Contains(out, "sk_") {
		t.Errorf("key at the cut: %q", out)
	}
	// A big body is read only in part: fast, and a key far in is not shown either.
	huge := []byte(strings.Repeat("x ", 4<<20) + secret)
	start := time.Now()
	out = Excerpt(huge, secret)
	if d := time.Since(start); d > time.Second {
		t.Errorf("8 MiB body took %v", d)
	}
	checkExcerpt(t, out, secret)
	// A body of white space then a key: the key is found whole even at the end of the window.
	for _, pad := range []int{excerptWindow - 5, excerptWindow - len(secret)/2, excerptWindow - len(secret), excerptWindow} {
		out = Excerpt([]byte(strings.Repeat(" ", pad)+secret+" after"), secret)
		checkExcerpt(t, out, secret)
		if strings.Contains(out, "sk_live") {
			t.Errorf("pad %d: %q", pad, out)
		}
	}
	// Several secrets at once.
	out = Excerpt([]byte("a=alpha-secret-1 b=bravo-secret-2"), "alpha-secret-1", "bravo-secret-2")
	if out != "a=[redacted] b=[redacted]" {
		t.Errorf("two secrets: %q", out)
	}
	// Secrets that the notice or the mark would spell: nothing is shown rather than them.
	for _, k := range []string{"redacted", "[redacted]", "e", "withheld"} {
		out := Excerpt([]byte("text with "+k+" inside"), k)
		if containsFold(out, k) {
			t.Errorf("secret %q: %q", k, out)
		}
	}
	// An empty secret removes nothing.
	if out := Excerpt([]byte("abc"), ""); out != "abc" {
		t.Errorf("empty secret: %q", out)
	}
}

// FuzzExcerpt: whatever an SCB sends and wherever it puts the key, in any of its forms, the
// excerpt is short, one line, printable, and holds no form of the key.
func FuzzExcerpt(f *testing.F) {
	f.Add([]byte("invalid key "), []byte(" (401)"), "sk_live_TOPSECRET_0123456789", uint8(0), uint8(0))
	f.Add([]byte("Authorization: "), []byte("\r\n"), "k/e+y=1&2 <q> ü", uint8(1), uint8(1))
	f.Add([]byte(strings.Repeat(" ", 8190)), []byte("x"), "0123456789abcdef", uint8(7), uint8(2))
	f.Add([]byte("\xff\x00"), []byte("\u202e"), "AbCdEfGhIj", uint8(12), uint8(3))
	f.Add([]byte(`{"message":"`), []byte(`"}`), `q"u\o/te`, uint8(3), uint8(4))
	f.Fuzz(func(t *testing.T, before, after []byte, key string, form, variant uint8) {
		if len(key) < 8 || !utf8.ValidString(key) || strings.IndexFunc(key, func(r rune) bool {
			return !unicode.IsGraphic(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)
		}) >= 0 {
			return // keys are printable tokens; a key of spaces cannot be kept out of any text
		}
		forms := keyForms(key)
		encoded := forms[int(form)%len(forms)]
		switch variant % 5 {
		case 1:
			encoded = strings.ToUpper(encoded)
		case 2:
			encoded = strings.ToLower(encoded)
		case 3: // split by a line break in the middle
			if i := len(encoded) / 2; utf8.RuneStart(encoded[i]) {
				encoded = encoded[:i] + "\r\n" + encoded[i:]
			}
		case 4:
			encoded = encoded + encoded
		}
		body := append(append(append([]byte{}, before...), encoded...), after...)
		checkExcerpt(t, Excerpt(body, key), key)
		checkExcerpt(t, excerpt(body, 40, key), key)
	})
}

func TestReason(t *testing.T) {
	de := &DeliveryError{SCB: "SCB-1", Op: "POST", Reason: "401 Unauthorized from SCB-1 (the SCB refused our API key)"}
	if got := Reason(fmt.Errorf("wrapped: %w", de)); got != de.Reason {
		t.Errorf("Reason of a DeliveryError: %q", got)
	}
	if got := Reason(errors.New("line one\nline two\u202e" + strings.Repeat("x", 500))); !strings.HasPrefix(got, "error not classified by the SCB client: line one line two") ||
		len(got) > 300 || strings.ContainsAny(got, "\n\u202e") {
		t.Errorf("Reason of another error: %q", got)
	}
	if Reason(nil) != "" {
		t.Error("Reason(nil)")
	}
}
