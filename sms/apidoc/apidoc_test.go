package apidoc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"
)

func init() {
	// Make Validate check the formats the spec uses in its examples too.
	openapi3.DefineStringFormat("uuid", openapi3.FormatOfStringForUUIDOfRFC9562)
	openapi3.DefineStringFormatCallback("uri-reference", func(s string) error {
		_, err := url.Parse(s)
		return err
	})
}

func loadDoc(t *testing.T, data []byte) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatalf("loading OpenAPI document: %v", err)
	}
	return doc
}

func TestSpecIsValid(t *testing.T) {
	doc := loadDoc(t, Spec())
	// Examples validation is on by default: every example must match its schema.
	if err := doc.Validate(context.Background(), openapi3.EnableMultiError()); err != nil {
		t.Fatalf("invalid OpenAPI document:\n%v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
}

func TestSpecReturnsCopy(t *testing.T) {
	s := Spec()
	s[0] = 'X'
	if Spec()[0] == 'X' {
		t.Fatal("Spec returned the embedded slice, not a copy")
	}
}

type operation struct {
	method, path string
	op           *openapi3.Operation
}

func operations(doc *openapi3.T) []operation {
	var ops []operation
	for _, p := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(p).Operations() {
			ops = append(ops, operation{method, p, op})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		return ops[i].path+" "+ops[i].method < ops[j].path+" "+ops[j].method
	})
	return ops
}

func securityNames(reqs *openapi3.SecurityRequirements) []string {
	if reqs == nil {
		return nil
	}
	var names []string
	for _, req := range *reqs {
		for name := range req {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// TestSpecConventions checks the rules every route follows: security,
// the error statuses each kind of route documents, and problem documents for
// every error.
func TestSpecConventions(t *testing.T) {
	doc := loadDoc(t, Spec())
	if got := securityNames(&doc.Security); !slices.Equal(got, []string{"apiKey"}) {
		t.Fatalf("global security = %v, want [apiKey]", got)
	}
	operationIDs := map[string]bool{}
	for _, o := range operations(doc) {
		name := o.method + " " + o.path
		if o.op.OperationID == "" || operationIDs[o.op.OperationID] {
			t.Errorf("%s: missing or duplicate operationId %q", name, o.op.OperationID)
		}
		operationIDs[o.op.OperationID] = true
		if o.op.Summary == "" || len(o.op.Tags) == 0 {
			t.Errorf("%s: needs a summary and a tag", name)
		}

		var wantStatuses []int
		switch {
		case strings.HasPrefix(o.path, "/v1/internal/"):
			if got := securityNames(o.op.Security); !slices.Equal(got, []string{"internalToken"}) {
				t.Errorf("%s: security = %v, want [internalToken]", name, got)
			}
			wantStatuses = []int{200, 400, 401, 503}
		case strings.HasPrefix(o.path, "/v1/"):
			if o.op.Security != nil {
				t.Errorf("%s: overrides the global apiKey security", name)
			}
			wantStatuses = []int{401, 429, 503}
		default:
			if o.op.Security == nil || len(*o.op.Security) != 0 {
				t.Errorf("%s: must declare `security: []` (no authentication)", name)
			}
		}
		for _, status := range wantStatuses {
			if o.op.Responses.Status(status) == nil {
				t.Errorf("%s: does not document %d", name, status)
			}
		}
		if r := o.op.Responses.Status(429); r != nil && r.Value.Headers["Retry-After"] == nil {
			t.Errorf("%s: 429 without a Retry-After header", name)
		}

		for code, ref := range o.op.Responses.Map() {
			if code < "400" || (o.path == "/readyz" && code == "503") {
				continue
			}
			content := ref.Value.Content
			mt := content.Get("application/problem+json")
			if len(content) != 1 || mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/Problem" {
				t.Errorf("%s %s: error responses must be application/problem+json with the Problem schema", name, code)
			}
		}
	}
}

// TestResponseSchemasAreClosed checks that every object schema a JSON
// response can contain forbids unknown properties and requires only
// properties it defines, so contract tests catch drift.
func TestResponseSchemasAreClosed(t *testing.T) {
	doc := loadDoc(t, Spec())
	seen := map[*openapi3.Schema]bool{}
	var check func(where string, s *openapi3.SchemaRef)
	check = func(where string, ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		if ref.Ref != "" {
			where = ref.Ref
		}
		s := ref.Value
		seen[s] = true
		if s.Type.Is("object") && len(s.Properties) > 0 {
			if s.AdditionalProperties.Has == nil || *s.AdditionalProperties.Has {
				t.Errorf("%s: response object schema must set additionalProperties: false", where)
			}
			for _, req := range s.Required {
				if _, ok := s.Properties[req]; !ok {
					t.Errorf("%s: requires undefined property %q", where, req)
				}
			}
		}
		for name, p := range s.Properties {
			check(where+"."+name, p)
		}
		check(where+"[]", s.Items)
		for _, sub := range slices.Concat(s.AnyOf, s.OneOf, s.AllOf) {
			check(where, sub)
		}
	}
	for _, o := range operations(doc) {
		for code, ref := range o.op.Responses.Map() {
			for mediaType, mt := range ref.Value.Content {
				if strings.HasSuffix(mediaType, "json") && o.path != "/openapi.json" {
					check(fmt.Sprintf("%s %s %s", o.method, o.path, code), mt.Schema)
				}
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no response schema checked")
	}
}

func serve(t *testing.T, e *echo.Echo, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func newServer(t *testing.T) *echo.Echo {
	t.Helper()
	e := echo.New()
	if err := Register(e); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return e
}

func TestRegisterServesYAML(t *testing.T) {
	e := newServer(t)
	rec := serve(t, e, "/openapi.yaml", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/yaml") {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	if !bytes.Equal(rec.Body.Bytes(), Spec()) {
		t.Error("body differs from Spec()")
	}
}

func TestRegisterServesJSON(t *testing.T) {
	e := newServer(t)
	rec := serve(t, e, "/openapi.json", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != echo.MIMEApplicationJSON {
		t.Errorf("Content-Type = %q, want %s", ct, echo.MIMEApplicationJSON)
	}
	body := rec.Body.Bytes()
	if !json.Valid(body) {
		t.Fatal("body is not valid JSON")
	}

	// The JSON holds exactly the YAML's data...
	var fromYAML, fromJSON any
	if err := yaml.Unmarshal(Spec(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(jsonish(t, fromYAML), fromJSON) {
		t.Error("openapi.json does not hold the same data as openapi.yaml")
	}

	// ...and so loads as the same OpenAPI document.
	yamlDoc, err := json.Marshal(loadDoc(t, Spec()))
	if err != nil {
		t.Fatal(err)
	}
	jsonDoc, err := json.Marshal(loadDoc(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(yamlDoc, jsonDoc) {
		t.Error("openapi.json and openapi.yaml load as different documents")
	}

	// The JSON keeps the YAML's key order.
	if !bytes.HasPrefix(body, []byte("{\n  \"openapi\": \"3.0.3\",\n  \"info\"")) {
		t.Errorf("openapi.json does not start like openapi.yaml: %.40q", body)
	}
}

// jsonish converts YAML-decoded data to what encoding/json decodes.
func jsonish(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, val := range v {
			out[k] = jsonish(t, val)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, val := range v {
			out[fmt.Sprint(k)] = jsonish(t, val)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, val := range v {
			out[i] = jsonish(t, val)
		}
		return out
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case float64, string, bool, nil:
		return v
	default:
		t.Fatalf("unexpected YAML value %T %v", v, v)
		return nil
	}
}

func TestRegisterRevalidation(t *testing.T) {
	e := newServer(t)
	for _, path := range []string{"/openapi.json", "/openapi.yaml", "/docs", "/docs/assets/swagger-ui.css"} {
		rec := serve(t, e, path, nil)
		etag := rec.Header().Get("ETag")
		if rec.Code != http.StatusOK || etag == "" {
			t.Errorf("%s: status %d, ETag %q", path, rec.Code, etag)
			continue
		}
		rec = serve(t, e, path, http.Header{"If-None-Match": {`"other", W/` + etag}})
		if rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("%s with matching If-None-Match: status %d, %d body bytes; want 304, empty", path, rec.Code, rec.Body.Len())
		}
		rec = serve(t, e, path, http.Header{"If-None-Match": {`"other"`}})
		if rec.Code != http.StatusOK {
			t.Errorf("%s with stale If-None-Match: status %d, want 200", path, rec.Code)
		}
	}
}

var assetRef = regexp.MustCompile(`(?:src|href)="([^"]+)"`)

func TestRegisterServesDocs(t *testing.T) {
	e := newServer(t)
	rec := serve(t, e, "/docs", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q, want text/html", ct)
	}
	page := rec.Body.String()
	if !strings.Contains(page, `"/openapi.json"`) {
		t.Error("the page does not point Swagger UI at /openapi.json")
	}

	var assets []string
	for _, m := range assetRef.FindAllStringSubmatch(page, -1) {
		ref := m[1]
		if !strings.HasPrefix(ref, "/docs/assets/") {
			t.Errorf("the page references %q, outside /docs/assets/ (it must work offline)", ref)
			continue
		}
		assets = append(assets, ref)
	}
	for _, want := range []string{"swagger-ui-bundle.js", "swagger-ui.css"} {
		if !slices.ContainsFunc(assets, func(ref string) bool { return strings.Contains(ref, "/"+want) }) {
			t.Errorf("the page does not load %s", want)
		}
	}
	for _, ref := range assets {
		rec := serve(t, e, ref, nil)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("%s: status %d, %d bytes", ref, rec.Code, rec.Body.Len())
		}
		if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") {
			t.Errorf("%s: Cache-Control = %q, want a long max-age", ref, cc)
		}
	}
}

func TestRegisterServesAssets(t *testing.T) {
	e := newServer(t)
	for path, wantType := range map[string]string{
		"/docs/assets/swagger-ui-bundle.js": "text/javascript",
		"/docs/assets/swagger-ui.css":       "text/css",
		"/docs/assets/LICENSE":              "text/plain",
	} {
		rec := serve(t, e, path, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status %d, want 200", path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
			t.Errorf("%s: Content-Type = %q, want %s", path, ct, wantType)
		}
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", path, got)
		}
	}
	for _, path := range []string{"/docs/assets/", "/docs/assets/missing.js", "/docs/assets/%2e%2e%2fdocs.html", "/docs/assets/assets/LICENSE"} {
		if rec := serve(t, e, path, nil); rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, rec.Code)
		}
	}
}

func TestYAMLToJSON(t *testing.T) {
	got, err := yamlToJSON([]byte(`
z: 1
a: [true, null, 1.5, "2", 2025-06-01T12:00:00Z, ~]
'200': &anchor {k: v}
m: *anchor
`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"z":1,"a":[true,null,1.5,"2","2025-06-01T12:00:00Z",null],"200":{"k":"v"},"m":{"k":"v"}}`
	var compact bytes.Buffer
	if err := json.Compact(&compact, got); err != nil {
		t.Fatal(err)
	}
	if compact.String() != want {
		t.Errorf("got  %s\nwant %s", compact.String(), want)
	}

	for _, bad := range []string{"a: 1\na: 2\n", "a: [\n", "<<: {a: 1}\n", "a: !custom x\n", "a: .nan\n"} {
		if _, err := yamlToJSON([]byte(bad)); err == nil {
			t.Errorf("yamlToJSON(%q) did not fail", bad)
		}
	}
}
