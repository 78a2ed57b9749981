package sim

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/scb"
)

// oddReferences are valid reference ids (ledger.ValidateReference) that a URL treats specially.
var oddReferences = []string{
	`say "hi"`, `it's`, "(parens)", "[brackets]", "{braces}", "100%", "100%25", "%2F", "%", "what?", "a?b=c&d=e", "#fragment",
	"a#b", "a/b", "/lead", "trail/", "a//b", "a/./b", "a/../b", "../x", "x/..", "a..b", "...", ".hidden", "end.",
	"spaces inside are fine", "a + b", "semi;colon", "comma,", "back\\slash", "<script>", "a&b", "~user", "caret^", "pipe|",
	"at@x", "$dollar", "!bang", "*", "+", "=", ":", "a:b", "L:X:1", "Grüße aus Köln", "日本語の参照", "مرحبا", "emoji 😀", "é",
	"\u0301 lone mark", strings.Repeat("r", 128), strings.Repeat("é", 128), strings.Repeat("😀", 128), strings.Repeat("/", 128),
}

// TestPollOddReferences: every reference the ledger accepts can be delivered to the simulator
// and polled back (GET /v1/entries/{reference_id}, with and without ?ledger_id=) by the client
// the worker uses, and a retry is answered as a replay.
func TestPollOddReferences(t *testing.T) {
	env := startSim(t, t.TempDir(), Config{})
	ctx := context.Background()
	for _, ref := range oddReferences {
		if err := ledger.ValidateReference("reference_id", ref); err != nil {
			t.Fatalf("%q is not a valid reference: %v", ref, err)
		}
		checkRoundTrip(t, env.client, ref)
	}
	// A reference the ledger would refuse never reaches the SCB, but ".", ".." and "/" show why
	// they are refused: a URL path resolves the dots away, and a router takes an escaped "/"
	// segment for a trailing slash, so the poll could not name the entry.
	for _, ref := range []string{".", "..", "/"} {
		if _, err := env.client.Post(ctx, entry(ref)); err != nil {
			t.Fatalf("post %q: %v", ref, err)
		}
		if _, err := env.client.GetInLedger(ctx, "MASTER", ref); err == nil {
			t.Errorf("poll of %q worked: the rule against it could go", ref)
		}
	}
	if st := env.stats(); st.DuplicatePosts != 0 {
		t.Errorf("duplicate posts: %+v", st)
	}
}

// TestPollRandomReferences: random valid references (any script, symbols, punctuation, the
// characters URLs treat specially) survive delivery and polling.
func TestPollRandomReferences(t *testing.T) {
	env := startSim(t, t.TempDir(), Config{})
	pool := []rune(`abcXYZ019 !"#$%&'()*+,-./:;<=>?@[\]^_` + "`{|}~" + `éüßñ日本語한국어مرحباЖжΩω😀✓€¥£§¶©®™°±µ` + "\u0301\u0308")
	rng := rand.New(rand.NewPCG(1, 2))
	tried := 0
	for tried < 300 {
		n := 1 + rng.IntN(40)
		r := make([]rune, n)
		for i := range r {
			r[i] = pool[rng.IntN(len(pool))]
		}
		ref := string(r)
		if ledger.ValidateReference("reference_id", ref) != nil {
			continue
		}
		tried++
		checkRoundTrip(t, env.client, ref)
	}
}

// FuzzPollReference: for any reference the ledger accepts, the SCB poll finds the entry.
func FuzzPollReference(f *testing.F) {
	for _, r := range oddReferences {
		f.Add(r)
	}
	env := startSim(f, f.TempDir(), Config{})
	f.Fuzz(func(t *testing.T, ref string) {
		if ledger.ValidateReference("reference_id", ref) != nil {
			return
		}
		checkRoundTrip(t, env.client, ref)
	})
}

func checkRoundTrip(t *testing.T, c *scb.Client, ref string) {
	t.Helper()
	ctx := context.Background()
	e := entry(ref)
	res, err := c.Post(ctx, e)
	if err != nil || res.SCBEntryID == "" {
		t.Fatalf("post %q: %v %+v", ref, err, res)
	}
	again, err := c.Post(ctx, e)
	if err != nil || again.SCBEntryID != res.SCBEntryID || !again.Replayed {
		t.Fatalf("retry of %q: %v %+v (first %+v)", ref, err, again, res)
	}
	got, err := c.GetInLedger(ctx, e.LedgerID, ref)
	if err != nil || got.SCBEntryID != res.SCBEntryID || got.Entry == nil || got.Entry.ReferenceID != ref {
		t.Fatalf("poll %q: %v %+v", ref, err, got)
	}
	got, err = c.Get(ctx, ref)
	if err != nil || got.SCBEntryID != res.SCBEntryID {
		t.Fatalf("poll %q without ledger: %v %+v", ref, err, got)
	}
	// A reference the SCB does not have is a 404, not some other entry.
	if _, err := c.GetInLedger(ctx, e.LedgerID, ref+"-missing"); !errors.Is(err, scb.ErrNotFound) {
		t.Fatalf("poll of a missing %q: %v", ref+"-missing", err)
	}
}
