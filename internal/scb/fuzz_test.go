package scb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// In FuzzLoadConfigFile's input, $KEY and $B64 stand for two API keys: a plain one and a
// base64 one (its "=" padding is what a NAME=VALUE parser splits at).
const (
	fuzzKey    = "sk_live_FUZZSECRET_0123456789"
	fuzzB64Key = "c2tfbGl2ZV9mdXp6X2tleV9zZWNyZXQ=="
)

// keyLeak reports whether s shows either key, or a telling piece of one.
func keyLeak(s string) bool {
	return strings.Contains(s, "FUZZSECRET") || strings.Contains(s, "c2tfbGl2ZV9mdXp6X2tleV9")
}

// keyPlace matches the text before a key placeholder when the key is where a key belongs: the
// value of SCB_<ID>_API_KEY (= or :, optionally quoted, at the start of a line), of a JSON
// "api_key", or the credentials of an API URL. Anywhere else (an id, a timeout, a field name)
// the operator put the key where no key goes, and an error may quote it.
var keyPlace = regexp.MustCompile(`(?:(?:^|\n)[ \t]*(?:export[ \t]+)?SCB_[^=\n]*_API_KEY[ \t]*[:=][ \t]*["']?` +
	`|"api_key"[ \t\r\n]*:[ \t\r\n]*"` +
	`|(?:API_URL[ \t]*=[ \t]*["']?|"url"[ \t\r\n]*:[ \t\r\n]*")[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@\s"':]*:)?)$`)

// keysInPlace substitutes the placeholders in data and reports whether every one is in a key's
// place.
func keysInPlace(data []byte) (string, bool) {
	s := string(data)
	ok := true
	var out strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			out.WriteString(s)
			return out.String(), ok
		}
		out.WriteString(s[:i])
		s = s[i:]
		var key string
		switch {
		case strings.HasPrefix(s, "$KEY"):
			key, s = fuzzKey, s[4:]
		case strings.HasPrefix(s, "$B64"):
			key, s = fuzzB64Key, s[4:]
		default:
			out.WriteByte('$')
			s = s[1:]
			continue
		}
		if !keyPlace.MatchString(out.String()) {
			ok = false
		}
		out.WriteString(key)
	}
}

