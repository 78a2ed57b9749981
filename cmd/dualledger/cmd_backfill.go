package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"net/http"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"dualledger/internal/backfill"
	"dualledger/internal/backfill/source"
	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
	"dualledger/internal/scb"
)

// sourceIDPattern is the checkpoint table's CHECK on source_id (migration 012).
var sourceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$`)

// checkSourceID is the usage error of a missing or malformed --source-id.
func checkSourceID(id string) error {
	switch {
	case id == "":
		return usage("--source-id is required: it names the import, its checkpoint and its error report")
	case !sourceIDPattern.MatchString(id):
		return usage("--source-id %q is not valid: 1-128 characters, letters, digits and _ . : @ / - (starting with a letter or digit)", id)
	}
	return nil
}

// checkNewSourceID is checkSourceID for a run, which may not take a name ending in ".opening":
// that is the source of another run's opening balances (<source-id>.opening), whose checkpoint
// and report the two would share.
func checkNewSourceID(id string) error {
	if err := checkSourceID(id); err != nil {
		return err
	}
	if strings.HasSuffix(id, ".opening") {
		return usage("--source-id %q ends in .opening, which names the opening balances of source %s: choose another id", id, strings.TrimSuffix(id, ".opening"))
	}
	return nil
}

func newBackfillCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Import ledger history from CSV, another PostgreSQL, an HTTP API or an SCB: resumable, checkpointed, verifiable, reversible",
		Long: `Import historical entries into the ledger through the posting function, in batches, each
committed together with its checkpoint (ledger_backfill_checkpoints), so that a run killed at any
instant resumes where it stopped with no gap and no duplicate. See docs/backfill.md and
docs/runbooks/failed-backfill.md.`,
		Args: cobra.NoArgs, // an unknown subcommand is a usage error, not the help and exit 0
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newBackfillRunCmd(a), newBackfillStatusCmd(a), newBackfillVerifyCmd(a), newBackfillRollbackCmd(a))
	return cmd
}

// backfillSourceFlags are the flags that name a source and how to read it (run and verify).
type backfillSourceFlags struct {
	sourceType, src, sourceID, ledgerID, mapping string
	apiTokenFile, scbConfig                      string
	cmd                                          *cobra.Command
}

func (f *backfillSourceFlags) bind(cmd *cobra.Command) {
	f.cmd = cmd
	fl := cmd.Flags()
	fl.StringVar(&f.sourceType, "source-type", "", "csv, database, api or scb")
	fl.StringVar(&f.src, "source", "", "csv: a file or - (stdin); database: a PostgreSQL connection string; api: the first page's URL; scb: the SCB's id (its URL and key from the SCB settings)")
	fl.StringVar(&f.sourceID, "source-id", "", "the import's id: its checkpoint, lock and error report (running again with it resumes)")
	fl.StringVar(&f.ledgerID, "ledger", "MASTER", "ledger of the rows that name none (default: the mapping's defaults.ledger_id, else MASTER)")
	fl.StringVar(&f.mapping, "mapping", "", "mapping file, YAML or JSON (columns, account and transaction type maps, defaults, formats; docs/backfill.md)")
	fl.StringVar(&f.apiTokenFile, "api-token-file", "", "api: a file holding the bearer token (else DUALLEDGER_BACKFILL_API_TOKEN; never on the command line)")
	fl.StringVar(&f.scbConfig, "scb-config", "", "scb: SCB config file (default DUALLEDGER_SCB_CONFIG); SCB_<ID>_API_URL / SCB_<ID>_API_KEY in the environment override it")
}

func (f *backfillSourceFlags) validate(a *app) (*transform.Mapping, error) {
	if !slices.Contains(backfill.SourceTypes, f.sourceType) {
		return nil, usage("--source-type must be one of %s, got %q", strings.Join(backfill.SourceTypes, ", "), f.sourceType)
	}
	if f.src == "" {
		return nil, usage("--source is required")
	}
	if err := checkSourceID(f.sourceID); err != nil {
		return nil, err
	}
	if f.sourceType == backfill.TypeCSV && f.src != "-" {
		if st, err := os.Stat(f.src); err != nil || st.IsDir() {
			return nil, usage("--source %s: not a readable file", f.src)
		}
	}
	if f.sourceType == backfill.TypeAPI {
		if err := source.CheckAPIURL(f.src); err != nil {
			return nil, usage("--source: %v", err)
		}
	}
	var m *transform.Mapping
	if f.mapping != "" {
		var err error
		if m, err = transform.LoadMapping(f.mapping); err != nil {
			return nil, usage("%v", err)
		}
		// The mapping's default ledger is the default of --ledger: a flag given on the command
		// line wins, the flag's own default (MASTER) does not.
		if m.Defaults.LedgerID != "" && !f.cmd.Flags().Changed("ledger") {
			f.ledgerID = m.Defaults.LedgerID
		}
	}
	return m, nil
}

// opener returns the source reader for the flags.
func (f *backfillSourceFlags) opener(a *app, m *transform.Mapping) (backfill.Opener, error) {
	var mm transform.Mapping
	if m != nil {
		mm = *m
	}
	switch f.sourceType {
	case backfill.TypeCSV:
		return func(_ context.Context, after string) (source.Reader, error) {
			return source.OpenCSV(f.src, os.Stdin, after, source.CSVOptions{Comma: transform.Rune(mm.CSV.Delimiter), Comment: transform.Rune(mm.CSV.Comment)})
		}, nil
	case backfill.TypeDatabase:
		o := source.DatabaseOptions{Table: mm.Database.Table, Query: mm.Database.Query, Key: mm.Database.Key}
		return func(ctx context.Context, after string) (source.Reader, error) {
			return source.OpenDatabase(ctx, f.src, o, after)
		}, nil
	case backfill.TypeAPI:
		token := a.getenv("DUALLEDGER_BACKFILL_API_TOKEN")
		if f.apiTokenFile != "" {
			b, err := os.ReadFile(f.apiTokenFile)
			if err != nil {
				return nil, usage("--api-token-file: %v", err)
			}
			token = strings.TrimSpace(string(b))
		}
		o := source.APIOptions{URL: f.src, Token: token, Items: mm.API.Items, Cursor: mm.API.Cursor, CursorParam: mm.API.CursorParam,
			LimitParam: mm.API.LimitParam, Limit: mm.API.Limit}
		return func(ctx context.Context, after string) (source.Reader, error) { return source.OpenAPI(ctx, o, after) }, nil
	case backfill.TypeSCB:
		path := f.scbConfig
		if path == "" {
			path = a.getenv("DUALLEDGER_SCB_CONFIG")
		}
		cfgs, err := scb.Load(a.environ, []string{f.src}, path)
		if err != nil {
			return nil, usage("SCB settings: %v", err)
		}
		c, ok := cfgs[f.src]
		if !ok {
			return nil, usage("no settings for SCB %s: set SCB_%s_API_URL and SCB_%s_API_KEY, or --scb-config", f.src, scb.EnvName(f.src), scb.EnvName(f.src))
		}
		// The SCB's list of its entries (GET /v1/entries?since=&limit=, docs/design.md §5).
		o := source.APIOptions{URL: strings.TrimRight(c.BaseURL, "/") + "/v1/entries", Token: c.APIKey, Items: "entries",
			Cursor: "next_since", CursorParam: "since", Limit: mm.API.Limit, Client: &http.Client{Timeout: c.RequestTimeout()}}
		return func(ctx context.Context, after string) (source.Reader, error) { return source.OpenAPI(ctx, o, after) }, nil
	}
	return nil, usage("unknown --source-type %s", f.sourceType)
}

func newBackfillRunCmd(a *app) *cobra.Command {
	var (
		sf             backfillSourceFlags
		cfg            backfill.Config
		workers        int
		opening        string
		openingAccount string
		dryRun         bool
		maxErrors      int64
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Import a source into the ledger (running it again resumes; a completed run posts nothing)",
		Long: `Read the source in order, transform and validate each row, and post batches through the ledger's
