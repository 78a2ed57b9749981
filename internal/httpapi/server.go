// Package httpapi is dualledger's HTTP API (DESIGN §9): the JSON endpoints for ledgers,
// accounts, entries and banks, the operations endpoints (/healthz, /readyz, /metrics,
// /openapi.json) and the server's lifecycle.
//
// One route table (routes.go) builds both the ServeMux and the OpenAPI document; request and
// response schemas are derived from the Go types by reflection. Single-entry postings go through
// one ledger.Poster per server (group commit, DESIGN §6), which batches also go through. The
// database validates every posting; this package decodes strictly, maps the stable error codes
// of internal/ledger to HTTP statuses and never shows SQL text to clients.
package httpapi

import (
	"context"
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

	readyTimeout     = 2 * time.Second
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// Config configures a Server. Zero values mean the defaults above.
type Config struct {
	MaxBody          int64         // body limit of every request but batches
	MaxBatchBody     int64         // body limit of POST .../entries/batch
	MaxBatch         int           // entries per batch request (at most ledger.MaxBatch)
	GroupCommitDelay time.Duration // how long a single posting may wait for company (0: none)
	GroupCommitMax   int           // postings per group-commit transaction
	ShutdownTimeout  time.Duration // how long Serve lets in-flight requests finish
	RequestTimeout   time.Duration // bound on one request's work (database calls included)
	Version          string        // shown in the OpenAPI document
	MasterLedger     string        // the ledger of GSS settlements (default MASTER)
	Logger           *slog.Logger
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Server is the HTTP API on one database pool. Create it with New, add background tasks with Go
// (the in-process outbox worker of `serve --worker` belongs there), then call Serve or Run; or
// mount Handler in a server of your own and call Close when done.
type Server struct {
	cfg     Config
	pool    *pgxpool.Pool
	poster  *ledger.Poster
	settle  *settlement.Service
	log     *slog.Logger
	metrics *metrics
	handler http.Handler
	openapi []byte

	// ledgers caches ids of ledgers known to exist (ledgers are never deleted), so that a
	// posting to a made-up ledger id is refused before it creates a group-commit queue.
	ledgers sync.Map

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

// New builds a Server on pool. The pool stays the caller's: close it after Serve returns.
func New(pool *pgxpool.Pool, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, pool: pool, log: cfg.Logger, metrics: newMetrics(pool)}
	s.poster = ledger.NewPoster(pool, ledger.PosterConfig{
		MaxBatch: cfg.GroupCommitMax,
		MaxDelay: cfg.GroupCommitDelay,
		Observe:  s.metrics.groupCommit,
	})
	s.settle = settlement.New(pool, cfg.MasterLedger, s.poster.Post)
	// The outbox as the database sees it (depth, sync lag), on every scrape, worker or not.
	s.metrics.reg.MustRegister(outbox.NewCollector(pool))
	routes := s.routes()
	doc, err := buildOpenAPI(routes, cfg.Version)
	if err != nil {
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

// Registry is the server's Prometheus registry, served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// OpenAPI returns the OpenAPI document served at /openapi.json.
func (s *Server) OpenAPI() []byte { return s.openapi }

// Go registers a background task to run while Serve runs (call it before Serve). Its context
// is cancelled when shutdown starts; Serve waits for it to return before closing the Poster.
// A task that fails (returns an error other than after cancellation) shuts the server down and
// its error is Serve's. This is where `serve --worker` plugs in the outbox worker.
func (s *Server) Go(name string, run func(ctx context.Context) error) {
	s.tasks = append(s.tasks, task{name: name, run: run})
}

// Close stops the group-commit Poster after letting queued postings finish. Serve calls it;
// call it yourself only when you mounted Handler elsewhere, after that server stopped.
func (s *Server) Close() {
	s.closeOnce.Do(s.poster.Close)
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
		// A 16 MiB batch over a slow link needs a while; anything slower is abandoned.
		ReadTimeout:    2 * time.Minute,
		WriteTimeout:   s.cfg.RequestTimeout + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		// Request contexts deliberately do not derive from ctx: cancelling ctx starts a
		// graceful shutdown, which must let in-flight postings finish rather than abort them.
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
