package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/scb/sim"
)

// rewriteSQL is the superuser: entry 4 of MASTER (SCB-1-USD -> SCB-2-USD, 1.00) gets
// another amount, and everything that would show it is recomputed: the balances-after of every
// later entry of both accounts, both balances, every later previous_hash and block_hash, the head.
var rewriteSQL = []string{
	`SET session_replication_role = replica`,
	`UPDATE ledger_entries SET amount = amount + 1 WHERE ledger_id = 'MASTER' AND seq = 4`,
	`UPDATE ledger_entries SET debit_balance_after = debit_balance_after - 1 WHERE ledger_id = 'MASTER' AND seq >= 4 AND debit_account_id = 'SCB-1-USD'`,
	`UPDATE ledger_entries SET credit_balance_after = credit_balance_after - 1 WHERE ledger_id = 'MASTER' AND seq >= 4 AND credit_account_id = 'SCB-1-USD'`,
	`UPDATE ledger_entries SET debit_balance_after = debit_balance_after + 1 WHERE ledger_id = 'MASTER' AND seq >= 4 AND debit_account_id = 'SCB-2-USD'`,
	`UPDATE ledger_entries SET credit_balance_after = credit_balance_after + 1 WHERE ledger_id = 'MASTER' AND seq >= 4 AND credit_account_id = 'SCB-2-USD'`,
	`UPDATE bank_accounts SET balance = balance - 1, available_balance = available_balance - 1 WHERE ledger_id = 'MASTER' AND id = 'SCB-1-USD'`,
	`UPDATE bank_accounts SET balance = balance + 1, available_balance = available_balance + 1 WHERE ledger_id = 'MASTER' AND id = 'SCB-2-USD'`,
	`DO $$
	DECLARE v_prev bytea; r record;
	BEGIN
	    SELECT block_hash INTO v_prev FROM ledger_entries WHERE ledger_id = 'MASTER' AND seq = 3;
	    FOR r IN SELECT seq FROM ledger_entries WHERE ledger_id = 'MASTER' AND seq >= 4 ORDER BY seq LOOP
	        UPDATE ledger_entries SET previous_hash = v_prev WHERE ledger_id = 'MASTER' AND seq = r.seq;
	        UPDATE ledger_entries e SET block_hash = ledger_entry_block_hash(e) WHERE ledger_id = 'MASTER' AND seq = r.seq
	        RETURNING block_hash INTO v_prev;
	    END LOOP;
	    UPDATE ledgers SET head_hash = v_prev WHERE id = 'MASTER';
	END $$`,
	`SET session_replication_role = origin`,
}

