package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// DefaultRefresh is how often a Keyring looks for new and revoked keys: a key created or revoked
// with the CLI takes effect on a running server within a second.
const DefaultRefresh = 500 * time.Millisecond

// Authentication failures. ErrNoToken, ErrBadToken and ExpiredError are answered 401 unauthenticated;
// ErrUnavailable (the keys could not be read: the database is down) is a 503, because the
// client's key may well be good.
var (
	ErrNoToken     = errors.New("no bearer token")
	ErrBadToken    = errors.New("unknown or revoked token")
	ErrUnavailable = errors.New("the API keys cannot be read now")
)

// ExpiredError is the answer to the token of a key past its expires_at (401 too). Only a caller
// who holds the whole token learns it: the token is checked first.
type ExpiredError struct{ At time.Time }

func (e *ExpiredError) Error() string {
	return "the API key expired at " + e.At.UTC().Format(time.RFC3339)
}

// Keyring holds the active keys in memory, reloaded from the database when they change, and
// each rate-limited key's token bucket.
type Keyring struct {
	db      DB
	refresh time.Duration
	log     *slog.Logger

	mu       sync.RWMutex
	keys     map[string]*Key // active keys by id
	fp       string
	limiters map[string]*rate.Limiter
	loaded   bool
	gen      uint64 // bumped by every reload that changed the keys

	// Look-ups of key ids the keyring does not hold: one database probe per id at a time
	// (singleflight), at most maxLookups ids at once, and ids found unknown remembered until the
	// keys change (unknown[id] = gen), so made-up tokens cost the database next to nothing.
	flight     singleflight.Group
	lookupSlot chan struct{}
	unknown    map[string]uint64
}

const (
	maxLookups     = 4
	lookupTimeout  = 2 * time.Second
	maxUnknownIDs  = 10000
	lookupWaitTime = 500 * time.Millisecond
)

// NewKeyring returns a keyring on db; call Reload (or Run) before using it.
func NewKeyring(db DB, refresh time.Duration, log *slog.Logger) *Keyring {
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keyring{db: db, refresh: refresh, log: log, keys: map[string]*Key{}, limiters: map[string]*rate.Limiter{},
		lookupSlot: make(chan struct{}, maxLookups), unknown: map[string]uint64{}}
}

// Reload reads the keys if they changed since the last load.
func (kr *Keyring) Reload(ctx context.Context) error {
	fp, err := fingerprint(ctx, kr.db)
	if err != nil {
		return err
	}
	kr.mu.RLock()
	same := kr.loaded && fp == kr.fp
	kr.mu.RUnlock()
	if same {
		return nil
	}
	all, err := List(ctx, kr.db)
	if err != nil {
		return err
	}
	keys := make(map[string]*Key, len(all))
	for i := range all {
		if all[i].RevokedAt == nil {
			keys[all[i].ID] = &all[i]
		}
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	limiters := make(map[string]*rate.Limiter, len(kr.limiters))
	for id, k := range keys {
		if k.RateLimit == nil {
			continue
		}
		// A key's limit never changes (keys are immutable), so its bucket carries over.
		if l, ok := kr.limiters[id]; ok {
			limiters[id] = l
			continue
		}
		limiters[id] = newLimiter(*k.RateLimit)
	}
	kr.keys, kr.fp, kr.limiters, kr.loaded = keys, fp, limiters, true
	kr.gen++
	return nil
}

// Run reloads the keys every refresh interval until ctx ends. A failed reload keeps the keys it
// had (and is logged): a database outage must not lock every client out, nor bring back a
// revoked key.
func (kr *Keyring) Run(ctx context.Context) error {
	t := time.NewTicker(kr.refresh)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := kr.Reload(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			kr.log.Warn("reloading API keys failed; keeping the keys loaded before", "err", err)
			failing = true
		case err == nil && failing:
			kr.log.Info("API keys reloaded again")
			failing = false
		}
	}
}

