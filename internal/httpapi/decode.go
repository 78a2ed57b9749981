package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"dualledger/internal/jsonlimit"
	"dualledger/internal/ledger"
)

// Limits of a request body's JSON beyond its size. They exist because the body travels on to
// PostgreSQL as jsonb: a value jsonb refuses (a \u0000, a lone surrogate, a number past
// numeric's range, nesting past the stack limit) would fail the whole group-commit transaction,
// i.e. the postings of other clients too. So the API refuses such input up front, per request.
// The limits themselves are jsonlimit's, which the backfill applies to its rows too.
const (
	maxJSONDepth  = jsonlimit.MaxDepth     // objects and arrays, counting the body itself
	maxNumberLen  = jsonlimit.MaxNumberLen // characters of one number literal
	maxFieldQuote = 64                     // characters of a client's field name echoed in a message
)

// DecodeEntry reads one posting (the body of POST /v1/ledgers/{ledger_id}/entries) with the
// API's strict rules:
//
//   - exactly one JSON object and nothing after it; valid UTF-8; no duplicate keys (at any depth);
//   - only the documented fields, spelled exactly (encoding/json would also accept "AMOUNT");
//   - amount, fx_rate (and an account's overdraft_limit) are decimal strings: a JSON number for
//     amount is invalid_amount, because a number may already have lost precision in the client;
//   - strings hold no \u0000 and no lone UTF-16 surrogate, numbers have at most 64 characters and
//     an exponent within ±300, nesting is at most 32 deep (see the limits above for why).
//
// The values themselves (account ids, amount syntax and sign, currency, ...) are left to the
// database, which validates every posting with one set of rules for every client.
// Every error is a *ledger.Error with code invalid_request, invalid_amount or (when r is an
// http.MaxBytesReader that hit its limit) body_too_large.
//
// Two values are checked here because they must hold before anything else happens: the
// reference_id (ledger.ValidateReference: it becomes a URL path segment and part of the SCB's
// Idempotency-Key; a missing one is left to the database) and the metadata's size and depth
// (DefaultMaxMetadataBytes, DefaultMaxMetadataDepth; the server's own caps in Server.decodeEntry).
func DecodeEntry(r io.Reader) (ledger.EntryInput, error) {
	data, err := readBody(r)
	if err != nil {
		return ledger.EntryInput{}, err
	}
	return decodeEntryBytes(data)
}

func decodeEntryBytes(data []byte) (ledger.EntryInput, error) {
	return decodeEntryLimits(data, defaultMetadataLimits())
}

func decodeEntryLimits(data []byte, lim metadataLimits) (ledger.EntryInput, error) {
	var in ledger.EntryInput
	if err := decodeStrict(data, &in); err != nil {
		return ledger.EntryInput{}, err
	}
	if in.ReferenceID != "" {
		if err := ledger.ValidateReference("reference_id", in.ReferenceID); err != nil {
			return ledger.EntryInput{}, err
		}
		if err := notReserved("reference_id", in.ReferenceID); err != nil {
			return ledger.EntryInput{}, err
		}
	}
	if err := lim.check(in.Metadata); err != nil {
		return ledger.EntryInput{}, err
	}
	if len(in.Metadata) > 0 {
		// Compact so that the stored metadata and its echo carry no client whitespace. Cannot
		// fail: the bytes were just validated as JSON.
		var buf bytes.Buffer
		if err := json.Compact(&buf, in.Metadata); err == nil {
			in.Metadata = buf.Bytes()
		}
	}
	return in, nil
}

// decodeBatch reads the body of POST /v1/ledgers/{ledger_id}/entries/batch. Each entry is
// decoded by DecodeEntry's rules; an error names the entry (details.index) and the field.
func decodeBatch(data []byte, maxBatch int) (bool, []ledger.EntryInput, error) {
	return decodeBatchLimits(data, maxBatch, defaultMetadataLimits())
}

