package source

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
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

// FuzzCSV: any input reads to the end or stops with an error; every row has a position, and every
// line after the header that holds anything is exactly one row (no line is swallowed by another's
// quote, none is lost).
func FuzzCSV(f *testing.F) {
	f.Add("a,b\n1,2\n3,4\n")
	f.Add("a,b\n\"1\n2\",3\n\"bad\"quote,4\n5\n")
	f.Add("a;b\r\n1;2\r\n")
	f.Add("a,b\n\"1,2\n3,4\n5,\"6\"\"\n")
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
		want := 0
		header := false
		for _, l := range strings.Split(data, "\n") {
			l = strings.TrimSuffix(l, "\r")
			switch {
			case l == "":
			case !header:
				header = true
			case l != `""`:
				want++
			}
		}
		n := 0
		for {
			rec, err := c.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if rec.Pos != strconv.Itoa(n) {
				t.Fatalf("row %d has position %q", n, rec.Pos)
			}
		}
		if n != want {
			t.Fatalf("%d rows from %d lines after the header", n, want)
		}
	})
}

// FuzzCSVLineAgreesWithEncodingCSV: on one line, parseCSVLine reads the cells encoding/csv reads,
// and refuses what it refuses.
func FuzzCSVLineAgreesWithEncodingCSV(f *testing.F) {
	for _, s := range []string{`a,b`, `"a,b",c`, `"a""b",`, `a"b,c`, `"a"b,c`, `"abc`, `,,`, `"",""`, "x;\"y;z\"", `é,"ü"`} {
		f.Add(s, ',')
		f.Add(s, ';')
	}
	f.Add("a\tb", '\t')
	f.Add("a§b§\"§\"", '§')
	f.Fuzz(func(t *testing.T, line string, comma rune) {
		if strings.ContainsAny(line, "\r\n") || line == "" || !validDelim(comma) || comma == ' ' {
			return
		}
		r := csv.NewReader(strings.NewReader(line + "\n"))
		r.Comma = comma
		r.FieldsPerRecord = -1
		want, werr := r.Read()
		got, _, problem := parseCSVLine([]byte(line), comma)
		if werr != nil {
			if problem == "" {
				t.Fatalf("%q (comma %q): encoding/csv refuses it (%v), parseCSVLine reads %q", line, comma, werr, got)
			}
			return
		}
		if problem != "" {
			t.Fatalf("%q (comma %q): encoding/csv reads %q, parseCSVLine refuses it: %s", line, comma, want, problem)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q (comma %q): encoding/csv reads %q, parseCSVLine %q", line, comma, want, got)
		}
	})
}

// An unbalanced quote, a byte that is not UTF-8 or an over-long line is a problem of its own row:
// the rows after it are read as usual (an unbalanced quote once swallowed the rest of the file).
func TestCSVBadRowsDoNotSwallowTheNext(t *testing.T) {
	var b strings.Builder
	b.WriteString("debit,credit,amount,currency,type,ref\n")
	b.WriteString("ob,x,1.00,USD,f,q-1\n")
	b.WriteString("ob,x,1.00,USD,fund\"ing,q-2\n")
	b.WriteString("ob,x,\"1.00,USD,f,q-3\n")
	b.WriteString("ob,x,1.00,USD,f,u8-\xff\n")
	b.WriteString("ob,x,1.00,USD,f," + strings.Repeat("z", MaxCSVLine+10) + "\n")
	b.WriteString("ob,x,\"1.00\"x,USD,f,q-6\n")
	for i := 7; i <= 20; i++ {
		b.WriteString("ob,x,1.00,USD,f,q-" + strconv.Itoa(i) + "\n")
	}
	path := filepath.Join(t.TempDir(), "q.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCSV(path, nil, "", CSVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs := readAll(t, c)
	if len(recs) != 20 {
		t.Fatalf("%d rows, want 20", len(recs))
	}
	wantErr := map[int]string{
		2: "line 3 is not valid CSV: column 5: a quote",
		3: "line 4 is not valid CSV: column 3: a quoted cell that is not closed",
		4: `line 5 column 6 ("ref") is not valid UTF-8`,
		5: "line 6 is longer than",
		6: "line 7 is not valid CSV: column 3: text after the closing quote",
	}
	for i, r := range recs {
		n := i + 1
		if r.Line != int64(n+1) || r.Pos != strconv.Itoa(n) {
			t.Errorf("row %d: line %d, position %s", n, r.Line, r.Pos)
		}
		if want, bad := wantErr[n]; bad {
			if r.Err == nil || !strings.Contains(r.Err.Error(), want) {
				t.Errorf("row %d: error %v, want %q", n, r.Err, want)
			}
			if len(r.Fields) != 0 {
				t.Errorf("row %d: a broken row has fields %v", n, r.Fields)
			}
			if len(r.Raw) > 1000 || !json.Valid(r.Raw) {
				t.Errorf("row %d: raw %d bytes, valid JSON %v", n, len(r.Raw), json.Valid(r.Raw))
			}
			continue
		}
		if r.Err != nil || r.Fields["ref"] != "q-"+strconv.Itoa(n) {
			t.Errorf("row %d: %v %v", n, r.Err, r.Fields)
		}
	}
	// Resuming after a broken row counts rows the same way.
	c2, err := OpenCSV(path, nil, "4", CSVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if rest := readAll(t, c2); len(rest) != 16 || rest[2].Fields["ref"] != "q-7" {
		t.Errorf("resumed after row 4: %d rows", len(rest))
	}
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

// TestCSVLineLimit: a line of MaxCSVLine bytes is a row; one byte more is a rejected row, with or
// without a line break after it. A byte order mark before a comment line is the comment's.
func TestCSVLineLimit(t *testing.T) {
	for _, tail := range []string{"\n", "\r\n", ""} {
		ok := "x," + strings.Repeat("y", MaxCSVLine-2)
		long := ok + "z"
		path := filepath.Join(t.TempDir(), "l.csv")
		_ = os.WriteFile(path, []byte("\ufeff# exported\na,b\n"+ok+"\n"+long+tail), 0o600)
		c, err := OpenCSV(path, nil, "", CSVOptions{Comment: '#'})
		if err != nil {
			t.Fatal(err)
		}
		recs := readAll(t, c)
		c.Close()
		if len(recs) != 2 || recs[0].Err != nil || len(recs[0].Fields["b"]) != MaxCSVLine-2 {
			t.Fatalf("tail %q: %d rows, first %v", tail, len(recs), recs[0].Err)
		}
		if recs[1].Err == nil || !strings.Contains(recs[1].Err.Error(), "line 4 is longer than") {
			t.Errorf("tail %q: %v", tail, recs[1].Err)
		}
	}
}
