package ledger

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// TestPlainASCIIAgreesWithTheRules: the ASCII fast path of checkReference never accepts what the
// per-character rules would refuse, and takes every printable-ASCII reference without edge
// spaces. Every string of one and two bytes, and random longer ones of all 128 ASCII bytes.
func TestPlainASCIIAgreesWithTheRules(t *testing.T) {
	check := func(s string) {
		t.Helper()
		slow := checkRunes("reference_id", s, utf8.RuneCountInString(s)) == nil && s[0] != ' ' && s[len(s)-1] != ' '
		if fast := plainASCII(s); fast && !slow {
			t.Fatalf("%q: the fast path accepts what the rules refuse", s)
		} else if !fast && slow {
			t.Fatalf("%q: the rules accept it but the fast path does not take it", s)
		}
	}
	for a := 0; a < 128; a++ {
		check(string(rune(a)))
		for b := 0; b < 128; b++ {
			check(string([]byte{byte(a), byte(b)}))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, 3+rng.IntN(40))
		for i := range b {
			b[i] = byte(32 + rng.IntN(95))
			if rng.IntN(50) == 0 {
				b[i] = byte(rng.IntN(128))
			}
		}
		check(string(b))
	}
	if plainASCII("") {
		t.Fatal("the empty reference is not plain")
	}
}
