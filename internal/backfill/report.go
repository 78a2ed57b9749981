package backfill

import (
	"bufio"
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

func openReport(path string, committed int64) (*report, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("open the error report: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("open the error report: %w", err)
	}
	cut := int64(0)
	switch {
	case st.Size() > committed:
		cut = st.Size() - committed
		if err := f.Truncate(committed); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("cut the error report's uncommitted tail: %w", err)
		}
	case st.Size() < committed:
		// Shorter than the checkpoint says: edited or replaced by hand. Append to what is there.
		committed = st.Size()
	}
	return &report{f: f, committed: committed}, cut, nil
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
