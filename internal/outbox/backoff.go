package outbox

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter (docs/design.md §4): the n-th retry waits a uniformly
// random time in [0, min(Cap, Base * 2^(n-1))). Full jitter spreads the retries of a backlog that
// failed together (an SCB outage) instead of sending them back in waves.
type Backoff struct {
	Base time.Duration
	Cap  time.Duration
	// Rand returns a float in [0, 1); nil means math/rand/v2.
	Rand func() float64
}

// Delay is the wait before retry number attempt (1 = the first retry). A Retry-After from the SCB
// is honoured: the delay is at least that long (but the SCB cannot push it beyond 24 hours).
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	ceiling := b.Base
	for i := 1; i < attempt && ceiling < b.Cap; i++ {
		ceiling *= 2
	}
	if ceiling > b.Cap {
		ceiling = b.Cap
	}
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	d := time.Duration(r() * float64(ceiling))
	if retryAfter > 24*time.Hour {
		retryAfter = 24 * time.Hour
	}
	if retryAfter > d {
		d = retryAfter
	}
	return d
}
