package jsonlimit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1)
}

func TestDepth(t *testing.T) {
	for in, want := range map[string]int{
		`1`: 0, `"x"`: 0, `null`: 0, `{}`: 1, `[]`: 1, `{"a":[]}`: 2, `[[[]],[]]`: 3,
		`{"a":"{{{[[["}`: 1, `{"a\"{":"\\"}`: 1, `{"a":"\\\"[["}`: 1, `{"a":{"b":{}},"c":[1]}`: 3,
		nested(8): 8, nested(31): 31,
	} {
		if got := Depth([]byte(in)); got != want {
			t.Errorf("Depth(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestCheckEscapes(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":"b"}`:               "",
		`{"a":"\u00e9\n\\u0000"}`: "", // an escaped backslash, then the text u0000
		`{"a":"\ud83d\ude00"}`:    "",
		`{"a":"\u0000"}`:          "NUL",
		`{"\u0000":1}`:            "NUL",
		`{"a":"\ud800"}`:          "unpaired",
		`{"a":"\ude00"}`:          "unpaired",
		`{"a":"\ud800\u0041"}`:    "unpaired",
		`{"a":"\ud800x"}`:         "unpaired",
	} {
		err := CheckEscapes([]byte(in))
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

func TestCheckNumber(t *testing.T) {
	for in, ok := range map[string]bool{
		"1": true, "-1.5e300": true, "1E-300": true, "1e+300": true, strings.Repeat("9", 64): true,
		"1e301": false, "1e-301": false, strings.Repeat("9", 65): false, "1e99999999999999999999": false,
	} {
		if err := CheckNumber(in); (err == nil) != ok {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// FuzzCheckEscapes: neither check panics or reads past the text, whatever the bytes (a
// truncated escape at the end, invalid UTF-8).
func FuzzCheckEscapes(f *testing.F) {
	f.Add([]byte(`"\u0000"`))
	f.Add([]byte(`"\ud800\udc00"`))
	f.Add([]byte(`"\\u0000"`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = CheckEscapes(data)
		_ = Depth(data)
	})
}

func TestDuplicateKey(t *testing.T) {
	for in, want := range map[string]string{
		`{"amount":"1","amount":"1000"}`:            "amount",
		`{"a":1,"\u0061":2}`:                        "a",
		`{"m":{"a":1,"b":{"c":1,"c":2}}}`:           "m.b.c",
		`{"x":[{"a":1},{"a":1,"a":2}]}`:             "x[].a",
		`{"a":{"b":1},"b":{"b":1},"c":[1,{"b":2}]}`: "",
		`{"a":1,"b":2}`:                             "",
		`[1,2,{"a":1}]`:                             "",
		`{"a":`:                                     "",
		`not json`:                                  "",
	} {
		got, dup := DuplicateKey([]byte(in))
		if got != want || dup != (want != "") {
			t.Errorf("DuplicateKey(%s) = %q, %v; want %q", in, got, dup, want)
		}
	}
}

// FuzzDuplicateKey: never panics; on valid JSON it reports a duplicate exactly when a second,
// recursive walk of the token stream finds a key twice in one object.
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":1}]}}`, `{"a":1}`, `[]`, `{"\u0061":1,"a":1}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, dup := DuplicateKey(data)
		if !json.Valid(data) {
			return
		}
		if want := hasDuplicate(t, data); dup != want {
			t.Errorf("DuplicateKey(%s) = %v, want %v", data, dup, want)
		}
	})
}

// hasDuplicate walks data's tokens recursively (valid JSON), object by object.
func hasDuplicate(t *testing.T, data []byte) bool {
	var walk func(d *json.Decoder) (bool, error)
	walk = func(d *json.Decoder) (bool, error) {
		tok, err := d.Token()
		if err != nil {
			return false, err
		}
		delim, ok := tok.(json.Delim)
		if !ok {
			return false, nil
		}
		seen := map[string]bool{}
		found := false
		for d.More() {
			if delim == '{' {
				k, err := d.Token()
				if err != nil {
					return false, err
				}
				if seen[k.(string)] {
					found = true
				}
				seen[k.(string)] = true
			}
			dup, err := walk(d)
			if err != nil {
				return false, err
			}
			found = found || dup
		}
		if _, err := d.Token(); err != nil {
			return false, err
		}
		return found, nil
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	found, err := walk(d)
	if err != nil {
		t.Fatal(err)
	}
	return found
}
