package source

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DatabaseOptions name what to read from another PostgreSQL.
type DatabaseOptions struct {
	// Table (optionally schema-qualified, "schema.table") or Query (a SELECT); default the seed's
	// ledger_entries_legacy.
	Table, Query string
	// Key is the ordered, unique column rows are read by; default "id".
	Key string
	// PageSize is the rows of one keyset page (default 1000).
	PageSize int
}

// Database reads a table or query of another PostgreSQL by keyset on an ordered unique key
// (WHERE key >= last ORDER BY key LIMIT page + 1, the row at last skipped), so memory holds one page, the read is stable
// under concurrent inserts of higher keys, and a position is the last key read.
type Database struct {
	conn    *pgx.Conn
	sql     string
	key     string
	keyType string
	page    [][]string
	cols    []string // the columns, known when the source opens
	keyAt   int      // the key's position in cols
	i       int
	last    *string
	done    bool
	read    int64
	total   int64
	size    int
}

// OpenDatabase connects to connString and positions the reader after the key `after` ("" for
// the start).
func OpenDatabase(ctx context.Context, connString string, o DatabaseOptions, after string) (*Database, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("the database source's connection string: %w", err)
	}
	// Text values as PostgreSQL prints them, timestamps in UTC ISO form.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["DateStyle"] = "ISO, YMD"
	cfg.RuntimeParams["application_name"] = "dualledger backfill (reader)"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the database source: %w", err)
	}
	d := &Database{conn: conn, key: o.Key, size: o.PageSize}
	if d.key == "" {
		d.key = "id"
	}
	if d.size <= 0 {
		d.size = 1000
	}
	from := ""
	switch {
	case strings.TrimSpace(o.Query) != "":
		from = "(" + o.Query + ")"
	default:
		t := o.Table
		if t == "" {
			t = "ledger_entries_legacy"
		}
		from = pgx.Identifier(strings.Split(t, ".")).Sanitize()
	}
	key := pgx.Identifier{d.key}.Sanitize()
	// The columns, and the key's type, so that a position (text) compares as the key does.
	rows, err := conn.Query(ctx, `SELECT * FROM `+from+` q LIMIT 0`)
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("read the database source's columns: %w", err)
	}
	var oid uint32
	d.keyAt = -1
	for i, f := range rows.FieldDescriptions() {
		d.cols = append(d.cols, f.Name)
		if f.Name == d.key {
			oid, d.keyAt = f.DataTypeOID, i
		}
	}
	rows.Close()
	if d.keyAt < 0 {
		conn.Close(ctx)
		return nil, unusablef("the database source has no column %q (the key; database.key in the mapping)", d.key)
	}
	var typ string
	if err := conn.QueryRow(ctx, `SELECT format_type($1::oid, NULL)`, oid).Scan(&typ); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("read the database source's key type: %w", err)
	}
	d.keyType = typ
	// A page starts at the last key read (>=, not >) and every row says whether its key equals
	// the one before it (or, for the first, the last key read): a key that is not unique would
	// otherwise lose rows for good, those sharing the last key of a page being skipped by the
	// next (> last). The row equal to the last key read is that row itself, read again and
	// skipped; any other equal key stops the run (fetch). Equality is the key type's, not the
	// text's (numeric 1.0 = 1.00).
	d.sql = `SELECT p.*, coalesce(p.` + key + ` = lag(p.` + key + `) OVER (ORDER BY p.` + key + `), p.` + key + ` = $1::text::` + typ + `, false)
	           FROM (SELECT * FROM ` + from + ` q WHERE ($1::text IS NULL OR q.` + key + ` >= $1::text::` + typ + `)
	                  ORDER BY q.` + key + ` LIMIT $2) p
	          ORDER BY p.` + key
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+from+` q`).Scan(&d.total); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("count the database source's rows: %w", err)
	}
	// A row with a NULL key has no place in the key's order: the pages after the first (key >=
	// last) would never read it.
	var nulls bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+from+` q WHERE q.`+key+` IS NULL)`).Scan(&nulls); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("read the database source's key %s: %w", d.key, err)
	}
	if nulls {
		conn.Close(ctx)
		return nil, unusablef("the database source has a row with a NULL key %s: the key must be unique and not null", d.key)
	}
	if after != "" {
		d.last = &after
		var before int64
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+from+` q WHERE q.`+key+` <= $1::text::`+typ, after).Scan(&before); err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("%w: key %q: %v", ErrBadPosition, after, err)
		}
		d.read = before
	}
	return d, nil
}

func (d *Database) fetch(ctx context.Context) error {
	limit := d.size + 1 // the row at the last key comes again
	rows, err := d.conn.Query(ctx, d.sql, d.last, limit)
	if err != nil {
		return fmt.Errorf("read the database source: %w", err)
	}
	defer rows.Close()
	d.page, d.i = d.page[:0], 0
	keyAt := d.keyAt
	n := 0
	for rows.Next() {
		n++
		all := rows.RawValues()
		raw, same := all[:len(all)-1], string(all[len(all)-1]) == "t" // the last column is the equal-key flag
		if same && n == 1 && d.last != nil {
			continue // the last row read, again
		}
		vals := make([]string, len(raw))
		for i, v := range raw {
			if v == nil {
				vals[i] = "\x00null"
				continue
			}
			vals[i] = string(v)
		}
		if vals[keyAt] == "\x00null" {
			return unusablef("the database source has a row with a NULL key %s: the key must be unique and not null", d.key)
		}
		if same {
			return unusablef("the database source's key %s is not unique: %q is the key of more than one row, and reading by key would skip some of them; choose a unique key (database.key in the mapping)", d.key, vals[keyAt])
		}
		d.page = append(d.page, vals)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the database source: %w", err)
	}
	if n < limit {
		d.done = true
	}
	return nil
}

// Next returns the next row by key.
func (d *Database) Next(ctx context.Context) (Record, error) {
	if d.i >= len(d.page) {
		if d.done {
			return Record{}, eof()
		}
		if err := d.fetch(ctx); err != nil {
			return Record{}, err
		}
		if len(d.page) == 0 {
			return Record{}, eof()
		}
	}
	vals := d.page[d.i]
	d.i++
	r := Record{Fields: make(map[string]string, len(d.cols))}
	raw := make(map[string]any, len(d.cols))
	for i, c := range d.cols {
		if vals[i] == "\x00null" {
			raw[c] = nil
			continue
		}
		raw[c] = vals[i]
		if c != d.key { // the key is the position, not data
			r.Fields[c] = vals[i]
		}
		if c == d.key {
			k := vals[i]
			d.last = &k
			r.Pos = k
		}
	}
	r.Raw = rawJSON(raw)
	d.read++
	return r, nil
}

// Header returns the source's columns but the key (the key is the position, not data).
func (d *Database) Header() []string {
	return slices.Delete(slices.Clone(d.cols), d.keyAt, d.keyAt+1)
}

// Progress returns the rows read and the rows counted at the start.
func (d *Database) Progress() (int64, int64) { return d.read, d.total }

// Close closes the connection.
func (d *Database) Close() error { return d.conn.Close(context.Background()) }
