package db_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"dualledger/internal/pg/pgtest"
)

// maxUSD is the largest USD amount (20 integer digits): one more cent of it, anywhere, is 10^20,
// which NUMERIC(38,18) cannot hold.
const maxUSD = "99999999999999999999.99"

// overflowLedger is a database with ledger OTHER and USD accounts U and V (unlimited overdraft),
// X and Z (none), the black-box tester's set-up.
type overflowLedger struct {
	t *testing.T
	p *pgxpool.Pool
}

// outcome is one result of a posting or hold function.
type outcome struct {
	Code    string
	Msg     string
	Details map[string]any
}

func newOverflowLedger(t *testing.T) *overflowLedger {
	t.Helper()
	o := &overflowLedger{t: t, p: pgtest.New(t).Pool}
	mustExec(t, o.p, `INSERT INTO ledgers (id) VALUES ('OTHER')`)
	mustExec(t, o.p, `INSERT INTO bank_accounts (ledger_id, id, currency_code, asset_type, overdraft_limit)
		VALUES ('OTHER', 'U', 'USD', 'fiat', NULL), ('OTHER', 'V', 'USD', 'fiat', NULL),
		       ('OTHER', 'X', 'USD', 'fiat', 0), ('OTHER', 'Z', 'USD', 'fiat', 0)`)
	return o
}

func ovEntry(ref, debit, credit, amount string) map[string]any {
	return map[string]any{"debit_account_id": debit, "credit_account_id": credit, "amount": amount,
		"currency_code": "USD", "asset_type": "fiat", "transaction_type": "transfer", "reference_id": ref}
}

