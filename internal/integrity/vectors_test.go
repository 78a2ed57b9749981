package integrity_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dualledger/internal/integrity"
	"dualledger/internal/ledger"
	"dualledger/internal/pg/pgtest"
)

// vectorSQL evaluates the SQL reference on one vector: the canonical bytes and
// sha256(previous_hash || canonical), plus what PostgreSQL makes of the client's inputs.
const vectorSQL = `
WITH c AS (
    SELECT ledger_entry_canonical($1::bigint, $2::text, $3::bigint, $4::text, $5::text, $6::numeric, $7::text, $8::text,
                                  $9::text, $10::text, nullif($11::text, '')::numeric, $12::jsonb, $13::timestamptz,
                                  nullif($14::bigint, 0)) AS canon
)
SELECT encode(canon, 'hex'), encode(sha256(decode($15::text, 'hex') || canon), 'hex'),
       $6::numeric(38,18)::text, coalesce(nullif($11::text, '')::numeric(38,18)::text, ''), $12::jsonb::text,
       to_char($13::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM c`

// TestHashVectorsSQL checks the SQL reference ledger_entry_canonical against the vectors that
// internal/ledger's TestCanonicalVectors checks the Go encoding against; once with the client's
// inputs (which PostgreSQL normalises) and once with the normalised text itself.
func TestHashVectorsSQL(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	for _, v := range integrity.HashVectors() {
		t.Run(v.Name, func(t *testing.T) {
			f := v.Fields
			inputs := map[string][4]string{
				"client input": {v.AmountInput, v.FxRateInput, v.MetadataInput, v.TimestampInput},
				"stored text":  {f.Amount, f.FxRate, f.Metadata, f.TimestampUTC.Format(time.RFC3339Nano)},
			}
			for name, in := range inputs {
				var canon, hash, amount, fx, meta, ts string
				err := d.Pool.QueryRow(ctx, vectorSQL, f.ID, f.LedgerID, f.Seq, f.DebitAccountID, f.CreditAccountID,
					in[0], f.CurrencyCode, f.AssetType, f.TransactionType, f.ReferenceID, in[1], in[2], in[3],
					f.ReversesEntryID, v.PreviousHash).Scan(&canon, &hash, &amount, &fx, &meta, &ts)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if canon != v.Canonical {
					t.Errorf("%s: SQL canonical\n %s\nwant\n %s", name, canon, v.Canonical)
				}
				if hash != v.BlockHash {
					t.Errorf("%s: SQL block_hash %s, want %s", name, hash, v.BlockHash)
				}
				if amount != f.Amount || fx != f.FxRate || meta != f.Metadata || ts != f.TimestampUTC.Format("2006-01-02T15:04:05.000000Z") {
					t.Errorf("%s: PostgreSQL renders amount %q fx_rate %q metadata %q timestamp %q; the vector says %q %q %q %v",
						name, amount, fx, meta, ts, f.Amount, f.FxRate, f.Metadata, f.TimestampUTC)
				}
			}
		})
	}
}