batch posting function. Each batch commits in one transaction with its checkpoint, its seq ranges
and the length of the error report, so a run killed at any instant (even with -9) resumes after
the last committed batch: no gap, no duplicate. Running the same command again resumes; on a
COMPLETED source it posts nothing and says so.

Rows that cannot be posted (bad amount, unknown currency or account, bad timestamp, a reference
already used with other content, a row that would overdraw, ...) are written to the error report
(JSON lines: position, raw row, code, message) and counted; the run goes on. A row whose
reference is already in the ledger with the same content is skipped (--skip-duplicates).

Only one process runs a source at a time (a database lock held by the connection: a killed run
never blocks the next). Ctrl-C or SIGTERM stops at the next batch boundary and records PAUSED.

The import runs with GOGC=400 (less CPU per row, a flat heap of about 80 MB) unless the
environment sets GOGC.

A CSV row is one line: a quoted cell may hold the delimiter and doubled quotes but no line
break, so that an unbalanced quote is the error of its own line and never swallows the rows
after it. A line that is not valid CSV or UTF-8, or is longer than 1 MiB, is a rejected row.

--opening-balances FILE (columns account_id and amount; currency_code and from_account_id
optional) is posted first, as the source <source-id>.opening: its rows default to the currency
of --opening-account, the whole file is checked before anything is posted, and the history
starts only when every opening balance has posted.

