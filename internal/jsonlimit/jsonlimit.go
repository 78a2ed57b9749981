// Package jsonlimit holds the rules a client's JSON must meet before it travels on to PostgreSQL
// as jsonb: values jsonb refuses (a \u0000, a lone UTF-16 surrogate, a number past numeric's
// range, nesting past the server's stack) fail the whole statement, and a posting statement
// carries a batch, so one row's bad value would fail every row with it. The HTTP API refuses
// such a body up front, per request; the backfill refuses such a row, which then goes to the error
// report while the import goes on. One copy of the rules serves both.
package jsonlimit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Limits beyond what JSON's grammar says.
const (
	MaxDepth     = 32  // objects and arrays, counting the outermost one
	MaxNumberLen = 64  // characters of one number literal
	MaxNumberExp = 300 // |exponent| of a number literal (a float64's range, what JSON peers expect)
)

// CheckEscapes refuses \u0000 and unpaired UTF-16 surrogate escapes in JSON text. encoding/json
// would silently turn a lone surrogate into U+FFFD (so two different strings could become one)
// and jsonb refuses both. A backslash occurs in JSON only inside strings, so a byte scan is
// exact. Text that is not valid JSON may pass: its syntax is the decoder's to report.
func CheckEscapes(data []byte) error {
	bad := func(what string) error { return fmt.Errorf("strings may not contain %s", what) }
	pendingHigh := false // the previous escape was a high surrogate
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			if pendingHigh {
				return bad("an unpaired UTF-16 surrogate escape")
			}
			continue
		}
		if i+1 >= len(data) {
			return nil
		}
		if data[i+1] != 'u' {
			if pendingHigh {
				return bad("an unpaired UTF-16 surrogate escape")
			}
			i++
			continue
		}
		if i+6 > len(data) {
			return nil
		}
		r, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 32)
		if err != nil {
			return nil
		}
		switch {
		case r == 0:
			return bad(`the NUL character (\u0000)`)
		case r >= 0xD800 && r <= 0xDBFF:
			if pendingHigh {
				return bad("an unpaired UTF-16 surrogate escape")
			}
			pendingHigh = true
		case r >= 0xDC00 && r <= 0xDFFF:
			if !pendingHigh {
				return bad("an unpaired UTF-16 surrogate escape")
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return bad("an unpaired UTF-16 surrogate escape")
			}
		}
		i += 5
	}
	if pendingHigh {
		return bad("an unpaired UTF-16 surrogate escape")
	}
	return nil
}

// CheckNumber bounds a number literal (already valid JSON number syntax).
func CheckNumber(lit string) error {
	if len(lit) > MaxNumberLen {
		return fmt.Errorf("number has more than %d characters", MaxNumberLen)
	}
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		exp, err := strconv.Atoi(strings.TrimPrefix(lit[i+1:], "+"))
		if err != nil || exp > MaxNumberExp || exp < -MaxNumberExp {
			return fmt.Errorf("number exponent is out of range (at most ±%d)", MaxNumberExp)
		}
	}
	return nil
}

// Depth is the deepest nesting of objects and arrays in valid JSON (0 for a scalar). A bracket
// counts only outside strings; inside one, a backslash escapes the next byte.
func Depth(data []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// DuplicateKey returns the first key that appears twice in one object of the JSON text data, at
// any depth, with its path (e.g. "metadata.a"), and whether there is one. encoding/json keeps the
// last of two, silently: {"amount":"1","amount":"1000"} would post 1000. Keys are compared
// decoded ("\u0061" is "a"). Text that is not valid JSON reports none: its syntax is the
// decoder's to report.
func DuplicateKey(data []byte) (string, bool) {
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool
		path    string
		key     string
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number past float64 must not end the walk before a duplicate after it
	var stack []*frame
	childPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if top.keys == nil {
			return top.path + "[]"
		}
		if top.path == "" {
			return top.key
		}
		return top.path + "." + top.key
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return "", false
				}
				if p := stack[len(stack)-1]; p.keys != nil {
					p.wantKey = true
				}
				continue
			}
			key, _ := tok.(string)
			if top.keys[key] {
				if top.path == "" {
					return key, true
				}
				return top.path + "." + key, true
			}
			top.keys[key], top.key, top.wantKey = true, key, false
			continue
		}
		switch d := tok.(type) {
		case json.Delim:
			switch d {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, wantKey: true, path: childPath()})
				continue
			case '[':
				stack = append(stack, &frame{path: childPath()})
				continue
			default: // ']'
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return "", false
				}
			}
		default:
			if len(stack) == 0 {
				return "", false
			}
		}
		if p := stack[len(stack)-1]; p.keys != nil {
			p.wantKey = true
		}
	}
}
