package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/scb"

	"dualledger/internal/ledger"
)

// Clients resolves the SCB client of each registered bank from the environment
// (SCB_<ID>_API_URL / SCB_<ID>_API_KEY) and an optional config file. The list of banks is re-read
// when an SCB without a client is asked for (at most every refreshEvery), so a bank registered
// while the worker runs is picked up within seconds, without a restart.
type Clients struct {
	db        ledger.DBTX
	environ   []string
	path      string
	timeout   time.Duration // overrides every SCB's own timeout when > 0
	limit     time.Duration // no SCB's timeout may exceed it (> 0)
	transport http.RoundTripper
	log       *slog.Logger

	mu       sync.Mutex
	clients  map[string]*scb.Client
	problems map[string]string // why an SCB's settings were refused ("": the config file's)
	loadedAt time.Time
}

const refreshEvery = 2 * time.Second

// NewClients loads the clients for the registered banks. timeout overrides each SCB's own
// per-request timeout (its config, or scb.DefaultTimeout) when non-zero; limit, when non-zero,
// caps them all: a request must end well inside the worker's lease, or another worker would
// take the row and deliver it concurrently (harmless, being idempotent, but wasteful), and the
// result could no longer be recorded.
func NewClients(ctx context.Context, db ledger.DBTX, environ []string, path string, timeout, limit time.Duration, log *slog.Logger) (*Clients, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Clients{db: db, environ: environ, path: path, timeout: timeout, limit: limit, transport: scb.NewTransport(), log: log}
	if err := c.reload(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Resolve implements Resolver.
func (c *Clients) Resolve(id string) (SCB, bool) {
	c.mu.Lock()
	cl, ok := c.clients[id]
	stale := time.Since(c.loadedAt) > refreshEvery
	c.mu.Unlock()
	if ok {
		return cl, true
	}
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.reload(ctx); err != nil {
			c.log.Error("outbox: reload SCB configuration", "err", err)
		}
		c.mu.Lock()
		cl, ok = c.clients[id]
		c.mu.Unlock()
	}
	if !ok {
		return nil, false
	}
	return cl, true
}

// Problem says why the SCB has no client although settings were given for it (they were
// refused: a config file that is world-readable, a bad timeout, two spellings that disagree), or
// "" when none were given at all.
func (c *Clients) Problem(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.problems[id]; ok {
		return p
	}
	return c.problems[""]
}

// Configured lists the SCBs that have a client.
func (c *Clients) Configured() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.clients))
	for id := range c.clients {
		out = append(out, id)
	}
	return out
}

func (c *Clients) reload(ctx context.Context) error {
	rows, err := c.db.Query(ctx, `SELECT id FROM banks ORDER BY id`)
	if err != nil {
		return fmt.Errorf("list registered banks: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list registered banks: %w", err)
	}
	cfgs, err := scb.Load(c.environ, ids, c.path)
	if err != nil {
		// A bad entry for one SCB must not stop the others: keep what loaded, report the rest.
		c.log.Error("outbox: SCB configuration", "err", err)
	}
	problems := scb.ConfigErrors(err)
	if problems == nil {
		problems = map[string]string{}
	}
	clients := make(map[string]*scb.Client, len(cfgs))
	for id, cfg := range cfgs {
		if c.timeout > 0 {
			cfg.Timeout = c.timeout
		}
		if c.limit > 0 && cfg.RequestTimeout() > c.limit {
			c.log.Warn("outbox: SCB timeout longer than half the lease; capped", "scb", id,
				"configured", cfg.RequestTimeout(), "used", c.limit)
			cfg.Timeout = c.limit
		}
		cl, err := scb.NewClient(cfg, c.transport)
		if err != nil {
			c.log.Error("outbox: SCB client", "scb", id, "err", err)
			problems[id] = err.Error()
			continue
		}
		clients[id] = cl
	}
	c.mu.Lock()
	c.clients = clients
	c.problems = problems
	c.loadedAt = time.Now()
	c.mu.Unlock()
	return nil
}