// TestSuperuserRewriteFoundByWitnesses: the second measured consequence. After a full
// rewrite by a superuser, audit and plain verify-chain pass as before; verify-chain --against-scbs
// and --checkpoints name seq 4 and exit 1.
func TestSuperuserRewriteFoundByWitnesses(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	e := newEnv(t)
	scbs := []*scbSim{startSim(t, "SCB-1", "k1", sim.Faults{}), startSim(t, "SCB-2", "k2", sim.Faults{})}
	owner := e.db.ConnStr
	dir := t.TempDir()
	key := filepath.Join(dir, "checkpoint.key")
	cps := filepath.Join(dir, "checkpoints")
	if _, stderr, code := cliWith(t, owner, nil, "checkpoint", "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	if _, stderr, code := cliWith(t, owner, nil, "checkpoint", "keygen", "--out", key); code == 0 {
		t.Errorf("keygen overwrote the key: %s", stderr)
	}
	e.settle(3, "a") // seq 1 fund, 2..4 settlements
	if out, stderr, code := cliWith(t, owner, nil, "checkpoint", "--key", key, "--dir", cps); code != 0 || !strings.Contains(out, "seq 4") {
		t.Fatalf("checkpoint: %d %s %s", code, out, stderr)
	}
	e.settle(2, "b") // seq 5 fund, 6..7 settlements
	if _, stderr, code := cliWith(t, owner, nil, "checkpoint", "--key", key, "--dir", cps); code != 0 {
		t.Fatalf("checkpoint: %s", stderr)
	}
	total := e.count("")
	w := e.worker("w1", scbs, nil)
	waitFor(t, "every row FINALIZED", 60*time.Second, func() bool { return e.count("FINALIZED") == total })
	_ = w.Process.Signal(syscall.SIGTERM)
	_ = w.Wait()

	verify := []string{"verify-chain", "--against-scbs", "--checkpoints", cps, "--checkpoint-key", key + ".pub"}
	if out, stderr, code := cliWith(t, owner, scbs, verify...); code != 0 {
		t.Fatalf("witnesses before the rewrite: exit %d: %s %s", code, out, stderr)
	}

	conn := e.db.Conn(t)
	for _, q := range rewriteSQL {
		if _, err := conn.Exec(context.Background(), q); err != nil {
			t.Fatalf("rewrite %q: %v", q, err)
		}
	}
	if out, stderr, code := cliWith(t, owner, nil, "audit"); code != 0 {
		t.Fatalf("audit after the rewrite: exit %d (the rewrite is not complete): %s %s", code, out, stderr)
	}
	if out, stderr, code := cliWith(t, owner, nil, "verify-chain"); code != 0 {
		t.Fatalf("verify-chain after the rewrite: exit %d: %s %s", code, out, stderr)
	}
	out, stderr, code := cliWith(t, owner, scbs, "verify-chain", "--against-scbs")
	if code != 1 || !strings.Contains(stderr, "ledger MASTER seq 4 ") || !strings.Contains(out, "CONTRADICTED by SCB-1 at seq 4") {
		t.Errorf("--against-scbs after the rewrite: exit %d\n%s\n%s", code, out, stderr)
	}
	// Every later entry the SCB holds is contradicted too, and the report says so (it once named
	// only the first): a rewrite on our side reads differently from one entry changed at the SCB.
	if !strings.Contains(out, "ledger MASTER: SCB-1 contradicts ") || !strings.Contains(out, "the last at seq 7") {
		t.Errorf("--against-scbs does not count the later contradictions:\n%s", out)
	}
	// A registered SCB that cannot be read does not hide what the others say (it once stopped the
	// run, exit 3, and the contradictions already found were lost).
	if _, stderr, code := cliWith(t, owner, nil, "banks", "register", "SCB-X", "--name", "Bank X"); code != 0 {
		t.Fatalf("register SCB-X: %s", stderr)
	}
	out, stderr, code = cliWith(t, owner, scbs, "verify-chain", "--against-scbs")
	if code != 1 || !strings.Contains(out, "CONTRADICTED by SCB-1 at seq 4") || !strings.Contains(out, "SCB-X: NOT READ: no API configured") ||
		!strings.Contains(stderr, "1 SCB(s) could not be read") {
		t.Errorf("--against-scbs with an SCB it cannot read: exit %d\n%s\n%s", code, out, stderr)
	}
	out, _, code = cliWith(t, owner, scbs, "--json", "verify-chain", "--against-scbs")
	var doc struct {
		OK      bool     `json:"ok"`
		NotRead []string `json:"scbs_not_read"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 || doc.OK || len(doc.NotRead) != 1 {
		t.Errorf("--json --against-scbs with an SCB it cannot read: exit %d %+v %v\n%s", code, doc, err, out)
	}
	out, stderr, code = cliWith(t, owner, nil, "verify-chain", "--checkpoints", cps, "--checkpoint-key", key+".pub")
	if code != 1 || !strings.Contains(stderr, "ledger MASTER seq 4 ") {
		t.Errorf("--checkpoints after the rewrite: exit %d\n%s\n%s", code, out, stderr)
	}

	// A checkpoint forged with another key is refused, not trusted.
	other := filepath.Join(dir, "other.key")
	if _, stderr, code := cliWith(t, owner, nil, "checkpoint", "keygen", "--out", other); code != 0 {
		t.Fatal(stderr)
	}
	forged := t.TempDir()
	if _, stderr, code := cliWith(t, owner, nil, "checkpoint", "--key", other, "--dir", forged); code != 0 {
		t.Fatal(stderr)
	}
	if out, stderr, code := cliWith(t, owner, nil, "verify-chain", "--checkpoints", forged, "--checkpoint-key", key+".pub"); code != 1 ||
		!strings.Contains(out, "other_key") {
		t.Errorf("a checkpoint of another key: exit %d\n%s\n%s", code, out, stderr)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v %v", fi, err)
	}
}
