package db_test

// Ready for a distributed PostgreSQL (docs/scale-out.md): every table is either distributed by
// its ledger (and then every primary, unique and foreign key includes the ledger column), a
// reference table (small, copied to every node, never pointing at a distributed one), or the
// migration runner's bookkeeping. A new table, or a new key without ledger_id, fails here.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"dualledger/internal/pg"
	"dualledger/internal/pg/pgtest"
)

// distributedBy names each table distributed by ledger and its distribution column; all of them
// are co-located (the same ledger's rows of every table live on the same node).
var distributedBy = map[string]string{
	"ledgers":                      "id",
	"bank_accounts":                "ledger_id",
	"ledger_entries":               "ledger_id",
	"dual_ledger_outbox":           "ledger_id",
	"dual_ledger_outbox_attempts":  "ledger_id",
	"ledger_backfill_batches":      "ledger_id", // 012: the seq ranges a backfill batch created, per ledger
	"reconciliation_discrepancies": "ledger_id", // 013
	"reconciliation_scb_entries":   "ledger_id", // 013
	"ledger_holds":                 "ledger_id", // 014
	"ledger_hold_events":           "ledger_id", // 014
}

// referenceTables are replicated to every node (Citus reference tables): few rows, rarely
// written, joined from the ledger tables.
// ledger_backfill_checkpoints (012) is one row per import source (the seed's UNIQUE (source_id,
// source_type)); a source may feed several ledgers.
var referenceTables = []string{"api_keys", "banks", "currencies", "ledger_backfill_checkpoints", "operator_actions", "operator_actions_head",
	"reconciliation_runs"}

// localTables belong to the migration runner, on the coordinator only (internal/pg).
var localTables = []string{"dualledger_function_checksums", "dualledger_function_digests", "dualledger_migration_checksums", "dualledger_schema_version"}

