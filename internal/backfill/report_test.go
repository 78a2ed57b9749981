package backfill

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeLines appends report lines of a source and returns the file's length after them.
func writeLines(t *testing.T, path, sourceID string, raws ...string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, raw := range raws {
		b, _ := json.Marshal(ReportLine{SourceType: "csv", SourceID: sourceID, Position: "1", Raw: json.RawMessage(`["` + raw + `"]`), Code: "invalid_request", Message: "m"})
		if _, err := f.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := f.Stat()
	return st.Size()
}

// TestOpenReport: a resume cuts only its own uncommitted tail, whatever the length of the last
// committed line, and refuses a report that is not the one the checkpoint counts.
func TestOpenReport(t *testing.T) {
	open := func(path string, committed int64) (int64, error) {
		r, cut, err := openReport(path, committed, "csv", "s", "")
		if err == nil {
			r.close()
		}
		return cut, err
	}
	t.Run("a long last line, and an own uncommitted tail cut short", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "r.jsonl")
		committed := writeLines(t, p, "s", "a", strings.Repeat("x", 300<<10))
		total := writeLines(t, p, "s", "uncommitted")
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		_, _ = f.WriteString(`{"source_type":"csv","sou`) // killed in the middle of a line
		f.Close()
		cut, err := open(p, committed)
		if err != nil || cut != total-committed+25 {
			t.Fatalf("cut %d, %v", cut, err)
		}
		if st, _ := os.Stat(p); st.Size() != committed {
			t.Errorf("length %d after the cut, want %d", st.Size(), committed)
		}
	})
	t.Run("another source's report", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "r.jsonl")
		other := writeLines(t, p, "other", "b")
		if _, err := open(p, 0); !errors.Is(err, ErrReportChanged) {
			t.Errorf("committed 0: %v", err)
		}
		mine := writeLines(t, p, "s", "c") // the checkpoint counts up to here; another source appends
		writeLines(t, p, "other", "d")
		if _, err := open(p, mine); !errors.Is(err, ErrReportChanged) {
			t.Errorf("another source's lines after ours: %v", err)
		}
		if st, _ := os.Stat(p); st.Size() <= mine || other == 0 {
			t.Errorf("the other source's lines were cut")
		}
	})
	t.Run("cut, edited or missing", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "r.jsonl")
		committed := writeLines(t, p, "s", "a", "b")
		b, _ := os.ReadFile(p)
		for name, content := range map[string][]byte{
			"cut":           b[:len(b)-5],
			"mid-line":      append(append([]byte{}, b...), []byte("xx")...),
			"another's end": []byte(strings.Replace(string(b), `"source_id":"s"`, `"source_id":"t"`, -1)),
		} {
			_ = os.WriteFile(p, content, 0o600)
			off := committed
			if name == "mid-line" {
				off = committed + 1
			}
			if _, err := open(p, off); !errors.Is(err, ErrReportChanged) {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, err := open(filepath.Join(dir, "gone.jsonl"), committed); !errors.Is(err, ErrReportChanged) {
			t.Errorf("missing: %v", err)
		}
		if _, err := open(filepath.Join(dir, "new.jsonl"), 0); err != nil {
			t.Errorf("a new report: %v", err)
		}
	})
	t.Run("a committed line edited to the same length", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "r.jsonl")
		committed := writeLines(t, p, "s", "aaaa", "bbbb", "cccc")
		b, _ := os.ReadFile(p)
		want := sha256.Sum256(b)
		r, _, err := openReport(p, committed, "csv", "s", hex.EncodeToString(want[:]))
		if err != nil {
			t.Fatalf("the report as the checkpoint recorded it: %v", err)
		}
		// What the next batch records: the sum with its lines, and after its commit the same.
		_ = r.add(ReportLine{SourceType: "csv", SourceID: "s", Code: "x"})
		next := r.digest()
		n, err := r.flush()
		if err != nil {
			t.Fatal(err)
		}
		r.commit(n)
		r.close()
		after, _ := os.ReadFile(p)
		if got := sha256.Sum256(after); hex.EncodeToString(got[:]) != next {
			t.Errorf("digest %s of the report with the batch's lines, the file's %x", next, got)
		}
		_ = os.WriteFile(p, []byte(strings.Replace(string(b), "bbbb", "BBBB", 1)), 0o600)
		if _, _, err := openReport(p, committed, "csv", "s", hex.EncodeToString(want[:])); !errors.Is(err, ErrReportChanged) {
			t.Errorf("an edited line: %v", err)
		}
	})
}
