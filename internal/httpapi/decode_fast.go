package httpapi

import (
	"bytes"
	"encoding/json"
	"strings"
)

// plainObject reports whether data certainly passes scanJSON: valid JSON, one object and nothing
// after it, top-level keys all in fields, no duplicate key in any object, nesting within
// maxDepth, every number short and without an exponent. It walks the bytes once without
// allocating, where scanJSON's token walk allocates per token; it never says true for a body that
// scanJSON refuses (FuzzPlainObjectAgreesWithScanJSON), and when it says false scanJSON runs
// and names the problem. Keys with escapes and numbers with exponents go the slow way: rare in
// practice, and their rules are scanJSON's alone.
func plainObject(data []byte, fields map[string]bool, maxDepth int) bool {
	if !json.Valid(data) {
		return false
	}
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	// keys[k] holds the keys of the open object at depth k+1 (nil for arrays); bounded by maxDepth.
	var stackBuf [8][][]byte
	keys := stackBuf[:0]
	inObject := func() bool { return len(keys) > 0 && keys[len(keys)-1] != nil }
	for i < len(data) {
		switch c := data[i]; {
		case c == '{' || c == '[':
			if len(keys) >= maxDepth {
				return false
			}
			if c == '{' {
				keys = append(keys, make([][]byte, 0, 8))
			} else {
				keys = append(keys, nil)
			}
			i++
		case c == '}' || c == ']':
			keys = keys[:len(keys)-1]
			i++
			if len(keys) == 0 {
				return skipSpace(data, i) == len(data)
			}
		case c == '"':
			end, escaped := stringEnd(data, i)
			// A string right after '{' or ',' inside an object is a key (json.Valid holds).
			if inObject() && isKeyPosition(data, i) {
				if escaped {
					return false
				}
				key := data[i+1 : end-1]
				top := keys[len(keys)-1]
				for _, k := range top {
					if bytes.Equal(k, key) {
						return false
					}
				}
				if len(keys) == 1 && !fields[string(key)] {
					return false
				}
				keys[len(keys)-1] = append(top, key)
			}
			i = end
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(data) && strings.IndexByte("+-.0123456789eE", data[j]) >= 0 {
				if data[j] == 'e' || data[j] == 'E' {
					return false
				}
				j++
			}
			if j-i > maxNumberLen {
				return false
			}
			i = j
		default: // whitespace, ':', ',', true, false, null
			i++
		}
	}
	return false
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string that starts at data[i] (a '"'), and whether
// it holds an escape.
func stringEnd(data []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return len(data), escaped
}

// isKeyPosition reports whether the string at data[i] follows '{' or ',' (skipping whitespace
// backwards): inside an object, that makes it a key.
func isKeyPosition(data []byte, i int) bool {
	for j := i - 1; j >= 0; j-- {
		switch data[j] {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', ',':
			return true
		default:
			return false
		}
	}
	return false
}
