package integrity

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Check statuses.
const (
	StatusOK      = "ok"
	StatusFail    = "fail"
	StatusSkipped = "skipped"
)

// Names of the audit checks, in the order Audit runs them. Each check's query is one file,
// checks/NN_<name>.sql, embedded here and generated into scripts/audit-balances.sql (see
// AuditScript), which therefore runs the very same queries under the same names with psql.
// scripts/verify-column-names.sql runs the column_names rule on its own.
const (
	CheckColumnNames          = "column_names"
	CheckAccountRules         = "account_rules"
	CheckReservedHolds        = "reserved_holds"
	CheckDuplicateReferences  = "duplicate_references"
	CheckEntryAccounts        = "entry_accounts"
	CheckBalancesMatchEntries = "balances_match_entries"
	CheckZeroSum              = "zero_sum"
	CheckGaplessSeq           = "gapless_seq"
	CheckLedgerHead           = "ledger_head"
	CheckHashChain            = "hash_chain"
	CheckBalanceAfter         = "balance_after"
	CheckOperatorLog          = "operator_log"
	CheckHoldChain            = "hold_chain"
	CheckHoldStates           = "hold_states"
	CheckFunctionDefinitions  = "function_definitions"
	CheckTablePrivileges      = "table_privileges"
)

// DefaultFindingLimit is how many findings a check lists by default (it always counts them all).
const DefaultFindingLimit = 20

// AuditOptions tune Audit; the zero value is fine.
type AuditOptions struct {
	Limit int // findings listed per check; DefaultFindingLimit when <= 0
}

// Finding is one offending row (an account, a ledger, an entry, a missing column).
type Finding struct {
	Message string          `json:"message"`
	Details json.RawMessage `json:"details"`
}

// CheckResult is the outcome of one check. Total counts every finding; Findings lists the
// first Limit of them.
type CheckResult struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	Total       int64     `json:"total_findings"`
	Findings    []Finding `json:"findings"`
	Note        string    `json:"note,omitempty"`
	DurationMS  int64     `json:"duration_ms"`
}

// AuditReport is the outcome of Audit: OK when no check failed.
type AuditReport struct {
	OK         bool          `json:"ok"`
	Checks     []CheckResult `json:"checks"`
	Duration   time.Duration `json:"-"`
	DurationMS int64         `json:"duration_ms"`
}

// Failed returns the names of the failed checks.
func (r AuditReport) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == StatusFail {
			out = append(out, c.Name)
		}
	}
	return out
}

// checkFiles holds each check's query: one file per check, checks/NN_<name>.sql, returning one
// row per finding, (message text, details jsonb), in the order the findings are listed. The
// files are the only copy of the rules: Audit wraps them (checkSQL) and AuditScript generates
// scripts/audit-balances.sql from them.
//
//go:embed checks/*.sql
var checkFiles embed.FS

// auditCheck is one set-based query (the file checks/<file>).
type auditCheck struct {
	name, description, file string
}

func auditChecks() []auditCheck {
	return []auditCheck{
		{CheckColumnNames, "the snake_case columns, the idempotency constraint and the posting function the seeds' code relies on exist", "01_column_names.sql"},
		{CheckAccountRules, "reserved_balance >= 0, available_balance = balance - reserved_balance, available_balance >= -overdraft_limit (NULL = unlimited)", "02_account_rules.sql"},
		{CheckReservedHolds, "reserved_balance = Σ amounts of the account's PENDING holds, available_balance = balance - reserved_balance", "03_reserved_holds.sql"},
		{CheckDuplicateReferences, "at most one entry per (ledger_id, reference_id)", "04_duplicate_references.sql"},
		{CheckEntryAccounts, "both accounts of every entry exist in its ledger with its currency and asset type", "05_entry_accounts.sql"},
		{CheckBalancesMatchEntries, "balance = Σ credits − Σ debits of the account's entries", "06_balances_match_entries.sql"},
		{CheckZeroSum, "balances sum to zero per (ledger, currency, asset type)", "07_zero_sum.sql"},
		{CheckGaplessSeq, "seq runs 1..head_seq without gaps: count(*) = max(seq) = head_seq per ledger", "08_gapless_seq.sql"},
		{CheckLedgerHead, "ledgers.head_hash is the block_hash of entry head_seq (32 zero bytes when empty)", "09_ledger_head.sql"},
		{CheckHashChain, "block_hash = sha256(previous_hash || ledger_entry_canonical(entry)) and previous_hash = block_hash of seq-1, recomputed in SQL", "10_hash_chain.sql"},
		{CheckBalanceAfter, "each entry's debit_balance_after / credit_balance_after is the account's running balance in seq order", "11_balance_after.sql"},
		{CheckOperatorLog, "the operator log's hash chain: hash = sha256(previous_hash || operator_action_canonical(row)), previous_hash = hash of seq-1, seq gapless from 1, head at the last row", "12_operator_log.sql"},
		{CheckHoldChain, "each ledger's hold events: hash = sha256(previous_hash || ledger_hold_event_canonical(event)), previous_hash = hash of seq-1, seq gapless from 1, hold head at the last event", "13_hold_chain.sql"},
		{CheckHoldStates, "each hold's events match its state (created, then at most one of captured/voided/expired); a captured hold's entry moves the captured amount between its accounts", "14_hold_states.sql"},
		{CheckFunctionDefinitions, "every function of the schema (body, settings, privileges) is as the last dualledger migrate left it", "15_function_definitions.sql"},
		{CheckTablePrivileges, "nobody but the tables' owner may write the ledger's tables directly (no INSERT, UPDATE, DELETE, TRUNCATE grant), and no trigger on them is disabled", "16_table_privileges.sql"},
	}
}