Exit status: 0 completed (rejected rows are in the report), 1 another run holds the source,
--max-errors exceeded, the balance audit failed, an opening balance was rejected, the error
report no longer matches the checkpoint, or paused by a signal; 2 usage; 3 database or source
failure (FAILED; run again to resume).`,
		Example: `  dualledger backfill run --source-type csv --source ledger_export.csv --source-id legacy-2025
  dualledger backfill run --source-type csv --source - --source-id legacy-2025 --errors legacy.errors.jsonl < export.csv
  dualledger backfill run --source-type database --source postgres://legacy@db/old --source-id legacy-db --mapping legacy.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := sf.validate(a)
			if err != nil {
				return err
			}
			if err := checkNewSourceID(sf.sourceID); err != nil {
				return err
			}
			switch {
			case cfg.BatchSize < 1 || cfg.BatchSize > 10000:
				return usage("--batch-size must be 1 to 10000")
			case cfg.CheckpointInterval < 1:
				return usage("--checkpoint-interval must be at least 1")
			case cfg.MaxRetries < 0:
				return usage("--max-retries must be 0 or more")
			case cfg.RetryDelay < 0:
				return usage("--retry-delay must not be negative")
			case workers < 1 || workers > 64:
				return usage("--workers must be 1 to 64")
			case cmd.Flags().Changed("max-errors") && maxErrors < 0:
				return usage("--max-errors must be 0 or more")
			}
			if opening != "" {
				if st, err := os.Stat(opening); err != nil || st.IsDir() {
					return usage("--opening-balances %s: not a readable file", opening)
				}
				if !sourceIDPattern.MatchString(sf.sourceID + ".opening") {
					return usage("--source-id is too long to name its opening balances (%s.opening)", sf.sourceID)
				}
			}
			cfg.MaxErrors = -1
			if cmd.Flags().Changed("max-errors") {
				cfg.MaxErrors = maxErrors
			}
			if cfg.ErrorsPath != "" {
				if cfg.ErrorsPath, err = filepath.Abs(cfg.ErrorsPath); err != nil {
					return usage("--errors: %v", err)
				}
			}
			cfg.SourceType, cfg.SourceID, cfg.Ledger = sf.sourceType, sf.sourceID, sf.ledgerID
			open, err := sf.opener(a, m)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, release, err := a.open(context.WithoutCancel(ctx), openOptions{maxConns: 4})
			if err != nil {
				return err
			}
			defer release()
			// A run-level ledger that does not exist would reject every row that names none, and
			// the run would end COMPLETED with nothing posted and its source id spent (review of
			// 2026-12-02). Checked when it was named (--ledger, the mapping's default); rows that
			// name their own ledgers are judged one by one.
			if cmd.Flags().Changed("ledger") || (m != nil && m.Defaults.LedgerID != "") {
				if _, err := ledger.GetLedger(ctx, pool, sf.ledgerID); ledger.CodeOf(err) == ledger.CodeUnknownLedger {
					return findings("ledger %s does not exist (dualledger ledgers create %s): nothing was read or posted", sf.ledgerID, sf.ledgerID)
				} else if err != nil {
					return infraErr(err)
				}
			}
			if dryRun {
				// A dry run writes a report of its own, from scratch: never the source's run report,
				// whose committed lines are the only record of the rows the runs rejected.
				if err := dryRunReport(ctx, pool, &cfg, sf); err != nil {
					return err
				}
			}
			if !dryRun {
				cp, err := backfill.GetCheckpoint(ctx, pool, sf.sourceType, sf.sourceID)
				if err != nil && !errors.Is(err, backfill.ErrNotFound) {
					return infraErr(err)
				}
				if cfg.ErrorsPath != "" && cp.ErrorsFile != nil && *cp.ErrorsFile != cfg.ErrorsPath && cp.Status != backfill.StatusCompleted {
					return usage("--errors %s differs from this source's error report %s: resume with the same report (or leave --errors out)", cfg.ErrorsPath, *cp.ErrorsFile)
				}
				if err == nil && cp.Status != backfill.StatusCompleted {
					if err := sameInput(cp, sf); err != nil {
						return err
					}
				}
				if cfg.ErrorsPath == "" && cp.ErrorsFile == nil {
					if cfg.ErrorsPath, err = filepath.Abs(defaultReportName(sf.sourceType, sf.sourceID, "")); err != nil {
						return err
					}
				}
				if err := ownReport(ctx, pool, cfg.ErrorsPath, sf.sourceType, sf.sourceID); err != nil {
					return err
				}
			}
			cfg.Metadata = map[string]any{"source": describeSource(sf), "mapping": sf.mapping, "mapping_sha256": mappingDigest(sf.mapping)}
			cfg.Logger = a.logger
			cfg.Workers = workers
			cfg.Progress = newBackfillProgress(a)
			tr := transform.New(m, sf.sourceType, sf.sourceID, sf.ledgerID)
			if dryRun {
				if opening != "" {
					// The opening balances are checked first, as the run checks them (their own
					// report, .opening.dry-run.jsonl); the history's references are not compared
					// with theirs (docs/backfill.md, "Dry run").
					if _, err := runOpeningBalances(a, ctx, pool, m, opening, openingAccount, sf, cfg, true); err != nil {
						return err
					}
				}
				return backfillDryRun(a, ctx, pool, open, tr, cfg)
			}
			if opening != "" {
				done, err := runOpeningBalances(a, ctx, pool, m, opening, openingAccount, sf, cfg, false)
				if err != nil || !done {
					return err
				}
			}
			return backfillRun(a, ctx, pool, open, tr, cfg)
		},
	}
	sf.bind(cmd)
	fl := cmd.Flags()
	fl.IntVar(&cfg.BatchSize, "batch-size", 1000, "rows per batch: one transaction with its checkpoint")
	fl.IntVar(&cfg.CheckpointInterval, "checkpoint-interval", 10, "batches between audits of the touched accounts (--validate-balances) and progress lines; the checkpoint itself commits with every batch")
	fl.IntVar(&cfg.MaxRetries, "max-retries", 3, "retries of a batch after a transient database error")
	fl.DurationVar(&cfg.RetryDelay, "retry-delay", time.Second, "first retry delay (doubles each retry)")
	fl.IntVar(&workers, "workers", 1, "parallel transform of a batch's rows; posting stays in source order, batches committing one after the other")
	fl.BoolVar(&cfg.SkipDuplicates, "skip-duplicates", true, "a row whose reference is already in the ledger with the same content is skipped (false: it is rejected)")
	fl.BoolVar(&cfg.ValidateBalances, "validate-balances", true, "audit the touched accounts (balance = Σ credits − Σ debits) every --checkpoint-interval batches and at the end")
	fl.StringVar(&cfg.ErrorsPath, "errors", "", "error report, JSON lines, appended across runs (default backfill-<type>-<id>.errors.jsonl, then the checkpoint's)")
	fl.Int64Var(&maxErrors, "max-errors", 0, "fail the run (exit 1, FAILED) once more rows of the source were rejected than this; no limit unless given")
	fl.StringVar(&opening, "opening-balances", "", "CSV of opening balances (account_id, amount) posted first from the opening-balance account")
	fl.StringVar(&openingAccount, "opening-account", "opening-balance", "the account opening balances come from (unlimited overdraft); a from_account_id column overrides it per row")
	fl.BoolVar(&dryRun, "dry-run", false, "transform and validate every row, check ledger, accounts and references, post nothing (exit 1 when rows would be rejected)")
	return cmd
}

// ownReport refuses a report that another source's checkpoint names (each source cuts its own
// uncommitted tail on resume, and would cut the other's lines).
func ownReport(ctx context.Context, pool *pgxpool.Pool, path, sourceType, sourceID string) error {
	if path == "" {
		return nil
	}
	owner, err := backfill.ReportOwner(ctx, pool, path, sourceType, sourceID)
	if err != nil {
		return infraErr(err)
	}
	if owner != "" {
		return usage("--errors %s is the error report of source %s: every source needs a report of its own", path, owner)
	}
	return nil
}

// dryRunReport sets the dry run's report path (default backfill-<type>-<id>.dry-run.errors.jsonl)
// and refuses the source's run report, which a dry run would truncate.
func dryRunReport(ctx context.Context, pool *pgxpool.Pool, cfg *backfill.Config, sf backfillSourceFlags) error {
	if cfg.ErrorsPath == "" {
		cfg.ErrorsPath, _ = filepath.Abs(defaultReportName(sf.sourceType, sf.sourceID, ".dry-run"))
		return nil
	}
	runReport, _ := filepath.Abs(defaultReportName(sf.sourceType, sf.sourceID, ""))
	cp, err := backfill.GetCheckpoint(ctx, pool, sf.sourceType, sf.sourceID)
	switch {
	case err != nil && !errors.Is(err, backfill.ErrNotFound):
		return infraErr(err)
	case err == nil && cp.ErrorsFile != nil:
		runReport = *cp.ErrorsFile
	}
	if cfg.ErrorsPath == runReport {
		return usage("--errors %s is this source's run report, which a dry run would overwrite: leave --errors out (the dry run writes %s) or name another file",
			cfg.ErrorsPath, defaultReportName(sf.sourceType, sf.sourceID, ".dry-run"))
	}
	return ownReport(ctx, pool, cfg.ErrorsPath, "", "")
}

// infraErr is exit 3; a refused privilege says who may run the command.
func infraErr(err error) error {
	if isPermissionDenied(err) {
		err = fmt.Errorf("%w: backfill run and rollback are an operator's commands and run as the schema owner's login (docs/security.md, docs/backfill.md), not as a service role", err)
	}
	return &exitError{code: exitInfra, err: err}
}

func isPermissionDenied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}

