package httpapi

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestCreateAndGetAccount(t *testing.T) {
	e := newEnv(t, Config{})
	e.createLedger("L")

	r := e.mustStatus(e.do("POST", "/v1/ledgers/L/accounts", map[string]any{
		"id": "SCB-1/settlement", "currency_code": "USD", "asset_type": "fiat", "metadata": map[string]any{"desk": "fx"},
	}), http.StatusCreated)
	for k, want := range map[string]any{
		"ledger_id": "L", "id": "SCB-1/settlement", "currency_code": "USD", "asset_type": "fiat", "bank_id": nil,
		"balance": "0.00", "available_balance": "0.00", "reserved_balance": "0.00", "overdraft_limit": "0.00", "status": "active",
		"metadata": map[string]any{"desk": "fx"},
	} {
		if !reflect.DeepEqual(r.get(k), want) {
			t.Errorf("%s = %#v, want %#v", k, r.get(k), want)
		}
	}
	if loc := r.header.Get("Location"); loc != "/v1/ledgers/L/accounts/SCB-1%2Fsettlement" {
		t.Errorf("Location %q", loc)
	}
	e.createAccount("L", "issuance", "USD", "fiat", "unlimited")
	e.mustStatus(e.post("L", entry("f1", "issuance", "SCB-1/settlement", "12.34")), http.StatusCreated)

	got := e.mustStatus(e.do("GET", "/v1/ledgers/L/accounts/SCB-1%2Fsettlement", nil), http.StatusOK)
	if got.str("balance") != "12.34" || got.str("available_balance") != "12.34" || got.str("reserved_balance") != "0.00" {
		t.Errorf("balances: %s", got.raw)
	}
	iss := e.mustStatus(e.do("GET", "/v1/ledgers/L/accounts/issuance", nil), http.StatusOK)
	if iss.str("balance") != "-12.34" || iss.str("overdraft_limit") != "unlimited" {
		t.Errorf("issuance: %s", iss.raw)
	}

	for _, c := range []struct {
		name   string
		ledger string
		body   any
		status int
		code   string
		field  string
	}{
		{"exists", "L", map[string]any{"id": "issuance", "currency_code": "USD", "asset_type": "fiat"}, 409, "account_exists", ""},
		{"unknown ledger", "NOPE", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "fiat"}, 404, "unknown_ledger", ""},
		{"unknown currency", "L", map[string]any{"id": "a", "currency_code": "ZZZ", "asset_type": "fiat"}, 400, "unknown_currency", "currency_code"},
		{"invalid asset type", "L", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "gold"}, 400, "invalid_asset_type", "asset_type"},
		{"bad id", "L", map[string]any{"id": " a", "currency_code": "USD", "asset_type": "fiat"}, 400, "invalid_request", "id"},
		{"overdraft as number", "L", `{"id":"a","currency_code":"USD","asset_type":"fiat","overdraft_limit":5}`, 400, "invalid_request", "overdraft_limit"},
		{"negative overdraft", "L", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "fiat", "overdraft_limit": "-1"}, 400, "invalid_request", "overdraft_limit"},
		{"negative zero overdraft", "L", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "fiat", "overdraft_limit": "-0"}, 400, "invalid_request", "overdraft_limit"},
		{"metadata not an object", "L", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "fiat", "metadata": "x"}, 400, "invalid_request", "metadata"},
		{"unknown field", "L", map[string]any{"id": "a", "currency_code": "USD", "asset_type": "fiat", "balance": "100"}, 400, "invalid_request", "balance"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", "/v1/ledgers/"+c.ledger+"/accounts", c.body)
			if r.status != c.status || r.errCode() != c.code {
				t.Fatalf("got %d %s, want %d %s: %s", r.status, r.errCode(), c.status, c.code, r.raw)
			}
			if c.field != "" && r.str("error", "details", "field") != c.field {
				t.Errorf("details.field %q, want %q", r.str("error", "details", "field"), c.field)
			}
		})
	}
	if r := e.do("GET", "/v1/ledgers/L/accounts/nobody", nil); r.status != 404 || r.errCode() != "unknown_account" {
		t.Errorf("unknown account: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/v1/ledgers/NOPE/accounts/a", nil); r.status != 404 || r.errCode() != "unknown_ledger" {
		t.Errorf("unknown ledger: %d %s", r.status, r.raw)
	}
}

