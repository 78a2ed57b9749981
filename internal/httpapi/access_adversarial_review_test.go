package httpapi

// Adversarial review of issue 6 (access control). Tests named ...Defect... document a defect and
// fail until it is fixed; the others confirm a property that held up under attack.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"dualledger/internal/auth"
)

// memberBankWorld: MASTER with SCB-1 (funded 1,000,000.00 by fund-1) and SCB-2, plus an entry
// that does not touch SCB-1 at all: issuance -> SCB-2-USD 4321.09 ("secret-2"). It returns the
// secret entry's id and a member-bank key of SCB-1 with read, post and settle.
func memberBankWorld(t *testing.T, e *env) (secretID int64, tok string) {
	t.Helper()
	stlSetup(e)
	e.mustStatus(e.post("MASTER", entry("secret-2", "issuance", "SCB-2-USD", "4321.09")), http.StatusCreated)
	secretID = int64(e.mustStatus(e.do("GET", "/v1/ledgers/MASTER/entries/secret-2", nil), http.StatusOK).get("id").(float64))
	bank1 := "SCB-1"
	tok = e.newKey(auth.Spec{Name: "SCB-1 ops", Scopes: []string{auth.ScopeRead, auth.ScopePost, auth.ScopeSettle}, BankID: &bank1})
	// The premise: SCB-1's key may not read that entry.
	if r := e.as(tok, "GET", "/v1/ledgers/MASTER/entries/secret-2", nil); r.status != http.StatusForbidden {
		t.Fatalf("premise: SCB-1 reads secret-2: %d %s", r.status, r.raw)
	}
	return secretID, tok
}

// Was a defect (high), fixed in review: a member bank's key reads any entry of the ledger, amount and both accounts,
// through the error of a reversal it is allowed to attempt. reverses_entry_id is checked by the
// posting function after the accounts: with its own account as debit (checkDebits passes) and any
// account of the same currency as credit, the answer is 422 invalid_reversal "entry N moved
// 4321.09 USD from "issuance" to "SCB-2-USD" ...". Entry ids are sequential, so the whole ledger
// can be walked, without a cent moving. unknown_entry vs invalid_reversal also says which ids exist.
func TestAdversarialReviewFixedMemberBankReadsForeignEntryThroughReversalError(t *testing.T) {
	e := newEnv(t, Config{})
	secretID, tok := memberBankWorld(t, e)
	before := e.snapshot()

	probe := entry("probe-rev-1", "SCB-1-USD", "SCB-2-USD", "0.01")
	probe["reverses_entry_id"] = secretID
	r := e.as(tok, "POST", "/v1/ledgers/MASTER/entries", probe)
	var leaked []string
	for _, secret := range []string{"4321.09", `\"issuance\"`, `"issuance"`} {
		if strings.Contains(string(r.raw), secret) {
			leaked = append(leaked, secret)
		}
	}
	if len(leaked) > 0 || r.status != http.StatusForbidden {
		t.Errorf("REGRESSION: SCB-1's key posted a reversal of entry %d (issuance -> SCB-2-USD, which it may not read) and got %d %s; "+
			"the answer reveals %v. Want 403 forbidden, the same as for an entry that does not exist.\n%s",
			secretID, r.status, r.errCode(), leaked, r.raw)
	}

	single := r
	// The same probe in a batch (atomic: nothing is written either way).
	r = e.as(tok, "POST", "/v1/ledgers/MASTER/entries/batch", map[string]any{"atomic": true, "entries": []any{probe}})
	if strings.Contains(string(r.raw), "4321.09") {
		t.Errorf("REGRESSION: the same leak through an atomic batch: %d %s", r.status, r.raw)
	}

	// Existence oracle: an id that exists answers differently from one that does not.
	ghost := entry("probe-rev-2", "SCB-1-USD", "SCB-2-USD", "0.01")
	ghost["reverses_entry_id"] = secretID + 1000
	g := e.as(tok, "POST", "/v1/ledgers/MASTER/entries", ghost)
	if g.status != single.status || g.errCode() != single.errCode() {
		t.Errorf("REGRESSION: existence oracle: an existing entry id -> %d %s, a missing one -> %d %s", single.status, single.errCode(), g.status, g.errCode())
	}
	if after := e.snapshot(); after != before {
		t.Errorf("the probes changed the database: %s -> %s", before, after)
	}
}