// defaultReportName is a source's report file in the working directory. The characters of a
// source id that a file name should not hold are percent-encoded, never replaced by one that an
// id may hold itself: with '/' made '_', sources a/b and a_b had one report, and the second was
// refused.
func defaultReportName(sourceType, sourceID, suffix string) string {
	return fmt.Sprintf("backfill-%s-%s%s.errors.jsonl", sourceType, strings.NewReplacer("/", "%2F", ":", "%3A", "@", "%40").Replace(sourceID), suffix)
}

// importGCPercent is the garbage collector's target for an import (GOGC, when the environment
// does not set it): the importer's live heap is a few batches, small and flat, while every row
// allocates; at the default 100 the collector took a sixth of the importer's CPU, which it shares
// with the posting backends on the same machine. At 400 the heap peaks a few times higher and
// stays flat (docs/backfill.md, "Memory and CPU").
const importGCPercent = 400

// backfillRun runs one source and maps the outcome to output and exit status.
func backfillRun(a *app, ctx context.Context, pool *pgxpool.Pool, open backfill.Opener, tr *transform.Transformer, cfg backfill.Config) error {
	if a.getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(importGCPercent))
	}
	out, err := runSource(a, ctx, pool, open, tr, cfg)
	if err != nil {
		return err
	}
	return outcomeStatus(out, cfg)
}

func runSource(a *app, ctx context.Context, pool *pgxpool.Pool, open backfill.Opener, tr *transform.Transformer, cfg backfill.Config) (backfill.Outcome, error) {
	out, err := backfill.Run(ctx, pool, open, tr, cfg)
	endProgress(a)
	if err != nil {
		switch {
		case errors.Is(err, backfill.ErrLocked), errors.Is(err, backfill.ErrRolledBack), errors.Is(err, source.ErrBadPosition),
			errors.Is(err, backfill.ErrReportChanged):
			return out, findings("%v", err)
		case errors.Is(err, source.ErrUnusable):
			// Running again meets the same problem: the source must change first.
			return out, findings("%v (status FAILED; fix the source, then run the same command again)", err)
		case isPermissionDenied(err):
			return out, infraErr(err)
		}
		return out, &exitError{code: exitInfra, err: fmt.Errorf("%w (status FAILED; run the same command again to resume)", err)}
	}
	if a.jsonOut {
		if err := a.printJSON(out); err != nil {
			return out, err
		}
	} else {
		printRunOutcome(a, out)
	}
	return out, nil
}

func outcomeStatus(out backfill.Outcome, cfg backfill.Config) error {
	switch {
	case out.MaxErrorsExceeded:
		return findings("more than --max-errors %d rows rejected: see %s", cfg.MaxErrors, out.ErrorsFile)
	case len(out.BalanceProblems) > 0:
		return findings("the balance audit of the touched accounts failed: %s", strings.Join(out.BalanceProblems, "; "))
	case out.Paused:
		return findings("paused at position %s: run the same command to resume", deref(out.Checkpoint.LastProcessedID))
	}
	return nil
}

// openingAccountOf says whether a source is the opening balances of a run, and from which
// account they were posted (recorded in its checkpoint's metadata).
func openingAccountOf(ctx context.Context, pool *pgxpool.Pool, sourceType, sourceID string) (string, bool, error) {
	cp, err := backfill.GetCheckpoint(ctx, pool, sourceType, sourceID)
	if errors.Is(err, backfill.ErrNotFound) {
		return "", false, nil // Verify says so
	}
	if err != nil {
		return "", false, infraErr(err)
	}
	var meta struct {
		Of   string `json:"opening_balances_of"`
		From string `json:"opening_account"`
	}
	_ = json.Unmarshal(cp.Metadata, &meta)
	switch {
	case meta.Of == "":
		return "", false, nil
	case meta.From == "":
		return "", false, findings("source %s/%s holds the opening balances of %s, posted by a version that did not record their account: verify it without --source (the ledger's side), or verify %s", sourceType, sourceID, meta.Of, meta.Of)
	}
	return meta.From, true, nil
}

// openingOpener reads an opening balances file (csv, or "-" for standard input).
func openingOpener(path string) backfill.Opener {
	return func(_ context.Context, after string) (source.Reader, error) {
		return source.OpenCSV(path, os.Stdin, after, source.CSVOptions{})
	}
}

// openingMapping is the mapping of an opening balances file: account_id (credited) and amount,
// from the opening-balance account `from`, with the run's mapping's defaults, amount and
// timestamp formats and accounts map. A file of account_id and amount (the documented form)
// names no currency: without a column or a mapping default, a row takes the currency and asset
// type of the account the balances come from, the only ones its entry could have.
func openingMapping(ctx context.Context, pool *pgxpool.Pool, m *transform.Mapping, from, ledgerID string) (transform.Mapping, error) {
	om := transform.Mapping{Unmapped: "metadata"}
	if m != nil {
		om.Defaults, om.Amount, om.Timestamp, om.Accounts, om.AccountsStrict = m.Defaults, m.Amount, m.Timestamp, m.Accounts, m.AccountsStrict
	}
	om.Columns = map[string]string{transform.FieldCreditAccountID: "account_id", transform.FieldDebitAccountID: "from_account_id"}
	om.Defaults.DebitAccountID, om.Defaults.CreditAccountID = from, ""
	om.Defaults.TransactionType = "opening_balance"
	if om.Defaults.CurrencyCode == "" || om.Defaults.AssetType == "" {
		if mapped, ok := om.Accounts[from]; ok {
			from = mapped // as the rows will name it
		}
		acc, err := ledger.GetAccount(ctx, pool, ledgerID, from)
		switch {
		case err == nil:
			om.Defaults.CurrencyCode = cmp.Or(om.Defaults.CurrencyCode, acc.CurrencyCode)
			om.Defaults.AssetType = cmp.Or(om.Defaults.AssetType, acc.AssetType)
		case ledger.CodeOf(err) == ledger.CodeUnknownAccount, ledger.CodeOf(err) == ledger.CodeUnknownLedger:
			return om, findings("--opening-account %s: %v", from, err)
		default:
			return om, infraErr(err)
		}
	}
	return om, nil
}