// TestHashVectorsPosted posts the vectors for real through post_ledger_entries (which builds the
// canonical encoding inline, in two halves around seq, for speed) into a fresh database, where
// entry ids start at 1: the stored block_hash must be the vector's.
func TestHashVectorsPosted(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO ledgers (id) VALUES ('MASTER'), ('SOVEREIGN')`,
		`INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit) VALUES
		   ('MASTER', 'issuance', 'USD', 'fiat', NULL), ('MASTER', 'SCB-1-settlement', 'USD', 'fiat', 0),
		   ('MASTER', 'SCB-2-settlement', 'USD', 'fiat', 0),
		   ('SOVEREIGN', 'vault:gold', 'XAU', 'commodity', NULL), ('SOVEREIGN', 'SCB-2/gold@reserve', 'XAU', 'commodity', 0)`,
	} {
		if _, err := d.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range integrity.HashVectors() {
		f := v.Fields
		// Entry ids come from ledger_entries_id_seq; in a fresh database they run 1, 2, 3.
		if _, err := d.Pool.Exec(ctx, `SELECT setval('ledger_entries_id_seq', $1, false)`, f.ID); err != nil {
			t.Fatal(err)
		}
		e := entry{
			"debit_account_id": f.DebitAccountID, "credit_account_id": f.CreditAccountID, "amount": v.AmountInput,
			"currency_code": f.CurrencyCode, "asset_type": f.AssetType, "transaction_type": f.TransactionType,
			"reference_id": f.ReferenceID, "metadata": json.RawMessage(v.MetadataInput), "timestamp_utc": v.TimestampInput,
		}
		if v.FxRateInput != "" {
			e["fx_rate"] = v.FxRateInput
		}
		if f.ReversesEntryID != 0 {
			e["reverses_entry_id"] = f.ReversesEntryID
		}
		res := post(t, d.Pool, f.LedgerID, []entry{e})
		if *res[0].EntryID != f.ID || *res[0].Seq != f.Seq {
			t.Fatalf("%s: posted as entry %d seq %d, the vector is entry %d seq %d", v.Name, *res[0].EntryID, *res[0].Seq, f.ID, f.Seq)
		}
		var prev, hash string
		err := d.Pool.QueryRow(ctx, `SELECT encode(previous_hash, 'hex'), encode(block_hash, 'hex') FROM ledger_entries
			WHERE ledger_id = $1 AND seq = $2`, f.LedgerID, f.Seq).Scan(&prev, &hash)
		if err != nil {
			t.Fatal(err)
		}
		if prev != v.PreviousHash || hash != v.BlockHash {
			t.Errorf("%s: posted entry has previous_hash %s block_hash %s, want %s %s", v.Name, prev, hash, v.PreviousHash, v.BlockHash)
		}
	}
}

// TestHashVectorsDocumented: docs/hash-chain.md shows every vector's canonical bytes and
// block_hash, so the specification cannot drift from the code either.
func TestHashVectorsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/hash-chain.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	// The document wraps long hex in lines; compare with the line breaks removed.
	flat := strings.NewReplacer("\n", "", " ", "").Replace(text)
	for _, v := range integrity.HashVectors() {
		if !strings.Contains(flat, v.Canonical) {
			t.Errorf("docs/hash-chain.md lacks the canonical hex of vector %q", v.Name)
		}
		if !strings.Contains(text, v.BlockHash) {
			t.Errorf("docs/hash-chain.md lacks the block_hash of vector %q (%s)", v.Name, v.BlockHash)
		}
		if v.PreviousHash != strings.Repeat("0", 64) && !strings.Contains(text, v.PreviousHash) {
			t.Errorf("docs/hash-chain.md lacks the previous_hash of vector %q", v.Name)
		}
	}
}

// TestRealEntriesGoMatchesSQL posts entries with everything that could make the two encodings
// differ (18-decimal amounts, metadata keys in any order, nested and non-ASCII metadata, escapes,
// fx rates, reversals, explicit and default timestamps) through post_ledger_entries, then
// recomputes each block_hash in Go and with the SQL reference: both must equal the stored one.
func TestRealEntriesGoMatchesSQL(t *testing.T) {
	d := pgtest.New(t)
	ctx := context.Background()
	createLedger(t, d.Pool, "REAL")
	metas := []string{
		`{}`, `null`, `{"b": 2, "a": 1}`, `{"a": 1, "b": 2}`, `{"long_key_first": 1, "k": {"z": [3, 2, 1], "y": null}}`,
		`{"memo": "Zahlung für Müller – 東京 🚀", "emoji": "\ud83d\ude80"}`, `{"q": "quote \" backslash \\ slash /"}`,
		`{"ctl": "\u0000 is not allowed in jsonb text, but \u0001\u001f and \n\r\t are"}`,
		`{"n": [1.50, 1e3, -0.0, 12345678901234567890123456789, 0.000000000000000000001]}`, `{"dup": 1, "dup": 2}`,
		`{"": "empty key", "a b": true, "ü": false}`,
	}
	var entries []entry
	for i := range 60 {
		e := entry{
			"debit_account_id": "vault:gold", "credit_account_id": "SCB-2/gold@reserve",
			"amount": fmt.Sprintf("%d.%018d", i%3, 123456789012345678+int64(i)), "currency_code": "XAU", "asset_type": "commodity",
			"transaction_type": "allocation", "reference_id": fmt.Sprintf("réf ✓ %d", i),
		}
		if m := metas[i%len(metas)]; !strings.Contains(m, `\u0000`) {
			e["metadata"] = json.RawMessage(m)
		}
		switch i % 4 {
		case 0:
			e["fx_rate"] = "1.085"
		case 1:
			e["fx_rate"] = "0.000000000000000001"
			e["timestamp_utc"] = fmt.Sprintf("2024-02-29T23:59:59.%06d+05:30", i*1000+7)
		case 2:
			e["timestamp_utc"] = "1900-01-01T00:00:00Z"
		}
		if i%6 == 5 { // USD, two decimals, issuance -> account
			e["debit_account_id"], e["credit_account_id"] = "issuance", "a1"
			e["currency_code"], e["asset_type"], e["amount"] = "USD", "fiat", "1234567890123.45"
		}
		entries = append(entries, e)
	}
	res := post(t, d.Pool, "REAL", entries)
	// Reversals of some of them, by entry id.
	var revs []entry
	for i := 0; i < len(entries); i += 7 {
		r := entry{}
		for k, v := range entries[i] {
			r[k] = v
		}
		r["debit_account_id"], r["credit_account_id"] = entries[i]["credit_account_id"], entries[i]["debit_account_id"]
		r["reference_id"] = fmt.Sprintf("rev-%d", i)
		r["transaction_type"] = "reversal"
		r["reverses_entry_id"] = *res[i].EntryID
		revs = append(revs, r)
	}
	post(t, d.Pool, "REAL", revs)

	rows, err := d.Pool.Query(ctx, `SELECT id, seq, debit_account_id, credit_account_id, amount::text, currency_code, asset_type,
		       transaction_type, reference_id, coalesce(fx_rate::text, ''), metadata::text, timestamp_utc,
		       coalesce(reverses_entry_id, 0), previous_hash, block_hash, ledger_entry_block_hash(e)
		  FROM ledger_entries e WHERE ledger_id = 'REAL' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		f                  ledger.CanonicalFields
		prev, stored, sqlH []byte
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		f := &x.f
		err := r.Scan(&f.ID, &f.Seq, &f.DebitAccountID, &f.CreditAccountID, &f.Amount, &f.CurrencyCode, &f.AssetType,
			&f.TransactionType, &f.ReferenceID, &f.FxRate, &f.Metadata, &f.TimestampUTC, &f.ReversesEntryID,
			&x.prev, &x.stored, &x.sqlH)
		f.LedgerID = "REAL"
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries)+len(revs) {
		t.Fatalf("%d entries stored, posted %d", len(got), len(entries)+len(revs))
	}
	var sawNonASCII, saw18, sawRev bool
	for _, x := range got {
		goH := ledger.BlockHash(x.prev, x.f)
		if hex.EncodeToString(goH) != hex.EncodeToString(x.stored) || hex.EncodeToString(x.sqlH) != hex.EncodeToString(x.stored) {
			t.Errorf("seq %d: stored %x, Go %x, SQL %x\n  canonical %q", x.f.Seq, x.stored, goH, x.sqlH, ledger.Canonical(x.f))
		}
		sawNonASCII = sawNonASCII || strings.Contains(x.f.Metadata, "東京")
		saw18 = saw18 || strings.HasSuffix(x.f.Amount, "678") || strings.HasSuffix(x.f.Amount, "679")
		sawRev = sawRev || x.f.ReversesEntryID != 0
	}
	if !sawNonASCII || !saw18 || !sawRev {
		t.Fatalf("the data lacks a case: non-ASCII %v, 18 decimals %v, reversal %v", sawNonASCII, saw18, sawRev)
	}

	rep, err := integrity.VerifyChain(ctx, d.Pool, "REAL", integrity.VerifyOptions{PageSize: 16})
	if err != nil || !rep.Intact || rep.Entries != int64(len(got)) {
		t.Fatalf("VerifyChain: %+v, %v", rep, err)
	}
	a, err := integrity.Audit(ctx, d.Pool, integrity.AuditOptions{})
	if err != nil || !a.OK {
		t.Fatalf("audit: %v\n%s", err, describe(a))
	}
}

