package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/backfill/transform"
	"dualledger/internal/ledger"
)

// DryRunOutcome is what a dry run found.
type DryRunOutcome struct {
	Rows       int64  `json:"rows"`
	Valid      int64  `json:"valid"`    // would be posted, or skipped as duplicates
	Existing   int64  `json:"existing"` // of Valid: the same posting is in the ledger, or an earlier row of the source (skipped)
	Rejected   int64  `json:"rejected"` // in the report
	ErrorsFile string `json:"errors_file"`
}

// DryRun reads the whole source, transforms and validates every row, and checks what the ledger
// can say without posting: the ledger and both accounts exist, are active and hold the row's
// currency and asset type; whether the reference is already taken, in the ledger or by an earlier
// row of the source, and if so whether with the same content (skipped, as the run would) or not
// (reference_conflict, as the run would report). It writes the report (a file of its own,
// truncated) and posts nothing, takes no lock and writes no checkpoint. It cannot foresee funds: a
// row that would overdraw is found only by the run, in order.
func DryRun(ctx context.Context, pool *pgxpool.Pool, open Opener, tr *transform.Transformer, cfg Config) (DryRunOutcome, error) {
	out := DryRunOutcome{ErrorsFile: cfg.ErrorsPath}
	f, err := os.Create(cfg.ErrorsPath)
	if err != nil {
		return out, fmt.Errorf("create the dry run's report: %w", err)
	}
	defer f.Close()
	rep := &report{f: f}
	// The references seen so far, with the content of their first row, in a temporary table of
	// one session: memory stays flat however long the source is.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return out, fmt.Errorf("connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, dryRunRefsTable); err != nil {
		return out, fmt.Errorf("prepare the dry run: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS pg_temp.dl_dry_run_refs`) }()
	var ord int64 // the row's place in the source, for "earlier"
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
			byLed[row.LedgerID] = append(byLed[row.LedgerID], pending{idx: i, rec: rec, row: row, ord: ord + int64(i)})
		}
		ord += int64(len(recs))
		for l, ps := range byLed {
			if _, seen := ledgers[l]; !seen {
				_, err := ledger.GetLedger(ctx, pool, l)
				ledgers[l] = err == nil
				if err != nil && ledger.CodeOf(err) != ledger.CodeUnknownLedger {
					return out, err
				}
				accounts[l] = map[string]*acct{}
			}
			var ids []string
			for _, p := range ps {
				for _, id := range []string{p.row.Entry.DebitAccountID, p.row.Entry.CreditAccountID} {
					if _, ok := accounts[l][id]; !ok {
						ids = append(ids, id)
						accounts[l][id] = nil
					}
				}
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
			var valid []pending
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
				valid = append(valid, p)
			}
			refs, err := checkReferences(ctx, conn.Conn(), l, valid)
			if err != nil {
				return out, err
			}
			for i, p := range valid {
				if r := refs[i]; r.conflict != "" {
					batchLines = append(batchLines, ReportLine{SourceType: cfg.SourceType, SourceID: cfg.SourceID, Position: p.rec.Pos, Line: p.rec.Line,
						LedgerID: l, Reference: p.row.Entry.ReferenceID, Raw: p.rec.Raw, Code: ledger.CodeReferenceConflict,
						Message: r.conflict, Details: r.details, idx: p.idx})
					continue
				} else if r.duplicate && !cfg.SkipDuplicates {
					// As the run reports it (--skip-duplicates=false).
					batchLines = append(batchLines, ReportLine{SourceType: cfg.SourceType, SourceID: cfg.SourceID, Position: p.rec.Pos, Line: p.rec.Line,
						LedgerID: l, Reference: p.row.Entry.ReferenceID, Raw: p.rec.Raw, Code: ledger.CodeReplayed,
						Message: fmt.Sprintf("reference_id %q is already in ledger %s, or in an earlier row of the source, with the same content; --skip-duplicates=false refuses it",
							p.row.Entry.ReferenceID, l), idx: p.idx})
					continue
				} else if r.duplicate {
					out.Existing++
				}
				out.Valid++
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
		if cfg.Progress != nil && len(recs) > 0 {
			done, total := src.Progress()
			cfg.Progress(Stats{Processed: out.Rows, Successful: out.Valid, Failed: out.Rejected, Done: done, Total: total,
				Position: recs[len(recs)-1].Pos})
		}
		if eof {
			return out, nil
		}
		if ctx.Err() != nil {
			return out, errors.Join(ctx.Err(), io.ErrUnexpectedEOF)
		}
	}
}

// dryRunRefsTable holds, per ledger, the first valid row of the source with each reference.
const dryRunRefsTable = `DROP TABLE IF EXISTS pg_temp.dl_dry_run_refs;
CREATE TEMPORARY TABLE dl_dry_run_refs (
    ledger_id text, reference_id text, ord bigint, pos text,
    debit text, credit text, amount numeric, currency text, asset text, ttype text, fx numeric, meta jsonb,
    ts timestamptz, reverses bigint,
    PRIMARY KEY (ledger_id, reference_id))`

// dryRunRefsInsert records the first row of each reference of a batch not seen before.
const dryRunRefsInsert = `INSERT INTO pg_temp.dl_dry_run_refs
SELECT DISTINCT ON (b.ref) $1, b.ref, b.ord, b.pos, b.debit, b.credit, b.amount::numeric, b.currency, b.asset, b.ttype,
       b.fx::numeric, coalesce(b.meta::jsonb, '{}'), b.ts::timestamptz, b.reverses
  FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
              $11::text[], $12::text[], $13::text[], $14::bigint[])
       AS b(ord, pos, ref, debit, credit, amount, currency, asset, ttype, fx, meta, ts, reverses)
 ORDER BY b.ref, b.ord
ON CONFLICT (ledger_id, reference_id) DO NOTHING`

// dryRunRefsCheck compares each row of a batch with the entry holding its reference in the ledger
// and with the first earlier row of the source holding it, field by field as the posting function
// does (dl_entry_diff: a timestamp is compared only when the later row states one).
const dryRunRefsCheck = `SELECT b.ord, le.id,
       CASE WHEN le.id IS NOT NULL THEN dl_entry_diff(le.debit_account_id, le.credit_account_id, le.amount, le.currency_code,
           le.asset_type, le.transaction_type, le.fx_rate, le.metadata, le.timestamp_utc, le.reverses_entry_id,
           b.debit, b.credit, b.amount::numeric, b.currency, b.asset, b.ttype, b.fx::numeric, coalesce(b.meta::jsonb, '{}'),
           b.ts::timestamptz, b.ts IS NOT NULL, b.reverses) END,
       f.pos,
       CASE WHEN f.ord IS NOT NULL THEN dl_entry_diff(f.debit, f.credit, f.amount, f.currency, f.asset, f.ttype, f.fx, f.meta,
           f.ts, f.reverses,
           b.debit, b.credit, b.amount::numeric, b.currency, b.asset, b.ttype, b.fx::numeric, coalesce(b.meta::jsonb, '{}'),
           b.ts::timestamptz, b.ts IS NOT NULL, b.reverses) END
  FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
              $11::text[], $12::text[], $13::text[], $14::bigint[])
       AS b(ord, pos, ref, debit, credit, amount, currency, asset, ttype, fx, meta, ts, reverses)
  LEFT JOIN ledger_entries le ON le.ledger_id = $1 AND le.reference_id = b.ref
  LEFT JOIN pg_temp.dl_dry_run_refs f ON f.ledger_id = $1 AND f.reference_id = b.ref AND f.ord < b.ord
 ORDER BY b.ord`

// refCheck is what the dry run found about one row's reference: a duplicate the run would skip,
// or the message of the conflict it would report.
type refCheck struct {
	duplicate bool
	conflict  string
	details   json.RawMessage
}

// checkReferences checks the references of rows (valid so far, of ledger l, in source order):
// an entry of the ledger holding the reference decides, as in the run; otherwise an earlier row of
// the source does (the run posts the first and answers the later one from it).
func checkReferences(ctx context.Context, conn *pgx.Conn, l string, rows []pending) ([]refCheck, error) {
	out := make([]refCheck, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	n := len(rows)
	ords := make([]int64, n)
	var pos, refs, debits, credits, amounts, currencies, assets, ttypes []string
	fxs, metas, tss := make([]*string, n), make([]*string, n), make([]*string, n)
	reverses := make([]*int64, n)
	at := map[int64]int{}
	for i, p := range rows {
		e := p.row.Entry
		ords[i] = p.ord
		at[p.ord] = i
		pos = append(pos, p.rec.Pos)
		refs = append(refs, e.ReferenceID)
		debits = append(debits, e.DebitAccountID)
		credits = append(credits, e.CreditAccountID)
		amounts = append(amounts, e.Amount)
		currencies = append(currencies, e.CurrencyCode)
		assets = append(assets, e.AssetType)
		ttypes = append(ttypes, e.TransactionType)
		fxs[i], tss[i], reverses[i] = e.FxRate, e.TimestampUTC, e.ReversesEntryID
		if len(e.Metadata) > 0 {
			m := string(e.Metadata)
			metas[i] = &m
		}
	}
	args := []any{l, ords, pos, refs, debits, credits, amounts, currencies, assets, ttypes, fxs, metas, tss, reverses}
	if _, err := conn.Exec(ctx, dryRunRefsInsert, args...); err != nil {
		return nil, fmt.Errorf("dry run: record references: %w", err)
	}
	res, err := conn.Query(ctx, dryRunRefsCheck, args...)
	if err != nil {
		return nil, fmt.Errorf("dry run: check references: %w", err)
	}
	var (
		ord        int64
		entryID    *int64
		ledgerDiff []string
		firstPos   *string
		fileDiff   []string
	)
	_, err = pgx.ForEachRow(res, []any{&ord, &entryID, &ledgerDiff, &firstPos, &fileDiff}, func() error {
		i, ok := at[ord]
		if !ok {
			return fmt.Errorf("dry run: check references: row %d is not of the batch", ord)
		}
		ref := refs[i]
		switch {
		case entryID != nil && len(ledgerDiff) == 0, entryID == nil && firstPos != nil && len(fileDiff) == 0,
			entryID != nil && transform.OwnDelivery(rows[i].row, *entryID, ledgerDiff):
			out[i].duplicate = true
		case entryID != nil:
			out[i].conflict = fmt.Sprintf("reference_id %s was already used for entry %d with a different %s",
				quoteJSON(ref), *entryID, strings.Join(ledgerDiff, ", "))
			out[i].details, _ = json.Marshal(map[string]any{"reference_id": ref, "existing_entry_id": *entryID, "fields": ledgerDiff})
		case firstPos != nil:
			out[i].conflict = fmt.Sprintf("reference_id %s is used by an earlier row of the source (position %s) with a different %s",
				quoteJSON(ref), *firstPos, strings.Join(fileDiff, ", "))
			out[i].details, _ = json.Marshal(map[string]any{"reference_id": ref, "first_position": *firstPos, "fields": fileDiff})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dry run: check references: %w", err)
	}
	return out, nil
}

// quoteJSON quotes s as the posting function's messages do (to_jsonb).
func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