// runOpeningBalances posts the opening balances file first, as a source of its own
// (<source-id>.opening, csv): each row moves amount from the opening-balance account to
// account_id. It returns whether it completed (else the main run must not start).
func runOpeningBalances(a *app, ctx context.Context, pool *pgxpool.Pool, m *transform.Mapping, path, from string, sf backfillSourceFlags, cfg backfill.Config, dryOnly bool) (bool, error) {
	ocfg := cfg
	ocfg.SourceType, ocfg.SourceID = backfill.TypeCSV, sf.sourceID+".opening"
	if cfg.ErrorsPath != "" {
		ocfg.ErrorsPath = strings.TrimSuffix(cfg.ErrorsPath, ".jsonl") + ".opening.jsonl"
	}
	cp, err := backfill.GetCheckpoint(ctx, pool, ocfg.SourceType, ocfg.SourceID)
	switch {
	case err != nil && !errors.Is(err, backfill.ErrNotFound):
		return false, infraErr(err)
	case err == nil && cp.ErrorsFile != nil:
		ocfg.ErrorsPath = *cp.ErrorsFile
	case ocfg.ErrorsPath == "":
		if ocfg.ErrorsPath, err = filepath.Abs(defaultReportName(ocfg.SourceType, ocfg.SourceID, "")); err != nil {
			return false, err
		}
	}
	osf := backfillSourceFlags{sourceType: backfill.TypeCSV, src: path}
	ocfg.Metadata = map[string]any{"source": describeSource(osf), "opening_balances_of": sf.sourceType + "/" + sf.sourceID, "opening_account": from}
	if err == nil && cp.Status != backfill.StatusCompleted {
		// Resumed, the opening balances must be the same file from the same account, as the
		// history's own input must (sameInput).
		var rec struct {
			Source  *string `json:"source"`
			Account *string `json:"opening_account"`
		}
		_ = json.Unmarshal(cp.Metadata, &rec)
		switch {
		case rec.Source != nil && *rec.Source != describeSource(osf) && !sameFile(osf, *rec.Source):
			return false, usage("--opening-balances differs from what %s was started with (%s, now %s): resume with the same file", ocfg.SourceID, *rec.Source, describeSource(osf))
		case rec.Account != nil && *rec.Account != from:
			return false, usage("--opening-account differs from what %s was started with (%s, now %s): resume with the same account", ocfg.SourceID, *rec.Account, from)
		}
	}
	open := openingOpener(path)
	if err := ownReport(ctx, pool, ocfg.ErrorsPath, ocfg.SourceType, ocfg.SourceID); err != nil {
		return false, err
	}
	om, err := openingMapping(ctx, pool, m, from, sf.ledgerID)
	if err != nil {
		return false, err
	}
	tr := transform.New(&om, ocfg.SourceType, ocfg.SourceID, sf.ledgerID)
	if !a.jsonOut {
		fmt.Fprintf(a.out, "opening balances (%s):\n", ocfg.SourceID)
	}
	// History posted on top of a missing opening balance would be rejected row after row (or
	// pass on a wrong balance): every opening balance must post. The file is checked whole
	// first, as a dry run does, and nothing is posted if a row would be rejected.
	if cp.Status != backfill.StatusCompleted {
		dcfg := ocfg
		dcfg.ErrorsPath = strings.TrimSuffix(ocfg.ErrorsPath, ".jsonl") + ".dry-run.jsonl" // next to the run's report
		dout, err := backfill.DryRun(ctx, pool, open, tr, dcfg)
		switch {
		case ctx.Err() != nil:
			return false, findings("stopped by a signal while checking the opening balances: nothing was posted; run the same command again")
		case errors.Is(err, source.ErrUnusable):
			return false, findings("the opening balances %s: %v", path, err)
		case err != nil:
			return false, &exitError{code: exitInfra, err: err}
		}
		if dout.Rejected > 0 {
			return false, findings("%d of the %d opening balances would be rejected (see %s): nothing was posted, and the history was not started; correct the file and run the same command again",
				dout.Rejected, dout.Rows, dout.ErrorsFile)
		}
		if err := openingDuplicates(ctx, open, tr, path); err != nil {
			return false, err
		}
		if dryOnly {
			if !a.jsonOut {
				fmt.Fprintf(a.out, "dry run of the opening balances: %d rows, all would post (%s)\n", dout.Rows, dout.ErrorsFile)
			}
			return false, nil
		}
	}
	if dryOnly {
		if !a.jsonOut {
			fmt.Fprintf(a.out, "the opening balances (%s) are posted already\n", ocfg.SourceID)
		}
		return false, nil
	}
	out, err := runSource(a, ctx, pool, open, tr, ocfg)
	if err != nil {
		return false, err
	}
	if err := outcomeStatus(out, ocfg); err != nil {
		return false, err
	}
	if n := out.Checkpoint.TotalFailed; n > 0 {
		return false, findings("%d opening balances were rejected (see %s): the history was not started, since it would be posted on wrong balances; post the missing balances, then run the same command without --opening-balances",
			n, out.ErrorsFile)
	}
	return true, nil
}

// openingDuplicates refuses an opening balances file that names an account twice (in one ledger
// and currency): an account has one opening balance, and a second row (a file concatenated
// twice, an export with a duplicate) would add to the first, and the history would then be
// posted on a balance that is off (review of 2026-12-02). Rows the transform rejects are the dry
// run's to report; this runs after it found none.
func openingDuplicates(ctx context.Context, open backfill.Opener, tr *transform.Transformer, path string) error {
	r, err := open(ctx, "")
	if err != nil {
		return findings("the opening balances %s: %v", path, err)
	}
	defer func() { _ = r.Close() }()
	seen := map[[3]string]int64{}
	for {
		rec, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return findings("the opening balances %s: %v", path, err)
		}
		row, rej := tr.Transform(rec)
		if rej != nil {
			continue
		}
		k := [3]string{row.LedgerID, row.Entry.CreditAccountID, row.Entry.CurrencyCode}
		if first, ok := seen[k]; ok {
			return findings("the opening balances %s name account %s (%s, ledger %s) twice, on lines %d and %d: an account has one opening balance; nothing was posted, and the history was not started",
				path, k[1], k[2], k[0], first, rec.Line)
		}
		seen[k] = rec.Line
	}
}

