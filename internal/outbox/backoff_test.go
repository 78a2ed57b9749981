package outbox

import (
	"testing"
	"time"
)

func TestBackoffFullJitter(t *testing.T) {
	b := Backoff{Base: time.Second, Cap: 5 * time.Minute}
	for attempt, ceiling := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: 5 * time.Minute, 40: 5 * time.Minute} {
		var max time.Duration
		for i := 0; i < 2000; i++ {
			d := b.Delay(attempt, 0)
			if d < 0 || d >= ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v)", attempt, d, ceiling)
			}
			if d > max {
				max = d
			}
		}
		if max < ceiling/2 {
			t.Errorf("attempt %d: largest of 2000 delays %v, want near %v (is it jittered at all?)", attempt, max, ceiling)
		}
	}
	if d := b.Delay(1, 30*time.Second); d != 30*time.Second {
		t.Errorf("Retry-After 30s: delay %v", d)
	}
	if d := b.Delay(1, 100*time.Hour); d != 24*time.Hour {
		t.Errorf("Retry-After 100h: delay %v, want the 24h bound", d)
	}
	fixed := Backoff{Base: time.Second, Cap: time.Minute, Rand: func() float64 { return 0.5 }}
	if d := fixed.Delay(3, 0); d != 2*time.Second {
		t.Errorf("deterministic: %v", d)
	}
}
