package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// No list page exceeds a few MiB, whatever the metadata: a page of 1000 entries that each carry
// 15 KiB of metadata ends early with a cursor, and following the cursors reads every entry once.
func TestListPagesAreCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("posts 600 entries with 15 KiB of metadata each")
	}
	e := newEnv(t, Config{})
	e.setupUSD()
	const n = 600
	pad := strings.Repeat("x", 15<<10)
	for b := 0; b < n; b += 100 {
		var entries []any
		for i := b; i < b+100; i++ {
			en := entry(fmt.Sprintf("big-%03d", i), "issuance", "alice", "1.00")
			en["metadata"] = map[string]any{"pad": pad}
			entries = append(entries, en)
		}
		e.mustStatus(e.do("POST", "/v1/ledgers/L/entries/batch", map[string]any{"entries": entries}), http.StatusOK)
	}
	seen := map[string]bool{}
	after := "0"
	pages := 0
	for {
		r := e.mustStatus(e.do("GET", "/v1/ledgers/L/entries?limit=1000&after_seq="+after, nil), http.StatusOK)
		pages++
		if len(r.raw) > 5<<20 {
			t.Fatalf("page %d is %d bytes", pages, len(r.raw))
		}
		for _, x := range r.get("entries").([]any) {
			ref := x.(map[string]any)["reference_id"].(string)
			if seen[ref] {
				t.Fatalf("%s on two pages", ref)
			}
			seen[ref] = true
		}
		next, ok := r.get("next_after_seq").(float64)
		if !ok {
			break
		}
		after = fmt.Sprint(int64(next))
	}
	if len(seen) != n || pages < 3 {
		t.Errorf("read %d entries in %d pages, want %d in at least 3", len(seen), pages, n)
	}
}