func (o *overflowLedger) outcomes(sql string, args ...any) []outcome {
	o.t.Helper()
	rows, err := o.p.Query(context.Background(), sql, args...)
	if err != nil {
		o.t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out []outcome
	for rows.Next() {
		var code string
		var msg *string
		var details []byte
		if err := rows.Scan(&code, &msg, &details); err != nil {
			o.t.Fatal(err)
		}
		r := outcome{Code: code}
		if msg != nil {
			r.Msg = *msg
		}
		if len(details) > 0 {
			if err := json.Unmarshal(details, &r.Details); err != nil {
				o.t.Fatal(err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		o.t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// post posts entries as one batch and returns their results in batch order.
func (o *overflowLedger) post(atomic bool, entries ...map[string]any) []outcome {
	o.t.Helper()
	body, _ := json.Marshal(entries)
	return o.outcomes(`SELECT result, message, details FROM post_ledger_entries('OTHER', $1::jsonb, $2) ORDER BY idx`, string(body), atomic)
}

func (o *overflowLedger) hold(ref, debit, credit, amount string, extra ...string) outcome {
	o.t.Helper()
	h := ovEntry(ref, debit, credit, amount)
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	body, _ := json.Marshal(h)
	return o.outcomes(`SELECT result, message, details FROM create_ledger_hold('OTHER', $1::jsonb)`, string(body))[0]
}

func (o *overflowLedger) capture(hold, ref, amount string) outcome {
	o.t.Helper()
	c := map[string]any{"reference_id": ref}
	if amount != "" {
		c["amount"] = amount
	}
	body, _ := json.Marshal(c)
	return o.outcomes(`SELECT result, message, details FROM capture_ledger_hold('OTHER', $1, $2::jsonb)`, hold, string(body))[0]
}

// balances returns an account's balance, available_balance and reserved_balance as stored.
func (o *overflowLedger) balances(id string) [3]string {
	o.t.Helper()
	var b [3]string
	if err := o.p.QueryRow(context.Background(), `SELECT trim_scale(balance)::text, trim_scale(available_balance)::text,
		trim_scale(reserved_balance)::text FROM bank_accounts WHERE ledger_id = 'OTHER' AND id = $1`, id).Scan(&b[0], &b[1], &b[2]); err != nil {
		o.t.Fatal(err)
	}
	return b
}

func (o *overflowLedger) wantBalances(id string, want [3]string) {
	o.t.Helper()
	if got := o.balances(id); got != want {
		o.t.Errorf("account %s: balance, available, reserved %v, want %v", id, got, want)
	}
}

func wantCreated(t *testing.T, what string, got outcome) {
	t.Helper()
	if got.Code != "created" {
		t.Fatalf("%s: %s %s %v, want created", what, got.Code, got.Msg, got.Details)
	}
}

// wantOverflow checks the rejection of an amount that would take column of account beyond
// NUMERIC(38,18): invalid_amount, a message naming both, details with the same facts.
func wantOverflow(t *testing.T, what string, got outcome, amount, account, column string) {
	t.Helper()
	msg := "amount " + amount + " would take the " + column + ` of account "` + account + `" beyond NUMERIC(38,18) (20 integer digits)`
	if got.Code != "invalid_amount" || got.Msg != msg ||
		got.Details["field"] != "amount" || got.Details["account_id"] != account || got.Details["balance"] != column || len(got.Details) != 3 {
		t.Errorf("%s: %s %q %v\nwant invalid_amount %q, details field amount, account_id %s, balance %s",
			what, got.Code, got.Msg, got.Details, msg, account, column)
	}
}

func codesOf(rs []outcome) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Code)
	}
	return strings.Join(s, ",")
}

// TestBalanceOverflowRejected: every stored balance a posting or a hold operation moves
// (balance, available_balance, reserved_balance, of the debit and the credit account) is checked
// against NUMERIC(38,18) before it is written. The entry or hold that would overflow is answered
// invalid_amount naming the account and the column, nothing of it is written, and the other
// entries of a non-atomic batch are posted; the database never raises 22003 (which failed the
// whole statement).
func TestBalanceOverflowRejected(t *testing.T) {
	t.Run("posting: debit available_balance, funds reserved by a hold", func(t *testing.T) {
		// The black-box tester's reproduction: U's balance is 0 but maxUSD of it is reserved, so
		// its available_balance is -maxUSD; one more cent out of U is -10^20.
		o := newOverflowLedger(t)
		wantCreated(t, "hold r1", o.hold("r1", "U", "X", maxUSD))
		wantOverflow(t, "hold r2", o.hold("r2", "U", "X", "0.01"), "0.01", "U", "available_balance")
		wantOverflow(t, "entry r3", o.post(false, ovEntry("r3", "U", "X", "0.01"))[0], "0.01", "U", "available_balance")
		rs := o.post(false, ovEntry("r6", "V", "Z", "1.00"), ovEntry("r7", "U", "X", "0.01"))
		if codesOf(rs) != "created,invalid_amount" {
			t.Fatalf("non-atomic batch: %v", rs)
		}
		wantOverflow(t, "batch entry r7", rs[1], "0.01", "U", "available_balance")
		rs = o.post(true, ovEntry("r8", "V", "Z", "1.00"), ovEntry("r9", "U", "X", "0.01"))
		if codesOf(rs) != "not_applied,invalid_amount" {
			t.Fatalf("atomic batch: %v", rs)
		}
		wantOverflow(t, "atomic batch entry r9", rs[1], "0.01", "U", "available_balance")
		o.wantBalances("U", [3]string{"0", "-" + maxUSD, maxUSD})
		o.wantBalances("Z", [3]string{"1", "1", "0"})
		o.wantBalances("X", [3]string{"0", "0", "0"})
		var holds, entries int
		if err := o.p.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM ledger_holds WHERE ledger_id = 'OTHER'),
			(SELECT count(*) FROM ledger_entries WHERE ledger_id = 'OTHER')`).Scan(&holds, &entries); err != nil {
			t.Fatal(err)
		}
		if holds != 1 || entries != 1 {
			t.Errorf("%d holds and %d entries written, want 1 (r1) and 1 (r6)", holds, entries)
		}
	})
	t.Run("posting: debit balance", func(t *testing.T) {
		o := newOverflowLedger(t)
		wantCreated(t, "r1", o.post(false, ovEntry("r1", "U", "X", maxUSD))[0])
		wantOverflow(t, "r2", o.post(false, ovEntry("r2", "U", "Z", "0.01"))[0], "0.01", "U", "balance")
		o.wantBalances("U", [3]string{"-" + maxUSD, "-" + maxUSD, "0"})
	})
	t.Run("posting: credit balance", func(t *testing.T) {
		o := newOverflowLedger(t)
		wantCreated(t, "r1", o.post(false, ovEntry("r1", "U", "X", maxUSD))[0])
		rs := o.post(false, ovEntry("r2", "V", "Z", "1.00"), ovEntry("r3", "V", "X", "0.01"))
		if codesOf(rs) != "created,invalid_amount" {
			t.Fatalf("non-atomic batch: %v", rs)
		}
		wantOverflow(t, "r3", rs[1], "0.01", "X", "balance")
		o.wantBalances("X", [3]string{maxUSD, maxUSD, "0"})
		o.wantBalances("V", [3]string{"-1", "-1", "0"})
	})
	t.Run("posting: credit available_balance, the walk on its own", func(t *testing.T) {
		// available_balance = balance - reserved_balance <= balance, so with 004's CHECKs the
		// credit's balance always overflows first: this asks the walk directly, with accounts
		// read under the lock and X's available_balance set to maxUSD (balance 0).
		o := newOverflowLedger(t)
		ctx := context.Background()
		tx, err := o.p.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `DO $$
			DECLARE b dl_post_batch; a dl_post_accounts; w dl_post_walked; v numeric[];
			BEGIN
				b := dl_post_parse('OTHER', '[{"debit_account_id": "V", "credit_account_id": "X", "amount": "0.01",
					"currency_code": "USD", "asset_type": "fiat", "transaction_type": "transfer", "reference_id": "w1"}]');
				a := dl_post_lock('OTHER', b);
				v := a.avail;
				v[(a.map ->> 'X')::integer] := 99999999999999999999.99;
				a.avail := v;
				w := dl_post_walk('OTHER', b, dl_post_replays('OTHER', b, ROW(a.head_seq, NULL, NULL)::dl_post_refs, a.head_seq),
				                  a, dl_post_reversal_targets('OTHER', b));
				PERFORM set_config('dltest.walk', json_build_array((w.res).code[1], (w.res).msg[1], (w.res).details[1])::text, true);
			END $$`); err != nil {
			t.Fatal(err)
		}
		var raw string
		if err := tx.QueryRow(ctx, `SELECT current_setting('dltest.walk')`).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var got []json.RawMessage
		var r outcome
		if json.Unmarshal([]byte(raw), &got) != nil || len(got) != 3 || json.Unmarshal(got[0], &r.Code) != nil ||
			json.Unmarshal(got[1], &r.Msg) != nil || json.Unmarshal(got[2], &r.Details) != nil {
			t.Fatalf("walk result %s", raw)
		}
		wantOverflow(t, "walk", r, "0.01", "X", "available_balance")
	})
	t.Run("hold: debit reserved_balance", func(t *testing.T) {
		// U's balance is 5·10^19, so reserving maxUSD leaves its available_balance well in range;
		// one more cent reserved is 10^20.
		o := newOverflowLedger(t)
		wantCreated(t, "fund", o.post(false, ovEntry("fund", "V", "U", "50000000000000000000.00"))[0])
		wantCreated(t, "h1", o.hold("h1", "U", "X", maxUSD))
		wantOverflow(t, "h2", o.hold("h2", "U", "X", "0.01"), "0.01", "U", "reserved_balance")
		o.wantBalances("U", [3]string{"50000000000000000000", "-49999999999999999999.99", maxUSD})
	})
	t.Run("hold: debit available_balance", func(t *testing.T) {
		// U's balance is -5·10^19: reserving 5·10^19 - 0.01 takes its available_balance to
		// -maxUSD while reserved_balance stays at half the limit.
		o := newOverflowLedger(t)
		wantCreated(t, "spend", o.post(false, ovEntry("spend", "U", "X", "50000000000000000000.00"))[0])
		wantCreated(t, "h1", o.hold("h1", "U", "X", "49999999999999999999.99"))
		wantOverflow(t, "h2", o.hold("h2", "U", "Z", "0.01"), "0.01", "U", "available_balance")
		o.wantBalances("U", [3]string{"-50000000000000000000", "-" + maxUSD, "49999999999999999999.99"})
	})
	t.Run("hold: the balances its capture would move", func(t *testing.T) {
		o := newOverflowLedger(t)
		wantCreated(t, "r1", o.post(false, ovEntry("r1", "U", "X", maxUSD))[0])
		wantOverflow(t, "hold out of U", o.hold("h1", "U", "Z", "0.01"), "0.01", "U", "balance")
		wantOverflow(t, "hold into X", o.hold("h2", "V", "X", "0.01"), "0.01", "X", "balance")
		o.wantBalances("U", [3]string{"-" + maxUSD, "-" + maxUSD, "0"})
		o.wantBalances("V", [3]string{"0", "0", "0"})
	})
	t.Run("capture: credit balance", func(t *testing.T) {
		o := newOverflowLedger(t)
		wantCreated(t, "h1", o.hold("h1", "U", "X", "1.00"))
		wantCreated(t, "fill", o.post(false, ovEntry("fill", "V", "X", "99999999999999999999.00"))[0])
		wantOverflow(t, "capture of all", o.capture("h1", "c1", ""), "1", "X", "balance")
		o.wantBalances("U", [3]string{"0", "-1", "1"}) // still reserved: the hold is pending
		wantCreated(t, "capture of 0.99", o.capture("h1", "c2", "0.99"))
		o.wantBalances("X", [3]string{maxUSD, maxUSD, "0"})
		o.wantBalances("U", [3]string{"-0.99", "-0.99", "0"})
	})
	t.Run("void and expiry at the limit", func(t *testing.T) {
		// A release lowers reserved_balance and raises available_balance up to balance: always
		// in range, so holds of maxUSD are released.
		o := newOverflowLedger(t)
		wantCreated(t, "h1", o.hold("h1", "U", "X", maxUSD))
		if got := o.outcomes(`SELECT result, message, details FROM void_ledger_hold('OTHER', 'h1')`)[0]; got.Code != "created" {
			t.Fatalf("void: %v", got)
		}
		o.wantBalances("U", [3]string{"0", "0", "0"})
		soon := time.Now().Add(time.Second).UTC().Format("2006-01-02T15:04:05.000000Z07:00")
		wantCreated(t, "h2", o.hold("h2", "U", "X", maxUSD, "expires_at", soon))
		ctx := context.Background()
		for due := false; !due; {
			time.Sleep(50 * time.Millisecond)
			if err := o.p.QueryRow(ctx, `SELECT expires_at <= clock_timestamp() FROM ledger_holds WHERE reference_id = 'h2'`).Scan(&due); err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := o.p.QueryRow(ctx, `SELECT count(*) FROM expire_ledger_holds('OTHER')`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("expire: %d holds, %v", n, err)
		}
		o.wantBalances("U", [3]string{"0", "0", "0"})
	})
	t.Run("release checked before it is written", func(t *testing.T) {
		// Unreachable while the reservations add up (see dl_hold_reserve): U's reservation is
		// taken away by hand (the posting flag lets a superuser past the guard; the CHECKs still
		// hold), so releasing the hold would raise available_balance to 10^20 + 4. The release
		// is refused as invalid_amount before the UPDATE, not by the database's overflow.
		o := newOverflowLedger(t)
		wantCreated(t, "h1", o.hold("h1", "U", "X", "5.00"))
		ctx := context.Background()
		tx, err := o.p.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT set_config('dualledger.posting', 'on', true)`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE bank_accounts SET balance = 99999999999999999999, available_balance = 99999999999999999999,
			reserved_balance = 0 WHERE ledger_id = 'OTHER' AND id = 'U'`); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, `SELECT * FROM void_ledger_hold('OTHER', 'h1')`)
		if sqlState(err) != "DL006" || !strings.Contains(err.Error(),
			`invalid_amount: amount 5 would take the available_balance of account "U" beyond NUMERIC(38,18)`) {
			t.Fatalf("void: want DL006 invalid_amount naming U's available_balance, got %v", err)
		}
	})
}

// TestMetadataSizeInTheDatabase: the posting function refuses an entry whose metadata takes more
// than 1 MiB stored, whoever calls it (the API's own, configurable cap is at most that): a psql
// caller once posted 2 MB of metadata, hashed into the chain and sent to the SCBs. The entry
// alone is refused; the rest of the batch posts.
func TestMetadataSizeInTheDatabase(t *testing.T) {
	o := newOverflowLedger(t)
	big := ovEntry("meta-big", "U", "V", "1.00")
	big["metadata"] = map[string]any{"blob": strings.Repeat("x", 1100000)}
	fits := ovEntry("meta-fits", "U", "V", "1.00")
	fits["metadata"] = map[string]any{"blob": strings.Repeat("y", 1000000)}
	got := o.post(false, big, fits)
	if len(got) != 2 || got[0].Code != "invalid_request" || got[0].Details["field"] != "metadata" ||
		!strings.Contains(got[0].Msg, "at most 1048576 (1 MiB)") || got[1].Code != "created" {
		t.Errorf("results %+v", got)
	}
}

// TestHoldMetadataLeavesRoomForItsCapture: a capture adds hold_reference_id to the hold's
// metadata; a hold whose metadata fits the 1 MiB alone but not with that key is refused when it is
// created (the review of 2026-12-02: it was created, then every capture failed with a message about
// metadata the capture did not have, and the funds stayed reserved).
func TestHoldMetadataLeavesRoomForItsCapture(t *testing.T) {
	o := newOverflowLedger(t)
	create := func(ref string, n int) outcome {
		h := ovEntry(ref, "U", "V", "1.00")
		h["metadata"] = map[string]any{"a": strings.Repeat("x", n)}
		body, _ := json.Marshal(h)
		return o.outcomes(`SELECT result, message, details FROM create_ledger_hold('OTHER', $1::jsonb)`, string(body))[0]
	}
	// 1,048,567 bytes stored alone (an entry with it posts), 1,048,596 with the capture's key.
	if got := o.post(false, map[string]any{"debit_account_id": "U", "credit_account_id": "V", "amount": "1.00",
		"currency_code": "USD", "asset_type": "fiat", "transaction_type": "t", "reference_id": "as-entry",
		"metadata": map[string]any{"a": strings.Repeat("x", 1048550)}}); got[0].Code != "created" {
		t.Fatalf("the metadata alone as an entry: %+v", got)
	}
	if got := create("hbig", 1048550); got.Code != "invalid_request" || got.Details["field"] != "metadata" ||
		!strings.Contains(got.Msg, "hold_reference_id its capture adds") {
		t.Errorf("a hold whose capture could not be stored: %+v", got)
	}
	if got := create("hfits", 1048500); got.Code != "created" {
		t.Fatalf("a hold with room for its capture: %+v", got)
	}
	if got := o.capture("hfits", "hfits-c", ""); got.Code != "created" {
		t.Errorf("its capture: %+v", got)
	}
}
