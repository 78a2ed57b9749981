package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
)

// DryRunOutcome is what a dry run found.
type DryRunOutcome struct {
	Rows       int64  `json:"rows"`
	Valid      int64  `json:"valid"`    // would be posted (or found already there)
	Existing   int64  `json:"existing"` // their reference is already in the ledger (skipped if equal, else a conflict)
	Rejected   int64  `json:"rejected"` // in the report
	ErrorsFile string `json:"errors_file"`
}

// DryRun reads the whole source, transforms and validates every row, and checks what the ledger
// can say without posting: the ledger and both accounts exist, are active and hold the row's
// currency and asset type; whether the reference is already taken. It writes the report (a file
// of its own, truncated) and posts nothing, takes no lock and writes no checkpoint. It cannot
// foresee funds: a row that would overdraw is found only by the run, in order.
func DryRun(ctx context.Context, pool *pgxpool.Pool, open Opener, tr *transform.Transformer, cfg Config) (DryRunOutcome, error) {
	out := DryRunOutcome{ErrorsFile: cfg.ErrorsPath}
	f, err := os.Create(cfg.ErrorsPath)
	if err != nil {
		return out, fmt.Errorf("create the dry run's report: %w", err)
	}
	defer f.Close()
	rep := &report{f: f}
	src, err := open(ctx, "")
	if err != nil {
		return out, fmt.Errorf("open the source: %w", err)
	}
	defer src.Close()
	if h, ok := src.(interface{ Header() []string }); ok {
		if err := tr.CheckColumns(h.Header()); err != nil {
			return out, err
		}
	}
	type acct struct{ currency, asset, status string }
	accounts := map[string]map[string]*acct{} // ledger -> id -> account (nil: missing)
	ledgers := map[string]bool{}
	for {
		recs, eof, err := readBatch(ctx, src, max(cfg.BatchSize, 1))
		if err != nil {
			return out, fmt.Errorf("read the source: %w", err)
		}
		var batchLines []ReportLine
		byLed := map[string][]pending{}
		for i, rec := range recs {
			out.Rows++
			row, rej := tr.Transform(rec)
			if rej != nil {
				batchLines = append(batchLines, ReportLine{SourceType: cfg.SourceType, SourceID: cfg.SourceID, Position: rec.Pos, Line: rec.Line,
					Raw: rec.Raw, Code: rej.Code, Message: rej.Message, Details: rej.Details, idx: i})
				continue
			}
			byLed[row.LedgerID] = append(byLed[row.LedgerID], pending{idx: i, rec: rec, row: row})
		}
		for l, ps := range byLed {
			if _, seen := ledgers[l]; !seen {
				_, err := ledger.GetLedger(ctx, pool, l)
				ledgers[l] = err == nil
				if err != nil && ledger.CodeOf(err) != ledger.CodeUnknownLedger {
					return out, err
				}
				accounts[l] = map[string]*acct{}
			}
			var ids, refs []string
			for _, p := range ps {
				for _, id := range []string{p.row.Entry.DebitAccountID, p.row.Entry.CreditAccountID} {
					if _, ok := accounts[l][id]; !ok {
						ids = append(ids, id)
						accounts[l][id] = nil
					}
				}
				refs = append(refs, p.row.Entry.ReferenceID)
			}
			rows, err := pool.Query(ctx, `SELECT id, currency_code, asset_type, status FROM bank_accounts WHERE ledger_id = $1 AND id = ANY($2)`, l, ids)
			if err != nil {
				return out, err
			}
			for rows.Next() {
				var id string
				var a acct
				if err := rows.Scan(&id, &a.currency, &a.asset, &a.status); err != nil {
					rows.Close()
					return out, err
				}
				accounts[l][id] = &a
			}
			rows.Close()
			existing, err := collect(ctx, pool, `SELECT reference_id FROM ledger_entries WHERE ledger_id = $1 AND reference_id = ANY($2)`, l, refs)
			if err != nil {
				return out, err
			}
			taken := map[string]bool{}
			for _, r := range existing {
				taken[r] = true
			}
			for _, p := range ps {
				e := p.row.Entry
				code, msg := "", ""
				d, c := accounts[l][e.DebitAccountID], accounts[l][e.CreditAccountID]
				switch {
				case !ledgers[l]:
					code, msg = ledger.CodeUnknownLedger, fmt.Sprintf("unknown ledger %q", l)
				case d == nil || c == nil:
					missing := e.DebitAccountID
					if d != nil {
						missing = e.CreditAccountID
					}
					code, msg = ledger.CodeUnknownAccount, fmt.Sprintf("unknown account %q in ledger %q", missing, l)
				case e.DebitAccountID == e.CreditAccountID:
					code, msg = ledger.CodeSameAccount, fmt.Sprintf("debit and credit account are the same (%q)", e.DebitAccountID)
				case d.currency != e.CurrencyCode || c.currency != e.CurrencyCode || d.asset != e.AssetType || c.asset != e.AssetType:
					code, msg = ledger.CodeCurrencyMismatch, fmt.Sprintf("entry is %s %s but the accounts hold %s %s and %s %s", e.CurrencyCode, e.AssetType, d.currency, d.asset, c.currency, c.asset)
				case d.status != "active" || c.status != "active":
					code, msg = ledger.CodeAccountInactive, fmt.Sprintf("an account is not active (%s, %s)", d.status, c.status)
				}
				if code != "" {
					batchLines = append(batchLines, ReportLine{SourceType: cfg.SourceType, SourceID: cfg.SourceID, Position: p.rec.Pos, Line: p.rec.Line,
						LedgerID: l, Reference: e.ReferenceID, Raw: p.rec.Raw, Code: code, Message: msg, idx: p.idx})
					continue
				}
				out.Valid++
				if taken[e.ReferenceID] {
					out.Existing++
				}
			}
		}
		sortLines(batchLines)
		for _, l := range batchLines {
			if err := rep.add(l); err != nil {
				return out, err
			}
		}
		n, err := rep.flush()
		if err != nil {
			return out, err
		}
		rep.commit(n)
		out.Rejected += int64(len(batchLines))
		if cfg.Progress != nil {
			done, total := src.Progress()
			cfg.Progress(Stats{Processed: out.Rows, Successful: out.Valid, Failed: out.Rejected, Done: done, Total: total})
		}
		if eof {
			return out, nil
		}
		if ctx.Err() != nil {
			return out, errors.Join(ctx.Err(), io.ErrUnexpectedEOF)
		}
	}
}