func decodeBatchLimits(data []byte, maxBatch int, lim metadataLimits) (bool, []ledger.EntryInput, error) {
	var wire batchWire
	if err := decodeStrictDepth(data, &wire, maxJSONDepth+2); err != nil {
		return false, nil, err
	}
	switch {
	case wire.Entries == nil:
		return false, nil, fieldError(ledger.CodeInvalidRequest, "entries", "entries is required: an array of 1 to %d entries", maxBatch)
	case len(wire.Entries) == 0 || len(wire.Entries) > maxBatch:
		return false, nil, ledger.Errorf(ledger.CodeInvalidRequest, "a batch holds 1 to %d entries, got %d", maxBatch, len(wire.Entries)).
			WithDetails(map[string]any{"field": "entries", "max_entries": maxBatch, "entries": len(wire.Entries)})
	}
	entries := make([]ledger.EntryInput, len(wire.Entries))
	for i, raw := range wire.Entries {
		e, err := decodeEntryLimits(raw, lim)
		if err != nil {
			return false, nil, inEntry(i, err)
		}
		entries[i] = e
	}
	return wire.Atomic, entries, nil
}

// inEntry prefixes an entry's decoding error with its position in the batch.
func inEntry(i int, err error) error {
	var le *ledger.Error
	if !errors.As(err, &le) {
		return err
	}
	details := map[string]any{}
	_ = json.Unmarshal(le.Details, &details)
	field, _ := details["field"].(string)
	path := fmt.Sprintf("entries[%d]", i)
	if field != "" {
		path += "." + field
	}
	details["field"] = path
	details["index"] = i
	return ledger.Errorf(le.Code, "%s: %s", path, le.Message).WithDetails(details)
}

// decodeJSON reads a whole request body into v (a pointer to a struct) by the strict rules. An
// account's metadata is held to the default caps (the server's own: Server.decodeJSON).
func decodeJSON(r io.Reader, v any) error {
	return decodeJSONLimits(r, v, defaultMetadataLimits())
}

func decodeJSONLimits(r io.Reader, v any, lim metadataLimits) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decodeStrict(data, v); err != nil {
		return err
	}
	if a, ok := v.(*ledger.AccountInput); ok {
		return lim.check(a.Metadata)
	}
	return nil
}

func readBody(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, bodyTooLarge(tooLarge.Limit)
		}
		return nil, ledger.Errorf(ledger.CodeInvalidRequest, "could not read the request body")
	}
	return data, nil
}

func bodyTooLarge(limit int64) *ledger.Error {
	return ledger.Errorf(CodeBodyTooLarge, "the request body is larger than %d bytes", limit).
		WithDetails(map[string]int64{"max_bytes": limit})
}

// decodeStrict decodes data, which must be exactly one JSON object with only the fields of *v.
func decodeStrict(data []byte, v any) error { return decodeStrictDepth(data, v, maxJSONDepth) }

// decodeStrictDepth is decodeStrict with another nesting limit (a batch wraps each entry in two
// more levels, and an entry must be acceptable in a batch if it is on its own).
func decodeStrictDepth(data []byte, v any, maxDepth int) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the request body is empty: send a JSON object")
	}
	if !utf8.Valid(data) {
		return ledger.Errorf(ledger.CodeInvalidRequest, "the request body is not valid UTF-8")
	}
	if err := jsonlimit.CheckEscapes(data); err != nil {
		return ledger.Errorf(ledger.CodeInvalidRequest, "%v", err)
	}
	if fields := jsonFieldsOf(reflect.TypeOf(v).Elem()); !plainObject(data, fields, maxDepth) {
		if err := scanJSON(data, fields, maxDepth); err != nil {
			return err
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		// scanJSON has already refused this; kept so that the rule does not hang on it alone.
		return ledger.Errorf(ledger.CodeInvalidRequest, "unexpected data after the JSON object: send exactly one JSON object")
	}
	return nil
}

