package source

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxCSVLine is the longest line a CSV source may have (1 MiB). A longer line is a rejected row
// of its own, read past without being held in memory: memory does not grow with a cell.
const MaxCSVLine = 1 << 20

// CSVOptions say how a CSV source is read.
type CSVOptions struct {
	Comma   rune // default ','
	Comment rune // 0: none
}

// CSV reads a CSV file with a header line; "-" reads standard input (stdin).
//
// One record is one line. A quoted cell may hold the delimiter and doubled quotes ("") but not a
// line break. encoding/csv lets a quoted cell run on over line breaks, so that one unbalanced
// quote swallowed every row after it into a single cell, up to the next quote or the end of the
// file: rows that were neither posted nor reported. Here an unbalanced quote is an error of its
// own line, and the next line is read as the next row.
type CSV struct {
	f      io.Closer
	br     *bufio.Reader
	comma  rune
	cmt    rune
	header []string
	row    int64 // data rows returned so far
	line   int64 // physical lines read so far
	size   int64
	lastOf int64  // bytes read so far
	buf    []byte // the current line
	lp     lineParser
	digest hash.Hash // of the header and every data row read
}

// OpenCSV opens path (or stdin for "-") and positions it after data row `after` (a position
// this reader returned, "" for the start). The header is the first line; its column names are
// kept as written.
func OpenCSV(path string, stdin io.Reader, after string, o CSVOptions) (*CSV, error) {
	var (
		in     io.Reader
		closer io.Closer = io.NopCloser(nil)
		size   int64
	)
	comma := o.Comma
	if comma == 0 {
		comma = ','
	}
	if !validDelim(comma) || (o.Comment != 0 && (!validDelim(o.Comment) || o.Comment == comma)) {
		return nil, fmt.Errorf("the CSV delimiter %q and comment character %q cannot be used (neither may be a quote or a line break, and they must differ)", comma, o.Comment)
	}
	if path == "-" {
		in = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open the CSV source: %w", err)
		}
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		in, closer = f, f
	}
	c := &CSV{f: closer, br: bufio.NewReaderSize(in, 1<<20), comma: comma, cmt: o.Comment, size: size, digest: sha256.New()}
	header, err := c.readHeader()
	if err != nil {
		closer.Close()
		return nil, err
	}
	c.header = header
	c.digest.Write(rawJSON(header))
	if after != "" {
		n, err := strconv.ParseInt(after, 10, 64)
		if err != nil || n < 0 {
			closer.Close()
			return nil, fmt.Errorf("%w: %q is not a CSV row number", ErrBadPosition, after)
		}
		for c.row < n {
			if _, err := c.Next(context.Background()); err != nil {
				closer.Close()
				if errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("%w: the checkpoint is after row %d but the file has %d rows", ErrBadPosition, n, c.row)
				}
				return nil, err
			}
		}
	}
	return c, nil
}

func validDelim(r rune) bool {
	return r != 0 && r != '"' && r != '\r' && r != '\n' && r != utf8.RuneError && utf8.ValidRune(r)
}

// readHeader reads the first line that is neither blank nor a comment.
func (c *CSV) readHeader() ([]string, error) {
	for {
		line, tooLong, err := c.readLine()
		if errors.Is(err, io.EOF) {
			return nil, unusablef("the CSV source is empty: it needs a header line naming its columns")
		}
		if err != nil {
			return nil, fmt.Errorf("read the CSV header: %w", err)
		}
		if tooLong {
			return nil, unusablef("the CSV header (line %d) is longer than %d bytes", c.line, MaxCSVLine)
		}
		if c.line == 1 {
			line = bytes.TrimPrefix(line, []byte("\ufeff")) // a byte order mark from a spreadsheet
		}
		if c.skip(line) {
			continue
		}
		if i := bytes.IndexByte(line, '\r'); i >= 0 {
			// A file with old Mac line endings (a carriage return alone) is one line: read as a
			// header, it would hold every row and the import would post nothing.
			return nil, unusablef("the CSV header (line %d) has a carriage return (\\r) inside it, at byte %d: lines must end with \\n or \\r\\n (a file whose lines end with \\r alone must be converted first)", c.line, i+1)
		}
		if bytes.IndexByte(line, 0) >= 0 || bytes.HasPrefix(line, []byte("\xff\xfe")) || bytes.HasPrefix(line, []byte("\xfe\xff")) {
			return nil, unusablef("the CSV header (line %d) has NUL bytes or a UTF-16 byte order mark: the file is UTF-16, or not text; save it as UTF-8 text", c.line)
		}
		header, col, perr := c.lp.parse(line, c.comma)
		if perr != "" {
			return nil, unusablef("the CSV header (line %d) is not valid CSV: column %d: %s", c.line, col, perr)
		}
		seen := map[string]bool{}
		for i, h := range header {
			if !utf8.ValidString(h) {
				return nil, unusablef("the CSV header's column %d is not valid UTF-8 (save the file as UTF-8)", i+1)
			}
			h = strings.TrimSpace(h)
			header[i] = h
			if h == "" {
				return nil, unusablef("the CSV header has an empty column name (column %d)", i+1)
			}
			if seen[h] {
				return nil, unusablef("the CSV header names column %q twice", h)
			}
			seen[h] = true
		}
		return header, nil
	}
}

