package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"dualledger/internal/jsonlimit"
)

// APIOptions describe a paginated HTTP JSON source.
type APIOptions struct {
	// URL is the first page's address (query parameters kept).
	URL string
	// Token is sent as "Authorization: Bearer <token>" when not empty.
	Token string
	// Items is the dotted path of the items array in a page; "" tries "entries", "data",
	// "items", then the page itself when it is an array.
	Items string
	// Cursor is the dotted path of the next page's cursor; "" tries next_cursor (parameter
	// "cursor"), next_after_seq ("after_seq", another dualledger), next_since ("since", an SCB).
	Cursor string
	// CursorParam is the query parameter the cursor goes in (with Cursor; default "cursor").
	CursorParam string
	// LimitParam and Limit ask for a page size (default "limit", 500).
	LimitParam string
	Limit      int
	// Client does the requests (default: 30 s timeout).
	Client *http.Client
	// MaxPageBytes bounds one page's body (default 64 MiB).
	MaxPageBytes int64
}

// knownCursors are the cursors of the APIs the reader knows: their path in the page and their
// query parameter.
var knownCursors = [][2]string{{"next_cursor", "cursor"}, {"next_after_seq", "after_seq"}, {"next_since", "since"}}

// API reads a paginated JSON API. A position is the cursor of the page a row came from and the
// row's index in it ("<cursor>#<index>"): a resumed run asks for that page again and skips the
// rows up to the index, so pages must be stable (a cursor always yields the same page), as
// keyset cursors are.
type API struct {
	o      APIOptions
	cursor string // the current page's cursor ("" for the first)
	items  []json.RawMessage
	i      int
	next   *string
	more   bool
	read   int64
	seen   map[string]bool // the cursors read in this run
	empty  int             // empty pages in a row
}

// maxEmptyPages bounds a run of empty pages with new cursors: another dualledger answers a
// member bank's key with one per 20,000 entries of other banks, so 10,000 in a row is 200 million
// entries of nothing; beyond it the API is taken to be broken.
const maxEmptyPages = 10000

// CheckAPIURL says whether raw is an http(s) URL with a host; the message shows no more of it
// than its scheme, host and path (its query or user information may hold a key).
func CheckAPIURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := "(unparsable)"
		if err == nil {
			shown = u.Scheme + "://" + u.Host + u.Path
		}
		return fmt.Errorf("the API source %s is not an http(s) URL with a host", shown)
	}
	return nil
}

// OpenAPI positions the reader after `after` ("" for the start).
func OpenAPI(ctx context.Context, o APIOptions, after string) (*API, error) {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if o.LimitParam == "" {
		o.LimitParam = "limit"
	}
	if o.Limit <= 0 {
		o.Limit = 500
	}
	if o.MaxPageBytes <= 0 {
		o.MaxPageBytes = 64 << 20
	}
	if o.Cursor != "" && o.CursorParam == "" {
		o.CursorParam = "cursor"
	}
	if err := CheckAPIURL(o.URL); err != nil {
		return nil, err
	}
	a := &API{o: o, more: true}
	skip, cursor := -1, ""
	if after != "" {
		i := strings.LastIndexByte(after, '#')
		n, err := strconv.Atoi(after[i+1:])
		if i < 0 || err != nil || n < 0 {
			return nil, fmt.Errorf("%w: %q is not an API position", ErrBadPosition, after)
		}
		cursor, skip = after[:i], n
	}
	if cursor != "" && o.Cursor == "" {
		// Learn the API's cursor from its first page.
		if err := a.fetch(ctx, ""); err != nil {
			return nil, err
		}
	}
	if err := a.fetch(ctx, cursor); err != nil {
		return nil, err
	}
	if skip >= 0 {
		if skip >= len(a.items) {
			return nil, fmt.Errorf("%w: the page at cursor %q has %d rows, the checkpoint is after row %d", ErrBadPosition, cursor, len(a.items), skip+1)
		}
		a.i = skip + 1
	}
	return a, nil
}

func (a *API) fetch(ctx context.Context, cursor string) error {
	u, _ := url.Parse(a.o.URL)
	q := u.Query()
	q.Set(a.o.LimitParam, strconv.Itoa(a.o.Limit))
	if cursor != "" {
		param := a.o.CursorParam
		if param == "" {
			param = "cursor"
		}
		q.Set(param, cursor)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "dualledger-backfill/1")
	if a.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.o.Token)
	}
	res, err := a.o.Client.Do(req)
	if err != nil {
		// *url.Error prints the whole URL, query and all: say only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("GET %s: %w", a.redactURL(u), err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, a.o.MaxPageBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", a.redactURL(u), err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", a.redactURL(u), res.StatusCode, excerpt(body))
	}
	if int64(len(body)) > a.o.MaxPageBytes {
		return fmt.Errorf("GET %s: a page larger than %d bytes", a.redactURL(u), a.o.MaxPageBytes)
	}
	items, next, more, err := a.parsePage(body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", a.redactURL(u), err)
	}
	a.cursor, a.items, a.i, a.next, a.more = cursor, items, 0, next, more
	return nil
}