// backfillDryRun validates a source without posting.
func backfillDryRun(a *app, ctx context.Context, pool *pgxpool.Pool, open backfill.Opener, tr *transform.Transformer, cfg backfill.Config) error {
	out, err := backfill.DryRun(ctx, pool, open, tr, cfg)
	endProgress(a)
	if errors.Is(err, source.ErrUnusable) {
		return findings("%v", err)
	}
	if err != nil {
		return &exitError{code: exitInfra, err: err}
	}
	if a.jsonOut {
		if err := a.printJSON(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.out, "dry run: %d rows, %d valid (%d of them duplicates, of an entry of the ledger or of an earlier row, that the run would skip), %d would be rejected (%s); nothing posted\n",
			out.Rows, out.Valid, out.Existing, out.Rejected, out.ErrorsFile)
		fmt.Fprintln(a.out, "funds are not checked by a dry run: a row that would overdraw is found only by the run, in order")
	}
	if out.Rejected > 0 {
		return findings("%d rows would be rejected: see %s", out.Rejected, out.ErrorsFile)
	}
	return nil
}

// sameInput refuses to resume a source with another ledger, source or mapping than its
// checkpoint recorded: the checkpoint's position counts rows of that input, and the rows of another
// one (a re-export with a row added, another mapping) would be skipped or posted twice.
func sameInput(cp backfill.Checkpoint, sf backfillSourceFlags) error {
	var rec struct {
		Source        *string `json:"source"`
		MappingSHA256 *string `json:"mapping_sha256"`
	}
	_ = json.Unmarshal(cp.Metadata, &rec)
	differs := func(what, was, now string) error {
		return usage("%s differs from what source %s/%s was started with (%s, now %s): resume with the same input, "+
			"or import this one under a new --source-id (docs/runbooks/failed-backfill.md)", what, cp.SourceType, cp.SourceID, was, now)
	}
	switch {
	case cp.LedgerID != sf.ledgerID:
		return differs("--ledger", cp.LedgerID, sf.ledgerID)
	case rec.Source != nil && *rec.Source != describeSource(sf) && !sameFile(sf, *rec.Source) &&
		// recorded before the query's digest was (an API source resumed across the upgrade)
		!(sf.sourceType == backfill.TypeAPI && !strings.Contains(*rec.Source, " (query sha256 ") && strings.HasPrefix(describeSource(sf), *rec.Source+" (")):
		return differs("--source", *rec.Source, describeSource(sf))
	case rec.MappingSHA256 != nil && *rec.MappingSHA256 != mappingDigest(sf.mapping):
		return differs("the mapping", "sha256 "+*rec.MappingSHA256, "sha256 "+mappingDigest(sf.mapping))
	}
	return nil
}

// mappingDigest is the sha256 of the mapping file's content ("" without one; "unreadable" when
// it cannot be read, which loading the mapping reports on its own).
func mappingDigest(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func describeSource(sf backfillSourceFlags) string {
	switch sf.sourceType {
	case backfill.TypeDatabase:
		return "(connection string not recorded)"
	case backfill.TypeAPI:
		// Neither user information nor the query (either may hold a credential) is recorded;
		// the query's digest is, so that a resume with another query (another listing) is
		// refused like any other input.
		if u, err := url.Parse(sf.src); err == nil {
			d := u.Scheme + "://" + u.Host + u.Path
			if u.RawQuery != "" {
				sum := sha256.Sum256([]byte(u.RawQuery))
				d += " (query sha256 " + hex.EncodeToString(sum[:8]) + ")"
			}
			return d
		}
		return "(unparsable URL not recorded)"
	case backfill.TypeCSV:
		if sf.src != "-" {
			if abs, err := filepath.Abs(sf.src); err == nil {
				return abs // the same file named from another directory is the same source
			}
		}
	}
	return sf.src
}

// sameFile says whether a CSV source names the file recorded (by another path: relative where
// it was recorded absolute, a link).
func sameFile(sf backfillSourceFlags, recorded string) bool {
	if sf.sourceType != backfill.TypeCSV || sf.src == "-" || recorded == "-" {
		return false
	}
	a, err1 := os.Stat(sf.src)
	b, err2 := os.Stat(recorded)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

func printRunOutcome(a *app, out backfill.Outcome) {
	cp := out.Checkpoint
	if out.AlreadyCompleted {
		fmt.Fprintf(a.out, "backfill %s/%s is already COMPLETED (%s): nothing posted\n", cp.SourceType, cp.SourceID, cp.CompletedAt.Format(time.RFC3339))
	}
	t := out.ThisRun
	fmt.Fprintf(a.out, "this run: %d rows, %d created, %d skipped (already in the ledger), %d rejected, %d batches\n",
		t.Processed, t.Successful, t.Skipped, t.Failed, t.Batches)
	if t.Batches > 0 {
		r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		fmt.Fprintf(a.out, "time: read %s, transform %s, post %s, report+checkpoint+commit %s, audit %s\n",
			r(t.Time.Read), r(t.Time.Transform), r(t.Time.Post), r(t.Time.Checkpoint), r(t.Time.Audit))
	}
	fmt.Fprintf(a.out, "source %s/%s: %s, %d rows, %d created, %d skipped, %d rejected, last position %s, run %d\n",
		cp.SourceType, cp.SourceID, cp.Status, cp.TotalProcessed, cp.TotalSuccessful, cp.TotalSkipped, cp.TotalFailed, deref(cp.LastProcessedID), cp.Runs)
	if cp.TotalFailed > 0 {
		fmt.Fprintf(a.out, "rejected rows: %s\n", out.ErrorsFile)
	}
}

// newBackfillProgress returns the progress callback: a bar on a terminal, a line every 5 s
// otherwise (nil with --json, which keeps stderr for errors only... and logs).
func newBackfillProgress(a *app) func(backfill.Stats) {
	tty := false
	if f, ok := a.errOut.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	start := time.Now()
	var last time.Time
	every := 5 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	return func(s backfill.Stats) {
		now := time.Now()
		done0 := s.DoneAtStart // a resumed run starts mid-source
		if now.Sub(last) < every {
			return
		}
		last = now
		el := now.Sub(start).Seconds()
		rate := float64(s.Processed) / max(el, 1e-9)
		eta := "?"
		pct := -1.0
		if s.Total > 0 && s.Done > 0 {
			pct = 100 * float64(s.Done) / float64(s.Total)
		}
		if s.Total > 0 && s.Processed > 0 && s.Done > done0 {
			perSec := float64(s.Done-done0) / max(el, 1e-9)
			eta = time.Duration(float64(s.Total-s.Done) / perSec * float64(time.Second)).Round(time.Second).String()
		}
		if tty {
			bar := strings.Repeat(" ", 30)
			if pct >= 0 {
				n := int(pct * 30 / 100)
				bar = strings.Repeat("#", n) + strings.Repeat(".", 30-n)
			}
			fmt.Fprintf(a.errOut, "\r[%s] %5.1f%% %d rows (%d created, %d skipped, %d rejected) %.0f rows/s ETA %s   ",
				bar, max(pct, 0), s.Processed, s.Successful, s.Skipped, s.Failed, rate, eta)
			return
		}
		fmt.Fprintf(a.errOut, "backfill: %d rows (%d created, %d skipped, %d rejected), position %s, %.0f rows/s, %s, ETA %s\n",
			s.Processed, s.Successful, s.Skipped, s.Failed, s.Position, rate, pctText(pct), eta)
	}
}

func pctText(p float64) string {
	if p < 0 {
		return "total unknown"
	}
	return fmt.Sprintf("%.1f%%", p)
}

func endProgress(a *app) {
	if f, ok := a.errOut.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintln(a.errOut)
		}
	}
}

