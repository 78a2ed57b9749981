// Package httpapi is dualledger's HTTP API (docs/design.md §9): the JSON endpoints for ledgers,
// accounts, entries and banks, the operations endpoints (/healthz, /readyz, /metrics,
// /openapi.json) and the server's lifecycle.
//
// One route table (routes.go) builds both the ServeMux and the OpenAPI document; request and
// response schemas are derived from the Go types by reflection. Single-entry postings go through
// one ledger.Poster per server (group commit, docs/design.md §6), which batches also go through. The
// database validates every posting; this package decodes strictly, maps the stable error codes
// of internal/ledger to HTTP statuses and never shows SQL text to clients.
package httpapi

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/outbox"
	"dualledger/internal/settlement"
)

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultMaxBody         = 1 << 20  // 1 MiB
	DefaultMaxBatchBody    = 16 << 20 // 16 MiB
	DefaultMaxBatch        = 1000
	DefaultGroupCommitMax  = 1000
	DefaultShutdownTimeout = 30 * time.Second
	DefaultRequestTimeout  = 60 * time.Second
	// DefaultMaxInFlight is high enough that 32 keep-alive clients posting as fast as they can
	// are never refused, and low enough that the requests admitted during a flood still answer
	// quickly: by Little's law, 128 in flight at a few thousand postings a second is tens of
	// milliseconds each (docs/benchmarks.md, "Overload").
	DefaultMaxInFlight = 128
	DefaultMaxConns    = 2048
	DefaultReadTimeout = 60 * time.Second
	DefaultIdleTimeout = 90 * time.Second

	readyTimeout     = 2 * time.Second
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// Config configures a Server. Zero values mean the defaults above.
type Config struct {
	MaxBody           int64         // body limit of every request but batches
	MaxBatchBody      int64         // body limit of POST .../entries/batch
	MaxBatch          int           // entries per batch request (at most ledger.MaxBatch)
	GroupCommitDelay  time.Duration // how long a single posting may wait for company (0: none)
	GroupCommitMax    int           // postings per group-commit transaction
	ShutdownTimeout   time.Duration // how long Serve lets in-flight requests finish
	RequestTimeout    time.Duration // bound on one request's work (database calls included)
	Version           string        // shown in the OpenAPI document
	MasterLedger      string        // the ledger of GSS settlements (default MASTER)
	MaxMetadataBytes  int           // metadata of an entry or account, as received (DefaultMaxMetadataBytes)
	MaxMetadataDepth  int           // nesting of that metadata, itself included (DefaultMaxMetadataDepth)
	Logger            *slog.Logger
	MaxInFlight       int           // /v1 requests in flight at once; more are refused at once with 429
	MaxInFlightPerKey int           // one key's share of MaxInFlight (default: half, at least 32)
	MaxConns          int           // open connections at once (past it, idle ones are closed to make room)
	ReadTimeout       time.Duration // bound on reading one request, body included
	IdleTimeout       time.Duration // how long a keep-alive connection may idle
	TLS               *tls.Config   // serve HTTPS with this (nil: plain HTTP)
	KeyRefresh        time.Duration // how often API keys are reloaded (default auth.DefaultRefresh)
	BankScanWindow    int64         // seqs one page of a member bank's entries looks at (default ledger.BankScanWindow)
}

