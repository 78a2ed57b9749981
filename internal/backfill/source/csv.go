package source

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
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

// CSVOptions say how a CSV source is read.
type CSVOptions struct {
	Comma   rune // default ','
	Comment rune // 0: none
}

// CSV reads a CSV file with a header line; "-" reads standard input (stdin).
type CSV struct {
	f      io.Closer
	r      *csv.Reader
	header []string
	row    int64 // data rows returned so far
	size   int64
	lastOf int64
	// the error of the last record, to tell a row error the reader moves past from one it is
	// stuck on
	stuckAt int64
	digest  hash.Hash // of the header and every data row read
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
	r := csv.NewReader(bufio.NewReaderSize(in, 1<<20))
	if o.Comma != 0 {
		r.Comma = o.Comma
	}
	r.Comment = o.Comment
	r.FieldsPerRecord = -1 // checked here, per row, so that a bad row is reported and the rest read
	r.ReuseRecord = false
	c := &CSV{f: closer, r: r, size: size, stuckAt: -1, digest: sha256.New()}
	header, err := r.Read()
	if err != nil {
		closer.Close()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the CSV source is empty: it needs a header line naming its columns")
		}
		return nil, fmt.Errorf("read the CSV header: %w", err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte order mark from a spreadsheet
	}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if h == "" {
			closer.Close()
			return nil, fmt.Errorf("the CSV header has an empty column name (column %d)", i+1)
		}
		if seen[h] {
			closer.Close()
			return nil, fmt.Errorf("the CSV header names column %q twice", h)
		}
		seen[h] = true
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

// Header returns the column names.
func (c *CSV) Header() []string { return c.header }

// Next returns the next data row. A row with the wrong number of cells, or one that is not valid
// CSV, comes back with Err set (and the cells that could be read).
func (c *CSV) Next(ctx context.Context) (Record, error) {
	for {
		rec, err := c.r.Read()
		if errors.Is(err, io.EOF) {
			return Record{}, io.EOF
		}
		line := 0
		if err == nil && len(rec) > 0 {
			line, _ = c.r.FieldPos(0)
		}
		var pe *csv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return Record{}, fmt.Errorf("read the CSV source: %w", err)
		}
		if err != nil {
			// A malformed row (an unescaped quote): encoding/csv goes on after it; if it did not
			// move, it never will.
			off := c.r.InputOffset()
			if off == c.stuckAt {
				return Record{}, fmt.Errorf("read the CSV source: %w", err)
			}
			c.stuckAt = off
			line = pe.StartLine
		}
		if len(rec) == 1 && rec[0] == "" && err == nil {
			continue // a blank line
		}
		c.row++
		c.lastOf = c.r.InputOffset()
		r := Record{Pos: strconv.FormatInt(c.row, 10), Line: int64(line), Fields: make(map[string]string, len(c.header)), Raw: rawJSON(validUTF8(rec))}
		c.digest.Write(r.Raw)
		c.digest.Write([]byte{'\n'})
		for i, h := range c.header {
			if i < len(rec) && rec[i] != "" {
				r.Fields[h] = rec[i]
			}
		}
		switch {
		case err != nil:
			r.Err = fmt.Errorf("line %d is not valid CSV: %v", line, pe.Err)
		case len(rec) != len(c.header):
			r.Err = fmt.Errorf("line %d has %d cells but the header names %d columns", line, len(rec), len(c.header))
		}
		return r, nil
	}
}

func validUTF8(rec []string) []string {
	for i, s := range rec {
		if !utf8.ValidString(s) {
			rec[i] = strings.ToValidUTF8(s, "\uFFFD")
		}
	}
	return rec
}

// Fingerprint is the SHA-256 (hex) of the header and the rows read so far.
func (c *CSV) Fingerprint() string { return hex.EncodeToString(c.digest.Sum(nil)) }

// Progress returns the bytes read and the file's size (0 for stdin).
func (c *CSV) Progress() (int64, int64) { return c.lastOf, c.size }

// Close closes the file.
func (c *CSV) Close() error { return c.f.Close() }
