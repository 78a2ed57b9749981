package httpapi

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// Document is an OpenAPI 3.1 document (the parts this API uses).
type Document struct {
	OpenAPI    string                           `json:"openapi"`
	Info       Info                             `json:"info"`
	Tags       []Tag                            `json:"tags,omitempty"`
	Paths      map[string]map[string]*Operation `json:"paths"`
	Components Components                       `json:"components"`
	Security   []map[string][]string            `json:"security"`
}

// Info is the document's info object.
type Info struct {
	Title       string `json:"title"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// Tag groups operations.
type Tag struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Operation is one method on one path.
type Operation struct {
	OperationID string               `json:"operationId"`
	Summary     string               `json:"summary"`
	Description string               `json:"description,omitempty"`
	Tags        []string             `json:"tags,omitempty"`
	Parameters  []Parameter          `json:"parameters,omitempty"`
	RequestBody *RequestBody         `json:"requestBody,omitempty"`
	Responses   map[string]*Response `json:"responses"`
	// Security: the bearer scheme with the scope the key needs (OpenAPI 3.1 lets any scheme
	// list required roles), or an empty list for the public operations.
	Security *[]map[string][]string `json:"security,omitempty"`
	Scope    string                 `json:"x-required-scope,omitempty"`
}

// Parameter is a path or query parameter.
type Parameter struct {
	Name        string  `json:"name"`
	In          string  `json:"in"`
	Description string  `json:"description,omitempty"`
	Required    bool    `json:"required"`
	Schema      *Schema `json:"schema"`
}

// RequestBody is an operation's request body.
type RequestBody struct {
	Description string               `json:"description,omitempty"`
	Required    bool                 `json:"required"`
	Content     map[string]MediaType `json:"content"`
}

// MediaType is the schema of a body in one media type.
type MediaType struct {
	Schema *Schema `json:"schema"`
}

// Response is one documented answer. ErrorCodes (x-error-codes) lists the stable error codes
// that come with this status.
type Response struct {
	Description string               `json:"description"`
	Content     map[string]MediaType `json:"content,omitempty"`
	ErrorCodes  []string             `json:"x-error-codes,omitempty"`
}

// Components holds the named schemas and the security scheme.
type Components struct {
	Schemas         map[string]*Schema        `json:"schemas"`
	SecuritySchemes map[string]SecurityScheme `json:"securitySchemes"`
}

// SecurityScheme is how a client authenticates.
type SecurityScheme struct {
	Type         string `json:"type"`
	Scheme       string `json:"scheme"`
	BearerFormat string `json:"bearerFormat,omitempty"`
	Description  string `json:"description,omitempty"`
}

// bearerScheme names the API key scheme in the document.
const bearerScheme = "apiKey"

const apiDescription = `The HTTP API of dualledger, a double-entry ledger on PostgreSQL (docs/design.md §9 in the repository).

JSON everywhere, snake_case fields, amounts as decimal strings (a JSON number for an amount is
refused: 400 invalid_amount). Request bodies are decoded strictly: Content-Type application/json
(else 415 unsupported_media_type), a size limit (413 body_too_large), exactly one JSON object,
only the documented fields spelled exactly, no duplicate keys (else 400 invalid_request naming
the field).

Every error is {"error": {"code", "message", "details"}} with a stable code; each response lists
its codes in x-error-codes. An unknown path answers 404 not_found, a known path with another
method 405 method_not_allowed (with an Allow header). 503 unavailable means the database could not
be reached in time: retry (postings with the same reference_id, which makes the retry safe).

Every /v1 operation needs an API key: Authorization: Bearer <token> (dualledger keys create).
No token, or an unknown or revoked one, is 401 unauthenticated; a key without the operation's
scope (x-required-scope), limited to other ledgers, or a member bank's key reaching for another
bank's money or data, is 403 forbidden; neither says whether the thing asked for exists. A key's
own rate limit, or the server's in-flight limit, answers 429 with Retry-After.`

var pathParamRE = regexp.MustCompile(`\{([a-z_]+)\}`)

// buildOpenAPI generates the document from the route table. Schemas come from the Go types of
// the bodies, so they are what the handlers encode and decode.
func buildOpenAPI(routes []route, version string) (*Document, error) {
	g := newSchemaGen(docFor)
	doc := &Document{
		OpenAPI: "3.1.0",
		Info:    Info{Title: "dualledger", Version: version, Description: apiDescription},
		Tags: []Tag{
			{Name: "ledgers", Description: "Hash-chained sequences of entries."},
			{Name: "accounts", Description: "Balance holders of one ledger, with one currency and asset type."},
			{Name: "entries", Description: "Postings: amount moves from the debit account to the credit account."},
			{Name: "banks", Description: "Member banks (SCBs) whose own ledgers are mirrored through the outbox."},
			{Name: "reconciliation", Description: "Our ledger against each member bank's: discrepancies and account statements (docs/reconciliation.md)."},
			{Name: "operations", Description: "Health, readiness, metrics and this document."},
		},
		Paths: map[string]map[string]*Operation{},
		Components: Components{Schemas: g.components, SecuritySchemes: map[string]SecurityScheme{
			bearerScheme: {Type: "http", Scheme: "bearer", BearerFormat: "dl_<key id>_<secret>",
				Description: "An API key's token, shown once by `dualledger keys create`. Scopes: " +
					"read, post, issue, settle, accounts, banks, admin (admin grants every scope)."},
		}},
		Security: []map[string][]string{{bearerScheme: {}}},
	}
	for _, rt := range routes {
		op := &Operation{
			OperationID: rt.id, Summary: rt.summary, Description: rt.description,
			Tags: []string{rt.tag}, Responses: map[string]*Response{},
		}
		if rt.access.public {
			op.Security = &[]map[string][]string{}
		} else {
			op.Security = &[]map[string][]string{{bearerScheme: {rt.access.scope}}}
			op.Scope = rt.access.scope
		}
		for _, m := range pathParamRE.FindAllStringSubmatch(rt.path, -1) {
			desc, ok := pathParamDocs[m[1]]
			if !ok {
				return nil, fmt.Errorf("route %s %s: undocumented path parameter %s", rt.method, rt.path, m[1])
			}
			op.Parameters = append(op.Parameters, Parameter{Name: m[1], In: "path", Required: true,
				Description: desc, Schema: &Schema{Type: "string", MinLength: ptr(1)}})
		}
		for _, q := range rt.query {
			s := &Schema{Type: "string"}
			if q.integer {
				s = &Schema{Type: "integer", Format: "int64", Minimum: q.min, Maximum: q.max}
			}
			desc := q.description
			if q.def != nil {
				desc += fmt.Sprintf(" Default %v.", q.def)
			}
			op.Parameters = append(op.Parameters, Parameter{Name: q.name, In: "query", Description: desc, Schema: s})
		}
		if rt.body != nil {
			g.closed = true
			s := g.ref(reflect.TypeOf(rt.body))
			g.closed = false
			op.RequestBody = &RequestBody{Required: true,
				Description: fmt.Sprintf("At most %d bytes.", rt.maxBody),
				Content:     map[string]MediaType{"application/json": {Schema: s}}}
		}
		for _, r := range rt.responses {
			key := strconv.Itoa(r.status)
			if _, dup := op.Responses[key]; dup {
				return nil, fmt.Errorf("route %s %s: status %d documented twice", rt.method, rt.path, r.status)
			}
			desc := r.description
			if desc == "" {
				desc = http.StatusText(r.status) + ": " + strings.Join(r.codes, ", ") + "."
			}
			resp := &Response{Description: desc, ErrorCodes: r.codes}
			if r.body != nil {
				ct := r.contentType
				if ct == "" {
					ct = "application/json"
				}
				resp.Content = map[string]MediaType{ct: {Schema: g.ref(reflect.TypeOf(r.body))}}
			}
			op.Responses[key] = resp
		}
		methods := doc.Paths[rt.path]
		if methods == nil {
			methods = map[string]*Operation{}
			doc.Paths[rt.path] = methods
		}
		m := strings.ToLower(rt.method)
		if _, dup := methods[m]; dup {
			return nil, fmt.Errorf("route %s %s defined twice", rt.method, rt.path)
		}
		methods[m] = op
	}
	return doc, nil
}