// safeKeyFiles reports whether every api_key_file of a JSON config is a name in the config's
// own folder, so that the fuzzer cannot make the loader read /dev/zero or the like.
func safeKeyFiles(data []byte) bool {
	var doc struct {
		SCBs map[string]struct {
			APIKeyFile string `json:"api_key_file"`
		} `json:"scbs"`
	}
	_ = json.NewDecoder(bytes.NewReader(data)).Decode(&doc) // the loader's decoder, less strict
	for _, c := range doc.SCBs {
		if strings.ContainsAny(c.APIKeyFile, `/\`) {
			return false
		}
	}
	return true
}

// FuzzLoadConfigFile: the config file loader (both formats) and the environment never panic,
// never quote an API key in an error, and what Load returns from them always validates and has
// its id and a timeout. Configs never show their key when printed.
func FuzzLoadConfigFile(f *testing.F) {
	for _, s := range []string{
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com/api", "api_key": "$KEY", "timeout": "7s"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key": "$B64", "timeout": 2.5}, "SCB_2": {"url": "http://x", "api_key_file": "scb.key"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key": "$KEY", "api_key_file": "scb.key"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key_file": "missing.key"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key": "$KEY", "timeout": "soon"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key": "$KEY", "timeout": -1}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key": "$KEY", "timeout": 1e9}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com", "api_key": "$KEY", "timeout": {"s": 1}}}}`,
		`{"scbs": {"SCB-1": {"uri": "https://scb1.example.com", "api_key": "$KEY"}}}`,
		`{"scbs": {"SCB-1": {"url": 5, "api_key": "$KEY"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://user:$KEY@scb1.example.com", "api_key": "$KEY"}}}`,
		`{"scbs": {"SCB-1": {"url": "https://scb1.example.com/%41?x=1", "api_key": "$KEY"}}}`,
		`{"scbs": {"SCB-1": {"url": "ftp://scb1.example.com", "api_key": "$KEY"}}, "x": 1}`,
		`{"scbs": {"SCB-1": {}, "scb-1": {"url": "http://a", "api_key": "$KEY"}, "SCB_1": {}}}`,
		`{"scbs": {"SCB-1": {"url": "http://a", "api_key": "$KEY"}}} trailing`,
		`{"scbs": {"SCB-1": {"url": "http://a", "api_key": "$KEY`,
		`{"scbs": null}`, `{}`, `{`, `{"scbs": []}`,
		"# SCBs\nexport SCB_SCB-1_API_URL=\"https://scb1.example.com\"\nSCB_SCB-1_API_KEY='$KEY'\nSCB_SCB_2_API_URL=http://s-two\nSCB_SCB_2_API_KEY=$B64\nSCB_SCB_2_TIMEOUT=1s\n",
		"SCB_A_API_URL=http://a\r\nSCB_A_API_KEY=$KEY\r\nSCB_A_TIMEOUT=30\r\n",
		"SCB_A_API_URL=http://a\nSCB_A_API_KEY = \"$B64\"\nSCB_A_TIMEOUT=0.0000000001\n",
		"SCB_A_API_URL=http://a\nSCB_A_API_KEY=$KEY\nSCB_A_TIMEOUT=-5s\n",
		"SCB_A_API_URL=http://a\nSCB_A_APIKEY=$KEY\n",
		"SCB_A_API_URL=http://a\nSCB_A_API_KEY $KEY\n",
		"SCB_A_API_URL=http://a\nSCB__API_KEY=$KEY\nSCB_API_KEY=x\n",
		"SCB_A_API_URL=https://u:$KEY@a\nSCB_A_API_KEY=$KEY\n",
		"SCB_A_API_URL=http://a/?token=x\nSCB_A_API_KEY=$KEY\n",
		"SCB_A_API_URL=http://a\nSCB_A_API_KEY=$KEY\nSCB_A-1_API_KEY=$KEY\nSCB_a_API_URL=http://b\n",
		"SCB_A_API_URL=http://a\n\n# comment = x\n   \nSCB_A_API_KEY='$KEY\n",
		"just text\n", "", "=", "\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if s := bytes.TrimSpace(data); len(s) > 0 && s[0] == '{' && !safeKeyFiles(data) {
			return
		}
		text, checkLeaks := keysInPlace(data)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "scb.key"), []byte(fuzzKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "scbs.conf")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		noLeak := func(what string, err error) {
			t.Helper()
			if err != nil && checkLeaks && keyLeak(err.Error()) {
				t.Fatalf("%s: the error shows an API key: %v\ninput:\n%s", what, err, text)
			}
		}

		file, err := LoadConfigFile(path)
		noLeak("LoadConfigFile", err)
		ids := []string{"SCB-1", "SCB_1", "scb-1", "A"}
		for id, c := range file {
			if c.ID != id {
				t.Fatalf("file config under %q has id %q", id, c.ID)
			}
			if c.Timeout < 0 {
				t.Fatalf("file config %q has a negative timeout %v", id, c.Timeout)
			}
			ids = append(ids, id)
		}
		// The same text as an environment.
		environ := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
		_, err = ConfigFromEnv(environ, ids)
		noLeak("ConfigFromEnv", err)

		for _, env := range [][]string{nil, environ} {
			got, err := Load(env, ids, path)
			noLeak("Load", err)
			for id, c := range got {
				if c.ID != id || !slices.Contains(ids, id) {
					t.Fatalf("Load returned %q for id %q (ids %q)", c.ID, id, ids)
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("Load returned a config that does not validate: %v", err)
				}
				if c.Timeout <= 0 {
					t.Fatalf("Load returned %q with timeout %v", id, c.Timeout)
				}
				j, _ := json.Marshal(c)
				shown := fmt.Sprintf("%v %+v %#v %s %s %s", c, c, c, c, j, c.LogValue())
				if checkLeaks && keyLeak(shown) {
					t.Fatalf("a config shows its key: %s", shown)
				}
			}
		}
	})
}

