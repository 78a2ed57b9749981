// Package oplog reads the operator log: the append-only, hash-chained record of every
// administrative act (keys, banks, ledgers, accounts, outbox requeues), written by the database
// in the transaction of each act (migration 009). Nothing in Go writes it; `dualledger audit`
// verifies its chain (internal/integrity) and `dualledger operator-log` lists it.
package oplog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
)

// DB is what the log reader needs of a pool, a connection or a transaction.
type DB = ledger.DBTX

// Action is one row of the operator log.
type Action struct {
	Seq          int64           `json:"seq"`
	At           time.Time       `json:"at"`
	Actor        string          `json:"actor"`    // key:<id>, cli:<OS user>, sql:<login role>, ...
	DBLogin      string          `json:"db_login"` // the database login role of the act
	DBRole       string          `json:"db_role"`  // the role it had set (the login role when none)
	Action       string          `json:"action"`   // e.g. account.update
	Target       string          `json:"target"`   // what was acted on, e.g. MASTER/alice
	Before       json.RawMessage `json:"before"`
	After        json.RawMessage `json:"after"`
	Reason       *string         `json:"reason"`
	PreviousHash string          `json:"previous_hash"` // hex
	Hash         string          `json:"hash"`          // hex
}

// Filter selects log rows: after a seq, since a time, at most Limit (default 100).
type Filter struct {
	AfterSeq int64
	Since    time.Time
	Limit    int
}

// List returns log rows in seq order.
func List(ctx context.Context, db DB, f Filter) ([]Action, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var since *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	rows, err := db.Query(ctx, `SELECT seq, at, actor, db_login, db_role, action, target, before, after, reason,
			encode(previous_hash, 'hex'), encode(hash, 'hex')
		  FROM operator_actions
		 WHERE seq > $1 AND ($2::timestamptz IS NULL OR at >= $2)
		 ORDER BY seq LIMIT $3`, f.AfterSeq, since, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("read the operator log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Action, error) {
		var a Action
		var before, after []byte
		err := r.Scan(&a.Seq, &a.At, &a.Actor, &a.DBLogin, &a.DBRole, &a.Action, &a.Target, &before, &after, &a.Reason,
			&a.PreviousHash, &a.Hash)
		a.At = a.At.UTC()
		a.Before, a.After = rawOrNull(before), rawOrNull(after)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("read the operator log: %w", err)
	}
	return out, nil
}

func rawOrNull(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}