func newBackfillStatusCmd(a *app) *cobra.Command {
	var stalled time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List every source's checkpoint: status, totals, position, age of the last checkpoint, whether a process runs it",
		Long: `List the rows of ledger_backfill_checkpoints, newest first. "live" says whether a process holds
the source's lock now. A run is stalled when it is IN_PROGRESS and no process holds it (it was
killed: run it again to resume) or its last checkpoint is older than --stalled (it hangs).
Exit status 1 when a run is stalled or FAILED.`,
		Example: `  dualledger backfill status
  dualledger backfill status --stalled 10m --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stalled <= 0 {
				return usage("--stalled must be positive")
			}
			ctx := cmd.Context()
			pool, release, err := a.open(ctx, openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			cps, err := backfill.ListCheckpoints(ctx, pool)
			if err != nil {
				return infraErr(err)
			}
			type row struct {
				backfill.Checkpoint
				Stalled bool `json:"stalled"`
			}
			var rows []row
			bad := 0
			for _, c := range cps {
				st := c.Status == backfill.StatusInProgress && (!c.Live || time.Since(c.LastCheckpointAt) > stalled)
				if st || c.Status == backfill.StatusFailed {
					bad++
				}
				rows = append(rows, row{c, st})
			}
			if a.jsonOut {
				if rows == nil {
					rows = []row{}
				}
				if err := a.printJSON(map[string]any{"backfills": rows}); err != nil {
					return err
				}
			} else if len(rows) == 0 {
				fmt.Fprintln(a.out, "no backfills")
			} else {
				tw := tabwriter.NewWriter(a.out, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SOURCE\tSTATUS\tLIVE\tPROCESSED\tCREATED\tSKIPPED\tREJECTED\tPOSITION\tLAST CHECKPOINT\tROLLBACK")
				for _, r := range rows {
					status := r.Status
					if r.Stalled {
						status += " (stalled)"
					}
					fmt.Fprintf(tw, "%s/%s\t%s\t%v\t%d\t%d\t%d\t%d\t%s\t%s ago\t%s\n", r.SourceType, r.SourceID, status, r.Live,
						r.TotalProcessed, r.TotalSuccessful, r.TotalSkipped, r.TotalFailed, deref(r.LastProcessedID),
						time.Since(r.LastCheckpointAt).Round(time.Second), deref(r.RollbackStatus))
				}
				tw.Flush()
				for _, r := range rows {
					if r.ErrorMessage != nil && (r.Status == backfill.StatusFailed || r.Status == backfill.StatusPaused) {
						fmt.Fprintf(a.out, "%s/%s: %s\n", r.SourceType, r.SourceID, *r.ErrorMessage)
					}
				}
			}
			if bad > 0 {
				return findings("%d backfill(s) stalled or FAILED (docs/runbooks/failed-backfill.md)", bad)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&stalled, "stalled", time.Hour, "an IN_PROGRESS run whose last checkpoint is older than this is stalled")
	return cmd
}

func newBackfillVerifyCmd(a *app) *cobra.Command {
	var sf backfillSourceFlags
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify a source's import: source rows against the ledger and the report, balances, outbox coverage (exit 1 on findings)",
		Long: `Check one source's import (the seed's verification step):

  - every row the run read is in the ledger (created or skipped) or in the error report, and the
    counts agree with the checkpoint (with --source: the source is read again, with the same
    --mapping and --ledger as the run; without it, only the database side is checked);
  - a row in the ledger is the entry of its reference (accounts, amount, currency, asset type,
    transaction type, fx rate, metadata, timestamp), and the rows read again are the rows the
    run read (a CSV's fingerprint);
  - the run's entries (its recorded seq ranges) are all there;
  - the balance of every account the run touched equals Σ credits − Σ debits of its entries;
  - every entry of the run that concerns a member bank has its outbox row for that bank;
  - after a completed rollback, every entry of the run is fully reversed.

Exit status 1 when anything is found.`,
		Example: `  dualledger backfill verify --source-id legacy-2025 --source-type csv --source ledger_export.csv
  dualledger backfill verify --source-id legacy-2025 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkSourceID(sf.sourceID); err != nil {
				return err
			}
			ctx := cmd.Context()
			var open backfill.Opener
			var tr *transform.Transformer
			var m *transform.Mapping
			if sf.src != "" {
				var err error
				if m, err = sf.validate(a); err != nil {
					return err
				}
				if open, err = sf.opener(a, m); err != nil {
					return err
				}
			}
			pool, release, err := a.open(ctx, openOptions{maxConns: 2})
			if err != nil {
				return err
			}
			defer release()
			if sf.sourceType == "" {
				t, err := onlySourceType(ctx, pool, sf.sourceID)
				if err != nil {
					return err
				}
				sf.sourceType = t
			}
			if sf.src != "" {
				// The source is read again into the ledger the run posted to, which its checkpoint
				// records: a --ledger left out means that one (not MASTER: every row would read as
				// missing), and another one is refused as a resume would refuse it.
				cp, err := backfill.GetCheckpoint(ctx, pool, sf.sourceType, sf.sourceID)
				switch {
				case errors.Is(err, backfill.ErrNotFound):
					return findings("%v", err)
				case err != nil:
					return infraErr(err)
				case !sf.cmd.Flags().Changed("ledger"):
					sf.ledgerID = cp.LedgerID
				case cp.LedgerID != sf.ledgerID:
					return usage("--ledger differs from what source %s/%s was imported into (%s, now %s): verify with --ledger %s, or leave it out",
						cp.SourceType, cp.SourceID, cp.LedgerID, sf.ledgerID, cp.LedgerID)
				}
				tr = transform.New(m, sf.sourceType, sf.sourceID, sf.ledgerID)
				// The opening balances of a run (<source-id>.opening) are a file of their own form:
				// read it again as the run read it.
				if from, ok, err := openingAccountOf(ctx, pool, sf.sourceType, sf.sourceID); err != nil {
					return err
				} else if ok {
					om, err := openingMapping(ctx, pool, m, from, sf.ledgerID)
					if err != nil {
						return err
					}
					open, tr = openingOpener(sf.src), transform.New(&om, sf.sourceType, sf.sourceID, sf.ledgerID)
				}
			}
			v, err := backfill.Verify(ctx, pool, sf.sourceType, sf.sourceID, open, tr)
			if err != nil {
				if errors.Is(err, backfill.ErrNotFound) {
					return findings("%v", err)
				}
				return infraErr(err)
			}
			if a.jsonOut {
				if err := a.printJSON(map[string]any{"ok": v.OK(), "verification": v}); err != nil {
					return err
				}
			} else {
				cp := v.Checkpoint
				fmt.Fprintf(a.out, "source %s/%s: %s, %d rows read, %d created, %d skipped, %d rejected\n", cp.SourceType, cp.SourceID, cp.Status,
					cp.TotalProcessed, cp.TotalSuccessful, cp.TotalSkipped, cp.TotalFailed)
				if open != nil {
					fmt.Fprintf(a.out, "source read again: %d rows, %d in the ledger, %d in the error report, %d missing, %d different from their entry\n", v.SourceRows, v.InLedger, v.Rejected, v.MissingCount, v.DifferentCount)
				} else {
					fmt.Fprintln(a.out, "source not read again (give --source-type and --source to compare it with the ledger)")
				}
				fmt.Fprintf(a.out, "entries in the run's ranges: %d; touched accounts: %d, %d balance problem(s); outbox rows: %d, %d missing\n",
					v.EntriesInRanges, v.TouchedAccounts, len(v.BalanceProblems), v.OutboxRows, len(v.OutboxMissing))
				if cp.RollbackStatus != nil {
					fmt.Fprintf(a.out, "rollback %s: %d reversed, %d not fully reversed\n", *cp.RollbackStatus, cp.TotalReversed, v.NotReversed)
				}
				for _, p := range v.Problems {
					fmt.Fprintf(a.out, "PROBLEM: %s\n", p)
				}
				if v.OK() {
					fmt.Fprintln(a.out, "verified: no problem found")
				}
			}
			if !v.OK() {
				return findings("%d problem(s) found in backfill %s/%s", len(v.Problems), sf.sourceType, sf.sourceID)
			}
			return nil
		},
	}
	sf.bind(cmd)
	return cmd
}

