package httpapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"dualledger/internal/ledger"
	"dualledger/internal/settlement"
)

// The route table, the ServeMux built from it and the document agree: every route served is
// documented and every documented operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, Config{})
	served := map[string]bool{}
	for _, rt := range e.srv.routes() {
		served[rt.method+" "+rt.path] = true
	}
	documented := map[string]bool{}
	for path, ops := range e.doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+path] = true
		}
	}
	if !maps.Equal(served, documented) {
		t.Errorf("routes %v\ndocument %v", slices.Sorted(maps.Keys(served)), slices.Sorted(maps.Keys(documented)))
	}
	// Each documented operation reaches a handler of the real server (not the 404/405 of an
	// unknown route), with placeholders for the path parameters.
	for key := range documented {
		method, path, _ := strings.Cut(key, " ")
		url := pathParamRE.ReplaceAllString(path, "x")
		var body any
		if method == http.MethodPost {
			body = "{}"
		}
		r := e.do(method, url, body)
		if r.status == http.StatusMethodNotAllowed || (r.errCode() == "not_found" && strings.HasPrefix(r.str("error", "message"), "no such endpoint")) {
			t.Errorf("%s is documented but not served: %d %s", key, r.status, r.raw)
		}
	}
	// And a path that is not documented is not served.
	if r := e.do("GET", "/v1/settlements/x", nil); r.status != 404 {
		t.Errorf("undocumented path served: %d", r.status)
	}
	// /openapi.json serves the document.
	r := e.mustStatus(e.do("GET", "/openapi.json", nil), http.StatusOK)
	if string(r.raw) != string(e.srv.OpenAPI()) {
		t.Error("/openapi.json differs from Server.OpenAPI")
	}
}

