package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"dualledger/internal/scb"
)

// FuzzPostBody posts arbitrary bodies to POST /v1/entries through the real handler (faults
// off), with the API key and the Idempotency-Key the body names. The answer is never a 5xx; it
// is 400 for what is not JSON, 201 or 409 for a valid entry (409 exactly when the key holds
// another entry), else 422. An accepted body replays to the byte-identical answer, so do the
// same entry's other spellings (canonical body, other time zone), and another entry under the
// same key is 409 and changes nothing. Every accepted key is posted (written) once.
func FuzzPostBody(f *testing.F) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	srv, err := New(Config{ID: "SCB-1", APIKey: apiKey, DataDir: filepath.Join(f.TempDir(), "data"),
		FinalAfter: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	h := srv.Handler()

	var mu sync.Mutex
	accepted := map[string]string{} // key -> canonical body of its entry
	answers := map[string]string{}  // key -> the 201 answer

	good, _ := entry("r1").Body()
	seeds := []string{
		string(good),
		`{"reference_id":"r2","ledger_id":"MASTER","debit_account_id":"scb1-usd","credit_account_id":"scb2-usd","amount":"0.000000000000000001","currency_code":"XAU","asset_type":"commodity","transaction_type":"settlement","dbis_entry_id":9223372036854775807,"block_hash":"` + strings.Repeat("0", 64) + `","timestamp_utc":"2025-06-01T10:30:00.123456789+02:00"}`,
		// The same entry as good, spelled otherwise: a replay, not a conflict.
		"\n { \"timestamp_utc\" : \"2025-06-01T09:30:00+01:00\", \"block_hash\":\"" + strings.Repeat("0f", 32) + "\",\"dbis_entry_id\":7,\"transaction_type\":\"settlement\",\"asset_type\":\"fiat\",\"currency_code\":\"USD\",\"amount\":\"250.00\",\"credit_account_id\":\"scb2-usd\",\"debit_account_id\":\"scb1-usd\",\"ledger_id\":\"MASTER\",\"reference_id\":\"r1\"}\t",
		// Another entry under r1's key: 409.
		strings.Replace(string(good), `"250.00"`, `"250.01"`, 1),
		strings.Replace(string(good), `"r1"`, `"r3"`, 1),
		strings.Replace(string(good), `"r1"`, `" r4"`, 1), // the key, trimmed, is not ledger_id:reference_id
		strings.Replace(string(good), `"r1"`, `"r\u00e9\u2028<&>\ud83d\ude00"`, 1),
		strings.Replace(string(good), `"r1"`, "\"r\xff\"", 1), // invalid UTF-8, read as U+FFFD
		strings.Replace(string(good), `"r1"`, `"r\ud800"`, 1), // lone surrogate, read as U+FFFD
		strings.Replace(string(good), `"250.00"`, `250`, 1),   // amount as a number
		strings.Replace(string(good), `"250.00"`, `"1e3"`, 1),
		strings.Replace(string(good), `"250.00"`, `"0.00"`, 1),
		strings.Replace(string(good), `"USD"`, `"usd"`, 1),
		strings.Replace(string(good), `"fiat"`, `"FIAT"`, 1),
		strings.Replace(string(good), `7,`, `0,`, 1),
		strings.Replace(string(good), `7,`, `7.5,`, 1),
		strings.Replace(string(good), `7,`, `1e30,`, 1),
		strings.Replace(string(good), `"scb2-usd"`, `"scb1-usd"`, 1),
		strings.Replace(string(good), `2025-06-01T08:30:00Z`, `0001-01-01T00:00:00Z`, 1),
		strings.Replace(string(good), `2025-06-01T08:30:00Z`, `2025-06-01 08:30:00`, 1),
		strings.Replace(string(good), `2025-06-01T08:30:00Z`, `9999-12-31T23:59:59.999999999Z`, 1),
		strings.Replace(string(good), `2025-06-01T08:30:00Z`, `9999-12-31T21:59:59-02:00`, 1), // the last UTC year RFC 3339 can write
		strings.Replace(string(good), `2025-06-01T08:30:00Z`, `0000-01-01T01:30:00+01:00`, 1), // the first
		strings.Replace(string(good), `"reference_id"`, `"Reference_ID"`, 1),                  // encoding/json matches case-insensitively
		strings.Replace(string(good), `}`, `,"memo":"x"}`, 1),
		strings.Replace(string(good), `}`, `,"amount":"1.00"}`, 1), // duplicate field: the last one wins
		string(good) + `x`, string(good) + `{}`, `{"reference_id":`, `null`, `[]`, `"x"`, `{}`, ``, ` `,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}

	post := func(body []byte, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/entries", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		mu.Lock()
		defer mu.Unlock()

		// The key the body names, read as leniently as the simulator reads it.
		key := "MASTER:fuzz"
		var probe scb.Entry
		if json.Unmarshal(body, &probe) == nil && (probe.LedgerID != "" || probe.ReferenceID != "") {
			key = probe.IdempotencyKey()
		}
		// What the body should get: an entry that decodes strictly, validates, can be written
		// (RFC 3339 years 0-9999) and matches its key is posted or is a conflict.
		var want scb.Entry
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		isJSON := json.Valid(body)
		canon, cerr := []byte(nil), error(nil)
		ok := isJSON && dec.Decode(&want) == nil
		if ok {
			canon, cerr = want.Body()
		}
		valid := ok && want.Validate() == nil && cerr == nil && strings.TrimSpace(key) == key && key == want.IdempotencyKey()

		res := post(body, key)
		code, answer := res.Code, res.Body.String()
		if code >= 500 {
			t.Fatalf("%d %s for %q", code, answer, body)
		}
		var eb scb.ErrorBody
		if code != http.StatusCreated && (json.Unmarshal(res.Body.Bytes(), &eb) != nil || eb.Error.Code == "") {
			t.Fatalf("%d with a body that is not an error: %s", code, answer)
		}
		prev, seen := accepted[key]
		switch {
		case !isJSON:
			if code != http.StatusBadRequest || eb.Error.Code != "bad_json" {
				t.Fatalf("not JSON %q: %d %s", body, code, answer)
			}
			return
		case !valid:
			if code != http.StatusUnprocessableEntity {
				t.Fatalf("invalid entry %q (key %q): %d %s", body, key, code, answer)
			}
			return
		case seen && prev != string(canon):
			if code != http.StatusConflict || eb.Error.Code != "idempotency_conflict" {
				t.Fatalf("key %q holds %s; %s answered %d %s", key, prev, canon, code, answer)
			}
		case code != http.StatusCreated:
			t.Fatalf("valid entry %s (key %q, seen %v): %d %s", canon, key, seen, code, answer)
		case seen:
			if res.Header().Get("Idempotent-Replayed") != "true" || answer != answers[key] {
				t.Fatalf("replay of %q: %s (replayed %q), first answer %s", key, answer, res.Header().Get("Idempotent-Replayed"), answers[key])
			}
		default:
			var pr scb.PostResult
			if json.Unmarshal(res.Body.Bytes(), &pr) != nil || !strings.HasPrefix(pr.SCBEntryID, "SCB-1-") || pr.Status != scb.StatusAccepted {
				t.Fatalf("201 answer %s", answer)
			}
			if res.Header().Get("Idempotent-Replayed") != "" {
				t.Fatalf("a first post answered as a replay")
			}
			accepted[key], answers[key] = string(canon), answer
		}

		// The same request again: the same answer.
		again := post(body, key)
		if again.Code != code || again.Body.String() != answer {
			t.Fatalf("the same request answered %d %s, then %d %s", code, answer, again.Code, again.Body.String())
		}
		if code == http.StatusConflict {
			return
		}
		if again.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatal("a retry was not answered as a replay")
		}
		// The same entry spelled otherwise: canonical, and in another time zone.
		other := want
		other.TimestampUTC = want.TimestampUTC.In(time.FixedZone("X", -7*3600-1800))
		spellings := [][]byte{canon}
		if b, err := json.Marshal(other); err == nil { // not if the zone moves the year out of 0-9999
			spellings = append(spellings, b)
		}
		for _, b := range spellings {
			if r := post(b, key); r.Code != http.StatusCreated || r.Body.String() != answer {
				t.Fatalf("the same entry as %s: %d %s, want %s", b, r.Code, r.Body.String(), answer)
			}
		}
		// Another entry under the key: 409, and the key still holds the first.
		diff := want
		if diff.DBISEntryID < math.MaxInt64 {
			diff.DBISEntryID++
		} else {
			diff.DBISEntryID--
		}
		b, _ := diff.Body()
		if r := post(b, key); r.Code != http.StatusConflict || !strings.Contains(r.Body.String(), "idempotency_conflict") {
			t.Fatalf("another entry under %q: %d %s", key, r.Code, r.Body.String())
		}
		if r := post(body, key); r.Code != http.StatusCreated || r.Body.String() != answer {
			t.Fatalf("after a conflict: %d %s, want %s", r.Code, r.Body.String(), answer)
		}
		if st := srv.Stats(false); st.Keys != len(accepted) || st.Posts != len(accepted) || st.DuplicatePosts != 0 {
			t.Fatalf("stats %+v for %d accepted keys", st, len(accepted))
		}
	})
}

