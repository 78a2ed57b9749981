// Package source reads the rows of a backfill from where they are: a CSV file, a table or query
// of another PostgreSQL, a paginated HTTP JSON API (another dualledger, an SCB). Every reader
// streams (memory does not grow with the source) and starts after a checkpoint position it
// produced itself, so a resumed run reads exactly the rows after the last committed batch.
package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Record is one row of a source.
type Record struct {
	// Pos is the row's position, what a checkpoint stores (last_processed_id): the CSV data row
	// number, the database key, the API page cursor and index. Opening the same source after Pos
	// yields the rows after this one.
	Pos string
	// Line is the row's first line in a text source (0 elsewhere), for people.
	Line int64
	// Fields holds the row by column name. A column that is missing, or a cell that is empty,
	// is absent.
	Fields map[string]string
	// Raw is the row as the source gave it, for the error report (CSV: the cells; JSON: the item).
	Raw json.RawMessage
	// Err is a problem of this row alone (a CSV row with the wrong number of cells): it is
	// reported and counted, and the source goes on.
	Err error
}

// Reader yields a source's rows in order.
type Reader interface {
	// Next returns the next row, or io.EOF after the last.
	Next(ctx context.Context) (Record, error)
	// Progress returns how far the reader is and, when known, how far it will go (bytes of a
	// file, rows of a table); total is 0 when unknown.
	Progress() (done, total int64)
	Close() error
}

// Fingerprinter is a reader that can say which rows it has read: a digest of every row so far. A
// checkpoint stores it; a resumed reader, having skipped to the checkpoint, must give the same,
// or the rows before the checkpoint changed since (a row inserted or edited in a file), and
// resuming by position would skip or repeat rows.
type Fingerprinter interface {
	Fingerprint() string
}

// ErrBadPosition is returned when a checkpoint position does not belong to the source (the file
// or the key changed since): resuming there could skip or repeat rows.
var ErrBadPosition = errors.New("the checkpoint position does not match the source")

// ErrUnusable is a problem of the source itself, not of one row: a CSV header that cannot be
// read as one, a database key that is not unique, an API page without its items. Running the
// same command again meets it again; the source must be fixed (or mapped) first.
var ErrUnusable = errors.New("the source cannot be imported as it is")

// unusable is an error that is ErrUnusable and says only its own message.
type unusable struct{ error }

func (unusable) Is(target error) bool { return target == ErrUnusable }

func unusablef(format string, args ...any) error { return unusable{fmt.Errorf(format, args...)} }

// Unusablef is an ErrUnusable error with its own message, for the stages after the reader.
func Unusablef(format string, args ...any) error { return unusablef(format, args...) }

func eof() error { return io.EOF }

// rawJSON is the JSON of a Fields map, for Raw.
func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}
