package backfill

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ReportLine is one rejected row in the error report (JSON lines).
type ReportLine struct {
	SourceType string          `json:"source_type"`
	SourceID   string          `json:"source_id"`
	Run        int             `json:"run"`      // which start of the source (checkpoint runs)
	Position   string          `json:"position"` // the row's position (CSV: data row number)
	Line       int64           `json:"line,omitempty"`
	LedgerID   string          `json:"ledger_id,omitempty"`
	Reference  string          `json:"reference_id,omitempty"`
	Raw        json.RawMessage `json:"raw"`
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	Details    json.RawMessage `json:"details,omitempty"`

	idx int // the row's place in its batch: the report keeps source order
}

// report is the error report file. Lines are written before the batch they belong to commits,
// and the file's length after them is committed with the batch (errors_offset): a line past the
// committed length belongs to a batch that did not commit, and is cut off before the batch runs
// again. Nothing that was committed is ever cut.
type report struct {
	f         *os.File
	committed int64 // length of the file that committed batches account for
	pending   []byte
}

// ErrReportChanged is returned when the error report is not the one the checkpoint describes: it
// is shorter than the length committed with the last batch, missing, or its committed part does
// not end with a line of this source. Resuming would append to (or cut) a file that no longer
// holds the committed lines, the only record of the rows the runs rejected.
var ErrReportChanged = errors.New("the error report does not match the checkpoint")

// openReport opens the report of source sourceType/sourceID, whose committed length is committed,
// and cuts what a batch that did not commit wrote after it. It never cuts committed lines, and
// refuses a file that has changed (ErrReportChanged).
func openReport(path string, committed int64, sourceType, sourceID string) (*report, int64, error) {
	flags := os.O_RDWR
	if committed == 0 {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o640)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s is missing, but the checkpoint counts %d bytes of it: restore it (docs/backfill.md, \"The error report\")", ErrReportChanged, path, committed)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open the error report: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open the error report: %w", err)
	}
	if st.Size() < committed {
		f.Close()
		return nil, 0, fmt.Errorf("%w: %s is %d bytes, but the checkpoint counts %d: it was cut or replaced since; restore it (docs/backfill.md, \"The error report\")",
			ErrReportChanged, path, st.Size(), committed)
	}
	if committed > 0 {
		if err := lastLineIsOf(f, committed, sourceType, sourceID); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("%w: %s: %v: it was edited or replaced since; restore it (docs/backfill.md, \"The error report\")", ErrReportChanged, path, err)
		}
	}
	cut := st.Size() - committed
	if cut > 0 {
		if err := f.Truncate(committed); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("cut the error report's uncommitted tail: %w", err)
		}
	}
	return &report{f: f, committed: committed}, cut, nil
}

// lastLineIsOf checks that the first n bytes of the report end with a whole line, and that this
// line is a report line of the source.
func lastLineIsOf(f *os.File, n int64, sourceType, sourceID string) error {
	const window = 64 << 10 // report lines are short (a raw row is at most a line of the source, cut)
	start := max(n-window, 0)
	buf := make([]byte, n-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return fmt.Errorf("read the report: %w", err)
	}
	if buf[len(buf)-1] != '\n' {
		return fmt.Errorf("the committed part (%d bytes) does not end with a whole line", n)
	}
	last := buf[:len(buf)-1]
	if i := bytes.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	} else if start > 0 {
		return fmt.Errorf("the last committed line is longer than %d bytes", window)
	}
	var l ReportLine
	if err := json.Unmarshal(last, &l); err != nil || l.SourceType != sourceType || l.SourceID != sourceID {
		return fmt.Errorf("the last committed line is not a line of source %s/%s", sourceType, sourceID)
	}
	return nil
}

func (r *report) add(l ReportLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	r.pending = append(r.pending, b...)
	r.pending = append(r.pending, '\n')
	return nil
}

// length is the report's length once the pending lines are written.
func (r *report) length() int64 { return r.committed + int64(len(r.pending)) }

// flush writes the pending lines after the committed length and syncs; it returns the length
// to commit with the batch.
func (r *report) flush() (int64, error) {
	if len(r.pending) == 0 {
		return r.committed, nil
	}
	if _, err := r.f.WriteAt(r.pending, r.committed); err != nil {
		return 0, fmt.Errorf("write the error report: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return 0, fmt.Errorf("sync the error report: %w", err)
	}
	return r.committed + int64(len(r.pending)), nil
}

// commit records that the batch committed with the length n.
func (r *report) commit(n int64) { r.committed, r.pending = n, r.pending[:0] }

// discard drops the pending lines (the batch will be built again) and cuts what flush wrote.
func (r *report) discard() error {
	r.pending = r.pending[:0]
	return r.f.Truncate(r.committed)
}

func (r *report) close() error { return r.f.Close() }

// ReadReport calls fn for each line of an error report.
func ReadReport(path string, fn func(ReportLine) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	n := 0
	for sc.Scan() {
		n++
		var l ReportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
