package integrity

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/ledger"
	"dualledger/internal/scb"
)

// The chain proves nothing against whoever can rewrite it whole (every later block_hash and the
// head recomputed): it must also live somewhere else. It does: every SCB holds the block_hash of
// each entry it received. VerifyAgainstSCB reads an SCB's list and checks every hash it holds
// against ours; missing or altered entries are reconciliation's findings (internal/reconcile),
// only hashes count here. docs/hash-chain.md, "Witnesses".

// Lister is what VerifyAgainstSCB needs of an SCB's API (*scb.Client).
type Lister interface {
	List(ctx context.Context, since string, limit int) (scb.Page, error)
}

// Querier runs queries (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Contradiction is the first entry of a ledger whose block_hash an SCB holds differently, with
// how many of the ledger's entries it contradicts in all and the last of them: one contradicted
// entry reads differently from every entry after some seq (docs/runbooks/broken-chain.md tells a
// rewrite on the SCB's side from one on ours by that).
type Contradiction struct {
	LedgerID    string `json:"ledger_id"`
	Seq         int64  `json:"seq"`
	ReferenceID string `json:"reference_id"`
	SCBID       string `json:"scb_id"`
	Ours        string `json:"ours"`     // hex
	Theirs      string `json:"theirs"`   // hex, as the SCB holds it
	Count       int64  `json:"count"`    // contradicted entries of the ledger, this one included
	LastSeq     int64  `json:"last_seq"` // the highest contradicted seq
}

// WitnessReport is what one SCB's copy says about our chains.
type WitnessReport struct {
	SCBID string `json:"scb_id"`
	// Compared is how many of the SCB's entries matched one of ours by (ledger, reference);
	// Unmatched are the others (reconciliation reports them as missing_on_dbis).
	Compared  int64 `json:"compared"`
	Unmatched int64 `json:"unmatched"`
	// Confirmed is, per ledger, the highest seq whose hash the SCB holds as we do.
	Confirmed map[string]int64 `json:"confirmed"`
	// Contradictions has, per ledger, the lowest seq whose hash the SCB contradicts.
	Contradictions map[string]Contradiction `json:"contradictions"`
}

// VerifyAgainstSCB reads scbID's whole list (pageSize entries at a time, flat memory) and
// compares the block_hash it holds for each entry with ours.
func VerifyAgainstSCB(ctx context.Context, db Querier, scbID string, client Lister, pageSize int) (WitnessReport, error) {
	if pageSize <= 0 || pageSize > 1000 {
		pageSize = 1000
	}
	rep := WitnessReport{SCBID: scbID, Confirmed: map[string]int64{}, Contradictions: map[string]Contradiction{}}
	cursor := ""
	for {
		page, err := client.List(ctx, cursor, pageSize)
		if err != nil {
			return rep, fmt.Errorf("read %s's entries after %q: %w", scbID, cursor, err)
		}
		if err := rep.compare(ctx, db, page.Entries); err != nil {
			return rep, err
		}
		if !page.HasMore || len(page.Entries) == 0 {
			return rep, nil
		}
		if page.NextSince == "" || page.NextSince == cursor {
			return rep, fmt.Errorf("%s's list does not advance: next_since %q after %q", scbID, page.NextSince, cursor)
		}
		cursor = page.NextSince
	}
}

// witnessSQL finds our entry of each (ledger, reference) of a page.
const witnessSQL = `SELECT x.i, e.seq, encode(e.block_hash, 'hex')
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(l, r, i)
  JOIN ledger_entries e ON e.ledger_id = x.l AND e.reference_id = x.r`

func (rep *WitnessReport) compare(ctx context.Context, db Querier, entries []scb.EntryView) error {
	if len(entries) == 0 {
		return nil
	}
	ledgers := make([]string, len(entries))
	refs := make([]string, len(entries))
	for i, e := range entries {
		ledgers[i], refs[i] = e.LedgerID, e.ReferenceID
	}
	rows, err := db.Query(ctx, witnessSQL, ledgers, refs)
	if err != nil {
		return ledger.FromDB(err)
	}
	defer rows.Close()
	matched := 0
	for rows.Next() {
		var (
			i    int64
			seq  int64
			ours string
		)
		if err := rows.Scan(&i, &seq, &ours); err != nil {
			return ledger.FromDB(err)
		}
		e := entries[i-1]
		matched++
		if theirs := strings.ToLower(e.BlockHash); theirs == ours {
			rep.Confirmed[e.LedgerID] = max(rep.Confirmed[e.LedgerID], seq)
			continue
		}
		c, ok := rep.Contradictions[e.LedgerID]
		if !ok || seq < c.Seq {
			count, last := c.Count, c.LastSeq
			c = Contradiction{LedgerID: e.LedgerID, Seq: seq, ReferenceID: e.ReferenceID, SCBID: rep.SCBID,
				Ours: ours, Theirs: e.BlockHash, Count: count, LastSeq: last}
		}
		c.Count++
		c.LastSeq = max(c.LastSeq, seq)
		rep.Contradictions[e.LedgerID] = c
	}
	if err := rows.Err(); err != nil {
		return ledger.FromDB(err)
	}
	rep.Compared += int64(matched)
	rep.Unmatched += int64(len(entries) - matched)
	return nil
}

// AskingAgain returns l asking its SCB again after a retryable failure (a 429, a 5xx, a timeout:
// scb.Ask), within one budget of scb.AskBudget for the whole read: one busy moment of an SCB
// must not leave it unread (the review of 2026-12-02 saw verify-chain --against-scbs give up on
// an SCB for one 503, where reconciliation asked again).
func AskingAgain(l Lister) Lister { return &askingLister{l: l, budget: scb.AskBudget} }

type askingLister struct {
	l      Lister
	budget time.Duration
}

func (a *askingLister) List(ctx context.Context, since string, limit int) (scb.Page, error) {
	return scb.Ask(ctx, &a.budget, func() (scb.Page, error) { return a.l.List(ctx, since, limit) })
}