func TestOpenAPIDocument(t *testing.T) {
	e := newEnv(t, Config{})
	doc := e.doc
	if doc.OpenAPI != "3.1.0" || doc.Info.Title == "" {
		t.Errorf("header %q %q", doc.OpenAPI, doc.Info.Title)
	}
	known := map[string]bool{CodeMethodNotAllowed: true, CodeUnsupportedMediaType: true, CodeBodyTooLarge: true, CodeBatchRejected: true,
		ledger.CodeLedgerExists: true, ledger.CodeAccountExists: true, ledger.CodeBankExists: true, ledger.CodeNotFound: true,
		ledger.CodeUnavailable: true, ledger.CodeInternal: true, settlement.CodeUnknownBank: true,
		settlement.CodeSettlementAccountNotFound: true, settlement.CodeAmbiguousSettlementAccount: true,
		CodeUnauthenticated: true, CodeForbidden: true, CodeRateLimited: true, CodeOverloaded: true,
		ledger.CodeUnknownDiscrepancy: true, ledger.CodeDiscrepancyResolved: true, ledger.CodeResolutionNotApplicable: true,
		ledger.CodeUnknownHold: true, ledger.CodeHoldNotPending: true, ledger.CodeHoldExpired: true}
	for _, c := range resultCodes {
		known[c] = true
	}

	// Every $ref resolves, and every component is used.
	raw, _ := json.Marshal(doc)
	used := map[string]bool{}
	for _, m := range strings.Split(string(raw), `"$ref":"#/components/schemas/`)[1:] {
		name := m[:strings.IndexByte(m, '"')]
		used[name] = true
		if doc.Components.Schemas[name] == nil {
			t.Errorf("unresolved $ref %s", name)
		}
	}
	for name, s := range doc.Components.Schemas {
		if !used[name] {
			t.Errorf("unused component %s", name)
		}
		for _, r := range s.Required {
			if s.Properties[r] == nil {
				t.Errorf("%s requires undefined %s", name, r)
			}
		}
	}

	for path, ops := range doc.Paths {
		for method, op := range ops {
			where := strings.ToUpper(method) + " " + path
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s: operationId/summary missing", where)
			}
			if _, ok := op.Responses["500"]; !ok {
				t.Errorf("%s: no 500", where)
			}
			for _, m := range pathParamRE.FindAllStringSubmatch(path, -1) {
				if !slices.ContainsFunc(op.Parameters, func(p Parameter) bool { return p.Name == m[1] && p.In == "path" && p.Required }) {
					t.Errorf("%s: path parameter %s undocumented", where, m[1])
				}
			}
			if op.RequestBody != nil {
				ref := op.RequestBody.Content["application/json"].Schema.Ref
				s := doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
				if s == nil || s.AdditionalProperties != false {
					t.Errorf("%s: request schema %s does not forbid unknown fields", where, ref)
				}
				for _, st := range []string{"400", "413", "415"} {
					if _, ok := op.Responses[st]; !ok {
						t.Errorf("%s: body route without %s", where, st)
					}
				}
			}
			for status, resp := range op.Responses {
				if status[0] == '2' {
					if len(resp.ErrorCodes) > 0 {
						t.Errorf("%s %s: success with error codes", where, status)
					}
					continue
				}
				if len(resp.ErrorCodes) == 0 {
					t.Errorf("%s %s: error response without x-error-codes", where, status)
				}
				for _, c := range resp.ErrorCodes {
					if !known[c] {
						t.Errorf("%s %s: unknown code %s", where, status, c)
					}
					if st := fmt.Sprint(statusOf(c)); st != status {
						t.Errorf("%s: code %s documented under %s but answered with %s", where, c, status, st)
					}
				}
			}
		}
	}

	// Spot checks of the reflected schemas.
	in := doc.Components.Schemas["EntryInput"]
	if in.Properties["amount"].Type != "string" || in.Properties["amount"].Pattern == "" {
		t.Errorf("EntryInput.amount %+v", in.Properties["amount"])
	}
	if !reflect.DeepEqual(in.Properties["fx_rate"].Type, []any{"string", "null"}) {
		t.Errorf("EntryInput.fx_rate type %v", in.Properties["fx_rate"].Type)
	}
	if !slices.Contains(in.Required, "reference_id") || slices.Contains(in.Required, "metadata") {
		t.Errorf("EntryInput.required %v", in.Required)
	}
	if desc := doc.Paths["/v1/ledgers/{ledger_id}/entries/batch"]["post"].Description; !strings.Contains(desc, "422") || !strings.Contains(desc, "batch_rejected") {
		t.Errorf("batch description does not document the 422 choice: %s", desc)
	}
	rej := doc.Paths["/v1/ledgers/{ledger_id}/entries/batch"]["post"].Responses["422"]
	if rej.Content["application/json"].Schema.Ref != "#/components/schemas/BatchRejectedResponse" {
		t.Errorf("batch 422 schema %+v", rej.Content)
	}
}

// The per-request check of helpers_test.go catches what it should, so that its silence means
// something.
func TestDocumentCheckCatchesDrift(t *testing.T) {
	e := newEnv(t, Config{})
	req, _ := http.NewRequest("GET", e.ts.URL+"/v1/ledgers/L", nil)
	for name, r := range map[string]*resp{
		"extra field":        {status: 200, body: map[string]any{"id": 1, "head_seq": 1, "head_hash": 1, "created_at": 1, "x": 1}},
		"missing field":      {status: 200, body: map[string]any{"id": 1, "head_seq": 1, "head_hash": 1}},
		"undocumented code":  {status: 404, body: map[string]any{"error": map[string]any{"code": "unknown_account"}}},
		"undocumented state": {status: 409, body: map[string]any{"error": map[string]any{"code": "ledger_exists"}}},
	} {
		if len(e.undocumented(req, r)) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
	ok := &resp{status: 200, body: map[string]any{"id": 1, "head_seq": 1, "head_hash": 1, "created_at": 1}}
	if p := e.undocumented(req, ok); len(p) != 0 {
		t.Errorf("a documented answer flagged: %v", p)
	}
}
