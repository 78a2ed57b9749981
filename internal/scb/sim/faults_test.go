package sim

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"dualledger/internal/scb"
)

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func asDelivery(t *testing.T, err error) *scb.DeliveryError {
	t.Helper()
	var de *scb.DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want a *scb.DeliveryError", err)
	}
	return de
}

func TestFaultError(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{Faults: Faults{ErrorRate: 1}, Seed: 1})
	seen := map[int]bool{}
	for range 20 {
		_, err := e.client.Post(context.Background(), entry("r1"))
		de := asDelivery(t, err)
		if !de.Retryable || (de.StatusCode != 500 && de.StatusCode != 503) {
			t.Fatalf("error fault: %v", err)
		}
		seen[de.StatusCode] = true
	}
	st := e.stats()
	if !seen[500] || !seen[503] || st.Faults[faultError] != 20 || st.Posts != 0 {
		t.Fatalf("codes %v, stats %+v", seen, st)
	}
}

func TestFaultOutage(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{})
	e.setFaults(`{"outage_for": "30s"}`)
	_, err := e.client.Post(context.Background(), entry("r1"))
	de := asDelivery(t, err)
	if de.StatusCode != 503 || !de.Retryable || de.RetryAfter < 29*time.Second || de.RetryAfter > 30*time.Second {
		t.Fatalf("outage: %+v", de)
	}
	if _, err := e.client.Get(context.Background(), "r1"); err == nil || asDelivery(t, err).StatusCode != 503 {
		t.Fatalf("GET during outage: %v", err)
	}
	e.setFaults(`{"outage_for": "0s"}`)
	if _, err := e.client.Post(context.Background(), entry("r1")); err != nil {
		t.Fatal(err)
	}
	if st := e.stats(); st.Faults[faultOutage] != 2 || st.Posts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaultRateLimit(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{Faults: Faults{RateLimitRate: 1, RetryAfter: Duration(3 * time.Second)}})
	_, err := e.client.Post(context.Background(), entry("r1"))
	de := asDelivery(t, err)
	if de.StatusCode != 429 || !de.Retryable || de.RetryAfter != 3*time.Second {
		t.Fatalf("rate limit: %+v", de)
	}
	if st := e.stats(); st.Faults[faultRateLimit] != 1 || st.Posts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaultTimeout(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{Faults: Faults{TimeoutRate: 1}})
	c := env0client(t, e.ts.URL, 300*time.Millisecond)
	start := time.Now()
	_, err := c.Post(context.Background(), entry("r1"))
	de := asDelivery(t, err)
	if !de.Retryable || de.StatusCode != 0 || !strings.Contains(de.Reason, "timeout after 300ms") {
		t.Fatalf("timeout: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	// A short hold ends with the connection dropped, not with an answer.
	e.setFaults(`{"timeout_hold": "100ms"}`)
	_, err = e.client.Post(context.Background(), entry("r1"))
	if de := asDelivery(t, err); !de.Retryable || !strings.Contains(de.Reason, "connection closed") {
		t.Fatalf("short hold: %v", err)
	}
	if st := e.stats(); st.Faults[faultTimeout] < 2 || st.Posts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaultLatency(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{Faults: Faults{Latency: Duration(150 * time.Millisecond), Jitter: Duration(50 * time.Millisecond)}})
	start := time.Now()
	if _, err := e.client.Post(context.Background(), entry("r1")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Fatalf("latency: %v", d)
	}
	if st := e.stats(); st.Faults[faultLatency] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDropAfterCommit is the case that breaks naive retries: the SCB posts, the answer is lost.
// The client must report a retryable error; the retry (same key) gets the stored answer.
func TestDropAfterCommit(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{Faults: Faults{DropAfterCommitRate: 1}})
	_, err := e.client.Post(context.Background(), entry("r1"))
	if de := asDelivery(t, err); !de.Retryable || de.StatusCode != 0 {
		t.Fatalf("dropped answer: %v", err)
	}
	if st := e.stats(); st.Posts != 1 || st.Faults[faultDropAfterCommit] < 1 {
		t.Fatalf("the entry must be posted although the answer was dropped: %+v", st)
	}
	e.setFaults(`{"drop_after_commit_rate": 0}`)
	res, err := e.client.Post(context.Background(), entry("r1"))
	if err != nil || !res.Replayed || res.SCBEntryID != "SCB-1-00000001" {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if st := e.stats(); st.Posts != 1 || st.PerKeyPosts["MASTER:r1"] != 1 || st.DuplicatePosts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRetryLoopUnderAllFaults drives many entries through every fault at once with a naive
// "retry until it works" loop and checks that each key is posted exactly once.
func TestRetryLoopUnderAllFaults(t *testing.T) {
	e := startSim(t, t.TempDir(), Config{Seed: 42, Faults: Faults{ErrorRate: 0.15, RateLimitRate: 0.1, TimeoutRate: 0.05,
		TimeoutHold: Duration(50 * time.Millisecond), DropAfterCommitRate: 0.25, Jitter: Duration(2 * time.Millisecond)}})
	c := env0client(t, e.ts.URL, 2*time.Second)
	const n = 100
	attempts := 0
	for i := range n {
		ent := entry("k" + string(rune('A'+i%26)) + string(rune('a'+i/26)))
		for try := 0; ; try++ {
			attempts++
			_, err := c.Post(context.Background(), ent)
			if err == nil {
				break
			}
			if !scb.IsRetryable(err) || try > 50 {
				t.Fatalf("%s: %v", ent.ReferenceID, err)
			}
		}
	}
	st := e.stats()
	if st.Posts != n || st.Keys != n || st.DuplicatePosts != 0 {
		t.Fatalf("stats %+v", st)
	}
	for k, v := range st.PerKeyPosts {
		if v != 1 {
			t.Fatalf("%s posted %d times", k, v)
		}
	}
	if attempts <= n || st.Faults[faultDropAfterCommit] == 0 || st.Faults[faultError] == 0 || st.Faults[faultRateLimit] == 0 || st.Faults[faultTimeout] == 0 {
		t.Fatalf("faults were not exercised: %d attempts, %+v", attempts, st.Faults)
	}
	t.Logf("%d entries, %d attempts, faults %v", n, attempts, st.Faults)
}

func TestSeededFaultsAreReproducible(t *testing.T) {
	f := Faults{ErrorRate: 0.3, RateLimitRate: 0.2, TimeoutRate: 0.1, DropAfterCommitRate: 0.4, Jitter: Duration(time.Second)}
	a, b := newInjector(f, 99), newInjector(f, 99)
	now := time.Now()
	same := true
	for range 200 {
		if a.draw(now) != b.draw(now) {
			same = false
		}
	}
	if !same {
		t.Fatal("the same seed gave different faults")
	}
	c := newInjector(f, 100)
	diff := false
	for range 50 {
		if a.draw(now) != c.draw(now) {
			diff = true
		}
	}
	if !diff {
		t.Fatal("another seed gave the same faults")
	}
	// Independence: with every rate at 0.5, all 16 combinations occur.
	h := newInjector(Faults{ErrorRate: 0.5, RateLimitRate: 0.5, TimeoutRate: 0.5, DropAfterCommitRate: 0.5}, 7)
	combos := map[[4]bool]bool{}
	for range 2000 {
		p := h.draw(now)
		combos[[4]bool{p.errorCode != 0, p.rateLimit, p.timeout, p.drop}] = true
	}
	if len(combos) != 16 {
		t.Fatalf("only %d of 16 fault combinations drawn", len(combos))
	}
}
