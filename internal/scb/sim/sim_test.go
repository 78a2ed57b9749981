package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"dualledger/internal/scb"
)

func TestReplayAnswersTheSame(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{FinalAfter: time.Hour})
	code1, h1, b1 := e.postRaw(entry("r1"))
	code2, h2, b2 := e.postRaw(entry("r1"))
	if code1 != 201 || code2 != 201 || !bytes.Equal(b1, b2) {
		t.Fatalf("first %d %s, replay %d %s", code1, b1, code2, b2)
	}
	if h1.Get("Idempotent-Replayed") != "" || h2.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("Idempotent-Replayed: first %q, replay %q", h1.Get("Idempotent-Replayed"), h2.Get("Idempotent-Replayed"))
	}
	// The client sees the replay too; the same entry read in another time zone is the same body.
	ent := entry("r1")
	ent.TimestampUTC = ent.TimestampUTC.In(time.FixedZone("CET", 3600))
	res, err := e.client.Post(context.Background(), ent)
	if err != nil || !res.Replayed || res.SCBEntryID != "SCB-1-00000001" || res.Status != scb.StatusAccepted {
		t.Fatalf("client replay: %+v, %v", res, err)
	}
	st := e.stats()
	if st.Posts != 1 || st.Keys != 1 || st.Replays != 2 || st.PerKeyPosts["MASTER:r1"] != 1 || st.DuplicatePosts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOtherBodySameKeyIs409(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{})
	if _, err := e.client.Post(context.Background(), entry("r1")); err != nil {
		t.Fatal(err)
	}
	other := entry("r1")
	other.Amount = "250.01"
	_, err := e.client.Post(context.Background(), other)
	var de *scb.DeliveryError
	if !errors.As(err, &de) || de.StatusCode != 409 || de.Retryable || !strings.Contains(de.Reason, "different entry") {
		t.Fatalf("err = %v", err)
	}
	if st := e.stats(); st.Posts != 1 || st.Conflicts != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The stored entry is the first one.
	res, err := e.client.GetInLedger(context.Background(), "MASTER", "r1")
	if err != nil || res.Entry.Amount != "250.00" {
		t.Fatalf("get: %+v %v", res, err)
	}
}