// Authenticate returns the active key a bearer token belongs to. The token is hashed and the
// hash compared in constant time; an unknown id costs the same comparison. A well-formed token
// of a key this keyring has not seen makes it look that one key up (one primary-key probe), so a
// key created a moment ago works on its first request.
func (kr *Keyring) Authenticate(ctx context.Context, token string) (*Key, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	id := keyIDOf(token)
	kr.mu.RLock()
	k := kr.keys[id]
	kr.mu.RUnlock()
	var reloadErr error
	if k == nil && id != "" {
		k, reloadErr = kr.lookupShared(ctx, id)
	}
	kr.mu.RLock()
	loaded := kr.loaded
	kr.mu.RUnlock()
	if k == nil && (!loaded || reloadErr != nil) {
		return nil, ErrUnavailable
	}
	want := dummyHash[:]
	if k != nil {
		want = k.hash
	}
	if subtle.ConstantTimeCompare(hashToken(token), want) != 1 || k == nil {
		return nil, ErrBadToken
	}
	if k.Expired(time.Now()) {
		return nil, &ExpiredError{At: *k.ExpiresAt}
	}
	return k, nil
}

var dummyHash [32]byte

// lookupShared is lookup behind the guards: a remembered unknown id answers at once, concurrent
// requests for one id share one probe, and at most maxLookups ids are probed at once (a request
// that cannot get a turn within lookupWaitTime is answered unavailable: retry).
func (kr *Keyring) lookupShared(ctx context.Context, id string) (*Key, error) {
	kr.mu.RLock()
	gen, known := kr.unknown[id]
	unknown := known && gen == kr.gen
	kr.mu.RUnlock()
	if unknown {
		return nil, nil
	}
	v, err, _ := kr.flight.Do(id, func() (any, error) {
		t := time.NewTimer(lookupWaitTime)
		defer t.Stop()
		select {
		case kr.lookupSlot <- struct{}{}:
		case <-t.C:
			return nil, errors.New("too many API key look-ups at once")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-kr.lookupSlot }()
		// Detached from the first caller's cancellation: the others share this answer.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		return kr.lookup(lctx, id)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Key), nil
}

// lookup reads one key the keyring does not hold and, if it is active, adds it. A reload that
// ran meanwhile wins when it holds the key; when it does not, the key is read again: that reload
// may have seen it revoked after this read saw it active (a revoked key must never come back into
// the map: the fingerprint would not change again), or may have read the keys before the key
// existed, and only a read after it can tell. (Taking the reload's answer as final once answered
// a key created a moment before a periodic reload 401 on its first request.)
func (kr *Keyring) lookup(ctx context.Context, id string) (*Key, error) {
	for range 5 {
		k, again, err := kr.lookupOnce(ctx, id)
		if !again {
			return k, err
		}
	}
	return nil, errors.New("the API keys kept changing while one was looked up")
}

// lookupOnce is one read of lookup; again when a reload changed the keys meanwhile without
// holding this one.
func (kr *Keyring) lookupOnce(ctx context.Context, id string) (_ *Key, again bool, _ error) {
	kr.mu.RLock()
	gen := kr.gen
	kr.mu.RUnlock()
	k, err := Get(ctx, kr.db, id)
	if errors.Is(err, ErrUnknownKey) {
		kr.mu.Lock()
		if len(kr.unknown) >= maxUnknownIDs {
			kr.unknown = map[string]uint64{}
		}
		kr.unknown[id] = gen
		kr.mu.Unlock()
		return nil, false, nil
	}
	if err != nil {
		kr.log.Warn("looking up an API key failed", "err", err)
		return nil, false, err
	}
	if k.RevokedAt != nil {
		return nil, false, nil // the fingerprint already counts it: no reload will bring it back
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if have := kr.keys[id]; have != nil {
		return have, false, nil
	}
	if kr.gen != gen {
		return nil, true, nil
	}
	// A copy-on-write update: Reload replaces the maps wholesale, readers never see them change.
	keys := make(map[string]*Key, len(kr.keys)+1)
	for kid, v := range kr.keys {
		keys[kid] = v
	}
	keys[id] = &k
	if k.RateLimit != nil {
		limiters := make(map[string]*rate.Limiter, len(kr.limiters)+1)
		for kid, l := range kr.limiters {
			limiters[kid] = l
		}
		limiters[id] = newLimiter(*k.RateLimit)
		kr.limiters = limiters
	}
	kr.keys = keys
	return &k, false, nil
}

func newLimiter(perSecond float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), max(int(perSecond), 1))
}

// Allow reports whether key may make a request now under its rate limit, and if not, how long
// until it may.
func (kr *Keyring) Allow(k *Key) (bool, time.Duration) {
	if k.RateLimit == nil {
		return true, 0
	}
	kr.mu.RLock()
	l := kr.limiters[k.ID]
	kr.mu.RUnlock()
	if l == nil {
		return true, 0
	}
	r := l.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}