// Was a defect (high), fixed in review: every entry a member bank's key may see carries both accounts' balances after
// the entry, the counterparty's too. A key that pays 0.01 to any account of its currency reads
// that account's balance in the answer (credit_balance_after), although GET of the account is 403;
// the entry list and the settlement answers show the same for every counterparty, issuance
// included.
func TestAdversarialReviewFixedMemberBankLearnsCounterpartyBalances(t *testing.T) {
	e := newEnv(t, Config{})
	_, tok := memberBankWorld(t, e) // SCB-2-USD holds 4321.09 now
	if r := e.as(tok, "GET", "/v1/ledgers/MASTER/accounts/SCB-2-USD", nil); r.status != http.StatusForbidden {
		t.Fatalf("premise: SCB-1 reads SCB-2's account: %d", r.status)
	}
	var leaks []string
	check := func(where string, m map[string]any) {
		if m == nil {
			return
		}
		for _, side := range []string{"debit", "credit"} {
			acct, _ := m[side+"_account_id"].(string)
			bal, _ := m[side+"_balance_after"].(string)
			if !strings.HasPrefix(acct, "SCB-1") && bal != "" {
				leaks = append(leaks, fmt.Sprintf("%s: %s balance of %s = %s", where, side, acct, bal))
			}
		}
	}
	// Pay a cent, read the payee's balance.
	r := e.mustStatus(e.as(tok, "POST", "/v1/ledgers/MASTER/entries", entry("peek-1", "SCB-1-USD", "SCB-2-USD", "0.01")), http.StatusCreated)
	m, _ := r.get("entry").(map[string]any)
	check("POST entries (answer)", m)
	m = e.mustStatus(e.as(tok, "GET", "/v1/ledgers/MASTER/entries/peek-1", nil), http.StatusOK).body
	check("GET entry peek-1", m)
	m = e.mustStatus(e.as(tok, "GET", "/v1/ledgers/MASTER/entries/fund-1", nil), http.StatusOK).body
	check("GET entry fund-1", m)
	r = e.mustStatus(e.as(tok, "POST", "/v1/settlements", stlBody("peek-2", "SCB-1", "SCB-2", "0.01")), http.StatusAccepted)
	m, _ = r.get("entry").(map[string]any)
	check("POST settlements (answer)", m)
	for _, x := range e.mustStatus(e.as(tok, "GET", "/v1/ledgers/MASTER/entries", nil), http.StatusOK).get("entries").([]any) {
		check("GET entries list", x.(map[string]any))
	}
	if len(leaks) > 0 {
		t.Errorf("REGRESSION: SCB-1's key sees balances of accounts it may not read (GET of them is 403):\n  %s",
			strings.Join(leaks, "\n  "))
	}
}

// Was a defect (medium), fixed in review: a member bank's key learns whether any reference exists on the ledger, the id
// of its entry and which of its fields equal a guess, from reference_conflict (409), both through
// POST entries and POST /v1/settlements. With an amount beyond its funds, a reference that was
// never used answers 422 insufficient_funds and nothing moves; a used one answers 409 with
// details.existing_entry_id and details.fields, e.g. ["debit_account_id"] when credit account,
// amount and currency were guessed right.
func TestAdversarialReviewFixedMemberBankReferenceConflictOracle(t *testing.T) {
	e := newEnv(t, Config{})
	secretID, tok := memberBankWorld(t, e)
	before := e.snapshot()

	fresh := e.as(tok, "POST", "/v1/ledgers/MASTER/entries", entry("never-used", "SCB-1-USD", "SCB-2-USD", "99999999.00"))
	guessRight := e.as(tok, "POST", "/v1/ledgers/MASTER/entries", entry("secret-2", "SCB-1-USD", "SCB-2-USD", "4321.09"))
	guessWrong := e.as(tok, "POST", "/v1/ledgers/MASTER/entries", entry("secret-2", "SCB-1-USD", "SCB-2-USD", "4321.10"))
	stl := e.as(tok, "POST", "/v1/settlements", stlBody("secret-2", "SCB-1", "SCB-2", "4321.09"))

	var problems []string
	for name, r := range map[string]*resp{"entry, right guess": guessRight, "entry, wrong guess": guessWrong, "settlement": stl} {
		if id, ok := r.get("error", "details", "existing_entry_id").(float64); ok && int64(id) == secretID {
			problems = append(problems, fmt.Sprintf("%s: existing_entry_id %d", name, int64(id)))
		}
		if f := r.get("error", "details", "fields"); f != nil {
			problems = append(problems, fmt.Sprintf("%s: differing fields %v", name, f))
		}
	}
	if !slices.Equal(fieldsOf(guessRight), fieldsOf(guessWrong)) {
		problems = append(problems, fmt.Sprintf("amount oracle: guess 4321.09 -> fields %v, guess 4321.10 -> fields %v",
			fieldsOf(guessRight), fieldsOf(guessWrong)))
	}
	if len(problems) > 0 {
		t.Errorf("REGRESSION: SCB-1's key probes entry secret-2 (issuance -> SCB-2-USD), which it may not read; a never-used reference "+
			"answers %d %s, secret-2 answers %d %s and reveals:\n  %s",
			fresh.status, fresh.errCode(), guessRight.status, guessRight.errCode(), strings.Join(problems, "\n  "))
	}
	if after := e.snapshot(); after != before {
		t.Errorf("the probes changed the database: %s -> %s", before, after)
	}
}