func TestAccountsPagination(t *testing.T) {
	e := newEnv(t, Config{})
	e.createLedger("L")
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("acct-%02d", i)
		want = append(want, id)
		e.createAccount("L", id, "EUR", "fiat", "")
	}
	var got []string
	after := ""
	for pages := 1; ; pages++ {
		path := "/v1/ledgers/L/accounts?limit=3"
		if after != "" {
			path += "&after=" + after
		}
		r := e.mustStatus(e.do("GET", path, nil), http.StatusOK)
		for _, a := range r.get("accounts").([]any) {
			got = append(got, a.(map[string]any)["id"].(string))
		}
		next, _ := r.get("next_after").(string)
		if next == "" {
			if r.get("next_after") != nil {
				t.Errorf("next_after %v", r.get("next_after"))
			}
			if pages != 3 {
				t.Errorf("%d pages", pages)
			}
			break
		}
		after = next
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("accounts %v, want %v", got, want)
	}
	r := e.mustStatus(e.do("GET", "/v1/ledgers/L/accounts", nil), http.StatusOK)
	if n := len(r.get("accounts").([]any)); n != 7 || r.get("next_after") != nil {
		t.Errorf("default page: %d accounts, next_after %v", n, r.get("next_after"))
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=-3", "sort=id"} {
		if r := e.do("GET", "/v1/ledgers/L/accounts?"+q, nil); r.status != 400 || r.errCode() != "invalid_request" {
			t.Errorf("?%s: %d %s", q, r.status, r.raw)
		}
	}
	if r := e.do("GET", "/v1/ledgers/NOPE/accounts", nil); r.status != 404 || r.errCode() != "unknown_ledger" {
		t.Errorf("unknown ledger: %d %s", r.status, r.raw)
	}
}

// An overdraft limit is an amount of the account: for fiat it has at most the currency's minor
// unit of decimals, as a posting's amount, on creation and on PATCH (value-based: "0.010" is
// 0.01). Other asset types take up to 18 decimals.
func TestOverdraftLimitDecimals(t *testing.T) {
	e := newEnv(t, Config{})
	e.createLedger("L")
	create := func(id, currency, asset, od string) *resp {
		return e.do("POST", "/v1/ledgers/L/accounts", map[string]any{"id": id, "currency_code": currency, "asset_type": asset, "overdraft_limit": od})
	}
	refused := func(what string, r *resp, says string) {
		t.Helper()
		if r.status != http.StatusBadRequest || r.errCode() != "invalid_request" || r.str("error", "details", "field") != "overdraft_limit" ||
			!strings.Contains(r.str("error", "message"), says) {
			t.Errorf("%s: %d %s; want 400 invalid_request, field overdraft_limit, saying %q", what, r.status, r.raw, says)
		}
	}
	refused("USD 0.001", create("usd-3", "USD", "fiat", "0.001"), `overdraft_limit "0.001" has 3 decimals but USD allows at most 2`)
	refused("JPY 5.5", create("jpy-1", "JPY", "fiat", "5.5"), "JPY allows no decimals")
	refused("BHD 1.2345", create("bhd-4", "BHD", "fiat", "1.2345"), "BHD allows at most 3")
	if r := e.do("GET", "/v1/ledgers/L/accounts", nil); len(r.get("accounts").([]any)) != 0 {
		t.Fatalf("refused accounts were created: %s", r.raw)
	}
	if r := e.mustStatus(create("usd", "USD", "fiat", "10.010"), http.StatusCreated); r.str("overdraft_limit") != "10.01" {
		t.Errorf("USD 10.010: overdraft_limit %s", r.str("overdraft_limit"))
	}
	e.mustStatus(create("usd-cbdc", "USD", "cbdc", "0.001"), http.StatusCreated)
	e.mustStatus(create("bhd", "BHD", "fiat", "1.234"), http.StatusCreated)

	patch := func(id, od string) *resp {
		return e.do("PATCH", "/v1/ledgers/L/accounts/"+id, map[string]any{"overdraft_limit": od, "reason": "limit review"})
	}
	refused("PATCH USD 0.001", patch("usd", "0.001"), `overdraft_limit "0.001" has 3 decimals but USD allows at most 2`)
	if r := e.mustStatus(e.do("GET", "/v1/ledgers/L/accounts/usd", nil), http.StatusOK); r.str("overdraft_limit") != "10.01" {
		t.Errorf("after the refused PATCH: overdraft_limit %s", r.str("overdraft_limit"))
	}
	e.mustStatus(patch("usd", "0.50"), http.StatusOK)
	e.mustStatus(patch("usd", "unlimited"), http.StatusOK)
	e.mustStatus(patch("usd-cbdc", "0.000001"), http.StatusOK)
	if r := patch("ghost", "0.001"); r.status != http.StatusNotFound || r.errCode() != "unknown_account" {
		t.Errorf("PATCH of an unknown account: %d %s", r.status, r.raw)
	}
	if r := e.do("PATCH", "/v1/ledgers/NOPE/accounts/usd", map[string]any{"overdraft_limit": "0.001", "reason": "x"}); r.status != http.StatusNotFound || r.errCode() != "unknown_ledger" {
		t.Errorf("PATCH in an unknown ledger: %d %s", r.status, r.raw)
	}
}
