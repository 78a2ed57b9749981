package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"dualledger/internal/scb"
)

// Config configures a simulator.
type Config struct {
	ID            string        // the SCB's id, e.g. "SCB-1"; part of every scb_entry_id
	APIKey        string        // the bearer key of /v1/entries
	AdminKey      string        // the bearer key of /v1/admin/*; "" = APIKey
	DataDir       string        // where the log lives
	InitialStatus string        // status of a new entry: ACCEPTED (default), POSTED or FINAL
	FinalAfter    time.Duration // POSTED at half, FINAL at this age; 0 = FINAL at once
	Faults        Faults        // faults in force at start
	Seed          uint64        // fault RNG seed; 0 = random (reported in stats)
	Logger        *slog.Logger  // nil = discard
	Now           func() time.Time
}

// Server is a simulated SCB. Create it with New, serve Handler (or call Serve), and Close it.
type Server struct {
	cfg      Config
	store    *store
	faults   *injector
	log      *slog.Logger
	now      func() time.Time
	started  time.Time
	stopping chan struct{} // closed by Close: held requests let go
	stopOnce sync.Once

	requests, replays, conflicts, rejected atomic.Int64
	faultMu                                sync.Mutex
	faultCounts                            map[string]int64
}

// New opens (or creates) the data dir, loads what the simulator posted before, and returns a
// server ready to serve.
func New(cfg Config) (*Server, error) {
	if cfg.ID == "" {
		return nil, errors.New("scb-sim: an SCB id is required")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("scb-sim: an API key is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("scb-sim: a data dir is required")
	}
	if cfg.InitialStatus == "" {
		cfg.InitialStatus = scb.StatusAccepted
	}
	if !scb.ValidStatus(cfg.InitialStatus) {
		return nil, fmt.Errorf("scb-sim: initial status %q is not ACCEPTED, POSTED or FINAL", cfg.InitialStatus)
	}
	if cfg.FinalAfter < 0 {
		return nil, errors.New("scb-sim: final-after must not be negative")
	}
	if err := cfg.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("scb-sim: %w", err)
	}
	if cfg.AdminKey == "" {
		cfg.AdminKey = cfg.APIKey
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st, err := openStore(cfg.DataDir, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("scb-sim %s: %w", cfg.ID, err)
	}
	return &Server{cfg: cfg, store: st, faults: newInjector(cfg.Faults, cfg.Seed), log: cfg.Logger,
		now: cfg.Now, started: cfg.Now(), stopping: make(chan struct{}), faultCounts: map[string]int64{}}, nil
}

// Handler is the HTTP API of the package doc.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/entries", s.withFaults(s.handlePost))
	mux.HandleFunc("GET /v1/entries", s.withFaults(s.handleList))
	mux.HandleFunc("GET /v1/entries/{reference_id}", s.withFaults(s.handleGet))
	mux.HandleFunc("GET /v1/admin/stats", s.admin(s.handleStats))
	mux.HandleFunc("GET /v1/admin/faults", s.admin(s.handleGetFaults))
	mux.HandleFunc("POST /v1/admin/faults", s.admin(s.handleSetFaults))
	mux.HandleFunc("POST /v1/admin/tamper", s.admin(s.handleTamper))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "id": s.cfg.ID})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

// Serve answers on ln until ctx is cancelled, then shuts down gracefully: held (timeout-fault)
// requests are let go, in-flight requests get up to shutdownTimeout to finish. It does not close
// the store; call Close after it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener, shutdownTimeout time.Duration) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("scb-sim %s: serve: %w", s.cfg.ID, err)
	case <-ctx.Done():
	}
	s.release()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("scb-sim %s: shutdown: %w", s.cfg.ID, err)
	}
	return nil
}

// release lets held requests go.
func (s *Server) release() { s.stopOnce.Do(func() { close(s.stopping) }) }

// Close lets held requests go and closes the store after writing what is queued. Requests still
// arriving are answered 503.
func (s *Server) Close() error {
	s.release()
	return s.store.close()
}

// Faults returns the fault settings in force.
func (s *Server) Faults() Faults { f, _ := s.faults.get(); return f }

// SetFaults changes the fault settings as POST /v1/admin/faults does.
func (s *Server) SetFaults(u FaultsUpdate) (Faults, error) { return s.faults.update(u, s.now()) }

// Stats is GET /v1/admin/stats. keys, posts, duplicate_posts and per_key_posts come from the
// durable log (they survive restarts); the other counters count since the process started.
type Stats struct {
	ID             string           `json:"id"`
	Keys           int              `json:"keys"`            // distinct idempotency keys posted
	Posts          int              `json:"posts"`           // entries actually created (log lines)
	DuplicatePosts int              `json:"duplicate_posts"` // keys posted more than once: must be 0
	Requests       int64            `json:"requests"`        // /v1/entries requests, faulted ones included
	Replays        int64            `json:"replays"`         // POSTs answered from the store
	Conflicts      int64            `json:"conflicts"`       // 409s: same key, other body
	Rejected       int64            `json:"rejected"`        // 400/401/413/415/422 answers
	Faults         map[string]int64 `json:"faults"`          // injected faults by kind
	FaultSettings  Faults           `json:"fault_settings"`
	Seed           uint64           `json:"seed"`
	StartedAt      time.Time        `json:"started_at"`
	PerKeyPosts    map[string]int   `json:"per_key_posts,omitempty"` // only when asked: ?per_key=1
}

// Stats returns the counters; per-key post counts only if perKey.
func (s *Server) Stats(perKey bool) Stats {
	keys, posts, dups, per := s.store.counts(perKey)
	f, seed := s.faults.get()
	st := Stats{ID: s.cfg.ID, Keys: keys, Posts: posts, DuplicatePosts: dups,
		Requests: s.requests.Load(), Replays: s.replays.Load(), Conflicts: s.conflicts.Load(), Rejected: s.rejected.Load(),
		Faults: map[string]int64{}, FaultSettings: f, Seed: seed, StartedAt: s.started, PerKeyPosts: per}
	s.faultMu.Lock()
	for _, k := range []string{faultOutage, faultError, faultRateLimit, faultTimeout, faultLatency, faultDropAfterCommit} {
		st.Faults[k] = s.faultCounts[k]
	}
	s.faultMu.Unlock()
	return st
}

func (s *Server) countFault(kind string) {
	s.faultMu.Lock()
	s.faultCounts[kind]++
	s.faultMu.Unlock()
}

// statusAt is the status of an entry posted at postedAt, at now.
func (s *Server) statusAt(postedAt, now time.Time) string {
	fa := s.cfg.FinalAfter
	age := now.Sub(postedAt)
	switch {
	case fa == 0 || age >= fa || s.cfg.InitialStatus == scb.StatusFinal:
		return scb.StatusFinal
	case age >= fa/2 || s.cfg.InitialStatus == scb.StatusPosted:
		return scb.StatusPosted
	}
	return scb.StatusAccepted
}