// query returns the check's query as its file holds it, without a trailing semicolon.
func (c auditCheck) query() string {
	b, err := checkFiles.ReadFile("checks/" + c.file)
	if err != nil {
		panic("integrity: " + err.Error()) // embedded: cannot happen unless the list above is wrong
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), ";")
}

// checkSQL is the query Audit runs: the check's findings (message text, details jsonb) with
// total = count(*) OVER () computed before LIMIT $1, so one round trip both lists the first
// findings and counts all of them, however many rows the tables hold.
func (c auditCheck) checkSQL() string {
	return "SELECT message, details, count(*) OVER () FROM (\n" + c.query() + "\n) AS c(message, details) LIMIT $1"
}

// Audit runs every check in one read-only REPEATABLE READ transaction (one snapshot: the checks
// agree with each other even while postings continue) and reports each check's findings. An
// error means a check could not run; findings are not errors.
func Audit(ctx context.Context, db DB, opts AuditOptions) (AuditReport, error) {
	start := time.Now()
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultFindingLimit
	}
	rep := AuditReport{OK: true}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	// The aggregates and sorts below run over whole tables; more memory than the 4MB default
	// keeps them in memory for a few million entries. Transaction-local, so nothing leaks.
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
		return rep, fmt.Errorf("audit: %w", err)
	}
	schemaOK := true
	for _, c := range auditChecks() {
		res := CheckResult{Name: c.name, Description: c.description, Findings: []Finding{}}
		switch {
		case c.name != CheckColumnNames && !schemaOK:
			// The other queries name those columns and would only fail with "column does not exist".
			res.Status = StatusSkipped
			res.Note = "skipped: expected columns are missing (see " + CheckColumnNames + ")"
		default:
			t0 := time.Now()
			if err := runCheck(ctx, tx, c, limit, &res); err != nil {
				return rep, err
			}
			res.DurationMS = time.Since(t0).Milliseconds()
		}
		if res.Status == StatusFail {
			rep.OK = false
			if c.name == CheckColumnNames {
				schemaOK = !missingColumn(res)
			}
		}
		rep.Checks = append(rep.Checks, res)
	}
	rep.Duration = time.Since(start)
	rep.DurationMS = rep.Duration.Milliseconds()
	return rep, nil
}

// missingColumn reports whether the schema check found a missing column (it lists those first),
// as opposed to only a camelCase twin, a missing constraint or function, which the data checks
// can run without.
func missingColumn(res CheckResult) bool {
	if len(res.Findings) == 0 {
		return false
	}
	var d struct {
		Problem string `json:"problem"`
	}
	return json.Unmarshal(res.Findings[0].Details, &d) == nil && d.Problem == "missing_column"
}

func runCheck(ctx context.Context, tx pgx.Tx, c auditCheck, limit int, res *CheckResult) error {
	rows, err := tx.Query(ctx, c.checkSQL(), limit)
	if err != nil {
		return fmt.Errorf("audit %s: %w", c.name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var f Finding
		var details []byte
		if err := rows.Scan(&f.Message, &details, &res.Total); err != nil {
			return fmt.Errorf("audit %s: %w", c.name, err)
		}
		f.Details = details
		res.Findings = append(res.Findings, f)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("audit %s: %w", c.name, err)
	}
	res.Status = StatusOK
	if res.Total > 0 {
		res.Status = StatusFail
	}
	return nil
}