// FuzzParseRetryAfter: Retry-After as delay-seconds or an HTTP-date (RFC 9110 §10.2.3) is
// never negative; seconds are whole and capped at a day; a date gives the time until it,
// rounded to the second; white space around the value and a later "now" never make it longer.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).Unix()
	for _, s := range []string{
		"", " ", "0", "1", "120", "-1", "-0", "+5", "007", "86400", "86401", "999999999",
		"9223372036854775807", "99999999999999999999", "1.5", "1e3", "0x10", "1_000", "５",
		"Sun, 01 Jun 2025 12:00:30 GMT", "Sun, 01 Jun 2025 11:00:00 GMT", "Sunday, 01-Jun-25 12:00:30 GMT",
		"Sun Jun  1 12:00:30 2025", "Sun, 01 Jun 2025 12:00:30 UTC", "Sun, 01 Jun 2025 12:00:30 +0000",
		"Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT",
		"Sun, 01 Jun 2025 12:00:00.5 GMT", "Sun, 32 Jun 2025 12:00:30 GMT", "soon", "\t60\r\n",
	} {
		f.Add(s, now, uint32(0))
		f.Add(s, now, uint32(600_000_000))
	}
	const day = 24 * time.Hour
	f.Fuzz(func(t *testing.T, v string, nowSec int64, nowNsec uint32) {
		// now between 1970 and 9999, as a clock can be.
		nowSec = int64(uint64(nowSec) % 253402300800)
		now := time.Unix(nowSec, int64(nowNsec%1_000_000_000)).UTC()
		d := parseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v", v, d)
		}
		if d2 := parseRetryAfter(" \t"+v+"\r\n ", now); d2 != d {
			t.Fatalf("white space changed %q: %v -> %v", v, d, d2)
		}
		for _, later := range []time.Duration{time.Second, time.Hour} {
			if dl := parseRetryAfter(v, now.Add(later)); dl > d || (d-dl > later+time.Second && d < math.MaxInt64) {
				t.Fatalf("%q: %v at now, %v %v later", v, d, dl, later)
			}
		}

		s := strings.TrimSpace(v)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			// delay-seconds: exactly that many (a signed number is read leniently), at most a day.
			var want time.Duration
			if n > 0 {
				want = time.Duration(min(n, int64(day/time.Second))) * time.Second
			}
			if d != want {
				t.Fatalf("parseRetryAfter(%q) = %v, want %v", v, d, want)
			}
			return
		}
		if isDigits(s) {
			// More digits than int64 holds: the day cap, like any value above it.
			if d != day {
				t.Fatalf("parseRetryAfter(%q) = %v, want the %v cap", v, d, day)
			}
			return
		}
		at, err := http.ParseTime(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("parseRetryAfter(%q) = %v for neither seconds nor a date", v, d)
			}
			return
		}
		// An HTTP-date: the time until it, to the second, capped at a day like seconds.
		until := min(at.Sub(now), day)
		switch {
		case until <= 0 && d != 0:
			t.Fatalf("parseRetryAfter(%q) at %v = %v for a date in the past", v, now, d)
		case until > 0 && (d-until < -time.Second/2 || d-until > time.Second/2):
			t.Fatalf("parseRetryAfter(%q) at %v = %v, want about %v", v, now, d, until)
		case d%time.Second != 0 && d != math.MaxInt64:
			t.Fatalf("parseRetryAfter(%q) = %v, not whole seconds", v, d)
		}
	})
}