// decodeError maps what encoding/json reports after scanJSON has passed: type mismatches, and
// (as a backstop to scanJSON's field check) unknown fields.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		got := typeErr.Value
		if i := strings.IndexByte(got, ' '); i > 0 {
			got = got[:i] // "number 1e400" -> "number"
		}
		switch field {
		case "amount":
			return fieldError(ledger.CodeInvalidAmount, field,
				`amount must be a decimal string such as "100.00", not a JSON %s: send it in quotes, so that no precision is lost on the way`, got)
		case "fx_rate":
			return fieldError(ledger.CodeInvalidRequest, field, `fx_rate must be a decimal string such as "1.0850", not a JSON %s`, got)
		case "overdraft_limit":
			return fieldError(ledger.CodeInvalidRequest, field, `overdraft_limit must be a decimal string such as "500.00" or "unlimited", not a JSON %s`, got)
		}
		want := jsonKind(typeErr.Type)
		if typeErr.Value != got {
			// A number that does not fit the target (e.g. reverses_entry_id 1.5 or 1e30).
			return fieldError(ledger.CodeInvalidRequest, field, "%s must be a JSON %s, got %s", field, want, typeErr.Value)
		}
		return fieldError(ledger.CodeInvalidRequest, field, "%s must be a JSON %s, not a JSON %s", field, want, got)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return fieldError(ledger.CodeInvalidRequest, clip(name), "unknown field %s", quoteField(name))
	}
	return ledger.Errorf(ledger.CodeInvalidRequest, "the request body is not a valid JSON object of the expected shape")
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	default:
		return "object"
	}
}

// The field sets of the bodies on the posting path, computed once: reflecting over the struct on
// every request was a tenth of the server's CPU per posting (docs/benchmarks.md). They are
// derived from the types alone and never change.
var (
	entryFields = jsonFields(reflect.TypeFor[ledger.EntryInput]())
	batchFields = jsonFields(reflect.TypeFor[batchWire]())
)

// fieldsOf returns the JSON field names of t, from the precomputed sets where there is one.
func jsonFieldsOf(t reflect.Type) map[string]bool {
	switch t {
	case reflect.TypeFor[ledger.EntryInput]():
		return entryFields
	case reflect.TypeFor[batchWire]():
		return batchFields
	}
	return jsonFields(t)
}

// jsonFields returns the JSON names of a struct's fields, as encoding/json sees them (embedded
// structs flattened).
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for _, f := range structFields(t) {
		out[f.name] = true
	}
	return out
}