func fieldsOf(r *resp) []string {
	var out []string
	list, _ := r.get("error", "details", "fields").([]any)
	for _, f := range list {
		s, _ := f.(string)
		out = append(out, s)
	}
	return out
}

// Was a defect (medium), fixed in review: any key that may send a body (here a rate-limited member bank's post key)
// holds every in-flight slot by sending headers and a partial body: the slot is taken before the
// body is read, and kept until the body completes or the read timeout (60 s by default) ends it.
// Everyone else, admins included, then gets 429 overloaded. The per-key rate limit does not help:
// it bounds requests per second, not requests in flight.
func TestAdversarialReviewFixedSlowBodiesHoldEveryInFlightSlot(t *testing.T) {
	e := newEnv(t, Config{MaxInFlight: 4})
	stlSetup(e)
	bank1 := "SCB-1"
	rate := 5.0
	tok := e.newKey(auth.Spec{Name: "slow SCB-1", Scopes: []string{auth.ScopePost}, BankID: &bank1, RateLimit: &rate})
	addr := e.ts.Listener.Addr().String()
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST /v1/ledgers/MASTER/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{", tok)
	}
	// Fixed: a body is read before its request takes a slot, so the slow ones hold none.
	time.Sleep(300 * time.Millisecond)
	if n := len(e.srv.slots); n != 0 {
		t.Errorf("the slow requests hold %d slots", n)
	}
	r := e.do("GET", "/v1/ledgers", nil) // the operator's admin key
	if r.status != http.StatusOK {
		t.Errorf("REGRESSION: 4 unfinished request bodies of one rate-limited member-bank key (5 req/s) hold all 4 in-flight slots; "+
			"the admin's GET /v1/ledgers answers %d %s. In production they are held until --read-timeout (60 s) and renewed at will.",
			r.status, r.errCode())
	}
}

// Was a defect (medium), fixed in review: the connection cap (netutil.LimitListener) is taken by idle keep-alive
// connections of anyone, unauthenticated: each sends one GET /healthz and then idles, held for
// --idle-timeout (90 s). Past the cap, new connections wait in the kernel's backlog without any
// timeout, so every client, admin or SCB, hangs.
func TestAdversarialReviewFixedIdleConnectionsLockEveryoneOut(t *testing.T) {
	d := newEnv(t, Config{}).db
	srv, err := New(d.Pool, Config{MaxConns: 4, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		cancel()
		<-served
	})
	for range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		hr, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, hr.Body)
		hr.Body.Close()
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	hr, err := client.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Errorf("REGRESSION: 4 idle unauthenticated keep-alive connections take the whole connection cap (MaxConns 4; 2048 in "+
			"production, held 90 s each); a new client gets no answer: %v", err)
		return
	}
	hr.Body.Close()
}

