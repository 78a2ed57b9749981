package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"dualledger/internal/integrity"
)

// TestAdversarialClients is what an external checker does to the service, as a test: a real
// server (httptest on the real handler, the database reached as dualledger_api, every request with an admin key) with 3 ledgers
// of 21 accounts in USD (2 decimals), JPY (0) and BHD (3), hammered by concurrent clients with a
// random mix of valid postings, replays (also of other clients' postings, also with value-equal
// variations), reference conflicts, overdrafts, atomic and non-atomic batches with good and bad
// entries, concurrent identical posts of new references, and garbage of every kind. Every answer
// must have the documented status and code, never a 5xx and never database text. Then the
// database is audited directly with SQL and compared with what the clients were told;
// integrity.Audit, integrity.VerifyChain and the psql scripts (and the seeds' verification SQL, docs/design.md §10.1)
// must be clean; and after a superuser tampers with one entry, VerifyChain must name its seq and
// Audit must fail.
//
// Failures that are known product defects are reported under a name that starts with DEFECT.
func TestAdversarialClients(t *testing.T) {
	if testing.Short() {
		t.Skip("adversarial storm: ~12,000 requests")
	}
	start := time.Now()
	e := newEnv(t, Config{})
	// The server's log is checked below by name (the env's own check would dump megabytes of
	// debug lines).
	e.allowErrorLogs = true
	a := &adversary{t: t, e: e, fails: map[string]int{}, stats: map[string]map[string]int{},
		lat: map[string][]time.Duration{}, accepted: map[string]*advAccepted{}, byLedger: map[string][]*advAccepted{},
		rejected: map[string]string{}}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	a.setup()
	a.probes()

	stormStart := time.Now()
	var wg sync.WaitGroup
	for g := range advWorkers {
		wg.Go(func() {
			w := &advWorker{a: a, id: g, rng: rand.New(rand.NewPCG(seed, uint64(g)))}
			for range advOpsPerWorker {
				w.step()
			}
		})
	}
	wg.Wait()
	t.Logf("storm: %d requests in %v", a.requests.Load(), time.Since(stormStart).Round(time.Millisecond))
	a.logStats()

	a.auditSQL()
	a.seedSQL()
	a.integrityClean()
	a.tamper()
	a.checkServerLog()
	a.summarize()
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

const (
	advWorkers      = 16
	advOpsPerWorker = 600
	advRaceClients  = 8
	advSlow         = 30 * time.Second // one request slower than this is a slow path (half the request timeout; generous for shared CI machines)
	advShowPerCat   = 5                // failures shown per category (all are counted)
)

// Categories of failure. The DEFECT ones are product defects found by this test.
const (
	catTransport   = "transport error"
	cat5xx         = "5xx answer"
	catLeak        = "database text in an answer"
	catUndoc       = "answer not as documented"
	catWrong       = "wrong status or code"
	catContent     = "wrong content"
	catIdempotency = "idempotency broken"
	catSlow        = "slow request"
	catDB          = "database invariant broken"
	catClients     = "database disagrees with what clients were told"
	catReconcile   = "reconcile"
	catPsql        = "psql"
	catLog         = "server logged errors"

	defectPathEncoding = "DEFECT path/query parameter with invalid UTF-8 or NUL answers 500 internal (SQLSTATE 22021)"
	defectAtomicDup    = "DEFECT atomic batch with an in-batch conflicting duplicate reference reports not_applied for the rejected entry"
	defectAmountNumber = "DEFECT amount as an out-of-range JSON number answers invalid_request, not invalid_amount"
	defectBatchDepth   = "DEFECT a batch refuses an entry that the single posting endpoint accepts (JSON depth limit counted over the batch body)"
)

// leakMarkers must never appear in an answer: they are how database errors read.
var leakMarkers = []string{"SQLSTATE", "ERROR:", "pq:", "relation", "violates", "PL/pgSQL", "CONTEXT:", "pgconn", "pgx"}

type advCurrency struct {
	code  string
	minor int
}

var advCurrencies = []advCurrency{{"USD", 2}, {"JPY", 0}, {"BHD", 3}}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}

// amt renders minor units as a decimal string with exactly the currency's decimals.
func (c advCurrency) amt(units int64) string {
	if c.minor == 0 {
		return strconv.FormatInt(units, 10)
	}
	p := pow10(c.minor)
	return fmt.Sprintf("%d.%0*d", units/p, c.minor, units%p)
}

func (c advCurrency) major(n int64) int64 { return n * pow10(c.minor) }

type advAccount struct {
	id    string
	cur   advCurrency
	limit string // "unlimited", a decimal, or "" (the default, 0)
}

type advLedger struct {
	id       string
	issuance map[string]advAccount   // by currency code
	regular  map[string][]advAccount // by currency code
	accounts map[string]advAccount   // by id
}

// kv is one JSON object member; v is raw JSON. Bodies are built from these so that the test
// controls key order, duplicates and number literals.
type kv struct{ k, v string }

type fields []kv

