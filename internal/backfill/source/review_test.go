package source

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCSVHeadersThatAreNotOne: a file whose lines end with a carriage return alone is one line,
// which read as the header made an import of nothing that ended "completed"; a UTF-16 file has
// NUL bytes between its letters. Both are refused before any row (ErrUnusable), with what to do.
func TestCSVHeadersThatAreNotOne(t *testing.T) {
	for name, c := range map[string]struct{ body, want string }{
		"old Mac line endings": {"debit_account_id,credit_account_id,amount\rissuance,carol,1\rissuance,dave,2\r", `carriage return (\r) inside it, at byte 42`},
		"UTF-16 LE":            {"\xff\xfed\x00e\x00b\x00\n\x00", "UTF-16"},
		"UTF-16 without a BOM": {"d\x00e\x00b\x00\n\x00", "UTF-16"},
		"empty":                {"", "empty"},
		"a column twice":       {"amount,amount\n1,2\n", `"amount" twice`},
	} {
		path := filepath.Join(t.TempDir(), "f.csv")
		if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := OpenCSV(path, nil, "", CSVOptions{})
		if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrUnusable containing %q", name, err, c.want)
		}
	}
	// CRLF stays a line ending.
	path := filepath.Join(t.TempDir(), "crlf.csv")
	if err := os.WriteFile(path, []byte("a,b\r\n1,2\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCSV(path, nil, "", CSVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if recs := readAll(t, c); len(recs) != 1 || recs[0].Fields["b"] != "2" {
		t.Errorf("CRLF: %+v", recs)
	}
}

// pagedServer answers the pages of a fixed map by cursor ("" the first), and counts requests.
func pagedServer(t *testing.T, pages map[string]string) (*httptest.Server, *[]string) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := r.URL.Query().Get("cursor")
		asked = append(asked, c)
		body, ok := pages[c]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &asked
}

// TestAPIPagesThatAreNotTheEnd: an empty page that gives a new cursor is followed (a member
// bank's key on another dualledger gets empty pages while the server scans), and a page without
// its items is an error, not the end: both ended imports early as "completed".
func TestAPIPagesThatAreNotTheEnd(t *testing.T) {
	srv, asked := pagedServer(t, map[string]string{
		"":   `{"entries":[{"reference_id":"a"}],"next_cursor":"p2"}`,
		"p2": `{"entries":[],"next_cursor":"p3"}`,
		"p3": `{"entries":null,"next_cursor":"p4"}`,
		"p4": `{"entries":[{"reference_id":"b"}],"next_cursor":"p5"}`,
		"p5": `{"entries":[],"next_cursor":"p5"}`, // the last page points at itself
	})
	a, err := OpenAPI(context.Background(), APIOptions{URL: srv.URL}, "")
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, a)
	if len(recs) != 2 || recs[1].Fields["reference_id"] != "b" || len(*asked) != 5 {
		t.Errorf("%d rows %+v after %d pages %q", len(recs), recs, len(*asked), *asked)
	}

	for name, page := range map[string]string{
		"an error object":     `{"error":{"code":"internal","message":"try later"}}`,
		"items not an array":  `{"entries":{"a":1},"next_cursor":"x"}`,
		"named items missing": `{"rows":[]}`,
	} {
		srv, _ := pagedServer(t, map[string]string{
			"":   `{"entries":[{"reference_id":"a"}],"next_cursor":"p2"}`,
			"p2": page,
		})
		a, err := OpenAPI(context.Background(), APIOptions{URL: srv.URL}, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Next(context.Background()); err == nil || !strings.Contains(err.Error(), "the page has") {
			t.Errorf("%s: %v, want an error", name, err)
		}
	}
}

// TestAPIMessagesHideTheURLsSecrets: a key in the source URL's query (or its user information)
// never reaches a message, which the checkpoint's error_message keeps and the read-only role may
// read; the reader's own parameters stay, to say which page failed.
func TestAPIMessagesHideTheURLsSecrets(t *testing.T) {
	srv, _ := pagedServer(t, map[string]string{"": `<html>oops</html>`})
	u := strings.Replace(srv.URL, "http://", "http://user:pw@", 1) + "/x?api_key=QueryS3cret&region=eu"
	_, err := OpenAPI(context.Background(), APIOptions{URL: u}, "")
	if err == nil {
		t.Fatal("an HTML page was read")
	}
	msg := err.Error()
	if strings.Contains(msg, "QueryS3cret") || strings.Contains(msg, "pw@") || strings.Contains(msg, "eu") || !strings.Contains(msg, "limit=500") {
		t.Errorf("message %q", msg)
	}
}