func (c Config) withDefaults() (Config, error) {
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxBatchBody <= 0 {
		c.MaxBatchBody = DefaultMaxBatchBody
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatch > ledger.MaxBatch {
		return c, fmt.Errorf("max batch %d is above the posting function's limit of %d", c.MaxBatch, ledger.MaxBatch)
	}
	if c.GroupCommitMax <= 0 {
		c.GroupCommitMax = DefaultGroupCommitMax
	}
	if c.GroupCommitMax > ledger.MaxBatch {
		return c, fmt.Errorf("group commit max %d is above the posting function's limit of %d", c.GroupCommitMax, ledger.MaxBatch)
	}
	if c.GroupCommitDelay < 0 {
		return c, errors.New("group commit delay must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.MasterLedger == "" {
		c.MasterLedger = "MASTER"
	}
	if c.MaxMetadataBytes <= 0 {
		c.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	if c.MaxMetadataDepth <= 0 {
		c.MaxMetadataDepth = DefaultMaxMetadataDepth
	}
	if c.MaxMetadataBytes > MaxMetadataBytesLimit {
		return c, fmt.Errorf("max metadata size %d is above the database's limit of %d bytes", c.MaxMetadataBytes, MaxMetadataBytesLimit)
	}
	if c.MaxMetadataDepth > MaxMetadataDepthLimit {
		return c, fmt.Errorf("max metadata depth %d is above the JSON nesting limit of %d", c.MaxMetadataDepth, MaxMetadataDepthLimit)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.BankScanWindow <= 0 {
		c.BankScanWindow = ledger.BankScanWindow
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxInFlightPerKey <= 0 {
		// 32 keep-alive clients of one application (one key) posting as fast as they can are
		// never refused; a single key cannot take every slot from the others.
		c.MaxInFlightPerKey = min(c.MaxInFlight, max(32, c.MaxInFlight/2))
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c, nil
}

// Server is the HTTP API on one database pool. Create it with New, add background tasks with Go
// (the in-process outbox worker of `serve --worker` belongs there), then call Serve or Run; or
// mount Handler in a server of your own and call Close when done.
type Server struct {
	cfg       Config
	pool      *pgxpool.Pool
	poster    *ledger.Poster
	settle    *settlement.Service
	log       *slog.Logger
	metrics   *metrics
	handler   http.Handler
	openapi   []byte
	keys      *auth.Keyring
	slots     chan struct{} // in-flight /v1 requests (MaxInFlight)
	perKeyMu  sync.Mutex
	perKey    map[string]int // in-flight requests per key id (MaxInFlightPerKey)
	stopKeys  context.CancelFunc
	ownPoster bool // the Poster is the server's own: Close closes it

	// ledgers caches ids of ledgers known to exist (ledgers are never deleted), so that a
	// posting to a made-up ledger id is refused before it creates a group-commit queue.
	ledgers sync.Map
	// issuance knows each ledger's accounts with an unlimited overdraft (checkDebits).
	issuance *issuanceAccounts

	tasks     []task
	draining  atomic.Bool    // set when shutdown starts: /readyz answers 503
	inflight  sync.WaitGroup // requests in handlers, so the Poster closes only after them
	closeOnce sync.Once
}

// task is a background job that runs alongside the HTTP server.
type task struct {
	name string
	run  func(ctx context.Context) error
}

// Deps are the services a Server works with. Pool is required; each other one the server builds
// on Pool when it is nil, and then owns (Close stops it). A caller that injects its own keeps
// it: it may share a Poster or a Keyring between servers, or test the API against one it drives.
type Deps struct {
	Pool        *pgxpool.Pool
	Poster      *ledger.Poster      // group commit of single postings (nil: one per server)
	Settlements *settlement.Service // GSS settlements on Config.MasterLedger (nil: on Poster)
	Keys        *auth.Keyring       // API keys (nil: the server's own, refreshed until Close)
}

// New builds a Server on pool alone: NewServer(Deps{Pool: pool}, cfg). The pool stays the
// caller's: close it after Serve returns.
func New(pool *pgxpool.Pool, cfg Config) (*Server, error) { return NewServer(Deps{Pool: pool}, cfg) }

// NewServer builds a Server on d; Handler is its http.Handler.
func NewServer(d Deps, cfg Config) (*Server, error) {
	if d.Pool == nil {
		return nil, errors.New("httpapi: Deps.Pool is required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pool := d.Pool
	s := &Server{cfg: cfg, pool: pool, log: cfg.Logger, metrics: newMetrics(pool), slots: make(chan struct{}, cfg.MaxInFlight),
		perKey: map[string]int{}, stopKeys: func() {}, issuance: newIssuanceAccounts(pool, cmp.Or(cfg.KeyRefresh, auth.DefaultRefresh))}
	if s.keys = d.Keys; s.keys == nil {
		// The keys are loaded before the first request and then kept current by a refresher
		// that runs until Close, whether the server runs through Serve or only its Handler is
		// mounted.
		s.keys = auth.NewKeyring(pool, cfg.KeyRefresh, cfg.Logger)
		loadCtx, cancelLoad := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.keys.Reload(loadCtx); err != nil {
			// The server starts anyway (/readyz says 503 until the database answers); requests
			// get 503 until the keys are loaded.
			s.log.Warn("loading API keys failed; retrying in the background", "err", err)
		}
		cancelLoad()
		keysCtx, stopKeys := context.WithCancel(context.Background())
		s.stopKeys = stopKeys
		go func() { _ = s.keys.Run(keysCtx) }()
	}
	if s.poster = d.Poster; s.poster == nil {
		s.poster = ledger.NewPoster(pool, ledger.PosterConfig{
			MaxBatch: cfg.GroupCommitMax,
			MaxDelay: cfg.GroupCommitDelay,
			Observe:  s.metrics.groupCommit,
		})
		s.ownPoster = true
	}
	if s.settle = d.Settlements; s.settle == nil {
		s.settle = settlement.New(pool, cfg.MasterLedger, s.poster.Post)
	}
	// The outbox as the database sees it (depth, sync lag), on every scrape, worker or not.
	s.metrics.reg.MustRegister(outbox.NewCollector(pool))
	routes := s.routes()
	for _, rt := range routes {
		if !rt.access.public && rt.access.scope == "" {
			s.Close()
			return nil, fmt.Errorf("route %s %s has no access rule: give it a scope or mark it public", rt.method, rt.path)
		}
	}
	doc, err := buildOpenAPI(routes, cfg.Version)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("build OpenAPI document: %w", err)
	}
	if s.openapi, err = json.Marshal(doc); err != nil {
		return nil, fmt.Errorf("encode OpenAPI document: %w", err)
	}
	s.handler = s.router(routes)
	return s, nil
}

// Handler is the API's http.Handler.
func (s *Server) Handler() http.Handler { return s.handler }

// ServeHTTP serves the API: a *Server is itself the http.Handler that NewServer builds.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

var _ http.Handler = (*Server)(nil)

// Registry is the server's Prometheus registry.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// MetricsHandler serves the registry in the Prometheus text format. It belongs on a listener of
// its own (serve --metrics-addr), never on the API's port.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler }

// Keys is the keyring the server authenticates against.
func (s *Server) Keys() *auth.Keyring { return s.keys }

// OpenAPI returns the OpenAPI document served at /openapi.json.
func (s *Server) OpenAPI() []byte { return s.openapi }

// Go registers a background task to run while Serve runs (call it before Serve). Its context
// is cancelled when shutdown starts; Serve waits for it to return before closing the Poster.
// A task that fails (returns an error other than after cancellation) shuts the server down and
// its error is Serve's. This is where `serve --worker` plugs in the outbox worker.
func (s *Server) Go(name string, run func(ctx context.Context) error) {
	s.tasks = append(s.tasks, task{name: name, run: run})
}

// Close stops what the server built itself (its group-commit Poster, after letting queued
// postings finish, and its key refresher); injected Deps stay their owner's. Serve calls it;
// call it yourself only when you mounted Handler elsewhere, after that server stopped.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.stopKeys()
		if s.ownPoster {
			s.poster.Close()
		}
	})
}

// Run listens on addr and serves until ctx ends (see Serve).
func (s *Server) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTP on ln and runs the background tasks until ctx ends (SIGTERM/SIGINT in
// `dualledger serve`), the server fails or a task fails. Then it shuts down gracefully: /readyz
// turns 503, the listener closes, in-flight requests get ShutdownTimeout to finish (then their
// connections are cut), tasks are cancelled and awaited, and the Poster is closed. The pool is
// left to the caller. It returns nil after a shutdown asked for by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.RequestTimeout + 30*time.Second,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Request contexts deliberately do not derive from ctx: cancelling ctx starts a
		// graceful shutdown, which must let in-flight postings finish rather than abort them.
	}

	// A connection cap that makes room by closing do-nothing connections (conns.go).
	conns := newConnCap(s.cfg.MaxConns)
	hs.ConnState = conns.track
	ln = conns.listener(ln)
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	taskCtx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTasks()
	taskErr := make(chan error, len(s.tasks))
	var tasks sync.WaitGroup
	for _, t := range s.tasks {
		tasks.Go(func() {
			err := t.run(taskCtx)
			if err != nil && taskCtx.Err() == nil {
				taskErr <- fmt.Errorf("%s: %w", t.name, err)
			}
		})
	}
	s.log.Info("serving HTTP", "addr", ln.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-taskErr:
		runErr = err
		s.log.Error("background task failed; shutting down", "err", err)
	}

	s.draining.Store(true)
	cancelTasks()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		s.log.Warn("in-flight requests did not finish in time; closing their connections", "err", err)
		_ = hs.Close()
	}
	tasks.Wait()
	// After a forced close, handlers may still be returning (their contexts are cancelled by
	// the closed connections). The Poster must not close under a handler that is about to use
	// it, so wait for them, boundedly.
	if waitTimeout(&s.inflight, 10*time.Second) {
		s.Close()
	} else {
		s.log.Error("handlers still running after shutdown; leaving the group-commit poster open")
	}
	return runErr
}

// waitTimeout waits for wg up to d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