// onlySourceType finds the source type of a source id when one type has it.
func onlySourceType(ctx context.Context, pool interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, id string) (string, error) {
	rows, err := pool.Query(ctx, `SELECT source_type FROM ledger_backfill_checkpoints WHERE source_id = $1 ORDER BY 1`, id)
	if err != nil {
		return "", &exitError{code: exitInfra, err: err}
	}
	types, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", &exitError{code: exitInfra, err: err}
	}
	switch len(types) {
	case 0:
		return "", findings("no backfill with --source-id %s", id)
	case 1:
		return types[0], nil
	}
	return "", usage("--source-id %s exists for source types %s: give --source-type", id, strings.Join(types, ", "))
}

func newBackfillRollbackCmd(a *app) *cobra.Command {
	var (
		sourceID, sourceType, reason string
		batchSize                    int
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Reverse every entry a source's run created, newest first (resumable, idempotent, in the operator log)",
		Long: `Post a reversal of every entry the source's run created (its recorded seq ranges), newest first,
in batches: debit and credit swapped, reverses_entry_id naming the entry, reference
backfill-reversal:seq-<seq>. Nothing is deleted (the ledger forbids it): balances return to what
they were before the run, the hash chain stays valid, and reversals of entries that concern a
member bank get outbox rows like any posting. Entries the run found already in the ledger
(skipped duplicates) are not touched.

It is resumable and idempotent: interrupted, run it again; reversals already made answer
replayed. Each start is recorded in the operator log (backfill.rollback, with --reason). A
rolled-back source cannot run again: import corrected data under a new --source-id.

A reversal is refused (exit 1, rollback FAILED) when live postings have since spent the imported
money (insufficient_funds): a decision for the ledger's owner, not something to force.`,
		Example: `  dualledger backfill rollback --source-id legacy-2025 --reason "wrong export, ticket 4711"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkSourceID(sourceID); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usage("--reason is required: say why the import is reversed (it goes into the operator log)")
			}
			if batchSize < 1 || batchSize > 10000 {
				return usage("--batch-size must be 1 to 10000")
			}
			ctx := cmd.Context()
			pool, release, err := a.open(context.WithoutCancel(ctx), openOptions{maxConns: 4})
			if err != nil {
				return err
			}
			defer release()
			if sourceType == "" {
				if sourceType, err = onlySourceType(ctx, pool, sourceID); err != nil {
					return err
				}
			}
			out, err := backfill.Rollback(ctx, pool, sourceType, sourceID, a.cliActor(), reason, batchSize, a.logger)
			if err != nil {
				switch {
				case errors.Is(err, backfill.ErrNotFound), errors.Is(err, backfill.ErrLocked):
					return findings("%v", err)
				case isPermissionDenied(err):
					return infraErr(err)
				}
				return rejection(err)
			}
			if a.jsonOut {
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.out, "rollback of %s/%s: %s, %d reversed now, %d already reversed, %d refused\n", sourceType, sourceID,
					deref(out.Checkpoint.RollbackStatus), out.Reversed, out.Replayed, len(out.Rejected))
				for _, r := range out.Rejected {
					fmt.Fprintf(a.out, "refused: %s\n", r)
				}
			}
			if len(out.Rejected) > 0 {
				return findings("%d reversal(s) refused; see docs/runbooks/failed-backfill.md", len(out.Rejected))
			}
			if ctx.Err() != nil {
				return findings("interrupted: run the same command to go on")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sourceID, "source-id", "", "the import to reverse")
	cmd.Flags().StringVar(&sourceType, "source-type", "", "its source type (needed only when the id exists for several)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the operator log)")
	cmd.Flags().IntVar(&batchSize, "batch-size", 1000, "reversals per transaction")
	return cmd
}
