package source

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func readAll(t testing.TB, r Reader) []Record {
	t.Helper()
	var out []Record
	for {
		rec, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
}

func TestCSVRowsPositionsAndResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.csv")
	data := "\ufeffa,b\n1,2\n\n3\n\"x\"\"y\",\n5,6,7\n8,9\n"
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCSV(path, nil, "", CSVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, c)
	c.Close()
	if len(recs) != 5 {
		t.Fatalf("%d rows: %+v", len(recs), recs)
	}
	if recs[0].Fields["a"] != "1" || recs[0].Fields["b"] != "2" || recs[0].Err != nil || recs[0].Line != 2 {
		t.Errorf("row 1: %+v", recs[0])
	}
	if recs[1].Err == nil || !strings.Contains(recs[1].Err.Error(), "1 cells") {
		t.Errorf("short row: %+v", recs[1])
	}
	if recs[2].Fields["a"] != `x"y` || recs[2].Fields["b"] != "" {
		t.Errorf("quoted row, empty cell absent: %+v", recs[2])
	}
	if _, ok := recs[2].Fields["b"]; ok {
		t.Error("an empty cell is present")
	}
	if recs[3].Err == nil {
		t.Errorf("long row: %+v", recs[3])
	}
	c, err = OpenCSV(path, nil, "3", CSVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, c)
	c.Close()
	if len(rest) != 2 || rest[0].Pos != "4" || rest[1].Fields["a"] != "8" {
		t.Errorf("resume after 3: %+v", rest)
	}
	if _, err := OpenCSV(path, nil, "9", CSVOptions{}); !errors.Is(err, ErrBadPosition) {
		t.Errorf("a position past the end: %v", err)
	}
	if _, err := OpenCSV(path, nil, "x", CSVOptions{}); !errors.Is(err, ErrBadPosition) {
		t.Errorf("a bad position: %v", err)
	}
	for _, bad := range []string{"", "a,a\n1,2\n", "a,,c\n"} {
		p := filepath.Join(t.TempDir(), "bad.csv")
		_ = os.WriteFile(p, []byte(bad), 0o600)
		if _, err := OpenCSV(p, nil, "", CSVOptions{}); err == nil {
			t.Errorf("header %q accepted", bad)
		}
	}
}

// FuzzCSV: any input reads to the end or stops with an error; every row has a position.
func FuzzCSV(f *testing.F) {
	f.Add("a,b\n1,2\n3,4\n")
	f.Add("a,b\n\"1\n2\",3\n\"bad\"quote,4\n5\n")
	f.Add("a;b\r\n1;2\r\n")
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "f.csv")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCSV(path, nil, "", CSVOptions{})
		if err != nil {
			return
		}
		defer c.Close()
		for n := 1; n < 100000; n++ {
			rec, err := c.Next(context.Background())
			if err != nil {
				return
			}
			if rec.Pos != strconv.Itoa(n) {
				t.Fatalf("row %d has position %q", n, rec.Pos)
			}
		}
	})
}

func TestAPIPagesAndResume(t *testing.T) {
	items := 23
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.Atoi(r.URL.Query().Get("since"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		var b strings.Builder
		b.WriteString(`{"entries": [`)
		n := 0
		for i := since; i < items && n < limit; i++ {
			if n > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"reference_id": "r` + strconv.Itoa(i) + `", "amount": "1.00", "n": ` + strconv.Itoa(i) + `}`)
			n++
		}
		next := since + n
		b.WriteString(`], "next_since": "` + strconv.Itoa(next) + `", "has_more": ` + strconv.FormatBool(next < items) + `}`)
		_, _ = w.Write([]byte(b.String()))
	}))
	defer srv.Close()
	a, err := OpenAPI(context.Background(), APIOptions{URL: srv.URL + "/v1/entries", Limit: 5}, "")
	if err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, a)
	if len(recs) != items || recs[22].Fields["reference_id"] != "r22" || recs[7].Fields["n"] != "7" {
		t.Fatalf("%d items: %+v", len(recs), recs)
	}
	// Resume after item 7 (page "5", index 2).
	if recs[7].Pos != "5#2" {
		t.Fatalf("position %q", recs[7].Pos)
	}
	a, err = OpenAPI(context.Background(), APIOptions{URL: srv.URL + "/v1/entries", Limit: 5}, recs[7].Pos)
	if err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, a)
	if len(rest) != items-8 || rest[0].Fields["reference_id"] != "r8" {
		t.Errorf("resumed: %d items, first %+v", len(rest), rest[0])
	}
}

// FuzzAPIPage: any page body parses or is refused; none panics.
func FuzzAPIPage(f *testing.F) {
	f.Add([]byte(`{"entries": [{"a": 1}], "next_after_seq": 5}`))
	f.Add([]byte(`[{"a": 1}, 2]`))
	f.Add([]byte(`{"data": {"x": 1}, "next_cursor": null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		a := &API{}
		_, _, _, _ = a.parsePage(body)
	})
}
