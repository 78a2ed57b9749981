package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"dualledger/internal/ledger"
)

func parseQuery(raw string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, ledger.Errorf(ledger.CodeInvalidRequest, "the query string is malformed (percent-encode special characters; separate parameters with &)")
	}
	return q, nil
}

// queryInt returns the integer query parameter name, def when absent; it must lie in [min, max].
func queryInt(r *http.Request, name string, def, min, max int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < min || n > max {
		return 0, fieldError(ledger.CodeInvalidRequest, name, "query parameter %s must be an integer from %d to %d, got %s",
			name, min, max, quoteField(s))
	}
	return n, nil
}

// pageLimit is the limit parameter of the paged lists.
func pageLimit(r *http.Request) (int, error) {
	n, err := queryInt(r, "limit", defaultPageLimit, 1, maxPageLimit)
	return int(n), err
}

// maxPageBytes bounds the items of one list page: a page of 1000 entries that each carry the
// largest metadata allowed would otherwise be tens of MiB. A page that reaches it ends early and
// says where to go on (next_after / next_after_seq), like any other page.
const maxPageBytes = 4 << 20

// page cuts a list that was read with one row more than limit: at most limit items, fewer if
// they would pass maxPageBytes of JSON (at least one, so a client always makes progress), and the
// cursor of the last item returned when more follow (nil on the last page).
func page[T, C any](items []T, limit int, cursor func(T) C) ([]T, *C) {
	n, total := min(len(items), limit), 0
	for i := range n {
		if total += jsonSize(items[i]); total > maxPageBytes && i > 0 {
			n = i
			break
		}
	}
	if len(items) <= n {
		return items, nil
	}
	next := cursor(items[n-1])
	return items[:n], &next
}

// jsonSize is the encoded size of v (0 if it cannot be encoded; writeJSON will say so).
func jsonSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	return len(b) + 1
}
