package httpapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Schema is a JSON Schema as OpenAPI 3.1 uses it (the subset this API needs).
type Schema struct {
	Ref                  string             `json:"$ref,omitempty"`
	Type                 any                `json:"type,omitempty"` // a string, or a list such as ["string","null"]
	Format               string             `json:"format,omitempty"`
	Title                string             `json:"title,omitempty"`
	Description          string             `json:"description,omitempty"`
	Enum                 []string           `json:"enum,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	MinLength            *int               `json:"minLength,omitempty"`
	MaxLength            *int               `json:"maxLength,omitempty"`
	Minimum              *int64             `json:"minimum,omitempty"`
	Maximum              *int64             `json:"maximum,omitempty"`
	Examples             []any              `json:"examples,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AdditionalProperties any                `json:"additionalProperties,omitempty"` // bool or *Schema
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
}

// structField is one JSON field of a struct, as encoding/json sees it.
type structField struct {
	name     string
	owner    string // the struct type declaring the field (differs for embedded fields)
	goName   string
	typ      reflect.Type
	optional bool // omitempty/omitzero: may be absent
}

// structFields lists t's JSON fields in declaration order, with embedded structs flattened; a
// field of the outer struct hides an embedded one of the same name (encoding/json's rule for
// fields at different depths).
func structFields(t reflect.Type) []structField {
	var direct, embedded []structField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, structFields(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := false
		for _, o := range strings.Split(opts, ",") {
			if o == "omitempty" || o == "omitzero" {
				optional = true
			}
		}
		direct = append(direct, structField{name: name, owner: t.Name(), goName: f.Name, typ: f.Type, optional: optional})
	}
	seen := map[string]bool{}
	for _, f := range direct {
		seen[f.name] = true
	}
	out := direct
	for _, f := range embedded {
		if !seen[f.name] {
			out = append(out, f)
			seen[f.name] = true
		}
	}
	return out
}

var (
	timeType       = reflect.TypeFor[time.Time]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
)

// schemaGen derives schemas from Go types. Named struct types become components referenced by
// $ref, so a type has one definition however often it is used.
type schemaGen struct {
	components map[string]*Schema
	names      map[reflect.Type]string
	docs       func(typeName, field string) fieldDoc
	// closed marks the types of request bodies, whose schemas say additionalProperties: false
	// (the decoder refuses unknown fields). Response types stay open, so that adding a field
	// to a response is not a breaking change of the document.
	closed bool
}

func newSchemaGen(docs func(typeName, field string) fieldDoc) *schemaGen {
	return &schemaGen{components: map[string]*Schema{}, names: map[reflect.Type]string{}, docs: docs}
}

// ref returns a schema for a value of type t.
func (g *schemaGen) ref(t reflect.Type) *Schema {
	return g.schema(t, false)
}

func (g *schemaGen) schema(t reflect.Type, optional bool) *Schema {
	nullable := false
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
		nullable = true
	}
	switch {
	case t == timeType:
		return withNull(&Schema{Type: "string", Format: "date-time"}, nullable)
	case t == rawMessageType:
		// Raw JSON in this API is always an object (metadata, details); a request may send null.
		return withNull(&Schema{Type: "object", AdditionalProperties: true}, optional)
	}
	switch t.Kind() {
	case reflect.Interface:
		return &Schema{} // any JSON value
	case reflect.String:
		return withNull(&Schema{Type: "string"}, nullable)
	case reflect.Bool:
		return withNull(&Schema{Type: "boolean"}, nullable)
	case reflect.Int64:
		return withNull(&Schema{Type: "integer", Format: "int64"}, nullable)
	case reflect.Int, reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		return withNull(&Schema{Type: "integer"}, nullable)
	case reflect.Float32, reflect.Float64:
		return withNull(&Schema{Type: "number"}, nullable)
	case reflect.Slice, reflect.Array:
		return withNull(&Schema{Type: "array", Items: g.schema(t.Elem(), false)}, nullable)
	case reflect.Map:
		return withNull(&Schema{Type: "object", AdditionalProperties: g.schema(t.Elem(), false)}, nullable)
	case reflect.Struct:
		s := &Schema{Ref: "#/components/schemas/" + g.component(t)}
		if nullable && !optional {
			return &Schema{AnyOf: []*Schema{s, {Type: "null"}}}
		}
		return s
	}
	panic(fmt.Sprintf("httpapi: no schema for Go type %s", t))
}

// component defines the named struct type t under components/schemas and returns its name.
func (g *schemaGen) component(t reflect.Type) string {
	if name, ok := g.names[t]; ok {
		if g.closed {
			g.components[name].AdditionalProperties = false
		}
		return name
	}
	name := t.Name()
	if name == "" {
		panic(fmt.Sprintf("httpapi: anonymous struct type %s in the API", t))
	}
	if _, taken := g.components[name]; taken {
		// Two packages define a type of this name: qualify the second one.
		name = pkgName(t) + "." + name
	}
	s := &Schema{Type: "object", Properties: map[string]*Schema{}}
	if g.closed {
		s.AdditionalProperties = false
	}
	g.names[t] = name
	g.components[name] = s // before the fields: a recursive type refers to itself
	for _, f := range structFields(t) {
		fs := g.schema(f.typ, f.optional)
		doc := g.docs(f.owner, f.name)
		if doc.override != nil {
			fs = doc.override()
		}
		if doc.description != "" || doc.pattern != "" || len(doc.enum) > 0 || doc.example != nil {
			if fs.Ref != "" || fs.AnyOf != nil {
				// Siblings of $ref are allowed in 3.1, but keep the ref pure and wrap instead.
				fs = &Schema{AnyOf: []*Schema{fs}}
			} else {
				cp := *fs
				fs = &cp
			}
			fs.Description = doc.description
			fs.Pattern = doc.pattern
			fs.Enum = doc.enum
			if doc.example != nil {
				fs.Examples = []any{doc.example}
			}
		}
		s.Properties[f.name] = fs
		if !f.optional {
			s.Required = append(s.Required, f.name)
		}
	}
	return name
}

func withNull(s *Schema, nullable bool) *Schema {
	if nullable {
		s.Type = []string{s.Type.(string), "null"}
	}
	return s
}

func pkgName(t reflect.Type) string {
	p := t.PkgPath()
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	return p
}