// scanJSON walks the tokens of data and checks what encoding/json does not: a single top-level
// object and nothing after it, its keys exactly the struct's field names, no duplicate keys at
// any depth, nesting depth and number literals within the limits. Syntax errors are reported
// with their byte offset.
func scanJSON(data []byte, fields map[string]bool, maxDepth int) error {
	type frame struct {
		object  bool
		wantKey bool
		keys    map[string]bool
		name    string // path element of this container
		key     string // the key whose value comes next (objects)
		index   int    // the next element's index (arrays)
	}
	var stack []*frame
	path := func(last string) string {
		var b strings.Builder
		for _, f := range stack[1:] {
			b.WriteString(f.name)
		}
		b.WriteString(last)
		return strings.TrimPrefix(b.String(), ".")
	}
	// elem is the path element of the value about to be read.
	elem := func() string {
		top := stack[len(stack)-1]
		if top.object {
			return "." + top.key
		}
		return "[" + strconv.Itoa(top.index) + "]"
	}
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		top := stack[len(stack)-1]
		if top.object {
			top.wantKey = true
		} else {
			top.index++
		}
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	started := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !started || len(stack) > 0 {
				return ledger.Errorf(ledger.CodeInvalidRequest, "the request body ends before the JSON object is complete")
			}
			return nil
		}
		if started && len(stack) == 0 {
			// Anything but the end after the object, even a syntax error, is trailing data.
			return ledger.Errorf(ledger.CodeInvalidRequest, "unexpected data after the JSON object: send exactly one JSON object").
				WithDetails(map[string]int64{"offset": dec.InputOffset()})
		}
		if err != nil {
			return syntaxError(err, dec.InputOffset())
		}
		if !started {
			started = true
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return ledger.Errorf(ledger.CodeInvalidRequest, "the request body must be a JSON object")
			}
			stack = append(stack, &frame{object: true, wantKey: true, keys: map[string]bool{}})
			continue
		}
		top := stack[len(stack)-1]
		if top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				valueDone()
				continue
			}
			key, _ := tok.(string) // the decoder allows nothing else here
			if top.keys[key] {
				at := path("." + key) // built only here: a path per key was most of this scan's garbage
				return fieldError(ledger.CodeInvalidRequest, clip(at), "duplicate field %s: each field may appear once", quoteField(at))
			}
			if len(stack) == 1 && !fields[key] {
				return fieldError(ledger.CodeInvalidRequest, clip(key), "unknown field %s (the fields are: %s)", quoteField(key), fieldList(fields))
			}
			top.keys[key] = true
			top.key = key
			top.wantKey = false
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= maxDepth {
					return ledger.Errorf(ledger.CodeInvalidRequest, "the JSON is nested more than %d levels deep", maxDepth)
				}
				f := &frame{object: v == '{', wantKey: v == '{', name: elem()}
				if f.object {
					f.keys = map[string]bool{}
				}
				stack = append(stack, f)
			default: // ']' (a '}' was handled above: objects close only where a key may come)
				stack = stack[:len(stack)-1]
				valueDone()
			}
		case json.Number:
			if err := jsonlimit.CheckNumber(string(v)); err != nil {
				at := path(elem())
				if at == "amount" || entryAmountPath.MatchString(at) {
					// An amount is never a JSON number, however large: say that, as for any number.
					return fieldError(ledger.CodeInvalidAmount, clip(at), `%s must be a decimal string such as "100.00", not a JSON number`, quoteField(at))
				}
				return fieldError(ledger.CodeInvalidRequest, clip(at), "%s: %v", quoteField(at), err)
			}
			valueDone()
		default: // string, bool, nil
			valueDone()
		}
	}
}

// entryAmountPath is the path of a batch entry's amount (not a metadata key named amount).
var entryAmountPath = regexp.MustCompile(`^entries\[[0-9]+\]\.amount$`)

func syntaxError(err error, offset int64) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		offset = se.Offset
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return ledger.Errorf(ledger.CodeInvalidRequest, "the request body is not valid JSON: %s (at byte %d)", msg, offset).
		WithDetails(map[string]int64{"offset": offset})
}

// quoteField quotes a client-supplied name for a message, cut to a sane length.
func quoteField(s string) string {
	if utf8.RuneCountInString(s) > maxFieldQuote {
		r := []rune(s)
		return strconv.Quote(string(r[:maxFieldQuote])) + "…"
	}
	return strconv.Quote(s)
}

func fieldList(fields map[string]bool) string {
	return strings.Join(slices.Sorted(maps.Keys(fields)), ", ")
}

// clip cuts a client-supplied name for details (a duplicate or unknown key may be huge).
func clip(s string) string {
	if utf8.RuneCountInString(s) > maxFieldQuote {
		return string([]rune(s)[:maxFieldQuote]) + "…"
	}
	return s
}

// notReserved refuses a reference_id that the operator's tools compute in advance (reconciliation
// corrections, backfill rollbacks and generated ids: ledger.ReservedReference): a client posting
// it first would block them.
func notReserved(field, ref string) error {
	if p, ok := ledger.ReservedReference(ref); ok {
		return fieldError(ledger.CodeInvalidRequest, field,
			"%s may not start with %q: that prefix is reserved for the operator's reconciliation corrections, backfill imports and rollbacks", field, p)
	}
	return nil
}