// logLine is one line of entries.log as the simulator writes it.
func logLine(seq int64, ref string) string {
	e := entry(ref)
	b, err := json.Marshal(record{Seq: seq, Key: e.IdempotencyKey(), Hash: fmt.Sprintf("%064x", seq), SCBEntryID: fmt.Sprintf("SCB-1-%08d", seq),
		PostedAt: time.Date(2025, 6, 1, 8, 30, 0, 0, time.UTC), Entry: e})
	if err != nil {
		panic(err)
	}
	return string(b) + "\n"
}

// scratchDir is a new directory for one input, on tmpfs if there is one: the store fsyncs,
// which on a disk makes every input cost milliseconds.
func scratchDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "dualledger-fuzz-"); err == nil {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

// FuzzLogReplay feeds arbitrary bytes to the store as its entries.log. The store opens if and
// only if every complete line is a record (an object with a key and a seq of at least 1); a
// last line without its newline (a torn write) is cut off, and only then is the file changed.
// Opened, it holds the first record of each key, counts every line as a post, continues the
// seq, and a post after a reopen lands on a clean line that the next start reads back.
func FuzzLogReplay(f *testing.F) {
	l1, l2, l3 := logLine(1, "r1"), logLine(2, "r2"), logLine(3, "r1")
	for _, s := range []string{
		"", l1, l1 + l2, l1 + l2 + l3, // l3: a second line for r1's key (a double post)
		l1 + l2[:len(l2)/2],               // torn last line
		l1 + strings.TrimSuffix(l2, "\n"), // a whole record without its newline is still torn
		l2[:10], "\n", l1 + "\n" + l2, l1 + "x\n" + l2, "x\n",
		strings.ReplaceAll(l1+l2, "\n", "\r\n"),
		`{"seq":1,"key":"k"}` + "\n", `{"seq":0,"key":"k"}` + "\n", `{"seq":1,"key":""}` + "\n", `{"seq":-5,"key":"k"}` + "\n",
		`{"seq":9223372036854775806,"key":"k"}` + "\n", `{"seq":9223372036854775807,"key":"k"}` + "\n",
		`{"seq":"1","key":"k"}` + "\n", `{"seq":1,"key":"k"} {}` + "\n", `[1]` + "\n", `null` + "\n",
		`{"seq":1,"key":"k","entry":{"timestamp_utc":"yesterday"}}` + "\n",
		`{"seq":3,"key":"a"}` + "\n" + `{"seq":1,"key":"b"}` + "\n",
		"\xef\xbb\xbf" + l1, "\x00\x00\x00\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(scratchDir(t), "data")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "scb.json"), []byte(`{"id":"SCB-1"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(dir, logName)
		if err := os.WriteFile(logPath, data, 0o600); err != nil {
			t.Fatal(err)
		}

		// The documented reading: complete lines must be records; a torn tail is dropped.
		complete := data[:bytes.LastIndexByte(data, '\n')+1]
		var recs []record
		firstBad := 0
		for i, line := range bytes.SplitAfter(complete, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var r record
			if err := json.Unmarshal(bytes.TrimSpace(line), &r); err != nil || r.Key == "" || r.Seq < 1 {
				firstBad = i + 1
				break
			}
			recs = append(recs, r)
		}

		st, err := openStore(dir, "SCB-1")
		after, rerr := os.ReadFile(logPath)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err != nil {
			if firstBad == 0 {
				t.Fatalf("a log of %d good lines was refused: %v", len(recs), err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("line %d is corrupt", firstBad)) {
				t.Fatalf("line %d is the first bad one, the error says: %v", firstBad, err)
			}
			if !bytes.Equal(after, data) {
				t.Fatal("a refused log was changed")
			}
			return
		}
		if firstBad != 0 {
			t.Fatalf("line %d is corrupt, yet the log loaded", firstBad)
		}
		if !bytes.Equal(after, complete) {
			t.Fatalf("after loading, the log is %q, want %q", after, complete)
		}

		check := func(st *store, recs []record) {
			t.Helper()
			first := map[string]record{}
			per := map[string]int{}
			var maxSeq int64
			for _, r := range recs {
				if _, ok := first[r.Key]; !ok {
					first[r.Key] = r
				}
				per[r.Key]++
				maxSeq = max(maxSeq, r.Seq)
			}
			keys, posts, dups, gotPer := st.counts(true)
			wantDups := 0
			for _, n := range per {
				if n > 1 {
					wantDups++
				}
			}
			if keys != len(first) || posts != len(recs) || dups != wantDups || len(gotPer) != len(per) {
				t.Fatalf("counts: %d keys, %d posts, %d dups; want %d, %d, %d", keys, posts, dups, len(first), len(recs), wantDups)
			}
			for k, r := range first {
				got, ok := st.get(k)
				if !ok || got.Seq != r.Seq || got.SCBEntryID != r.SCBEntryID || gotPer[k] != per[k] {
					t.Fatalf("key %q: got %+v (%v), want the first record %+v", k, got, ok, r)
				}
			}
			if st.nextSeq != maxSeq+1 && !(len(recs) == 0 && st.nextSeq == 1) {
				t.Fatalf("next seq %d after a max of %d", st.nextSeq, maxSeq)
			}
		}
		check(st, recs)
		if err := st.close(); err != nil {
			t.Fatal(err)
		}

		// A post after the restart is read back by the next start, with the next seq.
		st, err = openStore(dir, "SCB-1")
		if err != nil {
			t.Fatalf("reopening a loaded log: %v", err)
		}
		defer func() { _ = st.close() }()
		check(st, recs)
		if st.nextSeq <= 0 || st.nextSeq == math.MaxInt64 {
			return // a hand-made seq at the end of int64's range: nothing to append after it
		}
		key := "fuzz:new"
		for st.byKey[key] != nil {
			key += "+"
		}
		e := entry("new")
		rec, created, err := st.post(key, "h", e, time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC))
		if err != nil || !created || rec.Seq != st.nextSeq-1 {
			t.Fatalf("post after load: %+v %v %v", rec, created, err)
		}
		if err := st.close(); err != nil {
			t.Fatal(err)
		}
		st, err = openStore(dir, "SCB-1")
		if err != nil {
			t.Fatalf("reopening after a post: %v", err)
		}
		check(st, append(recs, rec))
	})
}
