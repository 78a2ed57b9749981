package httpapi

import (
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