// FuzzEntryBody: Body is the canonical encoding the SCB compares retries by. The same entry
// gives the same bytes, in any time zone; the bytes are valid JSON with the fields in a fixed
// order; decoding them and encoding again gives the same bytes (the simulator hashes exactly
// that); and an entry of valid UTF-8 decodes to itself (in UTC). It fails only for a timestamp
// outside the years 0-9999 (UTC), which RFC 3339 cannot write.
func FuzzEntryBody(f *testing.F) {
	e := testEntry("r1")
	f.Add(e.ReferenceID, e.LedgerID, e.DebitAccountID, e.CreditAccountID, e.Amount, e.CurrencyCode, e.AssetType,
		e.TransactionType, e.DBISEntryID, e.BlockHash, e.TimestampUTC.Unix(), int64(e.TimestampUTC.Nanosecond()), int32(0))
	f.Add("stl-ü-€-𝄞", "MASTER", "SCB-1/settlement", "SCB-2/settlement", "0.000000000000000001", "XAU", "commodity",
		"settlement", int64(math.MaxInt64), strings.Repeat("0", 64), int64(-62135596800), int64(0), int32(-5*3600))
	f.Add("<script>&\u2028\u2029\"\\", "L\x00", "a\xff", "a\xff", "1e3", "usd", "FIAT", "", int64(-1), "AB", int64(253402300799), int64(999999999), int32(14*3600))
	f.Add("r", "L", "a", "b", "1", "USD", "fiat", "t", int64(1), "", int64(253402300799), int64(0), int32(-3600)) // year 10000 in UTC
	f.Add("r", "L", "a", "b", "1", "USD", "fiat", "t", int64(1), "", int64(-62167219200), int64(0), int32(3600))  // year -1 in UTC
	f.Add("r", "L", "a", "b", "1", "USD", "fiat", "t", int64(1), "", int64(0), int64(-1), int32(45296))
	fieldOrder := []string{"reference_id", "ledger_id", "debit_account_id", "credit_account_id", "amount", "currency_code",
		"asset_type", "transaction_type", "dbis_entry_id", "block_hash", "timestamp_utc"}
	f.Fuzz(func(t *testing.T, ref, ledgerID, debit, credit, amount, currency, asset, ttype string,
		dbisID int64, hash string, sec, nsec int64, offset int32) {
		zone := time.FixedZone("Z", int(offset%(24*3600)))
		e := Entry{ReferenceID: ref, LedgerID: ledgerID, DebitAccountID: debit, CreditAccountID: credit, Amount: amount,
			CurrencyCode: currency, AssetType: asset, TransactionType: ttype, DBISEntryID: dbisID, BlockHash: hash,
			TimestampUTC: time.Unix(sec, nsec).In(zone)}
		body, err := e.Body()
		if y := e.TimestampUTC.UTC().Year(); y < 0 || y > 9999 {
			if err == nil {
				t.Fatalf("year %d encoded: %s", y, body)
			}
			return
		}
		if err != nil {
			t.Fatalf("Body: %v", err)
		}
		// Deterministic, whatever the zone.
		for _, loc := range []*time.Location{time.UTC, time.Local, time.FixedZone("W", -11*3600)} {
			e2 := e
			e2.TimestampUTC = e.TimestampUTC.In(loc)
			if b2, err := e2.Body(); err != nil || !bytes.Equal(b2, body) {
				t.Fatalf("same entry in %v: %s\n%s (%v)", loc, body, b2, err)
			}
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			t.Fatalf("Body is not valid UTF-8 JSON: %q", body)
		}
		// The fields, in order (every value is a string or a number).
		dec := json.NewDecoder(bytes.NewReader(body))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("Body is not an object: %s", body)
		}
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("reading %s: %v", body, err)
			}
			keys = append(keys, k.(string))
			if _, err := dec.Token(); err != nil {
				t.Fatalf("reading %s: %v", body, err)
			}
		}
		if strings.Join(keys, ",") != strings.Join(fieldOrder, ",") {
			t.Fatalf("fields %v, want %v", keys, fieldOrder)
		}

		reencode := func(body []byte) (Entry, []byte) {
			t.Helper()
			var back Entry
			if err := json.Unmarshal(body, &back); err != nil {
				t.Fatalf("Body does not decode: %v\n%s", err, body)
			}
			again, err := back.Body()
			if err != nil {
				t.Fatalf("decoded Body does not encode: %v\n%s", err, body)
			}
			return back, again
		}
		back, again := reencode(body)
		valid := true
		for _, s := range []string{ref, ledgerID, debit, credit, amount, currency, asset, ttype, hash} {
			valid = valid && utf8.ValidString(s)
		}
		if !valid {
			// encoding/json writes invalid UTF-8 as \ufffd and decodes it to U+FFFD, which it
			// then writes as is: the decoded entry is canonical from there on (the ledger holds
			// no invalid UTF-8 anyway).
			body = again
			_, again = reencode(body)
		}
		if !bytes.Equal(again, body) {
			t.Fatalf("decoded and encoded again:\n%s\n%s", body, again)
		}
		if back.TimestampUTC.Location() != time.UTC || !back.TimestampUTC.Equal(e.TimestampUTC) {
			t.Fatalf("timestamp %v decodes as %v", e.TimestampUTC, back.TimestampUTC)
		}
		if !valid {
			return
		}
		want := e
		want.TimestampUTC = e.TimestampUTC.UTC()
		if back != want {
			t.Fatalf("round trip:\n%#v\n%#v", want, back)
		}
		if back.IdempotencyKey() != e.IdempotencyKey() || (back.Validate() == nil) != (e.Validate() == nil) {
			t.Fatalf("round trip changed the key or the validity")
		}
	})
}