// ledgerKeyViolations lists every table and key that breaks the rule, readable.
func ledgerKeyViolations(t *testing.T, q querier) []string {
	t.Helper()
	kind := func(table string) string {
		switch {
		case distributedBy[table] != "":
			return "distributed"
		case slices.Contains(referenceTables, table):
			return "reference"
		case slices.Contains(localTables, table):
			return "local"
		}
		return ""
	}
	var out []string
	tables := strings1(t, q, `SELECT c.relname::text FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
	for _, table := range tables {
		if kind(table) == "" {
			out = append(out, fmt.Sprintf("table %s is not classified: distribute it by ledger_id (distributedBy), or list it as "+
				"a reference or local table, in db/ledger_keys_test.go (docs/scale-out.md)", table))
		}
	}
	for _, want := range slices.Concat(slices.Sorted(maps.Keys(distributedBy)), referenceTables, localTables) {
		if !slices.Contains(tables, want) {
			out = append(out, fmt.Sprintf("table %s is classified in db/ledger_keys_test.go but does not exist", want))
		}
	}

	// The distribution column: there, and NOT NULL (a row without a ledger has no shard).
	for _, table := range slices.Sorted(maps.Keys(distributedBy)) {
		col := distributedBy[table]
		if got := strings1(t, q, `SELECT a.attname::text FROM pg_attribute a
			WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attnotnull AND NOT a.attisdropped`, table, col); len(got) != 1 {
			out = append(out, fmt.Sprintf("table %s: distribution column %s missing or nullable", table, col))
		}
	}

	// Every unique index (primary keys, unique constraints, unique indexes, exclusion
	// constraints) of a distributed table includes its distribution column.
	for _, row := range strings1(t, q, `SELECT c.relname || '|' || i.indexrelid::regclass || '|' || pg_get_indexdef(i.indexrelid) || '|'
			|| array_to_string(ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k), ',')
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		WHERE c.relnamespace = 'public'::regnamespace AND (i.indisunique OR i.indisexclusion) ORDER BY 1`) {
		f := strings.SplitN(row, "|", 4)
		table, index, def, cols := f[0], f[1], f[2], strings.Split(f[3], ",")
		if col := distributedBy[table]; col != "" && !slices.Contains(cols, col) {
			out = append(out, fmt.Sprintf("table %s: unique index %s does not include %s: %s", table, index, col, def))
		}
	}

	// Foreign keys: distributed -> distributed only on the distribution columns, matched
	// (co-located join inside one shard); distributed -> reference is fine; nothing points from
	// a reference or local table into a distributed one, nor from a distributed into a local one.
	for _, row := range strings1(t, q, `SELECT c.conrelid::regclass::text || '|' || c.confrelid::regclass::text || '|' || c.conname || '|'
			|| pg_get_constraintdef(c.oid) || '|'
			|| array_to_string(ARRAY(SELECT a.attname || '=' || fa.attname
			                           FROM unnest(c.conkey, c.confkey) AS k(l, r)
			                           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.l
			                           JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = k.r), ',')
		FROM pg_constraint c WHERE c.connamespace = 'public'::regnamespace AND c.contype = 'f' ORDER BY 1`) {
		f := strings.SplitN(row, "|", 5)
		from, to, name, def, pairs := f[0], f[1], f[2], f[3], strings.Split(f[4], ",")
		switch kf, kt := kind(from), kind(to); {
		case kf == "distributed" && kt == "distributed":
			if !slices.Contains(pairs, distributedBy[from]+"="+distributedBy[to]) {
				out = append(out, fmt.Sprintf("foreign key %s.%s does not match %s.%s to %s.%s: %s", from, name, from, distributedBy[from],
					to, distributedBy[to], def))
			}
		case kf == "distributed" && kt == "reference", kf == "reference" && kt == "reference", kf == "local" && kt == "local":
		default:
			out = append(out, fmt.Sprintf("foreign key %s.%s goes from a %s table to a %s table: %s", from, name, kf, kt, def))
		}
	}
	return out
}

// TestLedgerKeys: the migrated schema keeps the rule.
func TestLedgerKeys(t *testing.T) {
	d := pgtest.New(t)
	if v := ledgerKeyViolations(t, d.Pool); len(v) > 0 {
		t.Errorf("the schema is not ready for distribution by ledger_id (docs/scale-out.md):\n%s", strings.Join(v, "\n"))
	}
	// What 011 changed, by name.
	got := strings1(t, d.Pool, `SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid IN ('dual_ledger_outbox'::regclass, 'dual_ledger_outbox_attempts'::regclass, 'ledger_entries'::regclass)
		  AND contype IN ('p', 'u', 'f') ORDER BY 1`)
	want := []string{
		"dual_ledger_outbox dual_ledger_outbox_entry_fkey FOREIGN KEY (ledger_id, entry_seq) REFERENCES ledger_entries(ledger_id, seq)",
		"dual_ledger_outbox dual_ledger_outbox_pkey PRIMARY KEY (id, ledger_id)",
		"dual_ledger_outbox dual_ledger_outbox_scb_id_fkey FOREIGN KEY (scb_id) REFERENCES banks(id)",
		"dual_ledger_outbox dual_ledger_outbox_unique_delivery UNIQUE (ledger_id, reference_id, scb_id)",
		"dual_ledger_outbox_attempts dual_ledger_outbox_attempts_outbox_fkey FOREIGN KEY (ledger_id, outbox_id) REFERENCES dual_ledger_outbox(ledger_id, id)",
		"dual_ledger_outbox_attempts dual_ledger_outbox_attempts_pkey PRIMARY KEY (id, ledger_id)",
		"ledger_entries ledger_entries_id_ledger_id_key UNIQUE (id, ledger_id)",
		"ledger_entries ledger_entries_pkey PRIMARY KEY (ledger_id, seq)",
		"ledger_entries ledger_entries_unique_ledger_reference UNIQUE (ledger_id, reference_id)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("keys of the outbox, its attempts and the entries:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The outbox functions look a row up by (ledger_id, id), and the operator's requeue by id alone
	// (`outbox requeue --id N`): an index of the outbox must lead with id, or those scan the table
	// (the primary key (id, ledger_id) serves both).
	if got := strings1(t, d.Pool, `SELECT i.indexrelid::regclass::text FROM pg_index i
		WHERE i.indrelid = 'dual_ledger_outbox'::regclass AND i.indpred IS NULL
		  AND i.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = 'dual_ledger_outbox'::regclass AND attname = 'id')`); len(got) == 0 {
		t.Error("no index of dual_ledger_outbox leads with id: the outbox functions' look-ups by id would scan the table")
	}

	// The worker's functions write the attempt's ledger_id (NOT NULL: a function that did not
	// would fail here).
	ctx := context.Background()
	setupOutbox(t, d.Pool)
	worker := d.PoolAs(t, "dualledger_worker")
	var id int64
	var attempt int32
	if err := worker.QueryRow(ctx, `SELECT id, attempts FROM outbox_claim('SCB-1', 'MASTER', 'w1', interval '1 minute', 1)`).Scan(&id, &attempt); err != nil {
		t.Fatal(err)
	}
	if _, err := worker.Exec(ctx, `SELECT outbox_finish('MASTER', $1, 'w1', $2, 'QUEUED', 503, 'busy', interval '0', '', '', 'retry', interval '0')`,
		id, attempt); err != nil {
		t.Fatal(err)
	}
	if got := strings1(t, d.Pool, `SELECT ledger_id || ' ' || outbox_id || ' ' || outcome FROM dual_ledger_outbox_attempts`); !slices.Equal(got,
		[]string{fmt.Sprintf("MASTER %d retry", id)}) {
		t.Errorf("attempts: %v", got)
	}
}

// TestLedgerKeysCatchesViolations: the check names a key without ledger_id, a foreign key that
// bypasses it, a reference table pointing into a ledger table and a table nobody classified.
func TestLedgerKeysCatchesViolations(t *testing.T) {
	d := pgtest.New(t)
	for _, s := range []string{
		`CREATE UNIQUE INDEX dltest_entries_id ON ledger_entries (id)`,
		`ALTER TABLE dual_ledger_outbox ADD CONSTRAINT dltest_entry_id_fkey FOREIGN KEY (entry_id) REFERENCES ledger_entries (id)`,
		`ALTER TABLE banks ADD COLUMN dltest_ledger text REFERENCES ledgers (id)`,
		`CREATE TABLE dltest_new (id bigint PRIMARY KEY)`,
	} {
		if _, err := d.Pool.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	got := ledgerKeyViolations(t, d.Pool)
	for _, want := range []string{
		"table ledger_entries: unique index dltest_entries_id does not include ledger_id",
		"foreign key dual_ledger_outbox.dltest_entry_id_fkey does not match",
		"foreign key banks.banks_dltest_ledger_fkey goes from a reference table to a distributed table",
		"table dltest_new is not classified",
	} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("violations %q lack %q", got, want)
		}
	}
	if len(got) != 4 {
		t.Errorf("want 4 violations, got %d: %q", len(got), got)
	}
}

// TestLedgerKeysUpgrade: the attempts of a database used before 011 get their outbox row's
// ledger_id; an attempt whose outbox row is gone (its foreign key dropped by hand) stops the
// migration before 011 with the row named, nothing of 011 applied.
func TestLedgerKeysUpgrade(t *testing.T) {
	ctx := context.Background()
	_, conn, migs := oldState(t, false)
	if err := pg.Migrate(ctx, conn, migs, nil); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if got := strings1(t, conn, `SELECT count(*) || ' ' || count(*) FILTER (WHERE a.ledger_id = o.ledger_id)
		FROM dual_ledger_outbox_attempts a JOIN dual_ledger_outbox o ON o.id = a.outbox_id`); !slices.Equal(got, []string{"2 2"}) {
		t.Errorf("attempts with their outbox row's ledger_id (all, matching): %v, want 2 2", got)
	}

	_, conn, migs = oldState(t, false)
	for _, s := range []string{
		`ALTER TABLE dual_ledger_outbox_attempts DROP CONSTRAINT dual_ledger_outbox_attempts_outbox_id_fkey`,
		`INSERT INTO dual_ledger_outbox_attempts (outbox_id, attempt, worker_id, kind, started_at, outcome) VALUES (424242, 1, 'w', 'deliver', now(), 'final')`,
	} {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	err := pg.Migrate(ctx, conn, migs, nil)
	var ce *pg.CheckError
	if !errors.As(err, &ce) || ce.Phase != "before" || ce.Migration != "011_ledger_keys.sql" || ce.Total != 1 ||
		!strings.Contains(ce.Findings[0], "outbox row 424242 does not exist") {
		t.Fatalf("upgrade with an orphan attempt: %v", err)
	}
	if got := strings1(t, conn, `SELECT attname::text FROM pg_attribute WHERE attrelid = 'dual_ledger_outbox_attempts'::regclass AND attname = 'ledger_id'`); len(got) > 0 {
		t.Errorf("part of 011 was applied: attempts.ledger_id exists")
	}
}