// parsePage finds the items and the next cursor of a page. The page is walked as raw JSON down
// to its items, which keep their bytes: decoded, a lone surrogate escape would already be U+FFFD
// (Next refuses such an item instead).
func (a *API) parsePage(body []byte) (items []json.RawMessage, next *string, more bool, err error) {
	if !json.Valid(body) {
		var v any
		return nil, nil, false, fmt.Errorf("the page is not JSON: %v", json.Unmarshal(body, &v))
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' && a.o.Items == "" {
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, nil, false, fmt.Errorf("the page's items: %v", err)
		}
		return items, nil, false, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, nil, false, fmt.Errorf("the page is neither a JSON object nor an array")
	}
	var list json.RawMessage
	present := false
	where := a.o.Items
	if where != "" {
		list, present = rawLookup(obj, where)
	} else {
		where = "entries, data or items"
		for _, k := range []string{"entries", "data", "items"} {
			if v, ok := obj[k]; ok {
				list, present, where = v, true, k
				break
			}
		}
	}
	// A page without its items (an error object answered with 200) is not the end of the
	// source: taking it for one would end the import early and call it complete. A null list is
	// an empty one (a Go server's nil slice), which ends only as an empty page does.
	if !present {
		return nil, nil, false, fmt.Errorf("the page has no items array (at %s): %s", where, excerpt(body))
	}
	if string(list) != "null" {
		if err := json.Unmarshal(list, &items); err != nil {
			return nil, nil, false, fmt.Errorf("the page has items that are not an array (at %s): %s", where, excerpt(body))
		}
	}
	if a.o.Cursor == "" {
		for _, k := range knownCursors {
			if _, ok := obj[k[0]]; ok {
				a.o.Cursor, a.o.CursorParam = k[0], k[1]
				break
			}
		}
	}
	if a.o.Cursor != "" {
		if raw, ok := rawLookup(obj, a.o.Cursor); ok {
			var c any
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if dec.Decode(&c) == nil {
				switch c := c.(type) {
				case string:
					if c != "" {
						next = &c
					}
				case json.Number:
					s := c.String()
					next = &s
				}
			}
		}
	}
	// An empty page with a cursor is not the end either: an API that filters what a key may see
	// (another dualledger, for a member bank's key) answers empty pages while it scans. The end is
	// has_more false, no cursor, or an empty page that gives back the cursor it was asked with
	// (Next). has_more true without a cursor the reader can follow is an error: ending there
	// would lose the rest.
	more = next != nil
	var hm bool
	if raw, ok := obj["has_more"]; ok && json.Unmarshal(raw, &hm) == nil {
		if hm && next == nil {
			name := a.o.Cursor
			if name == "" {
				name = "next_cursor, next_after_seq or next_since"
			}
			return nil, nil, false, fmt.Errorf("the page says has_more but gives no cursor at %s: name the API's cursor in the mapping (api.cursor, api.cursor_param)", name)
		}
		more = hm && next != nil
	}
	return items, next, more, nil
}

// rawLookup finds the member at a dotted path of a JSON object.
func rawLookup(obj map[string]json.RawMessage, path string) (json.RawMessage, bool) {
	keys := strings.Split(path, ".")
	cur, ok := obj[keys[0]]
	for _, k := range keys[1:] {
		if !ok {
			return nil, false
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(cur, &m) != nil || m == nil {
			return nil, false
		}
		cur, ok = m[k]
	}
	return cur, ok
}

// Next returns the next item; a page is fetched when the last is used up.
func (a *API) Next(ctx context.Context) (Record, error) {
	for a.i >= len(a.items) {
		if !a.more || a.next == nil {
			return Record{}, eof()
		}
		if *a.next == a.cursor {
			if len(a.items) == 0 {
				return Record{}, eof() // the last page, empty, points at itself
			}
			return Record{}, fmt.Errorf("the API answered the same cursor %q again", a.cursor)
		}
		// A cursor met before in this run would read the same pages again, for ever.
		if a.seen == nil {
			a.seen = map[string]bool{a.cursor: true}
		}
		if a.seen[*a.next] {
			return Record{}, fmt.Errorf("the API's cursors go round: %q was read before in this run (pages must lead forward)", *a.next)
		}
		a.seen[*a.next] = true
		if len(a.items) == 0 {
			a.empty++
			if a.empty >= maxEmptyPages {
				return Record{}, fmt.Errorf("the API answered %d empty pages in a row, each with a new cursor: it does not seem to end", a.empty)
			}
		} else {
			a.empty = 0
		}
		if err := a.fetch(ctx, *a.next); err != nil {
			return Record{}, err
		}
	}
	item := a.items[a.i]
	r := Record{Pos: a.cursor + "#" + strconv.Itoa(a.i), Raw: item, Fields: map[string]string{}}
	a.i++
	a.read++
	if err := jsonlimit.CheckEscapes(item); err != nil {
		// Decoded, a lone surrogate would be U+FFFD and two items could become one.
		r.Err = fmt.Errorf("item %s: %v", r.Pos, err)
		return r, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
		r.Err = fmt.Errorf("item %s is not a JSON object", r.Pos)
		return r, nil
	}
	if k, dup := jsonlimit.DuplicateKey(item); dup {
		// Decoded, the last of the two would win silently ("amount" twice: the second amount).
		r.Err = fmt.Errorf("item %s: duplicate key %s: each key may appear once", r.Pos, strconv.Quote(k))
		return r, nil
	}
	for k, v := range obj {
		var s string
		if json.Unmarshal(v, &s) == nil {
			r.Fields[k] = s
		} else if string(v) != "null" {
			r.Fields[k] = string(v)
		}
	}
	return r, nil
}

// Progress returns the items read; the total is unknown.
func (a *API) Progress() (int64, int64) { return a.read, 0 }

// Close does nothing.
func (a *API) Close() error { return nil }

// redactURL is u for a message or the checkpoint's error: without its user information, and
// with the values of the query parameters other than the reader's own (page size, cursor)
// replaced, since a source may carry a key there (?api_key=...).
func (a *API) redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	q := c.Query()
	for k := range q {
		if k != a.o.LimitParam && k != a.o.CursorParam && !(a.o.CursorParam == "" && k == "cursor") {
			q[k] = []string{"REDACTED"}
		}
	}
	c.RawQuery = q.Encode()
	return c.String()
}

func excerpt(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
