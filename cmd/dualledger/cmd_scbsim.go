package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"dualledger/internal/scb"
	"dualledger/internal/scb/sim"
)

// newScbSimCmd is `dualledger scb-sim`: a simulated member bank (SCB) for the demo and tests.
func newScbSimCmd(a *app) *cobra.Command {
	var (
		cfg         sim.Config
		addr        string
		dataDir     string
		outageFor   time.Duration
		shutdownTmo time.Duration
		latency     time.Duration
		jitter      time.Duration
		hold        time.Duration
		retryAfter  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "scb-sim",
		Short: "Run a simulated SCB (member bank ledger API) with durable idempotent storage and fault injection",
		Long: `Serve the SCB API of docs/design.md §5 (POST /v1/entries, GET /v1/entries/{reference_id},
GET /v1/entries?since=&limit=) until SIGTERM or SIGINT.

Every posted entry is appended to <data dir>/entries.log and fsynced before the answer, so a
restarted simulator remembers what it posted: a replay of a key with the same body answers as
before, another body under the key answers 409, and nothing is posted twice.
GET /v1/admin/stats reports how many times each key was posted (?per_key=1).

Faults (flags at start, or at run time with POST /v1/admin/faults and the admin key):
  curl -s -H "Authorization: Bearer $ADMIN" localhost:9001/v1/admin/faults \
       -d '{"outage_for":"30s"}'                      # 503 + Retry-After for 30 s
  -d '{"error_rate":0.2,"drop_after_commit_rate":0.1,"seed":7}'
  -d '{"reset":true}'                                  # no faults
Fields: error_rate, latency, jitter, timeout_rate, timeout_hold, rate_limit_rate, retry_after,
drop_after_commit_rate, outage_for, outage_until, seed, reset. Durations are "1.5s" or seconds.

A member bank that is wrong after it acknowledged (what reconciliation finds): POST
/v1/admin/tamper with the admin key, durably (a restarted simulator is as wrong as before):
  -d '{"action":"lose","ledger_id":"MASTER","reference_id":"r1"}'     # GET answers 404
  -d '{"action":"alter","ledger_id":"MASTER","reference_id":"r1","amount":"99.00"}'
       # also block_hash ("" = some other hash), debit_account_id, credit_account_id, transaction_type
  -d '{"action":"hold","ledger_id":"MASTER","reference_id":"r1","status":"ACCEPTED"}'  # never FINAL
  -d '{"action":"invent","entry":{...an entry as POST /v1/entries takes it...}}'
The answer is the entry as the SCB now shows it (for lose, as it was).

The API key may come from --api-key or the environment variable SCB_SIM_API_KEY (which keeps
it out of the process list); the admin key likewise from SCB_SIM_ADMIN_KEY.`,
		Example: `  dualledger scb-sim --id SCB-1 --addr 127.0.0.1:9001 --api-key K
  dualledger scb-sim --id SCB-2 --addr 127.0.0.1:9002 --api-key K2 --final-after 5s --drop-after-commit-rate 0.1 --seed 42
  SCB_SIM_API_KEY=K dualledger scb-sim --id SCB-1 --addr 127.0.0.1:0 --json   # prints {"listening": ...}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.ID == "" {
				return usage("--id is required (the SCB's id, e.g. SCB-1)")
			}
			if cfg.APIKey == "" {
				cfg.APIKey = a.getenv("SCB_SIM_API_KEY")
			}
			if cfg.APIKey == "" {
				return usage("--api-key (or SCB_SIM_API_KEY) is required")
			}
			if cfg.AdminKey == "" {
				cfg.AdminKey = a.getenv("SCB_SIM_ADMIN_KEY")
			}
			if !scb.ValidStatus(cfg.InitialStatus) {
				return usage("--initial-status must be ACCEPTED, POSTED or FINAL")
			}
			if cfg.FinalAfter < 0 || shutdownTmo <= 0 || outageFor < 0 {
				return usage("--final-after and --outage-for must not be negative, --shutdown-timeout must be positive")
			}
			cfg.Faults.Latency, cfg.Faults.Jitter = sim.Duration(latency), sim.Duration(jitter)
			cfg.Faults.TimeoutHold, cfg.Faults.RetryAfter = sim.Duration(hold), sim.Duration(retryAfter)
			if outageFor > 0 {
				cfg.Faults.OutageUntil = time.Now().Add(outageFor).UTC()
			}
			if err := cfg.Faults.Validate(); err != nil {
				return usage("%v", err)
			}
			if dataDir == "" {
				// The id as written (scb-SCB-1), minus what would leave the folder.
				dataDir = filepath.Join(".dualledger", "scb-"+strings.NewReplacer("/", "_", `\`, "_", "..", "_").Replace(cfg.ID))
			}
			cfg.DataDir = dataDir
			cfg.Logger = a.logger

			// Listen before opening the store: a taken port is the likeliest mistake.
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return &exitError{code: exitInfra, err: fmt.Errorf("listen on %s: %w", addr, err)}
			}
			defer ln.Close()
			s, err := sim.New(cfg)
			if err != nil {
				return &exitError{code: exitInfra, err: err}
			}
			defer s.Close()

			st := s.Stats(false)
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"listening": ln.Addr().String(), "id": cfg.ID, "data_dir": dataDir, "entries": st.Posts, "seed": st.Seed}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.errOut, "dualledger scb-sim %s: listening on http://%s (data %s, %d entries loaded, fault seed %d; SIGTERM or Ctrl-C to stop)\n",
					cfg.ID, ln.Addr(), dataDir, st.Posts, st.Seed)
			}
			if err := s.Serve(cmd.Context(), ln, shutdownTmo); err != nil {
				return &exitError{code: exitInfra, err: err}
			}
			if err := s.Close(); err != nil {
				return &exitError{code: exitInfra, err: fmt.Errorf("scb-sim %s: close: %w", cfg.ID, err)}
			}
			if !a.jsonOut {
				fmt.Fprintf(a.errOut, "dualledger scb-sim %s: stopped\n", cfg.ID)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "the SCB's id, e.g. SCB-1 (required)")
	f.StringVar(&addr, "addr", "127.0.0.1:9001", "listen address HOST:PORT (port 0 picks a free one; see --json)")
	f.StringVar(&cfg.APIKey, "api-key", "", "bearer key clients must send (env SCB_SIM_API_KEY)")
	f.StringVar(&cfg.AdminKey, "admin-key", "", "bearer key of /v1/admin/* (env SCB_SIM_ADMIN_KEY; default: the API key)")
	// Shadows the global --data-dir (the embedded PostgreSQL's directory), which must never be
	// used for the simulator's log.
	f.StringVar(&dataDir, "data-dir", "", "where the simulator keeps its log (default ./.dualledger/scb-<ID>)")
	f.StringVar(&cfg.InitialStatus, "initial-status", scb.StatusAccepted, "status of a newly posted entry: ACCEPTED, POSTED or FINAL")
	f.DurationVar(&cfg.FinalAfter, "final-after", time.Second, "an entry is POSTED at half this age and FINAL at this age (0 = FINAL at once)")
	f.Float64Var(&cfg.Faults.ErrorRate, "error-rate", 0, "fraction of requests answered 500/503 before anything is done")
	f.DurationVar(&latency, "latency", 0, "delay added to every request")
	f.DurationVar(&jitter, "jitter", 0, "plus a random delay up to this")
	f.Float64Var(&cfg.Faults.TimeoutRate, "timeout-rate", 0, "fraction of requests held (see --timeout-hold) and dropped unanswered")
	f.DurationVar(&hold, "timeout-hold", sim.DefaultTimeoutHold, "how long a timeout-fault request is held (or until the client gives up)")
	f.DurationVar(&outageFor, "outage-for", 0, "start with an outage of this length: every request 503 + Retry-After")
	f.Float64Var(&cfg.Faults.RateLimitRate, "rate-limit-rate", 0, "fraction of requests answered 429 + Retry-After")
	f.DurationVar(&retryAfter, "retry-after", time.Second, "Retry-After of a 429 (whole seconds)")
	f.Float64Var(&cfg.Faults.DropAfterCommitRate, "drop-after-commit-rate", 0, "fraction of POSTs that are posted durably, then answered by closing the connection")
	f.Uint64Var(&cfg.Seed, "seed", 0, "fault RNG seed for reproducible runs (0 = random, printed at start)")
	f.DurationVar(&shutdownTmo, "shutdown-timeout", 5*time.Second, "how long in-flight requests may take to finish on shutdown")
	return cmd
}