func TestRejections(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{})
	good, _ := entry("r1").Body()
	key := map[string]string{"Idempotency-Key": "MASTER:r1"}
	cases := []struct {
		name, auth string
		hdr        map[string]string
		body       []byte
		code       int
		errCode    string
	}{
		{"no key", "", key, good, 401, "unauthorized"},
		{"wrong key", "nope", key, good, 401, "unauthorized"},
		{"admin key is not the API key", adminKey, key, good, 401, "unauthorized"},
		{"no Idempotency-Key", apiKey, nil, good, 400, "missing_idempotency_key"},
		{"not JSON", apiKey, key, []byte(`{"reference_id":`), 400, "bad_json"},
		{"not an object", apiKey, key, []byte(`[1,2]`), 422, "invalid_entry"},
		{"amount as a number", apiKey, key, bytes.Replace(good, []byte(`"250.00"`), []byte(`250`), 1), 422, "invalid_entry"},
		{"unknown field", apiKey, key, bytes.Replace(good, []byte(`{`), []byte(`{"memo":"x",`), 1), 422, "invalid_entry"},
		{"missing fields", apiKey, key, []byte(`{"reference_id":"r1","ledger_id":"MASTER"}`), 422, "invalid_entry"},
		{"key is not ledger:reference", apiKey, map[string]string{"Idempotency-Key": "MASTER:other"}, good, 422, "idempotency_key_mismatch"},
		{"not JSON content", apiKey, map[string]string{"Idempotency-Key": "MASTER:r1", "Content-Type": "text/plain"}, good, 415, "unsupported_media_type"},
		{"too large", apiKey, key, bytes.Repeat([]byte(" "), maxRequestBody+1), 413, "body_too_large"},
	}
	for _, tc := range cases {
		code, _, b := e.raw("POST", "/v1/entries", tc.auth, tc.hdr, tc.body)
		if code != tc.code || errorCode(t, b) != tc.errCode {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, b, tc.code, tc.errCode)
		}
	}
	if st := e.stats(); st.Posts != 0 || st.Rejected != int64(len(cases)) {
		t.Fatalf("stats %+v", st)
	}
	// The client classifies these as permanent.
	bad, err := scb.NewClient(scb.Config{ID: "SCB-1", BaseURL: e.ts.URL, APIKey: "wrong"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Post(context.Background(), entry("r1"))
	if err == nil || scb.IsRetryable(err) || !strings.Contains(err.Error(), `401 Unauthorized from SCB-1 (the SCB refused our API key): the SCB said "invalid API key"`) {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestDurableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e := startSim(t, dir, Config{FinalAfter: time.Hour})
	var first [][]byte
	for i := range 3 {
		_, _, b := e.postRaw(entry(fmt.Sprintf("r%d", i)))
		first = append(first, b)
	}
	e.stop()

	e = startSim(t, dir, Config{FinalAfter: time.Hour})
	for i := range 3 {
		code, h, b := e.postRaw(entry(fmt.Sprintf("r%d", i)))
		if code != 201 || !bytes.Equal(b, first[i]) || h.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("after restart r%d: %d %s, want the replay of %s", i, code, b, first[i])
		}
	}
	// A new entry continues the sequence.
	res, err := e.client.Post(context.Background(), entry("r3"))
	if err != nil || res.SCBEntryID != "SCB-1-00000004" || res.Replayed {
		t.Fatalf("new post after restart: %+v %v", res, err)
	}
	other := entry("r0")
	other.DBISEntryID = 8
	if _, err := e.client.Post(context.Background(), other); err == nil {
		t.Fatal("a different body under a key posted before the restart must be a 409")
	}
	st := e.stats()
	if st.Posts != 4 || st.Keys != 4 || st.DuplicatePosts != 0 || st.PerKeyPosts["MASTER:r0"] != 1 {
		t.Fatalf("stats after restart %+v", st)
	}
}

func TestLogRecovery(t *testing.T) {
	dir := t.TempDir()
	e := startSim(t, dir, Config{})
	if _, err := e.client.Post(context.Background(), entry("r1")); err != nil {
		t.Fatal(err)
	}
	e.stop()
	logPath := filepath.Join(dir, logName)
	// A crash in the middle of a write leaves a torn last line: it was never answered, so it is cut.
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":2,"key":"MASTER:r2","ha`)
	f.Close()
	e = startSim(t, dir, Config{})
	if st := e.stats(); st.Posts != 1 {
		t.Fatalf("after a torn line: %+v", st)
	}
	if _, err := e.client.Post(context.Background(), entry("r2")); err != nil {
		t.Fatal(err)
	}
	e.stop()
	data, _ := os.ReadFile(logPath)
	if n := bytes.Count(data, []byte("\n")); n != 2 || !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatalf("log after recovery has %d lines:\n%s", n, data)
	}
	// A duplicated line (as a buggy simulator would write) is counted, not hidden.
	lines := bytes.SplitAfter(data, []byte("\n"))
	dup := append(append([]byte{}, data...), bytes.Replace(lines[0], []byte(`"seq":1`), []byte(`"seq":3`), 1)...)
	if err := os.WriteFile(logPath, dup, 0o600); err != nil {
		t.Fatal(err)
	}
	e = startSim(t, dir, Config{})
	if st := e.stats(); st.Posts != 3 || st.Keys != 2 || st.DuplicatePosts != 1 || st.PerKeyPosts["MASTER:r1"] != 2 {
		t.Fatalf("duplicate line: %+v", st)
	}
	e.stop()
	// A corrupt line in the middle is refused.
	if err := os.WriteFile(logPath, append([]byte("garbage\n"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{ID: "SCB-1", APIKey: apiKey, DataDir: dir}); err == nil || !strings.Contains(err.Error(), "line 1 is corrupt") {
		t.Fatalf("corrupt log: %v", err)
	}
}

func TestDataDirOwnershipAndLock(t *testing.T) {
	dir := t.TempDir()
	e := startSim(t, dir, Config{})
	if _, err := New(Config{ID: "SCB-1", APIKey: apiKey, DataDir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second simulator on one dir: %v", err)
	}
	e.stop()
	if _, err := New(Config{ID: "SCB-2", APIKey: apiKey, DataDir: dir}); err == nil || !strings.Contains(err.Error(), `belongs to SCB "SCB-1"`) {
		t.Fatalf("another SCB on the dir: %v", err)
	}
}

func TestStatusProgression(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e := startSim(t, t.TempDir(), Config{FinalAfter: 10 * time.Second, Now: clock})
	ctx := context.Background()
	res, err := e.client.Post(ctx, entry("r1"))
	if err != nil || res.Status != scb.StatusAccepted {
		t.Fatalf("%+v %v", res, err)
	}
	for _, step := range []struct {
		after time.Duration
		want  string
	}{{4 * time.Second, scb.StatusAccepted}, {time.Second, scb.StatusPosted}, {4 * time.Second, scb.StatusPosted}, {time.Second, scb.StatusFinal}} {
		advance(step.after)
		got, err := e.client.Get(ctx, "r1")
		if err != nil || got.Status != step.want {
			t.Fatalf("at %v: %+v %v, want %s", now, got, err, step.want)
		}
	}
	// A replay reports the current status.
	if res, err := e.client.Post(ctx, entry("r1")); err != nil || res.Status != scb.StatusFinal {
		t.Fatalf("replay: %+v %v", res, err)
	}

	for _, c := range []struct {
		initial string
		after   time.Duration
		want    string
	}{{scb.StatusPosted, time.Hour, scb.StatusPosted}, {scb.StatusFinal, time.Hour, scb.StatusFinal}, {scb.StatusAccepted, 0, scb.StatusFinal}} {
		e := startSim(t, t.TempDir(), Config{InitialStatus: c.initial, FinalAfter: c.after})
		if res, err := e.client.Post(ctx, entry("r1")); err != nil || res.Status != c.want {
			t.Fatalf("initial %s final-after %v: %+v %v", c.initial, c.after, res, err)
		}
	}
}

func TestGetAndList(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{})
	ctx := context.Background()
	if _, err := e.client.Get(ctx, "nope"); !errors.Is(err, scb.ErrNotFound) || scb.IsRetryable(err) {
		t.Fatalf("unknown entry: %v", err)
	}
	for i := range 25 {
		if _, err := e.client.Post(ctx, entry(fmt.Sprintf("r%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// The same reference in another ledger: lookups need the ledger.
	other := entry("r00")
	other.LedgerID = "SOVEREIGN"
	if _, err := e.client.Post(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Get(ctx, "r00"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("ambiguous reference: %v", err)
	}
	res, err := e.client.GetInLedger(ctx, "SOVEREIGN", "r00")
	if err != nil || res.Entry.LedgerID != "SOVEREIGN" || res.SCBEntryID != "SCB-1-00000026" {
		t.Fatalf("by ledger: %+v %v", res, err)
	}
	if _, err := e.client.GetInLedger(ctx, "SOVEREIGN", "r01"); !errors.Is(err, scb.ErrNotFound) {
		t.Fatalf("r01 is not in SOVEREIGN: %v", err)
	}
	// Reference ids with URL-special characters.
	odd := entry("a/b c?d")
	if _, err := e.client.Post(ctx, odd); err != nil {
		t.Fatal(err)
	}
	if res, err := e.client.Get(ctx, "a/b c?d"); err != nil || res.Entry.ReferenceID != "a/b c?d" {
		t.Fatalf("odd reference: %+v %v", res, err)
	}

	var all []scb.EntryView
	since := ""
	for pages := 0; ; pages++ {
		p, err := e.client.List(ctx, since, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Entries...)
		since = p.NextSince
		if !p.HasMore {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(all) != 27 || all[0].ReferenceID != "r00" || all[26].ReferenceID != "a/b c?d" || since != "27" {
		t.Fatalf("listed %d, last cursor %s", len(all), since)
	}
	// At the end, the cursor stays put so a caller can poll with it.
	if p, err := e.client.List(ctx, since, 10); err != nil || len(p.Entries) != 0 || p.NextSince != since || p.HasMore {
		t.Fatalf("past the end: %+v %v", p, err)
	}
	if _, err := e.client.List(ctx, "x", 10); err == nil {
		t.Fatal("a bad cursor must be refused")
	}
}

func TestConcurrentPostsOfOneKeyPostOnce(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{})
	// What is tested is that each key posts once, not how fast: a generous timeout, so that a
	// busy machine (every post is fsynced) cannot turn it into a timing test.
	client := env0client(t, e.ts.URL, 30*time.Second)
	const n = 40
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := client.Post(context.Background(), entry("same"))
			ids[i], errs[i] = res.SCBEntryID, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("post %d: %q %v (first %q)", i, ids[i], errs[i], ids[0])
		}
	}
	// And many keys at once: group commit must not lose or double anything.
	for i := range 200 {
		wg.Go(func() {
			if _, err := client.Post(context.Background(), entry(fmt.Sprintf("k%03d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := e.stats()
	if st.Posts != 201 || st.Keys != 201 || st.DuplicatePosts != 0 || st.Replays != n-1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAdminAPI(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{})
	if code, _, _ := e.raw("GET", "/v1/admin/stats", apiKey, nil, nil); code != 401 {
		t.Fatalf("admin with the API key: %d", code)
	}
	if code, _, b := e.raw("POST", "/v1/admin/faults", adminKey, nil, []byte(`{"error_rate": 2}`)); code != 422 {
		t.Fatalf("error_rate 2: %d %s", code, b)
	}
	if code, _, b := e.raw("POST", "/v1/admin/faults", adminKey, nil, []byte(`{"eror_rate": 0.5}`)); code != 400 {
		t.Fatalf("misspelt field: %d %s", code, b)
	}
	e.setFaults(`{"latency": 0.05, "jitter": "10ms", "outage_for": "1h", "seed": 3}`)
	f := e.srv.Faults()
	if time.Duration(f.Latency) != 50*time.Millisecond || time.Duration(f.Jitter) != 10*time.Millisecond || f.OutageUntil.IsZero() {
		t.Fatalf("faults %+v", f)
	}
	e.setFaults(`{"outage_for": "0s"}`)
	if f := e.srv.Faults(); !f.OutageUntil.IsZero() || f.Latency == 0 {
		t.Fatalf("ending the outage changed something else: %+v", f)
	}
	e.setFaults(`{"reset": true}`)
	if f := e.srv.Faults(); f != (Faults{}) {
		t.Fatalf("reset: %+v", f)
	}
	if st := e.stats(); st.Seed != 3 {
		t.Fatalf("seed %d", st.Seed)
	}
	if code, _, b := e.raw("GET", "/healthz", "", nil, nil); code != 200 || !bytes.Contains(b, []byte(`"SCB-1"`)) {
		t.Fatalf("healthz: %d %s", code, b)
	}
}

func TestGracefulShutdownReleasesHeldRequests(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{ID: "SCB-1", APIKey: apiKey, DataDir: dir, Faults: Faults{TimeoutRate: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, 5*time.Second) }()
	c := env0client(t, "http://"+ln.Addr().String(), 30*time.Second)
	posted := make(chan error, 1)
	go func() { _, err := c.Post(context.Background(), entry("r1")); posted <- err }()
	time.Sleep(200 * time.Millisecond) // the request is being held
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-posted; !scb.IsRetryable(err) {
		t.Fatalf("held request: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
}
