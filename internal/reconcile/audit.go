package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Check statuses.
const (
	StatusOK      = "ok"
	StatusFail    = "fail"
	StatusSkipped = "skipped"
)

// Names of the audit checks, in the order Audit runs them. scripts/audit-balances.sql (and, for
// column_names, scripts/verify-column-names.sql) run the same rules under the same names.
const (
	CheckColumnNames          = "column_names"
	CheckAccountRules         = "account_rules"
	CheckReservedWithoutHolds = "reserved_without_holds"
	CheckDuplicateReferences  = "duplicate_references"
	CheckEntryAccounts        = "entry_accounts"
	CheckBalancesMatchEntries = "balances_match_entries"
	CheckZeroSum              = "zero_sum"
	CheckGaplessSeq           = "gapless_seq"
	CheckLedgerHead           = "ledger_head"
	CheckHashChain            = "hash_chain"
	CheckBalanceAfter         = "balance_after"
	CheckOperatorLog          = "operator_log"
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

// auditCheck is one set-based query. Every query returns (message text, details jsonb, total
// bigint) with total = count(*) OVER () computed before LIMIT $1, so one round trip both lists
// the first findings and counts all of them, however many rows the tables hold.
type auditCheck struct {
	name, description, sql string
}

func auditChecks() []auditCheck {
	return []auditCheck{
		{CheckColumnNames, "the snake_case columns, the idempotency constraint and the posting function the seeds' code relies on exist", columnNamesSQL},
		{CheckAccountRules, "reserved_balance >= 0, available_balance = balance - reserved_balance, available_balance >= -overdraft_limit (NULL = unlimited)", accountRulesSQL},
		{CheckReservedWithoutHolds, "reserved_balance = 0 while there is no holds table", reservedWithoutHoldsSQL},
		{CheckDuplicateReferences, "at most one entry per (ledger_id, reference_id)", duplicateReferencesSQL},
		{CheckEntryAccounts, "both accounts of every entry exist in its ledger with its currency and asset type", entryAccountsSQL},
		{CheckBalancesMatchEntries, "balance = Σ credits − Σ debits of the account's entries", balancesMatchEntriesSQL},
		{CheckZeroSum, "balances sum to zero per (ledger, currency, asset type)", zeroSumSQL},
		{CheckGaplessSeq, "seq runs 1..head_seq without gaps: count(*) = max(seq) = head_seq per ledger", gaplessSeqSQL},
		{CheckLedgerHead, "ledgers.head_hash is the block_hash of entry head_seq (32 zero bytes when empty)", ledgerHeadSQL},
		{CheckHashChain, "block_hash = sha256(previous_hash || ledger_entry_canonical(entry)) and previous_hash = block_hash of seq-1, recomputed in SQL", hashChainSQL},
		{CheckBalanceAfter, "each entry's debit_balance_after / credit_balance_after is the account's running balance in seq order", balanceAfterSQL},
		{CheckOperatorLog, "the operator log's hash chain: hash = sha256(previous_hash || operator_action_canonical(row)), previous_hash = hash of seq-1, seq gapless from 1, head at the last row", operatorLogSQL},
	}
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
	var holds bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('holds') IS NOT NULL`).Scan(&holds); err != nil {
		return rep, fmt.Errorf("audit: look for a holds table: %w", err)
	}

	schemaOK := true
	for _, c := range auditChecks() {
		res := CheckResult{Name: c.name, Description: c.description, Findings: []Finding{}}
		switch {
		case c.name != CheckColumnNames && !schemaOK:
			// The other queries name those columns and would only fail with "column does not exist".
			res.Status = StatusSkipped
			res.Note = "skipped: expected columns are missing (see " + CheckColumnNames + ")"
		case c.name == CheckReservedWithoutHolds && holds:
			// With holds, reserved_balance must equal the open holds; that rule belongs with the
			// holds schema, which this audit does not know yet.
			res.Status = StatusSkipped
			res.Note = "skipped: a holds table exists; reserved_balance is checked against open holds by the holds module"
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
	rows, err := tx.Query(ctx, c.sql, limit)
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

// columnNamesSQL is scripts/verify-column-names.sql (deployment step 1 of the seeds,
// docs/design.md §10.2): the snake_case columns that the seeds' code (posting module, outbox
// worker, backfill, monitoring queries) and this audit name, no camelCase column beside them (a Prisma schema without @map), the idempotency constraint and
// the seeds' posting function. ledger_backfill_checkpoints is checked only once it exists (the
// backfill feature creates it). pg_catalog, not information_schema: information_schema hides the
// columns the current role has no privilege on.
const columnNamesSQL = `
WITH expected(table_name, column_name, required) AS (VALUES
    ('ledgers', 'id', true), ('ledgers', 'head_seq', true), ('ledgers', 'head_hash', true),
    ('bank_accounts', 'ledger_id', true), ('bank_accounts', 'id', true), ('bank_accounts', 'currency_code', true),
    ('bank_accounts', 'asset_type', true), ('bank_accounts', 'balance', true), ('bank_accounts', 'available_balance', true),
    ('bank_accounts', 'reserved_balance', true), ('bank_accounts', 'overdraft_limit', true),
    ('ledger_entries', 'id', true), ('ledger_entries', 'ledger_id', true), ('ledger_entries', 'seq', true),
    ('ledger_entries', 'debit_account_id', true), ('ledger_entries', 'credit_account_id', true),
    ('ledger_entries', 'amount', true), ('ledger_entries', 'currency_code', true), ('ledger_entries', 'asset_type', true),
    ('ledger_entries', 'transaction_type', true), ('ledger_entries', 'reference_id', true), ('ledger_entries', 'fx_rate', true),
    ('ledger_entries', 'metadata', true), ('ledger_entries', 'timestamp_utc', true), ('ledger_entries', 'previous_hash', true),
    ('ledger_entries', 'block_hash', true), ('ledger_entries', 'reverses_entry_id', true),
    ('ledger_entries', 'debit_balance_after', true), ('ledger_entries', 'credit_balance_after', true),
    ('dual_ledger_outbox', 'id', true), ('dual_ledger_outbox', 'ledger_id', true), ('dual_ledger_outbox', 'reference_id', true),
    ('dual_ledger_outbox', 'status', true), ('dual_ledger_outbox', 'attempts', true), ('dual_ledger_outbox', 'created_at', true),
    ('dual_ledger_outbox', 'last_attempt_at', true),
    ('ledger_backfill_checkpoints', 'source_id', false), ('ledger_backfill_checkpoints', 'source_type', false),
    ('ledger_backfill_checkpoints', 'status', false), ('ledger_backfill_checkpoints', 'last_processed_id', false),
    ('ledger_backfill_checkpoints', 'last_processed_timestamp', false), ('ledger_backfill_checkpoints', 'total_processed', false),
    ('ledger_backfill_checkpoints', 'total_successful', false), ('ledger_backfill_checkpoints', 'total_failed', false),
    ('ledger_backfill_checkpoints', 'last_checkpoint_at', false), ('ledger_backfill_checkpoints', 'completed_at', false)
), f AS (
    SELECT 1 AS ord, x.table_name || '.' || x.column_name AS what,
           format('missing column %s.%s', x.table_name, x.column_name) AS message,
           jsonb_build_object('problem', 'missing_column', 'table', x.table_name, 'column', x.column_name) AS details
      FROM expected x
     WHERE (x.required OR to_regclass(x.table_name) IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                        WHERE a.attrelid = to_regclass(x.table_name) AND a.attname = x.column_name
                          AND a.attnum > 0 AND NOT a.attisdropped)
    UNION ALL
    SELECT 2, c.relname || '.' || a.attname,
           format('camelCase column %s.%I (the code expects snake_case names)', c.relname, a.attname),
           jsonb_build_object('problem', 'camel_case_column', 'table', c.relname, 'column', a.attname)
      FROM (SELECT DISTINCT table_name FROM expected) t
      JOIN pg_class c ON c.oid = to_regclass(t.table_name)
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE a.attname <> lower(a.attname)
    UNION ALL
    SELECT 3, 'ledger_entries_unique_ledger_reference',
           'missing constraint ledger_entries_unique_ledger_reference (UNIQUE (ledger_id, reference_id), migration 001)',
           jsonb_build_object('problem', 'missing_constraint', 'constraint', 'ledger_entries_unique_ledger_reference')
     WHERE NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conname = 'ledger_entries_unique_ledger_reference' AND conrelid = to_regclass('ledger_entries'))
    UNION ALL
    SELECT 3, 'post_ledger_entry',
           'missing function post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb) (migration 005)',
           jsonb_build_object('problem', 'missing_function', 'function', 'post_ledger_entry')
     WHERE to_regprocedure('post_ledger_entry(text, text, text, numeric, text, text, text, text, numeric, jsonb)') IS NULL
)
SELECT message, details, count(*) OVER () FROM f ORDER BY ord, what LIMIT $1`

// accountRulesSQL: docs/design.md §2.3 and migration 004, the same rules as db/checks/004_balance_constraints.before.sql.
// The seeds' own query (available_balance < 0, available_balance > balance) predates overdrafts and
// our sign convention; it would flag every issuance account, so it is not used.
const accountRulesSQL = `
SELECT format('%s/%s: balance %s, available %s, reserved %s, overdraft_limit %s: %s',
              ledger_id, id, trim_scale(balance), trim_scale(available_balance), trim_scale(reserved_balance),
              coalesce(trim_scale(overdraft_limit)::text, 'unlimited'),
              concat_ws('; ',
                  CASE WHEN reserved_balance < 0 THEN 'reserved_balance < 0' END,
                  CASE WHEN available_balance <> balance - reserved_balance THEN 'available_balance <> balance - reserved_balance' END,
                  CASE WHEN overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit THEN 'available_balance below -overdraft_limit' END)),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', id, 'balance', trim_scale(balance)::text,
                          'available_balance', trim_scale(available_balance)::text,
                          'reserved_balance', trim_scale(reserved_balance)::text,
                          'overdraft_limit', coalesce(trim_scale(overdraft_limit)::text, 'unlimited')),
       count(*) OVER ()
  FROM bank_accounts
 WHERE reserved_balance < 0
    OR available_balance <> balance - reserved_balance
    OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)
 ORDER BY ledger_id, id
 LIMIT $1`

// reservedWithoutHoldsSQL runs only when there is no holds table: nothing can be reserved then.
const reservedWithoutHoldsSQL = `
SELECT format('%s/%s: reserved_balance %s but there are no holds', ledger_id, id, trim_scale(reserved_balance)),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', id, 'reserved_balance', trim_scale(reserved_balance)::text),
       count(*) OVER ()
  FROM bank_accounts
 WHERE reserved_balance <> 0
 ORDER BY ledger_id, id
 LIMIT $1`

const duplicateReferencesSQL = `
SELECT format('%s: reference_id %s is used by %s entries (seq %s)', ledger_id, to_jsonb(reference_id), n, seqs),
       jsonb_build_object('ledger_id', ledger_id, 'reference_id', reference_id, 'entries', n, 'seqs', to_jsonb(seqs)),
       count(*) OVER ()
  FROM (SELECT ledger_id, reference_id, count(*) AS n, (array_agg(seq ORDER BY seq))[1:10] AS seqs
          FROM ledger_entries
         GROUP BY ledger_id, reference_id
        HAVING count(*) > 1) d
 ORDER BY ledger_id, reference_id
 LIMIT $1`

const entryAccountsSQL = `
SELECT format('%s seq %s: %s account %s does not exist in the ledger as a %s %s account', e.ledger_id, e.seq, v.side,
              to_jsonb(v.account_id), e.currency_code, e.asset_type),
       jsonb_build_object('ledger_id', e.ledger_id, 'seq', e.seq, 'entry_id', e.id, 'side', v.side, 'account_id', v.account_id,
                          'currency_code', e.currency_code, 'asset_type', e.asset_type),
       count(*) OVER ()
  FROM ledger_entries e
 CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id), ('credit', e.credit_account_id)) AS v(side, account_id)
 WHERE NOT EXISTS (SELECT 1 FROM bank_accounts a
                    WHERE a.ledger_id = e.ledger_id AND a.id = v.account_id
                      AND a.currency_code = e.currency_code AND a.asset_type = e.asset_type)
 ORDER BY e.ledger_id, e.seq, v.side
 LIMIT $1`

// balancesMatchEntriesSQL: one scan of the entries, each contributing +amount to its credit
// account and -amount to its debit account (docs/design.md §2.3: balance = Σ credits − Σ debits).
const balancesMatchEntriesSQL = `
WITH sums AS (
    SELECT e.ledger_id, v.account_id, sum(v.delta) AS net, count(*) AS legs
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES (e.credit_account_id, e.amount), (e.debit_account_id, -e.amount)) AS v(account_id, delta)
     GROUP BY e.ledger_id, v.account_id
)
SELECT format('%s/%s: stored balance %s, but its %s entries sum to %s (Σ credits − Σ debits; difference %s)',
              a.ledger_id, a.id, trim_scale(a.balance), coalesce(s.legs, 0), trim_scale(coalesce(s.net, 0)),
              trim_scale(a.balance - coalesce(s.net, 0))),
       jsonb_build_object('ledger_id', a.ledger_id, 'account_id', a.id, 'balance', trim_scale(a.balance)::text,
                          'entries_sum', trim_scale(coalesce(s.net, 0))::text, 'entries', coalesce(s.legs, 0),
                          'difference', trim_scale(a.balance - coalesce(s.net, 0))::text),
       count(*) OVER ()
  FROM bank_accounts a
  LEFT JOIN sums s ON s.ledger_id = a.ledger_id AND s.account_id = a.id
 WHERE a.balance <> coalesce(s.net, 0)
 ORDER BY a.ledger_id, a.id
 LIMIT $1`

const zeroSumSQL = `
SELECT format('%s %s %s: balances sum to %s over %s accounts, not 0', ledger_id, currency_code, asset_type, trim_scale(total), n),
       jsonb_build_object('ledger_id', ledger_id, 'currency_code', currency_code, 'asset_type', asset_type,
                          'sum', trim_scale(total)::text, 'accounts', n),
       count(*) OVER ()
  FROM (SELECT ledger_id, currency_code, asset_type, sum(balance) AS total, count(*) AS n
          FROM bank_accounts
         GROUP BY ledger_id, currency_code, asset_type
        HAVING sum(balance) <> 0) z
 ORDER BY ledger_id, currency_code, asset_type
 LIMIT $1`

// gaplessSeqSQL: seq is unique per ledger (primary key) and positive, so count(*) = max(seq)
// means 1..max all exist. The first missing seq is looked up only for the failing ledgers.
const gaplessSeqSQL = `
WITH e AS (
    SELECT ledger_id, count(*) AS n, min(seq) AS min_seq, max(seq) AS max_seq
      FROM ledger_entries
     GROUP BY ledger_id
), bad AS (
    SELECT coalesce(l.id, e.ledger_id) AS ledger_id, l.id IS NULL AS no_ledger, coalesce(l.head_seq, 0) AS head_seq,
           coalesce(e.n, 0) AS n, coalesce(e.max_seq, 0) AS max_seq
      FROM ledgers l
      FULL JOIN e ON e.ledger_id = l.id
     WHERE l.id IS NULL OR coalesce(e.n, 0) <> l.head_seq OR coalesce(e.max_seq, 0) <> l.head_seq OR coalesce(e.min_seq, 1) <> 1
), described AS (
    SELECT b.*,
           coalesce((SELECT min(g.prev + 1)
                       FROM (SELECT le.seq, lag(le.seq, 1, 0::bigint) OVER (ORDER BY le.seq) AS prev
                               FROM ledger_entries le WHERE le.ledger_id = b.ledger_id) g
                      WHERE g.seq <> g.prev + 1),
                    CASE WHEN b.head_seq > b.max_seq THEN b.max_seq + 1 END) AS first_missing
      FROM bad b
)
SELECT CASE WHEN no_ledger THEN format('%s: %s entries belong to a ledger that does not exist', ledger_id, n)
            ELSE format('%s: %s entries, max(seq) %s, head_seq %s%s', ledger_id, n, max_seq, head_seq,
                        coalesce(', first missing seq ' || first_missing, '')) END,
       jsonb_build_object('ledger_id', ledger_id, 'entries', n, 'max_seq', max_seq, 'head_seq', head_seq,
                          'first_missing_seq', first_missing, 'ledger_exists', NOT no_ledger),
       count(*) OVER ()
  FROM described
 ORDER BY ledger_id
 LIMIT $1`

const ledgerHeadSQL = `
SELECT CASE WHEN l.head_seq = 0 THEN format('%s: empty ledger (head_seq 0) but head_hash is %s, not 32 zero bytes', l.id, encode(l.head_hash, 'hex'))
            WHEN e.seq IS NULL THEN format('%s: head_seq %s but there is no entry with that seq', l.id, l.head_seq)
            ELSE format('%s: head_hash %s is not the block_hash %s of entry seq %s', l.id, encode(l.head_hash, 'hex'),
                        encode(e.block_hash, 'hex'), l.head_seq) END,
       jsonb_build_object('ledger_id', l.id, 'head_seq', l.head_seq, 'head_hash', encode(l.head_hash, 'hex'),
                          'entry_block_hash', encode(e.block_hash, 'hex')),
       count(*) OVER ()
  FROM ledgers l
  LEFT JOIN ledger_entries e ON e.ledger_id = l.id AND e.seq = l.head_seq
 WHERE CASE WHEN l.head_seq = 0 THEN l.head_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
            ELSE e.block_hash IS DISTINCT FROM l.head_hash END
 ORDER BY l.id
 LIMIT $1`

// hashChainSQL recomputes the chain with the SQL reference (ledger_entry_block_hash) and joins
// each entry to seq-1 (a merge join on the primary key). One finding per ledger: its first
// broken seq, and how many entries are broken in all.
const hashChainSQL = `
WITH checked AS (
    SELECT e.ledger_id, e.seq, e.id, e.reference_id,
           e.block_hash <> ledger_entry_block_hash(e) AS hash_bad,
           CASE WHEN e.seq = 1 THEN e.previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                ELSE p.block_hash IS DISTINCT FROM e.previous_hash END AS link_bad,
           p.seq IS NULL AND e.seq > 1 AS prior_missing
      FROM ledger_entries e
      LEFT JOIN ledger_entries p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
), firsts AS (
    SELECT DISTINCT ON (ledger_id) *, count(*) OVER (PARTITION BY ledger_id) AS broken
      FROM checked
     WHERE hash_bad OR link_bad
     ORDER BY ledger_id, seq
)
SELECT format('%s: first broken seq %s (entry %s, reference_id %s): %s; broken entries in all: %s', ledger_id, seq, id,
              to_jsonb(reference_id),
              concat_ws(' and ',
                  CASE WHEN prior_missing THEN format('seq %s is missing', seq - 1)
                       WHEN link_bad THEN 'previous_hash is not the block_hash of seq-1' END,
                  CASE WHEN hash_bad THEN 'block_hash is not sha256(previous_hash || canonical(entry))' END),
              broken),
       jsonb_build_object('ledger_id', ledger_id, 'seq', seq, 'entry_id', id, 'reference_id', reference_id,
                          'hash_mismatch', hash_bad, 'link_broken', link_bad, 'prior_missing', prior_missing,
                          'broken_entries', broken),
       count(*) OVER ()
  FROM firsts
 ORDER BY ledger_id
 LIMIT $1`

// balanceAfterSQL: the running balance per account in seq order (a window over one scan). One
// finding per account: the first entry whose stored balance-after disagrees.
const balanceAfterSQL = `
WITH legs AS (
    SELECT e.ledger_id, v.account_id, e.seq, v.side, v.stored,
           sum(v.delta) OVER (PARTITION BY e.ledger_id, v.account_id ORDER BY e.seq
                              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
      FROM ledger_entries e
     CROSS JOIN LATERAL (VALUES ('debit', e.debit_account_id, -e.amount, e.debit_balance_after),
                                ('credit', e.credit_account_id, e.amount, e.credit_balance_after))
           AS v(side, account_id, delta, stored)
), firsts AS (
    SELECT DISTINCT ON (ledger_id, account_id) *, count(*) OVER (PARTITION BY ledger_id, account_id) AS wrong
      FROM legs
     WHERE stored <> running
     ORDER BY ledger_id, account_id, seq
)
SELECT format('%s/%s: from seq %s (%s side) the stored balance after the entry is %s but the running balance is %s; entries that disagree: %s',
              ledger_id, account_id, seq, side, trim_scale(stored), trim_scale(running), wrong),
       jsonb_build_object('ledger_id', ledger_id, 'account_id', account_id, 'seq', seq, 'side', side,
                          'stored', trim_scale(stored)::text, 'running', trim_scale(running)::text, 'entries', wrong),
       count(*) OVER ()
  FROM firsts
 ORDER BY ledger_id, account_id
 LIMIT $1`

// operatorLogSQL checks the operator log (migration 009) like hashChainSQL checks the entries:
// every row's hash recomputed, every link and the head. A finding names the seq.
const operatorLogSQL = `
WITH r AS (
    SELECT seq, previous_hash,
           hash <> sha256(previous_hash || operator_action_canonical(seq, at, actor, db_login, db_role, action, target,
                                                                    before, after, reason)) AS hash_bad,
           lag(seq) OVER (ORDER BY seq) AS prev_seq, lag(hash) OVER (ORDER BY seq) AS prev_hash
      FROM operator_actions),
bad AS (
    SELECT seq, CASE
             WHEN hash_bad THEN 'hash is not sha256(previous_hash || canonical(row)): the row was changed'
             WHEN prev_seq IS NULL AND seq <> 1 THEN 'the log does not start at seq 1'
             WHEN prev_seq IS NULL AND previous_hash <> '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                  THEN 'seq 1 does not link to 32 zero bytes'
             WHEN prev_seq IS NOT NULL AND prev_seq <> seq - 1 THEN 'rows before this seq are missing'
             WHEN prev_seq IS NOT NULL AND prev_hash <> previous_hash THEN 'previous_hash is not the hash of the row before'
           END AS problem
      FROM r
    UNION ALL
    SELECT h.seq, 'the head does not point at the last row'
      FROM operator_actions_head h
      LEFT JOIN LATERAL (SELECT seq, hash FROM operator_actions ORDER BY seq DESC LIMIT 1) l ON true
     WHERE (h.seq, h.hash) IS DISTINCT FROM (l.seq, l.hash) AND NOT (h.seq = 0 AND l.seq IS NULL))
SELECT format('operator log seq %s: %s', seq, problem), jsonb_build_object('seq', seq, 'problem', problem), count(*) OVER ()
  FROM bad WHERE problem IS NOT NULL
 ORDER BY seq LIMIT $1`
