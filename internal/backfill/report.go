package backfill

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
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
	sum       hash.Hash // SHA-256 of the committed bytes (nil: not kept, a dry run's report)
}

// ErrReportChanged is returned when the error report is not the one the checkpoint describes: it
// is shorter than the length committed with the last batch, missing, its committed part does not
// end with a line of this source, or what follows it is not this source's. Resuming would append
// to (or cut) a file that no longer holds the committed lines, the only record of the rows the
// runs rejected, or cut another source's lines.
var ErrReportChanged = errors.New("the error report does not match the checkpoint")

// openReport opens the report of source sourceType/sourceID, whose committed length is committed,
// and cuts what a batch that did not commit wrote after it. It never cuts committed lines, nor
// lines of another source, and refuses a file that has changed (ErrReportChanged).
//
// wantSum is the SHA-256 (hex) of the committed part that the checkpoint recorded with its last
// batch ("" for a checkpoint written before it was recorded): a report whose committed lines were
// edited, even to the same length, is refused.
func openReport(path string, committed int64, sourceType, sourceID, wantSum string) (*report, int64, error) {
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
	sum, err := prefixSum(f, committed)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("read the error report: %w", err)
	}
	if err := sumMatches(sum, committed, wantSum); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%w: %s: %v since; restore it (docs/backfill.md, \"The error report\")", ErrReportChanged, path, err)
	}
	cut := st.Size() - committed
	if cut > 0 {
		// What follows the committed length was written for a batch that did not commit, by a run
		// of this source: anything else (another source's report named by mistake) is not cut.
		if err := tailIsOf(f, committed, sourceType, sourceID); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("%w: %s: after the %d bytes the checkpoint counts, %v: it is not this source's report (name another file with --errors on the first run)",
				ErrReportChanged, path, committed, err)
		}
		if err := f.Truncate(committed); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("cut the error report's uncommitted tail: %w", err)
		}
	}
	return &report{f: f, committed: committed, sum: sum}, cut, nil
}

// recordedReportSum is the report's SHA-256 that a checkpoint's metadata records ("" if none: a
// checkpoint from before it was recorded).
func recordedReportSum(metadata json.RawMessage) string {
	var m map[string]any
	_ = json.Unmarshal(metadata, &m)
	s, _ := m["report_sha256"].(string)
	return s
}

// reportSumMatches checks that the first n bytes of the report at path hash to want.
func reportSumMatches(path string, n int64, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sum, err := prefixSum(f, n)
	if err != nil {
		return err
	}
	return sumMatches(sum, n, want)
}

// prefixSum is the SHA-256 of the first n bytes of f, to be extended with what is written after.
func prefixSum(f io.ReaderAt, n int64) (hash.Hash, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, n)); err != nil {
		return nil, err
	}
	return h, nil
}

// sumMatches compares the sum of a report's first n bytes with the one a checkpoint recorded
// (want "": none recorded, nothing to compare).
func sumMatches(sum hash.Hash, n int64, want string) error {
	if got := hex.EncodeToString(sum.Sum(nil)); want != "" && got != want {
		return fmt.Errorf("its first %d bytes hash to %s, the checkpoint recorded %s: a committed line was edited", n, got, want)
	}
	return nil
}

// lastLineIsOf checks that the first n bytes of the report end with a whole line, and that this
// line is a report line of the source. It reads back from n to the line's start, however long the
// line (a rejected row is reported whole, up to a source line of 1 MiB).
func lastLineIsOf(f *os.File, n int64, sourceType, sourceID string) error {
	var end [1]byte
	if _, err := f.ReadAt(end[:], n-1); err != nil {
		return fmt.Errorf("read the report: %w", err)
	}
	if end[0] != '\n' {
		return fmt.Errorf("the committed part (%d bytes) does not end with a whole line", n)
	}
	start := n - 1 // the line is [start, n-1)
	buf := make([]byte, 64<<10)
	for start > 0 {
		k := min(int64(len(buf)), start)
		if _, err := f.ReadAt(buf[:k], start-k); err != nil {
			return fmt.Errorf("read the report: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:k], '\n'); i >= 0 {
			start = start - k + int64(i) + 1
			break
		}
		start -= k
	}
	line := make([]byte, n-1-start)
	if _, err := f.ReadAt(line, start); err != nil {
		return fmt.Errorf("read the report: %w", err)
	}
	if !isLineOf(line, sourceType, sourceID) {
		return fmt.Errorf("the last committed line is not a line of source %s/%s", sourceType, sourceID)
	}
	return nil
}

// tailIsOf checks that every line after the first n bytes is a report line of the source (the
// last one may be cut short: a run killed while writing it).
func tailIsOf(f *os.File, n int64, sourceType, sourceID string) error {
	r := bufio.NewReader(io.NewSectionReader(f, n, 1<<62))
	for k := 1; ; k++ {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' && !isLineOf(line[:len(line)-1], sourceType, sourceID) {
			return fmt.Errorf("line %d is not a line of source %s/%s", k, sourceType, sourceID)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the report: %w", err)
		}
	}
}

func isLineOf(line []byte, sourceType, sourceID string) bool {
	var l ReportLine
	return json.Unmarshal(line, &l) == nil && l.SourceType == sourceType && l.SourceID == sourceID
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

// digest is the SHA-256 (hex) of the report once the pending lines are written: what the
// checkpoint records with the batch ("" when the report keeps no sum).
func (r *report) digest() string {
	if r.sum == nil {
		return ""
	}
	state, err := r.sum.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return ""
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return ""
	}
	h.Write(r.pending)
	return hex.EncodeToString(h.Sum(nil))
}

// commit records that the batch committed with the length n (the committed length and the
// pending lines).
func (r *report) commit(n int64) {
	if r.sum != nil {
		r.sum.Write(r.pending)
	}
	r.committed, r.pending = n, r.pending[:0]
}

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
