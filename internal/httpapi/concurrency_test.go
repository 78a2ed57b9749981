package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
)

// Concurrent single-entry postings all succeed, are committed in shared transactions (group
// commit), and concurrent duplicates of one reference get one created and the rest replayed,
// all with the same entry.
func TestConcurrentPostingsGroupCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("3200 postings")
	}
	e := newEnv(t, Config{})
	e.setupUSD()
	const workers, perWorker = 16, 200

	type outcome struct {
		ref    string
		status int
		result string
		id     float64
		err    error
	}
	out := make(chan outcome, workers*perWorker)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			for i := range perWorker {
				ref := fmt.Sprintf("g%02d-%03d", g, i)
				if i%10 == 0 {
					ref = fmt.Sprintf("shared-%03d", i) // posted by every worker, same content
				}
				credit := []string{"alice", "bob"}[i%2]
				status, body, err := postJSON(e.client, e.ts.URL+"/v1/ledgers/L/entries", entry(ref, "issuance", credit, "1.00"))
				o := outcome{ref: ref, status: status, err: err}
				if body != nil {
					o.result, _ = body["result"].(string)
					o.id, _ = body["entry"].(map[string]any)["id"].(float64)
				}
				out <- o
			}
		})
	}
	wg.Wait()
	close(out)

	byRef := map[string][]outcome{}
	for o := range out {
		if o.err != nil || (o.status != 201 && o.status != 200) {
			t.Fatalf("%s: %d %v", o.ref, o.status, o.err)
		}
		byRef[o.ref] = append(byRef[o.ref], o)
	}
	unique := workers*perWorker - workers*perWorker/10 + perWorker/10
	if len(byRef) != unique {
		t.Fatalf("%d references, want %d", len(byRef), unique)
	}
	for ref, os := range byRef {
		created := 0
		for _, o := range os {
			if o.result == "created" {
				created++
			} else if o.result != "replayed" || o.status != 200 {
				t.Errorf("%s: %s %d", ref, o.result, o.status)
			}
			if o.id != os[0].id {
				t.Errorf("%s: entry ids %v and %v", ref, o.id, os[0].id)
			}
		}
		if created != 1 {
			t.Errorf("%s: created %d times of %d", ref, created, len(os))
		}
	}
	if s := e.headSeq("L"); s != float64(unique) {
		t.Errorf("head_seq %v, want %d", s, unique)
	}
	if b := e.balance("L", "issuance"); b != "-"+strconv.Itoa(unique)+".00" {
		t.Errorf("issuance balance %s, want -%d", b, unique)
	}

	// The group commit batched: fewer transactions than postings, each posting in one.
	m := e.metricsText()
	count, sum := metricValue(t, m, "dualledger_group_commit_batch_size_count"), metricValue(t, m, "dualledger_group_commit_batch_size_sum")
	if sum != workers*perWorker || count >= sum {
		t.Errorf("group commit: %v postings in %v transactions", sum, count)
	}
	t.Logf("group commit: %v postings in %v transactions (%.1f per transaction)", sum, count, sum/count)
}

func postJSON(c *http.Client, url string, body any) (int, map[string]any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%w: %s", err, raw)
	}
	return resp.StatusCode, m, nil
}

func metricValue(t *testing.T, text []byte, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(text)
	if m == nil {
		t.Fatalf("metric %s missing", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