// skip says whether a line is no row: blank, or a comment.
func (c *CSV) skip(line []byte) bool {
	if len(line) == 0 {
		return true
	}
	if c.cmt != 0 {
		r, _ := utf8.DecodeRune(line)
		return r == c.cmt
	}
	return false
}

// readLine returns the next line without its line break ("\n" or "\r\n"), valid until the next
// call. A line longer than MaxCSVLine is read to its end but not kept: tooLong, and the line's
// first bytes.
func (c *CSV) readLine() (line []byte, tooLong bool, err error) {
	c.buf = c.buf[:0]
	for {
		part, err := c.br.ReadSlice('\n')
		c.lastOf += int64(len(part))
		if !tooLong {
			c.buf = append(c.buf, part...)
			if len(c.buf) > MaxCSVLine+2 { // (room for the line break, which does not count)
				tooLong, c.buf = true, c.buf[:200] // what the report shows of it
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(c.buf) == 0 && !tooLong:
			return nil, false, io.EOF
		case err != nil && !errors.Is(err, io.EOF):
			return nil, false, err
		}
		// A whole line, or a last line without a line break.
		c.line++
		if tooLong {
			return c.buf, true, nil
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(c.buf, []byte("\n")), []byte("\r"))
		if len(line) > MaxCSVLine {
			return line[:200], true, nil
		}
		return line, false, nil
	}
}

// parseCSVLine splits one line into cells as RFC 4180 and encoding/csv do (no lazy quotes, no
// trimming): a cell is either plain, with no quote in it, or quoted from its first to its last
// character, "" standing for a quote inside. On a problem it returns the 1-based column and what
// is wrong (problem == "" when the line is fine).
func parseCSVLine(line []byte, comma rune) (cells []string, col int, problem string) {
	var p lineParser
	return p.parse(line, comma)
}

// lineParser keeps its buffers from line to line. As encoding/csv does, the cells of a line are
// one string, sliced: one allocation for the text of a row, not one per cell.
type lineParser struct {
	text []byte // the cells' text, one after the other
	ends []int  // where each cell ends in text
}

func (p *lineParser) parse(line []byte, comma rune) (cells []string, col int, problem string) {
	var sep [utf8.UTFMax]byte
	sepb := sep[:utf8.EncodeRune(sep[:], comma)]
	p.text, p.ends = p.text[:0], p.ends[:0]
	for col = 1; ; col++ {
		if len(line) == 0 || line[0] != '"' {
			end := bytes.Index(line, sepb)
			cell := line
			if end >= 0 {
				cell = line[:end]
			}
			if bytes.IndexByte(cell, '"') >= 0 {
				return p.cells(), col, `a quote (") inside a cell that does not start with one: quote the whole cell and double the quotes inside it`
			}
			p.text = append(p.text, cell...)
			p.ends = append(p.ends, len(p.text))
			if end < 0 {
				return p.cells(), 0, ""
			}
			line = line[end+len(sepb):]
			continue
		}
		line = line[1:]
		for {
			q := bytes.IndexByte(line, '"')
			if q < 0 {
				return p.cells(), col, "a quoted cell that is not closed on its line (a cell cannot hold a line break)"
			}
			p.text = append(p.text, line[:q]...)
			line = line[q+1:]
			if len(line) > 0 && line[0] == '"' { // "" is a quote
				p.text = append(p.text, '"')
				line = line[1:]
				continue
			}
			break
		}
		p.ends = append(p.ends, len(p.text))
		if len(line) == 0 {
			return p.cells(), 0, ""
		}
		if !bytes.HasPrefix(line, sepb) {
			return p.cells(), col, "text after the closing quote of a quoted cell (a quote inside a quoted cell is written twice)"
		}
		line = line[len(sepb):]
	}
}

// cells returns the cells parsed so far.
func (p *lineParser) cells() []string {
	text := string(p.text)
	out := make([]string, len(p.ends))
	from := 0
	for i, e := range p.ends {
		out[i] = text[from:e]
		from = e
	}
	return out
}

// Header returns the column names.
func (c *CSV) Header() []string { return c.header }

// Next returns the next data row. A row with the wrong number of cells, one that is not valid
// CSV or not valid UTF-8, or one longer than MaxCSVLine, comes back with Err set (and the cells
// that could be read); the row after it is read as usual.
func (c *CSV) Next(ctx context.Context) (Record, error) {
	for {
		line, tooLong, err := c.readLine()
		if errors.Is(err, io.EOF) {
			return Record{}, io.EOF
		}
		if err != nil {
			return Record{}, fmt.Errorf("read the CSV source: %w", err)
		}
		if c.skip(line) {
			continue
		}
		var (
			rec     []string
			col     int
			problem string
		)
		if tooLong {
			rec = []string{string(line) + "…"}
			problem = fmt.Sprintf("is longer than %d bytes", MaxCSVLine)
		} else if rec, col, problem = c.lp.parse(line, c.comma); problem != "" {
			problem = fmt.Sprintf("is not valid CSV: column %d: %s", col, problem)
		}
		if problem == "" && len(rec) == 1 && rec[0] == "" {
			continue // a line holding only "" (encoding/csv read it as a blank line too)
		}
		if problem == "" {
			for i, s := range rec {
				if !utf8.ValidString(s) {
					bad := len(s) - len(strings.ToValidUTF8(s, ""))
					problem = fmt.Sprintf("column %d (%s) is not valid UTF-8 (%d bytes that are no character): save the file as UTF-8",
						i+1, c.columnName(i), bad)
					break
				}
			}
		}
		c.row++
		r := Record{Pos: strconv.FormatInt(c.row, 10), Line: c.line, Fields: make(map[string]string, len(c.header)), Raw: rawJSON(validUTF8(rec))}
		c.digest.Write(r.Raw)
		c.digest.Write([]byte{'\n'})
		switch {
		case problem != "":
			r.Err = fmt.Errorf("line %d %s", c.line, problem)
			return r, nil // no fields: nothing of a broken row is taken for a value
		case len(rec) != len(c.header):
			hint := ""
			if bytes.IndexByte(line, '\r') >= 0 {
				hint = " (it has a carriage return (\\r) inside: lines must end with \\n or \\r\\n)"
			}
			r.Err = fmt.Errorf("line %d has %d cells but the header names %d columns%s", c.line, len(rec), len(c.header), hint)
		}
		for i, h := range c.header {
			if i < len(rec) && rec[i] != "" {
				r.Fields[h] = rec[i]
			}
		}
		return r, nil
	}
}

func (c *CSV) columnName(i int) string {
	if i < len(c.header) {
		return strconv.Quote(c.header[i])
	}
	return "beyond the header"
}

// validUTF8 makes the cells valid UTF-8 for the error report's JSON (the row's Err says it was
// not).
func validUTF8(rec []string) []string {
	var out []string
	for i, s := range rec {
		if !utf8.ValidString(s) {
			if out == nil {
				out = append([]string(nil), rec...)
			}
			out[i] = strings.ToValidUTF8(s, "\uFFFD")
		}
	}
	if out == nil {
		return rec
	}
	return out
}

// Fingerprint is the SHA-256 (hex) of the header and the rows read so far.
func (c *CSV) Fingerprint() string { return hex.EncodeToString(c.digest.Sum(nil)) }

// Progress returns the bytes read and the file's size (0 for stdin).
func (c *CSV) Progress() (int64, int64) { return c.lastOf, c.size }

// Close closes the file.
func (c *CSV) Close() error { return c.f.Close() }
