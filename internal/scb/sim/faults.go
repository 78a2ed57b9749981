package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults are the failures the simulator injects (see the package doc for their order).
type Faults struct {
	ErrorRate           float64   `json:"error_rate"`             // fraction answered 500 or 503 before anything is done
	Latency             Duration  `json:"latency"`                // added to every request
	Jitter              Duration  `json:"jitter"`                 // plus a uniform random delay in [0, Jitter)
	TimeoutRate         float64   `json:"timeout_rate"`           // fraction held, then dropped without an answer
	TimeoutHold         Duration  `json:"timeout_hold"`           // how long such a request is held (0 = 60s)
	OutageUntil         time.Time `json:"outage_until,omitzero"`  // every request answers 503 until then
	RateLimitRate       float64   `json:"rate_limit_rate"`        // fraction answered 429
	RetryAfter          Duration  `json:"retry_after"`            // Retry-After of a 429 (whole seconds; 0 = 1s)
	DropAfterCommitRate float64   `json:"drop_after_commit_rate"` // fraction of served POSTs whose answer is dropped
}

// DefaultTimeoutHold outlasts the client's default timeout (10s) many times over.
const DefaultTimeoutHold = 60 * time.Second

// Validate checks that rates are fractions and durations are not negative.
func (f Faults) Validate() error {
	for name, r := range map[string]float64{"error_rate": f.ErrorRate, "timeout_rate": f.TimeoutRate,
		"rate_limit_rate": f.RateLimitRate, "drop_after_commit_rate": f.DropAfterCommitRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("%s must be from 0 to 1", name)
		}
	}
	for name, d := range map[string]Duration{"latency": f.Latency, "jitter": f.Jitter, "timeout_hold": f.TimeoutHold, "retry_after": f.RetryAfter} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	return nil
}

// FaultsUpdate is the body of POST /v1/admin/faults: fields that are present replace the
// current setting. outage_for starts an outage now for that long ("0s" ends one);
// outage_until sets its end as an RFC 3339 time. seed restarts the RNG (0 = a random seed).
type FaultsUpdate struct {
	Reset               bool       `json:"reset"`
	ErrorRate           *float64   `json:"error_rate"`
	Latency             *Duration  `json:"latency"`
	Jitter              *Duration  `json:"jitter"`
	TimeoutRate         *float64   `json:"timeout_rate"`
	TimeoutHold         *Duration  `json:"timeout_hold"`
	OutageFor           *Duration  `json:"outage_for"`
	OutageUntil         *time.Time `json:"outage_until"`
	RateLimitRate       *float64   `json:"rate_limit_rate"`
	RetryAfter          *Duration  `json:"retry_after"`
	DropAfterCommitRate *float64   `json:"drop_after_commit_rate"`
	Seed                *uint64    `json:"seed"`
}

// apply returns f changed by u.
func (u FaultsUpdate) apply(f Faults, now time.Time) Faults {
	if u.Reset {
		f = Faults{}
	}
	set := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	setD := func(dst *Duration, src *Duration) {
		if src != nil {
			*dst = *src
		}
	}
	set(&f.ErrorRate, u.ErrorRate)
	set(&f.TimeoutRate, u.TimeoutRate)
	set(&f.RateLimitRate, u.RateLimitRate)
	set(&f.DropAfterCommitRate, u.DropAfterCommitRate)
	setD(&f.Latency, u.Latency)
	setD(&f.Jitter, u.Jitter)
	setD(&f.TimeoutHold, u.TimeoutHold)
	setD(&f.RetryAfter, u.RetryAfter)
	if u.OutageUntil != nil {
		f.OutageUntil = *u.OutageUntil
	}
	if u.OutageFor != nil {
		f.OutageUntil = time.Time{}
		if *u.OutageFor > 0 {
			f.OutageUntil = now.Add(time.Duration(*u.OutageFor)).UTC()
		}
	}
	return f
}

// faultKind names the injected failures in stats.
const (
	faultOutage          = "outage"
	faultError           = "error"
	faultRateLimit       = "rate_limit"
	faultTimeout         = "timeout"
	faultLatency         = "latency"
	faultDropAfterCommit = "drop_after_commit"
)

// injector holds the fault settings and the RNG that draws them.
type injector struct {
	mu     sync.Mutex
	faults Faults
	seed   uint64
	rng    *rand.Rand
}

func newInjector(f Faults, seed uint64) *injector {
	in := &injector{faults: f}
	in.reseed(seed)
	return in
}

// reseed restarts the RNG; seed 0 picks a random seed (reported in stats, so a run can be repeated).
func (in *injector) reseed(seed uint64) {
	if seed == 0 {
		seed = rand.Uint64() | 1
	}
	in.seed = seed
	in.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func (in *injector) get() (Faults, uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.faults, in.seed
}

func (in *injector) update(u FaultsUpdate, now time.Time) (Faults, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := u.apply(in.faults, now)
	if err := f.Validate(); err != nil {
		return in.faults, err
	}
	in.faults = f
	if u.Seed != nil {
		in.reseed(*u.Seed)
	}
	return f, nil
}

// plan is what happens to one request, decided up front with one draw per fault so that each
// fault is independent of the others and, with a seed, of nothing but the request's order.
type plan struct {
	outageLeft time.Duration // > 0: answer 503
	errorCode  int           // 500 or 503, or 0
	rateLimit  bool
	timeout    bool
	delay      time.Duration
	drop       bool // for a served POST
	faults     Faults
}

func (in *injector) draw(now time.Time) plan {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.faults
	p := plan{faults: f}
	hit := func(rate float64) bool { return rate > 0 && in.rng.Float64() < rate }
	if !f.OutageUntil.IsZero() && now.Before(f.OutageUntil) {
		p.outageLeft = f.OutageUntil.Sub(now)
	}
	if hit(f.ErrorRate) {
		p.errorCode = 500
		if in.rng.IntN(2) == 1 {
			p.errorCode = 503
		}
	}
	p.rateLimit = hit(f.RateLimitRate)
	p.timeout = hit(f.TimeoutRate)
	p.delay = time.Duration(f.Latency)
	if f.Jitter > 0 {
		p.delay += time.Duration(in.rng.Int64N(int64(f.Jitter)))
	}
	p.drop = hit(f.DropAfterCommitRate)
	return p
}

// Duration is a time.Duration that reads and writes JSON as "1.5s" (a number is seconds).
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "1.5s" or 1.5 (seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New(`a duration is a string such as "1.5s" or a number of seconds`)
	}
	v, err := time.ParseDuration(str)
	if err != nil {
		return fmt.Errorf("duration %q: %w", str, err)
	}
	*d = Duration(v)
	return nil
}