func jstr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (f fields) json() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, x := range f {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(jstr(x.k))
		b.WriteByte(':')
		b.WriteString(x.v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// set returns a copy of f with k's value replaced (or appended).
func (f fields) set(k, raw string) fields {
	out := slices.Clone(f)
	for i := range out {
		if out[i].k == k {
			out[i].v = raw
			return out
		}
	}
	return append(out, kv{k, raw})
}

func (f fields) without(k string) fields {
	return slices.DeleteFunc(slices.Clone(f), func(x kv) bool { return x.k == k })
}

// advPosting is one entry as a client states it.
type advPosting struct {
	ledger, ref, debit, credit string
	cur                        advCurrency
	amount, ttype              string
	fx, ts                     string // "" = not sent
	meta                       fields // nil = not sent
	deep                       bool   // metadata nested to the limit of a single posting's body
	rev                        int64  // reverses_entry_id; 0 = not sent
}

func (p advPosting) fields() fields {
	f := fields{
		{"debit_account_id", jstr(p.debit)}, {"credit_account_id", jstr(p.credit)}, {"amount", jstr(p.amount)},
		{"currency_code", jstr(p.cur.code)}, {"asset_type", `"fiat"`}, {"transaction_type", jstr(p.ttype)},
		{"reference_id", jstr(p.ref)},
	}
	if p.fx != "" {
		f = append(f, kv{"fx_rate", jstr(p.fx)})
	}
	if p.meta != nil {
		f = append(f, kv{"metadata", string(p.meta.json())})
	}
	if p.ts != "" {
		f = append(f, kv{"timestamp_utc", jstr(p.ts)})
	}
	if p.rev != 0 {
		f = append(f, kv{"reverses_entry_id", strconv.FormatInt(p.rev, 10)})
	}
	return f
}

func (p advPosting) body() []byte { return p.fields().json() }

func (p advPosting) key() string { return p.ledger + "\x1f" + p.ref }

// advAccepted is a posting some client was told is in the ledger (201 or 200).
type advAccepted struct {
	p              advPosting
	raw            []byte // the entry's JSON exactly as first sent
	metaJSON       string // what the stored metadata must equal (as jsonb); "{}" when none
	id, seq        int64
	hash, ts       string
	dAfter, cAfter string
}

type adversary struct {
	t       *testing.T
	e       *env
	ledgers []*advLedger

	requests atomic.Int64
	refSeq   atomic.Int64

	mu       sync.Mutex
	fails    map[string]int
	stats    map[string]map[string]int // op -> "status code" -> count
	lat      map[string][]time.Duration
	accepted map[string]*advAccepted // by ledger \x1f ref
	list     []*advAccepted
	byLedger map[string][]*advAccepted
	rejected map[string]string // ledger \x1f ref -> op that was refused
}

func (a *adversary) failf(cat, format string, args ...any) {
	a.mu.Lock()
	a.fails[cat]++
	n := a.fails[cat]
	a.mu.Unlock()
	if n <= advShowPerCat {
		a.t.Errorf("%s: %s", cat, fmt.Sprintf(format, args...))
	}
}

func (a *adversary) summarize() {
	cats := make([]string, 0, len(a.fails))
	for c := range a.fails {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		if n := a.fails[c]; n > advShowPerCat {
			a.t.Errorf("%s: %d failures in all (the first %d are shown above)", c, n, advShowPerCat)
		}
	}
}

// advReq is one request of the storm.
type advReq struct {
	op      string
	method  string
	path    string
	ctype   string // Content-Type; "" sends none
	body    []byte
	chunked bool   // send the body without Content-Length
	defect  string // a 5xx or a leak on this request is this known defect
}

func postReq(op, ledgerID string, body []byte) advReq {
	return advReq{op: op, method: http.MethodPost, path: "/v1/ledgers/" + ledgerID + "/entries", ctype: "application/json", body: body}
}

func batchReq(op, ledgerID string, body []byte) advReq {
	return advReq{op: op, method: http.MethodPost, path: "/v1/ledgers/" + ledgerID + "/entries/batch", ctype: "application/json", body: body}
}

// send runs one request and applies the checks every answer must pass: no transport error, no
// 5xx, no database text, documented status, code and fields. It returns nil on a transport error.
func (a *adversary) send(rq advReq) *resp {
	var rd io.Reader
	if rq.body != nil {
		rd = bytes.NewReader(rq.body)
		if rq.chunked {
			rd = struct{ io.Reader }{rd} // unknown length: sent chunked
		}
	}
	req, err := http.NewRequest(rq.method, a.e.ts.URL+rq.path, rd)
	if err != nil {
		a.failf(catTransport, "%s: %s %s: %v", rq.op, rq.method, rq.path, err)
		return nil
	}
	if rq.ctype != "" {
		req.Header.Set("Content-Type", rq.ctype)
	}
	a.requests.Add(1)
	began := time.Now()
	hr, err := a.e.client.Do(req)
	if err != nil {
		a.failf(catTransport, "%s: %s %s: %v", rq.op, rq.method, rq.path, err)
		return nil
	}
	raw, err := io.ReadAll(hr.Body)
	hr.Body.Close()
	took := time.Since(began)
	if err != nil {
		a.failf(catTransport, "%s: read answer: %v", rq.op, err)
		return nil
	}
	r := &resp{status: hr.StatusCode, header: hr.Header, raw: raw}
	if strings.HasPrefix(hr.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			a.failf(catContent, "%s: answer is not a JSON object: %v: %s", rq.op, err, clipRaw(raw))
		}
	} else if rq.method != http.MethodHead {
		a.failf(catContent, "%s: answer is %q, not JSON: %s", rq.op, hr.Header.Get("Content-Type"), clipRaw(raw))
	}

	a.mu.Lock()
	if a.stats[rq.op] == nil {
		a.stats[rq.op] = map[string]int{}
	}
	a.stats[rq.op][fmt.Sprintf("%d %s", r.status, r.errCode())]++
	a.lat[rq.op] = append(a.lat[rq.op], took)
	a.mu.Unlock()

	if took > advSlow {
		a.failf(catSlow, "%s: %s %s took %v", rq.op, rq.method, rq.path, took)
	}
	if r.status >= 500 {
		cat := cat5xx
		if rq.defect != "" {
			cat = rq.defect
		}
		a.failf(cat, "%s: %s %s answered %d: %s", rq.op, rq.method, clipRaw([]byte(rq.path)), r.status, clipRaw(raw))
	}
	for _, m := range leakMarkers {
		if bytes.Contains(raw, []byte(m)) {
			cat := catLeak
			if rq.defect != "" {
				cat = rq.defect
			}
			a.failf(cat, "%s: answer contains %q: %s", rq.op, m, clipRaw(raw))
			break
		}
	}
	for _, p := range a.e.undocumented(req, r) {
		a.failf(catUndoc, "%s: %s %s: %s", rq.op, rq.method, clipRaw([]byte(rq.path)), p)
	}
	return r
}

func clipRaw(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

// expect checks an error answer's status and code.
func (a *adversary) expect(op string, r *resp, status int, code string) bool {
	if r == nil {
		return false
	}
	if r.status != status || r.errCode() != code {
		a.failf(catWrong, "%s: got %d %q, want %d %q: %s", op, r.status, r.errCode(), status, code, clipRaw(r.raw))
		return false
	}
	return true
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func decEq(x, y string) bool {
	a, err1 := decimal.NewFromString(x)
	b, err2 := decimal.NewFromString(y)
	return err1 == nil && err2 == nil && a.Equal(b)
}

// checkCreated checks an entry object (of a 201 or a batch's created result) against the posting.
func (a *adversary) checkCreated(op string, entry any, p advPosting) bool {
	m, _ := entry.(map[string]any)
	switch {
	case m == nil:
		a.failf(catContent, "%s %s: no entry in the answer", op, p.ref)
	case str(m["reference_id"]) != p.ref || str(m["debit_account_id"]) != p.debit || str(m["credit_account_id"]) != p.credit ||
		str(m["currency_code"]) != p.cur.code || str(m["ledger_id"]) != p.ledger || !decEq(str(m["amount"]), p.amount):
		a.failf(catContent, "%s %s: entry %v does not match the posting %+v", op, p.ref, m, p)
	case num(m["id"]) <= 0 || num(m["seq"]) <= 0 || len(str(m["block_hash"])) != 64 || len(str(m["previous_hash"])) != 64:
		a.failf(catContent, "%s %s: entry without id, seq or hashes: %v", op, p.ref, m)
	default:
		return true
	}
	return false
}

// checkReplayed checks that entry (of a 200 or a batch's replayed result) is the original.
func (a *adversary) checkReplayed(op string, entry any, acc *advAccepted) bool {
	m, _ := entry.(map[string]any)
	if m == nil {
		a.failf(catContent, "%s %s: no entry in the answer", op, acc.p.ref)
		return false
	}
	if num(m["id"]) != acc.id || num(m["seq"]) != acc.seq || str(m["block_hash"]) != acc.hash || str(m["timestamp_utc"]) != acc.ts ||
		str(m["debit_balance_after"]) != acc.dAfter || str(m["credit_balance_after"]) != acc.cAfter {
		a.failf(catIdempotency, "%s %s: replay answered entry id %v seq %v hash %v ts %v balances %v/%v, the original is id %d seq %d hash %s ts %s balances %s/%s",
			op, acc.p.ref, m["id"], m["seq"], m["block_hash"], m["timestamp_utc"], m["debit_balance_after"], m["credit_balance_after"],
			acc.id, acc.seq, acc.hash, acc.ts, acc.dAfter, acc.cAfter)
		return false
	}
	return true
}

// accept records that a client was told p is in the ledger with entry.
func (a *adversary) accept(op string, p advPosting, raw []byte, entry any) *advAccepted {
	m, _ := entry.(map[string]any)
	meta := "{}"
	if p.meta != nil {
		meta = string(p.meta.json())
	}
	acc := &advAccepted{p: p, raw: raw, metaJSON: meta, id: num(m["id"]), seq: num(m["seq"]), hash: str(m["block_hash"]),
		ts: str(m["timestamp_utc"]), dAfter: str(m["debit_balance_after"]), cAfter: str(m["credit_balance_after"])}
	a.mu.Lock()
	old, dup := a.accepted[p.key()]
	if !dup {
		a.accepted[p.key()] = acc
		a.list = append(a.list, acc)
		a.byLedger[p.ledger] = append(a.byLedger[p.ledger], acc)
	}
	a.mu.Unlock()
	if dup && (old.id != acc.id || old.seq != acc.seq) {
		a.failf(catIdempotency, "%s %s/%s: clients were told entry %d (seq %d) and entry %d (seq %d)", op, p.ledger, p.ref, old.id, old.seq, acc.id, acc.seq)
	}
	if dup {
		return old
	}
	return acc
}

func (a *adversary) reject(op string, p advPosting) {
	a.mu.Lock()
	if _, ok := a.rejected[p.key()]; !ok {
		a.rejected[p.key()] = op
	}
	a.mu.Unlock()
}

func (a *adversary) randomAccepted(rng *rand.Rand, ledgerID string) *advAccepted {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.list
	if ledgerID != "" {
		l = a.byLedger[ledgerID]
	}
	if len(l) == 0 {
		return nil
	}
	return l[rng.IntN(len(l))]
}

// setup creates the ledgers and accounts through the API and funds every account with one atomic
// batch per ledger.
func (a *adversary) setup() {
	e := a.e
	limits := []func(c advCurrency) string{
		func(advCurrency) string { return "" },
		func(c advCurrency) string { return c.amt(c.major(250)) },
		func(advCurrency) string { return "0" },
		func(c advCurrency) string { return c.amt(c.major(1000)) },
		func(advCurrency) string { return "" },
		func(c advCurrency) string { return c.amt(c.major(10) + 5) },
	}
	for _, id := range []string{"MASTER", "SCB-1", "SCB-2"} {
		e.createLedger(id)
		l := &advLedger{id: id, issuance: map[string]advAccount{}, regular: map[string][]advAccount{}, accounts: map[string]advAccount{}}
		for _, c := range advCurrencies {
			iss := advAccount{id: "issuance:" + strings.ToLower(c.code), cur: c, limit: "unlimited"}
			e.createAccount(id, iss.id, c.code, "fiat", iss.limit)
			l.issuance[c.code] = iss
			l.accounts[iss.id] = iss
			for k, lim := range limits {
				acct := advAccount{id: fmt.Sprintf("%s-%02d", strings.ToLower(c.code), k), cur: c, limit: lim(c)}
				if k == 5 {
					acct.id = fmt.Sprintf("bank.%s/acct@x:%02d", strings.ToLower(c.code), k) // path-escaping
				}
				e.createAccount(id, acct.id, c.code, "fiat", acct.limit)
				l.regular[c.code] = append(l.regular[c.code], acct)
				l.accounts[acct.id] = acct
			}
		}
		a.ledgers = append(a.ledgers, l)

		var postings []advPosting
		var raws []string
		for _, c := range advCurrencies {
			for _, acct := range l.regular[c.code] {
				p := advPosting{ledger: id, ref: "funding/" + acct.id, debit: l.issuance[c.code].id, credit: acct.id, cur: c,
					amount: c.amt(c.major(1000)), ttype: "funding"}
				postings = append(postings, p)
				raws = append(raws, string(p.body()))
			}
		}
		body := []byte(`{"atomic":true,"entries":[` + strings.Join(raws, ",") + `]}`)
		r := a.send(batchReq("setup", id, body))
		if r == nil || r.status != http.StatusOK || r.get("applied") != true {
			a.t.Fatalf("funding %s: %v", id, r)
		}
		for i, p := range postings {
			res := r.get("results", strconv.Itoa(i))
			if str(res.(map[string]any)["result"]) != "created" {
				a.t.Fatalf("funding %s: %v", p.ref, res)
			}
			ent := res.(map[string]any)["entry"]
			a.checkCreated("setup", ent, p)
			a.accept("setup", p, []byte(raws[i]), ent)
		}
	}
}

// probes are deterministic checks of known weak spots, each once, before the storm.
func (a *adversary) probes() {
	l := a.ledgers[0]
	usd := advCurrencies[0]
	base := advPosting{ledger: l.id, debit: l.issuance["USD"].id, credit: l.regular["USD"][0].id, cur: usd, amount: "1.00", ttype: "probe"}

	// An atomic batch whose second entry repeats the first one's reference with other content:
	// nothing may be written, and the second entry is the rejected one (reference_conflict),
	// the first not_applied, error.details.index 1.
	p := base
	p.ref = "probe-atomic-dup"
	q := p
	q.amount = "2.00"
	body := []byte(`{"atomic":true,"entries":[` + string(p.body()) + "," + string(q.body()) + `]}`)
	if r := a.send(batchReq("probe atomic dup", l.id, body)); r != nil {
		got := []string{str(r.get("results", "0", "result")), str(r.get("results", "1", "result"))}
		if r.status != http.StatusUnprocessableEntity || r.errCode() != CodeBatchRejected {
			a.failf(catWrong, "probe atomic dup: got %d %s: %s", r.status, r.errCode(), clipRaw(r.raw))
		} else if !slices.Equal(got, []string{"not_applied", "reference_conflict"}) || num(r.get("error", "details", "index")) != 1 ||
			str(r.get("results", "0", "error", "details", "rejected_result")) != "reference_conflict" {
			a.failf(defectAtomicDup, "results %v, error.details %v, results[0].error.details %v; want [not_applied reference_conflict], index 1, rejected_result reference_conflict",
				got, r.get("error", "details"), r.get("results", "0", "error", "details"))
		}
		a.reject("probe atomic dup", p)
	}

	// Path and query parameters that PostgreSQL cannot store as text: invalid UTF-8 and NUL.
	valid := base
	valid.ref = "probe-path"
	vb := valid.body()
	for _, bad := range []string{"%FF", "%00", "%C3%28"} {
		for _, rq := range []advReq{
			postReq("probe path", bad, vb),
			batchReq("probe path", bad, []byte(`{"entries":[`+string(vb)+`]}`)),
			{op: "probe path", method: http.MethodGet, path: "/v1/ledgers/" + bad},
			{op: "probe path", method: http.MethodGet, path: "/v1/ledgers/" + bad + "/entries"},
			{op: "probe path", method: http.MethodGet, path: "/v1/ledgers/" + bad + "/accounts"},
			{op: "probe path", method: http.MethodPost, path: "/v1/ledgers/" + bad + "/accounts", ctype: "application/json",
				body: []byte(`{"id":"x","currency_code":"USD","asset_type":"fiat"}`)},
			{op: "probe path", method: http.MethodGet, path: "/v1/ledgers/" + l.id + "/entries/" + bad},
			{op: "probe path", method: http.MethodGet, path: "/v1/ledgers/" + l.id + "/accounts/" + bad},
			{op: "probe path", method: http.MethodGet, path: "/v1/ledgers/" + l.id + "/accounts?after=" + bad},
			{op: "probe path", method: http.MethodGet, path: "/v1/settlements/" + bad},
		} {
			rq.defect = defectPathEncoding
			r := a.send(rq)
			if r != nil && (r.status < 400 || r.status >= 500) {
				a.failf(defectPathEncoding, "%s %s: want a 4xx (unknown_ledger, not_found, unknown_account or invalid_request), got %d %s",
					rq.method, rq.path, r.status, r.errCode())
			}
		}
	}

	// A batch decodes each entry by the single posting's rules: an entry accepted on its own
	// (metadata nested to the 8-level limit) is accepted, or replayed, inside a batch too.
	deepMeta := fields{{"d", strings.Repeat(`{"d":`, 7) + "1" + strings.Repeat("}", 7)}}
	dp := base
	dp.ref, dp.meta, dp.deep = "probe-deep", deepMeta, true
	if r := a.send(postReq("probe deep", l.id, dp.body())); r != nil && r.status != http.StatusCreated {
		a.failf(catWrong, "probe deep: single posting got %d %s: %s", r.status, r.errCode(), clipRaw(r.raw))
	} else if r != nil {
		a.accept("probe deep", dp, dp.body(), r.get("entry"))
		rb := a.send(batchReq("probe deep", l.id, []byte(`{"entries":[`+string(dp.body())+`]}`)))
		if rb != nil && (rb.status != http.StatusOK || str(rb.get("results", "0", "result")) != "replayed") {
			a.failf(defectBatchDepth, "the entry posted alone was accepted; in a batch: %d %s: %s", rb.status, rb.errCode(), clipRaw(rb.raw))
		}
	}

	// One reference in two ledgers: two entries.
	for _, ld := range a.ledgers[:2] {
		p := base
		p.ledger, p.debit, p.credit, p.ref = ld.id, ld.issuance["USD"].id, ld.regular["USD"][1].id, "probe-same-ref-in-two-ledgers"
		if r := a.send(postReq("probe ref per ledger", ld.id, p.body())); r != nil && r.status == http.StatusCreated {
			a.accept("probe ref per ledger", p, p.body(), r.get("entry"))
		} else if r != nil {
			a.failf(catWrong, "probe ref per ledger %s: got %d %s", ld.id, r.status, r.errCode())
		}
	}

	// A reversal names an entry of its own ledger; an entry of another ledger is unknown_entry.
	funding := a.accepted[l.id+"\x1f"+"funding/"+l.regular["USD"][0].id]
	rev := advPosting{ledger: l.id, ref: "probe-reversal", debit: funding.p.credit, credit: funding.p.debit, cur: usd, amount: "1.00",
		ttype: "reversal", rev: funding.id}
	if r := a.send(postReq("probe reversal", l.id, rev.body())); r != nil && r.status == http.StatusCreated && num(r.get("entry", "reverses_entry_id")) == funding.id {
		a.accept("probe reversal", rev, rev.body(), r.get("entry"))
	} else if r != nil {
		a.failf(catWrong, "probe reversal: got %d %s: %s", r.status, r.errCode(), clipRaw(r.raw))
	}
	other := a.ledgers[1]
	xrev := advPosting{ledger: other.id, ref: "probe-reversal-other-ledger", debit: other.regular["USD"][0].id, credit: other.issuance["USD"].id,
		cur: usd, amount: "1.00", ttype: "reversal", rev: funding.id}
	if r := a.send(postReq("probe reversal of another ledger's entry", other.id, xrev.body())); a.expect("probe reversal of another ledger's entry", r, 404, "unknown_entry") {
		a.reject("probe reversal", xrev)
	}

	// A balance may not leave NUMERIC(38,18): refused as invalid_amount, nothing written.
	big := base
	big.ref, big.amount = "probe-balance-overflow", "99999999999999999999"
	if r := a.send(postReq("probe balance overflow", l.id, big.body())); a.expect("probe balance overflow", r, 400, "invalid_amount") {
		a.reject("probe balance overflow", big)
	}

	// Content-Type parameters that mean the same.
	for i, ct := range []string{"application/json; charset=UTF-8", "Application/JSON", "application/json;charset=utf-8"} {
		p := base
		p.ref = fmt.Sprintf("probe-content-type-%d", i)
		rq := postReq("probe content type", l.id, p.body())
		rq.ctype = ct
		if r := a.send(rq); r != nil && r.status == http.StatusCreated {
			a.accept("probe content type", p, p.body(), r.get("entry"))
		} else if r != nil {
			a.failf(catWrong, "probe content type %q: got %d %s", ct, r.status, r.errCode())
		}
	}

	// Concurrent creation of one ledger, then of one account in it: one 201, the rest 409.
	creates := func(op, path, body, exists string) {
		results := make([]*resp, advRaceClients)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range advRaceClients {
			wg.Go(func() {
				<-start
				results[i] = a.send(advReq{op: op, method: http.MethodPost, path: path, ctype: "application/json", body: []byte(body)})
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for _, r := range results {
			switch {
			case r == nil:
			case r.status == http.StatusCreated:
				created++
			case r.status != http.StatusConflict || r.errCode() != exists:
				a.failf(catWrong, "%s: got %d %s: %s", op, r.status, r.errCode(), clipRaw(r.raw))
			}
		}
		if created != 1 {
			a.failf(catIdempotency, "%s: created %d times by %d concurrent clients", op, created, advRaceClients)
		}
	}
	creates("probe concurrent ledger creation", "/v1/ledgers", `{"id":"RACE-L"}`, "ledger_exists")
	creates("probe concurrent account creation", "/v1/ledgers/RACE-L/accounts", `{"id":"acct","currency_code":"JPY","asset_type":"fiat"}`, "account_exists")

	// Big batches: 1000 distinct entries; 1000 copies of one entry (each copy a replay of the
	// first); 1000 copies of one entry that lacks funds (each judged again); 1000 entries, atomic,
	// of which the last is refused. Timed: none may be a slow path.
	a.bigBatches(l)

	// An amount given as a JSON number is invalid_amount (docs/error-codes.md: "not a decimal
	// string"), whatever number it is.
	for _, n := range []string{"12.5", "1e400", strings.Repeat("9", 65)} {
		p := base
		p.ref = "probe-amount-number"
		r := a.send(postReq("probe amount number", l.id, p.fields().set("amount", n).json()))
		if r != nil && (r.status != http.StatusBadRequest || r.errCode() != "invalid_amount") {
			a.failf(defectAmountNumber, "amount %s: got %d %s: %s", clipRaw([]byte(n)), r.status, r.errCode(), clipRaw(r.raw))
		}
	}
}

func (a *adversary) bigBatches(l *advLedger) {
	usd := advCurrencies[0]
	mk := func(ref string, i int, debit string) advPosting {
		return advPosting{ledger: l.id, ref: ref, debit: debit, credit: l.regular["USD"][i%5].id, cur: usd, amount: "0.01", ttype: "bulk"}
	}
	run := func(name string, atomicBatch bool, ps []advPosting, check func(r *resp)) {
		raws := make([]string, len(ps))
		for i, p := range ps {
			raws[i] = string(p.body())
		}
		body := []byte(fmt.Sprintf(`{"atomic":%v,"entries":[%s]}`, atomicBatch, strings.Join(raws, ",")))
		began := time.Now()
		r := a.send(batchReq("probe "+name, l.id, body))
		took := time.Since(began)
		a.t.Logf("probe %s: %v", name, took.Round(time.Millisecond))
		if took > 5*time.Second {
			a.failf(catSlow, "probe %s took %v", name, took)
		}
		if r != nil {
			check(r)
		}
	}
	var distinct, same, dry, atomicBad []advPosting
	for i := range 1000 {
		distinct = append(distinct, mk(fmt.Sprintf("bulk-%04d", i), i, l.issuance["USD"].id))
		same = append(same, mk("bulk-same", 0, l.issuance["USD"].id))
		d := mk("bulk-dry", 0, l.regular["USD"][2].id)
		d.amount = "90000000.00"
		dry = append(dry, d)
		atomicBad = append(atomicBad, mk(fmt.Sprintf("bulk-atomic-%04d", i), i, l.issuance["USD"].id))
	}
	atomicBad[999].amount = "0"
	run("1000 distinct entries", false, distinct, func(r *resp) {
		if r.status != http.StatusOK || num(r.get("created")) != 1000 {
			a.failf(catWrong, "probe 1000 distinct entries: %d, created %v", r.status, r.get("created"))
			return
		}
		for i, p := range distinct {
			a.accept("probe bulk", p, p.body(), r.get("results", strconv.Itoa(i), "entry"))
		}
	})
	run("1000 copies of one entry", false, same, func(r *resp) {
		if r.status != http.StatusOK || num(r.get("created")) != 1 || num(r.get("replayed")) != 999 {
			a.failf(catWrong, "probe 1000 copies: %d, created %v replayed %v", r.status, r.get("created"), r.get("replayed"))
			return
		}
		acc := a.accept("probe bulk", same[0], same[0].body(), r.get("results", "0", "entry"))
		for i := range same {
			a.checkReplayed("probe 1000 copies", r.get("results", strconv.Itoa(i), "entry"), acc)
		}
	})
	run("1000 copies of one entry without funds", false, dry, func(r *resp) {
		if r.status != http.StatusOK || num(r.get("rejected")) != 1000 || str(r.get("results", "999", "result")) != "insufficient_funds" {
			a.failf(catWrong, "probe 1000 dry copies: %d, rejected %v, last %v", r.status, r.get("rejected"), r.get("results", "999"))
		}
		a.reject("probe bulk", dry[0])
	})
	run("1000 entries, atomic, the last refused", true, atomicBad, func(r *resp) {
		if r.status != http.StatusUnprocessableEntity || num(r.get("error", "details", "index")) != 999 ||
			str(r.get("results", "0", "result")) != "not_applied" || str(r.get("results", "999", "result")) != "invalid_amount" {
			a.failf(catWrong, "probe atomic 1000: %d %v", r.status, r.get("error"))
		}
		for _, p := range atomicBad {
			a.reject("probe bulk", p)
		}
	})
}

// advWorker is one concurrent client.
type advWorker struct {
	a   *adversary
	id  int
	rng *rand.Rand
}

func (w *advWorker) ref(kind string) string {
	return fmt.Sprintf("%s-w%02d-%06d", kind, w.id, w.a.refSeq.Add(1))
}

func (w *advWorker) ledger() *advLedger { return w.a.ledgers[w.rng.IntN(len(w.a.ledgers))] }

func (w *advWorker) currency() advCurrency { return advCurrencies[w.rng.IntN(len(advCurrencies))] }

func (w *advWorker) regular(l *advLedger, c advCurrency, not ...string) advAccount {
	for {
		acct := l.regular[c.code][w.rng.IntN(len(l.regular[c.code]))]
		if !slices.Contains(not, acct.id) {
			return acct
		}
	}
}

var advTypes = []string{"transfer", "settlement", "payment", "fx.swap", "Überweisung", "送金", "refund/partial"}

var advMemos = []string{"plain", "Grüße aus Köln", "日本語のメモ", "مرحبا", "emoji 😀👩‍👩‍👧", "line\u2028sep", "tab\tand\nnewline",
	`quote " backslash \ slash /`, "zero\u200bwidth", "combining é", "\u001f unit separator"}

// decorate adds optional fields: fx_rate, timestamp_utc and metadata of several shapes.
func (w *advWorker) decorate(p *advPosting) {
	r := w.rng
	if r.IntN(6) == 0 {
		p.fx = []string{"1.0850", "0.000000000000000001", "150.5", "3.76"}[r.IntN(4)]
	}
	if r.IntN(5) == 0 {
		frac := []string{"", ".5", ".123456"}[r.IntN(3)]
		zone := []string{"Z", "+05:30", "-08:00", "+00:00", "z"}[r.IntN(5)]
		p.ts = fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d%s%s", 1990+r.IntN(40), 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), frac, zone)
	}
	switch r.IntN(8) {
	case 0:
		p.meta = fields{{"memo", jstr(advMemos[r.IntN(len(advMemos))])}}
	case 1:
		p.meta = fields{{"memo", jstr(advMemos[r.IntN(len(advMemos))])}, {"n", "1.50"}, {"big", "1e300"}, {"tiny", "-1e-300"},
			{"neg0", "-0.0"}, {"t", "true"}, {"nil", "null"}, {"nested", `{"a":[1,{"b":[]},"x"],"é":{}}`}}
	case 2:
		many := fields{}
		for i := range 40 {
			many = append(many, kv{fmt.Sprintf("k%02d-%d", i, r.IntN(1000)), strconv.Itoa(i)})
		}
		p.meta = many
	case 3:
		p.meta = fields{}
	}
}

func (w *advWorker) issuance(l *advLedger, kind string) advPosting {
	c := w.currency()
	p := advPosting{ledger: l.id, ref: w.ref(kind), debit: l.issuance[c.code].id, credit: w.regular(l, c).id, cur: c,
		amount: c.amt(c.major(1+w.rng.Int64N(300)) + w.rng.Int64N(pow10(c.minor))), ttype: "funding"}
	w.decorate(&p)
	return p
}

func (w *advWorker) transfer(l *advLedger, kind string) advPosting {
	c := w.currency()
	d := w.regular(l, c)
	most := int64(800)
	if w.rng.IntN(3) == 0 {
		most = 4000 // near or past what the account holds with its overdraft
	}
	p := advPosting{ledger: l.id, ref: w.ref(kind), debit: d.id, credit: w.regular(l, c, d.id).id, cur: c,
		amount: c.amt(c.major(1+w.rng.Int64N(most)) + w.rng.Int64N(pow10(c.minor))), ttype: advTypes[w.rng.IntN(len(advTypes))]}
	w.decorate(&p)
	return p
}

func (w *advWorker) step() {
	switch p := w.rng.IntN(100); {
	case p < 25:
		w.valid()
	case p < 40:
		w.replay()
	case p < 50:
		w.conflict()
	case p < 57:
		w.overdraft()
	case p < 67:
		w.batch(false)
	case p < 75:
		w.batch(true)
	case p < 94:
		w.garbage()
	case p < 97:
		w.read()
	default:
		w.race()
	}
}

// postValid posts p and requires 201, or (if allowed) 422 insufficient_funds for its debit account.
func (w *advWorker) postValid(op string, p advPosting, mayLackFunds bool) {
	a := w.a
	raw := p.body()
	r := a.send(postReq(op, p.ledger, raw))
	switch {
	case r == nil:
	case r.status == http.StatusCreated && r.str("result") == "created" && r.get("replayed") == false:
		if a.checkCreated(op, r.get("entry"), p) {
			a.accept(op, p, raw, r.get("entry"))
		}
	case mayLackFunds && r.status == http.StatusUnprocessableEntity && r.errCode() == "insufficient_funds":
		if str(r.get("error", "details", "account_id")) != p.debit {
			a.failf(catContent, "%s %s: insufficient_funds names %v, the debit account is %s", op, p.ref, r.get("error", "details"), p.debit)
		}
		a.reject(op, p)
	default:
		a.failf(catWrong, "%s %s: got %d %q, want 201 created: %s", op, p.ref, r.status, r.errCode(), clipRaw(r.raw))
	}
}

func (w *advWorker) valid() {
	l := w.ledger()
	if w.rng.IntN(2) == 0 {
		w.postValid("valid issuance", w.issuance(l, "iss"), false)
	} else {
		w.postValid("valid transfer", w.transfer(l, "xfer"), true)
	}
}

// replay re-posts an accepted entry, exactly or in a value-equal form: 200 replayed, the original.
func (w *advWorker) replay() {
	a := w.a
	acc := a.randomAccepted(w.rng, "")
	if acc == nil {
		return
	}
	raw := acc.raw
	variant := "exact"
	p := acc.p
	switch w.rng.IntN(6) {
	case 1: // trailing zeros: amounts are compared by value
		variant = "amount with trailing zeros"
		if !strings.Contains(p.amount, ".") {
			p.amount += "."
		}
		p.amount += "000"
		raw = p.body()
	case 2:
		if len(p.meta) > 1 {
			variant = "metadata keys reordered"
			p.meta = slices.Clone(p.meta)
			slices.Reverse(p.meta)
			raw = p.body()
		}
	case 3:
		if p.ts != "" {
			variant = "timestamp_utc left out"
			p.ts = ""
			raw = p.body()
		}
	case 4:
		if p.fx != "" {
			variant = "fx_rate with trailing zeros"
			if !strings.Contains(p.fx, ".") {
				p.fx += "."
			}
			p.fx += "00"
			raw = p.body()
		}
	case 5:
		variant = "fields reordered"
		f := p.fields()
		w.rng.Shuffle(len(f), func(i, j int) { f[i], f[j] = f[j], f[i] })
		raw = f.json()
	}
	op := "replay"
	r := a.send(postReq(op, p.ledger, raw))
	if r == nil {
		return
	}
	if r.status != http.StatusOK || r.str("result") != "replayed" || r.get("replayed") != true {
		a.failf(catIdempotency, "replay (%s) of %s/%s: got %d %q: %s", variant, p.ledger, p.ref, r.status, r.errCode(), clipRaw(r.raw))
		return
	}
	a.checkReplayed(op+" ("+variant+")", r.get("entry"), acc)
}

// mutate returns a variant of acc's posting with other content and the fields that differ, in
// the order dl_entry_diff names them.
func (w *advWorker) mutate(acc *advAccepted) (advPosting, []string) {
	p := acc.p
	l := w.a.ledgerByID(p.ledger)
	bump := func() string {
		d := decimal.RequireFromString(p.amount).Add(decimal.New(1, -int32(p.cur.minor)))
		return d.StringFixed(int32(p.cur.minor))
	}
	switch w.rng.IntN(8) {
	case 0:
		p.amount = bump()
		return p, []string{"amount"}
	case 1:
		p.ttype += "-changed"
		return p, []string{"transaction_type"}
	case 2:
		p.meta = fields{{"conflict", strconv.Itoa(w.rng.IntN(1000))}}
		return p, []string{"metadata"}
	case 3:
		p.credit = w.regular(l, p.cur, p.debit, p.credit).id
		return p, []string{"credit_account_id"}
	case 4:
		p.debit, p.credit = p.credit, p.debit
		return p, []string{"debit_account_id", "credit_account_id"}
	case 5:
		if p.ts == "2001-02-03T04:05:06Z" {
			p.ts = "2001-02-03T04:05:07Z"
		} else {
			p.ts = "2001-02-03T04:05:06Z"
		}
		return p, []string{"timestamp_utc"}
	case 6:
		if p.fx == "2.5" {
			p.fx = "2.6"
		} else {
			p.fx = "2.5"
		}
		return p, []string{"fx_rate"}
	default:
		p.amount = bump()
		p.ttype += "-changed"
		return p, []string{"amount", "transaction_type"}
	}
}

func (a *adversary) ledgerByID(id string) *advLedger {
	for _, l := range a.ledgers {
		if l.id == id {
			return l
		}
	}
	return nil
}

// conflict posts an accepted reference with other content: 409 naming the differing fields.
func (w *advWorker) conflict() {
	a := w.a
	acc := a.randomAccepted(w.rng, "")
	if acc == nil {
		return
	}
	p, want := w.mutate(acc)
	r := a.send(postReq("conflict", p.ledger, p.body()))
	if !a.expect("conflict "+strings.Join(want, "+"), r, http.StatusConflict, "reference_conflict") {
		return
	}
	w.checkConflict("conflict", r.get("error", "details"), acc, want)
}

func (w *advWorker) checkConflict(op string, details any, acc *advAccepted, want []string) {
	d, _ := details.(map[string]any)
	var got []string
	if fs, ok := d["fields"].([]any); ok {
		for _, f := range fs {
			got = append(got, str(f))
		}
	}
	if !slices.Equal(got, want) || num(d["existing_entry_id"]) != acc.id || str(d["reference_id"]) != acc.p.ref {
		w.a.failf(catContent, "%s of %s/%s: details %v, want fields %v, existing_entry_id %d", op, acc.p.ledger, acc.p.ref, d, want, acc.id)
	}
}

// overdraft posts far more than any account can hold: 422 insufficient_funds.
func (w *advWorker) overdraft() {
	a := w.a
	l := w.ledger()
	c := w.currency()
	d := w.regular(l, c)
	p := advPosting{ledger: l.id, ref: w.ref("overdraft"), debit: d.id, credit: w.regular(l, c, d.id).id, cur: c,
		amount: c.amt(c.major(90_000_000)), ttype: "overdraft"}
	if w.rng.IntN(3) == 0 {
		p.credit = l.issuance[c.code].id
	}
	r := a.send(postReq("overdraft", l.id, p.body()))
	if a.expect("overdraft", r, http.StatusUnprocessableEntity, "insufficient_funds") {
		det := r.get("error", "details")
		m, _ := det.(map[string]any)
		limit := d.limit
		if limit == "" {
			limit = "0"
		}
		if str(m["account_id"]) != d.id || !decEq(str(m["overdraft_limit"]), limit) || !decEq(str(m["amount"]), p.amount) {
			a.failf(catContent, "overdraft %s: details %v, want account %s, overdraft_limit %s, amount %s", p.ref, det, d.id, limit, p.amount)
		}
	}
	a.reject("overdraft", p)
}

// race sends one new posting from several clients at once: one 201, the rest 200, one entry.
func (w *advWorker) race() {
	a := w.a
	l := w.ledger()
	p := w.issuance(l, "race")
	raw := p.body()
	results := make([]*resp, advRaceClients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range advRaceClients {
		wg.Go(func() {
			<-start
			results[i] = a.send(postReq("race", l.id, raw))
		})
	}
	close(start)
	wg.Wait()
	created, replayed := 0, 0
	ids := map[int64]bool{}
	var first *resp
	for _, r := range results {
		if r == nil {
			return
		}
		switch {
		case r.status == http.StatusCreated && r.str("result") == "created":
			created++
			first = r
		case r.status == http.StatusOK && r.str("result") == "replayed" && r.get("replayed") == true:
			replayed++
		default:
			a.failf(catIdempotency, "race %s: got %d %q: %s", p.ref, r.status, r.errCode(), clipRaw(r.raw))
			return
		}
		ids[num(r.get("entry", "id"))] = true
	}
	if created != 1 || replayed != advRaceClients-1 || len(ids) != 1 {
		a.failf(catIdempotency, "race %s: %d created, %d replayed, entry ids %v (want 1 created, %d replayed, one id)",
			p.ref, created, replayed, ids, advRaceClients-1)
		return
	}
	if a.checkCreated("race", first.get("entry"), p) {
		acc := a.accept("race", p, raw, first.get("entry"))
		for _, r := range results {
			a.checkReplayed("race", r.get("entry"), acc)
		}
	}
}

// read checks what the API shows while postings go on: balances within their rules, a page of
// the chain linked, an accepted entry found by its reference with its id.
func (w *advWorker) read() {
	a := w.a
	l := w.ledger()
	switch w.rng.IntN(3) {
	case 0:
		r := a.send(advReq{op: "read accounts", method: http.MethodGet, path: "/v1/ledgers/" + l.id + "/accounts?limit=1000"})
		if r == nil || r.status != http.StatusOK {
			a.expect("read accounts", r, http.StatusOK, "")
			return
		}
		accts, _ := r.get("accounts").([]any)
		if len(accts) != len(l.accounts) {
			a.failf(catContent, "read accounts of %s: %d accounts, want %d", l.id, len(accts), len(l.accounts))
		}
		for _, x := range accts {
			m, _ := x.(map[string]any)
			bal, avail, res, lim := str(m["balance"]), str(m["available_balance"]), str(m["reserved_balance"]), str(m["overdraft_limit"])
			ok := decEq(res, "0") && decEq(avail, bal)
			if lim != "unlimited" {
				av, err1 := decimal.NewFromString(avail)
				li, err2 := decimal.NewFromString(lim)
				ok = ok && err1 == nil && err2 == nil && av.GreaterThanOrEqual(li.Neg())
			}
			if !ok {
				a.failf(catDB, "read accounts of %s: %v breaks the balance rules", l.id, m)
			}
		}
	case 1:
		after := w.rng.IntN(1 + int(a.refSeq.Load()/3))
		r := a.send(advReq{op: "read entries", method: http.MethodGet, path: fmt.Sprintf("/v1/ledgers/%s/entries?after_seq=%d&limit=200", l.id, after)})
		if r == nil || r.status != http.StatusOK {
			a.expect("read entries", r, http.StatusOK, "")
			return
		}
		ents, _ := r.get("entries").([]any)
		prevSeq, prevHash := int64(after), ""
		for _, x := range ents {
			m, _ := x.(map[string]any)
			if num(m["seq"]) != prevSeq+1 || (prevHash != "" && str(m["previous_hash"]) != prevHash) {
				a.failf(catDB, "read entries of %s after %d: seq %v previous_hash %v follows seq %d hash %s", l.id, after, m["seq"], m["previous_hash"], prevSeq, prevHash)
				return
			}
			prevSeq, prevHash = num(m["seq"]), str(m["block_hash"])
		}
	default:
		acc := a.randomAccepted(w.rng, l.id)
		r := a.send(advReq{op: "read entry", method: http.MethodGet, path: "/v1/ledgers/" + l.id + "/entries/" + url.PathEscape(acc.p.ref)})
		if r == nil || r.status != http.StatusOK {
			a.expect("read entry", r, http.StatusOK, "")
			return
		}
		if num(r.get("id")) != acc.id || str(r.get("block_hash")) != acc.hash || !decEq(str(r.get("amount")), acc.p.amount) {
			a.failf(catClients, "read entry %s/%s: %s, clients were told entry %d %s", l.id, acc.p.ref, clipRaw(r.raw), acc.id, acc.hash)
		}
	}
}

// A batch slot: one entry and what its result must be.
type advSlot struct {
	kind  string // fresh, dup, replay, or a rejection
	p     advPosting
	raw   []byte
	code  string       // expected result (non-atomic, or atomic without rejections)
	dupOf int          // dup: the fresh slot it repeats
	acc   *advAccepted // replay / reference_conflict: the committed entry
	want  []string     // reference_conflict: fields
}

func (w *advWorker) batch(atomicBatch bool) {
	a := w.a
	l := w.ledger()
	n := 2 + w.rng.IntN(10)
	withBad := !atomicBatch || w.rng.IntN(2) == 0
	var slots []advSlot
	var fresh []int
	firstBad := -1
	for i := range n {
		k := w.rng.IntN(12)
		if !withBad && k >= 5 {
			k = w.rng.IntN(5)
		}
		if withBad && i == n-1 && firstBad < 0 {
			k = 5 + w.rng.IntN(7)
		}
		c := w.currency()
		var acc *advAccepted
		if k == 4 || k == 5 {
			// (an entry nested to the single-posting limit is too deep inside a batch body:
			// probed once in probes, kept out of the storm)
			if acc = a.randomAccepted(w.rng, l.id); acc.p.deep {
				k += 2
			}
		}
		var s advSlot
		switch {
		case k <= 2 || (k == 3 && len(fresh) == 0):
			s = advSlot{kind: "fresh", p: w.issuance(l, "batch"), code: "created"}
			fresh = append(fresh, i)
		case k == 3:
			j := fresh[w.rng.IntN(len(fresh))]
			s = advSlot{kind: "dup", p: slots[j].p, raw: slots[j].raw, code: "replayed", dupOf: j}
		case k == 4:
			s = advSlot{kind: "replay", p: acc.p, raw: acc.raw, code: "replayed", acc: acc}
		case k == 5:
			p, want := w.mutate(acc)
			s = advSlot{kind: "conflict", p: p, code: "reference_conflict", acc: acc, want: want}
		case k <= 6:
			d := w.regular(l, c)
			s = advSlot{kind: "overdraft", code: "insufficient_funds", p: advPosting{ledger: l.id, ref: w.ref("b-overdraft"), debit: d.id,
				credit: w.regular(l, c, d.id).id, cur: c, amount: c.amt(c.major(90_000_000)), ttype: "overdraft"}}
		case k == 7:
			s = advSlot{kind: "unknown account", code: "unknown_account", p: advPosting{ledger: l.id, ref: w.ref("b-unknown"),
				debit: l.issuance[c.code].id, credit: "nobody-" + c.code, cur: c, amount: c.amt(c.major(1)), ttype: "x"}}
		case k == 8:
			other := advCurrencies[(slices.Index(advCurrencies, c)+1)%len(advCurrencies)]
			s = advSlot{kind: "currency mismatch", code: "currency_mismatch", p: advPosting{ledger: l.id, ref: w.ref("b-mismatch"),
				debit: l.issuance[c.code].id, credit: w.regular(l, other).id, cur: c, amount: c.amt(c.major(1)), ttype: "x"}}
		case k == 9:
			d := w.regular(l, c)
			s = advSlot{kind: "same account", code: "same_account", p: advPosting{ledger: l.id, ref: w.ref("b-same"),
				debit: d.id, credit: d.id, cur: c, amount: c.amt(c.major(1)), ttype: "x"}}
		case k == 10:
			s = advSlot{kind: "zero amount", code: "invalid_amount", p: advPosting{ledger: l.id, ref: w.ref("b-zero"),
				debit: l.issuance[c.code].id, credit: w.regular(l, c).id, cur: c, amount: "0", ttype: "x"}}
		default:
			s = advSlot{kind: "unknown currency", code: "unknown_currency", p: advPosting{ledger: l.id, ref: w.ref("b-cur"),
				debit: l.issuance[c.code].id, credit: w.regular(l, c).id, cur: advCurrency{"ZZZ", 2}, amount: "1.00", ttype: "x"}}
		}
		if s.raw == nil {
			s.raw = s.p.body()
		}
		if s.code != "created" && s.code != "replayed" && firstBad < 0 {
			firstBad = i
		}
		slots = append(slots, s)
	}
	raws := make([]string, len(slots))
	for i, s := range slots {
		raws[i] = string(s.raw)
	}
	head := `{"atomic":true,`
	if !atomicBatch {
		head = []string{`{"atomic":false,`, `{`}[w.rng.IntN(2)]
	}
	body := []byte(head + `"entries":[` + strings.Join(raws, ",") + `]}`)
	op := "batch"
	if atomicBatch {
		op = "atomic batch"
	}
	r := a.send(batchReq(op, l.id, body))
	if r == nil {
		return
	}
	rejected := atomicBatch && firstBad >= 0
	if rejected {
		if !a.expect(op, r, http.StatusUnprocessableEntity, CodeBatchRejected) {
			return
		}
		if num(r.get("error", "details", "index")) != int64(firstBad) || r.get("applied") != false {
			a.failf(catContent, "%s: error %v, applied %v; want index %d, applied false", op, r.get("error"), r.get("applied"), firstBad)
		}
	} else if r.status != http.StatusOK || r.get("applied") != true || r.get("atomic") != atomicBatch {
		a.failf(catWrong, "%s: got %d %q, want 200 applied: %s", op, r.status, r.errCode(), clipRaw(r.raw))
		return
	}
	results, _ := r.get("results").([]any)
	if len(results) != len(slots) {
		a.failf(catContent, "%s: %d results for %d entries", op, len(results), len(slots))
		return
	}
	ids := make([]int64, len(slots))
	for i, s := range slots {
		res, _ := results[i].(map[string]any)
		want := s.code
		if rejected && (s.kind == "fresh" || s.kind == "dup") {
			want = "not_applied"
		}
		got := str(res["result"])
		if got != want || num(res["index"]) != int64(i) {
			a.failf(catWrong, "%s entry %d (%s %s): result %q, want %q: %v", op, i, s.kind, s.p.ref, got, want, res)
			if got == "created" {
				a.accept(op, s.p, s.raw, res["entry"])
			}
			continue
		}
		switch want {
		case "created":
			if a.checkCreated(op, res["entry"], s.p) {
				ids[i] = num(res["entry"].(map[string]any)["id"])
				a.accept(op, s.p, s.raw, res["entry"])
			}
		case "replayed":
			if s.acc != nil {
				a.checkReplayed(op, res["entry"], s.acc)
			} else if id := num(res["entry"].(map[string]any)["id"]); id != ids[s.dupOf] {
				a.failf(catIdempotency, "%s entry %d repeats entry %d (%s): entry id %d, want %d", op, i, s.dupOf, s.p.ref, id, ids[s.dupOf])
			}
		case "not_applied":
			det, _ := res["error"].(map[string]any)
			dd, _ := det["details"].(map[string]any)
			if num(dd["rejected_entry"]) != int64(firstBad+1) || num(dd["rejected_index"]) != int64(firstBad) || str(dd["rejected_result"]) != slots[firstBad].code {
				a.failf(catContent, "%s entry %d: not_applied details %v, want rejected_entry %d, rejected_index %d (%s)", op, i, dd, firstBad+1, firstBad, slots[firstBad].code)
			}
			a.reject(op, s.p)
		case "reference_conflict":
			w.checkConflict(op, res["error"].(map[string]any)["details"], s.acc, s.want)
		default:
			if str(res["error"].(map[string]any)["code"]) != want {
				a.failf(catContent, "%s entry %d: error %v, want code %s", op, i, res["error"], want)
			}
			a.reject(op, s.p)
		}
	}
}

// A piece of garbage: the request, the answer it must get, and whether it is in fact valid.
type advGarbage struct {
	name   string
	req    advReq
	status int
	code   string
	p      advPosting // the posting inside, if any: absent afterwards unless valid
	valid  bool       // a strange but valid posting: 201
}

func (w *advWorker) garbage() {
	a := w.a
	g := w.makeGarbage()
	g.req.op = "garbage: " + g.name
	if g.valid {
		w.postValid(g.req.op, g.p, false)
		return
	}
	r := a.send(g.req)
	a.expect(g.req.op, r, g.status, g.code)
	if g.p.ref != "" && g.p.ledger != "" && utf8Clean(g.p.ref) {
		a.reject(g.req.op, g.p)
	}
}

func utf8Clean(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r == 0 || r == 0xFFFD })
}

func (w *advWorker) makeGarbage() advGarbage {
	l := w.ledger()
	p := w.issuance(l, "g")
	p.meta, p.fx, p.ts = nil, "", ""
	c := p.cur
	f := p.fields()
	post := func(body []byte) advReq { return postReq("", l.id, body) }
	bad := func(name string, body []byte, status int, code string) advGarbage {
		return advGarbage{name: name, req: post(body), status: status, code: code, p: p}
	}
	deep := func(n int) string { return strings.Repeat(`{"d":`, n) + "1" + strings.Repeat("}", n) }
	r := w.rng
	switch r.IntN(48) {
	case 0:
		b := p.body()
		return bad("truncated JSON", b[:r.IntN(len(b)-1)], 400, "invalid_request")
	case 1:
		return bad("amount as JSON number", f.set("amount", []string{"12.5", "1", "0.1", "-3", "1e3"}[r.IntN(5)]).json(), 400, "invalid_amount")
	case 2:
		return bad("negative amount", f.set("amount", jstr("-"+p.amount)).json(), 400, "invalid_amount")
	case 3:
		return bad("zero amount", f.set("amount", jstr([]string{"0", "0.00", "000", "0.000000000000000000"}[r.IntN(4)])).json(), 400, "invalid_amount")
	case 4:
		return bad("too many decimals for the currency", f.set("amount", jstr(c.amt(c.major(1))+map[int]string{0: ".5", 2: "1", 3: "1"}[c.minor])).json(), 400, "invalid_amount")
	case 5:
		return bad("amount not a plain decimal", f.set("amount", jstr([]string{"1e3", " 1", "1,000", "+1", ".5", "1.", "", "NaN", "Infinity",
			"0x10", "١٢٣", "1_000", "１"}[r.IntN(13)])).json(), 400, "invalid_amount")
	case 6:
		return bad("amount with 19 decimals", f.set("amount", jstr("0.0000000000000000001")).json(), 400, "invalid_amount")
	case 7:
		return bad("amount with 21 integer digits", f.set("amount", jstr("123456789012345678901")).json(), 400, "invalid_amount")
	case 8:
		cur := []string{"XYZ", "usd", "US", "", "USDD", "€"}[r.IntN(6)]
		code := "unknown_currency"
		if cur == "" {
			code = "invalid_request" // an empty currency_code is a missing one
		}
		return bad("unknown currency", f.set("currency_code", jstr(cur)).json(), 400, code)
	case 9:
		return bad("invalid asset type", f.set("asset_type", jstr([]string{"crypto", "FIAT", "", "fiat "}[r.IntN(4)])).json(), 400, "invalid_asset_type")
	case 10:
		other := advCurrencies[(slices.Index(advCurrencies, c)+1)%len(advCurrencies)]
		return bad("account of another currency", f.set("credit_account_id", jstr(w.regular(l, other).id)).json(), 422, "currency_mismatch")
	case 11:
		return bad("asset type of no account", f.set("asset_type", `"cbdc"`).json(), 422, "currency_mismatch")
	case 12:
		return bad("same account", f.set("credit_account_id", jstr(p.debit)).json(), 400, "same_account")
	case 13:
		return bad("unknown account", f.set("credit_account_id", jstr("ghost-"+strconv.Itoa(r.IntN(100)))).json(), 404, "unknown_account")
	case 14:
		g := bad("unknown ledger", p.body(), 404, "unknown_ledger")
		g.req.path = "/v1/ledgers/NOPE-" + strconv.Itoa(r.IntN(1000)) + "/entries"
		g.p.ledger = ""
		return g
	case 15:
		return bad("body over 1 MiB", f.set("metadata", `{"pad":`+jstr(strings.Repeat("x", 1<<20))+`}`).json(), 413, "body_too_large")
	case 16:
		g := bad("chunked body over 1 MiB", f.set("metadata", `{"pad":`+jstr(strings.Repeat("y", 1<<20))+`}`).json(), 413, "body_too_large")
		g.req.chunked = true
		return g
	case 17:
		return bad("unknown field", f.set([]string{"memo", "Amount", "ledger_id", "debitAccountId", ""}[r.IntN(5)], `"x"`).json(), 400, "invalid_request")
	case 18:
		g := bad("wrong Content-Type", p.body(), 415, "unsupported_media_type")
		g.req.ctype = []string{"text/plain", "", "application/json; charset=latin1", "application/x-www-form-urlencoded", "application/jsonx", "json"}[r.IntN(6)]
		return g
	case 19:
		g := bad("control character in reference_id", nil, 400, "invalid_request")
		g.p.ref = "ctl" + []string{"\u0007", "\n", "\t", "\u007f", "\u001f", "\u0085", "\r"}[r.IntN(7)] + p.ref
		g.req = post(g.p.body())
		return g
	case 20:
		g := bad("NUL or lone surrogate in a string", nil, 400, "invalid_request")
		field := []string{"reference_id", "transaction_type", "debit_account_id"}[r.IntN(3)]
		esc := []string{`\u0000`, `\ud800`, `\udfff`, `\ud800\u0041`}[r.IntN(4)]
		g.req = post(f.set(field, `"x`+esc+`y"`).json())
		g.p.ref = ""
		return g
	case 21:
		g := bad("reference_id over 128 characters", nil, 400, "invalid_request")
		g.p.ref = strings.Repeat([]string{"r", "é", "😀"}[r.IntN(3)], []int{129, 300, 5000}[r.IntN(3)])
		g.req = post(g.p.body())
		return g
	case 22:
		q := p
		q.ref = strings.Repeat([]string{"é", "😀", "x"}[r.IntN(3)], 113) + fmt.Sprintf("%015d", w.a.refSeq.Add(1))
		return advGarbage{name: "reference_id of exactly 128 characters", p: q, valid: true}
	case 23:
		q := p
		q.meta = fields{{"memo", jstr(advMemos[r.IntN(len(advMemos))])}, {"ключ", jstr("значение")}, {"😀", `["👍",{"🔑":"✓"}]`},
			{"\u2028", `"\u2029"`}, {"esc", `"\u00e9\ud83d\ude00\/"`}}
		return advGarbage{name: "unicode metadata", p: q, valid: true}
	case 24:
		if r.IntN(2) == 0 {
			return bad("metadata nested 9 deep", f.set("metadata", `{"d":`+deep(8)+`}`).json(), 400, "invalid_request")
		}
		return bad("metadata nested 40 deep", f.set("metadata", deep(39)).json(), 400, "invalid_request")
	case 25:
		q := p
		q.meta = fields{{"d", deep(7)}} // 8 levels of metadata: the limit
		q.deep = true
		return advGarbage{name: "metadata nested 8 deep", p: q, valid: true}
	case 26:
		b := p.body()
		return bad("duplicate key", append(b[:len(b)-1], []byte(`,"amount":"1.00"}`)...), 400, "invalid_request")
	case 27:
		return bad("duplicate key in metadata", f.set("metadata", `{"a":{"k":1,"k":2}}`).json(), 400, "invalid_request")
	case 28:
		return bad("metadata not an object", f.set("metadata", []string{"[1,2]", `"str"`, "42", "true"}[r.IntN(4)]).json(), 400, "invalid_request")
	case 29:
		return bad("data after the object", append(p.body(), []byte([]string{" {}", "x", ",", "]", " null"}[r.IntN(5)])...), 400, "invalid_request")
	case 30:
		return bad("not an object", []byte([]string{"[" + string(p.body()) + "]", `"x"`, "42", "null", "true"}[r.IntN(5)]), 400, "invalid_request")
	case 31:
		b := p.body()
		i := bytes.Index(b, []byte(p.ref))
		b = append(append(slices.Clone(b[:i]), 0xff, 0xfe), b[i:]...)
		return bad("invalid UTF-8", b, 400, "invalid_request")
	case 32:
		return bad("empty body", []byte([]string{"", " ", "\n\t"}[r.IntN(3)]), 400, "invalid_request")
	case 33:
		ts := []string{`"yesterday"`, `"2024-02-30T00:00:00Z"`, `"2024-01-01T00:00:00"`, `"0001-01-01T00:00:00Z"`, `"2024-01-01T25:00:00Z"`,
			`"1899-12-31T23:59:59Z"`, `"10000-01-01T00:00:00Z"`, `12345`, `"2024-01-01T00:00:00.1234567Z"`, `"2024-01-01T00:00:00+16:00"`}[r.IntN(10)]
		return bad("bad timestamp_utc", f.set("timestamp_utc", ts).json(), 400, "invalid_request")
	case 34:
		return bad("bad fx_rate", f.set("fx_rate", []string{"1.5", `"-1"`, `"0"`, `"abc"`, `"1e2"`, `"0.0000000000000000001"`}[r.IntN(6)]).json(), 400, "invalid_request")
	case 35:
		return bad("bad reverses_entry_id", f.set("reverses_entry_id", []string{`"12"`, "1.5", "-1", "0", "99999999999999999999"}[r.IntN(5)]).json(), 400, "invalid_request")
	case 36:
		return bad("reverses_entry_id of no entry", f.set("reverses_entry_id", "999999999999").json(), 404, "unknown_entry")
	case 37:
		return bad("bad account id", f.set([]string{"debit_account_id", "credit_account_id"}[r.IntN(2)],
			[]string{jstr(strings.Repeat("a", 200)), `""`, "12", "null", "[]"}[r.IntN(5)]).json(), 400, "invalid_request")
	case 38:
		return bad("bad transaction_type", f.set("transaction_type", []string{`""`, jstr(strings.Repeat("t", 65)), "7", `"a\u001fb"`}[r.IntN(4)]).json(), 400, "invalid_request")
	case 39:
		// A missing string field reaches the database as "": the amount is then not a decimal,
		// and an empty currency_code is a missing one.
		field := []string{"reference_id", "transaction_type", "debit_account_id", "amount", "currency_code"}[r.IntN(5)]
		code := map[string]string{"amount": "invalid_amount"}[field]
		if code == "" {
			code = "invalid_request"
		}
		return bad("missing "+field, f.without(field).json(), 400, code)
	case 40:
		g := bad("method not allowed", p.body(), 405, "method_not_allowed")
		g.req.method = []string{http.MethodPut, http.MethodDelete, http.MethodPatch}[r.IntN(3)]
		return g
	case 41:
		g := bad("unknown query parameter", p.body(), 400, "invalid_request")
		g.req.path += []string{"?atomic=true", "?x=1", "?reference_id=a"}[r.IntN(3)]
		return g
	case 42:
		return bad("number out of range in metadata", f.set("metadata", []string{`{"x":1e400}`, `{"x":` + strings.Repeat("1", 70) + `}`, `{"x":-1e-301}`}[r.IntN(3)]).json(), 400, "invalid_request")
	case 43:
		return w.badBatch(l, p)
	case 45:
		// Settlements post on MASTER: unregistered banks are refused.
		g := advGarbage{name: "settlement between unknown banks", status: 404, code: "unknown_bank",
			p: advPosting{ledger: "MASTER", ref: w.ref("settle")}}
		g.req = advReq{method: http.MethodPost, path: "/v1/settlements", ctype: "application/json", body: fields{
			{"node_id", `"SSN-1"`}, {"source_bank_id", `"SCB-X"`}, {"destination_bank_id", `"SCB-Y"`}, {"amount", `"10.00"`},
			{"currency_code", `"USD"`}, {"asset_type", `"fiat"`}, {"reference_id", jstr(g.p.ref)}}.json()}
		return g
	case 46:
		// A settlement may not take over the reference of an ordinary posting on MASTER.
		acc := w.a.randomAccepted(r, "MASTER")
		g := advGarbage{name: "settlement reusing a posting's reference", status: 409, code: "reference_conflict"}
		g.req = advReq{method: http.MethodPost, path: "/v1/settlements", ctype: "application/json", body: fields{
			{"node_id", `"SSN-1"`}, {"source_bank_id", `"SCB-X"`}, {"destination_bank_id", `"SCB-Y"`}, {"amount", jstr(acc.p.amount)},
			{"currency_code", jstr(acc.p.cur.code)}, {"asset_type", `"fiat"`}, {"reference_id", jstr(acc.p.ref)}}.json()}
		return g
	case 44:
		return advGarbage{name: "bad query", status: 400, code: "invalid_request", req: advReq{method: http.MethodGet,
			path: "/v1/ledgers/" + l.id + "/entries" + []string{"?limit=0", "?limit=abc", "?after_seq=-1", "?limit=1&limit=2", "?limit=1001", "?cursor=1"}[r.IntN(6)]}}
	default:
		return advGarbage{name: "entry that does not exist", status: 404, code: "not_found",
			req: advReq{method: http.MethodGet, path: "/v1/ledgers/" + l.id + "/entries/" + "never-" + strconv.Itoa(r.IntN(1e6))}}
	}
}

// badBatch is a batch refused as a whole.
func (w *advWorker) badBatch(l *advLedger, p advPosting) advGarbage {
	good := string(p.body())
	var body string
	status, code := 400, "invalid_request"
	switch w.rng.IntN(8) {
	case 0:
		body = `{"entries":` + good + `}`
	case 1:
		body = `{"entries":[]}`
	case 2:
		body = `{"entries":[` + strings.TrimSuffix(strings.Repeat(good+",", 1001), ",") + `]}`
	case 3:
		body = `{"atomic":"yes","entries":[` + good + `]}`
	case 4:
		body = `{"entries":[` + good + `,` + string(p.fields().set("amount", "5").json()) + `]}`
		code = "invalid_amount"
	case 5:
		body = `{"entries":[` + good + `],"mode":"fast"}`
	case 6:
		body = `{"entries":[` + string(p.fields().set("note", `"x"`).json()) + `]}`
	default:
		g := advGarbage{name: "batch to an unknown ledger", req: batchReq("", "NOPE-B", []byte(`{"entries":[`+good+`]}`)), status: 404, code: "unknown_ledger"}
		return g
	}
	return advGarbage{name: "bad batch", req: batchReq("", l.id, []byte(body)), status: status, code: code, p: p}
}

func (a *adversary) logStats() {
	ops := make([]string, 0, len(a.stats))
	for op := range a.stats {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	var b strings.Builder
	var all []time.Duration
	for _, op := range ops {
		l := slices.Clone(a.lat[op])
		all = append(all, l...)
		slices.Sort(l)
		fmt.Fprintf(&b, "  %-55s n=%-5d p50=%-8v max=%-8v %v\n", op, len(l), l[len(l)/2].Round(time.Microsecond),
			l[len(l)-1].Round(time.Microsecond), a.stats[op])
	}
	slices.Sort(all)
	a.t.Logf("answers by operation (status code: count), latency p50 %v p99 %v max %v; %d accepted postings, %d refused:\n%s",
		all[len(all)/2].Round(time.Microsecond), all[len(all)*99/100].Round(time.Microsecond), all[len(all)-1].Round(time.Microsecond),
		len(a.accepted), len(a.rejected), b.String())
}

// auditSQL checks the invariants of docs/design.md §2 directly in the database, as a superuser, and
// compares the entries with what the clients were told.
func (a *adversary) auditSQL() {
	ctx := context.Background()
	conn := a.e.db.Conn(a.t)
	none := func(what, q string, args ...any) {
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			a.failf(catDB, "%s: %v", what, err)
			return
		}
		var found []string
		for rows.Next() {
			vals, _ := rows.Values()
			found = append(found, fmt.Sprint(vals...))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			a.failf(catDB, "%s: %v", what, err)
		}
		if len(found) > 0 {
			a.failf(catDB, "%s: %d rows, e.g. %v", what, len(found), found[:min(len(found), 5)])
		}
	}
	none("a reference used twice in a ledger",
		`SELECT ledger_id, reference_id, count(*) FROM ledger_entries GROUP BY 1, 2 HAVING count(*) > 1`)
	none("seq not 1..head_seq without gaps",
		`SELECT l.id, l.head_seq, count(e.seq), min(e.seq), max(e.seq) FROM ledgers l LEFT JOIN ledger_entries e ON e.ledger_id = l.id
		  GROUP BY l.id, l.head_seq
		 HAVING count(e.seq) <> l.head_seq OR coalesce(max(e.seq), 0) <> l.head_seq OR coalesce(min(e.seq), 1) <> 1`)
	none("previous_hash not the block_hash of seq-1 (zero for seq 1)",
		`SELECT e.ledger_id, e.seq FROM ledger_entries e
		   LEFT JOIN ledger_entries p ON p.ledger_id = e.ledger_id AND p.seq = e.seq - 1
		  WHERE e.previous_hash IS DISTINCT FROM CASE WHEN e.seq = 1 THEN '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea ELSE p.block_hash END`)
	none("ledger head not the last entry",
		`SELECT l.id FROM ledgers l LEFT JOIN ledger_entries e ON e.ledger_id = l.id AND e.seq = l.head_seq
		  WHERE l.head_hash IS DISTINCT FROM coalesce(e.block_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)`)
	none("block_hash not ledger_entry_block_hash(entry)",
		`SELECT e.ledger_id, e.seq FROM ledger_entries e WHERE e.block_hash <> ledger_entry_block_hash(e)`)
	none("balance not Σ credits − Σ debits",
		`WITH m AS (SELECT ledger_id, account, sum(delta) AS s FROM (
		              SELECT ledger_id, credit_account_id AS account, amount AS delta FROM ledger_entries
		              UNION ALL SELECT ledger_id, debit_account_id, -amount FROM ledger_entries) x GROUP BY 1, 2)
		 SELECT b.ledger_id, b.id, b.balance, m.s FROM bank_accounts b LEFT JOIN m ON m.ledger_id = b.ledger_id AND m.account = b.id
		  WHERE b.balance <> coalesce(m.s, 0)`)
	none("balances of a ledger and currency do not sum to zero",
		`SELECT ledger_id, currency_code, asset_type, sum(balance) FROM bank_accounts GROUP BY 1, 2, 3 HAVING sum(balance) <> 0`)
	none("available_balance not balance − reserved, reserved not 0, or below −overdraft_limit",
		`SELECT ledger_id, id, balance, available_balance, reserved_balance, overdraft_limit FROM bank_accounts
		  WHERE available_balance <> balance - reserved_balance OR reserved_balance <> 0
		     OR (overdraft_limit IS NOT NULL AND available_balance < -overdraft_limit)`)
	none("entry whose accounts do not exist with its currency and asset type, or amount not > 0 in the currency's minor unit",
		`SELECT e.ledger_id, e.seq FROM ledger_entries e
		   JOIN currencies c ON c.code = e.currency_code
		   LEFT JOIN bank_accounts d ON d.ledger_id = e.ledger_id AND d.id = e.debit_account_id AND d.currency_code = e.currency_code AND d.asset_type = e.asset_type
		   LEFT JOIN bank_accounts k ON k.ledger_id = e.ledger_id AND k.id = e.credit_account_id AND k.currency_code = e.currency_code AND k.asset_type = e.asset_type
		  WHERE d.id IS NULL OR k.id IS NULL OR e.debit_account_id = e.credit_account_id OR e.amount <= 0 OR e.amount <> trunc(e.amount, c.minor_unit)`)
	none("balance_after not the running balance",
		`WITH d AS (SELECT ledger_id, seq, debit_account_id AS account, -amount AS delta, debit_balance_after AS after FROM ledger_entries
		            UNION ALL SELECT ledger_id, seq, credit_account_id, amount, credit_balance_after FROM ledger_entries)
		 SELECT ledger_id, account, seq FROM (SELECT *, sum(delta) OVER (PARTITION BY ledger_id, account ORDER BY seq) AS running FROM d) x
		  WHERE running <> after`)
	none("outbox rows without a registered bank", `SELECT id FROM dual_ledger_outbox`)

	// What the clients were told.
	type dbEntry struct {
		id                                int64
		seq                               int64
		debit, credit, amount, cur, ttype string
		hash, dAfter, cAfter              string
		fx                                *string
	}
	stored := map[string]dbEntry{}
	rows, err := conn.Query(ctx, `SELECT ledger_id, reference_id, id, seq, debit_account_id, credit_account_id, amount::text, currency_code,
	       transaction_type, encode(block_hash, 'hex'), debit_balance_after::text, credit_balance_after::text, fx_rate::text
	  FROM ledger_entries`)
	if err != nil {
		a.t.Fatalf("read entries: %v", err)
	}
	for rows.Next() {
		var l, ref string
		var d dbEntry
		if err := rows.Scan(&l, &ref, &d.id, &d.seq, &d.debit, &d.credit, &d.amount, &d.cur, &d.ttype, &d.hash, &d.dAfter, &d.cAfter, &d.fx); err != nil {
			a.t.Fatalf("read entries: %v", err)
		}
		stored[l+"\x1f"+ref] = d
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		a.t.Fatalf("read entries: %v", err)
	}

	var ledgers, refs, metas []string
	for k, acc := range a.accepted {
		d, ok := stored[k]
		switch {
		case !ok:
			a.failf(catClients, "%s/%s: clients were told entry %d, the database has no such entry", acc.p.ledger, acc.p.ref, acc.id)
			continue
		case d.id != acc.id || d.seq != acc.seq || d.hash != acc.hash:
			a.failf(catClients, "%s/%s: clients were told entry %d seq %d, the database has entry %d seq %d", acc.p.ledger, acc.p.ref, acc.id, acc.seq, d.id, d.seq)
		case !decEq(d.amount, acc.p.amount) || d.debit != acc.p.debit || d.credit != acc.p.credit || d.cur != acc.p.cur.code || d.ttype != acc.p.ttype:
			a.failf(catClients, "%s/%s: stored %+v, posted %+v", acc.p.ledger, acc.p.ref, d, acc.p)
		case !decEq(d.dAfter, acc.dAfter) || !decEq(d.cAfter, acc.cAfter):
			a.failf(catClients, "%s/%s: clients were told balances after %s/%s, stored %s/%s", acc.p.ledger, acc.p.ref, acc.dAfter, acc.cAfter, d.dAfter, d.cAfter)
		case (acc.p.fx == "") != (d.fx == nil) || (d.fx != nil && !decEq(*d.fx, acc.p.fx)):
			a.failf(catClients, "%s/%s: fx_rate posted %q, stored %v", acc.p.ledger, acc.p.ref, acc.p.fx, d.fx)
		}
		ledgers, refs, metas = append(ledgers, acc.p.ledger), append(refs, acc.p.ref), append(metas, acc.metaJSON)
	}
	for k, d := range stored {
		if _, ok := a.accepted[k]; !ok {
			l, ref, _ := strings.Cut(k, "\x1f")
			a.failf(catClients, "%s/%s: entry %d is in the database but no client was told it was posted", l, clipRaw([]byte(ref)), d.id)
		}
	}
	absent := 0
	for k, op := range a.rejected {
		if _, ok := a.accepted[k]; ok {
			continue
		}
		absent++
		if d, ok := stored[k]; ok {
			l, ref, _ := strings.Cut(k, "\x1f")
			a.failf(catClients, "%s/%s: refused (%s), yet the database has entry %d", l, clipRaw([]byte(ref)), op, d.id)
		}
	}
	none("stored metadata differs from what was posted",
		`SELECT u.l, u.r FROM unnest($1::text[], $2::text[], $3::text[]) AS u(l, r, m)
		   JOIN ledger_entries e ON e.ledger_id = u.l AND e.reference_id = u.r
		  WHERE e.metadata <> u.m::jsonb`, ledgers, refs, metas)
	none("a ledger that no client created", `SELECT id FROM ledgers WHERE id NOT IN ('MASTER', 'SCB-1', 'SCB-2', 'RACE-L')`)
	a.t.Logf("database: %d entries, each told to a client with the same id, seq, hash, amount and balances; %d refused references absent",
		len(stored), absent)
}

// seedSQL runs the seeds' verification SQL (docs/design.md §10.1) (and the shipped psql scripts) with psql.
func (a *adversary) seedSQL() {
	psql, err := exec.LookPath("psql")
	if err != nil {
		a.t.Logf("psql is not installed: the seeds' verification SQL is not run")
		return
	}
	e := a.e
	// The seeds' example posts from account1 to account2 in ledger Test.
	e.createLedger("Test")
	e.createAccount("Test", "account1", "USD", "fiat", "unlimited")
	e.createAccount("Test", "account2", "USD", "fiat", "")
	run := func(args ...string) (int, string) {
		out, err := exec.Command(psql, append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-d", e.db.ConnStr}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &ee):
			return ee.ExitCode(), string(out)
		}
		a.t.Fatalf("psql: %v", err)
		return 0, ""
	}
	seedPost := `SELECT * FROM post_ledger_entry('Test'::TEXT, 'account1'::TEXT, 'account2'::TEXT, 100::NUMERIC, 'USD'::TEXT, 'fiat'::TEXT,
		'Type_A'::TEXT, 'test-ref-456'::TEXT, NULL::NUMERIC, NULL::JSONB);`
	checks := []struct {
		name, sql string
		code      int
		want      []string
	}{
		{"idempotency constraint", `SELECT constraint_name FROM information_schema.table_constraints WHERE constraint_name = 'ledger_entries_unique_ledger_reference';`,
			0, []string{"ledger_entries_unique_ledger_reference", "(1 row)"}},
		{"outbox empty", `SELECT COUNT(*) FROM dual_ledger_outbox;`, 0, []string{" 0\n", "(1 row)"}},
		{"seed posting", seedPost, 0, []string{"entry_id", "block_hash", "-100.000000000000000000", "(1 row)"}},
		{"seed posting again", seedPost, 1, []string{"replayed: duplicate reference_id"}},
		{"insufficient funds", `SELECT * FROM post_ledger_entry('Test', 'account2', 'account1', 1000, 'USD', 'fiat', 'Type_A', 'test-ref-457', NULL, NULL);`,
			1, []string{"insufficient_funds"}},
		// The reference rules hold psql callers too (db/functions/reference_rules.sql).
		{"reference rules", `SELECT * FROM post_ledger_entry('Test', 'account1', 'account2', 1, 'USD', 'fiat', 'Type_A', 'ref' || chr(8203) || '1', NULL, NULL);`,
			1, []string{"invisible character (U+200B) at character 4"}},
	}
	for _, c := range checks {
		code, out := run("-c", c.sql)
		if code != c.code {
			a.failf(catPsql, "%s: psql exit %d, want %d:\n%s", c.name, code, c.code, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				a.failf(catPsql, "%s: output lacks %q:\n%s", c.name, w, out)
			}
		}
	}
	for _, script := range []string{"verify-column-names.sql", "audit-balances.sql"} {
		if code, out := run("-f", "../../scripts/"+script); code != 0 {
			a.failf(catPsql, "%s: exit %d:\n%s", script, code, out)
		}
	}
}

// integrityClean requires integrity.Audit and integrity.VerifyChain to find nothing.
func (a *adversary) integrityClean() {
	ctx := context.Background()
	pool := a.e.db.Pool
	rep, err := integrity.Audit(ctx, pool, integrity.AuditOptions{})
	if err != nil {
		a.t.Fatalf("audit: %v", err)
	}
	if !rep.OK {
		a.failf(catReconcile, "audit failed %v: %+v", rep.Failed(), rep.Checks)
	}
	rows, err := pool.Query(ctx, `SELECT id FROM ledgers ORDER BY id`)
	if err != nil {
		a.t.Fatalf("ledgers: %v", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		a.t.Fatalf("ledgers: %v", err)
	}
	for _, id := range ids {
		cr, err := integrity.VerifyChain(ctx, pool, id, integrity.VerifyOptions{PageSize: 997})
		if err != nil {
			a.t.Fatalf("verify chain %s: %v", id, err)
		}
		if !cr.Intact || cr.Entries != cr.HeadSeq {
			a.failf(catReconcile, "verify chain %s: intact %v, %d entries of %d, problem %+v", id, cr.Intact, cr.Entries, cr.HeadSeq, cr.Problem)
		}
	}
	a.t.Logf("integrity: audit ok=%v, %d chains verified", rep.OK, len(ids))
}

// tamper changes one entry's amount as a superuser with the triggers off: VerifyChain must name
// that seq, the other chains stay intact, Audit and audit-balances.sql must fail.
func (a *adversary) tamper() {
	ctx := context.Background()
	conn := a.e.db.Conn(a.t)
	l := a.ledgers[1].id
	var head int64
	if err := conn.QueryRow(ctx, `SELECT head_seq FROM ledgers WHERE id = $1`, l).Scan(&head); err != nil {
		a.t.Fatal(err)
	}
	seq := head / 2
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
		a.t.Fatal(err)
	}
	tag, err := conn.Exec(ctx, `UPDATE ledger_entries SET amount = amount + 1 WHERE ledger_id = $1 AND seq = $2`, l, seq)
	if err != nil || tag.RowsAffected() != 1 {
		a.t.Fatalf("tamper: %v %v", tag, err)
	}
	for _, ld := range a.ledgers {
		cr, err := integrity.VerifyChain(ctx, a.e.db.Pool, ld.id, integrity.VerifyOptions{})
		if err != nil {
			a.t.Fatalf("verify chain %s: %v", ld.id, err)
		}
		switch {
		case ld.id == l && (cr.Intact || cr.Problem == nil || cr.Problem.Seq != seq || cr.Problem.Kind != integrity.ProblemHashMismatch):
			a.failf(catReconcile, "after tampering with %s seq %d, verify chain says intact %v, problem %+v", l, seq, cr.Intact, cr.Problem)
		case ld.id != l && !cr.Intact:
			a.failf(catReconcile, "after tampering with %s, verify chain of %s says %+v", l, ld.id, cr.Problem)
		}
	}
	rep, err := integrity.Audit(ctx, a.e.db.Pool, integrity.AuditOptions{})
	if err != nil {
		a.t.Fatalf("audit: %v", err)
	}
	if failed := rep.Failed(); rep.OK || !slices.Contains(failed, integrity.CheckHashChain) || !slices.Contains(failed, integrity.CheckBalancesMatchEntries) {
		a.failf(catReconcile, "after tampering, audit ok=%v, failed %v; want hash_chain and balances_match_entries", rep.OK, failed)
	}
	if psql, err := exec.LookPath("psql"); err == nil {
		out, err := exec.Command(psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", a.e.db.ConnStr, "-f", "../../scripts/audit-balances.sql").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "hash_chain") {
			a.failf(catPsql, "audit-balances.sql after tampering: %v:\n%s", err, out)
		}
	}
	a.t.Logf("tamper: %s seq %d detected", l, seq)
}

// checkServerLog requires a log free of errors; the ones of the known path-encoding defect are
// reported under its name.
func (a *adversary) checkServerLog() {
	for _, line := range strings.Split(a.e.logs.String(), "\n") {
		if !strings.Contains(line, "level=ERROR") {
			continue
		}
		if strings.Contains(line, "SQLSTATE 22021") {
			a.failf(defectPathEncoding, "server log: %s", clipRaw([]byte(line)))
			continue
		}
		a.failf(catLog, "%s", clipRaw([]byte(line)))
	}
}