// TestHoldEventVectors: the Go encoding, the SQL reference and docs/hash-chain.md agree on the
// hold-event vectors.
func TestHoldEventVectors(t *testing.T) {
	d := pgtest.New(t)
	doc, err := os.ReadFile("../../docs/hash-chain.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.NewReplacer("\n", "", " ", "").Replace(string(doc))
	for _, v := range integrity.HoldEventVectors() {
		prev, _ := hex.DecodeString(v.PreviousHash)
		if got := hex.EncodeToString(ledger.HoldEventCanonical(v.Fields)); got != v.Canonical {
			t.Errorf("%s: Go canonical\n%s\nwant\n%s", v.Name, got, v.Canonical)
		}
		if got := hex.EncodeToString(ledger.HoldEventHash(prev, v.Fields)); got != v.Hash {
			t.Errorf("%s: Go hash %s, want %s", v.Name, got, v.Hash)
		}
		f := v.Fields
		var entry *int64
		if f.EntryID != 0 {
			entry = &f.EntryID
		}
		var canon, hash string
		err := d.Pool.QueryRow(context.Background(), `SELECT encode(c, 'hex'), encode(sha256($19::bytea || c), 'hex') FROM
			ledger_hold_event_canonical($1, $2, $3, $4, $5, $6, $7, $8::numeric, $9, $10, $11, $12::numeric, $13::jsonb,
			                            $14, $15, $16::numeric, $17, $18) AS c`,
			f.LedgerID, f.Seq, f.HoldID, f.ReferenceID, f.Event, f.DebitAccountID, f.CreditAccountID, f.HoldAmount,
			f.CurrencyCode, f.AssetType, f.TransactionType, f.FxRate, f.Metadata, f.TimestampUTC, f.ExpiresAt, f.Amount,
			entry, f.EntrySeq, prev).Scan(&canon, &hash)
		if err != nil {
			t.Fatal(err)
		}
		if canon != v.Canonical || hash != v.Hash {
			t.Errorf("%s: SQL canonical %s hash %s, want %s %s", v.Name, canon, hash, v.Canonical, v.Hash)
		}
		if !strings.Contains(flat, v.Canonical) || !strings.Contains(string(doc), v.Hash) {
			t.Errorf("docs/hash-chain.md lacks the canonical hex or the hash of %q", v.Name)
		}
	}
}