// Held up: bearer parsing. Lower-case scheme and extra spaces work (RFC 7235: the scheme is
// case-insensitive); anything that is not exactly the token is 401 with one message; a second
// Authorization header cannot rescue a bad first one; a huge header is refused without a 500.
func TestAdversarialReviewBearerParsing(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	tok := e.newKey(auth.Spec{Name: "reader", Scopes: []string{auth.ScopeRead}})
	revoked, err := auth.Create(context.Background(), e.db.Conn(t), "cli:test", auth.Spec{Name: "old", Scopes: []string{auth.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Revoke(context.Background(), e.db.Conn(t), "cli:test", revoked.ID, "rotated"); err != nil {
		t.Fatal(err)
	}
	// The refresher may have loaded the key before the revocation: it then works for up to a
	// refresh (500 ms, documented). Reload now, as the refresher would.
	if err := e.srv.Keys().Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	get := func(headers ...string) *resp {
		req, _ := http.NewRequest("GET", e.ts.URL+"/v1/ledgers/L", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Add(headers[i], headers[i+1])
		}
		return e.sendWith(e.raw, req)
	}
	for _, h := range []string{"Bearer " + tok, "bearer " + tok, "BEARER " + tok, "Bearer   " + tok, "Bearer " + tok + "  "} {
		if r := get("Authorization", h); r.status != 200 {
			t.Errorf("%q: %d", h[:10], r.status)
		}
	}
	var msgs []string
	for _, h := range []string{
		"", "Bearer", "Bearer ", "Basic " + tok, tok, "Bearer " + tok + "x", "Bearer " + tok[:len(tok)-1], "Bearer " + strings.ToUpper(tok),
		"Bearer\t" + tok, "Bearer " + tok + " " + tok, "Bearer " + revoked.Token, "Bearer dl_" + strings.Repeat("a", 60),
		"Bearer " + strings.Repeat("x", 60000),
	} {
		r := get("Authorization", h)
		if r.status != 401 && !(r.status == 431 && len(h) > 50000) {
			t.Errorf("%.20q...: %d %s", h, r.status, r.raw)
		}
		if r.status == 401 {
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%.20q: 401 without WWW-Authenticate", h)
			}
			if h != "" && h != "Bearer" && h != "Bearer " && !strings.HasPrefix(h, "Basic") && h != tok && !strings.HasPrefix(h, "Bearer\t") {
				msgs = append(msgs, r.str("error", "message"))
			}
		}
	}
	if u := slices.Compact(slices.Sorted(slices.Values(msgs))); len(u) != 1 {
		t.Errorf("unknown, malformed and revoked tokens answer different messages: %v", u)
	}
	if r := get("Authorization", "Bearer garbage", "Authorization", "Bearer "+tok); r.status != 401 {
		t.Errorf("bad first Authorization, good second: %d", r.status)
	}
	// Two headers are refused whatever they hold (the first one was used, silently).
	if r := get("Authorization", "Bearer "+tok, "Authorization", "Bearer garbage"); r.status != 401 || !strings.Contains(r.str("error", "message"), "more than one Authorization header") {
		t.Errorf("good first Authorization, bad second: %d %s", r.status, r.raw)
	}
	if r := get("Authorization", "Bearer "+tok, "Authorization", "Bearer "+tok); r.status != 401 {
		t.Errorf("the same Authorization twice: %d", r.status)
	}
}

// Held up: a key limited to ledger L cannot reach another ledger by any spelling of its id in the
// path (percent-encoding decodes to the same id the database compares; case, spaces, slashes and
// dot segments name other ledgers or none, and are 403).
func TestAdversarialReviewLedgerLimitEncodings(t *testing.T) {
	e := newEnv(t, Config{})
	e.setupUSD()
	e.createLedger("OTHER")
	e.createLedger("l")
	tok := e.newKey(auth.Spec{Name: "L only", Scopes: []string{auth.ScopeRead, auth.ScopePost}, Ledgers: []string{"L"}})
	get := func(path string) *resp {
		req, err := http.NewRequest("GET", e.ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		return e.sendWith(e.raw, req)
	}
	if r := get("/v1/ledgers/%4C"); r.status != 200 || r.str("id") != "L" {
		t.Errorf("%%4C: %d %s", r.status, r.raw)
	}
	for _, p := range []string{
		"/v1/ledgers/l", "/v1/ledgers/OTHER", "/v1/ledgers/%4FTHER", "/v1/ledgers/L%20", "/v1/ledgers/%20L", "/v1/ledgers/L%00",
		"/v1/ledgers/OTHER%2F..%2FL", "/v1/ledgers/L%2F..%2FOTHER/accounts", "/v1/ledgers/L/../OTHER/accounts",
		"/v1/ledgers/./OTHER/entries", "/v1/ledgers/OTHER/accounts/../../L", "/v1/ledgers/L%E2%80%8B",
	} {
		r := get(p)
		if r.status == 200 {
			if id := r.str("id"); id != "L" {
				t.Errorf("%s: 200 %s", p, r.raw)
			}
			continue
		}
		if r.status != 403 && r.status != 404 && r.status != 400 {
			t.Errorf("%s: %d %s", p, r.status, r.raw)
		}
	}
	// Posting through a percent-encoded id of another ledger.
	if r := e.as(tok, "POST", "/v1/ledgers/%4FTHER/entries", entry("x", "issuance", "alice", "1.00")); r.status != 403 {
		t.Errorf("post to %%4FTHER: %d %s", r.status, r.raw)
	}
}

// Held up: whatever string a non-admin key gives as an overdraft limit, the account it opens
// has no credit. GrantsCredit and ParseOverdraft share money.ParseAmount, so what is waved
// through as zero is stored as zero, and anything it cannot read is refused.
func TestAdversarialReviewOverdraftStrings(t *testing.T) {
	e := newEnv(t, Config{})
	e.createLedger("L")
	tok := e.newKey(auth.Spec{Name: "accounts", Scopes: []string{auth.ScopeAccounts}})
	cases := []string{"0", "0.00", "-0", "000.000", "0.000000000000000000", "-0.00", "0e0", "0E5", " 0", "0 ", " 1", "1 ",
		"unlimited ", " unlimited", "Unlimited", "UNLIMITED", "unlimited\u0000", "1e2", "+1", "0x1", "", "NaN", "Infinity",
		"-Infinity", "-1", "0.0000000000000000001", "1,000", "１", "0.", ".5", "00000000000000000000000000000000000000001",
		"99999999999999999999.999999999999999999", "١"}
	for i, od := range cases {
		r := e.as(tok, "POST", "/v1/ledgers/L/accounts", map[string]any{"id": fmt.Sprintf("a%d", i), "currency_code": "USD",
			"asset_type": "fiat", "overdraft_limit": od})
		switch r.status {
		case 201:
			if r.str("overdraft_limit") != "0.00" {
				t.Errorf("%q: created with overdraft_limit %s", od, r.str("overdraft_limit"))
			}
		case 400, 403:
		default:
			t.Errorf("%q: %d %s", od, r.status, r.raw)
		}
	}
	var credit int
	if err := e.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM bank_accounts WHERE ledger_id = 'L' AND overdraft_limit IS DISTINCT FROM 0`).Scan(&credit); err != nil || credit != 0 {
		t.Errorf("accounts with credit opened by a non-admin key: %d %v", credit, err)
	}
}

// Held up: what a member bank's key may not do through PATCH and through key routes, whichever
// body it sends, and what a key of one ledger may not do through settlements (they live on
// MASTER).
func TestAdversarialReviewMemberBankAndLedgerKeysElsewhere(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	bank1 := "SCB-1"
	tok := e.newKey(auth.Spec{Name: "SCB-1 all", Scopes: []string{auth.ScopeRead, auth.ScopePost, auth.ScopeSettle, auth.ScopeAccounts},
		BankID: &bank1})
	other := e.newKey(auth.Spec{Name: "L only settle", Scopes: []string{auth.ScopeSettle, auth.ScopeRead}, Ledgers: []string{"L"}})
	before := e.snapshot()
	for _, a := range []struct {
		tok, method, path string
		body              any
	}{
		{tok, "PATCH", "/v1/ledgers/MASTER/accounts/SCB-1-USD", map[string]any{"status": "active", "reason": "mine"}},
		{tok, "PATCH", "/v1/ledgers/MASTER/accounts/SCB-1-USD", map[string]any{"overdraft_limit": "0", "reason": "mine"}},
		{tok, "PATCH", "/v1/ledgers/MASTER/accounts/ghost", map[string]any{"status": "frozen", "reason": "x"}},
		{tok, "POST", "/v1/ledgers/MASTER/accounts", map[string]any{"id": "SCB-1-x", "currency_code": "USD", "asset_type": "fiat",
			"bank_id": "SCB-1", "overdraft_limit": "0.01"}},
		{tok, "GET", "/v1/keys", nil},
		{tok, "GET", "/v1/operator-actions", nil},
		{other, "POST", "/v1/settlements", stlBody("o1", "SCB-1", "SCB-2", "1.00")},
		{other, "GET", "/v1/settlements/fund-1", nil},
		{other, "GET", "/v1/settlements/ghost", nil},
	} {
		if r := e.as(a.tok, a.method, a.path, a.body); r.status != http.StatusForbidden {
			t.Errorf("%s %s: %d %s", a.method, a.path, r.status, r.raw)
		}
	}
	if after := e.snapshot(); after != before {
		t.Errorf("refused requests changed the database: %s -> %s", before, after)
	}
	// A member bank's key's reads of foreign things answer the same 403 whether they exist or not.
	pairs := [][2]string{
		{"/v1/ledgers/MASTER/accounts/SCB-2-USD", "/v1/ledgers/MASTER/accounts/ghost"},
		{"/v1/ledgers/MASTER/entries/fund-1-nope", "/v1/ledgers/MASTER/entries/ghost"},
		{"/v1/settlements/ghost", "/v1/settlements/ghost2"},
	}
	e.mustStatus(e.post("MASTER", entry("s2", "issuance", "SCB-2-USD", "5.00")), 201)
	pairs = append(pairs, [2]string{"/v1/ledgers/MASTER/entries/s2", "/v1/ledgers/MASTER/entries/ghost"},
		[2]string{"/v1/settlements/s2", "/v1/settlements/ghost"})
	for _, p := range pairs {
		a, b := e.as(tok, "GET", p[0], nil), e.as(tok, "GET", p[1], nil)
		if a.status != 403 || b.status != 403 || a.str("error", "message") != b.str("error", "message") {
			t.Errorf("%s vs %s: %d %s / %d %s", p[0], p[1], a.status, a.raw, b.status, b.raw)
		}
	}
}

// Was a defect (low/medium), fixed in review: an unauthenticated client holds in-flight slots whenever the key table is
// slow to answer. The slot is taken before authentication, and a well-formed token of an unknown
// key id (anyone can make one: "dl_" + 16 base32 + "_" + 43 characters) costs a database look-up
// each time, never cached as unknown. Here the look-ups wait on a lock (any slow database, or a
// pool busy with postings, does the same); 4 token-less-in-effect requests hold the 4 slots and
// the admin, whose key is in memory, gets 429.
func TestAdversarialReviewFixedUnauthenticatedLookupsHoldSlots(t *testing.T) {
	e := newEnv(t, Config{MaxInFlight: 4})
	e.setupUSD()
	e.mustStatus(e.do("GET", "/v1/ledgers", nil), http.StatusOK) // the admin key is loaded
	conn := e.db.Conn(t)
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			_ = tx.Rollback(context.Background())
		}
	}
	t.Cleanup(release)
	done := make(chan int, 4)
	for i := range 4 {
		go func() {
			req, _ := http.NewRequest("GET", e.ts.URL+"/v1/ledgers", nil)
			// A made-up token of the right shape: key id part of 16 base32 letters, 43 characters of secret.
			req.Header.Set("Authorization", "Bearer dl_"+strings.Repeat(string(rune('a'+i)), 16)+"_"+strings.Repeat("A", 43))
			hr, err := e.raw.Do(req)
			if err == nil {
				hr.Body.Close()
				done <- hr.StatusCode
				return
			}
			done <- 0
		}()
	}
	// Fixed: keys are authenticated before a slot is taken, and unknown ids are looked up
	// behind a bounded, shared probe: the slots stay free.
	time.Sleep(300 * time.Millisecond)
	held := len(e.srv.slots)
	r := e.do("GET", "/v1/ledgers", nil)
	release()
	for range 4 {
		<-done
	}
	if r.status != http.StatusOK {
		t.Errorf("REGRESSION: %d unauthenticated requests with made-up well-formed tokens hold the in-flight slots while their key "+
			"look-up waits on the database; the admin (key in memory) gets %d %s", held, r.status, r.errCode())
	}
}

// Held up: an admin key cannot be limited (it could mint itself an unlimited one), nor a member
// bank's key register banks, through POST /v1/keys; a non-admin key cannot reach /v1/keys.
func TestAdversarialReviewLimitedAdminRefused(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	for _, body := range []map[string]any{
		{"name": "x", "scopes": []string{"admin"}, "ledgers": []string{"MASTER"}},
		{"name": "x", "scopes": []string{"read", "admin"}, "bank_id": "SCB-1"},
		{"name": "x", "scopes": []string{"banks"}, "bank_id": "SCB-1"},
		{"name": "x", "scopes": []string{"admin", "admin"}, "ledgers": []string{"MASTER", "MASTER"}},
		{"name": "x", "scopes": []string{"Admin"}},
		{"name": "x", "scopes": []string{"read"}, "ledgers": []string{"MASTER:X"}},
	} {
		if r := e.do("POST", "/v1/keys", body); r.status != 400 && r.status != 404 {
			t.Errorf("%v: %d %s", body, r.status, r.raw)
		}
	}
	acc := e.newKey(auth.Spec{Name: "all but admin", Scopes: []string{"read", "post", "settle", "accounts", "banks"}})
	for _, rq := range [][2]string{{"GET", "/v1/keys"}, {"POST", "/v1/keys"}, {"GET", "/v1/operator-actions"}, {"POST", "/v1/ledgers"}} {
		var body any
		if rq[0] == "POST" {
			body = map[string]any{"name": "x", "scopes": []string{"admin"}, "id": "X"}
		}
		if r := e.as(acc, rq[0], rq[1], body); r.status != 403 {
			t.Errorf("%s %s with every scope but admin: %d", rq[0], rq[1], r.status)
		}
	}
}

// Was a defect (low), fixed in review: POST /v1/keys with a bank_id that is not registered answers 500 internal (and
// logs an ERROR) instead of the documented 404 unknown_bank: ledger.FromDB maps
// bank_accounts_bank_id_fkey but not api_keys_bank_id_fkey, so keyError's unknown_bank branch is
// never taken. The CLI's `keys create --bank TYPO` shows the raw constraint error the same way.
func TestAdversarialReviewFixedKeyForUnknownBankIs500(t *testing.T) {
	e := newEnv(t, Config{})
	e.allowErrorLogs = true
	r := e.do("POST", "/v1/keys", map[string]any{"name": "typo", "scopes": []string{"read"}, "bank_id": "SCB-9"})
	if r.status != http.StatusNotFound || r.errCode() != "unknown_bank" {
		t.Errorf("REGRESSION: a key for an unregistered bank: %d %s, want 404 unknown_bank (documented in the OpenAPI document)", r.status, r.raw)
	}
}

// Was a defect (low), fixed in review: last_error (what an SCB answered, "shown by the API to admin keys only") is
// stripped from GET /v1/settlements/{reference_id} for other keys but not from POST
// /v1/settlements: a settle key that replays a settlement gets every SCB's last_error in the 200.
func TestAdversarialReviewFixedSettlementReplayShowsLastError(t *testing.T) {
	e := newEnv(t, Config{})
	stlSetup(e)
	e.mustStatus(e.do("POST", "/v1/settlements", stlBody("le-1", "SCB-1", "SCB-2", "5.00")), http.StatusAccepted)
	// What a worker records after a failed delivery (an SCB's answer, excerpted).
	if _, err := e.db.Conn(t).Exec(context.Background(),
		`UPDATE dual_ledger_outbox SET last_error = 'SCB-2 answered 500: internal detail of the SCB' WHERE reference_id = 'le-1'`); err != nil {
		t.Fatal(err)
	}
	tok := e.newKey(auth.Spec{Name: "settler", Scopes: []string{auth.ScopeSettle, auth.ScopeRead}})
	if r := e.mustStatus(e.as(tok, "GET", "/v1/settlements/le-1", nil), http.StatusOK); strings.Contains(string(r.raw), "internal detail") {
		t.Fatalf("premise: GET shows last_error to a non-admin key: %s", r.raw)
	}
	r := e.as(tok, "POST", "/v1/settlements", stlBody("le-1", "SCB-1", "SCB-2", "5.00"))
	if r.status != http.StatusOK {
		t.Fatalf("replay: %d %s", r.status, r.raw)
	}
	if strings.Contains(string(r.raw), "internal detail") {
		t.Errorf("REGRESSION: a non-admin settle key's replayed POST /v1/settlements shows the SCBs' last_error: %s", r.raw)
	}
}

// Held up: /metrics is not on the API's handler (it has its own listener).
func TestAdversarialReviewNoMetricsOnAPIPort(t *testing.T) {
	e := newEnv(t, Config{})
	for _, p := range []string{"/metrics", "/metrics/", "/v1/metrics", "/debug/pprof/"} {
		if r := e.as("", "GET", p, nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
}
